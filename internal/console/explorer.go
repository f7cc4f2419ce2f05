package console

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/auditexport"
	"github.com/chaperone-dev/chaperone/internal/insight"
)

// Bounds of the audit explorer.
const (
	explorerRows    = 200     // events a page lists
	explorerScanMax = 500_000 // events one query reads at most
	scanPage        = 1000
	maxFilterLen    = 256
	// stopSlack is how long after a query's end the explorer keeps reading: events are
	// appended roughly in time order, but a held call's events carry its arrival time and
	// are written when its hold ends, and replicas' clocks differ.
	stopSlack = 15 * time.Minute
)

// auditQuery is the explorer's filter, read from the page's query string.
type auditQuery struct {
	From, To                                         time.Time
	Agent, User, Task, Tool, Decision, Kind, Session string
	Before                                           int64 // list events before this seq (paging); 0: the newest
	FromText, ToText                                 string
}

// values is q as a query string, for links that keep the filter.
func (q auditQuery) values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("from", q.FromText)
	set("to", q.ToText)
	set("agent", q.Agent)
	set("user", q.User)
	set("task", q.Task)
	set("tool", q.Tool)
	set("decision", q.Decision)
	set("kind", q.Kind)
	set("session", q.Session)
	return v
}

// parseAuditQuery reads the explorer's filter: from and to as the CLI takes them (RFC
// 3339, a date, or a duration before now such as 24h or 7d; default the last 24 hours),
// the exact-match fields, and before (a seq, for paging).
func parseAuditQuery(v url.Values, now time.Time, defaultFrom string) (auditQuery, error) {
	q := auditQuery{FromText: v.Get("from"), ToText: v.Get("to")}
	var errs []error
	if q.FromText == "" {
		q.FromText = defaultFrom
	}
	var err error
	if q.From, err = auditexport.ParseTime(q.FromText, now); err != nil {
		errs = append(errs, fmt.Errorf("from: %w", err))
	}
	q.To = now.Add(time.Minute)
	if q.ToText != "" {
		if q.To, err = auditexport.ParseTime(q.ToText, now); err != nil {
			errs = append(errs, fmt.Errorf("to: %w", err))
		}
	}
	if err == nil && !q.From.Before(q.To) {
		errs = append(errs, errors.New("from must be before to"))
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"agent", &q.Agent}, {"user", &q.User}, {"task", &q.Task}, {"tool", &q.Tool}, {"decision", &q.Decision}, {"kind", &q.Kind}, {"session", &q.Session}} {
		s := v.Get(f.name)
		if len(s) > maxFilterLen {
			errs = append(errs, fmt.Errorf("%s: at most %d bytes, got %d", f.name, maxFilterLen, len(s)))
			continue
		}
		*f.dst = s
	}
	if s := v.Get("before"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("before: want a positive event number, got %q", truncate(s, 32)))
		}
		q.Before = n
	}
	return q, errors.Join(errs...)
}

func (q *auditQuery) match(e *audit.Event) bool {
	if e.Pruned || e.Time.Before(q.From) || !e.Time.Before(q.To) || (q.Before > 0 && e.Seq >= q.Before) {
		return false
	}
	eq := func(want, got string) bool { return want == "" || want == got }
	kindOK := q.Kind == "" || q.Kind == e.Kind || (len(q.Kind) > 2 && q.Kind[len(q.Kind)-2:] == ".*" && len(e.Kind) > len(q.Kind)-2 && e.Kind[:len(q.Kind)-1] == q.Kind[:len(q.Kind)-1])
	return kindOK && eq(q.Agent, e.Agent) && eq(q.User, e.User) && eq(q.Task, e.Task) && eq(q.Tool, e.Tool) &&
		eq(q.Decision, e.Decision) && eq(q.Session, e.SessionID)
}

// scanResult is what a query found.
type scanResult struct {
	Events  []audit.Event // newest first
	Scanned int64
	// More says older matches exist before the oldest listed; Capped that the scan stopped
	// at explorerScanMax events (narrow the time range).
	More, Capped bool
}

// findEvents reads the log from just before q.From and keeps the newest limit matches.
func (c *Console) findEvents(ctx context.Context, q auditQuery, limit int) (scanResult, error) {
	var res scanResult
	after, err := insight.SeekTime(ctx, c.opts.Events, q.From)
	if err != nil {
		return res, err
	}
	var ring []audit.Event
	stopAt := q.To.Add(stopSlack)
	for {
		evs, err := c.opts.Events.ScanEvents(ctx, after, scanPage)
		if err != nil {
			return res, fmt.Errorf("read audit log after event %d: %w", after, err)
		}
		if len(evs) == 0 {
			break
		}
		done := false
		for i := range evs {
			e := &evs[i]
			after = e.Seq
			res.Scanned++
			if e.Time.After(stopAt) || (q.Before > 0 && e.Seq >= q.Before) {
				done = true
				break
			}
			if q.match(e) {
				if len(ring) == limit {
					ring = ring[1:]
					res.More = true
				}
				ring = append(ring, *e)
			}
		}
		if done {
			break
		}
		if res.Scanned >= explorerScanMax {
			res.Capped = true
			break
		}
	}
	slices.Reverse(ring)
	res.Events = ring
	return res, nil
}

// storyStep is one request of a session: the prompt, the call, what was decided and what
// came back, from its events.
type storyStep struct {
	RequestID string
	Time      time.Time
	Tool      string
	Prompt    string
	Args      string
	Decision  string
	Reason    string
	Message   string
	Rules     []string
	Explain   string
	Risk      int
	Factors   []string
	Approval  string
	Sensors   []string
	Outcome   string // "ok", "error", "refused", "held" or "" while running
	Latency   int64
	Bytes     int64
	Events    []audit.Event
}

// story groups a session's events (oldest first) into steps by request.
func story(evs []audit.Event) []*storyStep {
	var steps []*storyStep
	byReq := map[string]*storyStep{}
	for i := range evs {
		e := &evs[i]
		st := byReq[e.RequestID]
		if st == nil || e.RequestID == "" {
			st = &storyStep{RequestID: e.RequestID, Time: e.Time, Tool: e.Tool}
			steps = append(steps, st)
			if e.RequestID != "" {
				byReq[e.RequestID] = st
			}
		}
		st.Events = append(st.Events, *e)
		if e.Prompt != "" {
			st.Prompt = e.Prompt
		}
		switch e.Kind {
		case audit.KindCallIntent, audit.KindCallRefused, audit.KindCallSuggested:
			st.Args, st.Decision, st.Reason, st.Message = e.ArgsSummary, e.Decision, e.Reason, e.Message
			st.Rules, st.Explain, st.Risk, st.Factors, st.Approval = e.Rules, e.Explanation, e.Risk, e.RiskFactors, e.Approval
			st.Sensors = append(st.Sensors, e.Sensors...)
			switch e.Kind {
			case audit.KindCallRefused:
				st.Outcome = "refused"
				if e.Reason == "approval_pending" {
					st.Outcome = "held"
				}
			case audit.KindCallSuggested:
				st.Outcome = "suggested"
			}
		case audit.KindCallOutcome:
			st.Outcome, st.Latency, st.Bytes = "ok", e.LatencyMicros, e.ResultBytes
			if e.ResultError {
				st.Outcome = "error"
			}
			st.Sensors = append(st.Sensors, e.Sensors...)
		}
	}
	return steps
}
