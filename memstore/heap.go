package memstore

import "time"

// heapSlot is where a record sits in the timeHeaps of its kind: which heap
// (0 for none) and at what index. lapsed records that the record was moved
// out of a lease heap because its lease had ended at some claim's now; it
// is cleared whenever the lease changes.
type heapSlot struct {
	in     uint8
	lapsed bool
	idx    int
}

// heapItem is a record that can sit in a timeHeap.
type heapItem interface {
	comparable
	slot() *heapSlot
}

// heapEntry holds a record's time key inline, so that sifting compares
// integers in one array before it chases pointers into the records.
type heapEntry[T heapItem] struct {
	sec  int64
	nsec int32
	x    T
}

// timeHeap is an indexed binary min-heap of records ordered by the time key
// returns for them, then by tie. Records know their index, so one can be
// removed or re-keyed in O(log n). tag tells heaps of the same kind of
// record apart (it is stored in the record's heapSlot.in). Whoever changes
// a field that key or tie reads must re-file the record (fix or relocate).
type timeHeap[T heapItem] struct {
	tag   uint8
	key   func(T) time.Time
	tie   func(a, b T) int
	items []heapEntry[T]
}

func (h *timeHeap[T]) entry(x T) heapEntry[T] {
	t := h.key(x)
	return heapEntry[T]{sec: t.Unix(), nsec: int32(t.Nanosecond()), x: x}
}

func (h *timeHeap[T]) less(a, b *heapEntry[T]) bool {
	if a.sec != b.sec {
		return a.sec < b.sec
	}
	if a.nsec != b.nsec {
		return a.nsec < b.nsec
	}
	return h.tie(a.x, b.x) < 0
}

func (h *timeHeap[T]) len() int { return len(h.items) }

func (h *timeHeap[T]) top() T { return h.items[0].x }

// topKey returns the key of the top record as the heap holds it.
func (h *timeHeap[T]) topKey() (sec int64, nsec int32) {
	return h.items[0].sec, h.items[0].nsec
}

func (h *timeHeap[T]) push(x T) {
	s := x.slot()
	s.in, s.idx = h.tag, len(h.items)
	h.items = append(h.items, h.entry(x))
	h.up(s.idx)
}

func (h *timeHeap[T]) remove(x T) {
	s := x.slot()
	i, n := s.idx, len(h.items)-1
	if i != n {
		h.swap(i, n)
	}
	h.items[n] = heapEntry[T]{}
	h.items = h.items[:n]
	s.in, s.idx = 0, -1
	if i != n && !h.down(i) {
		h.up(i)
	}
}

// fix re-reads x's key and restores the heap order.
func (h *timeHeap[T]) fix(x T) {
	i := x.slot().idx
	h.items[i] = h.entry(x)
	if !h.down(i) {
		h.up(i)
	}
}

func (h *timeHeap[T]) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].x.slot().idx = i
	h.items[j].x.slot().idx = j
}

func (h *timeHeap[T]) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(&h.items[j], &h.items[i]) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

// down sifts the item at i0 down and reports whether it moved.
func (h *timeHeap[T]) down(i0 int) bool {
	i, n := i0, len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h.less(&h.items[r], &h.items[l]) {
			j = r
		}
		if !h.less(&h.items[j], &h.items[i]) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}

// relocate puts x in heap to (nil: in none), taking it out of whichever of
// heaps holds it; if it is in to already, it is re-keyed there.
func relocate[T heapItem](x T, to *timeHeap[T], heaps ...*timeHeap[T]) {
	s := x.slot()
	if to != nil && s.in == to.tag {
		to.fix(x)
		return
	}
	for _, h := range heaps {
		if s.in == h.tag {
			h.remove(x)
			break
		}
	}
	if to != nil {
		to.push(x)
	}
}

// leasePair is the pair of heaps that makes claims cheap for one kind of
// leasable record: ready holds the records that are candidates (their lease
// is free, or was seen lapsed by a claim), ordered by due time; leased holds
// those under a lease not yet seen lapsed, ordered by its end.
type leasePair[T heapItem] struct {
	ready, leased timeHeap[T]
}

// place files x: in no heap unless claimable ever (eligible); in leased
// while it has an owner and its lease was not seen lapsed; in ready
// otherwise.
func (p *leasePair[T]) place(x T, eligible bool, owner string) {
	var to *timeHeap[T]
	switch {
	case !eligible:
	case owner != "" && !x.slot().lapsed:
		to = &p.leased
	default:
		to = &p.ready
	}
	relocate(x, to, &p.ready, &p.leased)
}

// lapse moves every record whose lease ended at or before now from leased
// to ready (through refile, which must re-place the record) and marks it
// lapsed.
func (p *leasePair[T]) lapse(now time.Time, refile func(T)) {
	sec, nsec := now.Unix(), int32(now.Nanosecond())
	for p.leased.len() > 0 {
		s, ns := p.leased.topKey()
		if s > sec || (s == sec && ns > nsec) {
			return
		}
		x := p.leased.top()
		x.slot().lapsed = true
		refile(x)
	}
}

// due reports whether the top of ready is due at now (its key not after
// now); ready must not be empty.
func (p *leasePair[T]) due(now time.Time) bool {
	s, ns := p.ready.topKey()
	sec, nsec := now.Unix(), int32(now.Nanosecond())
	return s < sec || (s == sec && ns <= nsec)
}
