package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrClosed is returned by [Log.Append] once [Log.Close] has been called. The
// event was not recorded; the caller refuses the call it describes.
var ErrClosed = errors.New("audit: log closed")

// Store is where a [Log] keeps its events.
type Store interface {
	// AppendEvents writes events, which continue the stored chain in order,
	// in one durable transaction: when it returns nil, all of them survive a
	// crash or power loss. When it returns an error, none of them was
	// written, or, if the outcome is unknown (a commit that timed out), all
	// of them may have been; never some.
	AppendEvents(ctx context.Context, events []Event) error
	// LastEvent returns the event with the highest Seq, and false if the
	// store holds none.
	LastEvent(ctx context.Context) (Event, bool, error)
}

// ChainStore is a [Store] that several Logs, in several processes (gateway replicas),
// may append to at once. A Log over a ChainStore does not trust the head it read last:
// each commit reads the head under the store's chain lock and continues from there, so
// concurrent writers make one chain with no fork and no gap.
type ChainStore interface {
	Store
	// AppendChained takes the chain's write lock (held until the transaction ends),
	// reads the stored head (its Seq and Hash; 0 and "" for an empty log), calls chain
	// with it, which numbers and hashes the events in place so that they continue the
	// head, writes them and commits, all in one durable transaction. If chain or
	// anything else fails, nothing is written and the error is returned. chain may be
	// called more than once if the store retries the transaction.
	AppendChained(ctx context.Context, events []Event, chain func(headSeq int64, headHash string) error) error
}

// A SealingStore is a [ChainStore] that takes the records the Log encodes while it chains
// events (see [Event.Seal]) instead of encoding every event a second time.
type SealingStore interface {
	ChainStore
	// AppendSealed is AppendChained with seal in place of chain: seal numbers and hashes
	// the events in place to continue the head and returns their records, in order.
	AppendSealed(ctx context.Context, events []Event, seal func(headSeq int64, headHash string) ([]string, error)) error
}

// LogOptions tunes a [Log]. The zero value is ready to use.
type LogOptions struct {
	// MaxBatch is the most events the writer commits in one store
	// transaction. Default 256.
	MaxBatch int
	// QueueSize bounds the events waiting for the writer; when it is full,
	// Append waits for space. Default 4096.
	QueueSize int
	// CommitTimeout bounds one call to the store. Default 10s.
	CommitTimeout time.Duration
	// OnCommit, if set, is called by the writer with every batch it has committed, in
	// order, before their callers are woken. It must be quick and must not keep the
	// slice or call the Log: metrics are computed from it.
	OnCommit func([]Event)
	// Stamp, if set, is called on every event as it is appended, before it is checked
	// and queued, to fill in what every event carries — the policy in force. It must be
	// quick and safe for concurrent use.
	Stamp func(*Event)
	// GroupWait, if positive, lets the writer hold a batch open for more events while
	// appends arrive faster than commits complete (two or more events queued when the
	// last commit's callers had been woken): it waits half as long as that commit took,
	// at most GroupWait, so that more calls share the next commit and its flush. Waits
	// under 20µs are not taken, so a fast store never waits. At most MaxGroupWait.
	// Default 0: never wait.
	GroupWait time.Duration
}

const (
	defaultMaxBatch      = 256
	defaultQueueSize     = 4096
	defaultCommitTimeout = 10 * time.Second
	// MaxGroupWait bounds [LogOptions].GroupWait.
	MaxGroupWait = 10 * time.Millisecond
	// minGroupWait is the shortest wait worth taking: a shorter sleep costs about as
	// much as the commit it would save.
	minGroupWait = 20 * time.Microsecond
)

// Log appends events to a [Store], hash-chained and durably. It is safe for
// concurrent use. One goroutine, owned by the Log, writes: it takes every
// queued event (up to [LogOptions.MaxBatch]), numbers and chains them,
// commits them in one store transaction and then wakes their callers, so many
// concurrent appends share one disk flush.
//
// There must be one Log per store; see the package documentation.
type Log struct {
	maxBatch  int
	stamp     func(*Event)
	groupWait time.Duration       // 0: never wait
	sleep     func(time.Duration) // time.Sleep; tests replace it

	queue   chan *pending      // closed by Close, under mu, once no Append can send
	closing chan struct{}      // closed when Close starts
	done    chan struct{}      // closed when the writer has returned
	abort   context.CancelFunc // cancels the writer's store calls

	closeOnce sync.Once
	// mu is held shared by Append while it sends on queue and exclusively by
	// Close while it closes queue, so that no send races the close. Append
	// never blocks under mu once closing is closed.
	mu sync.RWMutex
}

// pending is an event on its way through the writer. Pendings are reused (getPending,
// putPending): one is handed back only by whoever uses it last — the caller of Append
// once it has received the commit's result, the writer once it has run an AppendAsync's
// callback — so a caller that gave up waiting leaves its pending to the collector.
type pending struct {
	event Event      // owned by the writer until done is sent on
	done  chan error // buffered: the writer never waits for a caller that gave up
	// async marks an [Log.AppendAsync] event: nobody waits on done, and the writer
	// calls then, if set, with the commit's result.
	async bool
	then  func(error)
}

var pendings = sync.Pool{New: func() any { return &pending{done: make(chan error, 1)} }}

// getPending returns a pending for e, with an empty done channel.
func getPending(e Event) *pending {
	p := pendings.Get().(*pending)
	p.event = e
	return p
}

// putPending hands p back for reuse. Its done channel must be empty, and nothing else
// may refer to p.
func putPending(p *pending) {
	p.event, p.async, p.then = Event{}, false, nil
	pendings.Put(p)
}

// NewLog reads the head of the chain from store and starts the Log's writer.
// The caller must call [Log.Close].
func NewLog(ctx context.Context, store Store, opts LogOptions) (*Log, error) {
	if store == nil {
		return nil, errors.New("audit: new log: nil store")
	}
	if opts.MaxBatch < 0 || opts.QueueSize < 0 || opts.CommitTimeout < 0 || opts.GroupWait < 0 {
		return nil, fmt.Errorf("audit: new log: negative option in %+v", opts)
	}
	if opts.GroupWait > MaxGroupWait {
		return nil, fmt.Errorf("audit: new log: group wait %s is more than %s", opts.GroupWait, MaxGroupWait)
	}
	if opts.MaxBatch == 0 {
		opts.MaxBatch = defaultMaxBatch
	}
	if opts.QueueSize == 0 {
		opts.QueueSize = defaultQueueSize
	}
	if opts.CommitTimeout == 0 {
		opts.CommitTimeout = defaultCommitTimeout
	}
	last, ok, err := store.LastEvent(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: read chain head: %w", err)
	}
	w := &writer{store: store, commitTimeout: opts.CommitTimeout, onCommit: opts.OnCommit}
	if ok {
		w.seq, w.hash = last.Seq, last.Hash
	}
	runCtx, abort := context.WithCancel(context.Background())
	l := &Log{
		maxBatch:  opts.MaxBatch,
		stamp:     opts.Stamp,
		groupWait: opts.GroupWait,
		sleep:     time.Sleep,
		queue:     make(chan *pending, opts.QueueSize),
		closing:   make(chan struct{}),
		done:      make(chan struct{}),
		abort:     abort,
	}
	go l.run(runCtx, w)
	return l, nil
}

// Append records e and returns once it is durably committed. It fills in
// e.Seq, e.PrevHash and e.Hash and sets e.Time to what was recorded (UTC,
// truncated to microseconds); strings that are not valid UTF-8 are recorded,
// and returned, with U+FFFD in place of the invalid bytes.
//
// Append returns an error, and the caller must refuse the call e describes,
// when the event is invalid ([ErrInvalidEvent]), the log is closed
// ([ErrClosed]), the store failed to commit the batch holding e, or ctx is
// done. If ctx is done before e is queued, e is not recorded. If ctx is done
// while Append waits for the commit, Append returns the context's error but e
// may still be recorded: the log then holds more evidence than the caller
// saw, never less. Work that must be recorded even though its request was
// cancelled — the outcome of a call that already ran — passes
// context.WithoutCancel(ctx) with a timeout of its own.
func (l *Log) Append(ctx context.Context, e *Event) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("audit: append %s: %w", e.Kind, err)
	}
	if l.stamp != nil {
		l.stamp(e)
	}
	p := getPending(normalize(*e))
	if err := validate(&p.event); err != nil {
		putPending(p)
		return err
	}
	if err := l.enqueue(ctx, p); err != nil {
		putPending(p)
		return err
	}
	select {
	case err := <-p.done:
		if err == nil {
			*e = p.event
		}
		putPending(p)
		return err
	case <-ctx.Done():
		return fmt.Errorf("audit: append %s: wait for commit: %w", e.Kind, ctx.Err())
	}
}

// AppendAsync queues e like [Log.Append] but returns once it is queued, without waiting
// for the commit; then, if not nil, is called from the writer with the commit's result and
// must not block. It is for events whose caller no longer acts on the result — the outcome
// of a call already answered: the event still commits in order, in the next batch, but a
// crash before that loses it (`audit verify` then reports an intent without outcome). The
// error is that of validating or queueing e.
func (l *Log) AppendAsync(ctx context.Context, e *Event, then func(error)) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("audit: append %s: %w", e.Kind, err)
	}
	if l.stamp != nil {
		l.stamp(e)
	}
	p := getPending(normalize(*e))
	p.async, p.then = true, then
	if err := validate(&p.event); err != nil {
		putPending(p)
		return err
	}
	if err := l.enqueue(ctx, p); err != nil {
		putPending(p)
		return err
	}
	return nil
}

// enqueue hands p to the writer, waiting for queue space until ctx is done or
// the log closes.
func (l *Log) enqueue(ctx context.Context, p *pending) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	select {
	case <-l.closing:
		return ErrClosed
	default:
	}
	select {
	case l.queue <- p:
		return nil
	case <-l.closing:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("audit: append %s: wait for queue space: %w", p.event.Kind, ctx.Err())
	}
}

// Close stops accepting events, commits every event already queued and waits
// for the writer to return. Appends waiting for queue space when Close starts
// fail with [ErrClosed]. If ctx is done first, Close aborts the store call in
// progress, fails the events still queued, waits for the writer and returns
// the context's error. Close may be called more than once.
func (l *Log) Close(ctx context.Context) error {
	l.closeOnce.Do(func() {
		close(l.closing)
		l.mu.Lock() // every Append holding mu returns promptly: closing is closed
		close(l.queue)
		l.mu.Unlock()
	})
	select {
	case <-l.done:
		l.abort()
		return nil
	case <-ctx.Done():
		l.abort()
		<-l.done
		return fmt.Errorf("audit: close: %w", ctx.Err())
	}
}

// run is the writer: it commits batches until the queue is closed and empty.
func (l *Log) run(ctx context.Context, w *writer) {
	defer close(l.done)
	batch := make([]*pending, 0, l.maxBatch)
	var wait time.Duration // how long the next batch waits for more events
	for p := range l.queue {
		batch = l.fill(append(batch[:0], p))
		if wait > 0 && len(batch) < l.maxBatch {
			l.sleep(wait)
			batch = l.fill(batch)
		}
		var start time.Time
		if l.groupWait > 0 { // the commit's time matters only to the next wait
			start = time.Now()
		}
		err := w.commit(ctx, batch)
		for _, p := range batch {
			if !p.async {
				p.done <- err // p is its caller's from here
				continue
			}
			if p.then != nil {
				p.then(err)
			}
			putPending(p)
		}
		clear(batch)
		if l.groupWait > 0 {
			wait = l.nextWait(time.Since(start))
		}
	}
}

// nextWait is how long the next batch waits for more events after a commit that took
// took: none unless appends are arriving faster than commits complete, which two or
// more events queued behind the commit show. At a low rate (each call's events alone
// in their commit) no batch waits, so no call pays for the wait.
func (l *Log) nextWait(took time.Duration) time.Duration {
	if len(l.queue) < 2 {
		return 0
	}
	if wait := min(took/2, l.groupWait); wait >= minGroupWait {
		return wait
	}
	return 0
}

// fill adds queued events to batch, without waiting, up to the batch limit.
func (l *Log) fill(batch []*pending) []*pending {
	for len(batch) < l.maxBatch {
		select {
		case p, ok := <-l.queue:
			if !ok {
				return batch
			}
			batch = append(batch, p)
		default:
			return batch
		}
	}
	return batch
}

// writer holds the head of the chain. Only the Log's writer goroutine uses it.
type writer struct {
	store         Store
	commitTimeout time.Duration
	onCommit      func([]Event)
	events        []Event // reused between batches

	seq   int64  // Seq of the last committed event, 0 if none
	hash  string // Hash of the last committed event
	stale bool   // a commit failed: reread the head before the next one
}

// commit numbers and chains batch from the head, writes it in one store call
// and advances the head only if that succeeded. After a failure the next
// commit rereads the head from the store, because a failed commit's outcome
// may be unknown (a timeout after the data reached the disk); chaining from
// what the store holds is right in both cases.
func (w *writer) commit(ctx context.Context, batch []*pending) error {
	ctx, cancel := context.WithTimeout(ctx, w.commitTimeout)
	defer cancel()
	if w.stale {
		if err := w.reload(ctx); err != nil {
			return err
		}
	}
	w.events = w.events[:0]
	for _, p := range batch {
		w.events = append(w.events, p.event)
	}
	var err error
	if ss, ok := w.store.(SealingStore); ok {
		err = ss.AppendSealed(ctx, w.events, w.seal)
	} else if cs, ok := w.store.(ChainStore); ok {
		err = cs.AppendChained(ctx, w.events, w.chain)
	} else if err = w.chain(w.seq, w.hash); err == nil {
		err = w.store.AppendEvents(ctx, w.events)
	}
	if err == nil {
		for i, p := range batch {
			p.event.Seq, p.event.PrevHash, p.event.Hash = w.events[i].Seq, w.events[i].PrevHash, w.events[i].Hash
		}
		if w.onCommit != nil {
			w.onCommit(w.events)
		}
		last := &w.events[len(w.events)-1]
		w.seq, w.hash = last.Seq, last.Hash
	}
	clear(w.events) // drop references to caller strings
	if err != nil {
		w.stale = true
		return fmt.Errorf("audit: commit %d events: %w", len(batch), err)
	}
	return nil
}

// chain numbers and hashes w.events to continue the head (seq, hash). A head behind
// what this log committed means the store lost events: the log refuses to write.
func (w *writer) chain(seq int64, hash string) error {
	if seq < w.seq {
		return fmt.Errorf("audit: store ends at event %d but event %d was committed", seq, w.seq)
	}
	prev := hash
	for i := range w.events {
		seq++
		e := &w.events[i]
		e.Seq, e.PrevHash, e.Hash = seq, prev, ""
		e.Hash = e.ComputeHash()
		prev = e.Hash
	}
	return nil
}

// seal is chain for a [SealingStore]: it also returns the events' records.
func (w *writer) seal(seq int64, hash string) ([]string, error) {
	if seq < w.seq {
		return nil, fmt.Errorf("audit: store ends at event %d but event %d was committed", seq, w.seq)
	}
	records := make([]string, len(w.events))
	prev := hash
	for i := range w.events {
		seq++
		e := &w.events[i]
		e.Seq, e.PrevHash = seq, prev
		rec, err := e.Seal()
		if err != nil {
			return nil, fmt.Errorf("audit: encode event %d: %w", seq, err)
		}
		records[i] = rec
		prev = e.Hash
	}
	return records, nil
}

// reload sets the head from the store. A store whose head is behind an event
// this log committed has lost events; the log then refuses to write.
func (w *writer) reload(ctx context.Context) error {
	last, ok, err := w.store.LastEvent(ctx)
	if err != nil {
		return fmt.Errorf("audit: reload chain head: %w", err)
	}
	if !ok {
		last = Event{}
	}
	if last.Seq < w.seq {
		return fmt.Errorf("audit: reload chain head: store ends at event %d but event %d was committed", last.Seq, w.seq)
	}
	w.seq, w.hash, w.stale = last.Seq, last.Hash, false
	return nil
}
