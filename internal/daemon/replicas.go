package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/store/postgres"
)

// Replicas over one PostgreSQL database share every state through it. What each keeps in
// memory for its hot path — kill switches, agents, tasks, token signing keys — is
// refreshed when another replica changes it: at once on a notification (LISTEN/NOTIFY),
// and every store.postgres.poll_interval as a safety net for a missed one. Held approvals
// wait on the store and are woken by the same notifications.

// shareLoop listens for changes made by other replicas and polls, until ctx is done. It
// does nothing on SQLite, which is one process's store.
func (d *Daemon) shareLoop(ctx context.Context, spawn func(func())) {
	if d.shared == nil {
		return
	}
	spawn(func() {
		err := d.shared.Listen(ctx, func(topic, id string) {
			d.changed(ctx, topic, id)
			// The console's open pages show what another replica changed, too. (Calls
			// other replicas make reach them at the next change here or the next page
			// load: audit commits are not notified.)
			if c := d.console.Load(); c != nil {
				c.Changed()
			}
		}, func() { d.resync(ctx) })
		if err != nil && ctx.Err() == nil {
			d.log.ErrorContext(ctx, "change notifications stopped; polling only", "err", err)
		}
	})
	spawn(func() {
		every(ctx, d.cfg.Store.Postgres.PollInterval.D(), func(time.Time) { d.resync(ctx) })
	})
}

// changed applies one notification from the store.
func (d *Daemon) changed(ctx context.Context, topic, id string) {
	var err error
	switch topic {
	case postgres.TopicKill:
		err = d.refreshKills(ctx)
	case postgres.TopicAgent:
		if id != "" {
			err = d.agents.RefreshAgent(ctx, id)
		} else {
			err = d.agents.Refresh(ctx)
		}
	case postgres.TopicTask:
		if id != "" {
			err = d.tasks.RefreshTask(ctx, id)
		} else {
			err = d.tasks.Refresh(ctx)
		}
	case postgres.TopicApproval:
		if d.approvals != nil {
			d.approvals.Changed()
		}
	case postgres.TopicKey:
		err = d.reloadKeys(ctx)
	}
	if err != nil && ctx.Err() == nil {
		d.log.WarnContext(ctx, "shared state not refreshed; the next poll retries", "topic", topic, "id", id, "err", err)
	}
}

// resync rereads everything other replicas may have changed: after the listener
// (re)connects, when notifications may have been missed, and at every poll.
func (d *Daemon) resync(ctx context.Context) {
	for _, topic := range []string{postgres.TopicKill, postgres.TopicAgent, postgres.TopicTask, postgres.TopicApproval, postgres.TopicKey} {
		if ctx.Err() != nil {
			return
		}
		d.changed(ctx, topic, "")
	}
}

// refreshKills rereads the kill switches; a kill pulled on another replica cancels this
// replica's calls in flight that it covers, and is logged with the time they took to end.
func (d *Daemon) refreshKills(ctx context.Context) error {
	start := time.Now()
	e, err := d.kills.Refresh(ctx)
	if err != nil || e == nil || e.Cancelled == 0 {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, containWait)
	still := e.Wait(wctx)
	cancel()
	d.log.WarnContext(ctx, "kill switch from another replica: calls in flight cancelled",
		"cancelled", e.Cancelled, "still_running", still, "contained", time.Since(start))
	return nil
}

// reloadKeys rereads the token signing keys, so that tokens signed by another replica's
// new key verify here, and a key retired there stops signing here.
func (d *Daemon) reloadKeys(ctx context.Context) error {
	d.keysMu.Lock()
	defer d.keysMu.Unlock()
	ks, err := d.readKeys(ctx)
	if err != nil {
		return err
	}
	d.keys.Store(ks)
	return nil
}

// exclusively runs f unless another replica runs the same work (name) now; on SQLite it
// just runs f.
func (d *Daemon) exclusively(ctx context.Context, name string, f func()) {
	if d.shared == nil {
		f()
		return
	}
	release, ok, err := d.shared.TryLock(ctx, name)
	if err != nil {
		if ctx.Err() == nil {
			d.log.WarnContext(ctx, "replica lock not taken; skipped this round", "work", name, "err", err)
		}
		return
	}
	if !ok {
		return // another replica does it
	}
	defer release()
	f()
}

// checkpointShared makes a checkpoint, one replica at a time.
func (d *Daemon) checkpointShared(ctx context.Context) (cp audit.Checkpoint, ok bool, err error) {
	d.exclusively(ctx, "audit-checkpoints", func() { cp, ok, err = d.checkpointer.Checkpoint(ctx) })
	return cp, ok, err
}

// storeReady checks the store answers, for GET /readyz.
func (d *Daemon) storeReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := d.store.Ping(ctx); err != nil {
		return fmt.Errorf("store (%s) unreachable: %w", d.store.Backend(), err)
	}
	return nil
}
