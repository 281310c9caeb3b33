-- Store contract v2: each user's queue head kept in volume_users (claims no
-- longer search the outbox), hook events, maintained counters, and indexes
-- on the immutable columns of volume_changes only.
--
-- MySQL commits DDL implicitly, so every statement must be safe to run
-- again after a run that stopped halfway: Migrate counts a statement failing
-- because its table, column or index exists already (or is gone already) as
-- done, each ALTER TABLE is atomic, and the data statements recompute what
-- they write.

ALTER TABLE {p}volume_users
	ADD COLUMN head_id BIGINT NULL,
	ADD COLUMN head_seq BIGINT NULL,
	ADD COLUMN head_due DATETIME(6) NULL,
	ADD COLUMN head_created_at DATETIME(6) NULL,
	ADD KEY {p}volume_users_due (head_due, head_id),
	ADD KEY {p}volume_users_oldest (head_created_at);

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
UPDATE {p}volume_users u SET u.head_id = (
	SELECT c.id FROM {p}volume_changes c
	WHERE c.user_id = u.user_id AND c.state NOT IN ('delivered', 'rejected', 'skipped')
	ORDER BY c.seq LIMIT 1
);

UPDATE {p}volume_users u LEFT JOIN {p}volume_changes c ON c.id = u.head_id
SET u.head_seq = c.seq, u.head_due = c.next_attempt_at, u.head_created_at = c.created_at;

-- Only immutable columns of volume_changes are indexed.
ALTER TABLE {p}volume_changes DROP KEY {p}volume_changes_user_state;

ALTER TABLE {p}volume_changes DROP KEY {p}volume_changes_due;

ALTER TABLE {p}volume_changes ADD KEY {p}volume_changes_created (created_at, id);

ALTER TABLE {p}links DROP KEY {p}links_due;

ALTER TABLE {p}links ADD KEY {p}links_next (next_attempt_at, user_id);

-- Hook events owed to the host.
CREATE TABLE IF NOT EXISTS {p}events (
	id VARCHAR(255) NOT NULL,
	kind TEXT NOT NULL,
	user_id TEXT NOT NULL,
	payload MEDIUMBLOB NULL,
	attempts INT NOT NULL,
	next_attempt_at DATETIME(6) NULL,
	last_error TEXT NOT NULL,
	created_at DATETIME(6) NULL,
	lease_owner TEXT NOT NULL,
	lease_until DATETIME(6) NULL,
	PRIMARY KEY (id),
	KEY {p}events_due (next_attempt_at, created_at, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Counters per kind ('link', 'volume') and state, in shards by user so that
-- concurrent writers rarely share a row. Counts sums the shards.
CREATE TABLE IF NOT EXISTS {p}counts (
	kind VARCHAR(16) NOT NULL,
	state VARCHAR(32) NOT NULL,
	shard INT NOT NULL,
	n BIGINT NOT NULL,
	PRIMARY KEY (kind, state, shard)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

DELETE FROM {p}counts;

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
-- and the audit of the last operator action (Plugin.RetryLink). TEXT
-- columns take the empty string in existing rows.
ALTER TABLE {p}links
	ADD COLUMN create_attempts INT NOT NULL DEFAULT 0,
	ADD COLUMN resolved_by TEXT NOT NULL,
	ADD COLUMN resolved_note TEXT NOT NULL,
	ADD COLUMN resolved_at DATETIME(6) NULL;
