package mlmsofttest

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/phpquery"
)

// stateVersion is the version of the state file's format.
const stateVersion = 1

// savedState is the JSON form of the state file.
type savedState struct {
	Version        int              `json:"version"`
	NextUserID     int64            `json:"nextUserId"`
	NextAccountID  int64            `json:"nextAccountId"`
	NextDocumentID int64            `json:"nextDocumentId"`
	LedgerSeq      int64            `json:"ledgerSeq"`
	Accounts       []savedAccount   `json:"accounts"`
	PendingLogins  map[string]int64 `json:"pendingLogins"` // lower-case login -> document id
	Documents      []savedDocument  `json:"documents"`
	Ledger         []LedgerEntry    `json:"ledger"`
	Creates        map[string]int   `json:"createsAccepted"` // lower-case login -> count
}

type savedAccount struct {
	Account
	Password string `json:"password"`
	Title    string `json:"title"`
}

type savedDocument struct {
	ID      int64           `json:"id"`
	Entity  string          `json:"entity"`
	Action  string          `json:"action"`
	Due     time.Time       `json:"due"`
	Result  json.RawMessage `json:"result,omitempty"` // absent until processed
	Summary string          `json:"summary,omitempty"`
	Create  *savedCreate    `json:"create,omitempty"` // an unprocessed user/create
	Volume  *LedgerEntry    `json:"volume,omitempty"` // an account/volume-change
}

type savedCreate struct {
	Login            string `json:"login"`
	Password         string `json:"password"`
	Title            string `json:"title"`
	SponsorAccountID int64  `json:"sponsorAccountId"`
}

// snapshotLocked returns the state to save.
func (s *Server) snapshotLocked() (*savedState, error) {
	st := &savedState{
		Version:        stateVersion,
		NextUserID:     s.nextUser,
		NextAccountID:  s.nextAccount,
		NextDocumentID: s.nextDoc,
		LedgerSeq:      s.seq,
		Accounts:       []savedAccount{},
		PendingLogins:  s.pendingLogins,
		Documents:      []savedDocument{},
		Ledger:         s.ledger,
		Creates:        s.creates,
	}
	if st.Ledger == nil {
		st.Ledger = []LedgerEntry{}
	}
	for _, u := range s.byAccount {
		st.Accounts = append(st.Accounts, savedAccount{Account: u.Account, Password: u.password, Title: u.title})
	}
	slices.SortFunc(st.Accounts, func(a, b savedAccount) int { return cmp.Compare(a.AccountID, b.AccountID) })
	for _, d := range s.docs {
		sd := savedDocument{ID: d.id, Entity: d.entity, Action: d.action, Due: d.due, Summary: d.summary, Volume: d.volume}
		if d.result != nil {
			b, err := d.result.MarshalJSON()
			if err != nil {
				return nil, fmt.Errorf("document %d: %w", d.id, err)
			}
			sd.Result = b
		}
		if c := d.create; c != nil {
			sd.Create = &savedCreate{Login: c.login, Password: c.password, Title: c.title, SponsorAccountID: c.sponsor}
		}
		st.Documents = append(st.Documents, sd)
	}
	slices.SortFunc(st.Documents, func(a, b savedDocument) int { return cmp.Compare(a.ID, b.ID) })
	return st, nil
}

// saveState writes the state file if the state changed since it was last
// written. A failure is logged and retried on the next API request, the
// next processing of a document, and on Close.
func (s *Server) saveState() {
	if s.opts.StateFile == "" {
		return
	}
	s.mu.Lock()
	gen := s.gen
	if gen == s.savedGen.Load() {
		s.mu.Unlock()
		return
	}
	st, err := s.snapshotLocked()
	var b []byte
	if err == nil {
		b, err = json.MarshalIndent(st, "", "\t")
	}
	s.mu.Unlock()
	if err != nil { // only our own values are encoded: a bug
		panic("mlmsofttest: encode state: " + err.Error())
	}

	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	if gen <= s.savedGen.Load() {
		return // a newer snapshot is already on disk
	}
	if err := writeFileAtomic(s.opts.StateFile, append(b, '\n'), s.beforeRename); err != nil {
		s.logf("state file not saved: %v", err)
		return
	}
	s.savedGen.Store(gen)
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, synced, then renamed over path, then the directory synced. A
// reader sees the old content or the new, never a mix. before, when not
// nil, runs just before the rename (tests simulate a crash with it).
func writeFileAtomic(path string, data []byte, before func() error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*") // mode 0600: the file holds passwords
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if before != nil {
		if err = before(); err != nil {
			return err
		}
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil { // make the rename itself durable
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// loadState fills a new server's maps from Options.StateFile. A missing
// file leaves the state empty.
func (s *Server) loadState() error {
	if s.opts.StateFile == "" {
		return nil
	}
	b, err := os.ReadFile(s.opts.StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mlmsofttest: state file: %w", err)
	}
	if err := s.restore(b); err != nil {
		return fmt.Errorf("mlmsofttest: state file %s is corrupt: %w", s.opts.StateFile, err)
	}
	s.savedGen.Store(s.gen)
	return nil
}

// restore loads a saved state into the empty server, checking that it is
// consistent: a state that would make the server hand out an id twice or
// answer inconsistently is refused.
func (s *Server) restore(b []byte) error {
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	if st.Version != stateVersion {
		return fmt.Errorf("version %d, want %d", st.Version, stateVersion)
	}
	userIDs := map[int64]bool{}
	for _, a := range st.Accounts {
		key := strings.ToLower(a.Login)
		switch {
		case a.Login == "":
			return errors.New("an account has no login")
		case a.UserID <= 0 || a.AccountID <= 0:
			return fmt.Errorf("account %q: ids must be positive", a.Login)
		case s.users[key] != nil:
			return fmt.Errorf("login %q appears twice", a.Login)
		case s.byAccount[a.AccountID] != nil || userIDs[a.UserID]:
			return fmt.Errorf("account %q: ids %d/%d already used", a.Login, a.UserID, a.AccountID)
		}
		u := &user{Account: a.Account, password: a.Password, title: a.Title}
		s.users[key] = u
		s.byAccount[a.AccountID] = u
		userIDs[a.UserID] = true
		s.nextUser = max(s.nextUser, a.UserID+1)
		s.nextAccount = max(s.nextAccount, a.AccountID+1)
	}
	for _, u := range s.byAccount {
		if sp := u.SponsorAccountID; sp != 0 && s.byAccount[sp] == nil {
			return fmt.Errorf("account %d: sponsor account %d does not exist", u.AccountID, sp)
		}
	}

	pending := map[string]int64{}
	for _, sd := range st.Documents {
		if sd.ID <= 0 || s.docs[sd.ID] != nil {
			return fmt.Errorf("document id %d is invalid or repeated", sd.ID)
		}
		d := &document{id: sd.ID, entity: sd.Entity, action: sd.Action, due: sd.Due, summary: sd.Summary, volume: sd.Volume}
		if len(sd.Result) > 0 && string(sd.Result) != "null" {
			m, err := phpquery.DecodeJSONObject(sd.Result)
			if err != nil {
				return fmt.Errorf("document %d: result: %w", sd.ID, err)
			}
			d.result = m
		}
		switch sd.Entity + "/" + sd.Action {
		case "user/create":
			if d.result == nil {
				c := sd.Create
				if c == nil || c.Login == "" {
					return fmt.Errorf("document %d: an unprocessed user/create without its request", sd.ID)
				}
				d.create = &createRequest{login: c.Login, password: c.Password, title: c.Title, sponsor: c.SponsorAccountID}
				pending[strings.ToLower(c.Login)] = sd.ID
			}
		case "account/volume-change":
			if d.volume == nil {
				return fmt.Errorf("document %d: a volume change without its entry", sd.ID)
			}
			s.seq = max(s.seq, d.volume.Seq)
		default:
			return fmt.Errorf("document %d: unknown kind %s/%s", sd.ID, sd.Entity, sd.Action)
		}
		s.docs[d.id] = d
		if d.result == nil {
			s.queue = append(s.queue, d.id)
		}
		s.nextDoc = max(s.nextDoc, d.id+1)
	}
	slices.Sort(s.queue)
	if len(st.PendingLogins) != len(pending) {
		return fmt.Errorf("%d pending logins for %d unprocessed user/create documents", len(st.PendingLogins), len(pending))
	}
	for login, id := range st.PendingLogins {
		if pending[login] != id {
			return fmt.Errorf("pending login %q does not match an unprocessed user/create document", login)
		}
		if s.users[login] != nil {
			return fmt.Errorf("login %q is both pending and created", login)
		}
	}
	s.pendingLogins = pending

	for i, e := range st.Ledger {
		if e.Seq <= 0 {
			return fmt.Errorf("ledger entry %d has no seq", i)
		}
		s.seq = max(s.seq, e.Seq)
	}
	s.ledger = st.Ledger
	for login, n := range st.Creates {
		if n < 0 {
			return fmt.Errorf("negative create count for %q", login)
		}
		s.creates[strings.ToLower(login)] += n
	}
	// Counters never go back, even if the file was edited by hand.
	s.nextUser = max(s.nextUser, st.NextUserID)
	s.nextAccount = max(s.nextAccount, st.NextAccountID)
	s.nextDoc = max(s.nextDoc, st.NextDocumentID)
	s.seq = max(s.seq, st.LedgerSeq)
	return nil
}
