package main

import (
	"context"
	"fmt"
	"runtime"
)

// heap measures the heap in use, after GC, with c.heapSize changes queued
// and the plugin not started: memstore holds them; a SQL store should not.
func heap(ctx context.Context, b *bench) (*table, error) {
	c := b.cfg
	f, err := newFake()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	users := usersFor(c.heapSize, c.drainPerUser)
	n := users * c.drainPerUser
	accounts := f.accounts(users)
	t := &table{key: "heap", title: "7. Heap in use with a backlog", columns: [2]string{"heap growth after GC", "per queued change"}}
	t.method = fmt.Sprintf("runtime.ReadMemStats after two runtime.GC calls, before opening the store and after %s changes "+
		"(%d users × %d, ApplyVolumes of a user's changes at once) were queued with the plugin not started; the figure is the growth "+
		"of HeapAlloc (live heap) between the two, so it counts the store (memstore keeps everything in memory; a SQL store's "+
		"database/sql pool and driver buffers) and the plugin, not the fake, which has no part in enqueueing. One measurement per "+
		"store, no reference.", commas(int64(n)), users, c.drainPerUser)
	for _, s := range b.stores(false) {
		gc()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		h, err := b.env.open(ctx, s)
		if err != nil {
			return nil, err
		}
		if err := link(ctx, h.store, accounts, 0, users); err != nil {
			h.close()
			return nil, err
		}
		p, err := newPlugin(h.store, f.URL, c.concurrency, 0)
		if err != nil {
			h.close()
			return nil, err
		}
		if err := enqueueBacklog(ctx, p, 0, users, c.drainPerUser, c.callers, "h"); err != nil {
			h.close()
			return nil, err
		}
		gc()
		runtime.ReadMemStats(&m1)
		grow := float64(m1.HeapAlloc) - float64(m0.HeapAlloc)
		logf("   %-8s heap grew %s (%s per change); HeapInuse %s", s, fmtBytes(grow), fmtBytes(grow/float64(n)), fmtBytes(float64(m1.HeapInuse)))
		t.add(row{what: storeTitles[s] + ", " + commas(int64(n)) + " queued", value: fmtBytes(grow), ref: fmtBytes(grow / float64(n))})
		runtime.KeepAlive(p)
		h.close()
	}
	return t, nil
}
