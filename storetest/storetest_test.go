package storetest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
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

// mutantEnv names the mutant TestMutant runs the suite against, in a child
// process started by TestSuiteCatchesMutants.
const mutantEnv = "STORETEST_MUTANT"

// A mutant is memstore with one deliberate contract violation, and the
// subtests of the suite that must catch it.
type mutant struct {
	name  string
	catch []string // subtest paths under Run, e.g. "Link/Claim"
	wrap  func(*memstore.Store) mlmsoft.Store
}

var mutants = []mutant{
	{"ClaimLinksNotDue", []string{"Link/Claim"}, func(s *memstore.Store) mlmsoft.Store { return linkClaimNotDue{s} }},
	{"UpdateLinkNoCAS", []string{"Link/UpdateCAS", "Link/UpdateConcurrentCAS", "Link/ClaimLeaseExpiry"}, func(s *memstore.Store) mlmsoft.Store { return linkNoCAS{s} }},
	{"EmptyPasswordNil", []string{"Link/SealedPasswordNilVsEmpty"}, func(s *memstore.Store) mlmsoft.Store { return linkEmptyPasswordNil{s} }},
	{"ListLinksReversed", []string{"Link/List"}, func(s *memstore.Store) mlmsoft.Store { return linkListReversed{s} }},
	{"EmailFolded", []string{"Link/EmailsComparedAsGiven"}, func(s *memstore.Store) mlmsoft.Store { return linkEmailFolded{s} }},
	{"NotIdempotent", []string{"Volume/Idempotent", "Volume/IdempotencyWithinBatch", "Volume/EnqueueConcurrentSameKey"}, func(s *memstore.Store) mlmsoft.Store { return &volNotIdempotent{Store: s} }},
	{"PartialBatch", []string{"Volume/IdempotencyConflict"}, func(s *memstore.Store) mlmsoft.Store { return volPartialBatch{s} }},
	{"LeaseLeak", []string{"Volume/ClaimLease", "Volume/ClaimHeadOnly", "Concurrency/VolumeClaimers"}, func(s *memstore.Store) mlmsoft.Store { return volLeaseLeak{s} }},
	{"OwnerUnchecked", []string{"Volume/UpdateLeaseLost", "Volume/ClaimLease"}, func(s *memstore.Store) mlmsoft.Store { return volOwnerUnchecked{s} }},
	{"OperatorIgnoresLease", []string{"Volume/UpdateOperator"}, func(s *memstore.Store) mlmsoft.Store { return volOperatorIgnoresLease{s} }},
	{"FromIgnored", []string{"Volume/UpdateFrom", "Volume/UpdateConcurrentFrom"}, func(s *memstore.Store) mlmsoft.Store { return volFromIgnored{s} }},
	{"ReleaseIgnored", []string{"Volume/UpdateRelease", "Volume/ClaimHeadOnly"}, func(s *memstore.Store) mlmsoft.Store { return volReleaseIgnored{s} }},
	{"ExcludeIgnored", []string{"Volume/ClaimExclude"}, func(s *memstore.Store) mlmsoft.Store { return volExcludeIgnored{s} }},
	{"WakeNoop", []string{"Volume/Wake"}, func(s *memstore.Store) mlmsoft.Store { return volWakeNoop{s} }},
	{"GetVolumesSorted", []string{"Volume/GetVolumes"}, func(s *memstore.Store) mlmsoft.Store { return volGetSorted{s} }},
	{"OldestOfAll", []string{"Volume/Count"}, func(s *memstore.Store) mlmsoft.Store { return volOldestOfAll{s} }},
	{"UnlimitedClaims", []string{"Volume/ClaimOrderLimit", "Link/ClaimLimitOrder"}, func(s *memstore.Store) mlmsoft.Store { return unlimitedClaims{s} }},
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
	storetest.Run(t, func(*testing.T) mlmsoft.Store { return mutants[i].wrap(memstore.New()) })
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
			args := []string{"-test.run=" + strings.Join(pattern, "/"), "-test.count=1", "-test.timeout=120s"}
			if testing.Short() {
				args = append(args, "-test.short")
			}
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

type linkClaimNotDue struct{ *memstore.Store }

func (s linkClaimNotDue) ClaimLinks(ctx context.Context, c mlmsoft.LinkClaim) ([]mlmsoft.Link, error) {
	c.Now = c.Now.Add(time.Millisecond) // claims work due a millisecond later
	c.Lease -= time.Millisecond
	return s.Store.ClaimLinks(ctx, c)
}

type linkNoCAS struct{ *memstore.Store }

func (s linkNoCAS) UpdateLink(ctx context.Context, l mlmsoft.Link) (mlmsoft.Link, error) {
	if cur, err := s.GetLink(ctx, l.UserID); err == nil {
		l.Version = cur.Version
	}
	return s.Store.UpdateLink(ctx, l)
}

type linkEmptyPasswordNil struct{ *memstore.Store }

func (s linkEmptyPasswordNil) CreateLink(ctx context.Context, l mlmsoft.Link) (mlmsoft.Link, error) {
	if len(l.SealedPassword) == 0 {
		l.SealedPassword = nil
	}
	return s.Store.CreateLink(ctx, l)
}

func (s linkEmptyPasswordNil) UpdateLink(ctx context.Context, l mlmsoft.Link) (mlmsoft.Link, error) {
	if len(l.SealedPassword) == 0 {
		l.SealedPassword = nil
	}
	return s.Store.UpdateLink(ctx, l)
}

type linkListReversed struct{ *memstore.Store }

func (s linkListReversed) ListLinks(ctx context.Context, f mlmsoft.LinkFilter) ([]mlmsoft.Link, error) {
	ls, err := s.Store.ListLinks(ctx, f)
	slices.Reverse(ls)
	return ls, err
}

type linkEmailFolded struct{ *memstore.Store }

func (s linkEmailFolded) GetLinkByEmail(ctx context.Context, email string) (mlmsoft.Link, error) {
	return s.Store.GetLinkByEmail(ctx, strings.ToLower(email))
}

type volNotIdempotent struct {
	*memstore.Store
	n atomic.Int64
}

func (s *volNotIdempotent) EnqueueVolumes(ctx context.Context, cs []mlmsoft.VolumeChange) ([]mlmsoft.VolumeChange, error) {
	cs = slices.Clone(cs)
	for i := range cs {
		cs[i].IdempotencyKey += fmt.Sprint("#", s.n.Add(1))
	}
	return s.Store.EnqueueVolumes(ctx, cs)
}

type volPartialBatch struct{ *memstore.Store }

func (s volPartialBatch) EnqueueVolumes(ctx context.Context, cs []mlmsoft.VolumeChange) ([]mlmsoft.VolumeChange, error) {
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

type volLeaseLeak struct{ *memstore.Store }

func (s volLeaseLeak) ClaimVolumes(ctx context.Context, c mlmsoft.VolumeClaim) ([]mlmsoft.VolumeChange, error) {
	got, err := s.Store.ClaimVolumes(ctx, c)
	for _, h := range got {
		_ = s.ReleaseVolumeUser(ctx, c.Owner, h.UserID)
	}
	return got, err
}

type volOwnerUnchecked struct{ *memstore.Store }

func (s volOwnerUnchecked) UpdateVolume(ctx context.Context, u mlmsoft.VolumeUpdate) (mlmsoft.VolumeChange, error) {
	got, err := s.Store.UpdateVolume(ctx, u)
	if errors.Is(err, mlmsoft.ErrLeaseLost) && u.Owner != "" {
		cs, gerr := s.GetVolumes(ctx, []int64{u.ID})
		if gerr != nil {
			return got, gerr
		}
		return cs[0], nil
	}
	return got, err
}

type volOperatorIgnoresLease struct{ *memstore.Store }

func (s volOperatorIgnoresLease) UpdateVolume(ctx context.Context, u mlmsoft.VolumeUpdate) (mlmsoft.VolumeChange, error) {
	got, err := s.Store.UpdateVolume(ctx, u)
	if errors.Is(err, mlmsoft.ErrLeaseLost) && u.Owner == "" {
		cs, gerr := s.GetVolumes(ctx, []int64{u.ID})
		if gerr != nil {
			return got, gerr
		}
		return cs[0], nil
	}
	return got, err
}

type volFromIgnored struct{ *memstore.Store }

func (s volFromIgnored) UpdateVolume(ctx context.Context, u mlmsoft.VolumeUpdate) (mlmsoft.VolumeChange, error) {
	u.From = nil
	return s.Store.UpdateVolume(ctx, u)
}

type volReleaseIgnored struct{ *memstore.Store }

func (s volReleaseIgnored) UpdateVolume(ctx context.Context, u mlmsoft.VolumeUpdate) (mlmsoft.VolumeChange, error) {
	u.Release = false
	return s.Store.UpdateVolume(ctx, u)
}

type volExcludeIgnored struct{ *memstore.Store }

func (s volExcludeIgnored) ClaimVolumes(ctx context.Context, c mlmsoft.VolumeClaim) ([]mlmsoft.VolumeChange, error) {
	c.Exclude = nil
	return s.Store.ClaimVolumes(ctx, c)
}

type volWakeNoop struct{ *memstore.Store }

func (volWakeNoop) WakeVolumes(context.Context, string, time.Time) error { return nil }

type volGetSorted struct{ *memstore.Store }

func (s volGetSorted) GetVolumes(ctx context.Context, ids []int64) ([]mlmsoft.VolumeChange, error) {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return s.Store.GetVolumes(ctx, ids)
}

type volOldestOfAll struct{ *memstore.Store }

func (s volOldestOfAll) CountVolumes(ctx context.Context) (mlmsoft.VolumeCounts, error) {
	c, err := s.Store.CountVolumes(ctx)
	if err != nil {
		return c, err
	}
	all, err := s.ListVolumes(ctx, mlmsoft.VolumeFilter{})
	for _, v := range all {
		if !v.State.Final() && (c.OldestPending.IsZero() || v.CreatedAt.Before(c.OldestPending)) {
			c.OldestPending = v.CreatedAt
		}
	}
	return c, err
}

type unlimitedClaims struct{ *memstore.Store }

func (s unlimitedClaims) ClaimVolumes(ctx context.Context, c mlmsoft.VolumeClaim) ([]mlmsoft.VolumeChange, error) {
	c.Limit++
	return s.Store.ClaimVolumes(ctx, c)
}

func (s unlimitedClaims) ClaimLinks(ctx context.Context, c mlmsoft.LinkClaim) ([]mlmsoft.Link, error) {
	c.Limit++
	return s.Store.ClaimLinks(ctx, c)
}
