package mlmsoft

import (
	"encoding/json"
	"fmt"
	"strings"
)

// MaxAmountDigits is the most significant digits an Amount may carry. MLM Soft
// is a PHP application that decodes pointsAmount into a float64; up to 15
// significant decimal digits survive that round trip exactly, so an Amount
// within the limit means the same number in MLM Soft as here.
const MaxAmountDigits = 15

// Amount is an exact decimal number of points (a volume delta or a status
// value). It is kept and sent as its decimal text, never as a float64, so
// "0.1" stays 0.1 from ApplyVolumes to the wire. The zero value is 0.
//
// Amounts are canonical: no plus sign, no leading zeros, no trailing
// fractional zeros ("012.50" is "12.5", "-0" is "0").
type Amount struct {
	s string // canonical; "" means "0"
}

// ParseAmount parses a decimal such as "150", "12.5" or "-3.75". Exponents,
// thousands separators, NaN and more than MaxAmountDigits significant digits
// are rejected with an error wrapping ErrInvalidInput.
func ParseAmount(s string) (Amount, error) {
	bad := func(why string) (Amount, error) {
		return Amount{}, fmt.Errorf("%w: amount %q: %s", ErrInvalidInput, s, why)
	}
	t := strings.TrimSpace(s)
	neg := false
	switch {
	case strings.HasPrefix(t, "-"):
		neg, t = true, t[1:]
	case strings.HasPrefix(t, "+"):
		t = t[1:]
	}
	intPart, frac, hasDot := strings.Cut(t, ".")
	if intPart == "" && frac == "" {
		return bad("not a decimal number")
	}
	if hasDot && frac == "" {
		return bad("no digits after the decimal point")
	}
	for _, part := range []string{intPart, frac} {
		for _, r := range part {
			if r < '0' || r > '9' {
				return bad("not a decimal number")
			}
		}
	}
	intPart = strings.TrimLeft(intPart, "0")
	frac = strings.TrimRight(frac, "0")
	digits := strings.TrimLeft(intPart+frac, "0")
	if len(digits) > MaxAmountDigits {
		return bad(fmt.Sprintf("more than %d significant digits", MaxAmountDigits))
	}
	if digits == "" {
		return Amount{}, nil
	}
	if intPart == "" {
		intPart = "0"
	}
	out := intPart
	if frac != "" {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return Amount{s: out}, nil
}

// MustAmount is ParseAmount that panics on error; for constants in code and
// tests.
func MustAmount(s string) Amount {
	a, err := ParseAmount(s)
	if err != nil {
		panic(err)
	}
	return a
}

// AmountFromInt returns the Amount for a whole number.
func AmountFromInt(n int64) Amount {
	if n == 0 {
		return Amount{}
	}
	return Amount{s: fmt.Sprint(n)}
}

// String returns the canonical decimal text ("0" for the zero value).
func (a Amount) String() string {
	if a.s == "" {
		return "0"
	}
	return a.s
}

// IsZero reports whether the amount is 0.
func (a Amount) IsZero() bool { return a.s == "" }

// Number returns the amount as a JSON number literal, exactly as sent to MLM
// Soft.
func (a Amount) Number() json.Number { return json.Number(a.String()) }

// MarshalJSON encodes the amount as a JSON number with its exact digits.
func (a Amount) MarshalJSON() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalJSON accepts a JSON number or a JSON string holding a decimal.
func (a *Amount) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	v, err := ParseAmount(s)
	if err != nil {
		return err
	}
	*a = v
	return nil
}
