package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/approval"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
)

// actor is the name a console user's decisions are recorded under: the local login name
// or the OIDC e-mail address, as the approval manager compares it with a call's user.
func actor(s *Session) string {
	_, name, ok := strings.Cut(s.User, ":")
	if !ok {
		return s.User
	}
	return name
}

// formText reads a free-text form field, bounded.
func formText(r *http.Request, name string, max int) (string, error) {
	v := strings.TrimSpace(r.PostForm.Get(name))
	if len(v) > max {
		return "", fmt.Errorf("%s must be at most %d bytes, got %d", name, max, len(v))
	}
	return v, nil
}

// --- approvals ---

type approvalsView struct {
	Pending []api.Approval
	History []api.Approval
	Reasons []string
	Stats   api.ApprovalReport
}

func (c *Console) approvalsPage(w http.ResponseWriter, r *http.Request) {
	ap := c.opts.API.Approvals
	if ap == nil {
		c.fail(w, r, http.StatusNotImplemented, "Approvals are not enabled on this gateway.")
		return
	}
	ctx := r.Context()
	pending, err1 := ap.List(ctx, approval.Filter{Status: approval.StatusPending, Limit: 200})
	recent, err2 := ap.List(ctx, approval.Filter{Limit: 200})
	if err := errors.Join(err1, err2); err != nil {
		c.log.ErrorContext(ctx, "console approvals", "err", err)
		c.fail(w, r, http.StatusServiceUnavailable, "The approval requests cannot be read; try again shortly.")
		return
	}
	v := approvalsView{Reasons: ap.DeclineReasons()}
	for i := range pending {
		v.Pending = append(v.Pending, api.ApprovalView(&pending[i]))
	}
	for i := range recent {
		if recent[i].Status != approval.StatusPending && len(v.History) < 50 {
			v.History = append(v.History, api.ApprovalView(&recent[i]))
		}
	}
	v.Stats = api.ApprovalStatsOf(recent, c.now().Add(-24*time.Hour))
	c.render(w, r, "approvals", "Approvals", "approvals", v)
}

func (c *Console) approve(w http.ResponseWriter, r *http.Request) {
	ap := c.opts.API.Approvals
	if ap == nil {
		c.fail(w, r, http.StatusNotImplemented, "Approvals are not enabled on this gateway.")
		return
	}
	id := r.PathValue("id")
	req, err := ap.Approve(r.Context(), id, actor(current(r)))
	if err != nil {
		c.actionError(w, r, Prefix+"/approvals", "approve "+id, describeApproval(err, ap.DeclineReasons()), err)
		return
	}
	msg := fmt.Sprintf("Approved %s (%s for %s): the agent's call runs now.", req.ID, req.Tool, req.Agent)
	if req.Status == approval.StatusPending {
		msg = fmt.Sprintf("Your approval of %s is recorded: it needs %d approvers, %d so far.", req.ID, req.Required, len(req.Approvals))
	}
	c.log.InfoContext(r.Context(), "console approval", "id", id, "by", current(r).User)
	c.back(w, r, Prefix+"/approvals", msg, false)
}

func (c *Console) decline(w http.ResponseWriter, r *http.Request) {
	ap := c.opts.API.Approvals
	if ap == nil {
		c.fail(w, r, http.StatusNotImplemented, "Approvals are not enabled on this gateway.")
		return
	}
	id := r.PathValue("id")
	text, err := formText(r, "text", 1000)
	if err != nil {
		c.back(w, r, Prefix+"/approvals", capitalize(err.Error()), true)
		return
	}
	code := r.PostForm.Get("reason")
	if code == "" {
		c.back(w, r, Prefix+"/approvals", "Choose a reason to decline.", true)
		return
	}
	req, err := ap.Deny(r.Context(), id, actor(current(r)), code, text)
	if err != nil {
		c.actionError(w, r, Prefix+"/approvals", "decline "+id, describeApproval(err, ap.DeclineReasons()), err)
		return
	}
	c.log.InfoContext(r.Context(), "console decline", "id", id, "by", current(r).User, "reason", code)
	c.back(w, r, Prefix+"/approvals", fmt.Sprintf("Declined %s (%s for %s): %s.", req.ID, req.Tool, req.Agent, code), false)
}

func describeApproval(err error, reasons []string) string {
	_, msg := api.DescribeApprovalError(err, reasons)
	return msg
}

// actionError sends the browser back with the safe message; the cause is logged.
func (c *Console) actionError(w http.ResponseWriter, r *http.Request, fallback, what, msg string, err error) {
	c.log.WarnContext(r.Context(), "console action failed", "action", what, "by", current(r).User, "err", err)
	c.back(w, r, fallback, fmt.Sprintf("Could not %s: %s.", what, strings.TrimSuffix(msg, ".")), true)
}

// --- agents ---

type agentRow struct {
	api.Agent
	Autonomy *api.AutonomyReport
	Activity activity
	Breaker  string
	Tasks    []identity.TaskRecord
}

type agentsView struct {
	Agents []agentRow
}

func (c *Console) agentsPage(w http.ResponseWriter, r *http.Request) {
	dir := c.opts.API.Agents
	if dir == nil {
		c.fail(w, r, http.StatusNotImplemented, "The agent directory is not enabled on this gateway.")
		return
	}
	act, err := c.activity(r.Context())
	if err != nil {
		c.log.WarnContext(r.Context(), "console agent activity", "err", err)
	}
	var v agentsView
	for _, rec := range dir.List() {
		v.Agents = append(v.Agents, c.agentRow(r.Context(), rec, act))
	}
	slices.SortFunc(v.Agents, func(a, b agentRow) int { return strings.Compare(a.ID, b.ID) })
	c.render(w, r, "agents", "Agents", "agents", v)
}

func (c *Console) agentRow(ctx context.Context, rec identity.AgentRecord, act map[string]activity) agentRow {
	row := agentRow{Agent: api.AgentView(rec), Activity: act[rec.Agent.ID]}
	if c.opts.API.Autonomy != nil {
		if rep, err := c.opts.API.Autonomy(ctx, rec.Agent.ID); err == nil {
			row.Autonomy = &rep
		}
	}
	if ct := c.opts.API.Containment; ct != nil {
		if b, ok := ct.Breaker(rec.Agent.ID); ok && b.State != "" && b.State != contain.BreakerClosed {
			row.Breaker = string(b.State)
		}
	}
	if t := c.opts.API.Tasks; t != nil {
		for _, task := range t.List(false) {
			if task.Agent == rec.Agent.ID && t.Active(task.ID) {
				row.Tasks = append(row.Tasks, task)
			}
		}
	}
	return row
}

type agentView struct {
	Row    agentRow
	Recent []audit.Event
	Tokens []audit.Event
	Kills  []contain.Kill
}

func (c *Console) agentPage(w http.ResponseWriter, r *http.Request) {
	dir := c.opts.API.Agents
	if dir == nil {
		c.fail(w, r, http.StatusNotImplemented, "The agent directory is not enabled on this gateway.")
		return
	}
	id := r.PathValue("id")
	rec, ok := dir.Record(id)
	if !ok {
		c.fail(w, r, http.StatusNotFound, "No agent has that id.")
		return
	}
	ctx := r.Context()
	act, _ := c.activity(ctx)
	v := agentView{Row: c.agentRow(ctx, rec, act)}
	now := c.now()
	recent, err := c.findEvents(ctx, auditQuery{From: now.Add(-7 * 24 * time.Hour), To: now.Add(time.Minute), Agent: id}, 25)
	if err == nil {
		v.Recent = recent.Events
	}
	tokens, err := c.findEvents(ctx, auditQuery{From: now.Add(-24 * time.Hour), To: now.Add(time.Minute), Agent: id, Kind: audit.KindTokenIssued}, 10)
	if err == nil {
		v.Tokens = tokens.Events
	}
	if ct := c.opts.API.Containment; ct != nil {
		if kills, err := ct.Kills(ctx, false); err == nil {
			for _, k := range kills {
				if k.Scope.Kind == contain.ScopeAll || k.Scope.String() == "agent:"+id {
					v.Kills = append(v.Kills, k)
				}
			}
		}
	}
	c.render(w, r, "agent", "Agent "+id, "agents", v)
}

func (c *Console) agentAction(w http.ResponseWriter, r *http.Request) {
	dir := c.opts.API.Agents
	id, op := r.PathValue("id"), r.PathValue("op")
	back := Prefix + "/agents/" + id
	if dir == nil {
		c.fail(w, r, http.StatusNotImplemented, "The agent directory is not enabled on this gateway.")
		return
	}
	to := map[string]identity.Status{"suspend": identity.StatusSuspended, "resume": identity.StatusActive, "revoke": identity.StatusRevoked}[op]
	if to == "" {
		c.fail(w, r, http.StatusNotFound, "Agents can be suspended, resumed or revoked.")
		return
	}
	reason, err := formText(r, "reason", 500)
	if err == nil && reason == "" {
		err = errors.New("a reason is required")
	}
	if err != nil {
		c.back(w, r, back, capitalize(err.Error())+".", true)
		return
	}
	if op == "revoke" && r.PostForm.Get("confirm") != "yes" {
		c.back(w, r, back, "Revocation is final: tick the confirmation to revoke.", true)
		return
	}
	if err := dir.SetStatus(r.Context(), id, to, reason, actor(current(r))); err != nil {
		_, msg := api.DescribeIdentityError(err, "the status change could not be recorded")
		c.actionError(w, r, back, op+" "+id, msg, err)
		return
	}
	c.log.InfoContext(r.Context(), "console agent status", "agent", id, "to", to, "by", current(r).User)
	c.back(w, r, back, fmt.Sprintf("Agent %s is now %s.", id, to), false)
}

// --- kill switch ---

type killView struct {
	Engaged []contain.Kill
	History []contain.Kill
	Agents  []string
}

func (c *Console) killPage(w http.ResponseWriter, r *http.Request) {
	ct := c.opts.API.Containment
	if ct == nil {
		c.fail(w, r, http.StatusNotImplemented, "Containment is not enabled on this gateway.")
		return
	}
	all, err := ct.Kills(r.Context(), true)
	if err != nil {
		c.log.ErrorContext(r.Context(), "console kills", "err", err)
		c.fail(w, r, http.StatusServiceUnavailable, "The kill switches cannot be read; try again shortly.")
		return
	}
	var v killView
	for _, k := range all {
		if k.Engaged() {
			v.Engaged = append(v.Engaged, k)
		} else if len(v.History) < 50 {
			v.History = append(v.History, k)
		}
	}
	if dir := c.opts.API.Agents; dir != nil {
		for _, rec := range dir.List() {
			v.Agents = append(v.Agents, rec.Agent.ID)
		}
		slices.Sort(v.Agents)
	}
	c.render(w, r, "kill", "Kill switch", "kill", v)
}

// killScope reads the scope of a kill form: "scope" as given, or "kind" and "name".
func killScope(r *http.Request) string {
	if s := strings.TrimSpace(r.PostForm.Get("scope")); s != "" {
		return s
	}
	kind, name := r.PostForm.Get("kind"), strings.TrimSpace(r.PostForm.Get("name"))
	if kind == "all" {
		return "all"
	}
	return kind + ":" + name
}

// killForm reads the scope and reason of a kill or lift form; ok is false when it has
// answered the request itself.
func (c *Console) killForm(w http.ResponseWriter, r *http.Request) (ct api.Containment, scope, reason string, ok bool) {
	if ct = c.opts.API.Containment; ct == nil {
		c.fail(w, r, http.StatusNotImplemented, "Containment is not enabled on this gateway.")
		return nil, "", "", false
	}
	scope = killScope(r)
	reason, err := formText(r, "reason", 500)
	if err == nil && reason == "" {
		err = errors.New("a reason is required")
	}
	if err != nil {
		c.back(w, r, Prefix+"/kill", capitalize(err.Error())+".", true)
		return nil, "", "", false
	}
	return ct, scope, reason, true
}

func (c *Console) kill(w http.ResponseWriter, r *http.Request) {
	ct, scope, reason, ok := c.killForm(w, r)
	if !ok {
		return
	}
	if r.PostForm.Get("confirm") != "yes" {
		c.back(w, r, Prefix+"/kill", "Tick the confirmation to pull the kill switch.", true)
		return
	}
	res, err := ct.Kill(r.Context(), scope, actor(current(r)), reason)
	if err != nil {
		_, msg := api.DescribeContainError(err)
		c.actionError(w, r, Prefix+"/kill", "pull the kill switch on "+truncate(scope, 80), msg, err)
		return
	}
	c.log.WarnContext(r.Context(), "console kill", "scope", scope, "by", current(r).User)
	c.back(w, r, Prefix+"/kill", fmt.Sprintf("Kill switch engaged on %s: %d calls in flight cancelled, %d held approvals voided, contained in %s.",
		res.Kill.Scope, res.CancelledInFlight, res.VoidedApprovals, fmtDuration(time.Duration(res.ContainedMicros)*time.Microsecond)), false)
}

func (c *Console) lift(w http.ResponseWriter, r *http.Request) {
	ct, scope, reason, ok := c.killForm(w, r)
	if !ok {
		return
	}
	k, err := ct.Unkill(r.Context(), scope, actor(current(r)), reason)
	if err != nil {
		_, msg := api.DescribeContainError(err)
		c.actionError(w, r, Prefix+"/kill", "lift the kill switch on "+truncate(scope, 80), msg, err)
		return
	}
	c.log.WarnContext(r.Context(), "console kill lifted", "scope", scope, "by", current(r).User)
	c.back(w, r, Prefix+"/kill", fmt.Sprintf("Kill switch on %s lifted.", k.Scope), false)
}

// --- audit explorer ---

type auditView struct {
	Q       auditQuery
	Error   string
	Result  scanResult
	Verify  *verifyResult
	CanPage bool
	Older   string // the query string of the next page
}

type verifyResult struct {
	At     time.Time
	Report audit.Report
	Err    string
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request) {
	var v auditView
	q, err := parseAuditQuery(r.URL.Query(), c.now(), "24h")
	v.Q = q
	c.verifyMu.Lock()
	v.Verify = c.lastVerify
	c.verifyMu.Unlock()
	if err != nil {
		v.Error = err.Error()
		c.renderStatus(w, r, http.StatusBadRequest, "audit", "Audit explorer", "audit", v)
		return
	}
	if v.Result, err = c.findEvents(r.Context(), q, explorerRows); err != nil {
		c.log.ErrorContext(r.Context(), "console audit explorer", "err", err)
		c.fail(w, r, http.StatusServiceUnavailable, "The audit log cannot be read; try again shortly.")
		return
	}
	if v.Result.More && len(v.Result.Events) > 0 {
		older := q.values()
		older.Set("before", fmt.Sprint(v.Result.Events[len(v.Result.Events)-1].Seq))
		v.Older = older.Encode()
	}
	c.render(w, r, "audit", "Audit explorer", "audit", v)
}

func (c *Console) verify(w http.ResponseWriter, r *http.Request) {
	if c.opts.Verify == nil {
		c.fail(w, r, http.StatusNotImplemented, "Chain verification is not available here.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	rep, err := c.opts.Verify(ctx)
	res := &verifyResult{At: c.now(), Report: rep}
	msg, isErr := fmt.Sprintf("The chain verifies: %d events, head %s.", rep.Events, truncate(rep.Head, 23)), false
	switch {
	case err != nil:
		c.log.ErrorContext(r.Context(), "console verify", "err", err)
		res.Err = "the log could not be read"
		msg, isErr = "The audit log could not be read to verify it.", true
	case rep.Broken != nil:
		msg, isErr = "The chain is BROKEN: "+rep.Broken.Problem, true
	}
	c.verifyMu.Lock()
	c.lastVerify = res
	c.verifyMu.Unlock()
	c.back(w, r, Prefix+"/audit", msg, isErr)
}

type sessionView struct {
	ID    string
	Q     auditQuery
	Steps []*storyStep
	More  bool
}

func (c *Console) sessionPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == "" || len(id) > maxFilterLen {
		c.fail(w, r, http.StatusBadRequest, fmt.Sprintf("A session id is 1 to %d bytes.", maxFilterLen))
		return
	}
	vals := r.URL.Query()
	vals.Set("session", id)
	q, err := parseAuditQuery(vals, c.now(), "7d")
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, capitalize(err.Error()))
		return
	}
	res, err := c.findEvents(r.Context(), q, 2000)
	if err != nil {
		c.log.ErrorContext(r.Context(), "console session", "err", err)
		c.fail(w, r, http.StatusServiceUnavailable, "The audit log cannot be read; try again shortly.")
		return
	}
	slices.Reverse(res.Events)
	c.render(w, r, "session", "Session "+truncate(id, 24), "audit", sessionView{ID: id, Q: q, Steps: story(res.Events), More: res.More})
}

// --- policies ---

type policiesView struct {
	Version string
	Rules   int
	History []audit.Event
	Shadow  []pipeline.ShadowCount
}

func (c *Console) policiesPage(w http.ResponseWriter, r *http.Request) {
	var v policiesView
	if c.opts.API.Policy != nil {
		if p := c.opts.API.Policy(); p != nil {
			v.Version, v.Rules = p.Version(), p.Rules()
		}
	}
	now := c.now()
	res, err := c.findEvents(r.Context(), auditQuery{From: now.Add(-90 * 24 * time.Hour), To: now.Add(time.Minute), Kind: "policy.*"}, 50)
	if err != nil {
		c.log.ErrorContext(r.Context(), "console policies", "err", err)
	}
	v.History = res.Events
	if c.opts.API.Shadow != nil {
		_, v.Shadow = c.opts.API.Shadow()
	}
	c.render(w, r, "policies", "Policies", "policies", v)
}

func (c *Console) reload(w http.ResponseWriter, r *http.Request) {
	if c.opts.API.Reload == nil {
		c.fail(w, r, http.StatusNotImplemented, "Policy reload is not available here.")
		return
	}
	v, err := c.opts.API.Reload(r.Context())
	if err != nil {
		c.log.WarnContext(r.Context(), "console policy reload", "err", err)
		c.back(w, r, Prefix+"/policies", "The policy did not load; the previous version stays in force: "+truncate(err.Error(), 240), true)
		return
	}
	c.back(w, r, Prefix+"/policies", "Policy "+truncate(v, 23)+" is in force.", false)
}

// --- users ---

type usersView struct {
	Users []User
	Roles []Role
}

func (c *Console) usersPage(w http.ResponseWriter, r *http.Request) {
	users, err := c.opts.Store.ConsoleUsers(r.Context())
	if err != nil {
		c.fail(w, r, http.StatusServiceUnavailable, "The console users cannot be read; try again shortly.")
		return
	}
	c.render(w, r, "users", "Console users", "users", usersView{Users: users, Roles: []Role{RoleViewer, RoleApprover, RoleOperator, RoleAdmin}})
}

func (c *Console) createUser(w http.ResponseWriter, r *http.Request) {
	back := Prefix + "/users"
	name, pass := strings.TrimSpace(r.PostForm.Get("name")), r.PostForm.Get("password")
	role, err := ParseRole(r.PostForm.Get("role"))
	err = errors.Join(err, CheckName(name), CheckPassword(pass))
	if err != nil {
		c.back(w, r, back, capitalize(strings.ReplaceAll(err.Error(), "\n", "; "))+".", true)
		return
	}
	c.hashes <- struct{}{}
	hash, err := HashPassword(pass)
	<-c.hashes
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, "The password could not be hashed.")
		return
	}
	now := c.now().UTC().Truncate(time.Microsecond)
	err = c.opts.Store.CreateUser(r.Context(), User{Name: name, Role: role, PasswordHash: hash, Created: now, Updated: now})
	switch {
	case errors.Is(err, ErrUserExists):
		c.back(w, r, back, "A user named "+name+" already exists.", true)
	case err != nil:
		c.actionError(w, r, back, "create user "+name, "the user could not be stored", err)
	default:
		c.log.InfoContext(r.Context(), "console user created", "user", name, "role", role, "by", current(r).User)
		c.back(w, r, back, fmt.Sprintf("User %s created with the %s role.", name, role), false)
	}
}

// userAction changes a user: role (with "role" in the form), disable, enable, password
// (with "password") or delete. Any change but enable signs the user out everywhere. An
// admin cannot lock themself out.
func (c *Console) userAction(w http.ResponseWriter, r *http.Request) {
	back := Prefix + "/users"
	name, op := r.PathValue("name"), r.PathValue("op")
	self := current(r).User == "local:"+name
	ctx := r.Context()
	u, ok, err := c.opts.Store.ConsoleUser(ctx, name)
	if err != nil {
		c.actionError(w, r, back, op+" "+name, "the user could not be read", err)
		return
	}
	if !ok {
		c.back(w, r, back, "No console user is named "+truncate(name, 64)+".", true)
		return
	}
	if self && op != "password" {
		c.back(w, r, back, "You cannot change your own role or account state: ask another admin.", true)
		return
	}
	switch op {
	case "delete":
		err = c.opts.Store.DeleteUser(ctx, name)
	case "role", "disable", "enable", "password":
		switch op {
		case "role":
			u.Role, err = ParseRole(r.PostForm.Get("role"))
		case "disable", "enable":
			u.Disabled = op == "disable"
		case "password":
			pass := r.PostForm.Get("password")
			if err = CheckPassword(pass); err == nil {
				c.hashes <- struct{}{}
				u.PasswordHash, err = HashPassword(pass)
				<-c.hashes
			}
		}
		if err != nil {
			c.back(w, r, back, capitalize(err.Error())+".", true)
			return
		}
		u.Updated = c.now().UTC().Truncate(time.Microsecond)
		err = c.opts.Store.UpdateUser(ctx, u)
		if err == nil && op != "enable" && !self {
			_, err = c.opts.Store.DeleteSessions(ctx, "local:"+name)
		}
	default:
		c.fail(w, r, http.StatusNotFound, "Users can have their role, password or state changed, or be deleted.")
		return
	}
	if err != nil {
		c.actionError(w, r, back, op+" "+name, "the change could not be stored", err)
		return
	}
	c.log.InfoContext(ctx, "console user changed", "user", name, "change", op, "by", current(r).User)
	c.back(w, r, back, fmt.Sprintf("User %s: %s done.", name, op), false)
}
