-- Budgets and rate limits shared by gateway replicas (contain.LedgerStore and
-- contain.RateStore; see budgets.go and ratelimit.go).
--
-- Keys are bytea: budget context keys hold NUL bytes, which text cannot. A key is
-- stored as 0x00 and the key, or, past 512 bytes, as 0x01 and its SHA-256. Columns
-- named *_ns are times in nanoseconds since the Unix epoch, so that the arithmetic on
-- them is exact, for fake clocks and rates up to 1e6/s alike.

-- One row per budget context (task, session or agent).
CREATE TABLE budget_contexts (
	context bytea            PRIMARY KEY,
	steps   bigint           NOT NULL CHECK (steps >= 0),
	spend   double precision NOT NULL CHECK (spend >= 0),
	tokens  bigint           NOT NULL CHECK (tokens >= 0),
	last_at timestamptz      NOT NULL -- the latest call, for idle expiry
);
CREATE INDEX budget_contexts_last_at ON budget_contexts (last_at);

-- One row per bucket of a cap's sliding window for one agent, user or task. Takes and
-- releases of (cap, per, key) serialise on a transaction-level advisory lock derived
-- from it, taken after the context row and in ascending lock id order.
CREATE TABLE budget_cap_buckets (
	cap      text             NOT NULL,
	per      text             NOT NULL,
	key      bytea            NOT NULL,
	start_ns bigint           NOT NULL, -- the bucket's start
	until_ns bigint           NOT NULL, -- when it stops counting: start + 61 bucket widths
	amount   double precision NOT NULL CHECK (amount >= 0),
	PRIMARY KEY (cap, per, key, start_ns)
);
CREATE INDEX budget_cap_buckets_until ON budget_cap_buckets (until_ns);

-- One row per token bucket of a shared rate limiter.
CREATE TABLE rate_buckets (
	limiter text             NOT NULL,
	key     bytea            NOT NULL,
	tokens  double precision NOT NULL,
	at_ns   bigint           NOT NULL, -- the time tokens were counted at
	full_ns bigint           NOT NULL, -- when the bucket is full again: it may then go
	granted boolean          NOT NULL, -- whether the latest take was granted
	PRIMARY KEY (limiter, key)
);
CREATE INDEX rate_buckets_full ON rate_buckets (full_ns);
