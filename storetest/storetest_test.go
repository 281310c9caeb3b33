package storetest_test

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/storetest"
)

// TestRunMemstore checks that a correct store passes the suite.
func TestRunMemstore(t *testing.T) {
	if os.Getenv(mutantEnv) != "" {
		t.Skip("mutant run")
	}
	t.Parallel()
	storetest.Run(t, func(*testing.T) mlmsoft.Store { return memstore.New() })
}

// TestRunTxFake checks that a correct TxStore passes RunTx.
func TestRunTxFake(t *testing.T) {
	if os.Getenv(mutantEnv) != "" {
		t.Skip("mutant run")
	}
	t.Parallel()
	storetest.RunTx(t, func(t *testing.T) (mlmsoft.TxStore, *sql.DB) { return newFakeTxStore(t, txFlaws{}) })
}

// mutantEnv names the mutant TestMutant runs the suite against, in a child
// process started by TestSuiteCatchesMutants.
const mutantEnv = "STORETEST_MUTANT"

// A mutant is a store with one deliberate contract violation, and the
// subtests of the suite that must catch it: memstore behind a wrapper that
// breaks one thing (wrap), or the fake TxStore with one flaw (tx).
type mutant struct {
	name  string
	catch []string // subtest paths under Run or RunTx, e.g. "Link/Claim"
	wrap  func(*memstore.Store) mlmsoft.Store
	tx    txFlaws
}

func m(name string, wrap func(*memstore.Store) mlmsoft.Store, catch ...string) mutant {
	return mutant{name: name, catch: catch, wrap: wrap}
}

func mtx(name string, flaws txFlaws, catch ...string) mutant {
	return mutant{name: name, catch: catch, tx: flaws}
}

var mutants = []mutant{
	m("LinkDropsField", func(s *memstore.Store) mlmsoft.Store { return linkDropsField{s} }, "Link/RoundTrip"),
	m("VolumeDropsField", func(s *memstore.Store) mlmsoft.Store { return volumeDropsField{s} }, "Volume/RoundTrip", "Volume/UpdateFields"),
	m("EventDropsField", func(s *memstore.Store) mlmsoft.Store { return eventDropsField{s} }, "Event/RoundTrip", "Link/Events", "Volume/UpdateEvents"),
	m("EmptyPasswordNil", func(s *memstore.Store) mlmsoft.Store { return emptyPasswordNil{s} }, "Link/SealedPasswordNilVsEmpty"),
	m("EmptyPayloadNil", func(s *memstore.Store) mlmsoft.Store { return emptyPayloadNil{s} }, "Event/PayloadNilVsEmpty"),
	m("TimesInSeconds", func(s *memstore.Store) mlmsoft.Store { return timesInSeconds{s} }, "Link/RoundTrip"),
	m("LinkNoCAS", func(s *memstore.Store) mlmsoft.Store { return linkNoCAS{s} }, "Link/UpdateCAS", "Link/UpdateConcurrentCAS", "Link/UpdateErrorOrder"),
	m("LinkOwnerUnchecked", func(s *memstore.Store) mlmsoft.Store { return linkOwnerUnchecked{s} }, "Link/UpdateLease", "Link/LapsedLeaseStillHeld", "Link/UpdateErrorOrder"),
	m("LinkLeaseKept", func(s *memstore.Store) mlmsoft.Store { return linkLeaseKept{s} }, "Link/UpdateLease"),
	m("LinkClaimBumpsVersion", func(s *memstore.Store) mlmsoft.Store { return linkClaimBumpsVersion{s} }, "Link/Claim", "Link/UpdateCAS"),
	m("LinkClaimNotDue", func(s *memstore.Store) mlmsoft.Store { return linkClaimNotDue{s} }, "Link/Claim"),
	m("LinkClaimTiesReversed", func(s *memstore.Store) mlmsoft.Store { return linkClaimTiesReversed{s} }, "Link/Claim", "Link/ClaimLimitOrder"),
	m("WakeIgnored", func(s *memstore.Store) mlmsoft.Store { return wakeIgnored{s} }, "Link/WakeVolumes", "Link/WakeVolumesAtomic"),
	m("WakeTouchesFinal", func(s *memstore.Store) mlmsoft.Store { return wakeTouchesFinal{s} }, "Link/WakeVolumes"),
	m("ListLinksReversed", func(s *memstore.Store) mlmsoft.Store { return listLinksReversed{s} }, "Link/List"),
	m("EmailPrefixLike", func(s *memstore.Store) mlmsoft.Store { return emailPrefixLike{s} }, "Link/ListEmailPrefix"),
	m("EmailPrefixFolded", func(s *memstore.Store) mlmsoft.Store { return emailPrefixFolded{s} }, "Link/ListEmailPrefix"),
	m("EmailFolded", func(s *memstore.Store) mlmsoft.Store { return emailFolded{s} }, "Link/EmailsComparedAsGiven"),
	m("NotIdempotent", func(s *memstore.Store) mlmsoft.Store { return &notIdempotent{Store: s} }, "Volume/Idempotent", "Volume/IdempotencyWithinCall", "Volume/EnqueueConcurrentSameKey"),
	m("PartialEnqueue", func(s *memstore.Store) mlmsoft.Store { return partialEnqueue{s} }, "Volume/IdempotencyConflict"),
	m("GetVolumesSorted", func(s *memstore.Store) mlmsoft.Store { return getVolumesSorted{s} }, "Volume/GetVolumes"),
	m("ListVolumesReversed", func(s *memstore.Store) mlmsoft.Store { return listVolumesReversed{s} }, "Volume/List"),
	m("ClaimVolumesNotDue", func(s *memstore.Store) mlmsoft.Store { return claimVolumesNotDue{s} }, "Volume/ClaimDue"),
	m("ClaimsNonHead", func(s *memstore.Store) mlmsoft.Store { return claimsNonHead{s} }, "Volume/ClaimHeadOnly", "Volume/ClaimConcurrent"),
	m("VolumeClaimLeaks", func(s *memstore.Store) mlmsoft.Store { return volumeClaimLeaks{s} }, "Volume/ClaimLease", "Volume/ClaimConcurrent", "Concurrency/VolumeWorkers"),
	m("VolumeOwnerUnchecked", func(s *memstore.Store) mlmsoft.Store { return volumeOwnerUnchecked{s} }, "Volume/UpdateLeaseLost", "Volume/UpdateErrorOrder", "Concurrency/LeaseLapse"),
	m("FromIgnored", func(s *memstore.Store) mlmsoft.Store { return fromIgnored{s} }, "Volume/UpdateFrom", "Volume/UpdateConcurrentFrom", "Volume/UpdateErrorOrder"),
	m("VolumeLeaseKept", func(s *memstore.Store) mlmsoft.Store { return volumeLeaseKept{s} }, "Volume/UpdateEndsLease", "Send/Cases"),
	m("KeepLeaseIgnored", func(s *memstore.Store) mlmsoft.Store { return keepLeaseIgnored{s} }, "Volume/UpdateKeepLease", "Volume/LapsedLeaseStillHeld"),
	m("SendIgnored", func(s *memstore.Store) mlmsoft.Store { return sendIgnored{s} }, "Send/Chain", "Send/Cases", "Send/SkipsFinal"),
	m("SendMarksNonDue", func(s *memstore.Store) mlmsoft.Store { return sendMarksNonDue{s} }, "Send/Cases"),
	m("ClaimSendIgnored", func(s *memstore.Store) mlmsoft.Store { return claimSendIgnored{s} }, "Send/Claim"),
	m("ClaimSendsUnlinked", func(s *memstore.Store) mlmsoft.Store { return claimSendsUnlinked{s} }, "Send/Claim"),
	m("SendLeaseForever", func(s *memstore.Store) mlmsoft.Store { return sendLeaseForever{s} }, "Send/Chain"),
	m("VolumeUpdateSkipsZero", func(s *memstore.Store) mlmsoft.Store { return volumeUpdateSkipsZero{s} }, "Volume/RoundTrip"),
	m("LinkUpdateSkipsZero", func(s *memstore.Store) mlmsoft.Store { return linkUpdateSkipsZero{s} }, "Link/RoundTrip"),
	m("PurgeKeepsKeys", func(s *memstore.Store) mlmsoft.Store { return &purgeKeepsKeys{Store: s} }, "Purge/ForgetsKeys"),
	m("PurgeOverLimit", func(s *memstore.Store) mlmsoft.Store { return purgeOverLimit{s} }, "Purge/Rules"),
	m("PurgeCountWrong", func(s *memstore.Store) mlmsoft.Store { return purgeCountWrong{s} }, "Purge/Rules"),
	m("EventDoneIgnored", func(s *memstore.Store) mlmsoft.Store { return eventDoneIgnored{s} }, "Event/Done", "Event/ClaimConcurrent"),
	m("EventsNotStored", func(s *memstore.Store) mlmsoft.Store { return eventsNotStored{s} }, "Link/Events", "Event/RoundTrip"),
	m("EventClaimTiesReversed", func(s *memstore.Store) mlmsoft.Store { return eventClaimTiesReversed{s} }, "Event/Claim"),
	m("OldestOfAll", func(s *memstore.Store) mlmsoft.Store { return oldestOfAll{s} }, "Count/Volumes"),
	m("FailingIsAll", func(s *memstore.Store) mlmsoft.Store { return failingIsAll{s} }, "Count/Events"),
	m("UnlimitedClaims", func(s *memstore.Store) mlmsoft.Store { return unlimitedClaims{s} }, "Link/ClaimLimitOrder", "Volume/ClaimOrderLimit", "Event/ClaimLimitOrder"),
	mtx("TxIgnoresTx", txFlaws{ignoresTx: true}, "Tx/Rollback", "Tx/Events"),
	mtx("TxPoisonsOnError", txFlaws{poisonsOnError: true}, "Tx/ConflictLeavesTxUsable", "Tx/DuplicateLeavesTxUsable"),
	mtx("TxUndoesAllOnError", txFlaws{undoesAllOnError: true}, "Tx/ConflictLeavesTxUsable"),
	mtx("TxGetLinkCommittedOnly", txFlaws{getLinkCommitted: true}, "Tx/GetLinkTx"),
}

// TestMutant runs the suite against the mutant named by $STORETEST_MUTANT;
// without it, it is skipped.
func TestMutant(t *testing.T) {
	name := os.Getenv(mutantEnv)
	if name == "" {
		t.Skip("run by TestSuiteCatchesMutants in a child process")
	}
	i := slices.IndexFunc(mutants, func(m mutant) bool { return m.name == name })
	if i < 0 {
		t.Fatalf("no mutant %q", name)
	}
	mu := mutants[i]
	if mu.wrap == nil {
		storetest.RunTx(t, func(t *testing.T) (mlmsoft.TxStore, *sql.DB) { return newFakeTxStore(t, mu.tx) })
		return
	}
	storetest.Run(t, func(*testing.T) mlmsoft.Store { return mu.wrap(memstore.New()) })
}

// TestSuiteCatchesMutants runs, in a child process for each mutant, the
// subtests meant to catch it, and checks that each of them fails: the suite
// can fail, and fails where it should.
func TestSuiteCatchesMutants(t *testing.T) {
	if os.Getenv(mutantEnv) != "" {
		t.Skip("mutant run")
	}
	t.Parallel()
	for _, m := range mutants {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			// One pattern per level; extra subtests it selects do no harm.
			levels := [][]string{{"TestMutant"}}
			for _, c := range m.catch {
				for i, part := range strings.Split(c, "/") {
					if len(levels) <= i+1 {
						levels = append(levels, nil)
					}
					if !slices.Contains(levels[i+1], part) {
						levels[i+1] = append(levels[i+1], part)
					}
				}
			}
			var pattern []string
			for _, l := range levels {
				pattern = append(pattern, "^("+strings.Join(l, "|")+")$")
			}
			args := []string{"-test.run=" + strings.Join(pattern, "/"), "-test.count=1", "-test.timeout=120s", "-test.short"}
			cmd := exec.CommandContext(t.Context(), os.Args[0], args...)
			cmd.Env = append(os.Environ(), mutantEnv+"="+m.name)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("suite against mutant %s: err %v, want a failing exit; output:\n%s", m.name, err, out)
			}
			for _, c := range m.catch {
				if !strings.Contains(string(out), "--- FAIL: TestMutant/"+c+" ") {
					t.Errorf("subtest %s did not catch mutant %s; output:\n%s", c, m.name, out)
				}
			}
		})
	}
}

// far is a time no test reaches.
var far = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)

// rewrite writes c over the stored change of its ID as an operator would,
// every field as it is in c; with owner set, as that worker, ending its
// lease.
func rewrite(ctx context.Context, s *memstore.Store, c mlmsoft.VolumeChange, owner string) error {
	_, err := s.UpdateVolume(ctx, mlmsoft.VolumeUpdate{
		ID: c.ID, Owner: owner, From: []mlmsoft.VolumeState{c.State}, State: c.State,
		Attempts: c.Attempts, NextAttemptAt: c.NextAttemptAt, LastError: c.LastError, DocumentID: c.DocumentID,
		AccountID: c.AccountID, SentAt: c.SentAt, DeliveredAt: c.DeliveredAt, ResolvedBy: c.ResolvedBy,
		ResolvedNote: c.ResolvedNote, ResolvedAt: c.ResolvedAt, UpdatedAt: c.UpdatedAt,
	})
	return err
}

type linkDropsField struct{ *memstore.Store }

func (s linkDropsField) CreateLink(ctx context.Context, l mlmsoft.Link, evs ...mlmsoft.Event) (mlmsoft.Link, error) {
	l.CountryID = ""
	return s.Store.CreateLink(ctx, l, evs...)
}

func (s linkDropsField) UpdateLink(ctx context.Context, u mlmsoft.LinkUpdate) (mlmsoft.Link, error) {
	u.Link.CountryID = ""
	return s.Store.UpdateLink(ctx, u)
}

type volumeDropsField struct{ *memstore.Store }

func (s volumeDropsField) EnqueueVolumes(ctx context.Context, cs []mlmsoft.VolumeChange) ([]mlmsoft.VolumeChange, error) {
	cs = slices.Clone(cs)
	for i := range cs {
		cs[i].ResolvedNote = ""
	}
	return s.Store.EnqueueVolumes(ctx, cs)
}

func (s volumeDropsField) UpdateVolume(ctx context.Context, u mlmsoft.VolumeUpdate) (mlmsoft.VolumeUpdated, error) {
	u.ResolvedNote = ""
	return s.Store.UpdateVolume(ctx, u)
}

// mapEvents returns evs changed by f, leaving evs as they are.
func mapEvents(evs []mlmsoft.Event, f func(*mlmsoft.Event)) []mlmsoft.Event {
	evs = slices.Clone(evs)
	for i := range evs {
		f(&evs[i])
	}
	return evs
}

type eventDropsField struct{ *memstore.Store }

func dropKind(e *mlmsoft.Event) { e.Kind = "" }

func (s eventDropsField) CreateLink(ctx context.Context, l mlmsoft.Link, evs ...mlmsoft.Event) (mlmsoft.Link, error) {
	return s.Store.CreateLink(ctx, l, mapEvents(evs, dropKind)...)
}

func (s eventDropsField) UpdateLink(ctx context.Context, u mlmsoft.LinkUpdate) (mlmsoft.Link, error) {
	u.Events = mapEvents(u.Events, dropKind)
	return s.Store.UpdateLink(ctx, u)
}

func (s eventDropsField) UpdateVolume(ctx context.Context, u mlmsoft.VolumeUpdate) (mlmsoft.VolumeUpdated, error) {
	u.Events = mapEvents(u.Events, dropKind)
	return s.Store.UpdateVolume(ctx, u)
}

type emptyPasswordNil struct{ *memstore.Store }

func (s emptyPasswordNil) CreateLink(ctx context.Context, l mlmsoft.Link, evs ...mlmsoft.Event) (mlmsoft.Link, error) {
	if len(l.SealedPassword) == 0 {
		l.SealedPassword = nil
	}
	return s.Store.CreateLink(ctx, l, evs...)
}

func (s emptyPasswordNil) UpdateLink(ctx context.Context, u mlmsoft.LinkUpdate) (mlmsoft.Link, error) {
	if len(u.Link.SealedPassword) == 0 {
		u.Link.SealedPassword = nil
	}
	return s.Store.UpdateLink(ctx, u)
}

type emptyPayloadNil struct{ *memstore.Store }

func (s emptyPayloadNil) CreateLink(ctx context.Context, l mlmsoft.Link, evs ...mlmsoft.Event) (mlmsoft.Link, error) {
	return s.Store.CreateLink(ctx, l, mapEvents(evs, func(e *mlmsoft.Event) {
		if len(e.Payload) == 0 {
			e.Payload = nil
		}
	})...)
}

type timesInSeconds struct{ *memstore.Store }

func (s timesInSeconds) CreateLink(ctx context.Context, l mlmsoft.Link, evs ...mlmsoft.Event) (mlmsoft.Link, error) {
	l.CreatedAt = l.CreatedAt.Truncate(time.Second)
	l.LinkedAt = l.LinkedAt.Truncate(time.Second)
	return s.Store.CreateLink(ctx, l, evs...)
}

type linkNoCAS struct{ *memstore.Store }

func (s linkNoCAS) UpdateLink(ctx context.Context, u mlmsoft.LinkUpdate) (mlmsoft.Link, error) {
	if cur, err := s.GetLink(ctx, u.Link.UserID); err == nil {
		u.Link.Version = cur.Version
	}
	return s.Store.UpdateLink(ctx, u)
}

type linkOwnerUnchecked struct{ *memstore.Store }

func (s linkOwnerUnchecked) UpdateLink(ctx context.Context, u mlmsoft.LinkUpdate) (mlmsoft.Link, error) {
	got, err := s.Store.UpdateLink(ctx, u)
	if errors.Is(err, mlmsoft.ErrLeaseLost) {
		u.Owner = ""
		return s.Store.UpdateLink(ctx, u)
	}
	return got, err
}

type linkLeaseKept struct{ *memstore.Store }

func (s linkLeaseKept) UpdateLink(ctx context.Context, u mlmsoft.LinkUpdate) (mlmsoft.Link, error) {
	if u.Owner != "" && !u.KeepLease {
		u.KeepLease, u.LeaseUntil = true, far
	}
	return s.Store.UpdateLink(ctx, u)
}

type linkClaimBumpsVersion struct{ *memstore.Store }

func (s linkClaimBumpsVersion) ClaimLinks(ctx context.Context, c mlmsoft.LinkClaim) ([]mlmsoft.Link, error) {
	ls, err := s.Store.ClaimLinks(ctx, c)
	for i, l := range ls {
		if err == nil {
			ls[i], err = s.Store.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: l})
		}
	}
	return ls, err
}

type linkClaimNotDue struct{ *memstore.Store }

func (s linkClaimNotDue) ClaimLinks(ctx context.Context, c mlmsoft.LinkClaim) ([]mlmsoft.Link, error) {
	c.Now = c.Now.Add(time.Millisecond) // claims work due a millisecond later
	c.Lease -= time.Millisecond
	return s.Store.ClaimLinks(ctx, c)
}

type linkClaimTiesReversed struct{ *memstore.Store }

func (s linkClaimTiesReversed) ClaimLinks(ctx context.Context, c mlmsoft.LinkClaim) ([]mlmsoft.Link, error) {
	ls, err := s.Store.ClaimLinks(ctx, c)
	slices.SortStableFunc(ls, func(a, b mlmsoft.Link) int {
		return cmp.Or(a.NextAttemptAt.Compare(b.NextAttemptAt), strings.Compare(b.UserID, a.UserID))
	})
	return ls, err
}

type wakeIgnored struct{ *memstore.Store }

func (s wakeIgnored) UpdateLink(ctx context.Context, u mlmsoft.LinkUpdate) (mlmsoft.Link, error) {
	u.WakeVolumes = false
	return s.Store.UpdateLink(ctx, u)
}

type wakeTouchesFinal struct{ *memstore.Store }

func (s wakeTouchesFinal) UpdateLink(ctx context.Context, u mlmsoft.LinkUpdate) (mlmsoft.Link, error) {
	l, err := s.Store.UpdateLink(ctx, u)
	if err != nil || !u.WakeVolumes {
		return l, err
	}
	cs, err := s.ListVolumes(ctx, mlmsoft.VolumeFilter{UserID: l.UserID})
	for _, c := range cs {
		if err == nil && c.State.Final() && c.NextAttemptAt.After(l.UpdatedAt) {
			c.NextAttemptAt = l.UpdatedAt
			err = rewrite(ctx, s.Store, c, "")
		}
	}
	return l, err
}

type listLinksReversed struct{ *memstore.Store }

func (s listLinksReversed) ListLinks(ctx context.Context, f mlmsoft.LinkFilter) ([]mlmsoft.Link, error) {
	ls, err := s.Store.ListLinks(ctx, f)
	slices.Reverse(ls)
	return ls, err
}

// listMatching lists the links of f whose email match reports true, as a
// store matching prefixes its own way would.
func listMatching(ctx context.Context, s *memstore.Store, f mlmsoft.LinkFilter, match func(email string) bool) ([]mlmsoft.Link, error) {
	limit := f.Limit
	f.EmailPrefix, f.Limit = "", 0
	ls, err := s.ListLinks(ctx, f)
	ls = slices.DeleteFunc(ls, func(l mlmsoft.Link) bool { return !match(l.Email) })
	if limit > 0 && len(ls) > limit {
		ls = ls[:limit]
	}
	return ls, err
}

type emailPrefixLike struct{ *memstore.Store }

func (s emailPrefixLike) ListLinks(ctx context.Context, f mlmsoft.LinkFilter) ([]mlmsoft.Link, error) {
	var re strings.Builder
	re.WriteString("^")
	for _, r := range f.EmailPrefix {
		switch r {
		case '%':
			re.WriteString("(?s:.*)")
		case '_':
			re.WriteString("(?s:.)")
		default:
			re.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	like := regexp.MustCompile(re.String())
	return listMatching(ctx, s.Store, f, like.MatchString)
}

type emailPrefixFolded struct{ *memstore.Store }

func (s emailPrefixFolded) ListLinks(ctx context.Context, f mlmsoft.LinkFilter) ([]mlmsoft.Link, error) {
	p := strings.ToLower(f.EmailPrefix)
	return listMatching(ctx, s.Store, f, func(e string) bool { return strings.HasPrefix(strings.ToLower(e), p) })
}

type emailFolded struct{ *memstore.Store }

func (s emailFolded) GetLinkByEmail(ctx context.Context, email string) (mlmsoft.Link, error) {
	return s.Store.GetLinkByEmail(ctx, strings.ToLower(email))
}

type notIdempotent struct {
	*memstore.Store
	n atomic.Int64
}

func (s *notIdempotent) EnqueueVolumes(ctx context.Context, cs []mlmsoft.VolumeChange) ([]mlmsoft.VolumeChange, error) {
	cs = slices.Clone(cs)
	for i := range cs {
		cs[i].IdempotencyKey += fmt.Sprint("#", s.n.Add(1))
	}
	return s.Store.EnqueueVolumes(ctx, cs)
}

type partialEnqueue struct{ *memstore.Store }

func (s partialEnqueue) EnqueueVolumes(ctx context.Context, cs []mlmsoft.VolumeChange) ([]mlmsoft.VolumeChange, error) {
	var out []mlmsoft.VolumeChange
	for _, c := range cs {
		got, err := s.Store.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{c})
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

type getVolumesSorted struct{ *memstore.Store }

func (s getVolumesSorted) GetVolumes(ctx context.Context, ids []int64) ([]mlmsoft.VolumeChange, error) {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return s.Store.GetVolumes(ctx, ids)
}

type listVolumesReversed struct{ *memstore.Store }

func (s listVolumesReversed) ListVolumes(ctx context.Context, f mlmsoft.VolumeFilter) ([]mlmsoft.VolumeChange, error) {
	cs, err := s.Store.ListVolumes(ctx, f)
	slices.Reverse(cs)
	return cs, err
}

type claimVolumesNotDue struct{ *memstore.Store }

func (s claimVolumesNotDue) ClaimVolumes(ctx context.Context, c mlmsoft.VolumeClaim) ([]mlmsoft.ClaimedVolume, error) {
	c.Now = c.Now.Add(time.Millisecond)
	c.Lease -= time.Millisecond
	return s.Store.ClaimVolumes(ctx, c)
}

type claimsNonHead struct{ *memstore.Store }

func (s claimsNonHead) ClaimVolumes(ctx context.Context, c mlmsoft.VolumeClaim) ([]mlmsoft.ClaimedVolume, error) {
	hs, err := s.Store.ClaimVolumes(ctx, c)
	for i, h := range hs {
		cs, lerr := s.ListVolumes(ctx, mlmsoft.VolumeFilter{UserID: h.Change.UserID})
		if lerr != nil {
			return nil, lerr
		}
		for _, x := range cs {
			if !x.State.Final() {
				hs[i].Change = x // the last one
			}
		}
	}
	return hs, err
}

type volumeClaimLeaks struct{ *memstore.Store }

func (s volumeClaimLeaks) ClaimVolumes(ctx context.Context, c mlmsoft.VolumeClaim) ([]mlmsoft.ClaimedVolume, error) {
	hs, err := s.Store.ClaimVolumes(ctx, c)
	for _, h := range hs {
		if err == nil {
			err = rewrite(ctx, s.Store, h.Change, c.Owner) // ends the lease
		}
	}
	return hs, err
}

type volumeOwnerUnchecked struct{ *memstore.Store }

func (s volumeOwnerUnchecked) UpdateVolume(ctx context.Context, u mlmsoft.VolumeUpdate) (mlmsoft.VolumeUpdated, error) {
	got, err := s.Store.UpdateVolume(ctx, u)
	if errors.Is(err, mlmsoft.ErrLeaseLost) {
		u.Owner = ""
		return s.Store.UpdateVolume(ctx, u)
	}
	return got, err
}

type fromIgnored struct{ *memstore.Store }

func (s fromIgnored) UpdateVolume(ctx context.Context, u mlmsoft.VolumeUpdate) (mlmsoft.VolumeUpdated, error) {
	if cs, err := s.GetVolumes(ctx, []int64{u.ID}); err == nil {
		u.From = []mlmsoft.VolumeState{cs[0].State}
	}
	return s.Store.UpdateVolume(ctx, u)
}

type volumeLeaseKept struct{ *memstore.Store }

func (s volumeLeaseKept) UpdateVolume(ctx context.Context, u mlmsoft.VolumeUpdate) (mlmsoft.VolumeUpdated, error) {
	if u.Owner != "" && !u.KeepLease {
		u.KeepLease = true
		if u.Send == nil {
			u.LeaseUntil = far
		}
	}
	return s.Store.UpdateVolume(ctx, u)
}

type keepLeaseIgnored struct{ *memstore.Store }

func (s keepLeaseIgnored) UpdateVolume(ctx context.Context, u mlmsoft.VolumeUpdate) (mlmsoft.VolumeUpdated, error) {
	u.KeepLease = false
	return s.Store.UpdateVolume(ctx, u)
}

type sendIgnored struct{ *memstore.Store }

func (s sendIgnored) UpdateVolume(ctx context.Context, u mlmsoft.VolumeUpdate) (mlmsoft.VolumeUpdated, error) {
	u.Send = nil
	return s.Store.UpdateVolume(ctx, u)
}

type sendMarksNonDue struct{ *memstore.Store }

func (s sendMarksNonDue) UpdateVolume(ctx context.Context, u mlmsoft.VolumeUpdate) (mlmsoft.VolumeUpdated, error) {
	if u.Send != nil {
		send := *u.Send
		send.At = send.At.Add(24 * time.Hour)
		u.Send = &send
	}
	return s.Store.UpdateVolume(ctx, u)
}

type sendLeaseForever struct{ *memstore.Store }

func (s sendLeaseForever) UpdateVolume(ctx context.Context, u mlmsoft.VolumeUpdate) (mlmsoft.VolumeUpdated, error) {
	if u.Send != nil {
		u.LeaseUntil = far
	}
	return s.Store.UpdateVolume(ctx, u)
}

// keepIfZero sets each zero field of dst to the field of the same name of
// cur, as an update that writes only the fields it is given would.
func keepIfZero(dst, cur reflect.Value) {
	for i := range dst.NumField() {
		f := dst.Field(i)
		if !dst.Type().Field(i).IsExported() || !f.IsZero() {
			continue
		}
		if c := cur.FieldByName(dst.Type().Field(i).Name); c.IsValid() && c.Type() == f.Type() {
			f.Set(c)
		}
	}
}

type volumeUpdateSkipsZero struct{ *memstore.Store }

func (s volumeUpdateSkipsZero) UpdateVolume(ctx context.Context, u mlmsoft.VolumeUpdate) (mlmsoft.VolumeUpdated, error) {
	if cs, err := s.GetVolumes(ctx, []int64{u.ID}); err == nil {
		keepIfZero(reflect.ValueOf(&u).Elem(), reflect.ValueOf(cs[0]))
	}
	return s.Store.UpdateVolume(ctx, u)
}

type linkUpdateSkipsZero struct{ *memstore.Store }

func (s linkUpdateSkipsZero) UpdateLink(ctx context.Context, u mlmsoft.LinkUpdate) (mlmsoft.Link, error) {
	if cur, err := s.GetLink(ctx, u.Link.UserID); err == nil {
		keepIfZero(reflect.ValueOf(&u.Link).Elem(), reflect.ValueOf(cur))
	}
	return s.Store.UpdateLink(ctx, u)
}

type purgeKeepsKeys struct {
	*memstore.Store
	mu     sync.Mutex
	purged map[string]mlmsoft.VolumeChange
}

func (s *purgeKeepsKeys) PurgeVolumes(ctx context.Context, before time.Time, limit int) (int, error) {
	all, err := s.ListVolumes(ctx, mlmsoft.VolumeFilter{})
	if err != nil {
		return 0, err
	}
	n, err := s.Store.PurgeVolumes(ctx, before, limit)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.purged == nil {
		s.purged = map[string]mlmsoft.VolumeChange{}
	}
	for _, c := range all {
		if _, gerr := s.GetVolumes(ctx, []int64{c.ID}); errors.Is(gerr, mlmsoft.ErrNotFound) {
			s.purged[c.IdempotencyKey] = c
		}
	}
	return n, err
}

func (s *purgeKeepsKeys) EnqueueVolumes(ctx context.Context, cs []mlmsoft.VolumeChange) ([]mlmsoft.VolumeChange, error) {
	s.mu.Lock()
	var fresh []mlmsoft.VolumeChange
	out := make([]mlmsoft.VolumeChange, len(cs))
	stale := make([]bool, len(cs))
	for i, c := range cs {
		if old, ok := s.purged[c.IdempotencyKey]; ok {
			out[i], stale[i] = old, true
			continue
		}
		fresh = append(fresh, c)
	}
	s.mu.Unlock()
	got, err := s.Store.EnqueueVolumes(ctx, fresh)
	if err != nil {
		return nil, err
	}
	for i := range out {
		if !stale[i] {
			out[i], got = got[0], got[1:]
		}
	}
	return out, nil
}

type purgeOverLimit struct{ *memstore.Store }

func (s purgeOverLimit) PurgeVolumes(ctx context.Context, before time.Time, limit int) (int, error) {
	return s.Store.PurgeVolumes(ctx, before, limit+1)
}

type purgeCountWrong struct{ *memstore.Store }

func (s purgeCountWrong) PurgeVolumes(ctx context.Context, before time.Time, limit int) (int, error) {
	n, err := s.Store.PurgeVolumes(ctx, before, limit)
	if n > 0 {
		n = limit
	}
	return n, err
}

type eventDoneIgnored struct{ *memstore.Store }

func (s eventDoneIgnored) UpdateEvent(ctx context.Context, u mlmsoft.EventUpdate) error {
	u.Done = false
	return s.Store.UpdateEvent(ctx, u)
}

type eventsNotStored struct{ *memstore.Store }

func (s eventsNotStored) CreateLink(ctx context.Context, l mlmsoft.Link, _ ...mlmsoft.Event) (mlmsoft.Link, error) {
	return s.Store.CreateLink(ctx, l)
}

func (s eventsNotStored) UpdateLink(ctx context.Context, u mlmsoft.LinkUpdate) (mlmsoft.Link, error) {
	u.Events = nil
	return s.Store.UpdateLink(ctx, u)
}

type eventClaimTiesReversed struct{ *memstore.Store }

func (s eventClaimTiesReversed) ClaimEvents(ctx context.Context, c mlmsoft.EventClaim) ([]mlmsoft.Event, error) {
	es, err := s.Store.ClaimEvents(ctx, c)
	slices.SortStableFunc(es, func(a, b mlmsoft.Event) int {
		return cmp.Or(a.NextAttemptAt.Compare(b.NextAttemptAt), a.CreatedAt.Compare(b.CreatedAt), strings.Compare(b.ID, a.ID))
	})
	return es, err
}

type oldestOfAll struct{ *memstore.Store }

func (s oldestOfAll) Counts(ctx context.Context) (mlmsoft.Counts, error) {
	c, err := s.Store.Counts(ctx)
	if err != nil {
		return c, err
	}
	all, err := s.ListVolumes(ctx, mlmsoft.VolumeFilter{})
	for _, v := range all {
		if c.OldestOpen.IsZero() || v.CreatedAt.Before(c.OldestOpen) {
			c.OldestOpen = v.CreatedAt
		}
	}
	return c, err
}

type failingIsAll struct{ *memstore.Store }

func (s failingIsAll) Counts(ctx context.Context) (mlmsoft.Counts, error) {
	c, err := s.Store.Counts(ctx)
	c.FailingEvents = c.Events
	return c, err
}

type claimSendIgnored struct{ *memstore.Store }

func (s claimSendIgnored) ClaimVolumes(ctx context.Context, c mlmsoft.VolumeClaim) ([]mlmsoft.ClaimedVolume, error) {
	c.Send = false
	return s.Store.ClaimVolumes(ctx, c)
}

// claimSendsUnlinked marks every pending head for VolumeClaim.Send, its
// user linked or not.
type claimSendsUnlinked struct{ *memstore.Store }

func (s claimSendsUnlinked) ClaimVolumes(ctx context.Context, c mlmsoft.VolumeClaim) ([]mlmsoft.ClaimedVolume, error) {
	hs, err := s.Store.ClaimVolumes(ctx, c)
	for i, h := range hs {
		if err != nil || !c.Send || h.Sending || h.Change.State != mlmsoft.VolumePending {
			continue
		}
		v := h.Change
		var res mlmsoft.VolumeUpdated
		res, err = s.UpdateVolume(ctx, mlmsoft.VolumeUpdate{ID: v.ID, Owner: c.Owner, KeepLease: true, LeaseUntil: c.Now.Add(c.Lease),
			From: []mlmsoft.VolumeState{mlmsoft.VolumePending}, State: mlmsoft.VolumeSending, Attempts: v.Attempts + 1,
			NextAttemptAt: v.NextAttemptAt, LastError: v.LastError, DocumentID: v.DocumentID, AccountID: 1,
			SentAt: c.Now, UpdatedAt: c.Now})
		hs[i] = mlmsoft.ClaimedVolume{Change: res.Change, Sending: true}
	}
	return hs, err
}

type unlimitedClaims struct{ *memstore.Store }

func (s unlimitedClaims) ClaimVolumes(ctx context.Context, c mlmsoft.VolumeClaim) ([]mlmsoft.ClaimedVolume, error) {
	c.Limit++
	return s.Store.ClaimVolumes(ctx, c)
}

func (s unlimitedClaims) ClaimLinks(ctx context.Context, c mlmsoft.LinkClaim) ([]mlmsoft.Link, error) {
	c.Limit++
	return s.Store.ClaimLinks(ctx, c)
}

func (s unlimitedClaims) ClaimEvents(ctx context.Context, c mlmsoft.EventClaim) ([]mlmsoft.Event, error) {
	c.Limit++
	return s.Store.ClaimEvents(ctx, c)
}
