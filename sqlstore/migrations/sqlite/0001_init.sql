-- Links between host users and MLM Soft accounts, and the volume outbox.
-- {p} is the table prefix. Times are UTC text "YYYY-MM-DD HH:MM:SS.ffffff";
-- NULL is the zero time.

CREATE TABLE {p}links (
	user_id TEXT NOT NULL PRIMARY KEY,
	email TEXT NULL,
	first_name TEXT NOT NULL,
	last_name TEXT NOT NULL,
	phone TEXT NOT NULL,
	country_id TEXT NOT NULL,
	sponsor_user_id TEXT NOT NULL,
	sponsor_account_id INTEGER NOT NULL,
	state TEXT NOT NULL,
	account_id INTEGER NOT NULL,
	mlm_user_id INTEGER NOT NULL,
	linked_via TEXT NOT NULL,
	document_id INTEGER NOT NULL,
	sealed_password BLOB NULL,
	create_sent_at TEXT NULL,
	accepted_at TEXT NULL,
	attempts INTEGER NOT NULL,
	next_attempt_at TEXT NULL,
	last_error TEXT NOT NULL,
	lease_owner TEXT NOT NULL,
	lease_until TEXT NULL,
	created_at TEXT NULL,
	updated_at TEXT NULL,
	linked_at TEXT NULL,
	version INTEGER NOT NULL
);

CREATE UNIQUE INDEX {p}links_email ON {p}links (email);

CREATE INDEX {p}links_due ON {p}links (state, next_attempt_at);

CREATE TABLE {p}volume_users (
	user_id TEXT NOT NULL PRIMARY KEY,
	last_seq INTEGER NOT NULL,
	lease_owner TEXT NOT NULL,
	lease_until TEXT NULL
);

CREATE TABLE {p}volume_changes (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id TEXT NOT NULL REFERENCES {p}volume_users (user_id),
	seq INTEGER NOT NULL,
	batch_id TEXT NOT NULL,
	idempotency_key TEXT NULL,
	alias TEXT NOT NULL,
	amount TEXT NOT NULL,
	order_id TEXT NOT NULL,
	state TEXT NOT NULL,
	attempts INTEGER NOT NULL,
	next_attempt_at TEXT NULL,
	last_error TEXT NOT NULL,
	document_id INTEGER NOT NULL,
	account_id INTEGER NOT NULL,
	created_at TEXT NULL,
	updated_at TEXT NULL,
	sent_at TEXT NULL,
	delivered_at TEXT NULL,
	resolved_by TEXT NOT NULL,
	resolved_note TEXT NOT NULL,
	resolved_at TEXT NULL,
	UNIQUE (user_id, seq)
);

CREATE UNIQUE INDEX {p}volume_changes_idempotency ON {p}volume_changes (idempotency_key);

CREATE INDEX {p}volume_changes_user_state ON {p}volume_changes (user_id, state, seq);

CREATE INDEX {p}volume_changes_due ON {p}volume_changes (state, next_attempt_at);
