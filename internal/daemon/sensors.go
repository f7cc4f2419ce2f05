package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/inspect"
	"github.com/chaperone-dev/chaperone/internal/inspect/classifier"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// buildSensors makes the content sensors the configuration asks for.
func buildSensors(cfg *config.Config) (*pipeline.Sensors, error) {
	sc := &cfg.Sensors
	det, err := injectionDetector(sc.Injection)
	if err != nil {
		return nil, err
	}
	pii, err := inspect.NewPIIScanner(nil)
	if err != nil {
		return nil, fmt.Errorf("sensors: %w", err)
	}
	key, err := loadOrCreateKey(sc.TokenKeyFile)
	if err != nil {
		return nil, fmt.Errorf("sensors.token_key_file: %w", err)
	}
	s := &pipeline.Sensors{
		Injection: det,
		Secrets:   inspect.NewSecretScanner(),
		PII:       pii,
		Budget:    sc.Budget.D(),
		FailOpen:  sc.OnError == "open",
		VaultKey:  key,
		Nonce:     nonce,
	}
	if c := sc.Injection.Classifier; c != nil {
		if s.Classifier, err = classifier.New(classifier.Options{
			URL: c.URL, Timeout: c.Timeout.D(), FailMode: c.Fail, Header: c.Headers, Threshold: c.Threshold,
		}); err != nil {
			return nil, fmt.Errorf("sensors.injection.classifier: %w", err)
		}
	}
	if err := s.Init(); err != nil {
		return nil, fmt.Errorf("sensors: %w", err)
	}
	return s, nil
}

// injectionDetector loads the model the configuration names: the embedded one, none
// ("rules") or a file.
func injectionDetector(c config.InjectionSensor) (*inspect.InjectionDetector, error) {
	var m *inspect.Model
	var err error
	switch c.Model {
	case "rules":
	case "embedded", "":
		m, err = inspect.DefaultModel()
	default:
		var b []byte
		if b, err = os.ReadFile(c.Model); err == nil {
			m, err = inspect.LoadModel(b)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("sensors.injection.model: %w", err)
	}
	return inspect.NewInjectionDetector(m, c.Threshold), nil
}

// loadOrCreateKey reads a hex key file, creating it with 32 random bytes on first start.
func loadOrCreateKey(path string) ([]byte, error) {
	h, err := secretFile(path, func() string {
		key := make([]byte, 32)
		rand.Read(key)
		return hex.EncodeToString(key)
	})
	if err != nil {
		return nil, err
	}
	key, err := hex.DecodeString(h)
	if err != nil || len(key) < 16 {
		return nil, fmt.Errorf("%s: want at least 16 bytes as hex", path)
	}
	return key, nil
}

func nonce() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// toolSettings turns a tool's sensor configuration, completed from the defaults, into
// what the pipeline runs.
func toolSettings(cfg *config.Config, t config.Tool) (inspect.ToolSettings, error) {
	c := t.Sensors.Effective(cfg.Sensors.Defaults)
	s := inspect.ToolSettings{
		ResultInjection: c.Results.Injection,
		ResultSecrets:   c.Results.Secrets,
		ResultPII:       c.Results.PII,
		ReceivePII:      c.Arguments.ReceivePII,
		Resolve:         c.Egress.Resolve,
		Spotlight:       c.Results.Spotlight != nil && *c.Results.Spotlight,
		Datamark:        c.Results.Datamark != nil && *c.Results.Datamark,
	}
	if c.Results.Sanitize != "off" {
		s.Sanitize = c.Results.Sanitize
	}
	e, err := inspect.CompileEgress(c.Egress.Policy())
	if err != nil {
		return s, err
	}
	s.Egress = e
	return s, nil
}

// definitionText is the prose of a tool definition: its title and description and the
// titles and descriptions in its input and output schemas — what a model reads as
// instructions. The schemas' structure is left out: JSON punctuation is not language.
func definitionText(t *upstream.Tool) string {
	var b strings.Builder
	b.WriteString(t.Title)
	b.WriteString("\n")
	b.WriteString(t.Description)
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		if depth > 32 || b.Len() > 64<<10 {
			return
		}
		switch x := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if s, ok := x[k].(string); ok && (k == "description" || k == "title") {
					b.WriteString("\n")
					b.WriteString(s)
					continue
				}
				walk(x[k], depth+1)
			}
		case []any:
			for _, e := range x {
				walk(e, depth+1)
			}
		}
	}
	for _, raw := range []json.RawMessage{t.InputSchema, t.OutputSchema} {
		var schema any
		if json.Unmarshal(raw, &schema) == nil {
			walk(schema, 0)
		}
	}
	return b.String()
}

// reviewer returns the registry's review of tool definitions: the injection detector on
// the description, title and schema text an upstream offers.
func reviewer(det *inspect.InjectionDetector) func(t *upstream.Tool) string {
	if det == nil {
		return nil
	}
	return func(t *upstream.Tool) string {
		r := det.Detect(definitionText(t))
		if !r.Detected {
			return ""
		}
		// A tool description is addressed to the model by nature ("Use this tool when
		// ..."), which the model was not trained on: a definition is flagged only when a
		// rule names what it does, not on the model's word alone.
		var signals []string
		ruled := false
		for _, e := range r.Evidence {
			signals = append(signals, e.Signal)
			ruled = ruled || e.Signal != "model"
		}
		if !ruled {
			return ""
		}
		return fmt.Sprintf("reads as a prompt injection (score %.2f: %s)", r.Score, strings.Join(signals, ", "))
	}
}
