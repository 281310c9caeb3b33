package mlmsofttest

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults applied to a zero Options.
const (
	// DefaultToken is the API token the server expects when Options.Token
	// is empty.
	DefaultToken = "test-token"
	// DefaultAppID is the App-Id the server expects when Options.AppID is
	// empty.
	DefaultAppID = "1"
	// BasePath is the path under which the API2 endpoints are served.
	BasePath = "/api2/online-office/"
	// ViewsPath is the path under which the read-only views (and, with
	// Options.Control, the control endpoint) are served, outside BasePath:
	// an HTML page at ViewsPath itself, JSON at ViewsPath+"accounts",
	// "documents" and "ledger". See the package documentation.
	ViewsPath = "/_fake/"
)

// First ids handed out. Users, accounts and documents live in distinct
// ranges so that a test mixing them up fails.
const (
	firstUserID     = 100001
	firstAccountID  = 700001
	firstDocumentID = 40001
)

// processInterval is how often, in real time, the background loop processes
// documents whose delay has passed.
const processInterval = 20 * time.Millisecond

// Options configures a Server. The zero value is a working server: token
// DefaultToken, App-Id DefaultAppID, real time, queued user/create documents
// processed at once, no webhook, no faults.
type Options struct {
	// Token is the API token requests must be signed with (DefaultToken
	// when empty).
	Token string
	// AppID is the App-Id header requests must carry (DefaultAppID when
	// empty). A request with another App-Id is refused with HTTP 403.
	AppID string
	// Clock is the time source for document delays, ledger timestamps and
	// webhook timestamps; nil means real time. A *Clock works.
	Clock interface{ Now() time.Time }
	// DocumentDelay is how long after acceptance, on Clock, a queued
	// document (user/create, and account/volume-change with
	// QueueVolumeChanges) gets its result. Zero processes it before the
	// accepting request is answered.
	DocumentDelay time.Duration
	// NeverProcess leaves every queued document without a result forever.
	NeverProcess bool
	// Synchronous makes user/create answer with the finished result
	// (auth.user.id, auth.user.account.id) at once instead of a queued
	// document, as some tenants do.
	Synchronous bool
	// LateDuplicateCheck makes user/create check for a duplicate login
	// only when its document is processed, as an asynchronous back office
	// may: a second create for a login whose first document is still
	// queued is accepted, and its own document later fails with "User with
	// this login already exists". Without it the second create is refused
	// at once. It has no effect with Synchronous.
	LateDuplicateCheck bool
	// DocumentIDAsString sends document ids (documentId and document.id)
	// as numeric JSON strings instead of numbers; both occur in the wild.
	DocumentIDAsString bool
	// QueueVolumeChanges makes account/volume-change answer queued with a
	// documentId; the ledger entry is applied when the document is
	// processed.
	QueueVolumeChanges bool
	// Aliases lists the volume property aliases that exist (matched
	// exactly); nil accepts any non-empty alias.
	Aliases []string
	// WebhookURL, when set, receives the Type III webhook (a JSON POST)
	// after each user/create is processed. Deliveries run in the
	// background, are retried up to 5 times on a network error or a
	// non-2xx answer with a short backoff, and stop on Close.
	WebhookURL string
	// WebhookSecret signs webhook bodies with internal/whsig (headers
	// whsig.TimestampHeader and whsig.SignatureHeader). Empty sends them
	// unsigned.
	WebhookSecret []byte
	// WebhookBody returns the JSON value posted to WebhookURL for a new
	// user; nil posts {"email":..., "userId":..., "accountId":...}.
	WebhookBody func(email string, userID, accountID int64) any
	// Seed seeds the random source of fault injection. Outcomes are
	// deterministic for a seed and an order of requests.
	Seed int64
	// Logf, when set, receives one line per notable event (document
	// processed, fault injected, webhook failed, state file not saved). It
	// never receives tokens, passwords, webhook secrets or signatures.
	Logf func(format string, args ...any)
	// IgnoreExpect makes the server never answer "Expect: 100-continue",
	// like PHP's built-in server and some proxies: a request carrying it
	// is answered only once its whole body arrived, which a client sends
	// only when its own wait for "100 Continue" runs out (Go's
	// Transport.ExpectContinueTimeout). Such a request's body must have a
	// Content-Length (a chunked one is answered 411). Everything else,
	// faults included, works as usual; requests without Expect are served
	// normally. It needs a connection it can take over (HTTP/1.1 from
	// NewServer, Start or a mounting http.Server); elsewhere Expect is
	// answered as usual.
	IgnoreExpect bool
	// StateFile, when set, makes the server's state outlive it: accounts
	// (passwords included, for check-auth), pending logins, documents and
	// their results, the ledger, the id counters and the per-login create
	// counts are loaded from this JSON file when the server starts (a
	// missing file is an empty state) and saved to it after every change
	// and on Close. Saving writes a temporary file in the same directory,
	// syncs it and renames it over the old one, so the file is always
	// whole. The file holds passwords: it is created readable by its owner
	// only. Two servers must not share one file at the same time. Call
	// counts, faults and injections are not saved.
	StateFile string
	// Control enables the control endpoint, POST ViewsPath+"inject" (see
	// the package documentation), which lets another process inject
	// faults with InjectNext. Off, that path answers 404. It takes no
	// credentials: enable it only where anyone who can reach the server
	// may break it.
	Control bool
}

// Account is a user known to the server. Its JSON form (in the views) uses
// the keys login, userId, accountId and sponsorAccountId.
type Account struct {
	// Login is the login (email) as first given.
	Login string `json:"login"`
	// UserID is MLM Soft's user id (auth.user.id).
	UserID int64 `json:"userId"`
	// AccountID is MLM Soft's account id (auth.user.account.id), the id used
	// as a sponsor id and as a volume target.
	AccountID int64 `json:"accountId"`
	// SponsorAccountID is the sponsor's account id; 0 for a root.
	SponsorAccountID int64 `json:"sponsorAccountId"`
}

// LedgerEntry is one applied account/volume-change. Its JSON form (in the
// views) uses the keys seq, accountId, alias, amount (a string holding the
// literal), orderId and at.
type LedgerEntry struct {
	// Seq is the global order in which the request arrived (from 1).
	Seq int64 `json:"seq"`
	// AccountID is the account changed.
	AccountID int64 `json:"accountId"`
	// Alias is the volumePropertyAlias received.
	Alias string `json:"alias"`
	// Amount is the pointsAmount exactly as the JSON literal received
	// ("0.1", "150", "-3.75").
	Amount string `json:"amount"`
	// OrderID is the orderId received.
	OrderID string `json:"orderId"`
	// At is when the change was applied, on Options.Clock.
	At time.Time `json:"at"`
}

// Server is a fake MLM Soft API2 server. Create it with NewServer or Start
// and stop it with Close. All methods are safe for concurrent use.
type Server struct {
	// URL is the API2 base URL, ending in BasePath, as a host puts it in its
	// configuration (for example "http://127.0.0.1:41234/api2/online-office/").
	// It is empty for a Server that does not listen itself.
	URL string

	opts     Options
	clock    interface{ Now() time.Time }
	hs       *httptest.Server
	ctx      context.Context // canceled by Close
	cancel   context.CancelFunc
	once     sync.Once
	bg       sync.WaitGroup // handlers in flight, webhook deliveries, the process loop
	whClient *http.Client
	down     atomic.Bool

	rngMu sync.Mutex
	rng   *rand.Rand

	saveMu       sync.Mutex   // serializes writes of the state file
	savedGen     atomic.Int64 // the gen last written to the state file
	beforeRename func() error // tests: runs before the state file is replaced

	mu            sync.Mutex
	closed        bool
	token, appID  string // what requests must be signed with and carry
	webhookURL    string
	webhookSecret []byte
	injections    map[string][]*injection // by endpoint, in call order
	gen           int64                   // counts changes of the saved state
	users         map[string]*user        // by lower-case login
	byAccount     map[int64]*user
	pendingLogins map[string]int64 // lower-case login -> document id
	docs          map[int64]*document
	queue         []int64 // unprocessed document ids, ascending
	ledger        []LedgerEntry
	seq           int64
	nextUser      int64
	nextAccount   int64
	nextDoc       int64
	creates       map[string]int
	calls         map[string]int
	faults        map[string]Faults
	received      uint64              // requests received so far
	active        map[uint64]struct{} // the numbers of requests whose handler runs
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// NewServer starts a Server on a free port of 127.0.0.1. It panics, like
// httptest.NewServer, if it cannot listen or if Options.StateFile cannot be
// read or is corrupt. Call Close when done.
func NewServer(opts Options) *Server {
	s, err := newServer(opts)
	if err != nil {
		panic(err.Error())
	}
	s.hs = httptest.NewUnstartedServer(s)
	s.hs.Start()
	s.URL = s.hs.URL + BasePath
	s.startLoop()
	return s
}

// Start starts a Server listening on addr (such as "127.0.0.1:8089"), for
// examples and manual runs. It returns an error if Options.StateFile cannot
// be read or is corrupt, or if it cannot listen. Call Close when done.
func Start(addr string, opts Options) (*Server, error) {
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("mlmsofttest: listen on %s: %w", addr, err)
	}
	s.hs = httptest.NewUnstartedServer(s)
	s.hs.Listener.Close()
	s.hs.Listener = ln
	s.hs.Start()
	s.URL = s.hs.URL + BasePath
	s.startLoop()
	return s, nil
}

// newServer builds a Server and loads its state file; nothing runs yet.
func newServer(opts Options) (*Server, error) {
	opts.Aliases = append([]string(nil), opts.Aliases...)
	s := &Server{
		opts:          opts,
		clock:         opts.Clock,
		token:         cmpOr(opts.Token, DefaultToken),
		appID:         cmpOr(opts.AppID, DefaultAppID),
		webhookURL:    opts.WebhookURL,
		webhookSecret: append([]byte(nil), opts.WebhookSecret...),
		injections:    map[string][]*injection{},
		whClient:      &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second},
		rng:           rand.New(rand.NewSource(opts.Seed)),
		users:         map[string]*user{},
		byAccount:     map[int64]*user{},
		pendingLogins: map[string]int64{},
		docs:          map[int64]*document{},
		nextUser:      firstUserID,
		nextAccount:   firstAccountID,
		nextDoc:       firstDocumentID,
		creates:       map[string]int{},
		calls:         map[string]int{},
		faults:        map[string]Faults{},
	}
	if s.clock == nil {
		s.clock = realClock{}
	}
	if err := s.loadState(); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// startLoop starts the background processing of due documents.
func (s *Server) startLoop() {
	s.bg.Add(1)
	go s.processLoop()
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (s *Server) processLoop() {
	defer s.bg.Done()
	t := time.NewTicker(processInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.ProcessDue()
		}
	}
}

// Close stops the server: hung requests end, pending webhook deliveries
// stop, the state file (if any) is saved a last time, and Close returns
// once every goroutine the server started is done. Calling it again does
// nothing.
func (s *Server) Close() {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		if s.hs != nil {
			s.hs.Close()
		}
		s.bg.Wait()
		s.saveState()
		if t, ok := s.whClient.Transport.(*http.Transport); ok {
			t.CloseIdleConnections()
		}
	})
}

// SetToken changes the API token requests must be signed with from now on
// (DefaultToken when token is empty), as when MLM Soft's token is rotated:
// requests signed with the old one are refused with HTTP 403 until the
// client follows. Safe for concurrent use.
func (s *Server) SetToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = cmpOr(token, DefaultToken)
}

// SetAppID changes the App-Id header requests must carry from now on
// (DefaultAppID when id is empty). Safe for concurrent use.
func (s *Server) SetAppID(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appID = cmpOr(id, DefaultAppID)
}

// SetWebhook changes where webhooks go and what signs them, as
// Options.WebhookURL and Options.WebhookSecret do at start; an empty url
// stops sending new ones. Deliveries already under way use the new target
// and secret from their next attempt. Safe for concurrent use.
func (s *Server) SetWebhook(url string, secret []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.webhookURL = url
	s.webhookSecret = append([]byte(nil), secret...)
}

// credentials returns the token and App-Id requests must match now.
func (s *Server) credentials() (token, appID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token, s.appID
}

// webhookTarget returns the webhook URL and secret in force now.
func (s *Server) webhookTarget() (string, []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.webhookURL, s.webhookSecret
}

// Handler returns the server's http.Handler, to mount in another server
// (any path containing BasePath followed by an endpoint is served, and any
// path containing ViewsPath a view). After Close it answers 503 to
// everything.
func (s *Server) Handler() http.Handler { return s }

// SetDown makes every request fail with HTTP 503 before its body is read
// (true) or work normally again (false).
func (s *Server) SetDown(down bool) { s.down.Store(down) }

// Calls returns how many requests reached endpoint (such as
// "account/volume-change"), whatever their outcome.
func (s *Server) Calls(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[endpoint]
}

// CreatesAccepted returns how many user/create requests for login were
// accepted (a document was queued or the user created). A correct client
// makes it 1 per user.
func (s *Server) CreatesAccepted(login string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creates[strings.ToLower(login)]
}

// Account returns the user with login (case-insensitive), if it exists: it
// was added with AddAccount or its user/create document was processed.
func (s *Server) Account(login string) (Account, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[strings.ToLower(login)]
	if !ok {
		return Account{}, false
	}
	return u.Account, true
}

// AddAccount creates a user at once, as if it had existed in MLM Soft
// before: a root sponsor (sponsorAccountID 0) or people to test check-auth
// with. It returns the new ids. It panics if login is empty or already
// taken, or if sponsorAccountID is neither 0 nor an existing account: those
// are mistakes in the test itself.
func (s *Server) AddAccount(login, password string, sponsorAccountID int64) Account {
	a, err := s.addAccount(login, password, sponsorAccountID)
	if err != nil {
		panic("mlmsofttest: AddAccount: " + err.Error())
	}
	s.saveState()
	return a
}

func (s *Server) addAccount(login, password string, sponsorAccountID int64) (Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(login)
	if login == "" {
		return Account{}, errors.New("empty login")
	}
	if _, ok := s.users[key]; ok {
		return Account{}, fmt.Errorf("login %q already exists", login)
	}
	if _, ok := s.pendingLogins[key]; ok {
		return Account{}, fmt.Errorf("login %q has a user/create pending", login)
	}
	if _, ok := s.byAccount[sponsorAccountID]; sponsorAccountID != 0 && !ok {
		return Account{}, fmt.Errorf("sponsor account %d does not exist", sponsorAccountID)
	}
	return s.addUserLocked(login, password, sponsorAccountID, login).Account, nil
}

// Ledger returns, in arrival order, the volume changes applied to
// accountID.
func (s *Server) Ledger(accountID int64) []LedgerEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []LedgerEntry
	for _, e := range s.ledger {
		if e.AccountID == accountID {
			out = append(out, e)
		}
	}
	return out
}

// AllLedger returns every applied volume change, in the order applied
// (which is arrival order, Seq ascending, unless documents were processed
// out of order).
func (s *Server) AllLedger() []LedgerEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]LedgerEntry(nil), s.ledger...)
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf("mlmsofttest: "+format, args...)
	}
}

// enter registers a request in flight; it reports false after Close.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.bg.Add(1)
	return true
}

// RequestMark returns a mark of every request received so far, for
// RequestsDone.
func (s *Server) RequestMark() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received
}

// RequestsDone reports whether every request received before mark was
// taken has been handled to the end (answered, applied or dropped). A test
// playing an operator uses it before judging a change whose answer was
// lost: the request may still be being applied.
func (s *Server) RequestsDone(mark uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n := range s.active {
		if n < mark {
			return false
		}
	}
	return true
}
