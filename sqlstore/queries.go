package sqlstore

import (
	"strings"

	"github.com/mlmsoft-go/mlmsoft"
)

// queries are the Store's fixed SQL statements that run on their own, with
// the table prefix and the dialect's placeholders filled in once by New.
// Statements whose shape depends on the arguments (IN lists, optional
// filters, multi-row inserts) are built per call from placeholders only, as
// are the blind writes that travel together (see writes), whose text stays
// unbound until they are sent.
type queries struct {
	getLink        string
	getLinkByEmail string
	lockLink       string
	claimLinks     string // returning dialects: lease and return in one
	pickLinks      string // others: lock the due links, then lease them

	lockChangeUser string
	lockUser       string
	changeState    string
	lockChange     string // the change as it is, locked (no RETURNING)
	updateChange   string
	nextHead       string
	headChange     string
	claimUsers     string // returning dialects: lease and return head ids
	pickUsers      string // others: lock the due users, then lease them

	claimEvents string // returning dialects
	pickEvents  string // others
	eventOwner  string

	sumCounts  string
	countsRest string

	purgeOld       string
	purgeNull      string
	purgeUpTo      string
	purgeUnstamped string
	sumUnstamped   string
}

// leaseFree is the condition that the lease of the row is free or lapsed at
// the time given as its one placeholder.
const leaseFree = `(lease_owner = '' OR lease_until IS NULL OR lease_until <= ?)`

// notFinal is the condition that a change's state is not final; its
// placeholders take mlmsoft.FinalVolumeStates.
var notFinal = "state NOT IN (" + marks(len(mlmsoft.FinalVolumeStates)) + ")"

// isFinal is the condition that a change's state is final; its
// placeholders take mlmsoft.FinalVolumeStates.
var isFinal = "state IN (" + marks(len(mlmsoft.FinalVolumeStates)) + ")"

// purgeable is the condition, after isFinal, that a change was last
// updated before the time given as its one placeholder.
const purgeable = "(updated_at IS NULL OR updated_at < ?)"

func buildQueries(s *Store) queries {
	d := s.d
	links := strings.Join(linkCols, ", ")
	volumes := strings.Join(volumeCols, ", ")
	events := strings.Join(eventCols, ", ")
	updateChange := `UPDATE {p}volume_changes SET ` + volumeUpdateSet + ` WHERE id = ? AND state = ?`
	if d.returning() {
		updateChange += " RETURNING " + volumes
	}
	dueLinks := `SELECT user_id FROM {p}links WHERE next_attempt_at <= ? AND ` + leaseFree + `
ORDER BY next_attempt_at, user_id LIMIT ?` + d.skipLocked()
	dueUsers := `SELECT user_id FROM {p}volume_users WHERE head_due <= ? AND ` + leaseFree + `
ORDER BY head_due, head_id LIMIT ?` + d.skipLocked()
	dueEvents := `SELECT id FROM {p}events WHERE (next_attempt_at IS NULL OR next_attempt_at <= ?) AND ` + leaseFree + `
ORDER BY next_attempt_at` + d.nullsFirst() + `, created_at` + d.nullsFirst() + `, id LIMIT ?` + d.skipLocked()
	return queries{
		getLink:        s.sql("SELECT " + links + " FROM {p}links WHERE " + d.keyEq("user_id")),
		getLinkByEmail: s.sql("SELECT " + links + " FROM {p}links WHERE " + d.keyEq("email")),
		lockLink:       s.sql("SELECT version, state, lease_owner, lease_until FROM {p}links WHERE " + d.keyEq("user_id") + d.forUpdate()),
		claimLinks: s.sql(`UPDATE {p}links SET lease_owner = ?, lease_until = ? WHERE ` + d.picked("user_id", dueLinks) + `
RETURNING ` + links),
		pickLinks: s.sql(strings.Replace(dueLinks, "SELECT user_id", "SELECT "+links, 1)),

		lockChangeUser: s.sql(`SELECT user_id, lease_owner, lease_until, head_id, head_seq FROM {p}volume_users
WHERE user_id = (SELECT user_id FROM {p}volume_changes WHERE id = ?)` + d.forUpdate()),
		lockUser:     s.sql("SELECT head_seq FROM {p}volume_users WHERE user_id = ?" + d.forUpdate()),
		changeState:  s.sql("SELECT state, updated_at FROM {p}volume_changes WHERE id = ?"),
		lockChange:   s.sql("SELECT " + volumes + " FROM {p}volume_changes WHERE id = ?" + d.forUpdate()),
		updateChange: s.sql(updateChange),
		nextHead: s.sql("SELECT " + volumes + " FROM {p}volume_changes WHERE user_id = ? AND seq > ? AND " + notFinal +
			" ORDER BY seq LIMIT 1"),
		headChange: s.sql("SELECT " + volumes + " FROM {p}volume_changes WHERE id = ?"),
		claimUsers: s.sql(`UPDATE {p}volume_users SET lease_owner = ?, lease_until = ? WHERE ` + d.picked("user_id", dueUsers) + `
RETURNING head_id`),
		pickUsers: s.sql(strings.Replace(dueUsers, "SELECT user_id", "SELECT user_id, head_id", 1)),

		claimEvents: s.sql(`UPDATE {p}events SET lease_owner = ?, lease_until = ? WHERE ` + d.picked("id", dueEvents) + `
RETURNING ` + events),
		pickEvents: s.sql(strings.Replace(dueEvents, "SELECT id", "SELECT "+events, 1)),
		eventOwner: s.sql("SELECT lease_owner FROM {p}events WHERE id = ?"),

		sumCounts: s.sql("SELECT kind, state, SUM(n) FROM {p}counts GROUP BY kind, state"),
		// The oldest head, read first in the (partial) index on
		// head_created_at: MIN() would scan on SQLite.
		countsRest: s.sql(`SELECT (SELECT head_created_at FROM {p}volume_users WHERE head_created_at IS NOT NULL
		ORDER BY head_created_at LIMIT 1),
	(SELECT COUNT(*) FROM {p}events), (SELECT COUNT(*) FROM {p}events WHERE attempts > 0)`),

		purgeOld: s.sql("SELECT id FROM {p}volume_changes WHERE created_at < ? AND " + isFinal + " AND " + purgeable +
			" ORDER BY created_at, id LIMIT ?"),
		purgeNull: s.sql("SELECT id FROM {p}volume_changes WHERE created_at IS NULL AND " + isFinal + " AND " + purgeable +
			" ORDER BY id LIMIT ?"),
		purgeUpTo: s.sql("SELECT id FROM {p}volume_changes WHERE id <= ? AND (created_at IS NULL OR created_at < ? OR updated_at IS NULL) AND " +
			isFinal + " AND " + purgeable + " ORDER BY id LIMIT ?"),
		purgeUnstamped: s.sql("SELECT id FROM {p}volume_changes WHERE updated_at IS NULL AND " + isFinal + " ORDER BY id LIMIT ?"),
		sumUnstamped:   s.sql("SELECT COALESCE(SUM(n), 0) FROM {p}counts WHERE kind = ?"),
	}
}
