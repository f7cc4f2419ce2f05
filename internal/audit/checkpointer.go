package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// CheckpointStore keeps the signed checkpoints beside the events.
type CheckpointStore interface {
	// SaveCheckpoint stores c. Storing the same checkpoint again is not an error; a
	// different checkpoint for a Seq already stored is.
	SaveCheckpoint(ctx context.Context, c Checkpoint) error
	// LatestCheckpoint returns the checkpoint with the highest Seq, and false if there
	// is none.
	LatestCheckpoint(ctx context.Context) (Checkpoint, bool, error)
}

// Publisher sends a checkpoint to a place outside the store: a file, a webhook, an
// append-only object store. Publish must be idempotent: the same checkpoint may be sent
// again after a failure.
type Publisher interface {
	Name() string
	Publish(ctx context.Context, c Checkpoint) error
}

// CheckpointerOptions wire a [Checkpointer].
type CheckpointerOptions struct {
	Key       ed25519.PrivateKey
	Events    Store // where the head is read
	Store     CheckpointStore
	Publish   []Publisher
	Now       func() time.Time
	Logger    *slog.Logger
	OnWritten func()            // called after each checkpoint is stored; may be nil
	OnFailed  func(sink string) // called when a publisher fails; may be nil
}

// Checkpointer signs the chain's head when it has moved, stores the checkpoint and
// publishes it. It is safe for concurrent use.
type Checkpointer struct {
	o  CheckpointerOptions
	mu sync.Mutex
	// published is, per publisher, the Seq of the last checkpoint it accepted.
	published []int64
}

// NewCheckpointer checks opts and returns a Checkpointer.
func NewCheckpointer(opts CheckpointerOptions) (*Checkpointer, error) {
	if len(opts.Key) != ed25519.PrivateKeySize || opts.Events == nil || opts.Store == nil {
		return nil, errors.New("audit: checkpointer needs an Ed25519 key, an event store and a checkpoint store")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Checkpointer{o: opts, published: make([]int64, len(opts.Publish))}, nil
}

// PublicKey is the key the checkpoints verify with.
func (c *Checkpointer) PublicKey() ed25519.PublicKey {
	return c.o.Key.Public().(ed25519.PublicKey)
}

// Checkpoint signs and stores a checkpoint of the current head if the head moved since
// the latest stored one, then publishes the latest checkpoint to every publisher that
// has not accepted it yet. It returns the latest checkpoint (false when the log is
// empty). A publisher's failure is logged and retried at the next call; it is returned
// only joined after the checkpoint was stored.
func (c *Checkpointer) Checkpoint(ctx context.Context) (Checkpoint, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	last, ok, err := c.o.Store.LatestCheckpoint(ctx)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("audit: checkpoint: %w", err)
	}
	head, found, err := c.o.Events.LastEvent(ctx)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("audit: checkpoint: read head: %w", err)
	}
	if found && (!ok || head.Seq > last.Seq) {
		cp, err := SignCheckpoint(c.o.Key, head.Seq, head.Hash, c.o.Now())
		if err != nil {
			return Checkpoint{}, false, err
		}
		if err := c.o.Store.SaveCheckpoint(ctx, cp); err != nil {
			return Checkpoint{}, false, fmt.Errorf("audit: checkpoint at event %d: %w", cp.Seq, err)
		}
		if c.o.OnWritten != nil {
			c.o.OnWritten()
		}
		last, ok = cp, true
	}
	if !ok {
		return Checkpoint{}, false, nil
	}
	var errs []error
	for i, p := range c.o.Publish {
		if c.published[i] >= last.Seq {
			continue
		}
		if err := p.Publish(ctx, last); err != nil {
			c.o.Logger.WarnContext(ctx, "audit checkpoint not published", "sink", p.Name(), "seq", last.Seq, "err", err)
			if c.o.OnFailed != nil {
				c.o.OnFailed(p.Name())
			}
			errs = append(errs, fmt.Errorf("publish to %s: %w", p.Name(), err))
			continue
		}
		c.published[i] = last.Seq
	}
	return last, true, errors.Join(errs...)
}
