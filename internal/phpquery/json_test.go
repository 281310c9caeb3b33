package phpquery

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeJSONObjectKeepsOrder(t *testing.T) {
	t.Parallel()
	in := `  { "z" : 1, "a": {"y": [true, false, null, {"q": "\u00eb\ud83d\ude00\n", "b": -0.50e+1}], "c": {}}, "m": [], "": "", "\u0000k": "x\/y", "z": 2 } ` + "\n"
	want := Map{
		{"z", json.Number("1")},
		{"a", Map{
			{"y", []any{true, false, nil, Map{{"q", "ë😀\n"}, {"b", json.Number("-0.50e+1")}}}},
			{"c", Map{}},
		}},
		{"m", []any{}},
		{"", ""},
		{"\x00k", "x/y"},
		{"z", json.Number("2")},
	}
	got, err := DecodeJSONObject([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DecodeJSONObject\n got %#v\nwant %#v", got, want)
	}
	body, err := got.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	const compact = `{"z":1,"a":{"y":[true,false,null,{"q":"ë😀\n","b":-0.50e+1}],"c":{}},"m":[],"":"","\u0000k":"x/y","z":2}`
	if string(body) != compact {
		t.Errorf("MarshalJSON\n got %s\nwant %s", body, compact)
	}
}

// invalidJSONObjects are rejected by DecodeJSONObject and, except where
// noted, by PHP's json_decode too (the differential test checks that).
var invalidJSONObjects = []string{
	``,
	`{`,
	`{"a":1}x`,
	`{"a":1}{}`,
	`{"a":1,}`,
	`{,}`,
	`{"a" 1}`,
	`{'a':1}`,
	`{a:1}`,
	`{"a":TRUE}`,
	`{"a":nul}`,
	`{"a":01}`,
	`{"a":1.}`,
	`{"a":.5}`,
	`{"a":-}`,
	`{"a":1e}`,
	`{"a":+1}`,
	`{"a":NaN}`,
	`{"a":[1,]}`,
	`{"a":[1 2]}`,
	`{"a":"\ud800"}`,
	`{"a":"\udc00"}`,
	`{"a":"\ud800\u0041"}`,
	`{"a":"\u12"}`,
	`{"a":"\x"}`,
	`{"a":"tab` + "\t" + `"}`,
	`{"a":"` + "\xff" + `"}`,
	`{"` + "\xc0\xaf" + `":1}`,
	`{"a":"unterminated}`,
	"\ufeff{}",
	`{"a":1}` + "\v",
	strings.Repeat(`{"a":`, maxDepth+1) + "1" + strings.Repeat("}", maxDepth+1),
}

func TestDecodeJSONObjectErrors(t *testing.T) {
	t.Parallel()
	for _, in := range append([]string{`[]`, `1`, `"s"`, `null`}, invalidJSONObjects...) {
		if m, err := DecodeJSONObject([]byte(in)); err == nil {
			t.Errorf("DecodeJSONObject(%q) = %#v, want an error", in, m)
		}
	}
	deepest := strings.Repeat(`{"a":`, maxDepth-1) + "[1]" + strings.Repeat("}", maxDepth-1)
	if _, err := DecodeJSONObject([]byte(deepest)); err != nil {
		t.Errorf("%d levels: %v", maxDepth, err)
	}
}

func TestMarshalJSON(t *testing.T) {
	t.Parallel()
	m := Map{
		{"f1", 150.0}, {"f2", 1e21}, {"f3", 1e-7}, {"f4", math.Copysign(0, -1)}, {"f5", 0.1}, {"f6", 1e20},
		{"i", -3}, {"i64", int64(math.MaxInt64)}, {"n", json.Number("-12.50")}, {"e", json.Number("")},
		{"s", "<&>\u2028\"\\\x01\x1f\b"}, {"b", true}, {"nil", nil}, {"m", Map(nil)}, {"l", []any(nil)},
	}
	const want = `{"f1":150.0,"f2":1e+21,"f3":1e-07,"f4":-0.0,"f5":0.1,"f6":100000000000000000000.0,` +
		`"i":-3,"i64":9223372036854775807,"n":-12.50,"e":0,` +
		`"s":"<&>` + "\u2028" + `\"\\\u0001\u001f\u0008","b":true,"nil":null,"m":{},"l":[]}`
	got, err := m.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("MarshalJSON\n got %s\nwant %s", got, want)
	}
	if !json.Valid(got) {
		t.Error("MarshalJSON produced invalid JSON")
	}
	// encoding/json must call our method, including for a nil Map.
	viaStd, err := json.Marshal(struct{ M Map }{})
	if err != nil || string(viaStd) != `{"M":{}}` {
		t.Errorf("json.Marshal of nil Map = %s, %v", viaStd, err)
	}
}

func TestMarshalJSONErrors(t *testing.T) {
	t.Parallel()
	const secret = "hunter2"
	deep := Map{{"a", 1}}
	for range maxDepth {
		deep = Map{{"a", deep}}
	}
	tests := []struct {
		name string
		m    Map
	}{
		{"NaN", Map{{"x", math.NaN()}}},
		{"Inf", Map{{"x", []any{math.Inf(-1)}}}},
		{"bad number", Map{{"x", json.Number(secret)}}},
		{"bad number 2", Map{{"x", json.Number("01")}}},
		{"invalid UTF-8 value", Map{{"x", Map{{"y", secret + "\xff"}}}}},
		{"invalid UTF-8 key", Map{{"x\xff", 1}}},
		{"unsupported type", Map{{"x", int32(1)}}},
		{"unsupported map", Map{{"x", map[string]any{}}}},
		{"too deep", deep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := tt.m.MarshalJSON()
			if err == nil {
				t.Fatalf("MarshalJSON = %s, want an error", b)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q reveals the value", err)
			}
		})
	}
}

func FuzzDecodeJSONObject(f *testing.F) {
	for _, v := range loadVectors(f) {
		if v.JSONBody != nil {
			f.Add([]byte(*v.JSONBody))
		}
		f.Add([]byte(v.Params))
	}
	for _, s := range invalidJSONObjects {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"a":{"b":[1,-2.5e-3,{"c":null}],"a":true},"1":"\u00e9","01":[],"-0":{}}`))
	f.Add([]byte(`{"10":1,"9":2,"1e1":3,"9a":4," 5":5,"":6}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeJSONObject(data)
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		out, err := m.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON of a decoded object: %v", err)
		}
		m2, err := DecodeJSONObject(out)
		if err != nil {
			t.Fatalf("decoding our own output %q: %v", out, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the object:\n%#v\n%#v", m, m2)
		}
		out2, err := m2.MarshalJSON()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("MarshalJSON not stable: %q vs %q (%v)", out, out2, err)
		}
		// Same content as encoding/json reads (it also keeps the last duplicate).
		var std any
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&std); err != nil {
			t.Fatalf("encoding/json rejects %q: %v", data, err)
		}
		if got := toStd(m); !reflect.DeepEqual(got, std) {
			t.Fatalf("content differs from encoding/json:\n%#v\n%#v", got, std)
		}
		_ = SignedString(m, "t") // must not panic
	})
}

// toStd converts decoded values to encoding/json's model, last duplicate winning.
func toStd(v any) any {
	switch v := v.(type) {
	case Map:
		out := make(map[string]any, len(v))
		for _, p := range v {
			out[p.Key] = toStd(p.Value)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = toStd(e)
		}
		return out
	default:
		return v
	}
}
