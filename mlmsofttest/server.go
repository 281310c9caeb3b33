package mlmsofttest

import (
	"context"
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
	// processed, fault injected, webhook failed). It never receives
	// tokens, passwords or signatures.
	Logf func(format string, args ...any)
}

// Account is a user known to the server.
type Account struct {
	// Login is the login (email) as first given.
	Login string
	// UserID is MLM Soft's user id (auth.user.id).
	UserID int64
	// AccountID is MLM Soft's account id (auth.user.account.id), the id used
	// as a sponsor id and as a volume target.
	AccountID int64
	// SponsorAccountID is the sponsor's account id; 0 for a root.
	SponsorAccountID int64
}

// LedgerEntry is one applied account/volume-change.
type LedgerEntry struct {
	// Seq is the global order in which the request arrived (from 1).
	Seq int64
	// AccountID is the account changed.
	AccountID int64
	// Alias is the volumePropertyAlias received.
	Alias string
	// Amount is the pointsAmount exactly as the JSON literal received
	// ("0.1", "150", "-3.75").
	Amount string
	// OrderID is the orderId received.
	OrderID string
	// At is when the change was applied, on Options.Clock.
	At time.Time
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

	mu            sync.Mutex
	closed        bool
	users         map[string]*user // by lower-case login
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

// NewServer starts a Server on a free port of 127.0.0.1. It panics if it
// cannot listen, like httptest.NewServer. Call Close when done.
func NewServer(opts Options) *Server {
	s := newServer(opts)
	s.hs = httptest.NewUnstartedServer(s)
	s.hs.Start()
	s.URL = s.hs.URL + BasePath
	return s
}

// Start starts a Server listening on addr (such as "127.0.0.1:8089"), for
// examples and manual runs. It returns an error if it cannot listen. Call
// Close when done.
func Start(addr string, opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("mlmsofttest: listen on %s: %w", addr, err)
	}
	s := newServer(opts)
	s.hs = httptest.NewUnstartedServer(s)
	s.hs.Listener.Close()
	s.hs.Listener = ln
	s.hs.Start()
	s.URL = s.hs.URL + BasePath
	return s, nil
}

func newServer(opts Options) *Server {
	if opts.Token == "" {
		opts.Token = DefaultToken
	}
	if opts.AppID == "" {
		opts.AppID = DefaultAppID
	}
	opts.Aliases = append([]string(nil), opts.Aliases...)
	opts.WebhookSecret = append([]byte(nil), opts.WebhookSecret...)
	s := &Server{
		opts:          opts,
		clock:         opts.Clock,
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
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.bg.Add(1)
	go s.processLoop()
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
// stop, and Close returns once every goroutine the server started is done.
// Calling it again does nothing.
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
		if t, ok := s.whClient.Transport.(*http.Transport); ok {
			t.CloseIdleConnections()
		}
	})
}

// Handler returns the server's http.Handler, to mount in another server
// (any path containing BasePath followed by an endpoint is served). After
// Close it answers 503 to everything.
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
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(login)
	if login == "" {
		panic("mlmsofttest: AddAccount: empty login")
	}
	if _, ok := s.users[key]; ok {
		panic(fmt.Sprintf("mlmsofttest: AddAccount: login %q already exists", login))
	}
	if _, ok := s.pendingLogins[key]; ok {
		panic(fmt.Sprintf("mlmsofttest: AddAccount: login %q has a user/create pending", login))
	}
	if _, ok := s.byAccount[sponsorAccountID]; sponsorAccountID != 0 && !ok {
		panic(fmt.Sprintf("mlmsofttest: AddAccount: sponsor account %d does not exist", sponsorAccountID))
	}
	return s.addUserLocked(login, password, sponsorAccountID, login).Account
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
