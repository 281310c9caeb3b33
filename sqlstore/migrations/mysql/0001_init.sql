-- Links between host users and MLM Soft accounts, and the volume outbox.
-- {p} is the table prefix. MySQL commits DDL implicitly, so every statement
-- here must be safe to run again: CREATE TABLE IF NOT EXISTS with the indexes
-- inline. utf8mb4_bin: keys compare byte by byte, as Go compares strings.
-- Times are DATETIME(6) holding UTC; NULL is the zero time.

CREATE TABLE IF NOT EXISTS {p}links (
	user_id VARCHAR(255) NOT NULL,
	email VARCHAR(320) NULL,
	first_name TEXT NOT NULL,
	last_name TEXT NOT NULL,
	phone TEXT NOT NULL,
	country_id TEXT NOT NULL,
	sponsor_user_id TEXT NOT NULL,
	sponsor_account_id BIGINT NOT NULL,
	state VARCHAR(32) NOT NULL,
	account_id BIGINT NOT NULL,
	mlm_user_id BIGINT NOT NULL,
	linked_via VARCHAR(32) NOT NULL,
	document_id BIGINT NOT NULL,
	sealed_password BLOB NULL,
	create_sent_at DATETIME(6) NULL,
	accepted_at DATETIME(6) NULL,
	attempts INT NOT NULL,
	next_attempt_at DATETIME(6) NULL,
	last_error TEXT NOT NULL,
	lease_owner TEXT NOT NULL,
	lease_until DATETIME(6) NULL,
	created_at DATETIME(6) NULL,
	updated_at DATETIME(6) NULL,
	linked_at DATETIME(6) NULL,
	version BIGINT NOT NULL,
	PRIMARY KEY (user_id),
	UNIQUE KEY {p}links_email (email),
	KEY {p}links_due (state, next_attempt_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS {p}volume_users (
	user_id VARCHAR(255) NOT NULL,
	last_seq BIGINT NOT NULL,
	lease_owner TEXT NOT NULL,
	lease_until DATETIME(6) NULL,
	PRIMARY KEY (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS {p}volume_changes (
	id BIGINT NOT NULL AUTO_INCREMENT,
	user_id VARCHAR(255) NOT NULL,
	seq BIGINT NOT NULL,
	batch_id TEXT NOT NULL,
	idempotency_key VARCHAR(255) NULL,
	alias TEXT NOT NULL,
	amount VARCHAR(64) NOT NULL,
	order_id TEXT NOT NULL,
	state VARCHAR(32) NOT NULL,
	attempts INT NOT NULL,
	next_attempt_at DATETIME(6) NULL,
	last_error TEXT NOT NULL,
	document_id BIGINT NOT NULL,
	account_id BIGINT NOT NULL,
	created_at DATETIME(6) NULL,
	updated_at DATETIME(6) NULL,
	sent_at DATETIME(6) NULL,
	delivered_at DATETIME(6) NULL,
	resolved_by TEXT NOT NULL,
	resolved_note TEXT NOT NULL,
	resolved_at DATETIME(6) NULL,
	PRIMARY KEY (id),
	UNIQUE KEY {p}volume_changes_user_seq (user_id, seq),
	UNIQUE KEY {p}volume_changes_idempotency (idempotency_key),
	KEY {p}volume_changes_user_state (user_id, state, seq),
	KEY {p}volume_changes_due (state, next_attempt_at),
	CONSTRAINT {p}volume_changes_user FOREIGN KEY (user_id) REFERENCES {p}volume_users (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
