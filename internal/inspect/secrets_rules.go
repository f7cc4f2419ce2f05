package inspect

import (
	"encoding/base64"
	"encoding/json"
	"strings"
)

// This file holds the embedded secret ruleset. The token formats are public facts about
// the services that issue them (prefixes, alphabets, lengths), as documented by the
// vendors and collected by open rule sets such as gitleaks' (MIT); the code is our own.

// secretKeyword is one keyword of the prefilter and the detector it wakes. detect gets
// the offset of the keyword in the window; the keyword was matched ignoring ASCII case,
// so a detector checks the case it needs.
type secretKeyword struct {
	word   string
	detect func(w *secretScan, at int)
}

// Kinds reported by the structural and custom detectors (the format rules add theirs).
var secretStructuralKinds = []string{
	"age_secret_key", "anthropic_api_key", "artifactory_token", "aws_secret_key",
	"azure_client_secret", "azure_sas_token", "azure_storage_key", "connection_string",
	"discord_bot_token", "discord_webhook", "facebook_access_token", "gcp_service_account",
	"generic_secret", "google_api_key", "heroku_api_key", "http_auth_header", "http_basic_auth",
	"jwt", "mailchimp_api_key", "npm_token", "onepassword_secret_key", "openai_api_key",
	"private_key", "slack_token", "slack_webhook", "sourcegraph_token", "square_token",
	"telegram_bot_token", "terraform_token", "twilio_api_key", "vault_token",
}

// secretVetoPrefixes are value prefixes owned by a custom detector: the generic detector
// leaves a value that starts with one to it, even when that detector rejects the value.
var secretVetoPrefixes = []string{
	"xox", "xapp-", "eyJ", "AIza", "sk-", "EAA", "-----BEGIN", "AGE-SECRET-KEY-", "hooks.slack.com",
}

// Alphabets of token bodies.
const (
	secretCharAlnum          = iota // A-Z a-z 0-9
	secretCharWord                  // alnum and _
	secretCharToken                 // alnum, _ and -
	secretCharDotted                // alnum, _, - and .
	secretCharHex                   // 0-9 a-f A-F
	secretCharLowerHex              // 0-9 a-f
	secretCharLowerAlnum            // a-z 0-9
	secretCharUpperAlnum            // A-Z 0-9
	secretCharBase64                // alnum, +, / and =
	secretCharBase64Any             // alnum, +, /, =, _ and -
	secretCharAlpha                 // A-Z a-z
	secretCharBase32                // A-Z 2-7
	secretCharBech32                // the upper-case bech32 alphabet
	secretCharHexDash               // 0-9 a-f and -
	secretCharUpperDot              // A-Z 0-9 and .
	secretCharLowerAlnumDash        // a-z 0-9 and -
)

func secretInCharset(cs int, b byte) bool {
	switch cs {
	case secretCharAlnum:
		return secretIsAlnum(b)
	case secretCharWord:
		return secretIsWord(b)
	case secretCharToken:
		return secretIsWord(b) || b == '-'
	case secretCharDotted:
		return secretIsWord(b) || b == '-' || b == '.'
	case secretCharHex:
		return secretIsHex(b)
	case secretCharLowerHex:
		return b >= '0' && b <= '9' || b >= 'a' && b <= 'f'
	case secretCharLowerAlnum:
		return b >= '0' && b <= '9' || b >= 'a' && b <= 'z'
	case secretCharUpperAlnum:
		return b >= '0' && b <= '9' || b >= 'A' && b <= 'Z'
	case secretCharBase64:
		return secretIsAlnum(b) || b == '+' || b == '/' || b == '='
	case secretCharBase64Any:
		return secretIsWord(b) || b == '+' || b == '/' || b == '=' || b == '-'
	case secretCharAlpha:
		return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
	case secretCharBase32:
		return b >= 'A' && b <= 'Z' || b >= '2' && b <= '7'
	case secretCharBech32:
		return b != 0 && strings.IndexByte("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", b) >= 0
	case secretCharHexDash:
		return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b == '-'
	case secretCharUpperDot:
		return b >= '0' && b <= '9' || b >= 'A' && b <= 'Z' || b == '.'
	case secretCharLowerAlnumDash:
		return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b == '-'
	}
	return false
}

// Requirements a format rule can add on the token body.
const (
	secretNeedDigit = 1 << iota
	secretNeedMixed // both upper- and lower-case letters
	secretAllowEmpty
)

// secretDistinctPrefix is the length from which a literal prefix is specific enough
// ("AGE-SECRET-KEY-1", "pypi-AgEIcHlwaS5vcmc") that the randomness of the body is not
// checked, only that it is not masked.
const secretDistinctPrefix = 16

// secretPrefixRule is a token recognised by a literal prefix and a body of a known
// alphabet and length.
type secretPrefixRule struct {
	kind     string
	prefix   string // case-sensitive
	charset  int
	min, max int // body length
	score    float64
	need     int
	check    func(body string) bool // optional structure check
}

var secretPrefixRules = []secretPrefixRule{
	{kind: "aws_access_key", prefix: "AKIA", charset: secretCharBase32, min: 16, max: 16, score: 0.95},
	{kind: "aws_access_key", prefix: "ASIA", charset: secretCharBase32, min: 16, max: 16, score: 0.9},
	{kind: "aws_access_key", prefix: "ABIA", charset: secretCharBase32, min: 16, max: 16, score: 0.9},
	{kind: "aws_access_key", prefix: "ACCA", charset: secretCharBase32, min: 16, max: 16, score: 0.9},
	{kind: "aws_bedrock_key", prefix: "ABSKQmVkcm9ja0FQSUtleS1", charset: secretCharBase64, min: 100, max: 300, score: 0.95},
	{kind: "aws_bedrock_key", prefix: "bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29t", charset: secretCharBase64Any, min: 0, max: 4096, score: 0.9, need: secretAllowEmpty},
	{kind: "github_token", prefix: "ghp_", charset: secretCharAlnum, min: 36, max: 36, score: 0.97},
	{kind: "github_token", prefix: "gho_", charset: secretCharAlnum, min: 36, max: 36, score: 0.97},
	{kind: "github_token", prefix: "ghu_", charset: secretCharAlnum, min: 36, max: 36, score: 0.97},
	{kind: "github_token", prefix: "ghs_", charset: secretCharAlnum, min: 36, max: 36, score: 0.97},
	{kind: "github_token", prefix: "ghr_", charset: secretCharAlnum, min: 36, max: 36, score: 0.97},
	{kind: "github_token", prefix: "github_pat_", charset: secretCharWord, min: 60, max: 255, score: 0.97},
	{kind: "gitlab_token", prefix: "glpat-", charset: secretCharDotted, min: 20, max: 300, score: 0.95},
	{kind: "gitlab_token", prefix: "gldt-", charset: secretCharToken, min: 20, max: 50, score: 0.95},
	{kind: "gitlab_token", prefix: "glrt-", charset: secretCharDotted, min: 20, max: 300, score: 0.95},
	{kind: "gitlab_token", prefix: "glrtr-", charset: secretCharToken, min: 20, max: 50, score: 0.95},
	{kind: "gitlab_token", prefix: "glcbt-", charset: secretCharToken, min: 20, max: 60, score: 0.95},
	{kind: "gitlab_token", prefix: "glptt-", charset: secretCharToken, min: 40, max: 40, score: 0.95},
	{kind: "gitlab_token", prefix: "glsoat-", charset: secretCharToken, min: 20, max: 50, score: 0.95},
	{kind: "gitlab_token", prefix: "glimt-", charset: secretCharToken, min: 25, max: 25, score: 0.95},
	{kind: "gitlab_token", prefix: "glagent-", charset: secretCharToken, min: 50, max: 1024, score: 0.95},
	{kind: "gitlab_token", prefix: "gloas-", charset: secretCharToken, min: 64, max: 64, score: 0.95},
	{kind: "gitlab_token", prefix: "glffct-", charset: secretCharToken, min: 20, max: 50, score: 0.95},
	{kind: "gitlab_token", prefix: "glft-", charset: secretCharToken, min: 20, max: 50, score: 0.95},
	{kind: "gitlab_token", prefix: "GR1348941", charset: secretCharToken, min: 20, max: 50, score: 0.95},
	{kind: "stripe_key", prefix: "sk_live_", charset: secretCharAlnum, min: 24, max: 247, score: 0.97},
	{kind: "stripe_key", prefix: "rk_live_", charset: secretCharAlnum, min: 24, max: 247, score: 0.97},
	{kind: "stripe_key", prefix: "sk_test_", charset: secretCharAlnum, min: 24, max: 247, score: 0.8},
	{kind: "stripe_key", prefix: "rk_test_", charset: secretCharAlnum, min: 24, max: 247, score: 0.8},
	{kind: "stripe_key", prefix: "whsec_", charset: secretCharAlnum, min: 32, max: 64, score: 0.9},
	{kind: "twilio_api_key", prefix: "SK", charset: secretCharLowerHex, min: 32, max: 32, score: 0.8, need: secretNeedDigit},
	{kind: "sendgrid_api_key", prefix: "SG.", charset: secretCharDotted, min: 66, max: 66, score: 0.97, check: secretCheckSendGrid},
	{kind: "npm_token", prefix: "npm_", charset: secretCharAlnum, min: 36, max: 36, score: 0.95},
	{kind: "pypi_token", prefix: "pypi-AgEIcHlwaS5vcmc", charset: secretCharToken, min: 100, max: 2000, score: 0.97},
	{kind: "pypi_token", prefix: "pypi-AgENdGVzdC5weXBpLm9yZw", charset: secretCharToken, min: 100, max: 2000, score: 0.9},
	{kind: "huggingface_token", prefix: "hf_", charset: secretCharAlpha, min: 34, max: 34, score: 0.9, need: secretNeedMixed, check: secretCheckRandomLetters},
	{kind: "huggingface_token", prefix: "api_org_", charset: secretCharAlpha, min: 34, max: 34, score: 0.9, need: secretNeedMixed, check: secretCheckRandomLetters},
	{kind: "artifactory_token", prefix: "AKCp", charset: secretCharAlnum, min: 69, max: 69, score: 0.9},
	{kind: "artifactory_token", prefix: "cmVmdGtu", charset: secretCharAlnum, min: 56, max: 56, score: 0.9},
	{kind: "atlassian_api_token", prefix: "ATATT3", charset: secretCharBase64Any, min: 150, max: 300, score: 0.95},
	{kind: "notion_token", prefix: "ntn_", charset: secretCharAlnum, min: 46, max: 46, score: 0.95, check: secretCheckNotion},
	{kind: "sourcegraph_token", prefix: "sgp_", charset: secretCharWord, min: 40, max: 61, score: 0.95, check: secretCheckSourcegraph},
	{kind: "vault_token", prefix: "hvs.", charset: secretCharToken, min: 90, max: 400, score: 0.95},
	{kind: "vault_token", prefix: "hvb.", charset: secretCharToken, min: 90, max: 400, score: 0.95},
	{kind: "shopify_token", prefix: "shpat_", charset: secretCharHex, min: 32, max: 32, score: 0.95},
	{kind: "shopify_token", prefix: "shpca_", charset: secretCharHex, min: 32, max: 32, score: 0.95},
	{kind: "shopify_token", prefix: "shppa_", charset: secretCharHex, min: 32, max: 32, score: 0.95},
	{kind: "shopify_token", prefix: "shpss_", charset: secretCharHex, min: 32, max: 32, score: 0.95},
	{kind: "square_token", prefix: "sq0atp-", charset: secretCharToken, min: 22, max: 22, score: 0.95},
	{kind: "square_token", prefix: "sq0csp-", charset: secretCharToken, min: 43, max: 43, score: 0.95},
	{kind: "digitalocean_token", prefix: "dop_v1_", charset: secretCharLowerHex, min: 64, max: 64, score: 0.97},
	{kind: "digitalocean_token", prefix: "doo_v1_", charset: secretCharLowerHex, min: 64, max: 64, score: 0.97},
	{kind: "digitalocean_token", prefix: "dor_v1_", charset: secretCharLowerHex, min: 64, max: 64, score: 0.97},
	{kind: "heroku_api_key", prefix: "HRKU-AA", charset: secretCharToken, min: 58, max: 58, score: 0.95},
	{kind: "onepassword_token", prefix: "ops_eyJ", charset: secretCharBase64Any, min: 250, max: 8192, score: 0.97},
	{kind: "age_secret_key", prefix: "AGE-SECRET-KEY-1", charset: secretCharBech32, min: 58, max: 58, score: 0.99},
	{kind: "google_oauth", prefix: "ya29.", charset: secretCharToken, min: 30, max: 2048, score: 0.9},
	{kind: "google_oauth", prefix: "GOCSPX-", charset: secretCharToken, min: 28, max: 28, score: 0.95},
	{kind: "databricks_token", prefix: "dapi", charset: secretCharLowerHex, min: 32, max: 32, score: 0.9},
	{kind: "doppler_token", prefix: "dp.pt.", charset: secretCharAlnum, min: 40, max: 44, score: 0.95},
	{kind: "doppler_token", prefix: "dp.st.", charset: secretCharDotted, min: 40, max: 80, score: 0.95},
	{kind: "doppler_token", prefix: "dp.sa.", charset: secretCharAlnum, min: 40, max: 44, score: 0.95},
	{kind: "doppler_token", prefix: "dp.ct.", charset: secretCharAlnum, min: 40, max: 44, score: 0.95},
	{kind: "dynatrace_token", prefix: "dt0c01.", charset: secretCharUpperDot, min: 89, max: 89, score: 0.95, check: secretCheckDynatrace},
	{kind: "easypost_token", prefix: "EZAK", charset: secretCharAlnum, min: 54, max: 54, score: 0.9},
	{kind: "easypost_token", prefix: "EZTK", charset: secretCharAlnum, min: 54, max: 54, score: 0.8},
	{kind: "flyio_token", prefix: "fo1_", charset: secretCharToken, min: 43, max: 43, score: 0.9},
	{kind: "flyio_token", prefix: "fm1r_", charset: secretCharBase64Any, min: 100, max: 8192, score: 0.9},
	{kind: "flyio_token", prefix: "fm1a_", charset: secretCharBase64Any, min: 100, max: 8192, score: 0.9},
	{kind: "flyio_token", prefix: "fm2_", charset: secretCharBase64Any, min: 100, max: 8192, score: 0.9},
	{kind: "grafana_token", prefix: "glc_", charset: secretCharBase64, min: 32, max: 400, score: 0.9},
	{kind: "grafana_token", prefix: "glsa_", charset: secretCharWord, min: 41, max: 41, score: 0.9, check: secretCheckGrafanaSA},
	{kind: "linear_api_key", prefix: "lin_api_", charset: secretCharAlnum, min: 40, max: 40, score: 0.95},
	{kind: "postman_api_key", prefix: "PMAK-", charset: secretCharHexDash, min: 59, max: 59, score: 0.95},
	{kind: "pulumi_token", prefix: "pul-", charset: secretCharLowerHex, min: 40, max: 40, score: 0.9},
	{kind: "readme_api_key", prefix: "rdme_", charset: secretCharLowerAlnum, min: 70, max: 70, score: 0.9},
	{kind: "rubygems_token", prefix: "rubygems_", charset: secretCharLowerHex, min: 48, max: 48, score: 0.95},
	{kind: "shippo_token", prefix: "shippo_live_", charset: secretCharLowerHex, min: 40, max: 40, score: 0.95},
	{kind: "shippo_token", prefix: "shippo_test_", charset: secretCharLowerHex, min: 40, max: 40, score: 0.8},
	{kind: "infracost_token", prefix: "ico-", charset: secretCharAlnum, min: 32, max: 32, score: 0.85},
	{kind: "prefect_token", prefix: "pnu_", charset: secretCharAlnum, min: 36, max: 36, score: 0.9},
	{kind: "perplexity_api_key", prefix: "pplx-", charset: secretCharAlnum, min: 48, max: 48, score: 0.95},
	{kind: "newrelic_key", prefix: "NRAK-", charset: secretCharUpperAlnum, min: 27, max: 27, score: 0.9},
	{kind: "sentry_token", prefix: "sntrys_eyJ", charset: secretCharBase64Any, min: 50, max: 2048, score: 0.95},
	{kind: "sentry_token", prefix: "sntryu_", charset: secretCharLowerHex, min: 64, max: 64, score: 0.95},
	{kind: "xai_api_key", prefix: "xai-", charset: secretCharAlnum, min: 80, max: 80, score: 0.9},
	{kind: "groq_api_key", prefix: "gsk_", charset: secretCharAlnum, min: 52, max: 52, score: 0.9},
	{kind: "replicate_token", prefix: "r8_", charset: secretCharAlnum, min: 37, max: 37, score: 0.85, need: secretNeedMixed},
	{kind: "docker_token", prefix: "dckr_pat_", charset: secretCharToken, min: 27, max: 40, score: 0.95},
	{kind: "openrouter_api_key", prefix: "sk-or-v1-", charset: secretCharLowerHex, min: 64, max: 64, score: 0.95},
	{kind: "alibaba_access_key", prefix: "LTAI", charset: secretCharAlnum, min: 12, max: 20, score: 0.8, need: secretNeedDigit | secretNeedMixed},
	{kind: "planetscale_token", prefix: "pscale_tkn_", charset: secretCharDotted, min: 32, max: 64, score: 0.95},
	{kind: "planetscale_token", prefix: "pscale_pw_", charset: secretCharDotted, min: 32, max: 64, score: 0.95},
	{kind: "planetscale_token", prefix: "pscale_oauth_", charset: secretCharDotted, min: 32, max: 64, score: 0.95},
	{kind: "intra42_client_secret", prefix: "s-s4t2ud-", charset: secretCharLowerHex, min: 64, max: 64, score: 0.95},
	{kind: "intra42_client_secret", prefix: "s-s4t2af-", charset: secretCharLowerHex, min: 64, max: 64, score: 0.95},
	{kind: "cloudflare_origin_ca_key", prefix: "v1.0-", charset: secretCharHexDash, min: 171, max: 171, score: 0.95, check: secretCheckCloudflare},
	{kind: "clojars_token", prefix: "CLOJARS_", charset: secretCharLowerAlnum, min: 60, max: 60, score: 0.95},
	{kind: "octopus_api_key", prefix: "API-", charset: secretCharUpperAlnum, min: 26, max: 26, score: 0.8, need: secretNeedDigit},
	{kind: "clickhouse_api_key", prefix: "4b1d", charset: secretCharAlnum, min: 38, max: 38, score: 0.85, need: secretNeedDigit | secretNeedMixed},
	{kind: "mapbox_token", prefix: "sk.eyJ", charset: secretCharDotted, min: 80, max: 2048, score: 0.9},
	{kind: "adobe_client_secret", prefix: "p8e-", charset: secretCharLowerAlnum, min: 32, max: 32, score: 0.85, need: secretNeedDigit},
	{kind: "langsmith_api_key", prefix: "lsv2_pt_", charset: secretCharWord, min: 43, max: 43, score: 0.95},
	{kind: "langsmith_api_key", prefix: "lsv2_sk_", charset: secretCharWord, min: 43, max: 43, score: 0.95},
	{kind: "tailscale_key", prefix: "tskey-", charset: secretCharToken, min: 30, max: 120, score: 0.95, check: secretCheckTailscale},
	{kind: "supabase_token", prefix: "sbp_", charset: secretCharLowerHex, min: 40, max: 40, score: 0.9},
	{kind: "sendinblue_api_key", prefix: "xkeysib-", charset: secretCharLowerAlnumDash, min: 81, max: 81, score: 0.95, check: secretCheckSendinblue},
	{kind: "duffel_token", prefix: "duffel_live_", charset: secretCharBase64Any, min: 43, max: 43, score: 0.95},
	{kind: "duffel_token", prefix: "duffel_test_", charset: secretCharBase64Any, min: 43, max: 43, score: 0.8},
	{kind: "frameio_token", prefix: "fio-u-", charset: secretCharBase64Any, min: 64, max: 64, score: 0.95},
	{kind: "plaid_token", prefix: "access-production-", charset: secretCharHexDash, min: 36, max: 36, score: 0.95},
	{kind: "plaid_token", prefix: "access-development-", charset: secretCharHexDash, min: 36, max: 36, score: 0.9},
	{kind: "plaid_token", prefix: "access-sandbox-", charset: secretCharHexDash, min: 36, max: 36, score: 0.8},
	{kind: "scalingo_token", prefix: "tk-us-", charset: secretCharToken, min: 48, max: 48, score: 0.9},
	{kind: "typeform_token", prefix: "tfp_", charset: secretCharDotted, min: 59, max: 59, score: 0.9},
	{kind: "openshift_token", prefix: "sha256~", charset: secretCharToken, min: 43, max: 43, score: 0.9},
	{kind: "dropbox_token", prefix: "sl.", charset: secretCharBase64Any, min: 130, max: 1400, score: 0.9},
	{kind: "google_oauth", prefix: "1//0", charset: secretCharToken, min: 40, max: 512, score: 0.85},
}

func secretCheckTailscale(body string) bool {
	kind, rest, ok := strings.Cut(body, "-")
	return ok && (kind == "api" || kind == "auth" || kind == "client" || kind == "webhook" || kind == "scim") &&
		strings.Count(rest, "-") == 1
}

func secretCheckSendinblue(body string) bool { return body[64] == '-' && strings.Count(body, "-") == 1 }

func secretCheckSendGrid(body string) bool {
	return body[22] == '.' && strings.Count(body, ".") == 1
}

func secretCheckNotion(body string) bool {
	for i := range 11 {
		if !secretIsDigit(body[i]) {
			return false
		}
	}
	return true
}

// secretCheckSourcegraph accepts the three forms of Sourcegraph access tokens: 40 hex
// digits, "local_" and 40 hex digits, or 16 hex digits, "_" and 40 hex digits.
func secretCheckSourcegraph(body string) bool {
	allHex := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if !secretIsHex(s[i]) {
				return false
			}
		}
		return true
	}
	switch {
	case len(body) == 40:
		return allHex(body)
	case len(body) == 46 && strings.HasPrefix(body, "local_"):
		return allHex(body[6:])
	case len(body) == 57 && body[16] == '_':
		return allHex(body[:16]) && allHex(body[17:])
	}
	return false
}

func secretCheckDynatrace(body string) bool { return body[24] == '.' && strings.Count(body, ".") == 1 }

func secretCheckGrafanaSA(body string) bool { return body[32] == '_' }

func secretCheckCloudflare(body string) bool { return body[24] == '-' && strings.Count(body, "-") == 1 }

// secretCheckRandomLetters accepts a letters-only body that mixes cases like random text,
// not like a camelCase identifier.
func secretCheckRandomLetters(body string) bool {
	lower, upper, _, _ := secretClasses(body)
	return lower >= 5 && upper >= 5 && secretRandomLetters(body)
}

// secretKeywords is the prefilter: every keyword and the detector it wakes.
func secretKeywords() []secretKeyword {
	var kws []secretKeyword
	for i := range secretPrefixRules {
		r := &secretPrefixRules[i]
		kws = append(kws, secretKeyword{word: strings.ToLower(r.prefix), detect: func(w *secretScan, at int) { w.prefixRule(r, at) }})
	}
	add := func(f func(w *secretScan, at int), words ...string) {
		for _, word := range words {
			kws = append(kws, secretKeyword{word: word, detect: f})
		}
	}
	add((*secretScan).slack, "xox", "xapp-")
	add((*secretScan).slackWebhook, "hooks.slack.com/")
	add((*secretScan).discordWebhook, "/api/webhooks/")
	add((*secretScan).discordBot, ".")
	add((*secretScan).telegram, ":aa")
	add((*secretScan).mailchimp, "-us")
	add((*secretScan).facebookPair, "|")
	add((*secretScan).facebookEAA, "eaa")
	add((*secretScan).openAIAnthropic, "sk-")
	add((*secretScan).googleKey, "aiza")
	add((*secretScan).azureClientSecret, "q~")
	add((*secretScan).azureStorageKey, "accountkey", "sharedaccesskey")
	add((*secretScan).azureSAS, "sig=")
	add((*secretScan).vaultLegacy, "s.")
	add((*secretScan).onePasswordSecretKey, "a3-")
	add((*secretScan).terraform, ".atlasv1.")
	add((*secretScan).artifactoryHeader, "x-jfrog-art-api")
	add((*secretScan).privateKeyBlock, "-----begin ")
	add((*secretScan).puttyKey, "private-lines:")
	add((*secretScan).jwt, "eyj")
	add((*secretScan).urlPassword, "://")
	add((*secretScan).authorization, "authorization")
	add((*secretScan).bearer, "bearer ")
	add((*secretScan).basic, "basic ")
	add((*secretScan).curlUser, "-u", "--user")
	add((*secretScan).npmrc, ":_authtoken", ":_auth", ":_password")
	add((*secretScan).gcpServiceAccount, `"service_account"`)
	add((*secretScan).generic, "pass", "pwd", "pswd", "secret", "token", "key", "auth", "cred", "_pat",
		"sourcegraph", "heroku", "twilio", "bearer")
	return kws
}

// secretLeftEdge reports whether a token may start at i: at the start of the text or
// after a byte that cannot be part of a token.
func secretLeftEdge(t string, i int) bool {
	return i == 0 || !secretIsWord(t[i-1]) && t[i-1] != '.' && t[i-1] != '-'
}

// prefixRule checks a format rule at a hit of its prefix.
func (w *secretScan) prefixRule(r *secretPrefixRule, at int) {
	t := w.text
	if !strings.HasPrefix(t[at:], r.prefix) || !secretLeftEdge(t, at) {
		return
	}
	bs := at + len(r.prefix)
	be := bs
	for be < len(t) && be-bs <= r.max && secretInCharset(r.charset, t[be]) {
		be++
	}
	n := be - bs
	if n < r.min || n > r.max || be < len(t) && secretIsAlnum(t[be]) {
		return
	}
	body := t[bs:be]
	switch {
	case n == 0:
		if r.need&secretAllowEmpty == 0 {
			return
		}
	case len(r.prefix) >= secretDistinctPrefix:
		// The prefix alone proves the format; only an explicit mask makes it a
		// placeholder.
		if secretMasked(body) {
			return
		}
	case secretFiller(body) || len(body) >= 20 && secretEntropy(body) < 3.0:
		return
	}
	lower, upper, digit, _ := secretClasses(body)
	if r.need&secretNeedDigit != 0 && digit == 0 || r.need&secretNeedMixed != 0 && (lower == 0 || upper == 0) {
		return
	}
	if r.check != nil && !r.check(body) {
		return
	}
	w.add(at, be, r.kind, r.score, secretPrioFormat)
}

// slack finds Slack tokens: bot, user, workspace and legacy tokens ("xoxb-" and its
// siblings: numeric ids and a random tail), configuration and refresh tokens ("xoxe"),
// and app-level tokens ("xapp-").
func (w *secretScan) slack(at int) {
	t := w.text
	if !secretLeftEdge(t, at) {
		return
	}
	end := secretRun(t, at, 512, func(b byte) bool { return secretIsAlnum(b) || b == '-' || b == '.' })
	tok := t[at:end]
	ok := false
	switch {
	case strings.HasPrefix(tok, "xoxe.xoxp-") || strings.HasPrefix(tok, "xoxe.xoxb-"):
		ok = secretSlackLong(tok[len("xoxe.xoxp-"):])
	case strings.HasPrefix(tok, "xoxe-"):
		ok = secretSlackLong(tok[len("xoxe-"):])
	case strings.HasPrefix(tok, "xapp-"):
		parts := strings.Split(tok, "-")
		ok = len(parts) == 5 && secretAllDigits(parts[1]) && len(parts[2]) >= 8 && secretAllDigits(parts[3]) &&
			len(parts[4]) >= 32 && !secretFiller(parts[4])
	case len(tok) > 5 && strings.HasPrefix(tok, "xox") && strings.IndexByte("abposr", tok[3]) >= 0 && tok[4] == '-':
		if i := strings.IndexByte(tok, '.'); i >= 0 {
			tok = tok[:i]
			end = at + i
		}
		ok = secretSlackClassic(tok[5:])
	}
	if ok {
		w.add(at, end, "slack_token", 0.95, secretPrioFormat)
	}
}

// secretSlackLong accepts "<digit>-<at least 100 alphanumerics>".
func secretSlackLong(s string) bool {
	if len(s) < 102 || !secretIsDigit(s[0]) || s[1] != '-' {
		return false
	}
	body := s[2:]
	for i := 0; i < len(body); i++ {
		if !secretIsAlnum(body[i]) {
			return false
		}
	}
	return !secretFiller(body)
}

// secretSlackClassic accepts numeric ids separated by "-", at least one of six digits
// or more, and a random alphanumeric tail with a letter in it.
func secretSlackClassic(s string) bool {
	parts := strings.Split(s, "-")
	if len(parts) < 2 {
		return false
	}
	tail := parts[len(parts)-1]
	longID := false
	for _, p := range parts[:len(parts)-1] {
		if p == "" || !secretAllDigits(p) {
			return false
		}
		if len(p) >= 6 {
			longID = true
		}
	}
	if !longID || len(tail) < 8 {
		return false
	}
	lower, upper, _, other := secretClasses(tail)
	return other == 0 && lower+upper > 0 && !secretFiller(tail)
}

func secretAllDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !secretIsDigit(s[i]) {
			return false
		}
	}
	return true
}

// slackWebhook finds Slack incoming-webhook and workflow URLs; the span is the path
// after the host, which is the credential.
func (w *secretScan) slackWebhook(at int) {
	t := w.text
	rest := t[at+len("hooks.slack.com/"):]
	var kind string
	for _, k := range []string{"services/", "workflows/", "triggers/"} {
		if strings.HasPrefix(rest, k) {
			kind = k
		}
	}
	if kind == "" {
		return
	}
	start := at + len("hooks.slack.com/") + len(kind)
	end := secretRun(t, start, 256, func(b byte) bool { return secretIsWord(b) || b == '/' })
	parts := strings.Split(strings.TrimRight(t[start:end], "/"), "/")
	if len(parts) < 3 || len(parts[0]) < 8 || parts[0][0] != 'T' {
		return
	}
	last := parts[len(parts)-1]
	if len(last) < 16 || secretFiller(last) || secretFiller(parts[0][1:]) {
		return
	}
	w.add(start, start+len(strings.TrimRight(t[start:end], "/")), "slack_webhook", 0.95, secretPrioFormat)
}

// discordWebhook finds the token of a Discord webhook URL.
func (w *secretScan) discordWebhook(at int) {
	t := w.text
	host := strings.ToLower(t[max(0, at-16):at])
	if !strings.HasSuffix(host, "discord.com") && !strings.HasSuffix(host, "discordapp.com") {
		return
	}
	i := at + len("/api/webhooks/")
	j := secretRun(t, i, 24, secretIsDigit)
	if j-i < 15 || j >= len(t) || t[j] != '/' {
		return
	}
	end := secretRun(t, j+1, 101, secretIsToken)
	if n := end - j - 1; n < 60 || n > 100 || secretFiller(t[j+1:end]) {
		return
	}
	w.add(j+1, end, "discord_webhook", 0.95, secretPrioFormat)
}

// discordBot finds Discord bot tokens: the base64 of a numeric user id (24 to 26
// characters, starting M, N or O), a dot, six characters, a dot and an HMAC of at least
// 27 characters. The hit is any dot; most are rejected by the second dot test.
func (w *secretScan) discordBot(at int) {
	t := w.text
	if at < w.dotDone || at+8 >= len(t) || t[at+7] != '.' {
		return
	}
	tokenByte := func(b byte) bool { return secretIsWord(b) || b == '-' }
	for i := at + 1; i < at+7; i++ {
		if !tokenByte(t[i]) {
			return
		}
	}
	fs := secretRunBack(t, at, 40, tokenByte)
	p := -1
	for _, n := range []int{26, 25, 24} {
		if q := at - n; q >= fs && strings.IndexByte("MNO", t[q]) >= 0 {
			p = q
			break
		}
	}
	if p < 0 {
		return
	}
	end := secretRun(t, at+8, 101, tokenByte)
	if n := end - at - 8; n < 27 || n > 100 {
		return
	}
	if secretFiller(t[p:at]) || secretFiller(t[at+8:end]) {
		return
	}
	if lower, upper, _, _ := secretClasses(t[at+8 : end]); lower == 0 || upper == 0 {
		return
	}
	w.dotDone = end
	w.add(p, end, "discord_bot_token", 0.9, secretPrioFormat)
}

// secretIsToken reports whether b can be part of a URL-safe token: a word character or
// '-'.
func secretIsToken(b byte) bool { return secretIsWord(b) || b == '-' }

// secretExactToken reports whether exactly n token characters start at i — not followed
// by another, and not filler — and where they end.
func secretExactToken(t string, i, n int) (end int, ok bool) {
	end = secretRun(t, i, n+1, secretIsToken)
	return end, end-i == n && (end == len(t) || !secretIsToken(t[end])) && !secretFiller(t[i:end])
}

// telegram finds Telegram bot tokens: a numeric bot id, ":AA" and 33 characters. The id
// may follow "/bot", as in the URLs of the Bot API.
func (w *secretScan) telegram(at int) {
	t := w.text
	if !strings.HasPrefix(t[at:], ":AA") {
		return
	}
	ds := secretRunBack(t, at, 11, secretIsDigit)
	if n := at - ds; n < 8 || n > 10 {
		return
	}
	if !secretLeftEdge(t, ds) && !(ds >= 4 && t[ds-4:ds] == "/bot") {
		return
	}
	end, ok := secretExactToken(t, at+3, 33)
	if !ok {
		return
	}
	w.add(ds, end, "telegram_bot_token", 0.9, secretPrioFormat)
}

// mailchimp finds Mailchimp API keys: 32 lower-case hex digits and a data-centre
// suffix "-usNN".
func (w *secretScan) mailchimp(at int) {
	t := w.text
	if !strings.HasPrefix(t[at:], "-us") || at < 32 {
		return
	}
	end := secretRun(t, at+3, 3, secretIsDigit)
	if n := end - at - 3; n < 1 || n > 2 || end < len(t) && secretIsAlnum(t[end]) {
		return
	}
	hs := at - 32
	for i := hs; i < at; i++ {
		if !secretInCharset(secretCharLowerHex, t[i]) {
			return
		}
	}
	if !secretLeftEdge(t, hs) || secretFiller(t[hs:at]) {
		return
	}
	w.add(hs, end, "mailchimp_api_key", 0.9, secretPrioFormat)
}

// facebookPair finds Facebook app access tokens, "<app id>|<secret>".
func (w *secretScan) facebookPair(at int) {
	t := w.text
	ds := secretRunBack(t, at, 17, secretIsDigit)
	if n := at - ds; n < 15 || n > 16 || !secretLeftEdge(t, ds) {
		return
	}
	end, ok := secretExactToken(t, at+1, 27)
	if !ok {
		return
	}
	w.add(ds, end, "facebook_access_token", 0.85, secretPrioFormat)
}

// facebookEAA finds Facebook (EAA + upper-case letter) and Square (EAAA) access tokens.
func (w *secretScan) facebookEAA(at int) {
	t := w.text
	if !strings.HasPrefix(t[at:], "EAA") || !secretLeftEdge(t, at) || at+4 >= len(t) {
		return
	}
	if t[at+3] == 'A' {
		end := secretRun(t, at+4, 61, func(b byte) bool { return secretIsWord(b) || b == '-' || b == '+' || b == '=' })
		if end-at-4 == 60 && (end == len(t) || !secretIsAlnum(t[end])) && !secretFiller(t[at+4:end]) {
			w.add(at, end, "square_token", 0.9, secretPrioFormat)
		}
		return
	}
	if t[at+3] < 'B' || t[at+3] > 'Z' {
		return
	}
	end := secretRun(t, at+3, 1024, secretIsAlnum)
	body := t[at+3 : end]
	lower, upper, digit, _ := secretClasses(body)
	if len(body) < 80 || len(body) >= 1024 || lower == 0 || upper == 0 || digit == 0 || secretFiller(body) {
		return
	}
	w.add(at, end, "facebook_access_token", 0.9, secretPrioFormat)
}

// openAIAnthropic finds OpenAI keys, which carry the marker "T3BlbkFJ" (base64 of
// "OpenAI"), and Anthropic keys: "sk-ant-<kind><version>-", 93 characters and "AA".
func (w *secretScan) openAIAnthropic(at int) {
	t := w.text
	if !strings.HasPrefix(t[at:], "sk-") || !secretLeftEdge(t, at) {
		return
	}
	end := secretRun(t, at+3, 400, secretIsToken)
	if end < len(t) && secretIsAlnum(t[end]) {
		return
	}
	tok := t[at:end]
	if rest, ok := strings.CutPrefix(tok, "sk-ant-"); ok {
		i := strings.IndexByte(rest, '-')
		if i < 3 || i > 10 {
			return
		}
		body := rest[i+1:]
		if len(body) != 95 || !strings.HasSuffix(body, "AA") || secretFiller(body[:93]) {
			return
		}
		w.add(at, end, "anthropic_api_key", 0.97, secretPrioFormat)
		return
	}
	i := strings.Index(tok, "T3BlbkFJ")
	if i < 0 || len(tok) < 40 || len(tok)-i-8 < 16 || secretFiller(tok[3:]) {
		return
	}
	w.add(at, end, "openai_api_key", 0.97, secretPrioFormat)
}

// googleKey finds Google API keys ("AIza" and 35 characters) when the line before them
// names a key, a token, an API or Google: such keys are often public by design (browser
// and Firebase keys restricted by referrer), and a bare one is not taken for a leak.
func (w *secretScan) googleKey(at int) {
	t := w.text
	if !strings.HasPrefix(t[at:], "AIza") || !secretLeftEdge(t, at) {
		return
	}
	end, ok := secretExactToken(t, at+4, 35)
	if !ok {
		return
	}
	ls := max(0, at-160)
	if i := strings.LastIndexByte(t[ls:at], '\n'); i >= 0 {
		ls += i + 1
	}
	ctx := strings.ToLower(t[ls:at])
	found := false
	for _, k := range []string{"key", "token", "api", "google", "firebase", "gcp", "maps", "secret", "auth", "credential"} {
		if strings.Contains(ctx, k) {
			found = true
			break
		}
	}
	if found {
		w.add(at, end, "google_api_key", 0.85, secretPrioFormat)
	}
}

// azureClientSecret finds Microsoft Entra ID client secrets: three characters, a
// digit, "Q~" and 31 to 34 characters.
func (w *secretScan) azureClientSecret(at int) {
	t := w.text
	if at < 4 || t[at] != 'Q' || !secretIsDigit(t[at-1]) {
		return
	}
	inSet := func(b byte) bool { return secretIsWord(b) || b == '~' || b == '.' || b == '-' }
	start := at - 4
	for i := start; i < at-1; i++ {
		if !(secretIsWord(t[i]) || t[i] == '~' || t[i] == '.') {
			return
		}
	}
	if start > 0 && inSet(t[start-1]) {
		return
	}
	end := secretRun(t, at+2, 35, inSet)
	if n := end - at - 2; n < 31 || n > 34 || end < len(t) && inSet(t[end]) || secretFiller(t[at+2:end]) {
		return
	}
	w.add(start, end, "azure_client_secret", 0.9, secretPrioFormat)
}

// azureStorageKey finds the key of an Azure storage or service-bus connection string,
// "AccountKey=<base64>" or "SharedAccessKey=<base64>".
func (w *secretScan) azureStorageKey(at int) {
	t := w.text
	i := at
	for i < len(t) && secretIsAlpha(t[i]) {
		i++
	}
	i = secretSkipSpaces(t, i)
	if i >= len(t) || t[i] != '=' {
		return
	}
	i = secretSkipSpaces(t, i+1)
	if i < len(t) && (t[i] == '"' || t[i] == '\'') {
		i++
	}
	end := secretRun(t, i, 129, func(b byte) bool { return secretInCharset(secretCharBase64, b) })
	v := t[i:end]
	if len(v) < 40 || len(v) > 128 || secretFiller(v) || secretEntropy(v) < 4 {
		return
	}
	w.add(i, end, "azure_storage_key", 0.95, secretPrioShape)
}

func secretIsAlpha(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }

func secretSkipSpaces(t string, i int) int {
	for i < len(t) && secretIsSpace(t[i]) {
		i++
	}
	return i
}

// azureSAS finds the signature of an Azure shared-access-signature URL: "sig=" in a
// query that also carries the "sv=" service version.
func (w *secretScan) azureSAS(at int) {
	t := w.text
	if !strings.HasPrefix(t[at:], "sig=") || at > 0 && secretIsWord(t[at-1]) || at < w.sasDone {
		return
	}
	qs := secretRunBack(t, at, 512, func(b byte) bool { return b > ' ' && b != '"' && b != '\'' })
	if !strings.Contains(t[qs:at], "sv=") {
		return
	}
	start := at + 4
	end := secretRun(t, start, 201, func(b byte) bool { return secretIsAlnum(b) || b == '%' || b == '+' || b == '/' || b == '=' })
	w.sasDone = end
	if n := end - start; n < 30 || n > 200 || secretFiller(t[start:end]) {
		return
	}
	w.add(start, end, "azure_sas_token", 0.85, secretPrioShape)
}

// vaultLegacy finds HashiCorp Vault service tokens of the old form, "s." and 24
// characters of mixed case with digits.
func (w *secretScan) vaultLegacy(at int) {
	t := w.text
	if t[at] != 's' || at > 0 && (secretIsWord(t[at-1]) || t[at-1] == '.' || t[at-1] == '-') {
		return
	}
	end := secretRun(t, at+2, 25, secretIsAlnum)
	if end-at-2 != 24 || end < len(t) && (secretIsWord(t[end]) || t[end] == '.' || t[end] == '-') {
		return
	}
	body := t[at+2 : end]
	lower, upper, digit, _ := secretClasses(body)
	if lower == 0 || upper == 0 || digit == 0 || secretEntropy(body) < 3.5 || secretFiller(body) {
		return
	}
	w.add(at, end, "vault_token", 0.85, secretPrioFormat)
}

// onePasswordSecretKey finds 1Password account secret keys,
// "A3-XXXXXX-XXXXXX-XXXXX-XXXXX-XXXXX-XXXXX" (or with an 11-character second group).
func (w *secretScan) onePasswordSecretKey(at int) {
	t := w.text
	if !strings.HasPrefix(t[at:], "A3-") || !secretLeftEdge(t, at) {
		return
	}
	end := secretRun(t, at+3, 45, func(b byte) bool { return secretInCharset(secretCharUpperAlnum, b) || b == '-' })
	if end < len(t) && secretIsAlnum(t[end]) {
		return
	}
	groups := strings.Split(t[at+3:end], "-")
	var lens []int
	for _, g := range groups {
		lens = append(lens, len(g))
	}
	ok := len(lens) == 5 && lens[0] == 6 && lens[1] == 11 && lens[2] == 5 && lens[3] == 5 && lens[4] == 5 ||
		len(lens) == 6 && lens[0] == 6 && lens[1] == 6 && lens[2] == 5 && lens[3] == 5 && lens[4] == 5 && lens[5] == 5
	if !ok || secretFiller(strings.Join(groups, "")) {
		return
	}
	w.add(at, end, "onepassword_secret_key", 0.9, secretPrioFormat)
}

// terraform finds Terraform Cloud API tokens, "<14 chars>.atlasv1.<60 to 70 chars>".
func (w *secretScan) terraform(at int) {
	t := w.text
	ls := secretRunBack(t, at, 15, func(b byte) bool { return secretInCharset(secretCharLowerAlnum, b) })
	if at-ls != 14 || !secretLeftEdge(t, ls) {
		return
	}
	start := at + len(".atlasv1.")
	end := secretRun(t, start, 71, func(b byte) bool { return secretIsWord(b) || b == '-' || b == '=' })
	if n := end - start; n < 60 || n > 70 || secretFiller(t[ls:at]) || secretFiller(t[start:end]) {
		return
	}
	w.add(ls, end, "terraform_token", 0.95, secretPrioFormat)
}

// artifactoryHeader finds the value of the X-JFrog-Art-Api header.
func (w *secretScan) artifactoryHeader(at int) {
	t := w.text
	i := at + len("x-jfrog-art-api")
	if i < len(t) && (t[i] == '"' || t[i] == '\'') {
		i++
	}
	i = secretSkipSpaces(t, i)
	if i >= len(t) || t[i] != ':' && t[i] != '=' {
		return
	}
	i = secretSkipSpaces(t, i+1)
	if i < len(t) && (t[i] == '"' || t[i] == '\'') {
		i++
	}
	end := secretRun(t, i, 129, secretIsAlnum)
	v := t[i:end]
	if len(v) < 16 || len(v) > 128 || end < len(t) && secretIsWord(t[end]) || secretFiller(v) || secretEntropy(v) < 3.5 {
		return
	}
	w.add(i, end, "artifactory_token", 0.85, secretPrioShape)
}

// privateKeyBlock finds PEM and OpenSSH private keys, "-----BEGIN ... PRIVATE KEY-----";
// the span is the body between the header and the footer (or, with no footer, the run
// of base64 after the header). Bodies escaped inside JSON strings ("\n") count too.
func (w *secretScan) privateKeyBlock(at int) {
	t := w.text
	if !strings.HasPrefix(t[at:], "-----BEGIN ") {
		return
	}
	ls := at + len("-----BEGIN ")
	le := secretRun(t, ls, 64, func(b byte) bool { return b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == ' ' })
	label := t[ls:le]
	if !strings.HasPrefix(t[le:], "-----") || !(strings.HasSuffix(label, "PRIVATE KEY") || strings.HasSuffix(label, "PRIVATE KEY BLOCK")) {
		return
	}
	hdrEnd := le + 5
	// The next footer, cached so that many headers share one search.
	if w.pemFrom < 0 || hdrEnd < w.pemFrom || w.pemEnd >= 0 && hdrEnd > w.pemEnd {
		w.pemFrom = hdrEnd
		w.pemEnd = -1
		if i := strings.Index(t[hdrEnd:], "-----END"); i >= 0 {
			w.pemEnd = hdrEnd + i
		}
	}
	var bs, be int
	if w.pemEnd >= 0 && w.pemEnd-hdrEnd <= 64<<10 {
		bs, be = hdrEnd, w.pemEnd
	} else {
		bs = hdrEnd
		be = secretRun(t, bs, 16<<10, func(b byte) bool {
			return secretInCharset(secretCharBase64, b) || b == '\n' || b == '\r' || b == ' ' || b == '\t' || b == '\\'
		})
	}
	// Trim blank space and escaped newlines around the body.
	for bs < be {
		switch {
		case t[bs] == '\n' || t[bs] == '\r' || t[bs] == ' ' || t[bs] == '\t':
			bs++
			continue
		case t[bs] == '\\' && bs+1 < be && (t[bs+1] == 'n' || t[bs+1] == 'r'):
			bs += 2
			continue
		}
		break
	}
	for be > bs {
		switch {
		case t[be-1] == '\n' || t[be-1] == '\r' || t[be-1] == ' ' || t[be-1] == '\t':
			be--
			continue
		case be-2 >= bs && t[be-2] == '\\' && (t[be-1] == 'n' || t[be-1] == 'r'):
			be -= 2
			continue
		}
		break
	}
	body := t[bs:be]
	compact := secretBase64Chars(body)
	need := 32
	if w.pemEnd < 0 {
		need = 64
	}
	if len(compact) < need || secretKeyBodyFiller(compact) {
		return
	}
	score := 0.99
	if strings.Contains(label, "ENCRYPTED") || strings.Contains(body, "ENCRYPTED") {
		score = 0.8
	}
	w.add(bs, be, "private_key", score, secretPrioShape)
}

// secretKeyBodyFiller reports whether the base64 body of a key block is a placeholder.
// Encoded keys legitimately hold long runs of "A" (zero bytes), so only masks and a lack
// of entropy count.
func secretKeyBodyFiller(compact string) bool {
	lower := strings.ToLower(compact)
	return strings.Contains(lower, "xxxx") || secretEntropy(compact) < 3.5
}

// secretBase64Chars returns the base64 characters of s, skipping escaped newlines.
func secretBase64Chars(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) && (s[i+1] == 'n' || s[i+1] == 'r') {
			i++
			continue
		}
		if secretInCharset(secretCharBase64, c) {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// puttyKey finds the private part of a PuTTY key file, the lines after "Private-Lines:".
func (w *secretScan) puttyKey(at int) {
	t := w.text
	if !strings.HasPrefix(t[at:], "Private-Lines:") {
		return
	}
	i := secretRun(t, at+len("Private-Lines:"), 8, func(b byte) bool { return secretIsDigit(b) || b == ' ' })
	for i < len(t) && (t[i] == '\r' || t[i] == '\n') {
		i++
	}
	end := secretRun(t, i, 16<<10, func(b byte) bool { return secretInCharset(secretCharBase64, b) || b == '\n' || b == '\r' })
	for end > i && (t[end-1] == '\n' || t[end-1] == '\r') {
		end--
	}
	// Stop before the "Private-MAC:" line, whose first word the run may have taken.
	if j := strings.LastIndexAny(t[i:end], "\r\n"); j >= 0 && strings.HasPrefix(t[i+j+1:], "Private-") {
		end = i + j
		for end > i && (t[end-1] == '\n' || t[end-1] == '\r') {
			end--
		}
	}
	if compact := secretBase64Chars(t[i:end]); len(compact) < 32 || secretKeyBodyFiller(compact) {
		return
	}
	w.add(i, end, "private_key", 0.95, secretPrioShape)
}

// jwt finds JSON Web Tokens: base64url segments separated by dots, the first decoding
// to a JSON object with an "alg" member and the second to a JSON object.
func (w *secretScan) jwt(at int) {
	t := w.text
	if !strings.HasPrefix(t[at:], "eyJ") || at > 0 && (secretIsWord(t[at-1]) || t[at-1] == '-' || t[at-1] == '.') {
		return
	}
	seg := func(b byte) bool { return secretIsWord(b) || b == '-' }
	var segs [][2]int
	i := at
	for len(segs) < 5 {
		end := secretRun(t, i, 16<<10, seg)
		segs = append(segs, [2]int{i, end})
		if end >= len(t) || t[end] != '.' {
			break
		}
		i = end + 1
	}
	if len(segs) < 2 || segs[0][1]-segs[0][0] < 10 || segs[1][1]-segs[1][0] < 4 {
		return
	}
	last := segs[len(segs)-1]
	if last[1] < len(t) && (secretIsAlnum(t[last[1]]) || t[last[1]] == '+' || t[last[1]] == '/') {
		return
	}
	var header map[string]any
	if !secretDecodeJSON(t[segs[0][0]:segs[0][1]], &header) {
		return
	}
	if _, ok := header["alg"]; !ok {
		return
	}
	var payload any
	if !secretDecodeJSON(t[segs[1][0]:segs[1][1]], &payload) {
		return
	}
	if _, ok := payload.(map[string]any); !ok {
		if _, enc := header["enc"]; !enc {
			return
		}
	}
	end := last[1]
	if end == last[0] { // an empty signature: stop after the payload
		end = segs[len(segs)-2][1]
	}
	score := 0.95
	if len(segs) == 2 || last[1] == last[0] {
		score = 0.8
	}
	w.add(at, end, "jwt", score, secretPrioFormat)
}

// secretDecodeJSON decodes a base64url segment holding JSON into v.
func secretDecodeJSON(s string, v any) bool {
	if len(s) > 8<<10 {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return false
	}
	return json.Unmarshal(raw, v) == nil
}

// urlPassword finds the password of a URL with credentials, "scheme://user:password@host":
// database and broker connection strings and HTTP URLs alike.
func (w *secretScan) urlPassword(at int) {
	t := w.text
	ss := secretRunBack(t, at, 32, func(b byte) bool { return secretIsAlnum(b) || b == '+' || b == '.' || b == '-' })
	for ss < at && !secretIsAlpha(t[ss]) {
		ss++
	}
	if ss == at {
		return
	}
	i := at + 3
	limit := min(len(t), i+512)
	atSign := -1
	for j := i; j < limit; j++ {
		c := t[j]
		if c == '/' || c == '?' || c == '#' || c <= ' ' || c == '"' || c == '\'' || c == '`' || c == '<' || c == '>' || c == '\\' {
			break
		}
		if c == '@' {
			atSign = j
		}
	}
	if atSign < 0 || atSign+1 >= len(t) || !(secretIsAlnum(t[atSign+1]) || t[atSign+1] == '[') {
		return
	}
	userinfo := t[i:atSign]
	colon := strings.IndexByte(userinfo, ':')
	if colon < 0 {
		return
	}
	user, pass := userinfo[:colon], userinfo[colon+1:]
	if !secretJudgeLoginPassword(user, pass, 4) {
		return
	}
	scheme := strings.ToLower(t[ss:at])
	score := 0.9
	if scheme == "http" || scheme == "https" {
		score = 0.8
	}
	w.add(i+colon+1, atSign, "connection_string", score, secretPrioShape)
}

// secretJudgeLoginPassword accepts the password of a user:password pair unless it is
// empty, shorter than minLen, a reference, a placeholder, a port number or the user
// name again.
func secretJudgeLoginPassword(user, pass string, minLen int) bool {
	if len(pass) < minLen || len(pass) > 256 || strings.EqualFold(user, pass) {
		return false
	}
	if secretIsReference(pass, true) || secretIsPlaceholder(pass) {
		return false
	}
	lower, upper, digit, _ := secretClasses(pass)
	if lower+upper+digit < 3 || lower+upper == 0 && len(pass) <= 6 {
		return false
	}
	return true
}

// authorization finds the credential of an HTTP Authorization header or field.
func (w *secretScan) authorization(at int) {
	t := w.text
	i := at + len("authorization")
	if i < len(t) && (t[i] == '"' || t[i] == '\'') {
		i++
	}
	i = secretSkipSpaces(t, i)
	if i >= len(t) || t[i] != ':' && t[i] != '=' {
		return
	}
	i = secretSkipSpaces(t, i+1)
	if i < len(t) && (t[i] == '"' || t[i] == '\'') {
		i++
	}
	scheme := ""
	if j := secretRun(t, i, 16, func(b byte) bool { return secretIsAlpha(b) || b == '-' }); j < len(t) && t[j] == ' ' {
		switch s := strings.ToLower(t[i:j]); s {
		case "bearer", "basic", "token", "bot", "apikey", "api-key", "key", "jwt", "ssws", "sso-key", "oauth", "digest":
			scheme = s
			i = secretSkipSpaces(t, j)
		}
	}
	w.authValue(i, scheme, 16)
}

// bearer finds a bearer token outside an Authorization header.
func (w *secretScan) bearer(at int) {
	if at > 0 && secretIsWord(w.text[at-1]) {
		return
	}
	w.authValue(secretSkipSpaces(w.text, at+len("bearer ")), "bearer", 20)
}

// basic finds basic credentials, base64 of "user:password", after the word "Basic".
func (w *secretScan) basic(at int) {
	if at > 0 && secretIsWord(w.text[at-1]) {
		return
	}
	w.authValue(secretSkipSpaces(w.text, at+len("basic ")), "basic", 8)
}

// authValue judges the credential that starts at i, sent under the given scheme.
func (w *secretScan) authValue(i int, scheme string, minLen int) {
	t := w.text
	end := secretRun(t, i, 8<<10, func(b byte) bool {
		return secretIsWord(b) || b == '-' || b == '.' || b == '~' || b == '+' || b == '/' || b == '='
	})
	v := t[i:end]
	if scheme == "basic" {
		minLen = min(minLen, 8)
	}
	if len(v) < minLen || end < len(t) && (t[end] == '$' || t[end] == '{' || t[end] == '<' || t[end] == '(') {
		return
	}
	if scheme == "basic" {
		raw, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			raw, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(v, "="))
		}
		if err != nil || len(raw) < 3 {
			return
		}
		dec := string(raw)
		colon := strings.IndexByte(dec, ':')
		if colon <= 0 || !secretMostlyPrintable(dec) || secretIsPlaceholder(dec) || colon+1 < len(dec) && secretIsReference(dec[colon+1:], true) {
			return
		}
		w.add(i, end, "http_auth_header", 0.85, secretPrioShape)
		return
	}
	if secretFiller(v) || secretIsPlaceholder(v) || secretIsReference(v, true) {
		return
	}
	lower, upper, digit, _ := secretClasses(v)
	if secretEntropy(v) < 3.0 || digit == 0 && (lower == 0 || upper == 0) || lower+upper == 0 {
		return
	}
	w.add(i, end, "http_auth_header", 0.8, secretPrioShape)
}

// secretMostlyPrintable reports whether at least nine bytes in ten of s are printable
// ASCII, as the decoded "user:password" of a basic credential is (a stray byte is
// tolerated; random binary is not).
func secretMostlyPrintable(s string) bool {
	bad := 0
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			bad++
		}
	}
	return bad*10 <= len(s)
}

// curlUser finds the credentials of a curl command, "-u user:password" or
// "--user user:password"; the span is the password, or the user when the password is
// empty (an API key passed as the user name).
func (w *secretScan) curlUser(at int) {
	t := w.text
	if at == 0 || !secretIsSpace(t[at-1]) {
		return
	}
	i := at + 2
	if strings.HasPrefix(t[at:], "--user") {
		i = at + len("--user")
	} else if !strings.HasPrefix(t[at:], "-u") {
		return
	}
	if i >= len(t) || t[i] != ' ' && t[i] != '=' {
		return
	}
	if !secretContainsFold(t[max(0, at-1024):at], "curl") {
		return
	}
	i = secretSkipSpaces(t, i+1)
	var vs, ve int
	if i < len(t) && (t[i] == '"' || t[i] == '\'') {
		q := t[i]
		j := strings.IndexByte(t[i+1:min(len(t), i+513)], q)
		if j < 0 {
			return
		}
		vs, ve = i+1, i+1+j
		if ve+1 < len(t) && t[ve+1] > ' ' {
			return // a quoted part followed by more: "${user}":"${pass}"
		}
	} else {
		vs = i
		ve = secretRun(t, i, 512, func(b byte) bool { return b > ' ' })
	}
	v := t[vs:ve]
	colon := strings.IndexByte(v, ':')
	if colon < 0 {
		return
	}
	user, pass := v[:colon], v[colon+1:]
	if pass == "" {
		if secretJudgeLoginPassword("", user, 6) && secretLooksRandom(user) {
			w.add(vs, vs+colon, "http_basic_auth", 0.75, secretPrioShape)
		}
		return
	}
	if secretJudgeLoginPassword(user, pass, 6) && secretLooksRandom(pass) {
		w.add(vs+colon+1, ve, "http_basic_auth", 0.75, secretPrioShape)
	}
}

// secretLooksRandom reports whether a short credential mixes character classes or has
// the entropy of a random string.
func secretLooksRandom(s string) bool {
	lower, upper, digit, other := secretClasses(s)
	classes := 0
	for _, n := range []int{lower, upper, digit, other} {
		if n > 0 {
			classes++
		}
	}
	return classes >= 2 && secretEntropy(s) >= 2.5 || len(s) >= 12 && secretEntropy(s) >= 3.3
}

func secretContainsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// npmrc finds the credential of an .npmrc registry line, "//host/path/:_authToken=value"
// (also ":_auth" and ":_password").
func (w *secretScan) npmrc(at int) {
	t := w.text
	if at == 0 || t[at-1] != '/' || at < w.npmDone {
		return
	}
	ls := strings.LastIndex(t[max(0, at-256):at], "//")
	if ls < 0 {
		return
	}
	ls += max(0, at-256)
	if ls+2 >= at-1 {
		return
	}
	host := t[ls+2 : at-1]
	if host == "" || strings.ContainsAny(host, " \t\n\"'") || !secretIsAlnum(host[0]) {
		return
	}
	i := at + 1
	if i < len(t) && t[i] == '_' {
		i++
	}
	i = secretSkipSpaces(t, secretRun(t, i, 16, secretIsAlpha))
	if i >= len(t) || t[i] != '=' {
		return
	}
	i = secretSkipSpaces(t, i+1)
	if i < len(t) && (t[i] == '"' || t[i] == '\'') {
		i++
	}
	end := secretRun(t, i, 257, func(b byte) bool { return b > ' ' && b != '"' && b != '\'' })
	w.npmDone = end
	v := t[i:end]
	if len(v) < 10 || len(v) > 256 || secretIsReference(v, true) || secretIsPlaceholder(v) || secretFiller(v) {
		return
	}
	w.add(i, end, "npm_token", 0.9, secretPrioShape)
}

// gcpServiceAccount finds the "type": "service_account" member that marks a Google
// Cloud service-account key file; the private key in it is found by privateKeyBlock.
func (w *secretScan) gcpServiceAccount(at int) {
	t := w.text
	i := at
	for i > 0 && secretIsSpace(t[i-1]) {
		i--
	}
	if i == 0 || t[i-1] != ':' {
		return
	}
	i--
	for i > 0 && secretIsSpace(t[i-1]) {
		i--
	}
	if i < 6 || t[i-6:i] != `"type"` {
		return
	}
	w.add(at+1, at+1+len("service_account"), "gcp_service_account", 0.5, secretPrioShape)
}
