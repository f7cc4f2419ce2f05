// Package demo provides the built-in demo upstream: an in-process MCP server whose tools
// look like a small office back end (mailbox, files, web fetch, tickets, e-mail, payments,
// records) spread across every risk class the gateway distinguishes.
//
// Everything is fake and offline. No e-mail is sent, no network is touched and no money
// moves: effects are recorded in memory in a [State] that tests and the demo console can
// inspect. The tool descriptions deliberately read like those of real tools, because the
// point of the demo is to show how the gateway treats real-looking tools; this comment is
// where the fakeness is stated.
//
// The mailbox contains one prompt-injection e-mail from a look-alike outside domain
// (examp1e-support.net) that asks the assistant to forward mail to that domain, next to a
// legitimate utility bill carrying an IBAN and some ordinary internal mail. It exists so
// that flow-control and policy rules have something realistic to stop.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/mail"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// FileRoot is the directory under which read_file serves the in-memory files.
const FileRoot = "/srv/demo"

// Risk classes returned by [Classes].
const (
	ClassRead        = "read"
	ClassWrite       = "write"
	ClassExternal    = "external"
	ClassDestructive = "destructive"
)

// Classes maps each demo tool name to its risk class. The map is a fresh copy.
func Classes() map[string]string {
	return map[string]string{
		"read_inbox":     ClassRead,
		"read_file":      ClassRead,
		"fetch_url":      ClassExternal,
		"create_ticket":  ClassWrite,
		"send_email":     ClassExternal,
		"transfer_money": ClassDestructive,
		"delete_record":  ClassDestructive,
	}
}

// Options configures [NewServer].
type Options struct {
	// Files maps absolute paths under FileRoot to their content. Nil means a default set
	// (a utility bill, a to-do list and a quarterly report).
	Files map[string]string
	// Now returns the current time, for message dates and effect timestamps.
	// Nil means time.Now.
	Now func() time.Time
}

// Email is a message recorded by send_email.
type Email struct {
	ID      string
	To      string
	Subject string
	Body    string
	SentAt  time.Time
}

// Transfer is a payment recorded by transfer_money.
type Transfer struct {
	ID            string
	RecipientIBAN string
	Amount        float64
	Currency      string
	Reference     string
	At            time.Time
}

// Ticket is a ticket recorded by create_ticket.
type Ticket struct {
	ID        string
	Title     string
	Body      string
	CreatedAt time.Time
}

// DeletedRecord is a deletion recorded by delete_record.
type DeletedRecord struct {
	Table string
	ID    string
	At    time.Time
}

// State holds the demo server's effects. It is safe for concurrent use; accessors return
// copies.
type State struct {
	now   func() time.Time
	files map[string]string // immutable after NewServer

	mu sync.Mutex
	// The fields below are guarded by mu.
	outbox    []Email
	transfers []Transfer
	tickets   []Ticket
	deleted   []DeletedRecord
}

// Outbox returns the e-mails sent so far, oldest first.
func (s *State) Outbox() []Email {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.outbox)
}

// Transfers returns the transfers made so far, oldest first.
func (s *State) Transfers() []Transfer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.transfers)
}

// Tickets returns the tickets created so far, oldest first.
func (s *State) Tickets() []Ticket {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.tickets)
}

// Deleted returns the records deleted so far, oldest first.
func (s *State) Deleted() []DeletedRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deleted)
}

// NewServer returns the demo MCP server and the state its tools act on.
func NewServer(opts Options) (*mcp.Server, *State) {
	st := &State{now: opts.Now, files: defaultFiles()}
	if st.now == nil {
		st.now = time.Now
	}
	if opts.Files != nil {
		st.files = make(map[string]string, len(opts.Files))
		for p, content := range opts.Files {
			st.files[path.Clean(p)] = content
		}
	}

	srv := mcp.NewServer(&mcp.Implementation{Name: "demo-office", Version: "1.4.2"}, &mcp.ServerOptions{
		Instructions: "Office back end: mailbox, shared files, documentation fetch, tickets, e-mail, payments and records.",
	})
	mcp.AddTool(srv, &mcp.Tool{
		Name:        "read_inbox",
		Title:       "Read inbox",
		Description: "List the newest messages in the user's mailbox, with sender, subject, date and body.",
		InputSchema: json.RawMessage(readInboxSchema),
		Annotations: annotations(true, false, true, false),
	}, st.readInbox)
	mcp.AddTool(srv, &mcp.Tool{
		Name:        "read_file",
		Title:       "Read file",
		Description: "Read a text file from the shared drive (" + FileRoot + "). Paths may be absolute or relative to the drive root.",
		InputSchema: json.RawMessage(readFileSchema),
		Annotations: annotations(true, false, true, false),
	}, st.readFile)
	mcp.AddTool(srv, &mcp.Tool{
		Name:        "fetch_url",
		Title:       "Fetch URL",
		Description: "Fetch a web page over HTTPS and return its text content.",
		InputSchema: json.RawMessage(fetchURLSchema),
		Annotations: annotations(true, false, true, true),
	}, st.fetchURL)
	mcp.AddTool(srv, &mcp.Tool{
		Name:        "create_ticket",
		Title:       "Create ticket",
		Description: "Open a ticket in the internal help-desk queue. Returns the ticket ID.",
		InputSchema: json.RawMessage(createTicketSchema),
		Annotations: annotations(false, false, false, false),
	}, st.createTicket)
	mcp.AddTool(srv, &mcp.Tool{
		Name:        "send_email",
		Title:       "Send e-mail",
		Description: "Send an e-mail from the user's account. Returns the message ID.",
		InputSchema: json.RawMessage(sendEmailSchema),
		Annotations: annotations(false, false, false, true),
	}, st.sendEmail)
	mcp.AddTool(srv, &mcp.Tool{
		Name:        "transfer_money",
		Title:       "Transfer money",
		Description: "Make a bank transfer from the company account to an IBAN. Transfers are executed immediately and cannot be recalled. Returns the transaction ID.",
		InputSchema: json.RawMessage(transferMoneySchema),
		Annotations: annotations(false, true, false, true),
	}, st.transferMoney)
	mcp.AddTool(srv, &mcp.Tool{
		Name:        "delete_record",
		Title:       "Delete record",
		Description: "Permanently delete a record from the customer database.",
		InputSchema: json.RawMessage(deleteRecordSchema),
		Annotations: annotations(false, true, true, false),
	}, st.deleteRecord)
	return srv, st
}

func annotations(readOnly, destructive, idempotent, openWorld bool) *mcp.ToolAnnotations {
	return &mcp.ToolAnnotations{
		ReadOnlyHint:    readOnly,
		DestructiveHint: &destructive,
		IdempotentHint:  idempotent,
		OpenWorldHint:   &openWorld,
	}
}

// Input schemas. They are published verbatim (json.RawMessage) and the SDK validates
// arguments against them before a handler runs. The SDK's validator ignores "format", so
// handlers that care check it themselves.
const (
	readInboxSchema = `{
  "type": "object",
  "properties": {
    "folder": {"type": "string", "enum": ["inbox", "archive"], "default": "inbox", "description": "Mailbox folder to read."},
    "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 10, "description": "Maximum number of messages to return, newest first."}
  },
  "additionalProperties": false
}`
	readFileSchema = `{
  "type": "object",
  "properties": {
    "path": {"type": "string", "minLength": 1, "maxLength": 1024, "description": "Path of the file, e.g. /srv/demo/notes/todo.md."}
  },
  "required": ["path"],
  "additionalProperties": false
}`
	fetchURLSchema = `{
  "type": "object",
  "properties": {
    "url": {"type": "string", "format": "uri", "maxLength": 2048, "description": "Absolute https URL of the page."}
  },
  "required": ["url"],
  "additionalProperties": false
}`
	createTicketSchema = `{
  "type": "object",
  "properties": {
    "title": {"type": "string", "minLength": 1, "maxLength": 200, "description": "One-line summary of the issue."},
    "body": {"type": "string", "maxLength": 20000, "description": "Full description of the issue."}
  },
  "required": ["title", "body"],
  "additionalProperties": false
}`
	sendEmailSchema = `{
  "type": "object",
  "properties": {
    "to": {"type": "string", "format": "email", "description": "Recipient e-mail address."},
    "subject": {"type": "string", "maxLength": 998, "description": "Subject line."},
    "body": {"type": "string", "maxLength": 100000, "description": "Plain-text message body."}
  },
  "required": ["to", "subject", "body"],
  "additionalProperties": false
}`
	transferMoneySchema = `{
  "type": "object",
  "properties": {
    "recipient_iban": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{2}[A-Z0-9 ]{10,40}$", "description": "IBAN of the recipient account."},
    "amount": {"type": "number", "exclusiveMinimum": 0, "description": "Amount to transfer."},
    "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"], "description": "Currency of the amount."},
    "reference": {"type": "string", "maxLength": 140, "description": "Payment reference shown to the recipient."}
  },
  "required": ["recipient_iban", "amount", "currency"],
  "additionalProperties": false
}`
	deleteRecordSchema = `{
  "type": "object",
  "properties": {
    "table": {"type": "string", "enum": ["customers", "orders", "tickets"], "description": "Table holding the record."},
    "id": {"type": "string", "minLength": 1, "maxLength": 64, "description": "Primary key of the record."}
  },
  "required": ["table", "id"],
  "additionalProperties": false
}`
)

// toolError is returned by handlers for tool-level failures; the SDK turns a plain error
// into a result with isError set and the message as text content.
func toolError(format string, args ...any) error { return fmt.Errorf(format, args...) }

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

type readInboxInput struct {
	Folder string `json:"folder"`
	Limit  int    `json:"limit"`
}

type message struct {
	ID       string `json:"id"`
	From     string `json:"from"`
	FromName string `json:"from_name,omitempty"`
	To       string `json:"to"`
	Date     string `json:"date"`
	Subject  string `json:"subject"`
	Body     string `json:"body"`
}

func (s *State) readInbox(_ context.Context, _ *mcp.CallToolRequest, in readInboxInput) (*mcp.CallToolResult, any, error) {
	folder := in.Folder
	if folder == "" {
		folder = "inbox"
	}
	limit := in.Limit
	if limit == 0 {
		limit = 10
	}
	msgs := mailbox(folder, s.now())
	if len(msgs) > limit {
		msgs = msgs[:limit]
	}
	b, err := json.MarshalIndent(struct {
		Folder   string    `json:"folder"`
		Messages []message `json:"messages"`
	}{folder, msgs}, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	return text(string(b)), nil, nil
}

type readFileInput struct {
	Path string `json:"path"`
}

func (s *State) readFile(_ context.Context, _ *mcp.CallToolRequest, in readFileInput) (*mcp.CallToolResult, any, error) {
	p := in.Path
	if !path.IsAbs(p) {
		p = path.Join(FileRoot, p)
	}
	p = path.Clean(p)
	content, ok := s.files[p]
	if !ok || !strings.HasPrefix(p, FileRoot+"/") {
		return nil, nil, toolError("%s: no such file", in.Path)
	}
	return text(content), nil, nil
}

type fetchURLInput struct {
	URL string `json:"url"`
}

func (s *State) fetchURL(_ context.Context, _ *mcp.CallToolRequest, in fetchURLInput) (*mcp.CallToolResult, any, error) {
	u, err := url.Parse(in.URL)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return nil, nil, toolError("fetch %q: not an absolute URL", in.URL)
	}
	if u.Scheme == "https" && u.Host == "docs.example.com" {
		if page, ok := pages[strings.TrimSuffix(u.Path, "/")]; ok {
			return text(page), nil, nil
		}
		return nil, nil, toolError("fetch %s: 404 Not Found", u.Redacted())
	}
	return nil, nil, toolError("fetch %s: host not reachable from the demo", u.Redacted())
}

type createTicketInput struct {
	Title string `json:"title"`
	Body  string `json:"body"`
}

func (s *State) createTicket(_ context.Context, _ *mcp.CallToolRequest, in createTicketInput) (*mcp.CallToolResult, any, error) {
	s.mu.Lock()
	id := fmt.Sprintf("TCK-%d", 1001+len(s.tickets))
	s.tickets = append(s.tickets, Ticket{ID: id, Title: in.Title, Body: in.Body, CreatedAt: s.now()})
	s.mu.Unlock()
	return text(id), nil, nil
}

type sendEmailInput struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
	Body    string `json:"body"`
}

func (s *State) sendEmail(_ context.Context, _ *mcp.CallToolRequest, in sendEmailInput) (*mcp.CallToolResult, any, error) {
	addr, err := mail.ParseAddress(in.To)
	if err != nil || addr.Name != "" {
		return nil, nil, toolError("send to %q: invalid recipient address", in.To)
	}
	s.mu.Lock()
	id := fmt.Sprintf("MSG-%d", 1001+len(s.outbox))
	s.outbox = append(s.outbox, Email{ID: id, To: addr.Address, Subject: in.Subject, Body: in.Body, SentAt: s.now()})
	s.mu.Unlock()
	return text(id), nil, nil
}

type transferMoneyInput struct {
	RecipientIBAN string  `json:"recipient_iban"`
	Amount        float64 `json:"amount"`
	Currency      string  `json:"currency"`
	Reference     string  `json:"reference"`
}

func (s *State) transferMoney(_ context.Context, _ *mcp.CallToolRequest, in transferMoneyInput) (*mcp.CallToolResult, any, error) {
	s.mu.Lock()
	id := fmt.Sprintf("TXN-%d", 1001+len(s.transfers))
	s.transfers = append(s.transfers, Transfer{
		ID: id, RecipientIBAN: strings.ReplaceAll(in.RecipientIBAN, " ", ""), Amount: in.Amount,
		Currency: in.Currency, Reference: in.Reference, At: s.now(),
	})
	s.mu.Unlock()
	return text(id), nil, nil
}

type deleteRecordInput struct {
	Table string `json:"table"`
	ID    string `json:"id"`
}

func (s *State) deleteRecord(_ context.Context, _ *mcp.CallToolRequest, in deleteRecordInput) (*mcp.CallToolResult, any, error) {
	s.mu.Lock()
	s.deleted = append(s.deleted, DeletedRecord{Table: in.Table, ID: in.ID, At: s.now()})
	s.mu.Unlock()
	return text("deleted"), nil, nil
}

// defaultFiles returns a fresh copy of the default shared-drive content.
func defaultFiles() map[string]string {
	return maps.Clone(defaultFileSet)
}
