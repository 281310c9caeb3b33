package phpquery

import (
	"encoding/json"
	"math"
	"os"
	"reflect"
	"testing"
)

type vector struct {
	Name         string          `json:"name"`
	Method       string          `json:"method"`
	Token        string          `json:"token"`
	Params       json.RawMessage `json:"params"`
	SignedString string          `json:"signed_string"`
	SecurityKey  string          `json:"security_key"`
	QueryString  *string         `json:"query_string"`
	JSONBody     *string         `json:"json_body"`
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	raw, err := os.ReadFile("testdata/api2-signing-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatal("no vectors")
	}
	return vs
}

// vectorParams decodes a vector's params; PHP writes an empty array as [].
func vectorParams(t *testing.T, v vector) Map {
	t.Helper()
	if string(v.Params) == "[]" {
		return Map{}
	}
	m, err := DecodeJSONObject(v.Params)
	if err != nil {
		t.Fatalf("params: %v", err)
	}
	return m
}

func TestVectors(t *testing.T) {
	t.Parallel()
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			m := vectorParams(t, v)
			if got := SignedString(m, v.Token); got != v.SignedString {
				t.Errorf("SignedString:\n got %q\nwant %q", got, v.SignedString)
			}
			if got := SecurityKey(m, v.Token); got != v.SecurityKey {
				t.Errorf("SecurityKey = %s, want %s", got, v.SecurityKey)
			}
			switch v.Method {
			case "GET":
				if v.QueryString == nil {
					t.Fatal("GET vector without query_string")
				}
				if got := BuildQuery(m); got != *v.QueryString {
					t.Errorf("BuildQuery:\n got %q\nwant %q", got, *v.QueryString)
				}
				// What a fake server does with the query it receives.
				parsed, err := ParseQuery(*v.QueryString)
				if err != nil {
					t.Fatal(err)
				}
				if got := SignedString(parsed, v.Token); got != v.SignedString {
					t.Errorf("SignedString(ParseQuery(query)):\n got %q\nwant %q", got, v.SignedString)
				}
			case "POST":
				if v.JSONBody == nil {
					t.Fatal("POST vector without json_body")
				}
				body, err := m.MarshalJSON()
				if err != nil {
					t.Fatal(err)
				}
				ours, err := DecodeJSONObject(body)
				if err != nil {
					t.Fatalf("decoding our body %s: %v", body, err)
				}
				phps, err := DecodeJSONObject([]byte(*v.JSONBody))
				if err != nil {
					t.Fatalf("decoding PHP's body: %v", err)
				}
				if !reflect.DeepEqual(ours, phps) {
					t.Errorf("body:\n got %s\nwant %s", body, *v.JSONBody)
				}
				// What a fake server does with the body it receives.
				if got := SignedString(phps, v.Token); got != v.SignedString {
					t.Errorf("SignedString(DecodeJSONObject(body)):\n got %q\nwant %q", got, v.SignedString)
				}
			default:
				t.Fatalf("unknown method %q", v.Method)
			}
		})
	}
}

func TestBuildQuery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		m    Map
		want string
	}{
		{"empty", nil, ""},
		{"encoding", Map{{"k y~*", "v~*'()!+&=?/ \x00\xff"}}, "k+y%7E%2A=v%7E%2A%27%28%29%21%2B%26%3D%3F%2F+%00%FF"},
		{"kept bytes", Map{{"a-_.Z9", "-_.azAZ09"}}, "a-_.Z9=-_.azAZ09"},
		{"scalars", Map{{"t", true}, {"f", false}, {"n", nil}, {"i", -7}, {"i64", int64(math.MinInt64)}, {"fl", 0.1 + 0.2}, {"big", 1e14}},
			"t=1&f=0&i=-7&i64=-9223372036854775808&fl=0.3&big=1.0E%2B14"},
		{"numbers as json_decode reads them", Map{
			{"a", json.Number("-12.50")}, {"b", json.Number("1e-7")}, {"c", json.Number("123456789012345678901")},
			{"d", json.Number("-0")}, {"e", json.Number("-0.0")}, {"f", json.Number("9223372036854775807")},
			{"g", json.Number("9223372036854775808")}, {"h", json.Number("1e999")}, {"i", json.Number("150.0")},
			{"j", json.Number("")},
		}, "a=-12.5&b=1.0E-7&c=1.2345678901235E%2B20&d=0&e=-0&f=9223372036854775807&g=9.2233720368548E%2B18&h=INF&i=150&j=0"},
		{"nested and lists", Map{
			{"c", []any{nil, 1, nil, []any{true, false}}},
			{"", "e"},
			{"-3", "n"},
			{"x", Map{{"", 1}, {"in ner", Map{{"z", 2}}}, {"empty", Map{}}, {"none", []any{}}}},
		}, "c%5B1%5D=1&c%5B3%5D%5B0%5D=1&c%5B3%5D%5B1%5D=0&=e&-3=n&x%5B%5D=1&x%5Bin+ner%5D%5Bz%5D=2"},
		{"empty key holding a map", Map{{"", Map{{"a", 1}}}}, "%5Ba%5D=1"},
		{"duplicates: first position, last value", Map{{"a", 1}, {"b", 2}, {"a", 3}, {"c", nil}, {"c", 4}, {"d", 5}, {"d", nil}},
			"a=3&b=2&c=4"},
		{"nested duplicates", Map{{"p", Map{{"x", 1}, {"y", 2}, {"x", Map{{"z", 3}}}}}}, "p%5Bx%5D%5Bz%5D=3&p%5By%5D=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := BuildQuery(tt.m); got != tt.want {
				t.Errorf("BuildQuery:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestSignedStringEmpty(t *testing.T) {
	t.Parallel()
	if got := SignedString(nil, "tok"); got != "tok" {
		t.Errorf("SignedString(nil) = %q, want the bare token", got)
	}
	if got, want := SecurityKey(Map{{"n", nil}}, "tok"), "60ae136e5d49fbdf037fab5f1d805634"; got != want { // md5("tok")
		t.Errorf("SecurityKey = %q, want %q", got, want)
	}
}

func TestKsort(t *testing.T) {
	t.Parallel()
	keys := func(m Map) []string {
		var ks []string
		for _, p := range m {
			ks = append(ks, p.Key)
		}
		return ks
	}
	mk := func(ks ...string) Map {
		m := make(Map, len(ks))
		for i, k := range ks {
			m[i] = Pair{k, i}
		}
		return m
	}
	// Expected orders are PHP 8.2's (php -r 'ksort($a); ...').
	tests := []struct {
		name string
		in   Map
		want []string
	}{
		{"bytes", mk("type", "login", "Password", "password", "_x", "a b"), []string{"Password", "_x", "a b", "login", "password", "type"}},
		{"ints numerically", mk("10", "9", "-5", "0"), []string{"-5", "0", "9", "10"}},
		{"int vs non-numeric string compares as strings", mk("a", "0"), []string{"0", "a"}},
		{"numeric strings numerically", mk("1e1", "9", " 5", "5 ", "01", "1.5"), []string{"01", "1.5", " 5", "5 ", "9", "1e1"}},
		{"non-numeric mixed", mk("9a", "10", "9"), []string{"9", "10", "9a"}},
		{"stable for equal keys", mk("1.0", "1", "01", " 1"), []string{"1.0", "1", "01", " 1"}},
		{"duplicates collapse", Map{{"b", 1}, {"a", 2}, {"b", 3}}, []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Ksort(tt.in)
			if !reflect.DeepEqual(keys(got), tt.want) {
				t.Errorf("Ksort order = %q, want %q", keys(got), tt.want)
			}
		})
	}

	in := Map{{"b", 1}, {"a", 2}, {"b", 3}}
	got := Ksort(in)
	if v, _ := got.Get("b"); v != 3 {
		t.Errorf("duplicate b = %v, want the last value 3", v)
	}
	if !reflect.DeepEqual(in, Map{{"b", 1}, {"a", 2}, {"b", 3}}) {
		t.Errorf("Ksort modified its input: %v", in)
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	m := Map{{"a", 1}, {"b", nil}, {"a", 2}}
	if v, ok := m.Get("a"); !ok || v != 2 {
		t.Errorf(`Get("a") = %v, %v; want 2, true`, v, ok)
	}
	if v, ok := m.Get("b"); !ok || v != nil {
		t.Errorf(`Get("b") = %v, %v; want nil, true`, v, ok)
	}
	if _, ok := m.Get("c"); ok {
		t.Error(`Get("c") found a missing key`)
	}
	if _, ok := Map(nil).Get("a"); ok {
		t.Error("Get on nil Map found a key")
	}
}

func TestFormatFloatTable(t *testing.T) {
	t.Parallel()
	for _, tt := range formatFloatTable {
		if got := FormatFloat(tt.f); got != tt.want {
			t.Errorf("FormatFloat(%v) = %q, want %q", tt.f, got, tt.want)
		}
	}
}

// formatFloatTable holds (string)$f of PHP 8.2 with precision=14; the
// differential test checks it against php too.
var formatFloatTable = []struct {
	f    float64
	want string
}{
	{0.1, "0.1"},
	{0.1 + 0.2, "0.3"},
	{1e14, "1.0E+14"},
	{1e-5, "1.0E-5"},
	{150, "150"},
	{math.Copysign(0, -1), "-0"},
	{0, "0"},
	{1e15, "1.0E+15"},
	{1e13, "10000000000000"},
	{12.5, "12.5"},
	{-12.5, "-12.5"},
	{0.0001, "0.0001"},
	{0.00012345, "0.00012345"},
	{123456789012345, "1.2345678901234E+14"},
	{100000000000005, "1.0000000000000E+14"},
	{100000000000015, "1.0000000000002E+14"},
	{100000000000905, "1.0000000000090E+14"},
	{100000000000095, "1.000000000001E+14"},
	{999999999999995, "1.0E+15"},
	{1.5e300, "1.5E+300"},
	{5e-324, "4.9406564584125E-324"},
	{math.MaxFloat64, "1.7976931348623E+308"},
	{0.5, "0.5"},
	{1.0 / 3, "0.33333333333333"},
	{2.0 / 3, "0.66666666666667"},
	{123456.789, "123456.789"},
	{99999999999999.5, "1.0E+14"},
	{1e100, "1.0E+100"},
	{1e-100, "1.0E-100"},
	{-1.5e-7, "-1.5E-7"},
	{9007199254740993, "9.007199254741E+15"},
	{12345678901234567890, "1.2345678901235E+19"},
	{0.1 + 0.7, "0.8"},
	{math.Inf(1), "INF"},
	{math.Inf(-1), "-INF"},
	{math.NaN(), "NAN"},
}

func TestParseNumeric(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s     string
		kind  int
		l     int64
		d     float64
		oflow int
	}{
		{"123", numLong, 123, 0, 0},
		{" \t\n\r\v\f-0042 \n", numLong, -42, 0, 0},
		{"+7", numLong, 7, 0, 0},
		{"1.", numDouble, 0, 1, 0},
		{".5", numDouble, 0, 0.5, 0},
		{"-.5e1", numDouble, 0, -5, 0},
		{"1e5", numDouble, 0, 1e5, 0},
		{"1.e5", numDouble, 0, 1e5, 0},
		{"9223372036854775807", numLong, math.MaxInt64, 0, 0},
		{"-9223372036854775808", numLong, math.MinInt64, 0, 0},
		{"-9223372036854775808 ", numDouble, 0, -9223372036854775808, -1},
		{"9223372036854775808", numDouble, 0, 9223372036854775808, 1},
		{"00000000000000000000001", numLong, 1, 0, 0},
		{"12345678901234567890.5", numDouble, 0, 12345678901234567890.5, 1},
		{"1e999", numDouble, 0, math.Inf(1), 0},
		{"", notNumeric, 0, 0, 0},
		{" ", notNumeric, 0, 0, 0},
		{"1e", notNumeric, 0, 0, 0},
		{"1e+", notNumeric, 0, 0, 0},
		{"0x1A", notNumeric, 0, 0, 0},
		{".", notNumeric, 0, 0, 0},
		{"- 1", notNumeric, 0, 0, 0},
		{"1 1", notNumeric, 0, 0, 0},
		{"INF", notNumeric, 0, 0, 0},
		{"1\x00", notNumeric, 0, 0, 0},
	}
	for _, tt := range tests {
		got := parseNumeric(tt.s)
		want := numeric{kind: tt.kind, l: tt.l, d: tt.d, oflow: tt.oflow}
		if got != want {
			t.Errorf("parseNumeric(%q) = %+v, want %+v", tt.s, got, want)
		}
	}
}

func TestParseQuery(t *testing.T) {
	t.Parallel()
	// Expected values are PHP 8.2's parse_str results.
	tests := []struct {
		q    string
		want Map
	}{
		{"", Map{}},
		{"a=1&b=%41%2b+&c&&d=", Map{{"a", "1"}, {"b", "A+ "}, {"c", ""}, {"d", ""}}},
		{"a=%zz%4&b=%", Map{{"a", "%zz%4"}, {"b", "%"}}},
		{"a[-5]=1&a[]=2", Map{{"a", Map{{"-5", "1"}, {"-4", "2"}}}}},
		{"a[5]=1&a[]=x&a[3]=y&a[]=z", Map{{"a", Map{{"5", "1"}, {"6", "x"}, {"3", "y"}, {"7", "z"}}}}},
		{"a[9223372036854775807]=1&a[]=2", Map{{"a", Map{{"9223372036854775807", "1"}}}}},
		{"a[9223372036854775806]=1&a[]=2&a[]=3", Map{{"a", Map{{"9223372036854775806", "1"}, {"9223372036854775807", "2"}}}}},
		{"a[x]=1&a=2&a[y]=3", Map{{"a", Map{{"y", "3"}}}}},
		{"a[b[c]=1&a[ ]=2&a[\t]=3&a[ x]=4", Map{{"a", Map{{"b[c", "1"}, {"0", "2"}, {"1", "3"}, {" x", "4"}}}}},
		{"a[b=1&c[d][e=2&x.y z[=3", Map{{"a_b", "1"}, {"c", Map{{"d", "2"}}}, {"x_y_z_", "3"}}},
		{" _.Host-a=1&__Host-b=2&_.Secure-=3", Map{{"__Host-b", "2"}}},
		{"a%00b=1&c=d%00e&%5Bx=1&[y]=2&=3&&&z", Map{{"a", "1"}, {"c", "d\x00e"}, {"z", ""}}},
		{"a[x]y=1&a[1]=2&a[01]=3&1=4&-0=5", Map{{"a", Map{{"x", "1"}, {"1", "2"}, {"01", "3"}}}, {"1", "4"}, {"-0", "5"}}},
		{"a=1&b=2&a=3", Map{{"a", "3"}, {"b", "2"}}},
		{"a[][x]=1&a[][x]=2", Map{{"a", Map{{"0", Map{{"x", "1"}}}, {"1", Map{{"x", "2"}}}}}}},
		{"ok=1\x00x=2", Map{{"ok", "1"}}},
	}
	for _, tt := range tests {
		got, err := ParseQuery(tt.q)
		if err != nil {
			t.Errorf("ParseQuery(%q): %v", tt.q, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseQuery(%q)\n got %#v\nwant %#v", tt.q, got, tt.want)
		}
	}
}

func TestParseQueryLimits(t *testing.T) {
	t.Parallel()
	deep := "a"
	for range maxInputNestingLevel {
		deep += "[x]"
	}
	if _, err := ParseQuery(deep + "=1"); err != nil {
		t.Errorf("%d levels: %v", maxInputNestingLevel, err)
	}
	if _, err := ParseQuery(deep + "[x]=1"); err == nil {
		t.Errorf("%d levels: no error", maxInputNestingLevel+1)
	}
	many := ""
	for i := range maxInputVars {
		if i > 0 {
			many += "&"
		}
		many += "v=1"
	}
	if _, err := ParseQuery(many); err != nil {
		t.Errorf("%d variables: %v", maxInputVars, err)
	}
	if _, err := ParseQuery(many + "&v=2"); err == nil {
		t.Errorf("%d variables: no error", maxInputVars+1)
	}
}
