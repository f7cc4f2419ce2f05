package cli

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/audit/anchor"
	"github.com/chaperone-dev/chaperone/internal/sign"
	"github.com/chaperone-dev/chaperone/internal/store"
)

// pathsFlag collects a file flag given more than once. Unlike exportList it does not
// split on commas, which a path may hold.
type pathsFlag []string

func (l *pathsFlag) String() string     { return strings.Join(*l, ",") }
func (l *pathsFlag) Set(v string) error { *l = append(*l, v); return nil }

var _ flag.Value = (*pathsFlag)(nil)

// auditVerify checks the chain, anchored in the signed checkpoints stored beside it and in
// any published checkpoint files given, with the trusted public keys.
func auditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit verify", stderr)
	dataDir, dbPath := dataDirAndDB(fs)
	var keyFiles, cpFiles pathsFlag
	fs.Var(&keyFiles, "key", "PEM file of the public key(s) checkpoints must be signed with (repeatable; default <data-dir>/audit-signing.key.pub if it exists); given, a log no checkpoint covers fails")
	fs.Var(&cpFiles, "checkpoints", "file of published checkpoints, one JSON per line, to check the log against (repeatable)")
	from := fs.String("from", "", "verify only the events after CHECKPOINT: the seq of a stored checkpoint, \"latest\", or a file holding one checkpoint")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	keys, err := verifyKeys(keyFiles, *dataDir)
	if err != nil {
		return err
	}
	var published []audit.Checkpoint
	for _, f := range cpFiles {
		cps, err := anchor.ReadFile(f)
		if err != nil {
			return err
		}
		published = append(published, cps...)
	}
	store, err := openReadOnly(ctx, dbPath())
	if err != nil {
		return err
	}
	defer store.Close()

	opts := audit.VerifyOptions{Keys: keys}
	after := int64(0)
	if *from != "" {
		f, err := fromCheckpoint(ctx, store, *from)
		if err != nil {
			return err
		}
		opts.From, after = &f, f.Seq
	}
	// The stored checkpoints in the range count too: events deleted after the starting
	// checkpoint must show.
	if opts.Checkpoints, err = storedCheckpoints(ctx, store, after); err != nil {
		return err
	}
	opts.Checkpoints = append(opts.Checkpoints, published...)
	if len(keys) == 0 && (len(opts.Checkpoints) > 0 || opts.From != nil) {
		return usageError{"the log has signed checkpoints but no key to check them with: pass --key with the gateway's public key (audit-signing.key.pub)"}
	}
	rep, err := audit.VerifyChain(ctx, store, opts)
	if err != nil {
		return err
	}
	if rep.Broken != nil {
		fmt.Fprintf(stdout, "BROKEN at event %d: %s\n", rep.Broken.Seq, rep.Broken.Problem)
		fmt.Fprintf(stdout, "%d events checked before the break\n", rep.Events)
		return failError{}
	}
	if rep.From > 0 {
		fmt.Fprintf(stdout, "ok: %d events after the checkpoint at event %d, chain intact\nhead: %s\n", rep.Events, rep.From, rep.Head)
	} else {
		fmt.Fprintf(stdout, "ok: %d events, chain intact\nhead: %s\n", rep.Events, rep.Head)
	}
	switch a := rep.Anchor; {
	case a != nil:
		fmt.Fprintf(stdout, "anchored: %d signed checkpoints match; the newest covers events 1-%d, signed %s by %s\n",
			rep.Checkpoints, a.Seq, a.Time.Format(time.RFC3339), a.Key)
		if after := rep.From + rep.Events - a.Seq; after > 0 {
			fmt.Fprintf(stdout, "note: the %d events after event %d are not covered by a checkpoint yet: their deletion would not show\n", after, a.Seq)
		}
	case rep.Events > 0 && len(keyFiles) > 0:
		// A key was given: the log is expected to be anchored. None matching fails
		// closed — the checkpoints may have been removed with the events they covered.
		fmt.Fprintf(stdout, "UNANCHORED: no checkpoint signed by the given key covers this log; events deleted from its end would not show\n")
		return failError{}
	case rep.Events > 0:
		fmt.Fprintf(stdout, "note: no signed checkpoint covers this log: events deleted from its end would not show\n")
	}
	if rep.Pruned > 0 {
		fmt.Fprintf(stdout, "pruned: %d events are tombstones (their retention ran out); their place in the chain is verified, their content is gone\n", rep.Pruned)
	}
	if rep.Unfinished > 0 {
		fmt.Fprintf(stdout, "note: %d calls have an intent but no outcome (the gateway stopped mid-call): %v\n", rep.Unfinished, rep.UnfinishedRequests)
	}
	return nil
}

// verifyKeys reads the trusted public keys: the files given, or the gateway's own public
// key file in the data directory.
func verifyKeys(files []string, dataDir string) ([]ed25519.PublicKey, error) {
	if len(files) == 0 {
		def := filepath.Join(dataDir, "audit-signing.key.pub")
		if _, err := os.Stat(def); err != nil {
			return nil, nil
		}
		files = []string{def}
	}
	var keys []ed25519.PublicKey
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--key: %w", err)
		}
		ks, err := sign.ParsePublicKeys(b)
		if err != nil {
			return nil, fmt.Errorf("--key %s: %w", f, err)
		}
		keys = append(keys, ks...)
	}
	return keys, nil
}

// storedCheckpoints reads every stored checkpoint after the event after.
func storedCheckpoints(ctx context.Context, store store.Store, after int64) ([]audit.Checkpoint, error) {
	var out []audit.Checkpoint
	for {
		page, err := store.Checkpoints(ctx, after, maxCheckpointPage)
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			return out, nil
		}
		out = append(out, page...)
		after = page[len(page)-1].Seq
	}
}

// fromCheckpoint resolves --from: "latest", a stored checkpoint's seq, or a file.
func fromCheckpoint(ctx context.Context, store store.Store, v string) (audit.Checkpoint, error) {
	if v == "latest" {
		c, ok, err := store.LatestCheckpoint(ctx)
		if err == nil && !ok {
			err = errors.New("--from latest: the log has no checkpoint")
		}
		return c, err
	}
	if seq, err := strconv.ParseInt(v, 10, 64); err == nil {
		c, ok, err := store.Checkpoint(ctx, seq)
		if err == nil && !ok {
			err = fmt.Errorf("--from %d: no checkpoint is stored at event %d", seq, seq)
		}
		return c, err
	}
	b, err := os.ReadFile(v)
	if err != nil {
		return audit.Checkpoint{}, fmt.Errorf("--from: %w", err)
	}
	c, err := audit.ParseCheckpoint(b)
	if err != nil {
		return audit.Checkpoint{}, fmt.Errorf("--from %s: %w", v, err)
	}
	return c, nil
}
