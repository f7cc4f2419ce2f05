package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/audit/journal"
	"github.com/chaperone-dev/chaperone/internal/store"
)

// journaled is a store whose audit events are made durable by a journal (see package
// journal) and indexed into the store behind it. Every read of the events waits until
// the store holds what the journal held when the read began, so the gateway never reads
// less than it has written.
type journaled struct {
	store.Store
	j *journal.Journal
}

// openJournal puts the audit journal in front of st, first copying into st what a crash
// left in the journal.
func openJournal(ctx context.Context, dbPath string, st store.Store, opts journal.Options) (*journaled, error) {
	index, ok := st.(audit.SealingStore)
	if !ok {
		return nil, fmt.Errorf("the %s store cannot index a journal", st.Backend())
	}
	j, err := journal.Open(ctx, journal.DirFor(dbPath), index, opts)
	if err != nil {
		return nil, err
	}
	return &journaled{Store: st, j: j}, nil
}

func (s *journaled) AppendEvents(ctx context.Context, events []audit.Event) error {
	return s.j.AppendEvents(ctx, events)
}

func (s *journaled) AppendChained(ctx context.Context, events []audit.Event, chain func(int64, string) error) error {
	return s.j.AppendChained(ctx, events, chain)
}

func (s *journaled) AppendSealed(ctx context.Context, events []audit.Event, seal func(int64, string) ([]string, error)) error {
	return s.j.AppendSealed(ctx, events, seal)
}

func (s *journaled) LastEvent(ctx context.Context) (audit.Event, bool, error) {
	return s.j.LastEvent(ctx)
}

func (s *journaled) ScanEvents(ctx context.Context, afterSeq int64, limit int) ([]audit.Event, error) {
	if err := s.j.Barrier(ctx); err != nil {
		return nil, err
	}
	return s.Store.ScanEvents(ctx, afterSeq, limit)
}

func (s *journaled) TailEvents(ctx context.Context, n int) ([]audit.Event, error) {
	if err := s.j.Barrier(ctx); err != nil {
		return nil, err
	}
	return s.Store.TailEvents(ctx, n)
}

func (s *journaled) PruneEvents(ctx context.Context, upTo int64, kinds []string, expired func(*audit.Event) bool) (int64, error) {
	if err := s.j.Barrier(ctx); err != nil {
		return 0, err
	}
	return s.Store.PruneEvents(ctx, upTo, kinds, expired)
}

// Ping checks the store and the journal in front of it.
func (s *journaled) Ping(ctx context.Context) error {
	if err := s.Store.Ping(ctx); err != nil {
		return err
	}
	return s.j.Err()
}

// Close indexes what the journal holds, closes it, then the store.
func (s *journaled) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return errors.Join(s.j.Close(ctx), s.Store.Close())
}

// SyncAudit returns once the store holds every audit event written so far: at once
// without a journal, else when the journal's indexer has copied them.
func (d *Daemon) SyncAudit(ctx context.Context) error {
	if j, ok := d.store.(*journaled); ok {
		return j.j.Barrier(ctx)
	}
	return nil
}
