-- Upstream credentials, sealed (secrets.Store; see secrets.go). The value is never
-- stored in the clear: ciphertext is XChaCha20-Poly1305 under the key key_id names, in
-- the operator's key file, which is not in this database. Times are integer
-- microseconds since the Unix epoch, UTC.
CREATE TABLE secrets (
	name        TEXT    NOT NULL PRIMARY KEY,  -- ordered as bytes
	description TEXT    NOT NULL,              -- never the value
	key_id      TEXT    NOT NULL,
	nonce       BLOB    NOT NULL CHECK (length(nonce) = 24),
	ciphertext  BLOB    NOT NULL CHECK (length(ciphertext) BETWEEN 17 AND 65552),
	version     INTEGER NOT NULL CHECK (version >= 1),  -- +1 on every set and re-encryption
	created_us  INTEGER NOT NULL,
	updated_us  INTEGER NOT NULL,
	updated_by  TEXT    NOT NULL
) STRICT;
