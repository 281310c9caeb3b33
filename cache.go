package mlmsoft

import (
	"sync"
	"time"

	"github.com/patrickmn/go-cache"
)

// clockCache is the handlers' in-memory cache (check-auth rate limits,
// webhook replay digests): github.com/patrickmn/go-cache with no janitor
// goroutine and no expiry of its own, holding entries that expire on the
// plugin's clock. The plugin's maintenance loop calls expire; reads ignore
// expired entries meanwhile, so correctness does not depend on it. Safe for
// concurrent use.
type clockCache struct {
	mu sync.Mutex // makes read-modify-write sequences atomic
	c  *cache.Cache
}

// clockEntry is one cached value: a count, valid until until.
type clockEntry struct {
	n     int
	until time.Time
}

func newClockCache() *clockCache {
	// cleanupInterval 0: go-cache starts no janitor goroutine.
	return &clockCache{c: cache.New(cache.NoExpiration, 0)}
}

// get returns key's live entry at now.
func (c *clockCache) get(key string, now time.Time) (clockEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.getLocked(key, now)
}

func (c *clockCache) getLocked(key string, now time.Time) (clockEntry, bool) {
	v, ok := c.c.Get(key)
	if !ok {
		return clockEntry{}, false
	}
	e := v.(clockEntry)
	if !e.until.After(now) {
		return clockEntry{}, false
	}
	return e, true
}

// add counts one for key: a key with no live entry starts a new one, valid
// for ttl from now. It returns the entry after counting.
func (c *clockCache) add(key string, now time.Time, ttl time.Duration) clockEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.getLocked(key, now)
	if !ok {
		e = clockEntry{until: now.Add(ttl)}
	}
	e.n++
	c.c.Set(key, e, cache.NoExpiration)
	return e
}

// expire deletes the entries that have expired at now.
func (c *clockCache) expire(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, it := range c.c.Items() {
		if e, ok := it.Object.(clockEntry); !ok || !e.until.After(now) {
			c.c.Delete(k)
		}
	}
}
