package sqlstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/mlmsoft-go/mlmsoft"
)

func TestOpenSQLite(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "demo.db")
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	for pragma, want := range map[string]string{
		"journal_mode": "wal",
		"foreign_keys": "1",
		"busy_timeout": fmt.Sprint(SQLiteBusyTimeoutMillis),
		"synchronous":  "2",
	} {
		var got string
		if err := s.DB().QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
	// Concurrent writers from many goroutines never see SQLITE_BUSY.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			for i := range 10 {
				id := fmt.Sprintf("g%d-%d", g, i)
				if _, err := s.CreateLink(ctx, mlmsoft.Link{UserID: id, State: mlmsoft.LinkPending}); err != nil {
					errs <- err
					return
				}
				if _, err := s.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{change("u", id, "1")}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopening migrates nothing and finds the data.
	s, err = OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	counts, err := s.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Links[mlmsoft.LinkPending] != 160 || counts.Volumes[mlmsoft.VolumePending] != 160 {
		t.Fatalf("counts after reopening = %+v, want 160 pending links and changes", counts)
	}
}

func TestOpenSQLiteMemory(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, err := OpenSQLite(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			if _, err := s.CreateLink(ctx, mlmsoft.Link{UserID: fmt.Sprint(g), State: mlmsoft.LinkPending}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	links, err := s.ListLinks(ctx, mlmsoft.LinkFilter{})
	if err != nil || len(links) != 4 {
		t.Fatalf("ListLinks = %d links, %v; want 4 (one shared in-memory database)", len(links), err)
	}
}

func TestOpenSQLiteBadPath(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"", "x.db?mode=ro"} {
		if _, err := OpenSQLite(testCtx(t), p); !errors.Is(err, mlmsoft.ErrInvalidConfig) {
			t.Errorf("OpenSQLite(%q) = %v, want ErrInvalidConfig", p, err)
		}
	}
	// A directory that does not exist: the driver's error.
	if _, err := OpenSQLite(testCtx(t), filepath.Join(t.TempDir(), "missing", "x.db")); err == nil {
		t.Error("OpenSQLite in a missing directory succeeded")
	}
}

// TestMySQLDSNTimeOptions: times round-trip whatever parseTime and loc the
// host's DSN uses, and stores opened with different options agree.
func TestMySQLDSNTimeOptions(t *testing.T) {
	t.Parallel()
	dsn := os.Getenv(envMySQL)
	if dsn == "" {
		t.Skipf("mysql tests skipped: set %s", envMySQL)
	}
	base, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	db := newTestDB(t, backends[2])
	var stores []*Store
	for _, opt := range []struct {
		parseTime bool
		loc       *time.Location
	}{{false, time.UTC}, {true, time.UTC}, {true, tokyo}, {false, tokyo}} {
		cfg := base.Clone()
		cfg.ParseTime, cfg.Loc = opt.parseTime, opt.loc
		db.dsn = cfg.FormatDSN()
		stores = append(stores, db.store())
	}
	ctx := testCtx(t)
	in := fullLink("u")
	if _, err := stores[2].CreateLink(ctx, in); err != nil {
		t.Fatal(err)
	}
	for i, s := range stores {
		got, err := s.GetLink(ctx, "u")
		if err != nil {
			t.Fatal(err)
		}
		checkLink(t, fmt.Sprint("store ", i), got, wantLink(in, 1, mlmsoft.Lease{}))
	}
	// Comparisons agree too: the link is due at its NextAttemptAt, not
	// before.
	got, err := stores[3].ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "w", Now: in.NextAttemptAt.Add(-time.Microsecond), Lease: time.Minute, Limit: 1})
	if err != nil || len(got) != 0 {
		t.Fatalf("claim before the link is due = %v, %v", got, err)
	}
	got, err = stores[0].ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "w", Now: in.NextAttemptAt, Lease: time.Minute, Limit: 1})
	if err != nil || len(got) != 1 {
		t.Fatalf("claim when the link is due = %v, %v", got, err)
	}
	// And the lease lapses at its end, whoever reads it.
	got, err = stores[1].ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "w2", Now: in.NextAttemptAt.Add(time.Minute - time.Microsecond), Lease: time.Minute, Limit: 1})
	if err != nil || len(got) != 0 {
		t.Fatalf("claim during the lease = %v, %v", got, err)
	}
	got, err = stores[2].ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "w2", Now: in.NextAttemptAt.Add(time.Minute), Lease: time.Minute, Limit: 1})
	if err != nil || len(got) != 1 {
		t.Fatalf("claim at the lease's end = %v, %v", got, err)
	}
}
