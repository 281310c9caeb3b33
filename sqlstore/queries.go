package sqlstore

import (
	"strings"

	"github.com/mlmsoft-go/mlmsoft"
)

// queries are the Store's fixed SQL statements, with the table prefix and
// the dialect's placeholders filled in once by New. Statements whose shape
// depends on the arguments (IN lists, optional filters) are built per call
// from placeholders only.
type queries struct {
	getLink        string
	getLinkByEmail string
	insertLink     string
	updateLink     string
	linkVersion    string
	pickLinks      string
	leaseLink      string
	countLinks     string

	seqUpsert     string
	seqSelect     string
	insertVolume  string
	getVolume     string
	volumeUser    string
	lockUser      string
	volumeState   string
	updateVolume  string
	releaseUser   string
	leaseUser     string
	wakeVolumes   string
	wakeVolumesTo string // waking to the zero time
	countVolumes  string
	oldestPending string
}

// unfinishedStates are the volume states that hold a user's queue; every
// other state is final.
var unfinishedStates = []mlmsoft.VolumeState{
	mlmsoft.VolumePending, mlmsoft.VolumeSending, mlmsoft.VolumeParked, mlmsoft.VolumeUncertain,
}

// notHead is the condition that no unfinished change of the same user comes
// before change c; its placeholders take unfinishedStates.
const notHead = `NOT EXISTS (SELECT 1 FROM {p}volume_changes e
	WHERE e.user_id = c.user_id AND e.seq < c.seq AND e.state IN (?, ?, ?, ?))`

// leaseFree is the condition that the lease of the row is free or expired at
// the time given as its one placeholder.
const leaseFree = `(lease_owner = '' OR lease_until IS NULL OR lease_until <= ?)`

func buildQueries(s *Store) queries {
	d := s.d
	links := strings.Join(linkCols, ", ")
	volumes := strings.Join(volumeCols, ", ")
	var set []string
	for _, c := range linkCols[1 : len(linkCols)-1] {
		set = append(set, c+" = ?")
	}
	insertVolume := "INSERT INTO {p}volume_changes (" + strings.Join(volumeCols[1:], ", ") +
		") VALUES (" + marks(len(volumeCols)-1) + ")"
	if d.returningID() {
		insertVolume += " RETURNING id"
	}
	return queries{
		getLink:        s.sql("SELECT " + links + " FROM {p}links WHERE user_id = ?"),
		getLinkByEmail: s.sql("SELECT " + links + " FROM {p}links WHERE email = ?"),
		insertLink:     s.sql("INSERT INTO {p}links (" + links + ") VALUES (" + marks(len(linkCols)) + ")"),
		updateLink: s.sql("UPDATE {p}links SET " + strings.Join(set, ", ") +
			", version = version + 1 WHERE user_id = ? AND version = ?"),
		linkVersion: s.sql("SELECT version FROM {p}links WHERE user_id = ?"),
		pickLinks: s.sql(`SELECT l.user_id FROM {p}links l
WHERE l.state IN (?, ?) AND (l.next_attempt_at IS NULL OR l.next_attempt_at <= ?)
	AND (l.lease_owner = '' OR l.lease_until IS NULL OR l.lease_until <= ?)
ORDER BY l.next_attempt_at` + d.nullsFirst() + `, l.user_id
LIMIT ?` + d.skipLocked("l")),
		leaseLink: s.sql("UPDATE {p}links SET lease_owner = ?, lease_until = ?, version = version + 1 WHERE " +
			"(lease_owner = ? OR lease_until IS NULL OR lease_until <= ?) AND user_id = ?"),
		countLinks: s.sql("SELECT state, COUNT(*) FROM {p}links GROUP BY state"),

		seqUpsert:    s.sql(d.seqUpsert()),
		seqSelect:    s.sql("SELECT last_seq FROM {p}volume_users WHERE user_id = ?"),
		insertVolume: s.sql(insertVolume),
		getVolume:    s.sql("SELECT " + volumes + " FROM {p}volume_changes WHERE id = ?"),
		volumeUser:   s.sql("SELECT user_id FROM {p}volume_changes WHERE id = ?"),
		lockUser:     s.sql("SELECT lease_owner, lease_until FROM {p}volume_users WHERE user_id = ?" + d.forUpdate()),
		volumeState:  s.sql("SELECT state FROM {p}volume_changes WHERE id = ?" + d.forUpdate()),
		updateVolume: s.sql(`UPDATE {p}volume_changes SET state = ?, attempts = ?, next_attempt_at = ?,
	last_error = ?, document_id = ?, account_id = ?, sent_at = ?, delivered_at = ?,
	resolved_by = ?, resolved_note = ?, resolved_at = ?, updated_at = ?
WHERE id = ?`),
		releaseUser:   s.sql("UPDATE {p}volume_users SET lease_owner = '', lease_until = NULL WHERE user_id = ? AND lease_owner = ?"),
		leaseUser:     s.sql("UPDATE {p}volume_users SET lease_owner = ?, lease_until = ? WHERE " + leaseFree + " AND user_id = ?"),
		wakeVolumes:   s.sql("UPDATE {p}volume_changes SET next_attempt_at = ? WHERE user_id = ? AND state = ? AND next_attempt_at > ?"),
		wakeVolumesTo: s.sql("UPDATE {p}volume_changes SET next_attempt_at = NULL WHERE user_id = ? AND state = ? AND next_attempt_at IS NOT NULL"),
		countVolumes:  s.sql("SELECT state, COUNT(*) FROM {p}volume_changes GROUP BY state"),
		oldestPending: s.sql("SELECT MIN(created_at) FROM {p}volume_changes WHERE state IN (?, ?)"),
	}
}
