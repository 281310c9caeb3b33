package shop

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

func noUser(*http.Request) (string, bool) { return "", false }

func testOptions(t *testing.T, env map[string]string) Options {
	return Options{
		Name: "test", Addr: "127.0.0.1:0", DataDir: t.TempDir(), FakeAddr: DefaultFakeAddr,
		Getenv: func(k string) string { return env[k] }, Stdout: io.Discard, Stderr: io.Discard,
	}
}

// Open refuses what cannot work, saying which variable is wrong, and
// leaves nothing running.
func TestOpenRefuses(t *testing.T) {
	fake := mlmsofttest.NewServer(mlmsofttest.Options{})
	t.Cleanup(fake.Close)
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"bad database URL", map[string]string{EnvDatabaseURL: "nonsense"}, EnvDatabaseURL},
		{"bad password key", map[string]string{EnvPasswordKey: "c2hvcnQ="}, EnvPasswordKey},
		{"no token", map[string]string{EnvMLMSoftURL: fake.URL}, EnvToken},
		{"no default sponsor", map[string]string{EnvMLMSoftURL: fake.URL, EnvToken: mlmsofttest.DefaultToken}, EnvDefaultSponsor},
		{"bad default sponsor", map[string]string{EnvMLMSoftURL: fake.URL, EnvToken: mlmsofttest.DefaultToken, EnvDefaultSponsor: "x"}, EnvDefaultSponsor},
		{"wrong token", map[string]string{EnvMLMSoftURL: fake.URL, EnvToken: "wrong", EnvDefaultSponsor: "700001"}, "refuses the configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(t, tc.env)
			a, err := Open(context.Background(), opts, noUser)
			if err == nil {
				a.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s", err, tc.want)
			}
			// Everything was released: the data directory opens again.
			a, err = Open(context.Background(), testOptions(t, nil), noUser)
			if err != nil {
				t.Fatalf("Open after a failed Open: %v", err)
			}
			a.Close()
		})
	}
}

// A real MLM Soft (here a fake in its place) is used through the
// environment, with the webhook on only when its secret is given; and two
// shops never share a data directory.
func TestOpenRealMLMSoft(t *testing.T) {
	fake := mlmsofttest.NewServer(mlmsofttest.Options{})
	t.Cleanup(fake.Close)
	root := fake.AddAccount("root@example.com", "pw", 0)
	opts := testOptions(t, map[string]string{
		EnvMLMSoftURL: fake.URL, EnvToken: mlmsofttest.DefaultToken, EnvDefaultSponsor: strconv.FormatInt(root.AccountID, 10),
		EnvPasswordKey: strings.Repeat("ab", 32),
	})
	a, err := Open(context.Background(), opts, noUser)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Fake != nil || a.FakeViewsURL != "" {
		t.Error("a fake was started although MLMSOFT_URL is set")
	}
	if !strings.Contains(a.webhook, "off") || !strings.Contains(a.mlmsoft, "default sponsor account "+strconv.FormatInt(root.AccountID, 10)) {
		t.Errorf("banner: webhook %q, MLM Soft %q", a.webhook, a.mlmsoft)
	}
	if _, err := Open(context.Background(), opts, noUser); err == nil || !strings.Contains(err.Error(), "another shop") {
		t.Errorf("a second shop on the same data directory: %v", err)
	}
}

func TestParseKey(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	for _, s := range []string{
		"3031323334353637383961626364656630313233343536373839616263646566",
		"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
		"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY",
		" MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n",
	} {
		if got, err := parseKey(s); err != nil || string(got) != string(key) {
			t.Errorf("parseKey(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "abcd", strings.Repeat("zz", 32), "MDEy"} {
		if _, err := parseKey(s); err == nil {
			t.Errorf("parseKey(%q) accepted", s)
		}
	}
}

func TestIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewID("o-")
		if !ValidID("o-", id) || seen[id] {
			t.Fatalf("NewID gave %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
	for _, s := range []string{"", "o-", "u-abcdefghijklmnop", "o-ABCDEFGHIJKLMNOP", "o-abcdefghijklmno1", "o-abcdefghijklmnopq"} {
		if ValidID("o-", s) {
			t.Errorf("ValidID accepted %q", s)
		}
	}
}

// Every answer of the check-auth handler becomes words for the customer.
func TestLinkAnswer(t *testing.T) {
	h := http.Header{"Retry-After": {"600"}}
	for _, tc := range []struct {
		status int
		body   string
		linked bool
		want   string
	}{
		{200, `{"linked":true,"accountId":700002,"userId":100002}`, true, "account 700002"},
		{401, `{"code":"bad_credentials","error":"wrong login or password"}`, false, "did not accept"},
		{401, `{"code":"not_signed_in"}`, false, "Sign in"},
		{409, `{"code":"already_linked"}`, false, "another MLM Soft account"},
		{409, `{"code":"login_taken"}`, false, "another shop account"},
		{429, `{"code":"rate_limited"}`, false, "10m0s"},
		{503, `{"code":"integration_down"}`, false, "not checked"},
		{503, `{"code":"upstream_unavailable"}`, false, "could not be reached"},
		{502, `{"code":"upstream_error"}`, false, "could not be reached"},
		{400, `{"code":"bad_request","error":"the login must be the email address of your MLM Soft account"}`, false, "email address"},
		{500, `not json`, false, "HTTP 500"},
	} {
		linked, msg := LinkAnswer(tc.status, h, []byte(tc.body))
		if linked != tc.linked || !strings.Contains(msg, tc.want) {
			t.Errorf("LinkAnswer(%d, %s) = %v %q, want %v and %q", tc.status, tc.body, linked, msg, tc.linked, tc.want)
		}
	}
}

// The shop's own operations, directly: a sign-up is refused as a whole
// when the plugin refuses it, and a purchase needs a link.
func TestOperations(t *testing.T) {
	a, err := Open(context.Background(), testOptions(t, nil), noUser)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	// The sponsor signed up as an MLM Soft member and has not linked: they
	// cannot sponsor anyone in MLM Soft yet.
	sponsor, err := a.SignUp(ctx, SignUpForm{Email: "Sam@Example.com", Password: "sam-password", Name: "Sam", HaveAccount: true})
	if err != nil {
		t.Fatal(err)
	}
	if sponsor.Email != "sam@example.com" {
		t.Errorf("e-mail kept as %q, want it normalised", sponsor.Email)
	}
	_, err = a.SignUp(ctx, SignUpForm{Email: "kim@example.com", Password: "kim-password", Name: "Kim", Ref: sponsor.ID})
	if fe, ok := errors.AsType[*FormError](err); !ok || !strings.Contains(fe.Msg, "has not linked") {
		t.Errorf("sign-up under an unlinked sponsor: %v", err)
	}
	if _, err := a.DB.UserByEmail(ctx, "kim@example.com"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the refused sign-up left a user: %v", err)
	}
	if _, err := a.SignUp(ctx, SignUpForm{Email: "SAM@example.com", Password: "other-password", Name: "Sam 2"}); err == nil {
		t.Error("a second user with the same e-mail was signed up")
	}
	if _, _, err := a.Buy(ctx, sponsor.ID, "starter-kit", NewID("o-")); err == nil || !strings.Contains(err.Error(), "Link your MLM Soft account first") {
		t.Errorf("buying without a link: %v", err)
	}
	if _, err := a.SignIn(ctx, "sam@example.com", "wrong-password"); err == nil {
		t.Error("signed in with a wrong password")
	}
	if u, err := a.SignIn(ctx, " SAM@example.com ", "sam-password"); err != nil || u.ID != sponsor.ID {
		t.Errorf("sign-in: %v, %v", u, err)
	}
	if _, err := a.Plugin.Link(ctx, sponsor.ID); !errors.Is(err, mlmsoft.ErrNotFound) {
		t.Errorf("a member who will link their own account was registered with the plugin: %v", err)
	}
}
