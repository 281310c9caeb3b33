package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/api2"
	"github.com/mlmsoft-go/mlmsoft/internal/phpquery"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

// The minimal signed-POST loop signs account/volume-change by hand: PHP's
// http_build_query over the four parameters in ksort order (accountId,
// orderId, pointsAmount, volumePropertyAlias: already sorted), followed by
// the token, md5 in lower-case hex. pointsAmount is printed as PHP prints
// the float json_decode makes of it, which for the short decimals the
// bench sends ("1.5") is the literal itself. checkSigning compares it with
// internal/phpquery and has the fake accept one request signed this way.

// phpURLEncode is PHP's urlencode.
func phpURLEncode(dst []byte, s string) []byte {
	const hexdigits = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
			dst = append(dst, c)
		case c == ' ':
			dst = append(dst, '+')
		default:
			dst = append(dst, '%', hexdigits[c>>4], hexdigits[c&15])
		}
	}
	return dst
}

// minimalKey is the Security-Key of an account/volume-change.
func minimalKey(account int64, amount, orderID, alias, token string) string {
	b := make([]byte, 0, 128)
	b = append(b, "accountId="...)
	b = strconv.AppendInt(b, account, 10)
	b = append(b, "&orderId="...)
	b = phpURLEncode(b, orderID)
	b = append(b, "&pointsAmount="...)
	b = phpURLEncode(b, amount)
	b = append(b, "&volumePropertyAlias="...)
	b = phpURLEncode(b, alias)
	b = append(b, token...)
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

// minimalBody is the JSON body the library sends for the same change.
func minimalBody(account int64, amount, orderID, alias string) []byte {
	o, _ := json.Marshal(orderID)
	a, _ := json.Marshal(alias)
	return fmt.Appendf(nil, `{"accountId":%d,"pointsAmount":%s,"orderId":%s,"volumePropertyAlias":%s}`, account, amount, o, a)
}

// minimalClient is one http.Client for the minimal loop: enough idle
// connections for its goroutines, no Expect.
func minimalClient(workers int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 0
	t.MaxIdleConnsPerHost = workers * 2
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}

// minimalPost sends one account/volume-change with c.
func minimalPost(ctx context.Context, c *http.Client, base string, account int64, amount, orderID, alias string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+volumeEndpoint, bytes.NewReader(minimalBody(account, amount, orderID, alias)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("App-Id", mlmsofttest.DefaultAppID)
	req.Header.Set("Security-Key", minimalKey(account, amount, orderID, alias, mlmsofttest.DefaultToken))
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("minimal POST: HTTP %d", resp.StatusCode)
	}
	return err
}

// checkSigning checks minimalKey against internal/phpquery on a few
// awkward order ids, and has the fake accept one minimal POST.
func checkSigning(f *fake, account int64) error {
	for _, orderID := range []string{"r1-7", "order 7/ä+%&=", "a.b_c-d~e"} {
		m := phpquery.Map{
			{Key: "accountId", Value: account},
			{Key: "pointsAmount", Value: json.Number("1.5")},
			{Key: "orderId", Value: orderID},
			{Key: "volumePropertyAlias", Value: "PV"},
		}
		want := phpquery.SecurityKey(m, mlmsofttest.DefaultToken)
		if got := minimalKey(account, "1.5", orderID, "PV", mlmsofttest.DefaultToken); got != want {
			return fmt.Errorf("minimal signing of %q: %s, phpquery says %s", orderID, got, want)
		}
	}
	before := f.acked.Load()
	if err := minimalPost(context.Background(), minimalClient(1), f.URL, account, "1.5", "signing check", "PV"); err != nil {
		return fmt.Errorf("the fake refused a minimal POST: %w", err)
	}
	if f.acked.Load() != before+1 {
		return fmt.Errorf("the fake did not count the minimal POST")
	}
	return nil
}

// newAPIClient is the library's own API client configured as the plugin
// configures it (Config defaults: RequestTimeout 30 s, Expect:
// 100-continue with a 1 s wait, MaxIdleConnsPerHost Volumes.Concurrency +
// Linking.Concurrency + 4).
func newAPIClient(base string, expect time.Duration, concurrency int) (*api2.Client, error) {
	return api2.New(api2.Config{
		BaseURL: base, Token: mlmsofttest.DefaultToken, AppID: mlmsofttest.DefaultAppID,
		Timeout: 30 * time.Second, ExpectContinueTimeout: expect,
		MaxIdleConnsPerHost: concurrency + 4 + 4,
	})
}

func apiPost(ctx context.Context, c *api2.Client, account int64, amount, orderID, alias string) error {
	_, err := c.ChangeVolume(ctx, api2.VolumeChange{AccountID: account, Amount: json.Number(amount), OrderID: orderID, Alias: alias})
	return err
}
