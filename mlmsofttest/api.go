package mlmsofttest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/phpquery"
)

// Business refusal messages.
const (
	msgLoginTaken      = "User with this login already exists"
	msgSponsorNotFound = "Sponsor not found"
	msgBadType         = "Unknown user type"
	msgBadCredentials  = "Invalid login or password"
	msgDocNotFound     = "Document not found"
	msgAccountNotFound = "Account not found"
	msgAliasNotFound   = "Volume property not found"
)

type user struct {
	Account
	password string
	title    string
}

// document is a queued request; result is nil until it is processed.
type document struct {
	id             int64
	entity, action string
	due            time.Time
	result         phpquery.Map
	summary        string // what processing did, for the views
	create         *createRequest
	volume         *LedgerEntry
}

type createRequest struct {
	login, password, title string
	sponsor                int64
}

type webhookJob struct {
	email             string
	userID, accountID int64
}

func required(field string) string { return "Field " + field + " is required" }

// str reads a scalar parameter as PHP would see it as a string.
func str(p phpquery.Map, key string) (string, bool) {
	v, ok := p.Get(key)
	if !ok {
		return "", false
	}
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	}
	return "", false
}

// id reads an integer id given as a JSON integer or a numeric string.
func id(p phpquery.Map, key string) (int64, bool) {
	s, ok := str(p, key)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// memberLogin checks the login and type parameters shared by the user
// endpoints.
func memberLogin(p phpquery.Map) (string, string) {
	login, _ := str(p, "login")
	if login == "" {
		return "", required("login")
	}
	typ, _ := str(p, "type")
	if typ == "" {
		return "", required("type")
	}
	if typ != "member" {
		return "", msgBadType
	}
	return login, ""
}

func (s *Server) docID(n int64) any {
	if s.opts.DocumentIDAsString {
		return strconv.FormatInt(n, 10)
	}
	return n
}

func queued(docID any) phpquery.Map {
	return phpquery.Map{{Key: "queueRequest", Value: true}, {Key: "documentId", Value: docID}}
}

func authPayload(u *user) phpquery.Map {
	return phpquery.Map{{Key: "auth", Value: phpquery.Map{
		{Key: "login", Value: u.Login},
		{Key: "user", Value: phpquery.Map{
			{Key: "id", Value: u.UserID},
			{Key: "account", Value: phpquery.Map{{Key: "id", Value: u.AccountID}, {Key: "title", Value: u.title}}},
		}},
	}}}
}

func volumePayload(e *LedgerEntry) phpquery.Map {
	return phpquery.Map{
		{Key: "accountId", Value: e.AccountID},
		{Key: "volumePropertyAlias", Value: e.Alias},
		{Key: "pointsAmount", Value: json.Number(e.Amount)},
		{Key: "orderId", Value: e.OrderID},
	}
}

func (s *Server) userCreate(p phpquery.Map) result {
	login, msg := memberLogin(p)
	if msg != "" {
		return refuse(msg)
	}
	password, _ := str(p, "password")
	if password == "" {
		return refuse(required("password"))
	}
	if _, ok := p.Get("sponsorId"); !ok {
		return refuse(required("sponsorId"))
	}
	sponsor, ok := id(p, "sponsorId")
	if !ok {
		return refuse(msgSponsorNotFound)
	}
	title := login
	if v, ok := p.Get("profile"); ok {
		switch prof := v.(type) {
		case phpquery.Map:
			first, _ := str(prof, "firstname")
			last, _ := str(prof, "lastname")
			if t := strings.TrimSpace(first + " " + last); t != "" {
				title = t
			}
		case []any: // an empty PHP array
			if len(prof) != 0 {
				return refuse("Field profile must be an object")
			}
		case nil:
		default:
			return refuse("Field profile must be an object")
		}
	}

	key := strings.ToLower(login)
	now := s.clock.Now()
	s.mu.Lock()
	if _, ok := s.byAccount[sponsor]; !ok {
		s.mu.Unlock()
		return refuse(msgSponsorNotFound)
	}
	_, exists := s.users[key]
	_, pending := s.pendingLogins[key]
	if exists || (pending && (s.opts.Synchronous || !s.opts.LateDuplicateCheck)) {
		s.mu.Unlock()
		return refuse(msgLoginTaken)
	}
	s.creates[key]++
	req := &createRequest{login: login, password: password, title: title, sponsor: sponsor}
	var (
		res  result
		jobs []webhookJob
	)
	if s.opts.Synchronous {
		u := s.addUserLocked(req.login, req.password, req.sponsor, req.title)
		jobs = append(jobs, webhookJob{u.Login, u.UserID, u.AccountID})
		res = succeed(authPayload(u))
	} else {
		d := s.queueLocked("user", "create", now)
		d.create = req
		if !pending {
			s.pendingLogins[key] = d.id
		}
		res = succeed(queued(s.docID(d.id)))
		jobs = s.processDueLocked(now)
	}
	s.mu.Unlock()
	s.sendWebhooks(jobs)
	return res
}

func (s *Server) documentGet(p phpquery.Map) result {
	n, ok := id(p, "id")
	if !ok {
		return refuse(msgDocNotFound)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.docs[n]
	if !ok {
		return refuse(msgDocNotFound)
	}
	var res any
	if d.result != nil {
		res = d.result
	}
	return succeed(phpquery.Map{{Key: "document", Value: phpquery.Map{
		{Key: "id", Value: s.docID(d.id)},
		{Key: "context", Value: phpquery.Map{{Key: "entity", Value: d.entity}, {Key: "action", Value: d.action}}},
		{Key: "result", Value: res},
	}}})
}

func (s *Server) userExists(p phpquery.Map) result {
	login, msg := memberLogin(p)
	if msg != "" {
		return refuse(msg)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, found := s.users[strings.ToLower(login)]
	if !found {
		return succeed(phpquery.Map{{Key: "exist", Value: false}})
	}
	return succeed(phpquery.Map{
		{Key: "exist", Value: true},
		{Key: "auth", Value: phpquery.Map{{Key: "user", Value: phpquery.Map{
			{Key: "id", Value: u.UserID},
			{Key: "account", Value: phpquery.Map{{Key: "id", Value: u.AccountID}}},
		}}}},
	})
}

func (s *Server) checkAuth(p phpquery.Map) result {
	login, msg := memberLogin(p)
	if msg != "" {
		return refuse(msg)
	}
	password, _ := str(p, "password")
	if password == "" {
		return refuse(required("password"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, found := s.users[strings.ToLower(login)]
	if !found || u.password != password {
		return refuse(msgBadCredentials)
	}
	return succeed(phpquery.Map{{Key: "auth", Value: phpquery.Map{
		{Key: "login", Value: u.Login},
		{Key: "user", Value: phpquery.Map{
			{Key: "id", Value: u.UserID},
			{Key: "account", Value: phpquery.Map{{Key: "id", Value: u.AccountID}, {Key: "title", Value: u.title}}},
			{Key: "profile", Value: []any{}},
		}},
	}}})
}

func (s *Server) volumeChange(p phpquery.Map) result {
	if _, ok := p.Get("accountId"); !ok {
		return refuse(required("accountId"))
	}
	account, ok := id(p, "accountId")
	if !ok {
		return refuse(msgAccountNotFound)
	}
	v, ok := p.Get("pointsAmount")
	if !ok {
		return refuse(required("pointsAmount"))
	}
	amount, ok := v.(json.Number)
	if !ok {
		return refuse("Field pointsAmount must be a number")
	}
	v, _ = p.Get("orderId")
	orderID, ok := v.(string)
	if !ok || orderID == "" {
		return refuse(required("orderId") + " (a string)")
	}
	alias, _ := str(p, "volumePropertyAlias")
	if alias == "" {
		return refuse(required("volumePropertyAlias"))
	}
	if s.opts.Aliases != nil && !slices.Contains(s.opts.Aliases, alias) {
		return refuse(msgAliasNotFound)
	}

	now := s.clock.Now()
	s.mu.Lock()
	if _, ok := s.byAccount[account]; !ok {
		s.mu.Unlock()
		return refuse(msgAccountNotFound)
	}
	s.seq++
	e := &LedgerEntry{Seq: s.seq, AccountID: account, Alias: alias, Amount: amount.String(), OrderID: orderID}
	if !s.opts.QueueVolumeChanges {
		e.At = now
		s.ledger = append(s.ledger, *e)
		s.gen++
		s.mu.Unlock()
		return succeed(volumePayload(e))
	}
	d := s.queueLocked("account", "volume-change", now)
	d.volume = e
	jobs := s.processDueLocked(now) // may process other documents too
	s.mu.Unlock()
	s.sendWebhooks(jobs)
	return succeed(queued(s.docID(d.id)))
}

// queueLocked adds an unprocessed document.
func (s *Server) queueLocked(entity, action string, now time.Time) *document {
	d := &document{id: s.nextDoc, entity: entity, action: action, due: now.Add(s.opts.DocumentDelay)}
	s.nextDoc++
	s.docs[d.id] = d
	s.queue = append(s.queue, d.id)
	s.gen++
	return d
}

func (s *Server) addUserLocked(login, password string, sponsor int64, title string) *user {
	u := &user{
		Account:  Account{Login: login, UserID: s.nextUser, AccountID: s.nextAccount, SponsorAccountID: sponsor},
		password: password,
		title:    title,
	}
	s.nextUser++
	s.nextAccount++
	s.users[strings.ToLower(login)] = u
	s.byAccount[u.AccountID] = u
	s.gen++
	return u
}

// ProcessDue processes, in id order, the queued documents whose
// DocumentDelay has passed on Options.Clock (none with NeverProcess):
// user/create documents create their user and fire the webhook, volume
// change documents append to the ledger. The server also does this on
// every request and every few milliseconds of real time, so a test only
// needs it to see the effect of advancing a manual clock at once.
func (s *Server) ProcessDue() {
	now := s.clock.Now()
	s.mu.Lock()
	gen := s.gen
	jobs := s.processDueLocked(now)
	changed := s.gen != gen
	s.mu.Unlock()
	if changed {
		s.saveState()
	}
	s.sendWebhooks(jobs)
}

func (s *Server) processDueLocked(now time.Time) []webhookJob {
	if s.opts.NeverProcess || len(s.queue) == 0 {
		return nil
	}
	var jobs []webhookJob
	keep := s.queue[:0]
	for _, n := range s.queue {
		d := s.docs[n]
		if d.due.After(now) {
			keep = append(keep, n)
			continue
		}
		switch {
		case d.create != nil && s.users[strings.ToLower(d.create.login)] != nil:
			// LateDuplicateCheck: an earlier document made the user.
			c := d.create
			if s.pendingLogins[strings.ToLower(c.login)] == d.id {
				delete(s.pendingLogins, strings.ToLower(c.login))
			}
			d.create = nil
			d.result = refuse(msgLoginTaken).envelope()
			d.summary = fmt.Sprintf("%s: refused, the login exists", c.login)
			s.logf("document %d processed: refused, the login exists", d.id)
		case d.create != nil:
			c := d.create
			u := s.addUserLocked(c.login, c.password, c.sponsor, c.title)
			if s.pendingLogins[strings.ToLower(c.login)] == d.id {
				delete(s.pendingLogins, strings.ToLower(c.login))
			}
			d.create = nil // the password is not kept twice
			d.result = succeed(authPayload(u)).envelope()
			d.summary = fmt.Sprintf("%s: user %d, account %d created", u.Login, u.UserID, u.AccountID)
			jobs = append(jobs, webhookJob{u.Login, u.UserID, u.AccountID})
			s.logf("document %d processed: user %d, account %d created", d.id, u.UserID, u.AccountID)
		case d.volume != nil:
			e := *d.volume
			e.At = now
			s.ledger = append(s.ledger, e)
			d.result = succeed(volumePayload(&e)).envelope()
			d.summary = fmt.Sprintf("%s %s to account %d, order %s: applied (seq %d)", e.Amount, e.Alias, e.AccountID, e.OrderID, e.Seq)
			s.logf("document %d processed: volume change %d applied", d.id, e.Seq)
		}
	}
	if len(keep) != len(s.queue) {
		s.gen++
	}
	s.queue = keep
	return jobs
}
