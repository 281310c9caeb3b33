package mlmsofttest

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/phpquery"
)

func checkAuthParams(login, password string) phpquery.Map {
	return append(loginParams(login), phpquery.Pair{Key: "password", Value: password})
}

// TestStateFileRoundTrip restarts a server on its state file twice: what
// the first one accepted is all there, a document still pending is
// processed when due, and new ids continue where the old ones stopped.
func TestStateFileRoundTrip(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.json")
	clock := NewClock(time.Time{})
	opts := Options{StateFile: path, Clock: clock, DocumentDelay: time.Minute}

	s1, c := newTestServer(t, opts)
	root := s1.AddAccount("root@example.com", "root-pw", 0)
	a := c.post("user/create", createParams("Jane@example.com", "jane-pw", root.AccountID))
	mustOK(t, a)
	doc1 := num(t, dig(a.payload(t), "documentId"))
	clock.Advance(time.Minute)
	s1.ProcessDue()
	jane, ok := s1.Account("jane@example.com")
	if !ok {
		t.Fatal("jane not created")
	}
	a = c.post("user/create", createParams("pending@example.com", "pending-pw", jane.AccountID))
	mustOK(t, a)
	doc2 := num(t, dig(a.payload(t), "documentId"))
	mustOK(t, c.post("account/volume-change", volumeParams(jane.AccountID, "0.10", "ord-1", "PV")))
	clock.Advance(time.Second)
	mustOK(t, c.post("account/volume-change", volumeParams(jane.AccountID, "-3", "ord-2", "Status")))
	doc1Answer := c.get("document/get", docParams(doc1)).raw
	ledger := s1.AllLedger()
	s1.Close()

	s2, c := newTestServer(t, opts)
	for login, want := range map[string]Account{"root@example.com": root, "JANE@example.com": jane} {
		if got, ok := s2.Account(login); !ok || got != want {
			t.Errorf("after restart Account(%s) = %+v, %v; want %+v", login, got, ok, want)
		}
	}
	if _, ok := s2.Account("pending@example.com"); ok {
		t.Error("a pending user exists after restart")
	}
	if got := c.get("document/get", docParams(doc1)).raw; string(got) != string(doc1Answer) {
		t.Errorf("document %d after restart:\n%s\nwant\n%s", doc1, got, doc1Answer)
	}
	if res := dig(c.get("document/get", docParams(doc2)).payload(t), "document", "result"); res != nil {
		t.Errorf("pending document processed too early: %v", res)
	}
	if got := s2.AllLedger(); !sameLedger(got, ledger) {
		t.Errorf("ledger after restart %+v, want %+v", got, ledger)
	}
	for login, n := range map[string]int{"jane@example.com": 1, "pending@example.com": 1, "root@example.com": 0} {
		if got := s2.CreatesAccepted(login); got != n {
			t.Errorf("CreatesAccepted(%s) = %d, want %d", login, got, n)
		}
	}
	mustOK(t, c.get("user/check-auth", checkAuthParams("jane@example.com", "jane-pw")))
	mustOK(t, c.get("user/check-auth", checkAuthParams("root@example.com", "root-pw")))
	mustRefuse(t, c.get("user/check-auth", checkAuthParams("jane@example.com", "root-pw")), msgBadCredentials)
	mustRefuse(t, c.post("user/create", createParams("PENDING@example.com", "x", root.AccountID)), msgLoginTaken)

	// The pending document keeps its due time: a minute after it was queued.
	clock.Advance(58 * time.Second)
	s2.ProcessDue()
	if _, ok := s2.Account("pending@example.com"); ok {
		t.Fatal("processed before its due time")
	}
	clock.Advance(time.Second)
	s2.ProcessDue()
	pending, ok := s2.Account("pending@example.com")
	if !ok || pending.UserID <= jane.UserID || pending.AccountID <= jane.AccountID || pending.SponsorAccountID != jane.AccountID {
		t.Fatalf("pending user after its due time: %+v %v (jane %+v)", pending, ok, jane)
	}
	a = c.post("account/volume-change", volumeParams(pending.AccountID, "5", "ord-3", "PV"))
	mustOK(t, a)
	if l := s2.Ledger(pending.AccountID); len(l) != 1 || l[0].Seq != 3 {
		t.Errorf("new ledger entry %+v, want seq 3", l)
	}
	a = c.post("user/create", createParams("third@example.com", "pw", root.AccountID))
	doc3 := num(t, dig(a.payload(t), "documentId"))
	if doc3 <= doc2 {
		t.Errorf("document id %d reused (last was %d)", doc3, doc2)
	}
	extra := s2.AddAccount("extra@example.com", "pw", 0)
	s2.Close()

	s3, c := newTestServer(t, opts)
	for _, want := range []Account{root, jane, pending, extra} {
		if got, ok := s3.Account(want.Login); !ok || got != want {
			t.Errorf("second restart: Account(%s) = %+v, %v; want %+v", want.Login, got, ok, want)
		}
	}
	mustOK(t, c.get("user/check-auth", checkAuthParams("pending@example.com", "pending-pw")))
	if n := len(s3.AllLedger()); n != 3 {
		t.Errorf("ledger has %d entries, want 3", n)
	}
	if next := s3.AddAccount("next@example.com", "pw", 0); next.UserID <= extra.UserID || next.AccountID <= extra.AccountID {
		t.Errorf("ids reused: %+v after %+v", next, extra)
	}
}

// TestStateFileQueuedVolume: a queued volume change survives a restart and
// is applied once, when due.
func TestStateFileQueuedVolume(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.json")
	clock := NewClock(time.Time{})
	opts := Options{StateFile: path, Clock: clock, DocumentDelay: time.Minute, QueueVolumeChanges: true}
	s1, c := newTestServer(t, opts)
	acc := s1.AddAccount("a@example.com", "pw", 0)
	a := c.post("account/volume-change", volumeParams(acc.AccountID, "7.25", "ord-1", "PV"))
	doc := num(t, dig(a.payload(t), "documentId"))
	s1.Close()

	s2, c := newTestServer(t, opts)
	clock.Advance(time.Minute)
	s2.ProcessDue()
	if l := s2.Ledger(acc.AccountID); len(l) != 1 || l[0].Amount != "7.25" || l[0].Seq != 1 || !l[0].At.Equal(clock.Now()) {
		t.Fatalf("ledger %+v", l)
	}
	if dig(c.get("document/get", docParams(doc)).payload(t), "document", "result", "primary", "success") != true {
		t.Error("document has no result")
	}
	s2.Close()
	s3, _ := newTestServer(t, opts)
	s3.ProcessDue()
	if l := s3.Ledger(acc.AccountID); len(l) != 1 {
		t.Errorf("applied again after a restart: %+v", l)
	}
}

func TestStateFileCorrupt(t *testing.T) {
	t.Parallel()
	valid := func(edit string) string {
		return `{"version":1,"accounts":[{"login":"root@example.com","userId":100001,"accountId":700001,"sponsorAccountId":0,"password":"pw","title":"r"}` + edit
	}
	cases := map[string]string{
		"not JSON":                           `{"version":1,`,
		"empty":                              ``,
		"wrong version":                      `{"version":2}`,
		"not an object":                      `[1,2]`,
		"duplicate login":                    valid(`,{"login":"ROOT@example.com","userId":100002,"accountId":700002,"password":"pw"}]}`),
		"duplicate account id":               valid(`,{"login":"b@example.com","userId":100002,"accountId":700001,"password":"pw"}]}`),
		"unknown sponsor":                    valid(`,{"login":"b@example.com","userId":100002,"accountId":700002,"sponsorAccountId":9,"password":"pw"}]}`),
		"pending login without document":     valid(`],"pendingLogins":{"x@example.com":40001}}`),
		"unknown document kind":              valid(`],"documents":[{"id":40001,"entity":"user","action":"delete","result":{"a":1}}]}`),
		"unprocessed create without request": valid(`],"documents":[{"id":40001,"entity":"user","action":"create"}]}`),
		"ledger entry without seq":           valid(`],"ledger":[{"accountId":700001,"amount":"1"}]}`),
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Start("127.0.0.1:0", Options{StateFile: path})
			if err == nil {
				s.Close()
				t.Fatal("Start accepted a corrupt state file")
			}
			if !strings.Contains(err.Error(), "corrupt") || strings.Contains(err.Error(), `"pw"`) {
				t.Errorf("error %q", err)
			}
			func() {
				defer func() {
					if r := recover(); r == nil || !strings.Contains(r.(string), "corrupt") {
						t.Errorf("NewServer: recovered %v, want a panic about the corrupt file", r)
					}
				}()
				NewServer(Options{StateFile: path}).Close()
			}()
			if b, _ := os.ReadFile(path); string(b) != content {
				t.Error("the corrupt file was overwritten")
			}
		})
	}
	t.Run("unreadable", func(t *testing.T) {
		t.Parallel()
		if _, err := Start("127.0.0.1:0", Options{StateFile: t.TempDir()}); err == nil { // a directory
			t.Error("Start accepted a directory as state file")
		}
	})
}

// TestStateFileSaves checks that each change is on disk before its answer
// and that saving is atomic: a reader never sees a partial file, no
// temporary file is left behind, a failed save leaves the old file whole
// and the next save catches up.
func TestStateFileSaves(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	logs := newLogRecorder(t)
	s, c := newTestServer(t, Options{StateFile: path, Logf: logs.Logf})
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a file appeared without a change: %v", err)
	}
	root := s.AddAccount("root@example.com", "pw", 0)
	if runtime.GOOS != "windows" {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("state file: %v, mode %v; want 0600", err, fi.Mode())
		}
	}

	read := func() savedState {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var st savedState
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatalf("partial or invalid state file: %v\n%s", err, b)
		}
		return st
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(path)
			if err == nil && !json.Valid(b) {
				t.Errorf("a reader saw a partial file: %q", b)
				return
			}
		}
	})
	for i := range 20 {
		mustOK(t, c.post("account/volume-change", volumeParams(root.AccountID, "1", "ord-"+string(rune('a'+i)), "PV")))
		if st := read(); len(st.Ledger) != i+1 {
			t.Fatalf("after change %d the file holds %d entries", i+1, len(st.Ledger))
		}
	}
	close(stop)
	wg.Wait()

	// A save that fails before the rename leaves the old file and no
	// temporary one; the next request saves again.
	s.saveMu.Lock()
	s.beforeRename = func() error { return errors.New("simulated crash") }
	s.saveMu.Unlock()
	mustOK(t, c.post("account/volume-change", volumeParams(root.AccountID, "2", "ord-lost", "PV")))
	if st := read(); len(st.Ledger) != 20 {
		t.Errorf("failed save changed the file: %d entries", len(st.Ledger))
	}
	if n := logs.count("mlmsofttest: state file not saved: simulated crash"); n != 1 {
		t.Errorf("failed save logged %d times:\n%s", n, logs.all())
	}
	s.saveMu.Lock()
	s.beforeRename = nil
	s.saveMu.Unlock()
	mustOK(t, c.get("user/exists", loginParams("root@example.com"))) // any request retries
	if st := read(); len(st.Ledger) != 21 {
		t.Errorf("the save was not retried: %d entries", len(st.Ledger))
	}
	mustOK(t, c.post("account/volume-change", volumeParams(root.AccountID, "3", "ord-last", "PV")))
	if st := read(); len(st.Ledger) != 22 || st.LedgerSeq != 22 {
		t.Errorf("catch-up save: %d entries, seq %d", len(st.Ledger), st.LedgerSeq)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != "state.json" {
		t.Errorf("directory holds %v (%v), want only state.json", entries, err)
	}
	if strings.Contains(logs.all(), `"pw"`) {
		t.Error("a password reached the log")
	}
}
