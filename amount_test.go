package mlmsoft

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestParseAmount(t *testing.T) {
	t.Parallel()
	good := map[string]string{
		"0": "0", "-0": "0", "000": "0", "0.000": "0", "150": "150", "+7": "7", "012.50": "12.5",
		"0.1": "0.1", ".5": "0.5", "-3.75": "-3.75", "+.5": "0.5", "1.": "1", "-5.": "-5", "12345678901234": "12345678901234",
		"0.00000000000001": "0.00000000000001", "-9999999999999.9": "-9999999999999.9", "0012345678901234.000": "12345678901234",
	}
	for in, want := range good {
		a, err := ParseAmount(in)
		if err != nil || a.String() != want {
			t.Errorf("ParseAmount(%q) = %q, %v; want %q", in, a, err, want)
		}
	}
	// PHP prints floats with 14 significant digits: a 15th would not
	// survive MLM Soft. Spaces are refused everywhere, not trimmed.
	for _, in := range []string{"", "-", "+", ".", "-.", "1e3", "1,000", "NaN", "Inf", "0x10", "1.2.3", "--1", "+-1", "1 000",
		" 42", "42 ", " 1.5", "\t1", "123456789012345", "0.123456789012345", "-99999999999999.9"} {
		if a, err := ParseAmount(in); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("ParseAmount(%q) = %q, %v; want ErrInvalidInput", in, a, err)
		}
	}
}

func TestAmountJSON(t *testing.T) {
	t.Parallel()
	var v struct{ A Amount }
	if err := json.Unmarshal([]byte(`{"A":0.10}`), &v); err != nil || v.A.String() != "0.1" {
		t.Fatalf("number: %v %v", v.A, err)
	}
	if err := json.Unmarshal([]byte(`{"A":"-2.50"}`), &v); err != nil || v.A.String() != "-2.5" {
		t.Fatalf("string: %v %v", v.A, err)
	}
	b, _ := json.Marshal(struct{ A Amount }{MustAmount("0.1")})
	if string(b) != `{"A":0.1}` {
		t.Fatalf("marshal = %s", b)
	}
	if AmountFromInt(-5).String() != "-5" || !AmountFromInt(0).IsZero() || (Amount{}).String() != "0" {
		t.Fatal("AmountFromInt / zero value")
	}
}

func TestPasswordSealing(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef0123456789abcdef")
	sealed, err := sealPassword(key, "u1", "s3cret pässword")
	if err != nil {
		t.Fatal(err)
	}
	if string(sealed) == "s3cret pässword" || len(sealed) < 12+16 {
		t.Fatalf("not sealed: %q", sealed)
	}
	if got, err := openPassword(key, "u1", sealed); err != nil || got != "s3cret pässword" {
		t.Fatalf("open = %q, %v", got, err)
	}
	if _, err := openPassword(key, "u2", sealed); err == nil {
		t.Fatal("a sealed password opened for another user")
	}
	if _, err := openPassword([]byte("fedcba9876543210"), "u1", sealed); err == nil {
		t.Fatal("a sealed password opened with another key")
	}
	again, _ := sealPassword(key, "u1", "s3cret pässword")
	if string(again) == string(sealed) {
		t.Fatal("two seals of one password are equal: nonce reused")
	}
}
