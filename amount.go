package mlmsoft

import (
	"encoding/json"
	"fmt"
	"strings"
)

// MaxAmountDigits is the most significant digits an Amount may carry. MLM Soft
// is a PHP application: it decodes pointsAmount into a float64 and prints
// floats with PHP's default precision of 14 significant digits, so an
// Amount within the limit means the same number in MLM Soft, in its
// reports and in its signed parameters as here.
const MaxAmountDigits = 14

// Amount is an exact decimal number of points (a volume delta or a status
// value). It is kept and sent as its decimal text, never as a float64, so
// "0.1" stays 0.1 from ApplyVolumes to the wire. The zero value is 0.
//
// Amounts are canonical: no plus sign, no leading zeros, no trailing
// fractional zeros, no exponent ("+012.50" is "12.5", ".5" is "0.5", "-0"
// is "0"), and that canonical text is what MLM Soft receives.
type Amount struct {
	s string // canonical; "" means "0"
}

// ParseAmount parses a decimal: an optional sign, digits, and an optional
// decimal point with digits on at least one side of it ("150", "-3.75",
// "+5", ".5" and "5." are all accepted). Spaces anywhere, exponents,
// thousands separators, NaN and more than MaxAmountDigits significant
// digits are rejected with an error wrapping ErrInvalidInput; so is the
// empty string.
func ParseAmount(s string) (Amount, error) {
	bad := func(why string) (Amount, error) {
		return Amount{}, fmt.Errorf("%w: amount %q: %s", ErrInvalidInput, s, why)
	}
	t := s
	neg := false
	switch {
	case strings.HasPrefix(t, "-"):
		neg, t = true, t[1:]
	case strings.HasPrefix(t, "+"):
		t = t[1:]
	}
	intPart, frac, _ := strings.Cut(t, ".")
	if intPart == "" && frac == "" {
		return bad("not a decimal number")
	}
	for _, part := range []string{intPart, frac} {
		for _, r := range part {
			if r < '0' || r > '9' {
				if r == ' ' || r == '\t' || r == '\n' || r == '\r' {
					return bad("spaces are not allowed")
				}
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

// UnmarshalJSON accepts a JSON number or a JSON string holding a decimal,
// under ParseAmount's rules.
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
