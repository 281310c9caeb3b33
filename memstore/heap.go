package memstore

import "time"

// heapSlot is where a record sits in the timeHeaps of its kind: which heap
// (0 for none) and at what index. seq orders records whose keys are equal
// (creation order). lapsed records that the record was moved out of a lease
// heap because its lease had ended at some claim's now; it is cleared
// whenever the lease changes.
type heapSlot struct {
	in     uint8
	lapsed bool
	idx    int
	seq    uint64
}

// heapItem is a record that can sit in a timeHeap.
type heapItem interface {
	comparable
	slot() *heapSlot
}

// heapEntry holds a record's key inline, so that sifting compares integers
// in one array instead of chasing pointers through the records.
type heapEntry[T heapItem] struct {
	sec  int64
	nsec int32
	seq  uint64
	x    T
}

func (a *heapEntry[T]) less(b *heapEntry[T]) bool {
	if a.sec != b.sec {
		return a.sec < b.sec
	}
	if a.nsec != b.nsec {
		return a.nsec < b.nsec
	}
	return a.seq < b.seq
}

// timeHeap is an indexed binary min-heap of records ordered by the time key
// returns for them, then by their seq. Records know their index, so one can
// be removed or re-keyed in O(log n). tag tells heaps of the same kind of
// record apart (it is stored in the record's heapSlot.in).
type timeHeap[T heapItem] struct {
	tag   uint8
	key   func(T) time.Time
	items []heapEntry[T]
}

func (h *timeHeap[T]) entry(x T) heapEntry[T] {
	t := h.key(x)
	return heapEntry[T]{sec: t.Unix(), nsec: int32(t.Nanosecond()), seq: x.slot().seq, x: x}
}

func (h *timeHeap[T]) len() int { return len(h.items) }

func (h *timeHeap[T]) top() T { return h.items[0].x }

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
		if !h.items[j].less(&h.items[i]) {
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
		if r := l + 1; r < n && h.items[r].less(&h.items[l]) {
			j = r
		}
		if !h.items[j].less(&h.items[i]) {
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
