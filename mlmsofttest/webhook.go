package mlmsofttest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/whsig"
)

// Webhook delivery: attempts per user, and the first pause between them
// (doubled after each failure).
const (
	webhookAttempts = 5
	webhookBackoff  = 50 * time.Millisecond
)

// sendWebhooks starts the background deliveries of jobs. Nothing is sent
// without a webhook URL (Options.WebhookURL, SetWebhook) or after Close.
func (s *Server) sendWebhooks(jobs []webhookJob) {
	if len(jobs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.webhookURL == "" {
		return
	}
	for _, j := range jobs {
		s.bg.Add(1)
		go s.deliver(j)
	}
}

func (s *Server) deliver(j webhookJob) {
	defer s.bg.Done()
	var v any = map[string]any{"email": j.email, "userId": j.userID, "accountId": j.accountID}
	if s.opts.WebhookBody != nil {
		v = s.opts.WebhookBody(j.email, j.userID, j.accountID)
	}
	body, err := json.Marshal(v)
	if err != nil {
		s.logf("webhook for user %d: encode body: %v", j.userID, err)
		return
	}
	pause := webhookBackoff
	for attempt := 1; ; attempt++ {
		target, secret := s.webhookTarget()
		if target == "" { // SetWebhook turned webhooks off
			return
		}
		status, err := s.postWebhook(target, secret, body)
		if err == nil && status >= 200 && status < 300 {
			return
		}
		if s.ctx.Err() != nil {
			return
		}
		if err != nil {
			if ue, ok := errors.AsType[*url.Error](err); ok {
				err = ue.Err // the URL may hold a secret path token: not logged
			}
			s.logf("webhook for user %d: attempt %d: %v", j.userID, attempt, err)
		} else {
			s.logf("webhook for user %d: attempt %d: HTTP %d", j.userID, attempt, status)
		}
		if attempt == webhookAttempts {
			return
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
		pause *= 2
	}
}

func (s *Server) postWebhook(target string, secret, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, errors.New("invalid webhook URL") // the error would quote it
	}
	req.Header.Set("Content-Type", "application/json")
	if len(secret) > 0 {
		ts := s.clock.Now().Unix()
		req.Header.Set(whsig.TimestampHeader, strconv.FormatInt(ts, 10))
		req.Header.Set(whsig.SignatureHeader, whsig.Sign(secret, ts, body))
	}
	resp, err := s.whClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}
