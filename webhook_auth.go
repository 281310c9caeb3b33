package mlmsoft

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/whsig"
)

// webhookAuth verifies webhook requests. It holds no state beyond its
// configuration.
type webhookAuth struct {
	secrets           [][]byte
	tokens            [][sha256.Size]byte // hashed: equal lengths for constant-time compares
	tsHeader, sigHead string
	window            time.Duration
}

func newWebhookAuth(cfg WebhookConfig) webhookAuth {
	a := webhookAuth{tsHeader: cfg.TimestampHeader, sigHead: cfg.SignatureHeader, window: cfg.ReplayWindow}
	for _, s := range cfg.Secrets {
		a.secrets = append(a.secrets, []byte(s))
	}
	for _, t := range cfg.PathTokens {
		a.tokens = append(a.tokens, sha256.Sum256([]byte(t)))
	}
	return a
}

var errWebhookToken = errors.New("webhook path token missing or wrong")

// checkToken verifies the path token, if tokens are configured. Every
// configured token is compared, in constant time.
func (a *webhookAuth) checkToken(token string) error {
	if len(a.tokens) == 0 {
		return nil
	}
	got := sha256.Sum256([]byte(token))
	ok := 0
	for _, t := range a.tokens {
		ok |= subtle.ConstantTimeCompare(t[:], got[:])
	}
	if ok != 1 || token == "" {
		return errWebhookToken
	}
	return nil
}

// checkSignature verifies the HMAC signature of body, if secrets are
// configured. It returns a whsig error.
func (a *webhookAuth) checkSignature(h http.Header, body []byte, now time.Time) error {
	if len(a.secrets) == 0 {
		return nil
	}
	return whsig.Verify(a.secrets, h.Get(a.tsHeader), h.Get(a.sigHead), body, now, a.window)
}
