package storetest

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

var (
	timeType    = reflect.TypeFor[time.Time]()
	bytesType   = reflect.TypeFor[[]byte]()
	amountType  = reflect.TypeFor[mlmsoft.Amount]()
	leaseType   = reflect.TypeFor[mlmsoft.Lease]()
	linkState   = reflect.TypeFor[mlmsoft.LinkState]()
	volumeState = reflect.TypeFor[mlmsoft.VolumeState]()
)

// textSuffix ends every string the filler makes: quotes, a backslash, SQL
// wildcards and letters of two, three and four bytes in UTF-8.
const textSuffix = `·Zoë 'Ł' "€" \中 100%_🙂`

// fill sets every exported field of the struct *ptr to a value distinctive
// of the field and of seed, so that two records filled with different
// seeds differ in every field, and a store that drops, truncates or
// converts a field fails the comparison:
//   - strings hold the field's name, seed and textSuffix;
//   - int64 values are above 2^53 (and odd, so a float64 cannot hold them);
//   - ints are small but distinct (they count attempts);
//   - []byte values hold NUL, 0xff and bytes that are not UTF-8;
//   - times are t0 plus whole milliseconds, in zone;
//   - amounts are negative decimals with a fraction;
//   - LinkState and VolumeState fields get LinkCreated and VolumePending
//     (callers set others as a test needs);
//   - struct fields (Lease) are filled field by field.
//
// A field of a type fill does not know fails the test: the suite must learn
// it before it can check that stores keep it.
func fill(t testing.TB, ptr any, seed int) {
	t.Helper()
	v := reflect.ValueOf(ptr).Elem()
	n := 0
	fillStruct(t, v, seed, &n)
}

func fillStruct(t testing.TB, v reflect.Value, seed int, n *int) {
	t.Helper()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		fillValue(t, f.Name, v.Field(i), seed, n)
	}
}

func fillValue(t testing.TB, name string, v reflect.Value, seed int, n *int) {
	t.Helper()
	*n++
	k := *n
	switch v.Type() {
	case timeType:
		d := time.Duration(seed)*hour + time.Duration(k)*(time.Second+7*ms)
		v.Set(reflect.ValueOf(at(d)))
		return
	case bytesType:
		v.SetBytes([]byte{0x00, 0xff, byte(seed), 0xc3, 0x28, byte(k), '\'', '\\', 0x00, 0x80})
		return
	case amountType:
		v.Set(reflect.ValueOf(mlmsoft.MustAmount(fmt.Sprintf("-%d.%03d1", 12345+seed, k))))
		return
	case linkState:
		v.SetString(string(mlmsoft.LinkCreated))
		return
	case volumeState:
		v.SetString(string(mlmsoft.VolumePending))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("%s%d%s", name, seed, textSuffix))
	case reflect.Int64:
		v.SetInt(1<<53 + 1 + 2*int64(1000*seed+k))
	case reflect.Int, reflect.Int32:
		v.SetInt(int64(100*seed + k))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Struct:
		fillStruct(t, v, seed, n)
	default:
		t.Fatalf("storetest: field %s has type %s, which the suite cannot fill: storetest must learn it", name, v.Type())
	}
}

// diff lists the fields in which got differs from want, two values of one
// struct type: times by time.Equal, byte slices by content and nil-ness,
// nested structs with exported fields (Lease) field by field, the rest by
// ==. A want Lease with no Owner (free) matches any got Lease with no
// Owner: a store may keep or clear Until when a lease ends.
func diff(want, got any) []string {
	return diffValue("", reflect.ValueOf(want), reflect.ValueOf(got))
}

func diffValue(path string, w, g reflect.Value) []string {
	var out []string
	for i := range w.NumField() {
		f := w.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		name := path + f.Name
		wf, gf := w.Field(i), g.Field(i)
		switch {
		case f.Type == timeType:
			wt, gt := wf.Interface().(time.Time), gf.Interface().(time.Time)
			if !wt.Equal(gt) {
				out = append(out, fmt.Sprintf("%s = %s, want %s", name, fmtTime(gt), fmtTime(wt)))
			}
		case f.Type == bytesType:
			wb, gb := wf.Bytes(), gf.Bytes()
			if !bytes.Equal(wb, gb) || (wb == nil) != (gb == nil) {
				out = append(out, fmt.Sprintf("%s = %s, want %s", name, fmtBytes(gb), fmtBytes(wb)))
			}
		case f.Type == leaseType && wf.Interface().(mlmsoft.Lease).Owner == "":
			if o := gf.Interface().(mlmsoft.Lease).Owner; o != "" {
				out = append(out, fmt.Sprintf("%s = %s, want a free lease (no Owner)", name, fmtLease(gf.Interface().(mlmsoft.Lease))))
			}
		case f.Type.Kind() == reflect.Struct && hasExported(f.Type):
			out = append(out, diffValue(name+".", wf, gf)...)
		case f.Type.Comparable():
			if wf.Interface() != gf.Interface() {
				out = append(out, fmt.Sprintf("%s = %s, want %s", name, fmtValue(gf), fmtValue(wf)))
			}
		default:
			if !reflect.DeepEqual(wf.Interface(), gf.Interface()) {
				out = append(out, fmt.Sprintf("%s = %#v, want %#v", name, gf.Interface(), wf.Interface()))
			}
		}
	}
	return out
}

func hasExported(t reflect.Type) bool {
	for i := range t.NumField() {
		if t.Field(i).IsExported() {
			return true
		}
	}
	return false
}

func fmtValue(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case mlmsoft.Amount:
		return x.String()
	}
	if v.Kind() == reflect.String {
		return fmt.Sprintf("%q", v.String())
	}
	return fmt.Sprintf("%v", v.Interface())
}

func fmtLease(l mlmsoft.Lease) string {
	if l.Owner == "" {
		return "free"
	}
	return fmt.Sprintf("{%q until %s}", l.Owner, fmtTime(l.Until))
}

// fullLink returns a link of userID with every field filled (seed makes
// the values), Email made unique by userID and seed.
func fullLink(t testing.TB, userID string, seed int) mlmsoft.Link {
	t.Helper()
	var l mlmsoft.Link
	fill(t, &l, seed)
	l.UserID = userID
	l.Email = fmt.Sprintf("%s.%d.zoë@example.com", userID, seed)
	return l
}

// fullChange returns a pending change of user with every field filled,
// ID and Seq included (which the store must replace), and key as its
// IdempotencyKey.
func fullChange(t testing.TB, user, key string, seed int) mlmsoft.VolumeChange {
	t.Helper()
	var c mlmsoft.VolumeChange
	fill(t, &c, seed)
	c.UserID = user
	c.IdempotencyKey = key
	c.State = mlmsoft.VolumePending
	return c
}

// fullEvent returns an event with every field filled (its Lease included,
// which the store must ignore), due at t0+due.
func fullEvent(t testing.TB, id string, seed int, due time.Duration) mlmsoft.Event {
	t.Helper()
	var e mlmsoft.Event
	fill(t, &e, seed)
	e.ID = id
	e.NextAttemptAt = at(due)
	return e
}
