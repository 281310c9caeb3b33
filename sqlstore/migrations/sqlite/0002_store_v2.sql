-- Store contract v2: each user's queue head kept in volume_users (claims no
-- longer search the outbox), hook events, maintained counters, and indexes
-- on the immutable columns of volume_changes only. Runs in one transaction;
-- existing rows keep working.

ALTER TABLE {p}volume_users ADD COLUMN head_id INTEGER NULL;

ALTER TABLE {p}volume_users ADD COLUMN head_seq INTEGER NULL;

ALTER TABLE {p}volume_users ADD COLUMN head_due TEXT NULL;

ALTER TABLE {p}volume_users ADD COLUMN head_created_at TEXT NULL;

-- v1 claimed pending and sending changes (NULL next_attempt_at: at once)
-- and never parked or uncertain ones; v2 claims a head whose
-- next_attempt_at is set and past, whatever its state.
UPDATE {p}volume_changes SET next_attempt_at = NULL
WHERE state IN ('parked', 'uncertain') AND next_attempt_at IS NOT NULL;

UPDATE {p}volume_changes SET next_attempt_at = COALESCE(updated_at, created_at, '1970-01-01 00:00:00.000000')
WHERE state IN ('pending', 'sending') AND next_attempt_at IS NULL;

-- Likewise for links: v1 claimed pending and created links only.
UPDATE {p}links SET next_attempt_at = NULL
WHERE state NOT IN ('pending', 'created') AND next_attempt_at IS NOT NULL;

UPDATE {p}links SET next_attempt_at = COALESCE(updated_at, created_at, '1970-01-01 00:00:00.000000')
WHERE state IN ('pending', 'created') AND next_attempt_at IS NULL;

-- The head: the lowest-seq change not in a final state.
UPDATE {p}volume_users SET head_id = (
	SELECT c.id FROM {p}volume_changes c
	WHERE c.user_id = {p}volume_users.user_id AND c.state NOT IN ('delivered', 'rejected', 'skipped')
	ORDER BY c.seq LIMIT 1
);

UPDATE {p}volume_users SET
	head_seq = (SELECT c.seq FROM {p}volume_changes c WHERE c.id = {p}volume_users.head_id),
	head_due = (SELECT c.next_attempt_at FROM {p}volume_changes c WHERE c.id = {p}volume_users.head_id),
	head_created_at = (SELECT c.created_at FROM {p}volume_changes c WHERE c.id = {p}volume_users.head_id)
WHERE head_id IS NOT NULL;

CREATE INDEX {p}volume_users_due ON {p}volume_users (head_due, head_id) WHERE head_due IS NOT NULL;

CREATE INDEX {p}volume_users_oldest ON {p}volume_users (head_created_at) WHERE head_created_at IS NOT NULL;

-- Only immutable columns of volume_changes are indexed.
DROP INDEX {p}volume_changes_user_state;

DROP INDEX {p}volume_changes_due;

CREATE INDEX {p}volume_changes_created ON {p}volume_changes (created_at, id);

DROP INDEX {p}links_due;

CREATE INDEX {p}links_next ON {p}links (next_attempt_at, user_id) WHERE next_attempt_at IS NOT NULL;

-- Hook events owed to the host.
CREATE TABLE {p}events (
	id TEXT NOT NULL PRIMARY KEY,
	kind TEXT NOT NULL,
	user_id TEXT NOT NULL,
	payload BLOB NULL,
	attempts INTEGER NOT NULL,
	next_attempt_at TEXT NULL,
	last_error TEXT NOT NULL,
	created_at TEXT NULL,
	lease_owner TEXT NOT NULL,
	lease_until TEXT NULL
);

CREATE INDEX {p}events_due ON {p}events (next_attempt_at, created_at, id);

-- Counters per kind ('link', 'volume') and state, in shards by user (for
-- the databases with row locks). Counts sums the shards.
CREATE TABLE {p}counts (
	kind TEXT NOT NULL,
	state TEXT NOT NULL,
	shard INTEGER NOT NULL,
	n INTEGER NOT NULL,
	PRIMARY KEY (kind, state, shard)
);

INSERT INTO {p}counts (kind, state, shard, n)
SELECT 'link', state, 0, COUNT(*) FROM {p}links GROUP BY state;

INSERT INTO {p}counts (kind, state, shard, n)
SELECT 'volume', state, 0, COUNT(*) FROM {p}volume_changes GROUP BY state;

-- Final changes without updated_at, which PurgeVolumes cannot find through
-- the created_at index: it looks for them only while this says any exist.
INSERT INTO {p}counts (kind, state, shard, n)
SELECT 'unstamped', '', 0, COUNT(*) FROM {p}volume_changes
WHERE updated_at IS NULL AND state IN ('delivered', 'rejected', 'skipped');

-- Link records gained the count of creates that may have reached MLM Soft
-- and the audit of the last operator action (Plugin.RetryLink).
ALTER TABLE {p}links ADD COLUMN create_attempts INTEGER NOT NULL DEFAULT 0;

ALTER TABLE {p}links ADD COLUMN resolved_by TEXT NOT NULL DEFAULT '';

ALTER TABLE {p}links ADD COLUMN resolved_note TEXT NOT NULL DEFAULT '';

ALTER TABLE {p}links ADD COLUMN resolved_at TEXT NULL;
