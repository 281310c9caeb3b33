// Package phpquery reproduces, byte for byte, the string MLM Soft API2 signs:
// PHP 8.2's http_build_query over ksort($params), where $params is what the
// server sees: json_decode($body, true) for a POST, $_GET for a GET.
//
// Values follow PHP's json_decode model. A Map is a PHP array with keys, a
// []any a PHP list; string, bool and nil are themselves; int and int64 are
// PHP ints; float64 is a PHP float; a json.Number is read the way
// json_decode reads that literal (an integer literal that fits int64 is an
// int, any other number a float). Floats print as PHP does with the default
// precision=14 ini setting (see FormatFloat).
//
// Keys are Go strings. A key that is a canonical decimal integer ("7", "-5",
// but not "07", "+5", "-0" or "1.0") is an int key in PHP, which matters for
// ksort. Since only canonical strings become ints, two keys are the same PHP
// key exactly when their strings are equal. Duplicate keys in a Map are
// treated the way json_decode and parse_str treat them: one entry, at the
// position of the first occurrence, holding the value of the last one. BuildQuery, Ksort,
// SignedString, SecurityKey and Get all apply that rule; MarshalJSON writes
// the duplicates as they are, and PHP collapses them the same way.
//
// Nothing here keeps state: every function is safe for concurrent use, as
// long as callers do not mutate a Map while another goroutine reads it.
package phpquery

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Pair is one key/value of an ordered PHP array.
type Pair struct {
	Key   string
	Value any
}

// Map is an ordered map (a PHP array with keys). Values may be: string,
// bool, nil, int, int64, float64, json.Number, Map, []any (a PHP list).
// MarshalJSON rejects any other type; BuildQuery prints one with fmt.Sprint.
// The zero value (nil) is an empty array.
type Map []Pair

// Get returns the value PHP would see under key: with duplicate keys, the
// last one's. The bool is false when the key is absent.
func (m Map) Get(key string) (any, bool) {
	for i := len(m) - 1; i >= 0; i-- {
		if m[i].Key == key {
			return m[i].Value, true
		}
	}
	return nil, false
}

// BuildQuery returns PHP's http_build_query($m) with default arguments, in
// the order of m: RFC 1738 encoding, pairs joined by "&", nested maps as
// k%5Bsub%5D=v, lists as k%5B0%5D=v, true as 1, false as 0, nulls and empty
// arrays left out. An empty m gives "".
func BuildQuery(m Map) string {
	var b strings.Builder
	appendPairs(&b, "", false, phpArray(m))
	return b.String()
}

// SignedString returns BuildQuery(Ksort(m)) + token, the text whose md5 is
// the Security-Key header of an API2 request.
//
// It is exact for a POST whose body is m.MarshalJSON(). A GET server signs
// $_GET instead, which lacks m's nil values and empty arrays (they take part
// in ksort, whose PHP comparison is not transitive) and holds names PHP
// mangled ("a.b" becomes "a_b"). For a GET whose m may have either, sign
// SignedString(ParseQuery(BuildQuery(m)), token); without them the two agree.
func SignedString(m Map, token string) string {
	return BuildQuery(Ksort(m)) + token
}

// SecurityKey returns the lowercase hex md5 of SignedString(m, token).
func SecurityKey(m Map, token string) string {
	sum := md5.Sum([]byte(SignedString(m, token)))
	return hex.EncodeToString(sum[:])
}

func appendPairs(b *strings.Builder, prefix string, nested bool, pairs []Pair) {
	for _, p := range pairs {
		name := urlencode(p.Key)
		if nested {
			name = prefix + "%5B" + name + "%5D"
		}
		appendValue(b, name, p.Value)
	}
}

func appendValue(b *strings.Builder, name string, v any) {
	switch v := v.(type) {
	case nil:
	case Map:
		appendPairs(b, name, true, phpArray(v))
	case []any:
		for i, e := range v {
			appendValue(b, name+"%5B"+strconv.Itoa(i)+"%5D", e)
		}
	default:
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(urlencode(scalarString(v)))
	}
}

// scalarString is PHP's string form of a scalar, as http_build_query prints it.
func scalarString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool:
		if v {
			return "1"
		}
		return "0"
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return FormatFloat(v)
	case json.Number:
		return numberString(v)
	default:
		return fmt.Sprint(v)
	}
}

// numberString prints a JSON number literal as PHP does after json_decode:
// an integer literal that fits int64 stays an int, anything else is a float.
// An empty Number means 0, as in encoding/json; a Number that is not a JSON
// number prints verbatim (MarshalJSON rejects it, so it is never sent).
func numberString(n json.Number) string {
	s := string(n)
	if s == "" {
		return "0"
	}
	if !isJSONNumber(s) {
		return s
	}
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return strconv.FormatInt(i, 10)
		}
	}
	f, _ := strconv.ParseFloat(s, 64) // a valid literal only fails with ErrRange, and f is then ±Inf as in PHP
	return FormatFloat(f)
}

// urlencode is PHP's urlencode: letters, digits and "-_." stay, space
// becomes "+", every other byte becomes %XX in upper case.
func urlencode(s string) string {
	const hexdigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
			b.WriteByte(c)
		case c == ' ':
			b.WriteByte('+')
		default:
			b.WriteByte('%')
			b.WriteByte(hexdigits[c>>4])
			b.WriteByte(hexdigits[c&15])
		}
	}
	return b.String()
}

// phpArray collapses duplicate keys as a PHP array assignment does: first
// position, last value. It always returns a fresh slice.
func phpArray(m Map) []Pair {
	out := make([]Pair, 0, len(m))
	pos := make(map[string]int, len(m))
	for _, p := range m {
		if j, dup := pos[p.Key]; dup {
			out[j].Value = p.Value
			continue
		}
		pos[p.Key] = len(out)
		out = append(out, p)
	}
	return out
}

// FormatFloat returns a PHP float as PHP 8 prints it (string cast,
// http_build_query) with the default precision=14 ini setting: 14
// significant digits, "%.14G"-like exponents ("1.0E+14", "1.0E-5"), and
// "INF", "-INF", "NAN" for the non-finite values.
func FormatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NAN"
	case math.IsInf(f, 1):
		return "INF"
	case math.IsInf(f, -1):
		return "-INF"
	}
	const precision = 14
	var b []byte
	if math.Signbit(f) {
		b = append(b, '-')
		f = -f
	}
	if f == 0 {
		return string(append(b, '0'))
	}
	digits, decpt := dtoa(f, precision)
	switch {
	case decpt < -3 || decpt > precision: // exponential form, as zend_gcvt
		b = append(b, digits[0], '.')
		if len(digits) == 1 {
			b = append(b, '0')
		} else {
			b = append(b, digits[1:]...)
		}
		b = append(b, 'E')
		if exp := decpt - 1; exp < 0 {
			b = append(b, '-')
			b = strconv.AppendInt(b, int64(-exp), 10)
		} else {
			b = append(b, '+')
			b = strconv.AppendInt(b, int64(exp), 10)
		}
	case decpt <= 0:
		b = append(b, "0."...)
		b = append(b, strings.Repeat("0", -decpt)...)
		b = append(b, digits...)
	default:
		for i := range decpt {
			if i < len(digits) {
				b = append(b, digits[i])
			} else {
				b = append(b, '0')
			}
		}
		if len(digits) > decpt {
			b = append(b, '.')
			b = append(b, digits[decpt:]...)
		}
	}
	return string(b)
}

// dtoa returns what zend_dtoa(f, mode 2, ndigits) returns for a positive
// finite f: the significant digits, correctly rounded (ties to even), and
// decpt, the position of the decimal point (f = 0.digits × 10^decpt).
// Trailing zeros are dropped, except where dtoa's exact-integer path keeps
// them: an integer with ndigits+1 digits ending in 5 that rounds down
// (100000000000005 prints as 1.0000000000000E+14 at precision 14).
func dtoa(f float64, ndigits int) (string, int) {
	s := strconv.FormatFloat(f, 'e', ndigits-1, 64)
	mant, exp, _ := strings.Cut(s, "e")
	digits := mant[:1] + mant[2:]
	e, _ := strconv.Atoi(exp)
	if !keepsTrailingZeros(f, ndigits) {
		digits = strings.TrimRight(digits, "0")
	}
	return digits, e + 1
}

func keepsTrailingZeros(f float64, ndigits int) bool {
	if ndigits != 14 || f < 1e14 || f >= 1e15 || f != math.Trunc(f) {
		return false
	}
	n := int64(f)
	return n%10 == 5 && (n/10)%2 == 0
}

// Ksort returns a sorted copy of m, exactly as PHP 8.2 ksort($a) with
// SORT_REGULAR orders it: duplicates collapsed first (see the package doc),
// then PHP's own hybrid insertion sort/quicksort (zend_sort) with the stable
// fallback and PHP 8 key comparison. Only the top level is sorted; nested
// values are shared with m, not copied.
func Ksort(m Map) Map {
	pairs := phpArray(m)
	keys := make([]phpKey, len(pairs))
	order := make([]int, len(pairs))
	for i, p := range pairs {
		keys[i] = parseKey(p.Key)
		order[i] = i
	}
	zendSort(order, func(a, b int) int {
		if c := compareKeys(keys[a], keys[b]); c != 0 {
			return c
		}
		return compareInts(a, b) // PHP 8 sorts are stable
	})
	out := make(Map, len(pairs))
	for i, j := range order {
		out[i] = pairs[j]
	}
	return out
}

// phpKey is an array key as PHP holds it: an int or a string.
type phpKey struct {
	isInt bool
	i     int64
	s     string
}

func parseKey(s string) phpKey {
	if i, ok := intKey(s); ok {
		return phpKey{isInt: true, i: i, s: s}
	}
	return phpKey{s: s}
}

// intKey reports whether PHP turns the string key s into an int key
// (ZEND_HANDLE_NUMERIC_STR): a canonical decimal integer within int64.
func intKey(s string) (int64, bool) {
	if s == "" || len(s) > 20 {
		return 0, false
	}
	i, err := strconv.ParseInt(s, 10, 64)
	if err != nil || strconv.FormatInt(i, 10) != s {
		return 0, false
	}
	return i, true
}

// compareKeys is php_array_key_compare_unstable_i of PHP 8.2.
func compareKeys(a, b phpKey) int {
	switch {
	case a.isInt && b.isInt:
		if a.i > b.i {
			return 1
		}
		return -1
	case !a.isInt && !b.isInt:
		return smartStrcmp(a.s, b.s)
	case a.isInt:
		return compareLongToString(a.i, b.s)
	default:
		return -compareLongToString(b.i, a.s)
	}
}

// smartStrcmp is zendi_smart_strcmp: two numeric strings compare as numbers,
// anything else byte by byte.
func smartStrcmp(s1, s2 string) int {
	n1 := parseNumeric(s1)
	n2 := parseNumeric(s2)
	if n1.kind == notNumeric || n2.kind == notNumeric {
		return strings.Compare(s1, s2)
	}
	if n1.oflow != 0 && n1.oflow == n2.oflow && n1.d-n2.d == 0 {
		// Integers overflowed to the same side: the doubles may have lost the difference.
		return strings.Compare(s1, s2)
	}
	if n1.kind == numDouble || n2.kind == numDouble {
		d1, d2 := n1.d, n2.d
		switch {
		case n1.kind != numDouble:
			if n2.oflow != 0 {
				return -n2.oflow
			}
			d1 = float64(n1.l)
		case n2.kind != numDouble:
			if n1.oflow != 0 {
				return n1.oflow
			}
			d2 = float64(n2.l)
		case d1 == d2 && math.IsInf(d1, 0):
			return strings.Compare(s1, s2)
		}
		return normalize(d1 - d2)
	}
	return compareInts(n1.l, n2.l)
}

// compareLongToString is PHP 8's compare_longs_to_string: numerically when
// s is numeric, otherwise as strings.
func compareLongToString(l int64, s string) int {
	n := parseNumeric(s)
	switch n.kind {
	case numLong:
		return compareInts(l, n.l)
	case numDouble:
		return normalize(float64(l) - n.d)
	default:
		return strings.Compare(strconv.FormatInt(l, 10), s)
	}
}

func compareInts[T int | int64](a, b T) int {
	switch {
	case a > b:
		return 1
	case a < b:
		return -1
	}
	return 0
}

// normalize is ZEND_NORMALIZE_BOOL for a double (NaN gives 0).
func normalize(d float64) int {
	switch {
	case d > 0:
		return 1
	case d < 0:
		return -1
	}
	return 0
}

const (
	notNumeric = iota
	numLong
	numDouble
)

// numeric is the result of PHP's is_numeric_string_ex.
type numeric struct {
	kind  int
	l     int64
	d     float64
	oflow int // ±1 when an integer literal overflowed int64 (then kind is numDouble)
}

func isNumericSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// parseNumeric is _is_numeric_string_ex(s, &lval, &dval, allow_errors=false,
// &oflow) of PHP 8.2: optional leading and trailing whitespace, a sign,
// digits with an optional fraction, or a fraction alone, and an optional
// exponent.
func parseNumeric(s string) numeric {
	for len(s) > 0 && isNumericSpace(s[0]) {
		s = s[1:]
	}
	p := 0
	neg := false
	if p < len(s) && (s[p] == '-' || s[p] == '+') {
		neg = s[p] == '-'
		p++
	}
	isDouble := false
	sigStart, sigEnd := p, p // significant integer digits, after leading zeros
	switch {
	case p < len(s) && isDigit(s[p]):
		for p < len(s) && s[p] == '0' {
			p++
		}
		sigStart = p
		for p < len(s) && isDigit(s[p]) {
			p++
		}
		sigEnd = p
		if p < len(s) && s[p] == '.' {
			isDouble = true
			p++
			for p < len(s) && isDigit(s[p]) {
				p++
			}
		}
	case p+1 < len(s) && s[p] == '.' && isDigit(s[p+1]):
		isDouble = true
		p++
		for p < len(s) && isDigit(s[p]) {
			p++
		}
	default:
		return numeric{}
	}
	if p < len(s) && (s[p] == 'e' || s[p] == 'E') {
		q := p + 1
		if q < len(s) && (s[q] == '-' || s[q] == '+') {
			q++
		}
		if q < len(s) && isDigit(s[q]) {
			isDouble = true
			for p = q; p < len(s) && isDigit(s[p]); p++ {
			}
		}
	}
	end := p
	for end < len(s) && isNumericSpace(s[end]) {
		end++
	}
	if end != len(s) {
		return numeric{}
	}
	sign := 1
	if neg {
		sign = -1
	}
	const maxLengthOfLong = 20 // MAX_LENGTH_OF_LONG on 64-bit
	digits := sigEnd - sigStart
	oflow := 0
	if digits >= maxLengthOfLong {
		oflow = sign
		isDouble = true
	} else if !isDouble && digits == maxLengthOfLong-1 {
		// strcmp(digits and what follows them, "9223372036854775808")
		c := strings.Compare(s[sigStart:sigEnd], "9223372036854775808")
		if c == 0 && sigEnd < len(s) {
			c = 1
		}
		if !(c < 0 || (c == 0 && neg)) {
			oflow = sign
			isDouble = true
		}
	}
	if isDouble {
		d, _ := strconv.ParseFloat(s[:p], 64) // syntax checked above; ErrRange gives ±Inf or 0 as zend_strtod
		return numeric{kind: numDouble, d: d, oflow: oflow}
	}
	var u uint64
	for i := sigStart; i < sigEnd; i++ {
		u = u*10 + uint64(s[i]-'0')
	}
	if neg {
		u = -u
	}
	return numeric{kind: numLong, l: int64(u)}
}

// zendSort is PHP's zend_sort (Zend/zend_sort.c) over s: insertion sort up
// to 16 elements, otherwise quicksort with a median-of-3 (or 5) pivot. The
// comparison PHP uses for mixed keys is not transitive, so the algorithm
// itself decides the outcome and is reproduced step by step.
func zendSort(s []int, cmp func(a, b int) int) {
	for len(s) > 16 {
		n := len(s)
		pivot := n >> 1
		if n>>10 != 0 {
			delta := pivot >> 1
			sort5(s, 0, delta, pivot, pivot+delta, n-1, cmp)
		} else {
			sort3(s, 0, pivot, n-1, cmp)
		}
		s[1], s[pivot] = s[pivot], s[1]
		pivot = 1
		i, j := pivot+1, n-1
	partition:
		for {
			for cmp(s[pivot], s[i]) > 0 {
				i++
				if i == j {
					break partition
				}
			}
			j--
			if j == i {
				break partition
			}
			for cmp(s[j], s[pivot]) > 0 {
				j--
				if j == i {
					break partition
				}
			}
			s[i], s[j] = s[j], s[i]
			i++
			if i == j {
				break partition
			}
		}
		s[pivot], s[i-1] = s[i-1], s[pivot]
		if i-1 < n-i {
			zendSort(s[:i-1], cmp)
			s = s[i:]
		} else {
			zendSort(s[i:], cmp)
			s = s[:i-1]
		}
	}
	insertSort(s, cmp)
}

// insertSort is zend_insert_sort.
func insertSort(s []int, cmp func(a, b int) int) {
	switch len(s) {
	case 0, 1:
		return
	case 2:
		sort2(s, 0, 1, cmp)
		return
	case 3:
		sort3(s, 0, 1, 2, cmp)
		return
	case 4:
		sort4(s, 0, 1, 2, 3, cmp)
		return
	case 5:
		sort5(s, 0, 1, 2, 3, 4, cmp)
		return
	}
	const sentry = 6
	for i := 1; i < sentry; i++ {
		j := i - 1
		if cmp(s[j], s[i]) <= 0 {
			continue
		}
		for j != 0 {
			j--
			if cmp(s[j], s[i]) <= 0 {
				j++
				break
			}
		}
		rotate(s, j, i)
	}
	for i := sentry; i < len(s); i++ {
		j := i - 1
		if cmp(s[j], s[i]) <= 0 {
			continue
		}
		for {
			j -= 2
			if cmp(s[j], s[i]) <= 0 {
				j++
				if cmp(s[j], s[i]) <= 0 {
					j++
				}
				break
			}
			if j == 0 {
				break
			}
			if j == 1 {
				j--
				if cmp(s[i], s[j]) > 0 {
					j++
				}
				break
			}
		}
		rotate(s, j, i)
	}
}

// rotate moves s[i] down to position j, shifting s[j:i] up by one.
func rotate(s []int, j, i int) {
	for k := i; k > j; k-- {
		s[k], s[k-1] = s[k-1], s[k]
	}
}

func sort2(s []int, a, b int, cmp func(a, b int) int) {
	if cmp(s[a], s[b]) > 0 {
		s[a], s[b] = s[b], s[a]
	}
}

func sort3(s []int, a, b, c int, cmp func(a, b int) int) {
	if cmp(s[a], s[b]) <= 0 {
		if cmp(s[b], s[c]) <= 0 {
			return
		}
		s[b], s[c] = s[c], s[b]
		if cmp(s[a], s[b]) > 0 {
			s[a], s[b] = s[b], s[a]
		}
		return
	}
	if cmp(s[c], s[b]) <= 0 {
		s[a], s[c] = s[c], s[a]
		return
	}
	s[a], s[b] = s[b], s[a]
	if cmp(s[b], s[c]) > 0 {
		s[b], s[c] = s[c], s[b]
	}
}

func sort4(s []int, a, b, c, d int, cmp func(a, b int) int) {
	sort3(s, a, b, c, cmp)
	if cmp(s[c], s[d]) > 0 {
		s[c], s[d] = s[d], s[c]
		if cmp(s[b], s[c]) > 0 {
			s[b], s[c] = s[c], s[b]
			if cmp(s[a], s[b]) > 0 {
				s[a], s[b] = s[b], s[a]
			}
		}
	}
}

func sort5(s []int, a, b, c, d, e int, cmp func(a, b int) int) {
	sort4(s, a, b, c, d, cmp)
	if cmp(s[d], s[e]) > 0 {
		s[d], s[e] = s[e], s[d]
		if cmp(s[c], s[d]) > 0 {
			s[c], s[d] = s[d], s[c]
			if cmp(s[b], s[c]) > 0 {
				s[b], s[c] = s[c], s[b]
				if cmp(s[a], s[b]) > 0 {
					s[a], s[b] = s[b], s[a]
				}
			}
		}
	}
}
