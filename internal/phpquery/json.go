package phpquery

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth is the deepest nesting of objects and arrays that PHP's
// json_decode accepts with its default $depth of 512.
const maxDepth = 511

// MarshalJSON writes m as a JSON object in m's order, nested Maps and lists
// in their order too, so that json_decode on the server rebuilds exactly
// the arrays the signature covers. A json.Number is written verbatim (empty
// means 0), a float64 always with a fraction or an exponent so that PHP
// reads it back as a float, strings without HTML escaping.
//
// It returns an error for a value of an unsupported type, a non-finite
// float64, a json.Number that is not a JSON number, a string or key that is
// not valid UTF-8 (PHP's json_decode would reject the body), or nesting
// deeper than json_decode's default limit. Errors name the key, never the
// value.
func (m Map) MarshalJSON() ([]byte, error) {
	return appendObject(nil, m, 1)
}

func appendObject(b []byte, m Map, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("phpquery: nesting deeper than %d levels", maxDepth)
	}
	b = append(b, '{')
	for i, p := range m {
		if i > 0 {
			b = append(b, ',')
		}
		if !utf8.ValidString(p.Key) {
			return nil, errors.New("phpquery: key is not valid UTF-8")
		}
		b = appendString(b, p.Key)
		b = append(b, ':')
		var err error
		if b, err = appendJSONValue(b, p.Value, depth); err != nil {
			return nil, fmt.Errorf("%w (under key %q)", err, p.Key)
		}
	}
	return append(b, '}'), nil
}

func appendJSONValue(b []byte, v any, depth int) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case string:
		if !utf8.ValidString(v) {
			return nil, errors.New("phpquery: string is not valid UTF-8")
		}
		return appendString(b, v), nil
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, errors.New("phpquery: NaN and infinite floats have no JSON form")
		}
		return appendFloat(b, v), nil
	case json.Number:
		if v == "" {
			return append(b, '0'), nil
		}
		if !isJSONNumber(string(v)) {
			return nil, errors.New("phpquery: json.Number is not a JSON number")
		}
		return append(b, v...), nil
	case Map:
		return appendObject(b, v, depth+1)
	case []any:
		if depth+1 > maxDepth {
			return nil, fmt.Errorf("phpquery: nesting deeper than %d levels", maxDepth)
		}
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSONValue(b, e, depth+1); err != nil {
				return nil, fmt.Errorf("%w (at index %d)", err, i)
			}
		}
		return append(b, ']'), nil
	default:
		return nil, fmt.Errorf("phpquery: unsupported value type %T", v)
	}
}

// appendFloat writes the shortest literal that reads back as f, with a
// fraction or exponent so json_decode makes it a PHP float, not an int.
func appendFloat(b []byte, f float64) []byte {
	start := len(b)
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		b = strconv.AppendFloat(b, f, 'e', -1, 64)
	} else {
		b = strconv.AppendFloat(b, f, 'f', -1, 64)
	}
	for _, c := range b[start:] {
		if c == '.' || c == 'e' {
			return b
		}
	}
	return append(b, ".0"...)
}

// appendString writes s (valid UTF-8) as a JSON string, escaping only what
// JSON requires.
func appendString(b []byte, s string) []byte {
	const hexdigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexdigits[c>>4], hexdigits[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// isJSONNumber reports whether s is a JSON number literal:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func isJSONNumber(s string) bool {
	end, ok := scanNumber(s, 0)
	return ok && end == len(s)
}

// scanNumber returns the end of the JSON number starting at s[i].
func scanNumber(s string, i int) (int, bool) {
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return i, false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || !isDigit(s[i]) {
			return i, false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || !isDigit(s[i]) {
			return i, false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	return i, true
}

// DecodeJSONObject decodes a JSON object, keeping the order of keys at every
// level (duplicates too, in place). Objects become Map, arrays []any,
// numbers json.Number, strings string, true/false bool, null nil.
//
// It is as strict as PHP's json_decode: it returns an error when b is not a
// JSON object, is invalid JSON, holds invalid UTF-8 or an unpaired UTF-16
// surrogate escape, nests deeper than json_decode's default limit, or has
// anything but whitespace after the object.
func DecodeJSONObject(b []byte) (Map, error) {
	d := decoder{s: string(b)}
	d.skipSpace()
	if d.i >= len(d.s) || d.s[d.i] != '{' {
		return nil, errors.New("phpquery: JSON is not an object")
	}
	m, err := d.object(1)
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.i != len(d.s) {
		return nil, d.errorf("data after the JSON object")
	}
	return m, nil
}

type decoder struct {
	s string
	i int
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("phpquery: invalid JSON at offset %d: %s", d.i, fmt.Sprintf(format, args...))
}

func (d *decoder) skipSpace() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// consume skips whitespace and then the byte c, or fails.
func (d *decoder) consume(c byte) error {
	d.skipSpace()
	if d.i >= len(d.s) || d.s[d.i] != c {
		return d.errorf("expected %q", c)
	}
	d.i++
	return nil
}

func (d *decoder) object(depth int) (Map, error) {
	if depth > maxDepth {
		return nil, d.errorf("nesting deeper than %d levels", maxDepth)
	}
	d.i++ // '{'
	m := Map{}
	d.skipSpace()
	if d.i < len(d.s) && d.s[d.i] == '}' {
		d.i++
		return m, nil
	}
	for {
		d.skipSpace()
		if d.i >= len(d.s) || d.s[d.i] != '"' {
			return nil, d.errorf("expected a string key")
		}
		key, err := d.str()
		if err != nil {
			return nil, err
		}
		if err := d.consume(':'); err != nil {
			return nil, err
		}
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		m = append(m, Pair{Key: key, Value: v})
		d.skipSpace()
		if d.i < len(d.s) && d.s[d.i] == ',' {
			d.i++
			continue
		}
		if err := d.consume('}'); err != nil {
			return nil, err
		}
		return m, nil
	}
}

func (d *decoder) array(depth int) ([]any, error) {
	if depth > maxDepth {
		return nil, d.errorf("nesting deeper than %d levels", maxDepth)
	}
	d.i++ // '['
	list := []any{}
	d.skipSpace()
	if d.i < len(d.s) && d.s[d.i] == ']' {
		d.i++
		return list, nil
	}
	for {
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		list = append(list, v)
		d.skipSpace()
		if d.i < len(d.s) && d.s[d.i] == ',' {
			d.i++
			continue
		}
		if err := d.consume(']'); err != nil {
			return nil, err
		}
		return list, nil
	}
}

// value decodes the value after skipping whitespace; depth is that of the
// enclosing container.
func (d *decoder) value(depth int) (any, error) {
	d.skipSpace()
	if d.i >= len(d.s) {
		return nil, d.errorf("unexpected end of input")
	}
	switch c := d.s[d.i]; {
	case c == '{':
		return d.object(depth + 1)
	case c == '[':
		return d.array(depth + 1)
	case c == '"':
		return d.str()
	case c == '-' || isDigit(c):
		end, ok := scanNumber(d.s, d.i)
		if !ok {
			d.i = end
			return nil, d.errorf("malformed number")
		}
		n := json.Number(d.s[d.i:end])
		d.i = end
		return n, nil
	default:
		for _, lit := range []struct {
			text string
			v    any
		}{{"true", true}, {"false", false}, {"null", nil}} {
			if len(d.s)-d.i >= len(lit.text) && d.s[d.i:d.i+len(lit.text)] == lit.text {
				d.i += len(lit.text)
				return lit.v, nil
			}
		}
		return nil, d.errorf("unexpected character %q", c)
	}
}

// str decodes the string starting at the opening quote.
func (d *decoder) str() (string, error) {
	d.i++ // '"'
	start := d.i
	for d.i < len(d.s) && d.s[d.i] != '"' && d.s[d.i] != '\\' && d.s[d.i] >= 0x20 {
		d.i++
	}
	if d.i < len(d.s) && d.s[d.i] == '"' { // fast path: no escapes
		s := d.s[start:d.i]
		if !utf8.ValidString(s) {
			return "", d.errorf("invalid UTF-8 in string")
		}
		d.i++
		return s, nil
	}
	buf := []byte(d.s[start:d.i])
	for {
		if d.i >= len(d.s) {
			return "", d.errorf("unterminated string")
		}
		c := d.s[d.i]
		switch {
		case c == '"':
			d.i++
			if !utf8.Valid(buf) {
				return "", d.errorf("invalid UTF-8 in string")
			}
			return string(buf), nil
		case c < 0x20:
			return "", d.errorf("control character in string")
		case c != '\\':
			buf = append(buf, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.s) {
			return "", d.errorf("unterminated string")
		}
		esc := d.s[d.i+1]
		d.i += 2
		switch esc {
		case '"', '\\', '/':
			buf = append(buf, esc)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return "", d.errorf("malformed \\u escape")
			}
			if utf16.IsSurrogate(r) {
				var r2 rune
				if r < 0xDC00 && d.i+1 < len(d.s) && d.s[d.i] == '\\' && d.s[d.i+1] == 'u' {
					d.i += 2
					if r2, ok = d.hex4(); !ok {
						return "", d.errorf("malformed \\u escape")
					}
				}
				if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
					return "", d.errorf("unpaired UTF-16 surrogate in \\u escape")
				}
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return "", d.errorf("invalid escape")
		}
	}
}

func (d *decoder) hex4() (rune, bool) {
	if len(d.s)-d.i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range []byte(d.s[d.i : d.i+4]) {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	d.i += 4
	return r, true
}
