package report

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/chaperone-dev/chaperone/internal/insight"
)

// reportCSS lays the page out for screen and paper; the charts' colours are
// [insight.ChartCSS].
const reportCSS = `body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#212121;max-width:62rem;margin:2rem auto;padding:0 1rem;line-height:1.45}
h1{font-size:1.7rem;margin-bottom:.2rem}h2{font-size:1.3rem;border-bottom:1px solid #bdbdbd;padding-bottom:.2rem;margin-top:2.2rem}h3{font-size:1.05rem}
.meta{color:#555}
table{border-collapse:collapse;width:100%;margin:.6rem 0;font-size:.92rem}
th,td{border:1px solid #d0d0d0;padding:.25rem .45rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}
td.n{text-align:right;font-variant-numeric:tabular-nums}
code,pre,.hash{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85rem;overflow-wrap:anywhere}
pre,.hash{word-break:break-all}
pre{background:#f7f7f7;border:1px solid #e0e0e0;padding:.5rem;white-space:pre-wrap}
.ok{color:#1b5e20;font-weight:600}.bad{color:#b71c1c;font-weight:600}
.letter{border:1px solid #d0d0d0;border-left:4px solid #1565c0;padding:.2rem .9rem;margin:1rem 0}
.letter.denied,.letter.expired{border-left-color:#c62828}
.def{color:#444;font-size:.9rem}
nav ol{columns:2}
@media print{body{margin:0;max-width:none}a{color:inherit;text-decoration:none}.letter,table,svg{break-inside:avoid}h2{break-after:avoid}}
`

// pageTemplate is the HTML form of a report. Every value goes through html/template's
// contextual escaping; the only markup not written here is the charts', which
// html/template produced as well.
var pageTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"ts":         fmtTime,
	"rfc":        func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
	"day":        func(t time.Time) string { return t.UTC().Format("2006-01-02") },
	"clock":      func(t time.Time) string { return t.UTC().Format("15:04:05") },
	"pct":        func(v float64) string { return fmt.Sprintf("%.1f%%", v*100) },
	"dur":        fmtSeconds,
	"money":      func(v float64) string { return fmt.Sprintf("%.2f", v) },
	"join":       joinOrNone,
	"preview":    preview,
	"timeChart":  insight.TimeChart,
	"barChart":   insight.BarChart,
	"approvers":  approvers,
	"css":        func() template.CSS { return template.CSS(insight.ChartCSS + reportCSS) },
	"inWindow":   func(f insight.Figures) string { return fmtSeconds(f.Window.BucketSeconds) },
	"notCovered": func(v Verification) bool { return v.Anchor != nil && v.NotCovered > 0 },
}).Parse(pageHTML))

// WriteHTML writes the report as one self-contained HTML page: inline style, no script,
// nothing loaded from elsewhere.
func (r *Report) WriteHTML(w io.Writer) error {
	if err := pageTemplate.Execute(w, r); err != nil {
		return fmt.Errorf("report: write html: %w", err)
	}
	return nil
}

// fmtTime formats a time for the page, in UTC; a zero time as a dash.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// fmtSeconds formats a duration given in seconds for a person.
func fmtSeconds(s float64) string {
	switch {
	case math.IsNaN(s) || math.IsInf(s, 0) || s < 0:
		return "—"
	case s == 0:
		return "0 s"
	case s < 1:
		return fmt.Sprintf("%.0f ms", s*1000)
	case s < 60:
		return fmt.Sprintf("%.1f s", s)
	case s > 100*365*24*3600:
		return fmt.Sprintf("%.0f days", s/86400)
	}
	return (time.Duration(s) * time.Second).Round(time.Second).String()
}

// joinOrNone lists names, or says there are none.
func joinOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// preview is an argument preview for the page, cut to maxPreview bytes.
func preview(raw json.RawMessage) string {
	s := string(raw)
	if len(s) <= maxPreview {
		return s
	}
	cut := maxPreview
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("…(%d more bytes; report.json has them)", len(s)-cut)
}

// approvers names who approved a request, with the time of each when there were several.
func approvers(l Letter) string {
	switch len(l.Approvers) {
	case 0:
		return "nobody"
	case 1:
		return l.Approvers[0].By
	}
	parts := make([]string, len(l.Approvers))
	for i, a := range l.Approvers {
		parts[i] = fmt.Sprintf("%s (at %s UTC)", a.By, a.At.UTC().Format("15:04:05"))
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>{{css}}</style>
</head>
<body>
<header>
<h1>{{.Title}}</h1>
<p class="meta">Window: {{ts .Window.From}} to {{ts .Window.To}} (events at or after the start and before the end).<br>
Generated {{ts .GeneratedAt}} by Chaperone from the audit log and the store.</p>
</header>

<nav aria-label="Contents">
<h2 id="contents">Contents</h2>
<ol>
<li><a href="#summary">Summary</a></li>
<li><a href="#decisions">Call decisions</a></li>
<li><a href="#governance">Governance figures</a></li>
<li><a href="#letters">Decision letters</a></li>
<li><a href="#approvals">Approvals</a></li>
<li><a href="#containment">Containment</a></li>
<li><a href="#agents">Agents</a></li>
<li><a href="#policies">Policy versions</a></li>
<li><a href="#sensors">Sensors, tasks and authentication</a></li>
<li><a href="#integrity">Integrity of the audit log</a></li>
<li><a href="#notes">Notes and how to check this report</a></li>
</ol>
</nav>

<section>
<h2 id="summary">1. Summary</h2>
<p>In this window Chaperone recorded {{.Figures.Events}} events, {{.Figures.Calls}} of them call decisions:
{{.Figures.Decisions.Allow}} allowed, {{.Figures.Decisions.Approve}} allowed after a person approved,
{{.Figures.Decisions.Deny}} denied by policy, {{.Figures.Decisions.Refused}} refused and {{.Figures.Decisions.Suggested}} recorded as suggestions.
{{pct .Figures.Governance.WithinAllowLists}} of the calls were within what the policy allows;
{{.Figures.Governance.UnsafeAttempts}} unsafe attempts were stopped; {{len .Figures.Kills}} kill switches were pulled
and {{.Figures.BreakerTrips}} circuit breakers tripped. {{len .Letters}} approval requests were decided.</p>
<p>Audit log: {{if .Verification.OK}}<span class="ok">chain intact</span> ({{.Verification.Events}} events checked{{if .Verification.Anchor}}, anchored in {{.Verification.CheckpointsMatched}} signed checkpoints{{end}}).{{else}}<span class="bad">chain BROKEN at event {{.Verification.Broken.Seq}}</span>: {{.Verification.Broken.Problem}}. The figures of this report rest on a log that was altered; see <a href="#integrity">section 10</a>.{{end}}</p>
</section>

<section>
<h2 id="decisions">2. Call decisions</h2>
<p class="def">A call decision is a call.intent (the call was forwarded), call.refused or call.suggested event. Buckets of {{inWindow .Figures}}, times in UTC.</p>
{{timeChart .Figures.Series}}
<table>
<tr><th>Outcome</th><th>Calls</th><th>Meaning</th></tr>
<tr><td>allowed</td><td class="n">{{.Figures.Decisions.Allow}}</td><td>the policy allowed the call; it was forwarded</td></tr>
<tr><td>approved</td><td class="n">{{.Figures.Decisions.Approve}}</td><td>the policy held the call; a person approved it; it was forwarded</td></tr>
<tr><td>denied</td><td class="n">{{.Figures.Decisions.Deny}}</td><td>the policy denied the call (or could not be evaluated, and failed closed)</td></tr>
<tr><td>refused</td><td class="n">{{.Figures.Decisions.Refused}}</td><td>stopped by something else: kill switch, budget, unknown tool, invalid arguments, egress, a declined or expired approval…</td></tr>
<tr><td>suggested</td><td class="n">{{.Figures.Decisions.Suggested}}</td><td>a suggest-only agent's call, recorded for a person, not executed</td></tr>
<tr><th>all</th><th class="n">{{.Figures.Calls}}</th><th></th></tr>
</table>
{{barChart "Most frequent reasons for refusing a call" .Figures.TopReasons}}
{{barChart "Rules most often behind a refusal" .Figures.TopRules}}
</section>

<section>
<h2 id="governance">3. Governance figures</h2>
<table>
<tr><th>Figure</th><th>Value</th><th>Definition</th></tr>
<tr><td>Calls within allow-lists</td><td class="n">{{pct .Figures.Governance.WithinAllowLists}}</td><td>(allowed + approved calls) ÷ all call decisions = {{.Figures.Governance.AllowedCalls}} ÷ {{.Figures.Calls}}. Every other call was not forwarded.</td></tr>
<tr><td>Unsafe attempts stopped</td><td class="n">{{.Figures.Governance.UnsafeAttempts}}</td><td>refused calls the policy denied (reason other than policy_error, information-flow rules included) or the egress sensor refused (egress_denied).</td></tr>
<tr><td>Mean time between unsafe attempts</td><td class="n">{{if .Figures.Governance.UnsafeAttempts}}{{dur .Figures.Governance.MeanSecondsBetweenUnsafe}}{{else}}—{{end}}</td><td>length of the window ÷ unsafe attempts.</td></tr>
<tr><td>Time to contain (mean)</td><td class="n">{{if .Figures.Kills}}{{dur .Figures.Governance.ContainMeanSeconds}}{{else}}—{{end}}</td><td>from pulling a kill switch to the end of the last call it cancelled, over the {{len .Figures.Kills}} kill switches of the window.</td></tr>
<tr><td>Time to contain (longest)</td><td class="n">{{if .Figures.Kills}}{{dur .Figures.Governance.ContainMaxSeconds}}{{else}}—{{end}}</td><td></td></tr>
<tr><td>Approval rate</td><td class="n">{{pct .Figures.Approvals.Rate}}</td><td>approved ÷ (approved + declined + expired) requests.</td></tr>
<tr><td>Time to decide an approval (median / 90th percentile)</td><td class="n">{{dur .Figures.Approvals.MedianSeconds}} / {{dur .Figures.Approvals.P90Seconds}}</td><td>from the request to a person's decision.</td></tr>
</table>
</section>

<section>
<h2 id="letters">4. Decision letters</h2>
<p class="def">Every approval request decided in the window: high-risk calls the policy held for a person. Arguments are shown with secrets redacted.</p>
{{range .Letters}}
<article class="letter {{.Status}}">
<h3>{{.Tool}} for {{.Agent}} — {{.Status}} <code>{{.ID}}</code></h3>
{{if or (eq .Status "approved") (eq .Status "used")}}
<p>On {{day .DecidedAt}} at {{clock .DecidedAt}} UTC, {{approvers .}} approved <code>{{.Tool}}</code>{{if .Upstream}} (upstream {{.Upstream}}){{end}} for agent <code>{{.Agent}}</code>{{if .User}} acting for {{.User}}{{end}}{{if .Task}} in task <code>{{.Task}}</code>{{end}}.
{{if .UsedAt.IsZero}}The approved call has not run under this approval.{{else}}The call ran once, at {{ts .UsedAt}}.{{end}}</p>
{{else if eq .Status "denied"}}
<p>On {{day .DecidedAt}} at {{clock .DecidedAt}} UTC, {{if eq .DenyCode "killed"}}the {{.DeniedBy}} voided{{else}}{{.DeniedBy}} declined{{end}} <code>{{.Tool}}</code>{{if .Upstream}} (upstream {{.Upstream}}){{end}} for agent <code>{{.Agent}}</code>{{if .User}} acting for {{.User}}{{end}}{{if .Task}} in task <code>{{.Task}}</code>{{end}}, with reason <code>{{.DenyCode}}</code>{{if .DenyText}}: “{{.DenyText}}”{{end}}. The call did not run.</p>
{{else}}
<p>Nobody decided on <code>{{.Tool}}</code>{{if .Upstream}} (upstream {{.Upstream}}){{end}} for agent <code>{{.Agent}}</code>{{if .User}} acting for {{.User}}{{end}}{{if .Task}} in task <code>{{.Task}}</code>{{end}} by {{ts .ExpiresAt}}; on {{day .DecidedAt}} at {{clock .DecidedAt}} UTC the request was marked {{.Status}}, and the call did not run.</p>
{{end}}
<p>Reason held: rules {{join .Rules}}{{if .PolicyVersion}} of policy <span class="hash">{{.PolicyVersion}}</span>{{end}}; risk {{.Risk}} of 100{{if .RiskFactors}} ({{join .RiskFactors}}){{end}}.{{if .Explanation}} {{.Explanation}}{{end}}{{if .AgentReason}} The agent's stated reason: “{{.AgentReason}}”.{{end}}</p>
<p>Requested {{ts .RequestedAt}}; decided {{dur .DecideSeconds}} later{{if gt .Required 1}}; {{.Required}} approvers were required{{end}}.</p>
<p>Arguments (secrets redacted):</p>
<pre>{{preview .Arguments}}</pre>
{{if or (eq .Status "approved") (eq .Status "used")}}<p>To undo: {{.Undo}}{{if eq .UndoFrom "config"}} (from the gateway's configuration){{end}}</p>{{end}}
</article>
{{else}}
<p>No approval request was decided in this window.</p>
{{end}}
</section>

<section>
<h2 id="approvals">5. Approvals</h2>
<table>
<tr><th>Requested</th><th>Approved</th><th>Declined</th><th>Expired</th><th>Approval rate</th><th>Median time to decide</th><th>90th percentile</th></tr>
<tr><td class="n">{{.Figures.Approvals.Requested}}</td><td class="n">{{.Figures.Approvals.Approved}}</td><td class="n">{{.Figures.Approvals.Denied}}</td><td class="n">{{.Figures.Approvals.Expired}}</td><td class="n">{{pct .Figures.Approvals.Rate}}</td><td class="n">{{dur .Figures.Approvals.MedianSeconds}}</td><td class="n">{{dur .Figures.Approvals.P90Seconds}}</td></tr>
</table>
</section>

<section>
<h2 id="containment">6. Containment</h2>
<h3>Kill switches pulled</h3>
{{if .Containment.Kills}}
<table>
<tr><th>Time</th><th>Scope</th><th>Reason</th><th>By</th><th>Calls cancelled</th><th>Approvals voided</th><th>Time to contain</th><th>Detail</th></tr>
{{range .Containment.Kills}}<tr><td>{{ts .Time}}</td><td><code>{{.Scope}}</code></td><td>{{.Reason}}</td><td>{{if .DetailParsed}}{{.By}}{{else}}—{{end}}</td><td class="n">{{if .DetailParsed}}{{.CallsCancelled}}{{else}}—{{end}}</td><td class="n">{{if .DetailParsed}}{{.ApprovalsVoided}}{{else}}—{{end}}</td><td class="n">{{dur .ContainSeconds}}</td><td>{{.Detail}}</td></tr>
{{end}}</table>
{{else}}<p>None.</p>{{end}}
<h3>Kill switches lifted</h3>
{{if .Containment.Lifts}}
<table>
<tr><th>Time</th><th>Scope</th><th>Reason</th><th>Detail</th></tr>
{{range .Containment.Lifts}}<tr><td>{{ts .Time}}</td><td><code>{{.Scope}}</code></td><td>{{.Reason}}</td><td>{{.Detail}}</td></tr>
{{end}}</table>
{{else}}<p>None.</p>{{end}}
<h3>Circuit breakers tripped</h3>
{{if .Containment.BreakerTrips}}
<table>
<tr><th>Time</th><th>Agent</th><th>Signal</th><th>Detail</th></tr>
{{range .Containment.BreakerTrips}}<tr><td>{{ts .Time}}</td><td><code>{{.Agent}}</code></td><td>{{.Signal}}</td><td>{{.Detail}}</td></tr>
{{end}}</table>
{{barChart "Breaker trips by agent" .Figures.BreakerTripsByAgent}}
{{else}}<p>None.</p>{{end}}
</section>

<section>
<h2 id="agents">7. Agents</h2>
<h3>Directory</h3>
<p class="def">The agents registered in the store when the report was generated, and, when the report was made with the gateway's configuration (<code>--config</code>), the agents declared there (source <code>config</code>).</p>
{{if .Agents}}
<table>
<tr><th>Agent</th><th>Owner</th><th>Purpose</th><th>Environment</th><th>Autonomy</th><th>Status</th><th>Source</th></tr>
{{range .Agents}}<tr><td><code>{{.ID}}</code></td><td>{{.Owner}}</td><td>{{.Purpose}}</td><td>{{.Environment}}</td><td class="n">{{.Autonomy}}</td><td>{{.Status}}</td><td>{{.Source}}</td></tr>
{{end}}</table>
{{else}}<p>No agent is registered in the store (and no configuration was given).</p>{{end}}
<h3>Activity in the window</h3>
{{if .Figures.Agents}}
<table>
<tr><th>Agent</th><th>Call decisions</th><th>Denied or refused</th><th>Last seen</th></tr>
{{range .Figures.Agents}}<tr><td><code>{{.Agent}}</code></td><td class="n">{{.Calls}}</td><td class="n">{{.Refused}}</td><td>{{ts .LastSeen}}</td></tr>
{{end}}</table>
{{if .Figures.AgentEventsOmitted}}<p>{{.Figures.AgentEventsOmitted}} events of further agents are not listed.</p>{{end}}
{{else}}<p>No agent acted in this window.</p>{{end}}
</section>

<section>
<h2 id="policies">8. Policy versions</h2>
<p class="def">A version is the SHA-256 of the policy sources: the same hash means the same rules. A version is in force from its load until another is loaded.</p>
{{if .Policies}}
<table>
<tr><th>Version</th><th>Loaded</th><th>In force from</th><th>until</th><th>Loads in window</th><th>Calls decided</th></tr>
{{range .Policies}}<tr><td class="hash">{{.Version}}{{if .InForceAtStart}} (in force at the start){{end}}</td><td>{{ts .LoadedAt}}</td><td>{{ts .From}}</td><td>{{ts .Until}}</td><td class="n">{{.Loads}}</td><td class="n">{{.Calls}}</td></tr>
{{end}}</table>
{{else}}<p>No policy version is on record for this window.</p>{{end}}
</section>

<section>
<h2 id="sensors">9. Sensors, tasks and authentication</h2>
{{barChart "What the content sensors found" .Figures.SensorDetections}}
{{barChart "What the content sensors did" .Figures.SensorActions}}
<table>
<tr><th>Tasks ended</th><th>Steps (mean / median / most)</th><th>Spend of ended tasks (total / mean)</th><th>Model tokens</th><th>Spend charged by calls</th></tr>
<tr><td class="n">{{.Figures.Tasks.Ended}}</td><td class="n">{{printf "%.1f" .Figures.Tasks.StepsMean}} / {{.Figures.Tasks.StepsMedian}} / {{.Figures.Tasks.StepsMax}}</td><td class="n">{{money .Figures.Tasks.Spend}} / {{money .Figures.Tasks.SpendMean}}</td><td class="n">{{.Figures.Tasks.Tokens}}</td><td class="n">{{money .Figures.Tasks.CallSpend}}</td></tr>
</table>
<p>Failed authentications: {{.Figures.AuthFailures}}.</p>
</section>

<section>
<h2 id="integrity">10. Integrity of the audit log</h2>
{{with .Verification}}
{{if .OK}}<p><span class="ok">The chain is intact.</span> {{.Events}} events checked, every one linked to the one before by its hash.</p>
{{else}}<p><span class="bad">The chain is BROKEN at event {{.Broken.Seq}}:</span> {{.Broken.Problem}}.</p>
<p>{{.Events}} events before the break were checked. Events from {{.Broken.Seq}} on cannot be trusted: they may have been edited, removed or reordered after they were recorded.</p>{{end}}
<table>
<tr><th>Head (hash of the last event checked)</th><td class="hash">{{if .Head}}{{.Head}}{{else}}—{{end}}</td></tr>
<tr><th>Tombstones (content removed by retention)</th><td class="n">{{.Tombstones}}</td></tr>
<tr><th>Calls without an outcome</th><td class="n">{{.Unfinished}}</td></tr>
<tr><th>Trusted keys</th><td class="hash">{{join .Keys}}</td></tr>
<tr><th>Signed checkpoints stored / checked / matched</th><td class="n">{{.CheckpointsStored}} / {{.CheckpointsChecked}} / {{.CheckpointsMatched}}</td></tr>
<tr><th>Anchor</th><td>{{with .Anchor}}event {{.Seq}}, signed {{ts .Time}} by <span class="hash">{{.Key}}</span>{{else}}none: deleting events from the end of the log would not show{{end}}</td></tr>
</table>
{{if notCovered .}}<p>The {{.NotCovered}} events after the anchor are covered by the chain only, not yet by a signed checkpoint.</p>{{end}}
{{end}}
<h3>Checkpoints signed in the window</h3>
{{if .Checkpoints}}
<table>
<tr><th>Event</th><th>Signed</th><th>Key</th><th>Signature</th><th>Head</th></tr>
{{range .Checkpoints}}<tr><td class="n">{{.Seq}}</td><td>{{ts .Time}}</td><td class="hash">{{.Key}}</td><td>{{if .Verified}}<span class="ok">verified</span>{{else}}<span class="bad">not verified</span>: {{.Problem}}{{end}}</td><td class="hash">{{.Head}}</td></tr>
{{end}}</table>
{{else}}<p>None.</p>{{end}}
</section>

<section>
<h2 id="notes">11. Notes and how to check this report</h2>
{{if .Notes}}<ul>{{range .Notes}}<li>{{.}}</li>{{end}}</ul>{{else}}<p>Nothing was left out.</p>{{end}}
<p>Everything here is computed from the audit log and the store. To check the log yourself, run <code>chaperone audit verify --db DATABASE --key audit-signing.key.pub</code> with the gateway's public key (and <code>--checkpoints FILE</code> for checkpoints published elsewhere); it must report the same head and, for an intact log, no break. <code>chaperone audit export --from {{rfc .Window.From}} --to {{rfc .Window.To}} --format jsonl</code> exports the window's events, for recounting any figure. report.json holds every value of this page.</p>
</section>
</body>
</html>
`
