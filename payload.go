package mlmsoft

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file parses the bodies the handlers receive: webhook and check-auth
// payloads, as strict JSON objects or URL-encoded forms.

// errUnsupportedMedia is wrapped by parse errors for a content type that is
// neither JSON nor a form.
var errUnsupportedMedia = errors.New("unsupported content type: send application/json or application/x-www-form-urlencoded")

// parseWebhook reads a verified webhook body strictly: a JSON object (no
// duplicate keys, no trailing data) or a URL-encoded form; a valid email;
// at least one id, each a positive integer (a JSON integer or a string of
// digits); fields named differently must agree.
func parseWebhook(contentType string, body []byte, cfg WebhookConfig) (webhookEvent, error) {
	pl, err := parsePayload(contentType, body)
	if err != nil {
		return webhookEvent{}, err
	}
	var ev webhookEvent
	emails := pl.lookup(cfg.EmailFields)
	if len(emails) == 0 {
		return webhookEvent{}, errors.New("no email field")
	}
	for _, v := range emails {
		s, ok := v.(string)
		if !ok {
			return webhookEvent{}, errors.New("the email is not a string")
		}
		e, err := NormalizeEmail(s)
		if err != nil {
			return webhookEvent{}, errors.New("the email is not a valid address")
		}
		if ev.Email != "" && ev.Email != e {
			return webhookEvent{}, errors.New("email fields disagree")
		}
		ev.Email = e
	}
	if ev.UserID, err = oneID(pl.lookup(cfg.UserIDFields), "user id"); err != nil {
		return webhookEvent{}, err
	}
	if ev.AccountID, err = oneID(pl.lookup(cfg.AccountIDFields), "account id"); err != nil {
		return webhookEvent{}, err
	}
	if ev.UserID == 0 && ev.AccountID == 0 {
		return webhookEvent{}, errors.New("no user id or account id field")
	}
	return ev, nil
}

// oneID reads the values found for an id: all must be the same positive
// integer. None found: 0.
func oneID(vals []any, what string) (int64, error) {
	var id int64
	for _, v := range vals {
		var s string
		switch v := v.(type) {
		case json.Number:
			s = string(v)
		case string:
			s = strings.TrimSpace(v)
		default:
			return 0, fmt.Errorf("the %s is not a number", what)
		}
		n, ok := parsePositiveID(s)
		if !ok {
			return 0, fmt.Errorf("the %s is not a positive integer", what)
		}
		if id != 0 && id != n {
			return 0, fmt.Errorf("%s fields disagree", what)
		}
		id = n
	}
	return id, nil
}

func parsePositiveID(s string) (int64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n > 0
}

// payload is a parsed request body: a JSON object or a form.
type payload struct {
	obj  map[string]any // JSON: string, json.Number, bool, nil, []any, map[string]any
	form url.Values
}

// parsePayload parses body according to contentType; an empty content type
// is sniffed (a body starting with '{' is JSON, anything else a form).
func parsePayload(contentType string, body []byte) (payload, error) {
	isJSON := false
	if strings.TrimSpace(contentType) == "" {
		isJSON = bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("{"))
	} else {
		mt, _, err := mime.ParseMediaType(contentType)
		switch {
		case err != nil:
			return payload{}, fmt.Errorf("%w (the Content-Type is malformed)", errUnsupportedMedia)
		case mt == "application/json" || strings.HasSuffix(mt, "+json"):
			isJSON = true
		case mt == "application/x-www-form-urlencoded":
		default:
			return payload{}, errUnsupportedMedia
		}
	}
	if isJSON {
		obj, err := decodeJSONObject(body)
		if err != nil {
			return payload{}, fmt.Errorf("malformed JSON: %w", err)
		}
		return payload{obj: obj}, nil
	}
	if !utf8.Valid(body) {
		return payload{}, errors.New("malformed form: not UTF-8")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return payload{}, errors.New("malformed form")
	}
	return payload{form: form}, nil
}

// lookup returns every non-null value found under any of names.
func (pl payload) lookup(names []string) []any {
	var out []any
	for _, name := range names {
		if pl.form != nil {
			alt := phpStyleKey(name)
			for k, vs := range pl.form {
				if !strings.EqualFold(k, name) && !strings.EqualFold(k, alt) {
					continue
				}
				for _, v := range vs {
					if v != "" {
						out = append(out, v)
					}
				}
			}
			continue
		}
		cur := []any{pl.obj}
		for _, seg := range strings.Split(name, ".") {
			var next []any
			for _, c := range cur {
				m, ok := c.(map[string]any)
				if !ok {
					continue
				}
				for k, v := range m {
					if strings.EqualFold(k, seg) {
						next = append(next, v)
					}
				}
			}
			cur = next
		}
		for _, v := range cur {
			if v != nil {
				out = append(out, v)
			}
		}
	}
	return out
}

// phpStyleKey turns "a.b.c" into "a[b][c]".
func phpStyleKey(name string) string {
	segs := strings.Split(name, ".")
	if len(segs) == 1 {
		return name
	}
	return segs[0] + "[" + strings.Join(segs[1:], "][") + "]"
}

// maxJSONDepth bounds the nesting of webhook and check-auth bodies.
const maxJSONDepth = 16

// decodeJSONObject decodes a JSON object strictly: valid JSON, an object at
// the top, no duplicate keys at any depth, nothing after it.
func decodeJSONObject(body []byte) (map[string]any, error) {
	if !json.Valid(body) {
		return nil, errors.New("invalid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	obj, err := decodeObjectRest(dec, 1)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return obj, nil
}

func decodeObjectRest(dec *json.Decoder, depth int) (map[string]any, error) {
	if depth > maxJSONDepth {
		return nil, errors.New("nested too deeply")
	}
	obj := map[string]any{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("object key is not a string")
		}
		if _, dup := obj[key]; dup {
			return nil, fmt.Errorf("duplicate key %q", truncate(key, 40))
		}
		v, err := decodeValue(dec, depth)
		if err != nil {
			return nil, err
		}
		obj[key] = v
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, err
	}
	return obj, nil
}

func decodeValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	switch d {
	case '{':
		return decodeObjectRest(dec, depth+1)
	case '[':
		if depth+1 > maxJSONDepth {
			return nil, errors.New("nested too deeply")
		}
		var arr []any
		for dec.More() {
			v, err := decodeValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := dec.Token(); err != nil { // ']'
			return nil, err
		}
		return arr, nil
	}
	return nil, fmt.Errorf("unexpected %q", d)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
