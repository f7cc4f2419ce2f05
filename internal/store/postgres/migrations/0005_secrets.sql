-- Upstream credentials, sealed, shared by gateway replicas (secrets.Store; see
-- secrets.go). The value is never stored in the clear: ciphertext is
-- XChaCha20-Poly1305 under the key key_id names, in the operator's key file, which is
-- not in this database. name uses COLLATE "C", so that its order is byte order, as in
-- SQLite.
CREATE TABLE secrets (
	name        text        COLLATE "C" NOT NULL PRIMARY KEY,
	description text        NOT NULL,  -- never the value
	key_id      text        NOT NULL,
	nonce       bytea       NOT NULL CHECK (octet_length(nonce) = 24),
	ciphertext  bytea       NOT NULL CHECK (octet_length(ciphertext) BETWEEN 17 AND 65552),
	version     bigint      NOT NULL CHECK (version >= 1),  -- +1 on every set and re-encryption
	created_at  timestamptz NOT NULL,
	updated_at  timestamptz NOT NULL,
	updated_by  text        NOT NULL
);
