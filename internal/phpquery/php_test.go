package phpquery

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// phpOracle reads one JSON case per line and answers one JSON line each,
// computed by PHP itself.
const phpOracle = `<?php
echo json_encode(['version' => PHP_VERSION]), "\n";
$in = fopen($argv[1], 'r');
while (($line = fgets($in)) !== false) {
    $c = json_decode($line, true);
    $out = [];
    switch ($c['kind']) {
    case 'post': // what the server does with a JSON body
        $a = json_decode($c['body'], true);
        if (!is_array($a)) {
            $out = ['err' => json_last_error_msg()];
            break;
        }
        ksort($a);
        $s = http_build_query($a) . $c['token'];
        $out = ['signed' => $s, 'key' => md5($s)];
        break;
    case 'get': // what the server does with a query string
        parse_str($c['query'], $a);
        ksort($a);
        $s = http_build_query($a) . $c['token'];
        $out = ['signed' => $s, 'key' => md5($s)];
        break;
    case 'float':
        $f = unpack('E', hex2bin($c['bits']))[1];
        $out = ['string' => (string)$f, 'query' => http_build_query(['x' => $f])];
        break;
    case 'decode':
        $out = ['ok' => is_array(json_decode($c['body'], true))];
        break;
    }
    echo json_encode($out, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE), "\n";
}
`

type phpCase struct {
	Kind  string `json:"kind"`
	Body  string `json:"body,omitempty"`
	Query string `json:"query,omitempty"`
	Token string `json:"token,omitempty"`
	Bits  string `json:"bits,omitempty"`
}

type phpAnswer struct {
	Signed string `json:"signed"`
	Key    string `json:"key"`
	Err    string `json:"err"`
	String string `json:"string"`
	Query  string `json:"query"`
	OK     bool   `json:"ok"`
}

// runPHP answers all cases with one php process. It skips the test when
// php is not installed or is not PHP 8.2, the server's version.
func runPHP(t *testing.T, cases []phpCase) []phpAnswer {
	t.Helper()
	php, err := exec.LookPath("php")
	if err != nil {
		t.Skip("php (php-cli 8.2) is not on PATH: skipping the differential test against PHP")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "oracle.php")
	input := filepath.Join(dir, "cases.jsonl")
	if err := os.WriteFile(script, []byte(phpOracle), 0o600); err != nil {
		t.Fatal(err)
	}
	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	for _, c := range cases {
		if err := enc.Encode(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(input, in.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	// -n: no php.ini, so only the built-in defaults the server is assumed to run with.
	cmd := exec.Command(php, "-n", "-d", "precision=14", "-d", "display_errors=stderr", script, input)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("php: %v\n%s", err, stderr.Bytes())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20)
	var header struct{ Version string }
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &header) != nil {
		t.Fatalf("php printed no version line:\n%s\n%s", out, stderr.Bytes())
	}
	if !strings.HasPrefix(header.Version, "8.2.") {
		t.Skipf("php is %s; this differential test targets PHP 8.2, the server's version", header.Version)
	}
	t.Logf("PHP %s answered %d cases", header.Version, len(cases))
	answers := make([]phpAnswer, 0, len(cases))
	for sc.Scan() {
		var a phpAnswer
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("php answer %q: %v", sc.Bytes(), err)
		}
		answers = append(answers, a)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(answers) != len(cases) {
		t.Fatalf("php answered %d of %d cases; stderr:\n%s", len(answers), len(cases), stderr.Bytes())
	}
	return answers
}

// testSeed is the fixed seed of the random cases; PHPQUERY_SEED overrides it.
func testSeed(t *testing.T) uint64 {
	seed := uint64(20260611)
	if s := os.Getenv("PHPQUERY_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("PHPQUERY_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("random seed %d (set PHPQUERY_SEED to change)", seed)
	return seed
}

// gen makes random PHP-shaped values.
type gen struct{ r *rand.Rand }

// trickyKeys look numeric to PHP in all the ways ksort cares about.
var trickyKeys = []string{
	"0", "1", "9", "10", "-5", "-0", "01", "+3", "1.5", "1.", ".5", " 1", "1 ", "\t2", "2\n", "1e1", "1e3", "1E+2",
	"1e", "1e+", "0x1A", "9a", "1f", "INF", "NAN", "9223372036854775807", "9223372036854775808",
	"-9223372036854775808", "-9223372036854775809", "-9223372036854775808 ", "12345678901234567890",
	"123456789012345678901", "12345678901234567890.5", "1e999", "-1e999", "", " ", "a", "B", "_", "a b",
	"~", "ë", "ключ", "😀", "\x00k",
}

var valueRunes = []rune("abcXYZ019 ~*'()!+&=?/.-_%#[]\"\\,;:@$^`{}|<>ëя€😀\n\t\x00\x01\x7f")

func (g *gen) str(maxLen int, alphabet []rune) string {
	n := g.r.IntN(maxLen + 1)
	var b strings.Builder
	for range n {
		b.WriteRune(alphabet[g.r.IntN(len(alphabet))])
	}
	return b.String()
}

func (g *gen) key() string {
	if g.r.IntN(2) == 0 {
		return trickyKeys[g.r.IntN(len(trickyKeys))]
	}
	return g.str(8, valueRunes)
}

var sampleFloats = []float64{
	0.1, 0.1 + 0.2, 1e14, 1e15, 1e-5, 0.0001, 150, math.Copysign(0, -1), 0, 12.5, -12.5, 1e21, 1e20, 1e-7, 5e-324,
	math.MaxFloat64, 100000000000005, 100000000000015, 100000000000905, 100000000000095, 999999999999995,
	123456789012345, 99999999999999.5, 9007199254740993, 1.0 / 3,
}

var sampleNumbers = []string{
	"-12.50", "0.1", "1e-7", "123456789012345678901", "-0", "-0.0", "0", "1E+2", "9223372036854775807",
	"9223372036854775808", "-9223372036854775808", "-9223372036854775809", "1e999", "-1e999", "1e-999",
	"100000000000005", "100000000000005.0", "0.00001", "1.5e14", "123456789012345.5", "150.0", "0.30000000000000004",
}

func (g *gen) float() float64 {
	switch g.r.IntN(4) {
	case 0:
		return sampleFloats[g.r.IntN(len(sampleFloats))]
	case 1: // a 15-digit integer, where PHP's dtoa keeps trailing zeros
		f := float64(1e14 + g.r.Int64N(9e14))
		if g.r.IntN(2) == 0 {
			f = math.Floor(f/10)*10 + 5
		}
		return f
	case 2:
		return (g.r.Float64() - 0.5) * math.Pow(10, float64(g.r.IntN(40)-20))
	default:
		for {
			if f := math.Float64frombits(g.r.Uint64()); !math.IsNaN(f) && !math.IsInf(f, 0) {
				return f
			}
		}
	}
}

func (g *gen) number() json.Number {
	if g.r.IntN(2) == 0 {
		return json.Number(sampleNumbers[g.r.IntN(len(sampleNumbers))])
	}
	var b strings.Builder
	if g.r.IntN(2) == 0 {
		b.WriteByte('-')
	}
	b.WriteString(strconv.FormatUint(g.r.Uint64()>>g.r.IntN(64), 10))
	if g.r.IntN(2) == 0 {
		b.WriteString("." + strconv.Itoa(g.r.IntN(100000)))
	}
	if g.r.IntN(3) == 0 {
		b.WriteString("e" + []string{"", "+", "-"}[g.r.IntN(3)] + strconv.Itoa(g.r.IntN(30)))
	}
	return json.Number(b.String())
}

func (g *gen) scalar() any {
	switch g.r.IntN(9) {
	case 0, 1:
		return g.str(12, valueRunes)
	case 2:
		return g.r.IntN(2001) - 1000
	case 3:
		return int64(g.r.Uint64())
	case 4:
		return g.float()
	case 5:
		return g.number()
	case 6:
		return g.r.IntN(2) == 0
	case 7:
		return nil
	default:
		return trickyKeys[g.r.IntN(len(trickyKeys))]
	}
}

func (g *gen) value(depth int) any {
	if depth < 3 {
		switch g.r.IntN(8) {
		case 0:
			return g.mapOf(g.r.IntN(6), depth+1)
		case 1:
			list := make([]any, g.r.IntN(5))
			for i := range list {
				list[i] = g.value(depth + 1)
			}
			return list
		}
	}
	return g.scalar()
}

func (g *gen) mapOf(n, depth int) Map {
	m := make(Map, 0, n)
	for range n {
		k := g.key()
		if len(m) > 0 && g.r.IntN(12) == 0 { // a duplicate key
			k = m[g.r.IntN(len(m))].Key
		}
		m = append(m, Pair{k, g.value(depth)})
	}
	return m
}

// getSafeRunes avoid what parse_str mangles in a top-level name.
var getSafeRunes = []rune("abcXYZ0159-~*'()!+&=?/%#]\"\\,;:@$^`{}|<>ëя€😀")

func (g *gen) token() string { return g.str(20, []rune("abcdef0123456789-_")) }

func TestPHPDifferentialPOST(t *testing.T) {
	t.Parallel()
	g := gen{rand.New(rand.NewPCG(testSeed(t), 1))}
	n := 300
	if testing.Short() {
		n = 100
	}
	var maps []Map
	for i := range n {
		size := g.r.IntN(10)
		if i%5 == 0 { // big enough for zend_sort's quicksort path
			size = 17 + g.r.IntN(40)
		}
		maps = append(maps, g.mapOf(size, 0))
	}
	// Many numeric-looking keys at once: PHP's key comparison is not
	// transitive here, so only an exact zend_sort port agrees.
	for range n / 5 {
		m := Map{}
		for range 5 + g.r.IntN(60) {
			m = append(m, Pair{trickyKeys[g.r.IntN(len(trickyKeys))] + []string{"", "", "x", "0", " "}[g.r.IntN(5)], g.r.IntN(10)})
		}
		maps = append(maps, m)
	}

	cases := make([]phpCase, len(maps))
	for i, m := range maps {
		body, err := m.MarshalJSON()
		if err != nil {
			t.Fatalf("case %d: MarshalJSON: %v", i, err)
		}
		cases[i] = phpCase{Kind: "post", Body: string(body), Token: g.token()}
	}
	answers := runPHP(t, cases)
	failures := 0
	for i, m := range maps {
		c, a := cases[i], answers[i]
		ours := SignedString(m, c.Token)
		decoded, err := DecodeJSONObject([]byte(c.Body))
		if err != nil {
			t.Fatalf("case %d: DecodeJSONObject(our body): %v", i, err)
		}
		fake := SignedString(decoded, c.Token)
		if a.Err != "" || ours != a.Signed || SecurityKey(m, c.Token) != a.Key || fake != a.Signed {
			failures++
			t.Errorf("case %d mismatch\nbody: %s\nPHP error: %s\nours:  %q\nfrom decoded body: %q\nPHP:   %q",
				i, c.Body, a.Err, strings.TrimSuffix(ours, c.Token), strings.TrimSuffix(fake, c.Token), strings.TrimSuffix(a.Signed, c.Token))
		}
		if failures > 10 {
			t.Fatal("too many mismatches")
		}
	}
}

func TestPHPDifferentialGET(t *testing.T) {
	t.Parallel()
	g := gen{rand.New(rand.NewPCG(testSeed(t), 2))}
	n := 200
	if testing.Short() {
		n = 60
	}
	// Flat maps as a GET sends them: names parse_str keeps as they are.
	var maps []Map
	for range n {
		m := Map{}
		for range g.r.IntN(12) {
			k := g.str(6, getSafeRunes)
			switch {
			case k == "" || g.r.IntN(3) == 0:
				k = strings.Trim(trickyKeys[g.r.IntN(len(trickyKeys))], " \x00")
				if strings.ContainsAny(k, " .[") || k == "" {
					k = "k"
				}
			case len(m) > 0 && g.r.IntN(10) == 0:
				k = m[g.r.IntN(len(m))].Key
			}
			var v any
			switch g.r.IntN(5) {
			case 0:
				v = g.r.IntN(2000) - 1000
			case 1:
				v = g.r.IntN(2) == 0
			case 2:
				if g.r.IntN(3) == 0 {
					v = nil
					break
				}
				fallthrough
			default:
				v = g.str(10, valueRunes)
			}
			m = append(m, Pair{k, v})
		}
		maps = append(maps, m)
	}
	// Raw query strings exercising parse_str's own rules.
	names := []string{"a", "b", "a.b", " c", "x y", "__Host-x", "_.Host-z", "_.Secure-", "1", "01", "-1", "9223372036854775807", "", "%20d", "e%00f", "+g", "h%2E"}
	suffixes := []string{"", "", "[]", "[x]", "[ ]", "[\t]", "[1]", "[-3]", "[x", "]", "[a][b]", "[][]", "[x]junk", "[[", "%5B%5D", "[a.b c]", "[9223372036854775807]", "[]x", "[b[c]"}
	var queries []string
	for range n {
		var parts []string
		for range g.r.IntN(10) {
			p := names[g.r.IntN(len(names))] + suffixes[g.r.IntN(len(suffixes))]
			if g.r.IntN(4) != 0 {
				p += "=" + []string{"1", "", "%zz", "%4", "a+b", "%2B", "x=y", "%00", "%C3%AB", "ë"}[g.r.IntN(10)]
			}
			parts = append(parts, p)
		}
		queries = append(queries, strings.Join(parts, []string{"&", "&", "&&"}[g.r.IntN(3)]))
	}

	var cases []phpCase
	for _, m := range maps {
		cases = append(cases, phpCase{Kind: "get", Query: BuildQuery(m), Token: g.token()})
	}
	for _, q := range queries {
		cases = append(cases, phpCase{Kind: "get", Query: q, Token: g.token()})
	}
	answers := runPHP(t, cases)
	failures := 0
	for i, c := range cases {
		a := answers[i]
		parsed, err := ParseQuery(c.Query)
		if err != nil {
			t.Fatalf("case %d: ParseQuery(%q): %v", i, c.Query, err)
		}
		fake := SignedString(parsed, c.Token)
		ok := fake == a.Signed && SecurityKey(parsed, c.Token) == a.Key
		detail := ""
		if i < len(maps) {
			detail = fmt.Sprintf("\nmap:  %#v", maps[i])
			// Nulls never reach $_GET, yet they take part in ksort (whose
			// comparison is not transitive), so SignedString(map) is exact
			// for a GET only without them; ParseQuery is exact always.
			if !hasNil(maps[i]) {
				ours := SignedString(maps[i], c.Token)
				ok = ok && ours == a.Signed
				detail += fmt.Sprintf("\nours (SignedString(map)): %q", strings.TrimSuffix(ours, c.Token))
			}
		}
		if !ok {
			failures++
			t.Errorf("case %d mismatch\nquery: %q%s\nours (ParseQuery): %q\nPHP:  %q",
				i, c.Query, detail, strings.TrimSuffix(fake, c.Token), strings.TrimSuffix(a.Signed, c.Token))
		}
		if failures > 10 {
			t.Fatal("too many mismatches")
		}
	}
}

func TestPHPDifferentialFloatsAndDecoding(t *testing.T) {
	t.Parallel()
	g := gen{rand.New(rand.NewPCG(testSeed(t), 3))}
	floats := make([]float64, 0, len(formatFloatTable)+400)
	for _, tt := range formatFloatTable {
		floats = append(floats, tt.f)
	}
	for range 400 {
		floats = append(floats, g.float())
	}
	var cases []phpCase
	for _, f := range floats {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], math.Float64bits(f))
		cases = append(cases, phpCase{Kind: "float", Bits: hex.EncodeToString(b[:])})
	}
	decodeInputs := append([]string{`{}`, `{"\u0000":1}`, `{"a":"\ud83d\ude00"}`,
		strings.Repeat(`{"a":`, maxDepth-1) + "[1]" + strings.Repeat("}", maxDepth-1)}, invalidJSONObjects...)
	for _, s := range decodeInputs {
		cases = append(cases, phpCase{Kind: "decode", Body: s})
	}
	answers := runPHP(t, cases)
	for i, f := range floats {
		a := answers[i]
		if got := FormatFloat(f); got != a.String || "x="+urlencode(got) != a.Query {
			t.Errorf("FormatFloat(%v) (bits %s) = %q; PHP says %q (query %q)", f, cases[i].Bits, got, a.String, a.Query)
		}
	}
	for i, tt := range formatFloatTable {
		if tt.want != answers[i].String {
			t.Errorf("table entry %v wants %q but PHP prints %q", tt.f, tt.want, answers[i].String)
		}
	}
	for j, s := range decodeInputs {
		if !utf8ValidForTransport(s) {
			continue // json.Marshal would have replaced the invalid bytes on the way to PHP
		}
		_, err := DecodeJSONObject([]byte(s))
		if php := answers[len(floats)+j].OK; php != (err == nil) {
			t.Errorf("DecodeJSONObject(%q) error = %v, but PHP json_decode accepts it: %v", s, err, php)
		}
	}
}

func hasNil(m Map) bool {
	for _, p := range m {
		if p.Value == nil {
			return true
		}
	}
	return false
}

func utf8ValidForTransport(s string) bool {
	b, err := json.Marshal(s)
	if err != nil {
		return false
	}
	var back string
	return json.Unmarshal(b, &back) == nil && back == s
}
