package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// selfCPU returns the CPU time this process has used, in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// serverCPU returns the CPU time (user + system, in seconds) the processes
// named comm have used so far, from /proc: the database server's share of
// the two cores. Processes that ended meanwhile are not counted, so it is
// read around measurements whose connections stay open.
func serverCPU(comm string) float64 {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var ticks float64
	for _, d := range dirs {
		b, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open || s[open+1:end] != comm {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 13 {
			continue
		}
		var u, k float64
		fmt.Sscan(f[11], &u)
		fmt.Sscan(f[12], &k)
		ticks += u + k
	}
	return ticks / 100 // USER_HZ
}

// monitors read the database servers' own counters around a measurement,
// to say what one delivered change costs the server (commits, statements,
// fsyncs), which a CPU profile of this process cannot show.
type monitors struct {
	pg, my *sql.DB
}

func (b *bench) openMonitors() {
	if b.env.pgDSN != "" {
		if db, err := sql.Open("pgx", b.env.pgDSN); err == nil {
			db.SetMaxOpenConns(1)
			b.mon.pg = db
		}
	}
	if b.env.myDSN != "" {
		if db, err := sql.Open("mysql", mysqlDSN(b.env.myDSN)); err == nil {
			db.SetMaxOpenConns(1)
			b.mon.my = db
		}
	}
}

type counters map[string]float64

// pgCounters are pg_stat_database's and pg_stat_wal's counters. Backends
// publish theirs within about a second of going idle (PostgreSQL 15), so
// callers wait that long first.
func (m monitors) pgCounters(ctx context.Context) counters {
	if m.pg == nil {
		return nil
	}
	c := counters{}
	var commit, rollback, ins, upd, del, fetched float64
	err := m.pg.QueryRowContext(ctx, `SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, tup_fetched
FROM pg_stat_database WHERE datname = current_database()`).Scan(&commit, &rollback, &ins, &upd, &del, &fetched)
	if err != nil {
		return nil
	}
	c["commits"], c["rollbacks"], c["rows inserted"], c["rows updated"], c["rows deleted"], c["rows fetched"] = commit, rollback, ins, upd, del, fetched
	var syncs, records float64
	if m.pg.QueryRowContext(ctx, `SELECT wal_sync, wal_records FROM pg_stat_wal`).Scan(&syncs, &records) == nil {
		c["WAL fsyncs"], c["WAL records"] = syncs, records
	}
	return c
}

// myCounters are a few of MariaDB's global status counters.
func (m monitors) myCounters(ctx context.Context) counters {
	if m.my == nil {
		return nil
	}
	rows, err := m.my.QueryContext(ctx, `SHOW GLOBAL STATUS WHERE Variable_name IN
('Questions', 'Com_commit', 'Com_rollback', 'Com_select', 'Com_update', 'Com_insert', 'Innodb_data_fsyncs', 'Innodb_row_lock_waits', 'Innodb_row_lock_time')`)
	if err != nil {
		return nil
	}
	defer rows.Close()
	c := counters{}
	for rows.Next() {
		var k string
		var v float64
		if rows.Scan(&k, &v) == nil {
			c[k] = v
		}
	}
	return c
}

// around measures fn's cost in server counters for the database of kind
// ("postgres", "mysql"), per unit of work n.
func (b *bench) around(ctx context.Context, kind string, n int, fn func() error) (string, error) {
	if !b.cfg.dbStats || (kind != stPostgres && kind != stMySQL) {
		return "", fn()
	}
	read := b.mon.pgCounters
	if kind == stMySQL {
		read = b.mon.myCounters
	}
	if kind == stPostgres {
		time.Sleep(1200 * time.Millisecond)
	}
	comm := "postgres"
	if kind == stMySQL {
		comm = "mariadbd"
	}
	before := read(ctx)
	if before != nil {
		before["server CPU ms"], before["bench CPU ms"] = serverCPU(comm)*1000, selfCPU()*1000
	}
	err := fn()
	afterCPU, afterSelf := serverCPU(comm)*1000, selfCPU()*1000
	if kind == stPostgres {
		time.Sleep(1200 * time.Millisecond)
	}
	after := read(ctx)
	if before == nil || after == nil {
		return "", err
	}
	after["server CPU ms"], after["bench CPU ms"] = afterCPU, afterSelf
	var keys []string
	switch kind {
	case stPostgres:
		keys = []string{"server CPU ms", "bench CPU ms", "commits", "rollbacks", "rows inserted", "rows updated", "rows deleted", "rows fetched", "WAL records", "WAL fsyncs"}
	case stMySQL:
		keys = []string{"server CPU ms", "bench CPU ms", "Questions", "Com_commit", "Com_rollback", "Com_select", "Com_update", "Com_insert", "Innodb_data_fsyncs", "Innodb_row_lock_waits", "Innodb_row_lock_time"}
	}
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, (after[k]-before[k])/float64(n)))
	}
	return strings.Join(parts, ", "), err
}
