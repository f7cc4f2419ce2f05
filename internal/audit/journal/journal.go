// Package journal puts a durable, append-only file in front of the store that indexes
// the audit log. The embedded SQLite store commits an event with a B-tree insert, index
// updates and several pages written to its WAL before its flush; the journal commits a
// batch of events with one write of their records and one fdatasync of a preallocated
// file. An event is durable, and its caller answered, once it is in the journal; a
// goroutine then copies it into the store in larger, less frequent transactions, where
// queries, verification and the console read it.
//
// What it guarantees:
//
//   - Durable before return, like the store it fronts: AppendSealed returns nil only
//     after the batch's records are flushed to the journal file.
//   - Nothing lost between the two: at Open, events the journal holds that the store
//     does not are copied into it before anything else happens, and segments are deleted
//     only once the store has committed all their events. A crash between a journal flush
//     and the store's commit is repaired at the next start.
//   - Read your writes: [Journal.Barrier] returns once the store holds every event the
//     journal had when it was called, so a reader in this process never misses an event it
//     caused. Another process reading the store sees the events a few milliseconds later.
//   - Fail closed: after a failed write or flush the journal refuses every append until
//     the process restarts and recovers it; the chain on disk is never continued after
//     bytes of unknown state.
//
// One process may use a directory at a time (an exclusive lock on its LOCK file), and the
// journal must be the only writer of the store's events while it is open.
package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// Options tune a [Journal]. The zero value is ready to use.
type Options struct {
	// SegmentBytes is the size a segment file is preallocated to; a batch that would not
	// fit starts a new one. Default 64 MiB; at least 64 KiB.
	SegmentBytes int64
	// SegmentAge is how long a segment takes new events: an older one is closed at the next
	// append and deleted once indexed, so that events pruned from the store by retention do
	// not stay in the journal. Default 1h.
	SegmentAge time.Duration
	// IndexInterval is the shortest time between two of the indexer's commits to the store
	// while nobody waits for it (a [Journal.Barrier] starts a commit at once) and less than
	// a batch is pending (a full batch is committed at once). Default 50ms.
	IndexInterval time.Duration
	// IndexBatch is the most events one commit to the store carries. Default 1024.
	IndexBatch int
	// MaxPending bounds the events flushed to the journal but not yet in the store; an
	// append beyond it waits for the indexer. Default 16384.
	MaxPending int
	// Logger receives the indexer's failures and what recovery found. Default: discard.
	Logger *slog.Logger
}

const (
	defaultSegmentBytes  = 64 << 20
	minSegmentBytes      = 64 << 10
	defaultSegmentAge    = time.Hour
	defaultIndexInterval = 50 * time.Millisecond
	defaultIndexBatch    = 1024
	defaultMaxPending    = 16384
	indexTimeout         = 30 * time.Second
	segmentSuffix        = ".journal"
)

// ErrClosed is returned by appends after [Journal.Close].
var ErrClosed = errors.New("audit journal: closed")

var _ audit.SealingStore = (*Journal)(nil)

// Journal is an [audit.SealingStore] that commits to an append-only file and indexes into
// another SealingStore. It is safe for concurrent use.
type Journal struct {
	dir   string
	index audit.SealingStore
	opts  Options
	log   *slog.Logger
	lock  *os.File

	appendMu sync.Mutex // serialises appends; held across the write and the flush
	seg      *segment   // the segment appends go to; nil until the first append
	buf      []byte     // reused frame buffer

	// The batch commitIndex hands the store, reused; only the indexing goroutine uses them.
	idxEvents  []audit.Event
	idxRecords []string

	mu       sync.Mutex
	seq      int64  // the last event in the journal
	hash     string // its hash
	indexed  int64  // the last event the store holds
	pending  queue  // in the journal, not yet in the store, in order
	segments []*segment
	changed  chan struct{} // closed and replaced whenever indexed or indexErr changes
	indexErr error         // the indexer's last failure, nil once it commits again
	broken   error         // a write or flush failed: appends are refused until a restart
	urgent   bool          // a Barrier waits: commit without waiting out the interval
	closed   bool

	wake chan struct{} // buffered: the indexer has work
	stop chan struct{} // closed by Close: the indexer returns
	done chan struct{} // closed when the indexer has returned
}

type item struct {
	event  audit.Event
	record string
}

// queue holds items in order, items[head:]. The indexer takes them from the front without
// moving the rest (an item is a whole event: under a backlog, moving what remains after
// every commit cost more than the commit's inserts); the live items are moved down only
// once as many are dead in front of them, so each is moved at most once on average.
type queue struct {
	items []item
	head  int
}

func (q *queue) len() int { return len(q.items) - q.head }

func (q *queue) push(it item) { q.items = append(q.items, it) }

// front returns the first n items. Pushes do not touch them; only drop does.
func (q *queue) front(n int) []item { return q.items[q.head : q.head+n : q.head+n] }

// drop removes the first n items. An emptied queue keeps its array unless it is larger
// than keep items.
func (q *queue) drop(n, keep int) {
	clear(q.items[q.head : q.head+n])
	q.head += n
	live := len(q.items) - q.head
	switch {
	case live == 0 && cap(q.items) > keep:
		q.items, q.head = nil, 0 // a burst's backlog does not keep its array
	case live == 0:
		q.items, q.head = q.items[:0], 0
	case q.head >= live:
		copy(q.items, q.items[q.head:])
		clear(q.items[live:])
		q.items, q.head = q.items[:live], 0
	}
}

// segment is one journal file.
type segment struct {
	path    string
	f       *os.File // open while appends go to it; only appends use it
	off     int64    // where the next frame goes; only appends use it
	created time.Time
	last    int64 // the last event it holds, 0 if none; under Journal.mu
	sealed  bool  // no more appends go to it; under Journal.mu
}

// Open locks dir (creating it), copies into index every event the journal holds that
// index does not, deletes the segments and starts the indexer. The caller must call
// [Journal.Close].
func Open(ctx context.Context, dir string, index audit.SealingStore, opts Options) (_ *Journal, err error) {
	if index == nil {
		return nil, errors.New("audit journal: open: nil index store")
	}
	if opts.SegmentBytes == 0 {
		opts.SegmentBytes = defaultSegmentBytes
	}
	if opts.SegmentAge == 0 {
		opts.SegmentAge = defaultSegmentAge
	}
	if opts.IndexInterval == 0 {
		opts.IndexInterval = defaultIndexInterval
	}
	if opts.IndexBatch == 0 {
		opts.IndexBatch = defaultIndexBatch
	}
	if opts.MaxPending == 0 {
		opts.MaxPending = defaultMaxPending
	}
	switch {
	case opts.SegmentBytes < minSegmentBytes:
		return nil, fmt.Errorf("audit journal: segment size %d bytes, want at least %d", opts.SegmentBytes, minSegmentBytes)
	case opts.SegmentAge < 0, opts.IndexInterval < 0, opts.IndexBatch < 0, opts.MaxPending < 0:
		return nil, fmt.Errorf("audit journal: negative option in %+v", opts)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit journal: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	j := &Journal{
		dir: dir, index: index, opts: opts, log: opts.Logger, lock: lock,
		changed: make(chan struct{}), wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	if err := j.recover(ctx); err != nil {
		return nil, err
	}
	go j.run()
	return j, nil
}

// recover copies the journal's events that index lacks into it, then deletes every
// segment: afterwards the store holds the whole log, and the journal is empty.
func (j *Journal) recover(ctx context.Context) error {
	last, ok, err := j.index.LastEvent(ctx)
	if err != nil {
		return fmt.Errorf("audit journal: read the store's head: %w", err)
	}
	if !ok {
		last = audit.Event{}
	}
	paths, err := segmentPaths(j.dir)
	if err != nil {
		return err
	}
	r := recovery{j: j, ctx: ctx, headSeq: last.Seq, headHash: last.Hash}
	for _, p := range paths {
		if err := r.segment(p); err != nil {
			return err
		}
	}
	if err := r.flush(); err != nil {
		return err
	}
	if r.copied > 0 || r.dropped > 0 {
		j.log.Warn("audit journal recovered", "events_copied", r.copied, "head", r.headSeq, "torn_bytes_dropped", r.dropped)
	}
	for _, p := range paths {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("audit journal: remove recovered segment: %w", err)
		}
	}
	if err := syncDir(j.dir); err != nil {
		return err
	}
	j.seq, j.hash, j.indexed = r.headSeq, r.headHash, r.headSeq
	return nil
}

// recovery reads segments in order and copies what follows the store's head into it.
type recovery struct {
	j                 *Journal
	ctx               context.Context
	headSeq           int64  // the store's head, advanced as events are copied
	headHash          string //
	prevSeq           int64  // the last event read from the journal, 0 before the first
	prevHash          string
	batch             []item
	copied, dropped   int
	torn, tornSegment string // the first segment that ended in a damaged frame
}

func (r *recovery) segment(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("audit journal: %w", err)
	}
	name := filepath.Base(path)
	for off := 0; ; {
		rec, n, err := nextFrame(data[off:])
		if errors.Is(err, errEnd) {
			return nil
		}
		if err != nil {
			// A frame cut short or damaged ends a segment that a write failure or a crash
			// interrupted: nothing after it was acknowledged. Events after it, in this or
			// a later segment, would mean damage in the middle of the log.
			r.torn, r.tornSegment = err.Error(), name
			r.dropped += len(data) - off
			r.j.log.Warn("audit journal: dropping a torn tail", "segment", name, "offset", off, "bytes", len(data)-off, "reason", err)
			return nil
		}
		if r.tornSegment != "" {
			return fmt.Errorf("audit journal: segment %s holds events after segment %s ended in a damaged frame (%s)", name, r.tornSegment, r.torn)
		}
		e, err := audit.ParseRecord(rec)
		if err == nil && e.ComputeHash() != e.Hash {
			err = errors.New("its hash does not match its content")
		}
		if err != nil {
			return fmt.Errorf("audit journal: segment %s offset %d: record unreadable: %w", name, off, err)
		}
		off += n
		if r.prevSeq != 0 && (e.Seq != r.prevSeq+1 || e.PrevHash != r.prevHash) {
			return fmt.Errorf("audit journal: segment %s: event %d does not follow event %d", name, e.Seq, r.prevSeq)
		}
		r.prevSeq, r.prevHash = e.Seq, e.Hash
		if err := r.add(e, rec); err != nil {
			return err
		}
	}
}

// add copies e into the store (batched) unless the store holds it already.
func (r *recovery) add(e audit.Event, rec []byte) error {
	if e.Seq < r.headSeq {
		return nil // indexed before the stop
	}
	if e.Seq == r.headSeq {
		// Indexed before the stop, and the store's head: the two must be the same event,
		// or the journal is another log's and its events would be dropped unnoticed.
		if e.Hash != r.headHash {
			return fmt.Errorf("audit journal: the journal's event %d is not the store's (another hash): they are not the same log", e.Seq)
		}
		return nil
	}
	if e.Seq != r.headSeq+1 || e.PrevHash != r.headHash {
		return fmt.Errorf("audit journal: the journal continues with event %d but the store ends at event %d with another hash: they are not the same log", e.Seq, r.headSeq)
	}
	r.batch = append(r.batch, item{event: e, record: string(rec)})
	r.headSeq, r.headHash = e.Seq, e.Hash
	if len(r.batch) >= r.j.opts.IndexBatch {
		return r.flush()
	}
	return nil
}

func (r *recovery) flush() error {
	if len(r.batch) == 0 {
		return nil
	}
	if err := r.j.commitIndex(r.ctx, r.batch); err != nil {
		return fmt.Errorf("audit journal: recover: %w", err)
	}
	r.copied += len(r.batch)
	r.batch = r.batch[:0]
	return nil
}

// commitIndex writes items, which continue the store's chain, to the store.
// Only one goroutine indexes at a time (recovery in Open, then the indexer), so the
// batch's slices are reused from one commit to the next.
func (j *Journal) commitIndex(ctx context.Context, items []item) error {
	events := slices.Grow(j.idxEvents[:0], len(items))[:len(items)]
	records := slices.Grow(j.idxRecords[:0], len(items))[:len(items)]
	j.idxEvents, j.idxRecords = events, records
	defer func() {
		clear(events) // keep no event or record alive until the next commit
		clear(records)
	}()
	for i := range items {
		events[i], records[i] = items[i].event, items[i].record
	}
	first := events[0]
	return j.index.AppendSealed(ctx, events, func(seq int64, hash string) ([]string, error) {
		if seq != first.Seq-1 || hash != first.PrevHash {
			return nil, fmt.Errorf("the store ends at event %d, but the journal continues from event %d", seq, first.Seq-1)
		}
		return records, nil
	})
}

// AppendSealed calls seal with the journal's head, writes the records it returns and
// flushes them, then queues them for the store.
func (j *Journal) AppendSealed(ctx context.Context, events []audit.Event, seal func(headSeq int64, headHash string) ([]string, error)) error {
	if len(events) == 0 {
		return nil
	}
	j.appendMu.Lock()
	defer j.appendMu.Unlock()
	j.mu.Lock()
	broken := j.broken
	j.mu.Unlock()
	if broken != nil {
		return fmt.Errorf("audit journal: refusing appends after an earlier failure (restart to recover): %w", broken)
	}
	if err := j.waitRoom(ctx, len(events)); err != nil {
		return err
	}
	j.mu.Lock()
	seq, hash := j.seq, j.hash
	j.mu.Unlock()
	records, err := seal(seq, hash)
	if err != nil {
		return err
	}
	if len(records) != len(events) {
		return fmt.Errorf("audit journal: sealed %d records for %d events", len(records), len(events))
	}
	first := seq + 1
	buf := j.buf[:0]
	for i := range events {
		e := &events[i]
		if e.Seq != seq+1 || e.PrevHash != hash {
			return fmt.Errorf("audit journal: event %d does not continue the journal, which ends at event %d", e.Seq, seq)
		}
		if len(records[i]) == 0 || len(records[i]) > MaxRecord {
			return fmt.Errorf("audit journal: event %d: record of %d bytes, want 1 to %d", e.Seq, len(records[i]), MaxRecord)
		}
		seq, hash = e.Seq, e.Hash
		buf = appendFrame(buf, records[i])
	}
	j.buf = buf
	if cap(j.buf) > 1<<20 {
		j.buf = nil // a rare large batch does not pin its buffer
	}
	if err := j.write(buf, first, seq); err != nil {
		j.mu.Lock()
		j.broken = err
		j.mu.Unlock()
		return err
	}
	j.mu.Lock()
	before := j.pending.len()
	for i := range events {
		j.pending.push(item{event: events[i], record: records[i]})
	}
	// Wake the indexer when it was idle, or when these events complete a batch, which
	// does not wait out the interval. Otherwise it is already waiting out the interval
	// to a commit that takes these too: waking it on every append would only send it
	// back to sleep, at a cost on every call.
	wake := before == 0 || (before < j.opts.IndexBatch && j.pending.len() >= j.opts.IndexBatch)
	j.seq, j.hash = seq, hash
	j.mu.Unlock()
	if wake {
		select {
		case j.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// waitRoom waits until the events not yet indexed leave room for n more.
func (j *Journal) waitRoom(ctx context.Context, n int) error {
	for {
		j.mu.Lock()
		closed, room, ch := j.closed, j.pending.len() == 0 || j.pending.len()+n <= j.opts.MaxPending, j.changed
		j.mu.Unlock()
		if closed {
			return ErrClosed
		}
		if room {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("audit journal: wait for the index to catch up: %w", ctx.Err())
		}
	}
}

// write appends the frames in buf, events first to last, to the current segment
// (starting a new one if it is full or old) and flushes them.
func (j *Journal) write(buf []byte, first, last int64) error {
	if s := j.seg; s != nil && s.off > 0 && (s.off+int64(len(buf)) > j.opts.SegmentBytes || time.Since(s.created) > j.opts.SegmentAge) {
		j.mu.Lock()
		s.sealed = true
		j.mu.Unlock()
		j.seg = nil
		if err := s.f.Close(); err != nil {
			return fmt.Errorf("audit journal: close segment: %w", err)
		}
		s.f = nil
	}
	if j.seg == nil {
		s, err := j.create(first)
		if err != nil {
			return err
		}
		j.seg = s
		j.mu.Lock()
		j.segments = append(j.segments, s)
		j.mu.Unlock()
	}
	s := j.seg
	if _, err := s.f.WriteAt(buf, s.off); err != nil {
		return fmt.Errorf("audit journal: write: %w", err)
	}
	if err := datasync(s.f); err != nil {
		return fmt.Errorf("audit journal: flush: %w", err)
	}
	s.off += int64(len(buf))
	j.mu.Lock()
	s.last = last
	j.mu.Unlock()
	return nil
}

// create makes a preallocated segment whose first event is first, durable in the
// directory before anything is written to it.
func (j *Journal) create(first int64) (*segment, error) {
	path := filepath.Join(j.dir, fmt.Sprintf("%020d%s", first, segmentSuffix))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit journal: create segment: %w", err)
	}
	// Preallocating lets each flush write data without updating the file's size. Where
	// the file system cannot, the flushes update it, which is slower but as durable.
	preallocate(f, j.opts.SegmentBytes)
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("audit journal: create segment: %w", err)
	}
	if err := syncDir(j.dir); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return &segment{path: path, f: f, created: time.Now()}, nil
}

// AppendEvents appends events that are already numbered and hashed to continue the log.
func (j *Journal) AppendEvents(ctx context.Context, events []audit.Event) error {
	return j.AppendSealed(ctx, events, func(int64, string) ([]string, error) { return records(events) })
}

// AppendChained numbers and hashes events with chain, then appends them.
func (j *Journal) AppendChained(ctx context.Context, events []audit.Event, chain func(headSeq int64, headHash string) error) error {
	return j.AppendSealed(ctx, events, func(seq int64, hash string) ([]string, error) {
		if err := chain(seq, hash); err != nil {
			return nil, err
		}
		return records(events)
	})
}

func records(events []audit.Event) ([]string, error) {
	out := make([]string, len(events))
	for i := range events {
		b, err := events[i].MarshalRecord()
		if err != nil {
			return nil, err
		}
		out[i] = string(b)
	}
	return out, nil
}

// LastEvent returns the log's last event, read from the store once it holds everything
// the journal does.
func (j *Journal) LastEvent(ctx context.Context) (audit.Event, bool, error) {
	if err := j.Barrier(ctx); err != nil {
		return audit.Event{}, false, err
	}
	return j.index.LastEvent(ctx)
}

// Head returns the Seq and Hash of the last event in the journal (0 and "" for none).
func (j *Journal) Head() (int64, string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.seq, j.hash
}

// Barrier returns once the store holds every event the journal held when it was
// called. It returns an error if ctx is done first, or at once if the indexer's last
// commit failed.
func (j *Journal) Barrier(ctx context.Context) error { return j.barrier(ctx, true) }

// barrier is Barrier; unless failFast, it waits through the indexer's failures.
func (j *Journal) barrier(ctx context.Context, failFast bool) error {
	j.mu.Lock()
	target := j.seq
	j.mu.Unlock()
	for {
		j.mu.Lock()
		indexed, ierr, ch := j.indexed, j.indexErr, j.changed
		if indexed < target {
			j.urgent = true
		}
		j.mu.Unlock()
		if indexed >= target {
			return nil
		}
		if ierr != nil && failFast {
			return fmt.Errorf("audit journal: the store is behind the journal at event %d of %d: %w", indexed, target, ierr)
		}
		select {
		case j.wake <- struct{}{}:
		default:
		}
		select {
		case <-ch:
		case <-j.done:
			return fmt.Errorf("audit journal: closed with the store behind at event %d of %d", indexed, target)
		case <-ctx.Done():
			return fmt.Errorf("audit journal: wait for the store to catch up: %w", ctx.Err())
		}
	}
}

// Err reports what stops the journal from working: a failed write or flush (appends are
// refused until a restart), or the indexer's last failure to commit to the store (the
// journal still takes events, up to MaxPending). It is nil when both work. It does not
// wait for an append in progress, so a readiness probe answers while appends wait.
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.broken != nil {
		return fmt.Errorf("audit journal: a write failed, appends are refused until a restart: %w", j.broken)
	}
	if j.indexErr != nil {
		return fmt.Errorf("audit journal: cannot copy %d events into the store: %w", j.pending.len(), j.indexErr)
	}
	return nil
}

// Pending returns how many events are in the journal but not yet in the store.
func (j *Journal) Pending() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.pending.len()
}

// run is the indexer: it copies pending events into the store.
func (j *Journal) run() {
	defer close(j.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-j.stop
		cancel()
	}()
	var lastCommit time.Time
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-j.wake:
		case <-j.stop:
			return
		}
		for {
			j.mu.Lock()
			// A full batch waiting is a backlog: the interval gathers a trickle of events
			// into one commit, it must not cap how many events per second reach the store.
			urgent := j.urgent || j.closed || j.pending.len() >= j.opts.IndexBatch
			j.mu.Unlock()
			if wait := j.opts.IndexInterval - time.Since(lastCommit); !urgent && wait > 0 {
				select {
				case <-time.After(wait):
				case <-j.wake: // a Barrier: look again
					continue
				case <-j.stop:
					return
				}
			}
			j.mu.Lock()
			// Appends only add past the end of pending, and only indexedThrough, on this
			// goroutine, moves what is before it: the batch needs no copy.
			n := min(j.pending.len(), j.opts.IndexBatch)
			batch := j.pending.front(n)
			j.urgent = false
			j.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			lastCommit = time.Now()
			cctx, ccancel := context.WithTimeout(ctx, indexTimeout)
			err := j.commitIndex(cctx, batch)
			ccancel()
			if err != nil {
				j.log.Error("audit journal: index events", "first", batch[0].event.Seq, "events", len(batch), "err", err)
				j.mu.Lock()
				j.indexErr = err
				j.notifyLocked()
				j.mu.Unlock()
				select {
				case <-time.After(backoff):
				case <-j.stop:
					return
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			backoff = 50 * time.Millisecond
			j.indexedThrough(len(batch))
		}
	}
}

// indexedThrough records that the first n pending events are in the store, and deletes
// the closed segments it now holds in full.
func (j *Journal) indexedThrough(n int) {
	j.mu.Lock()
	j.indexed = j.pending.front(n)[n-1].event.Seq
	j.pending.drop(n, 4*j.opts.IndexBatch)
	j.indexErr = nil
	var done []*segment
	keep := j.segments[:0]
	for _, s := range j.segments {
		if s.sealed && s.last <= j.indexed {
			done = append(done, s)
		} else {
			keep = append(keep, s)
		}
	}
	clear(j.segments[len(keep):])
	j.segments = keep
	j.notifyLocked()
	j.mu.Unlock()
	for _, s := range done {
		if err := os.Remove(s.path); err != nil {
			j.log.Error("audit journal: remove indexed segment", "segment", s.path, "err", err)
		}
	}
}

func (j *Journal) notifyLocked() {
	close(j.changed)
	j.changed = make(chan struct{})
}

// Close refuses new appends, waits until the store holds every event (or ctx is done),
// stops the indexer and releases the directory. Events the store does not hold yet stay
// in the journal and are copied at the next Open. Close may be called more than once.
func (j *Journal) Close(ctx context.Context) error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		<-j.done
		return nil
	}
	j.closed = true
	j.notifyLocked() // an append waiting for room returns ErrClosed
	j.mu.Unlock()
	// Wait out an append in progress: its events must be indexed before segments go.
	j.appendMu.Lock()
	var err error
	if j.seg != nil {
		if cerr := j.seg.f.Close(); cerr != nil {
			err = fmt.Errorf("audit journal: close segment: %w", cerr)
		}
		j.seg.f, j.seg = nil, nil
	}
	j.appendMu.Unlock()
	if berr := j.barrier(ctx, false); berr != nil && err == nil {
		err = berr
	}
	close(j.stop)
	<-j.done
	if err == nil {
		// Everything is in the store: the journal starts empty next time.
		j.mu.Lock()
		segs := j.segments
		j.segments = nil
		j.mu.Unlock()
		for _, s := range segs {
			if rerr := os.Remove(s.path); rerr != nil && err == nil {
				err = fmt.Errorf("audit journal: remove indexed segment: %w", rerr)
			}
		}
	}
	if lerr := j.lock.Close(); lerr != nil && err == nil {
		err = fmt.Errorf("audit journal: release lock: %w", lerr)
	}
	return err
}

// segmentPaths lists dir's segments in the order of their first events.
func segmentPaths(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit journal: %w", err)
	}
	type seg struct {
		first int64
		path  string
	}
	var segs []seg
	for _, e := range entries {
		name := e.Name()
		base, ok := strings.CutSuffix(name, segmentSuffix)
		if !ok || e.IsDir() {
			continue
		}
		first, err := strconv.ParseInt(base, 10, 64)
		if err != nil || first < 1 {
			return nil, fmt.Errorf("audit journal: %s: not a segment name (want the first event's number, 20 digits, then %s)", name, segmentSuffix)
		}
		segs = append(segs, seg{first, filepath.Join(dir, name)})
	}
	sort.Slice(segs, func(a, b int) bool { return segs[a].first < segs[b].first })
	paths := make([]string, len(segs))
	for i, s := range segs {
		paths[i] = s.path
	}
	return paths, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("audit journal: sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("audit journal: sync directory: %w", err)
	}
	return nil
}
