package contain

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Errors of [Idempotency.Begin], worded for the agent that sent the key.
var (
	// ErrIdemConflict: the key was used for a call to another tool or with other
	// arguments. The agent must use a new key for a new call.
	ErrIdemConflict = errors.New("this idempotency key was already used for a different call; use a new key for a new call")
	// ErrIdemUnknown: the call that used the key was interrupted (a timeout after it was
	// sent, or a gateway restart), so whether it took effect is not known. It is not
	// executed again; the agent must check its effect before retrying with a new key.
	ErrIdemUnknown = errors.New("the outcome of the earlier call with this idempotency key is not known, so it is not executed again; check its effect before retrying with a new key")
	// ErrIdemInvalidKey: the key is not 1 to 255 bytes of printable ASCII.
	ErrIdemInvalidKey = errors.New("invalid idempotency key: it must be 1 to 255 printable ASCII characters without spaces")
	// ErrIdemResultNotKept: the call that used the key was executed, but its result was
	// too large to keep for replay. It is not executed again.
	ErrIdemResultNotKept = errors.New("the earlier call with this idempotency key was executed, but its result was too large to keep, so it cannot be replayed")
)

// IdemState is the state of an idempotency record.
type IdemState string

// States of an [IdemRecord].
const (
	IdemRunning IdemState = "running" // recorded before the call was sent; no outcome yet
	IdemDone    IdemState = "done"    // the call returned; Result holds its result if kept
	IdemUnknown IdemState = "unknown" // the call was sent but its outcome was lost
)

// IdemRecord is what is kept of a call made with an idempotency key.
type IdemRecord struct {
	Agent      string
	Key        string
	Tool       string
	ArgsHash   string
	RequestID  string // the call that executed
	State      IdemState
	Result     json.RawMessage // the result of a done call; nil when not kept
	ResultHash string          // "sha256:<hex>" of the result; "" until done
	CreatedAt  time.Time
	FinishedAt time.Time // zero until done or unknown
}

// IdemStore persists idempotency records.
type IdemStore interface {
	// CreateIdem inserts rec, in state running, unless a record for (rec.Agent, rec.Key)
	// exists; then it returns that record and false. The check and the insert are atomic.
	CreateIdem(ctx context.Context, rec IdemRecord) (existing *IdemRecord, created bool, err error)
	// FinishIdem moves the running record for (agent, key) to state (done or unknown) at
	// at, with the result (nil if not kept) and its hash. It fails if there is no running
	// record.
	FinishIdem(ctx context.Context, agent, key string, state IdemState, result json.RawMessage, resultHash string, at time.Time) error
	// DeleteIdem deletes the record for (agent, key), if any.
	DeleteIdem(ctx context.Context, agent, key string) error
	// ExpireIdem deletes the records created before before and returns how many.
	ExpireIdem(ctx context.Context, before time.Time) (int, error)
}

// Bounds of [IdempotencyOptions].
const (
	DefaultIdemRetention      = 24 * time.Hour
	MinIdemRetention          = time.Minute
	MaxIdemRetention          = 720 * time.Hour
	DefaultIdemMaxResultBytes = 1 << 20
	MaxIdemMaxResultBytes     = 64 << 20
	// MaxIdemKeyLen bounds the length of an idempotency key, in bytes.
	MaxIdemKeyLen = 255

	// idemWriteTimeout bounds the write of a call's outcome, which outlives the client:
	// the record must be written even if the agent has gone.
	idemWriteTimeout = 10 * time.Second
)

// IdempotencyOptions configure [Idempotency].
type IdempotencyOptions struct {
	// Store keeps the records. Required.
	Store IdemStore
	// Retention is how long a record is kept after the call that created it: default
	// 24h, 1m..720h. It must outlast the longest call and the agents' retries.
	Retention time.Duration
	// MaxResultBytes is the largest result kept for replay: default 1 MiB, at most
	// 64 MiB. A retry of a call whose result was larger gets [ErrIdemResultNotKept].
	MaxResultBytes int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Idempotency makes sure a retried write is never executed twice: the gateway records
// the key before it calls the upstream and the result after, and answers a retry with
// the same key from the record. It is safe for concurrent use.
//
// A retry that arrives while the first call runs in this process waits for its outcome.
// A record left running by another process (or by this one before a restart) is not
// waited for: its outcome is unknown, and the retry gets [ErrIdemUnknown].
type Idempotency struct {
	store     IdemStore
	retention time.Duration
	maxResult int
	now       func() time.Time

	// mu guards running. It is never held across store I/O.
	mu sync.Mutex
	// running holds the keys this process has claimed and not finished; done is closed
	// when the claim ends. Its size is bounded by the calls in flight.
	running map[idemKey]*idemCall
}

type idemKey struct{ agent, key string }

type idemCall struct {
	tool, argsHash string
	done           chan struct{}
}

// NewIdempotency returns an Idempotency over o.Store, or an error naming every problem
// with the options.
func NewIdempotency(o IdempotencyOptions) (*Idempotency, error) {
	var errs []error
	if o.Store == nil {
		errs = append(errs, errors.New("store is required"))
	}
	if o.Retention != 0 && (o.Retention < MinIdemRetention || o.Retention > MaxIdemRetention) {
		errs = append(errs, fmt.Errorf("retention must be between %s and %s (0 for the default), got %s", MinIdemRetention, MaxIdemRetention, o.Retention))
	}
	if o.MaxResultBytes < 0 || o.MaxResultBytes > MaxIdemMaxResultBytes {
		errs = append(errs, fmt.Errorf("max result bytes must be between 1 and %d (0 for the default), got %d", MaxIdemMaxResultBytes, o.MaxResultBytes))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("contain: new idempotency: %w", err)
	}
	i := &Idempotency{
		store:     o.Store,
		retention: o.Retention,
		maxResult: o.MaxResultBytes,
		now:       o.Now,
		running:   map[idemKey]*idemCall{},
	}
	if i.retention == 0 {
		i.retention = DefaultIdemRetention
	}
	if i.maxResult == 0 {
		i.maxResult = DefaultIdemMaxResultBytes
	}
	if i.now == nil {
		i.now = time.Now
	}
	return i, nil
}

// Begin claims key for a call by agent to tool with arguments hashing to argsHash.
//
//   - (nil, nil): the key is new; the caller executes the call and must then call
//     [Idempotency.Finish] or [Idempotency.Abandon], or retries of the key wait until
//     their context ends.
//   - (rec, nil), rec done, for the same tool and arguments: the call was executed;
//     answer from rec.Result. If its result was too large to keep, the error wraps
//     [ErrIdemResultNotKept] instead.
//   - A record for another tool or other arguments: an error wrapping [ErrIdemConflict].
//   - A call running in this process: Begin waits for it to end (or for ctx, returning
//     its error), then answers as above.
//   - A record running with no call in this process, or unknown: an error wrapping
//     [ErrIdemUnknown].
//
// An invalid key is an error wrapping [ErrIdemInvalidKey].
func (i *Idempotency) Begin(ctx context.Context, agent, key, tool, argsHash, requestID string) (*IdemRecord, error) {
	if err := idemCheckKey(key); err != nil {
		return nil, fmt.Errorf("contain: idempotency: %w", err)
	}
	if agent == "" {
		return nil, errors.New("contain: idempotency: agent is required")
	}
	k := idemKey{agent: agent, key: key}
	for {
		i.mu.Lock()
		c, busy := i.running[k]
		if !busy {
			// Claim the key in this process before asking the store, so that concurrent
			// retries here wait for us instead of reading a running record as unknown.
			c = &idemCall{tool: tool, argsHash: argsHash, done: make(chan struct{})}
			i.running[k] = c
		}
		i.mu.Unlock()
		if busy {
			if c.tool != tool || c.argsHash != argsHash {
				return nil, fmt.Errorf("contain: idempotency: %w", ErrIdemConflict)
			}
			select {
			case <-c.done:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("contain: idempotency: wait for the call with this key: %w", ctx.Err())
			}
		}

		rec, created, err := i.store.CreateIdem(ctx, IdemRecord{
			Agent: agent, Key: key, Tool: tool, ArgsHash: argsHash, RequestID: requestID,
			State: IdemRunning, CreatedAt: i.now().UTC(),
		})
		if err == nil && created {
			return nil, nil // the claim stays until Finish or Abandon
		}
		i.release(k, c)
		switch {
		case err != nil:
			return nil, fmt.Errorf("contain: idempotency: record key: %w", err)
		case rec == nil:
			return nil, errors.New("contain: idempotency: record key: store returned no record")
		}
		return idemAnswer(rec, tool, argsHash)
	}
}

// idemAnswer is Begin's answer for a record this process is not running.
func idemAnswer(rec *IdemRecord, tool, argsHash string) (*IdemRecord, error) {
	switch {
	case rec.Tool != tool || rec.ArgsHash != argsHash:
		return nil, fmt.Errorf("contain: idempotency: %w", ErrIdemConflict)
	case rec.State == IdemDone && rec.Result == nil:
		return nil, fmt.Errorf("contain: idempotency: %w", ErrIdemResultNotKept)
	case rec.State == IdemDone:
		return rec, nil
	default: // unknown, or running in another process or before a restart
		return nil, fmt.Errorf("contain: idempotency: %w", ErrIdemUnknown)
	}
}

// Finish records the result of a call [Idempotency.Begin] let run, and wakes the retries
// waiting for it. A result larger than MaxResultBytes is recorded by its hash only. The
// write is not cancelled with ctx: the outcome must be kept even if the agent has gone.
// If it fails, the record stays running, which retries read as an unknown outcome.
func (i *Idempotency) Finish(ctx context.Context, agent, key string, result json.RawMessage) error {
	if len(result) == 0 {
		result = json.RawMessage("null")
	}
	sum := sha256.Sum256(result)
	hash := "sha256:" + hex.EncodeToString(sum[:])
	kept := result
	if len(result) > i.maxResult {
		kept = nil
	}
	return i.end(ctx, agent, key, "finish", func(ctx context.Context) error {
		return i.store.FinishIdem(ctx, agent, key, IdemDone, kept, hash, i.now().UTC())
	})
}

// Abandon ends a call [Idempotency.Begin] let run without a result. If unknown is false
// the call never reached its tool: the record is deleted, so a retry may run. If unknown
// is true the call was sent but its outcome was lost (a timeout): the record is kept as
// unknown, so a retry is refused with [ErrIdemUnknown]. Like Finish, the write is not
// cancelled with ctx.
func (i *Idempotency) Abandon(ctx context.Context, agent, key string, unknown bool) error {
	return i.end(ctx, agent, key, "abandon", func(ctx context.Context) error {
		if unknown {
			return i.store.FinishIdem(ctx, agent, key, IdemUnknown, nil, "", i.now().UTC())
		}
		return i.store.DeleteIdem(ctx, agent, key)
	})
}

// end writes the outcome of this process's claim on (agent, key) and releases it.
func (i *Idempotency) end(ctx context.Context, agent, key, op string, write func(context.Context) error) error {
	k := idemKey{agent: agent, key: key}
	i.mu.Lock()
	c, ok := i.running[k]
	i.mu.Unlock()
	if !ok {
		return fmt.Errorf("contain: idempotency: %s: no call with this key is running", op)
	}
	// Release after the write, so that a woken retry reads the outcome.
	defer i.release(k, c)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), idemWriteTimeout)
	defer cancel()
	if err := write(ctx); err != nil {
		return fmt.Errorf("contain: idempotency: %s: %w", op, err)
	}
	return nil
}

// release ends claim c on k and wakes its waiters.
func (i *Idempotency) release(k idemKey, c *idemCall) {
	i.mu.Lock()
	if i.running[k] == c {
		delete(i.running, k)
		close(c.done)
	}
	i.mu.Unlock()
}

// Expire deletes the records created more than the retention ago, and returns how many.
func (i *Idempotency) Expire(ctx context.Context) (int, error) {
	n, err := i.store.ExpireIdem(ctx, i.now().Add(-i.retention).UTC())
	if err != nil {
		return n, fmt.Errorf("contain: idempotency: expire: %w", err)
	}
	return n, nil
}

// idemCheckKey checks that key is 1 to MaxIdemKeyLen bytes of printable ASCII
// (0x21-0x7e): keys are stored and may be shown, so no control or non-ASCII bytes.
func idemCheckKey(key string) error {
	if len(key) == 0 || len(key) > MaxIdemKeyLen {
		return fmt.Errorf("key is %d bytes, want 1 to %d: %w", len(key), MaxIdemKeyLen, ErrIdemInvalidKey)
	}
	for j := 0; j < len(key); j++ {
		if b := key[j]; b < 0x21 || b > 0x7e {
			return fmt.Errorf("byte %d of key is 0x%02x, want printable ASCII 0x21-0x7e: %w", j, b, ErrIdemInvalidKey)
		}
	}
	return nil
}
