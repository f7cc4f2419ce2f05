package secrets

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// Vault defaults and bounds.
const (
	DefaultCacheTTL     = 30 * time.Second
	MaxCacheTTL         = time.Hour
	DefaultCacheEntries = 1024
	MaxCacheEntries     = 1 << 20
	// writeTimeout bounds a store write made after its audit event was recorded: the
	// write then runs even if the caller has gone away, so that the log and the store
	// agree as often as they can.
	writeTimeout = 10 * time.Second
	// maxSwapAttempts bounds how often Rotate retries one secret whose version moved.
	maxSwapAttempts = 16
)

// VaultOptions configures a [Vault].
type VaultOptions struct {
	// Store keeps the sealed secrets. Required.
	Store Store
	// Keyring returns the keyring in force; it is called on every seal and open, so the
	// gateway may swap keyrings (reload the key file) at run time. It may return nil while
	// none is loaded: sealing and opening then fail with [ErrNoKeyring]. Required.
	Keyring func() *Keyring
	// Audit records an event and returns once it is durable (audit.Log.Append). Set,
	// Delete and Rotate record theirs first and are refused if it fails. Required.
	Audit func(ctx context.Context, e *audit.Event) error
	// Now is the clock; default time.Now.
	Now func() time.Time
	// CacheTTL is how long Reveal answers a secret from memory before it asks the store
	// again, and so how long another replica's change takes to be seen here; default
	// 30s, at most 1h; negative turns the cache off.
	CacheTTL time.Duration
	// CacheEntries bounds the secrets cached; default 1024, at most 1<<20.
	CacheEntries int
}

// Meta is what may be shown of a secret: everything but the value.
type Meta struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	KeyID       string    `json:"key_id"`
	Version     int64     `json:"version"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
	UpdatedBy   string    `json:"updated_by"`
}

// RotateResult is what a rotation did.
type RotateResult struct {
	// Primary is the key every secret was re-encrypted under.
	Primary string `json:"primary"`
	// Reencrypted counts the secrets this rotation re-encrypted.
	Reencrypted int `json:"reencrypted"`
	// Current counts the secrets already under the primary key: before the rotation,
	// or because someone set them (or another replica re-encrypted them) meanwhile.
	Current int `json:"current"`
	// Skipped counts the secrets deleted while the rotation ran.
	Skipped int `json:"skipped"`
}

// Vault seals, stores, caches and reveals secrets, and audits every change. It is safe
// for concurrent use, by any number of gateway replicas over one store.
type Vault struct {
	store   Store
	keyring func() *Keyring
	audit   func(ctx context.Context, e *audit.Event) error
	now     func() time.Time
	ttl     time.Duration // <= 0: no cache
	max     int

	// writing is a token Set and Delete hold from reading the version they audit to
	// their write, so that within one process the audited version is the one written.
	// It is a channel, not a mutex, so that waiting for it honours the caller's context.
	writing chan struct{}

	// mu guards gen, cache and cached.
	mu sync.Mutex
	// gen counts the changes made through this vault. A Reveal caches what it read only
	// if no change was made since it started, so a value read before a Set is not cached
	// after it.
	gen   uint64
	cache map[string]cacheEntry
	// cached counts the entries ever cached; an entry's seq is its place in that count,
	// so that eviction can find the oldest.
	cached uint64
}

// cacheEntry is a revealed plaintext. nonce identifies the seal it came from: a version
// alone does not, since a secret deleted and set again starts over at version 1.
type cacheEntry struct {
	version int64
	nonce   []byte
	value   Value // handed out as it is: a Value never exposes its bytes
	expires time.Time
	seq     uint64 // set by remember
}

// NewVault returns a vault over o.Store.
func NewVault(o VaultOptions) (*Vault, error) {
	switch {
	case o.Store == nil:
		return nil, errors.New("secrets: new vault: VaultOptions.Store is required")
	case o.Keyring == nil:
		return nil, errors.New("secrets: new vault: VaultOptions.Keyring is required")
	case o.Audit == nil:
		return nil, errors.New("secrets: new vault: VaultOptions.Audit is required: every change must be audited")
	case o.CacheTTL > MaxCacheTTL:
		return nil, fmt.Errorf("secrets: new vault: cache TTL %s is more than %s", o.CacheTTL, MaxCacheTTL)
	case o.CacheEntries < 0 || o.CacheEntries > MaxCacheEntries:
		return nil, fmt.Errorf("secrets: new vault: cache entries must be 0 (default %d) to %d, got %d", DefaultCacheEntries, MaxCacheEntries, o.CacheEntries)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = DefaultCacheTTL
	}
	if o.CacheEntries == 0 {
		o.CacheEntries = DefaultCacheEntries
	}
	return &Vault{
		store: o.Store, keyring: o.Keyring, audit: o.Audit, now: o.Now,
		ttl: o.CacheTTL, max: o.CacheEntries,
		writing: make(chan struct{}, 1),
		cache:   map[string]cacheEntry{},
	}, nil
}

// MetaOf is what may be shown of a record.
func MetaOf(r Record) Meta {
	return Meta{Name: r.Name, Description: r.Description, KeyID: r.KeyID, Version: r.Version,
		Created: r.Created, Updated: r.Updated, UpdatedBy: r.UpdatedBy}
}

// lockWrites takes the write token, or gives up when ctx is done.
func (v *Vault) lockWrites(ctx context.Context) error {
	select {
	case v.writing <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (v *Vault) unlockWrites() { <-v.writing }

// forget drops name from the cache and stops Reveals under way from caching what they
// read.
func (v *Vault) forget(name string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.gen++
	delete(v.cache, name)
}

// remember caches e as name's plaintext at now, unless a change was made since gen.
func (v *Vault) remember(name string, gen uint64, e cacheEntry, now time.Time) {
	if v.ttl <= 0 {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.gen != gen {
		return
	}
	if _, ok := v.cache[name]; !ok && len(v.cache) >= v.max {
		v.evictLocked(now)
	}
	v.cached++
	e.seq = v.cached
	v.cache[name] = e
}

// evictLocked makes room for one entry: it drops every expired entry and, if none had
// expired, the one cached longest ago, so that which secrets stay cached does not depend
// on map order. v.mu must be held.
func (v *Vault) evictLocked(now time.Time) {
	n := len(v.cache)
	oldest, oldestSeq := "", uint64(0)
	for name, e := range v.cache {
		switch {
		case !now.Before(e.expires):
			delete(v.cache, name)
		case oldestSeq == 0 || e.seq < oldestSeq:
			oldest, oldestSeq = name, e.seq
		}
	}
	if len(v.cache) < n {
		return
	}
	delete(v.cache, oldest)
}

// Set seals value under the primary key and stores it as the secret name, created or
// replaced, with description, recording who set it. value must be 1 byte to 64 KiB.
// The audit event (audit.KindSecretSet, naming the secret and its new version, never
// the value) is recorded first; if it cannot be, nothing is stored and the error wraps
// [ErrNotAudited]. Input errors wrap [ErrInvalid].
func (v *Vault) Set(ctx context.Context, name string, value []byte, description, by string) (Meta, error) {
	if err := CheckName(name); err != nil {
		return Meta{}, fmt.Errorf("secrets: set: %w", err)
	}
	if err := cmp.Or(CheckValue(value), CheckDescription(description), CheckUpdatedBy(by)); err != nil {
		return Meta{}, fmt.Errorf("secrets: set %q: %w", name, err)
	}
	keyID, nonce, ciphertext, err := v.keyring().Seal(name, value)
	if err != nil {
		return Meta{}, fmt.Errorf("secrets: set %q: %w", name, err)
	}
	if err := v.lockWrites(ctx); err != nil {
		return Meta{}, fmt.Errorf("secrets: set %q: %w", name, err)
	}
	defer v.unlockWrites()
	cur, exists, err := v.store.Secret(ctx, name)
	if err != nil {
		return Meta{}, fmt.Errorf("secrets: set %q: %w", name, err)
	}
	version := int64(1)
	if exists {
		version = cur.Version + 1
	}
	now := v.now().UTC()
	if err := v.audit(ctx, &audit.Event{
		Time: now, Kind: audit.KindSecretSet,
		Message: fmt.Sprintf("secret %s set by %s", name, by),
		Detail:  fmt.Sprintf("secret=%s version=%d key=%s", name, version, keyID),
	}); err != nil {
		return Meta{}, fmt.Errorf("secrets: set %q: %w: %w", name, ErrNotAudited, err)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	rec, err := v.store.PutSecret(wctx, Record{
		Name: name, Description: description, KeyID: keyID, Nonce: nonce, Ciphertext: ciphertext,
		Created: now, Updated: now, UpdatedBy: by,
	})
	v.forget(name)
	if err != nil {
		return Meta{}, fmt.Errorf("secrets: set %q: %w", name, err)
	}
	v.mu.Lock()
	gen := v.gen
	v.mu.Unlock()
	now = v.now()
	v.remember(name, gen, cacheEntry{version: rec.Version, nonce: rec.Nonce, value: NewValue(value), expires: now.Add(v.ttl)}, now)
	return MetaOf(rec), nil
}

// Delete removes the secret name, recording who did. The audit event
// (audit.KindSecretDeleted) is recorded first; if it cannot be, nothing is deleted and
// the error wraps [ErrNotAudited]. The error wraps [ErrUnknownSecret] if there is no such
// secret (and then nothing is recorded).
func (v *Vault) Delete(ctx context.Context, name, by string) error {
	if err := CheckName(name); err != nil {
		return fmt.Errorf("secrets: delete: %w", err)
	}
	if err := CheckUpdatedBy(by); err != nil {
		return fmt.Errorf("secrets: delete %q: %w", name, err)
	}
	if err := v.lockWrites(ctx); err != nil {
		return fmt.Errorf("secrets: delete %q: %w", name, err)
	}
	defer v.unlockWrites()
	cur, exists, err := v.store.Secret(ctx, name)
	switch {
	case err != nil:
		return fmt.Errorf("secrets: delete %q: %w", name, err)
	case !exists:
		v.forget(name)
		return fmt.Errorf("secrets: delete %q: %w", name, ErrUnknownSecret)
	}
	if err := v.audit(ctx, &audit.Event{
		Time: v.now().UTC(), Kind: audit.KindSecretDeleted,
		Message: fmt.Sprintf("secret %s deleted by %s", name, by),
		Detail:  fmt.Sprintf("secret=%s version=%d", name, cur.Version),
	}); err != nil {
		return fmt.Errorf("secrets: delete %q: %w: %w", name, ErrNotAudited, err)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	err = v.store.DeleteSecret(wctx, name)
	v.forget(name)
	if err != nil {
		return fmt.Errorf("secrets: delete %q: %w", name, err)
	}
	return nil
}

// List returns what may be shown of every secret, by name.
func (v *Vault) List(ctx context.Context) ([]Meta, error) {
	recs, err := v.store.Secrets(ctx)
	if err != nil {
		return nil, fmt.Errorf("secrets: list: %w", err)
	}
	out := make([]Meta, len(recs))
	for i, r := range recs {
		out[i] = MetaOf(r)
	}
	return out, nil
}

// Meta returns what may be shown of one secret; the error wraps [ErrUnknownSecret] if
// there is none.
func (v *Vault) Meta(ctx context.Context, name string) (Meta, error) {
	if err := CheckName(name); err != nil {
		return Meta{}, fmt.Errorf("secrets: read: %w", err)
	}
	r, ok, err := v.store.Secret(ctx, name)
	switch {
	case err != nil:
		return Meta{}, fmt.Errorf("secrets: read %q: %w", name, err)
	case !ok:
		return Meta{}, fmt.Errorf("secrets: read %q: %w", name, ErrUnknownSecret)
	}
	return MetaOf(r), nil
}

// Reveal returns the plaintext of the secret name: from the cache if it was read less
// than CacheTTL ago, otherwise from the store, opened with the key its record names.
// The error wraps [ErrUnknownSecret] if there is no such secret, and [ErrUnknownKey] or
// [ErrDecrypt] if it does not open.
func (v *Vault) Reveal(ctx context.Context, name string) (Value, error) {
	now := v.now()
	v.mu.Lock()
	e, cached := v.cache[name]
	gen := v.gen
	v.mu.Unlock()
	if cached && now.Before(e.expires) {
		return e.value, nil
	}
	if err := CheckName(name); err != nil {
		return Value{}, fmt.Errorf("secrets: reveal: %w", err)
	}
	r, ok, err := v.store.Secret(ctx, name)
	switch {
	case err != nil:
		return Value{}, fmt.Errorf("secrets: reveal %q: %w", name, err)
	case !ok:
		if cached {
			v.forget(name)
		}
		return Value{}, fmt.Errorf("secrets: reveal %q: %w", name, ErrUnknownSecret)
	}
	val := e.value
	if !cached || e.version != r.Version || !bytes.Equal(e.nonce, r.Nonce) {
		plain, err := v.keyring().Open(r.KeyID, r.Name, r.Nonce, r.Ciphertext)
		if err != nil {
			return Value{}, fmt.Errorf("secrets: reveal %q: %w", name, err)
		}
		val = valueOf(plain)
	}
	v.remember(name, gen, cacheEntry{version: r.Version, nonce: r.Nonce, value: val, expires: now.Add(v.ttl)}, now)
	return val, nil
}

// Rotate re-encrypts under the primary key every secret sealed with another key, so
// that the other keys can then be dropped from the key file. Each secret is swapped
// with one compare-and-swap on its version: a secret set meanwhile is already under the
// primary key, and one re-encrypted meanwhile by another replica is too; readers open
// each row with the key it names until its swap, so nothing stops serving.
//
// The audit event (audit.KindSecretsRotated, counting the secrets to re-encrypt) is
// recorded first; if it cannot be, nothing is re-encrypted and the error wraps
// [ErrNotAudited]. A secret that does not open (its key is gone: [ErrUnknownKey]; or
// [ErrDecrypt]) is left as it is and named in the error, which is returned with the
// counts of what was done: drop no key while Rotate reports an error.
//
// Run it after every replica has loaded the new key file: a replica whose primary is
// still the old key would seal what it sets under that key.
func (v *Vault) Rotate(ctx context.Context, by string) (RotateResult, error) {
	if err := CheckUpdatedBy(by); err != nil {
		return RotateResult{}, fmt.Errorf("secrets: rotate: %w", err)
	}
	kr := v.keyring()
	if kr.empty() {
		return RotateResult{}, fmt.Errorf("secrets: rotate: %w", ErrNoKeyring)
	}
	res := RotateResult{Primary: kr.Primary()}
	recs, err := v.store.Secrets(ctx)
	if err != nil {
		return res, fmt.Errorf("secrets: rotate: %w", err)
	}
	var stale []Record
	for _, r := range recs {
		if r.KeyID == res.Primary {
			res.Current++
		} else {
			stale = append(stale, r)
		}
	}
	if err := v.audit(ctx, &audit.Event{
		Time: v.now().UTC(), Kind: audit.KindSecretsRotated,
		Message: fmt.Sprintf("secrets re-encrypted under key %s by %s", res.Primary, by),
		Detail:  fmt.Sprintf("primary=%s to_reencrypt=%d already_current=%d", res.Primary, len(stale), res.Current),
	}); err != nil {
		return RotateResult{}, fmt.Errorf("secrets: rotate: %w: %w", ErrNotAudited, err)
	}
	var failed []error
	for _, r := range stale {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("secrets: rotate: stopped after %d of %d: %w", res.Reencrypted+res.Skipped+len(failed), len(stale), err)
		}
		outcome, err := v.reencrypt(ctx, kr, r)
		switch {
		case err != nil:
			failed = append(failed, err)
		case outcome == swapped:
			res.Reencrypted++
		case outcome == alreadyCurrent:
			res.Current++
		default:
			res.Skipped++
		}
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("secrets: rotate: %d of %d secrets could not be re-encrypted under %q: %w",
			len(failed), len(stale), res.Primary, errors.Join(failed...))
	}
	return res, nil
}

// swapOutcome is what became of one secret of a rotation.
type swapOutcome int

const (
	swapped        swapOutcome = iota // re-encrypted by this rotation
	alreadyCurrent                    // under the primary key by someone else's doing
	vanished                          // deleted meanwhile
)

// reencrypt moves r under kr's primary key, re-reading and retrying while its version
// moves under it.
func (v *Vault) reencrypt(ctx context.Context, kr *Keyring, r Record) (swapOutcome, error) {
	primary := kr.Primary()
	for range maxSwapAttempts {
		// Each error below names the secret already.
		plain, err := kr.Open(r.KeyID, r.Name, r.Nonce, r.Ciphertext)
		if err != nil {
			return 0, err
		}
		keyID, nonce, ciphertext, err := kr.Seal(r.Name, plain)
		clear(plain)
		if err != nil {
			return 0, err
		}
		ok, err := v.store.ReencryptSecret(ctx, r.Name, r.Version, keyID, nonce, ciphertext, v.now().UTC())
		if err != nil {
			return 0, err
		}
		if ok {
			return swapped, nil
		}
		// The version moved: someone set it, or another replica re-encrypted it.
		cur, exists, err := v.store.Secret(ctx, r.Name)
		switch {
		case err != nil:
			return 0, err
		case !exists:
			return vanished, nil
		case cur.KeyID == primary:
			return alreadyCurrent, nil
		}
		r = cur
	}
	return 0, fmt.Errorf("secret %q: its version changed %d times while being re-encrypted; run the rotation again", r.Name, maxSwapAttempts)
}
