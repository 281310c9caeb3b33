package phpquery

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// PHP's default limits on request variables (php.ini).
const (
	maxInputVars         = 1000
	maxInputNestingLevel = 64
)

// ParseQuery parses a raw URL query the way PHP 8.2 fills $_GET (and
// parse_str): pairs split on "&", "+" and %XX decoded, values as strings,
// in order; "a[b]=c" and "a[]=c" build nested Maps (appended keys count up
// from the largest int key, like PHP); a repeated name overwrites in place.
// PHP's name mangling is reproduced too: leading spaces dropped, " " and
// "." turned into "_" in the top-level name, an unclosed "[" turned into
// "_", a name cut at a decoded NUL, and empty names ignored.
//
// Where PHP would silently drop input and log a warning, ParseQuery returns
// an error instead: more than 1000 variables (max_input_vars) or more than
// 64 levels of brackets (max_input_nesting_level).
func ParseQuery(raw string) (Map, error) {
	if i := strings.IndexByte(raw, 0); i >= 0 {
		raw = raw[:i] // PHP reads the query as a C string
	}
	top := newPHPArray()
	count := 0
	for _, tok := range strings.Split(raw, "&") {
		if tok == "" {
			continue
		}
		if count++; count > maxInputVars {
			return nil, fmt.Errorf("phpquery: query has more than %d variables (PHP max_input_vars would drop the rest)", maxInputVars)
		}
		name, value, _ := strings.Cut(tok, "=")
		if err := top.register(urldecode(name), urldecode(value)); err != nil {
			return nil, err
		}
	}
	return top.toMap(), nil
}

// urldecode is PHP's urldecode: "+" is a space, %XX with two hex digits a
// byte, and anything else (a stray "%") stays as it is.
func urldecode(s string) string {
	if !strings.ContainsAny(s, "+%") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func isHex(c byte) bool {
	return isDigit(c) || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case isDigit(c):
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// isCSpace is C's isspace in the C locale.
func isCSpace(c byte) bool { return isNumericSpace(c) }

// phpArr is a PHP array being filled by ParseQuery: values are string or
// *phpArr.
type phpArr struct {
	keys []string
	vals []any
	pos  map[string]int
	next int64 // nNextFreeElement; math.MinInt64 until an int key is used
}

func newPHPArray() *phpArr {
	return &phpArr{pos: map[string]int{}, next: math.MinInt64}
}

func (a *phpArr) get(key string) (any, bool) {
	i, ok := a.pos[key]
	if !ok {
		return nil, false
	}
	return a.vals[i], true
}

// set updates key in place or adds it at the end.
func (a *phpArr) set(key string, v any) {
	if i, ok := a.pos[key]; ok {
		a.vals[i] = v
		return
	}
	a.pos[key] = len(a.keys)
	a.keys = append(a.keys, key)
	a.vals = append(a.vals, v)
	if n, ok := intKey(key); ok && n >= a.next {
		a.next = n + 1
		if n == math.MaxInt64 {
			a.next = n
		}
	}
}

// push is $a[] = v; it reports false, dropping v, when the next key is taken
// (only possible once the int keys reach math.MaxInt64).
func (a *phpArr) push(v any) bool {
	n := a.next
	if n == math.MinInt64 {
		n = 0
	}
	key := strconv.FormatInt(n, 10)
	if _, taken := a.pos[key]; taken {
		return false
	}
	a.set(key, v)
	return true
}

func (a *phpArr) toMap() Map {
	m := make(Map, len(a.keys))
	for i, k := range a.keys {
		v := a.vals[i]
		if sub, ok := v.(*phpArr); ok {
			v = sub.toMap()
		}
		m[i] = Pair{Key: k, Value: v}
	}
	return m
}

// register is php_register_variable_ex of PHP 8.2: it stores value under
// the decoded variable name, following its brackets into nested arrays.
func (a *phpArr) register(name, value string) error {
	if i := strings.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	name = strings.TrimLeft(name, " ")
	b := []byte(name)
	bracket := len(b)
	for i, c := range b {
		if c == ' ' || c == '.' {
			b[i] = '_'
		} else if c == '[' {
			bracket = i
			break
		}
	}
	varName := string(b[:bracket])
	// Mangling must not forge the cookie-prefix names.
	for _, prefix := range []string{"__Host-", "__Secure-"} {
		if strings.HasPrefix(varName, prefix) && !strings.HasPrefix(name, prefix) {
			return nil
		}
	}
	if varName == "" {
		return nil
	}
	if bracket == len(b) {
		a.set(varName, value)
		return nil
	}

	rest := name[bracket:] // starts at the first '['
	track := a
	index, hasIndex := varName, true
	ip := 0 // position of the current '[' in rest
	for level := 1; ; level++ {
		if level > maxInputNestingLevel {
			return fmt.Errorf("phpquery: query variable nests deeper than %d levels (PHP max_input_nesting_level would drop it)", maxInputNestingLevel)
		}
		ip++
		indexStart := ip
		if ip < len(rest) && isCSpace(rest[ip]) {
			ip++
		}
		var newIndex string
		newHasIndex := true
		if ip < len(rest) && rest[ip] == ']' {
			newHasIndex = false
		} else {
			end := strings.IndexByte(rest[ip:], ']')
			if end < 0 {
				// Not an index. At the top level the '[' and what follows
				// join the name; deeper, the rest is ignored.
				if level == 1 {
					tail := []byte(rest[indexStart:])
					for i, c := range tail {
						if c == ' ' || c == '.' || c == '[' {
							tail[i] = '_'
						}
					}
					index = varName + "_" + string(tail)
				}
				break
			}
			newIndex = rest[indexStart : ip+end]
			ip += end
		}

		var sub *phpArr
		if !hasIndex {
			sub = newPHPArray()
			if !track.push(sub) {
				return nil
			}
		} else if v, ok := track.get(index); ok {
			if arr, isArr := v.(*phpArr); isArr {
				sub = arr
			} else {
				sub = newPHPArray()
				track.set(index, sub)
			}
		} else {
			sub = newPHPArray()
			track.set(index, sub)
		}
		track = sub
		index, hasIndex = newIndex, newHasIndex

		ip++ // past ']'
		if ip >= len(rest) || rest[ip] != '[' {
			break
		}
	}
	if !hasIndex {
		track.push(value)
		return nil
	}
	track.set(index, value)
	return nil
}
