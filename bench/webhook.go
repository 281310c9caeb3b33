package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/nethttpadapter"
)

const webhookSecret = "bench-webhook-secret-0123456789"

// webhook measures the webhook route against a bare handler on the same
// server, both over loopback HTTP with the same signed bodies.
func webhook(ctx context.Context, b *bench) (*table, error) {
	c := b.cfg
	f, err := newFake()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	const users = 100
	accounts := f.accounts(users)
	p, release, err := b.env.linkedPlugin(ctx, stMem, f.URL, accounts, c.concurrency, true)
	if err != nil {
		return nil, err
	}
	defer release()
	mux := http.NewServeMux()
	nethttpadapter.Mount(mux, p, "/mlmsoft")
	mux.HandleFunc("POST /bare", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	client := minimalClient(c.callers)

	post := func(path string, i int) error {
		u := i % users
		body := fmt.Appendf(nil, `{"email":%q,"userId":%d,"accountId":%d,"nonce":%d}`, userEmail(u), accounts[u]-600000, accounts[u], i)
		ts := time.Now().Unix()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(mlmsoft.WebhookTimestampHeaderDefault, strconv.FormatInt(ts, 10))
		req.Header.Set(mlmsoft.WebhookSignatureHeaderDefault, mlmsoft.WebhookSignature([]byte(webhookSecret), ts, body))
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("POST %s: HTTP %d", path, resp.StatusCode)
		}
		return nil
	}
	variants := []string{"/mlmsoft/webhook", "/bare"}
	rates := map[string][]float64{}
	lat := map[string]*pcts{}
	seq := 0
	for r := range c.rounds {
		for _, v := range variants {
			start := time.Now()
			base := seq
			var ds []time.Duration
			err := b.profiled("webhook"+v, func() error {
				var err error
				ds, err = sample(c.callers, c.webhookReqs, func(g, i int) error { return post(v, base+g*c.webhookReqs+i) })
				return err
			})
			if err != nil {
				return nil, err
			}
			seq += c.callers * c.webhookReqs
			rate := float64(c.webhookReqs) / time.Since(start).Seconds()
			rates[v] = append(rates[v], rate)
			if lat[v] == nil {
				lat[v] = &pcts{}
			}
			lat[v].add(ds)
			logf("   round %d %-18s %s, p50 %s p99 %s", r+1, v, fmtRate(rate), fmtDur(pct(ds, 50)), fmtDur(pct(ds, 99)))
		}
	}
	t := &table{key: "webhook", title: "6. The webhook route", columns: [2]string{"median", "bare handler (200), median"}}
	t.method = fmt.Sprintf("%d POSTs per round from %d concurrent clients over loopback HTTP (one http.Client, keep-alive), %d "+
		"interleaved rounds. Webhook: plugin.WebhookHandler mounted by nethttpadapter.Mount on a ServeMux, HMAC-signed JSON body "+
		"(a fresh nonce per request, so the replay cache never answers), for one of %d users already linked with the same ids "+
		"(memstore): authenticate, read, parse, look the link up, answer 200. Bare: a handler on the same mux that reads the body "+
		"and answers 200, sent the same body and headers.", c.webhookReqs, c.callers, c.rounds, users)
	w, bare := variants[0], variants[1]
	t.add(row{what: "webhook, requests/s", value: fmtRate(median(rates[w])), ref: fmtRate(median(rates[bare])), ratio: median(rates[w]) / median(rates[bare])})
	t.add(row{what: "webhook, latency", value: lat[w].String(), ref: lat[bare].String(),
		ratio: float64(medianDur(lat[w].p50)) / float64(medianDur(lat[bare].p50))})
	t.extra = append(t.extra, "The latency ratio is of the p50s.")
	return t, nil
}
