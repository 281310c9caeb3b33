package sqlstore

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// The kinds of counters in the counts table.
const (
	countLinks   = "link"   // links per state
	countVolumes = "volume" // changes per state
	// Changes in a final state whose UpdatedAt is zero (NULL), state "":
	// PurgeVolumes must delete them but cannot find them through the
	// created_at index, so it searches for them only while there are any.
	countUnstamped = "unstamped"
)

// unstamped reports whether a change counts as countUnstamped.
func unstamped(state mlmsoft.VolumeState, updated time.Time) bool {
	return state.Final() && updated.IsZero()
}

// countShards is how many rows each (kind, state) counter is spread over.
// Each write bumps the row of its user's shard, so concurrent writers for
// different users rarely wait for one another's counter row.
const countShards = 16

// shardOf returns the counter shard of a user.
func shardOf(userID string) int {
	h := fnv.New32a()
	h.Write([]byte(userID))
	return int(h.Sum32() % countShards)
}

// countKey is one counter row.
type countKey struct {
	kind  string
	state string
	shard int
}

// counts collects the changes a transaction makes to the counters.
type counts map[countKey]int64

// add counts n more records of kind in state for userID's shard.
func (c *counts) add(kind string, state string, userID string, n int64) {
	if n == 0 {
		return
	}
	if *c == nil {
		*c = make(counts)
	}
	(*c)[countKey{kind, state, shardOf(userID)}] += n
}

// move counts one record of kind moving from state from to state to.
func (c *counts) move(kind, from, to, userID string) {
	if from != to {
		c.add(kind, from, userID, -1)
		c.add(kind, to, userID, 1)
	}
}

// countsStmt returns the statement applying c, its rows in primary key
// order so that concurrent transactions lock counter rows in the same
// order (no deadlocks); false when there is nothing to apply.
func (s *Store) countsStmt(c counts) (stmt, bool) {
	var keys []countKey
	for k, n := range c {
		if n != 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return stmt{}, false
	}
	slices.SortFunc(keys, func(a, b countKey) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.state, b.state), cmp.Compare(a.shard, b.shard))
	})
	args := make([]any, 0, 4*len(keys))
	for _, k := range keys {
		args = append(args, k.kind, k.state, k.shard, c[k])
	}
	return stmt{s.d.upsertCounts(len(keys)), args}, true
}

// Counts summarises the store for Stats from the counters every write
// keeps, the heads of the users' queues and the events table (which holds
// only the events owed): a handful of index reads, however many records
// the store holds.
//
// OldestOpen is the oldest CreatedAt among the users' queue heads (read
// through an index on them). That is the oldest CreatedAt of any change not
// in a final state as long as each user's changes are created in Seq order,
// as the plugin creates them (replicas' clocks aside); a change created
// earlier than a change before it in its user's queue is not seen until it
// is the head.
func (s *Store) Counts(ctx context.Context) (mlmsoft.Counts, error) {
	out := mlmsoft.Counts{Links: make(map[mlmsoft.LinkState]int), Volumes: make(map[mlmsoft.VolumeState]int)}
	rows, err := s.db.QueryContext(ctx, s.q.sumCounts)
	if err != nil {
		return mlmsoft.Counts{}, fmt.Errorf("sqlstore: counts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			kind, state string
			n           int64
		)
		if err := rows.Scan(&kind, &state, &n); err != nil {
			return mlmsoft.Counts{}, fmt.Errorf("sqlstore: counts: %w", err)
		}
		if n == 0 {
			continue
		}
		switch kind {
		case countLinks:
			out.Links[mlmsoft.LinkState(state)] = int(n)
		case countVolumes:
			out.Volumes[mlmsoft.VolumeState(state)] = int(n)
		}
	}
	if err := rows.Err(); err != nil {
		return mlmsoft.Counts{}, fmt.Errorf("sqlstore: counts: %w", err)
	}
	var oldest time.Time
	err = s.db.QueryRowContext(ctx, s.q.countsRest).Scan(s.t(&oldest), &out.Events, &out.FailingEvents)
	if err != nil {
		return mlmsoft.Counts{}, fmt.Errorf("sqlstore: counts: %w", err)
	}
	out.OldestOpen = oldest
	return out, nil
}

// sortedKeys returns m's keys in order.
func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K { return slices.Sorted(maps.Keys(m)) }
