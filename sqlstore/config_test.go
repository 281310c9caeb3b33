package sqlstore

import (
	"database/sql"
	"errors"
	"fmt"
	"testing"

	"github.com/mlmsoft-go/mlmsoft"
)

// sqlDBStub is a *sql.DB for tests that never reach a database.
var sqlDBStub sql.DB

func TestNewValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		db      *sql.DB
		d       Dialect
		prefix  string
		wantErr bool
	}{
		{name: "default prefix", db: &sqlDBStub, d: SQLite{}},
		{name: "custom prefix", db: &sqlDBStub, d: Postgres{}, prefix: "app_mlm_2_"},
		{name: "underscore first", db: &sqlDBStub, d: MySQL{}, prefix: "_x"},
		{name: "nil db", d: SQLite{}, wantErr: true},
		{name: "nil dialect", db: &sqlDBStub, wantErr: true},
		{name: "digit first", db: &sqlDBStub, d: SQLite{}, prefix: "1x_", wantErr: true},
		{name: "upper case", db: &sqlDBStub, d: SQLite{}, prefix: "Mlm_", wantErr: true},
		{name: "quote", db: &sqlDBStub, d: SQLite{}, prefix: "x';--", wantErr: true},
		{name: "space", db: &sqlDBStub, d: SQLite{}, prefix: "a b", wantErr: true},
		{name: "too long", db: &sqlDBStub, d: SQLite{}, prefix: "abcdefghijklmnopqrstuvwxyz_abcdef_", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := New(tt.db, tt.d, Config{TablePrefix: tt.prefix})
			if tt.wantErr {
				if !errors.Is(err, mlmsoft.ErrInvalidConfig) {
					t.Fatalf("New error = %v, want ErrInvalidConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tt.prefix
			if want == "" {
				want = TablePrefixDefault
			}
			if s.TablePrefix() != want {
				t.Errorf("prefix %q, want %q", s.TablePrefix(), want)
			}
		})
	}
}

func TestBindDollar(t *testing.T) {
	t.Parallel()
	got := bindDollar("SELECT a FROM t WHERE b = ? AND c IN (?, ?) LIMIT ?")
	want := "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3) LIMIT $4"
	if got != want {
		t.Fatalf("bindDollar = %q, want %q", got, want)
	}
}

// mysqlErr mimics *mysql.MySQLError, read by reflection.
type mysqlErr struct {
	Number  uint16
	Message string
}

func (e *mysqlErr) Error() string { return fmt.Sprintf("Error %d: %s", e.Number, e.Message) }

type textErr string

func (e textErr) Error() string { return string(e) }

type codeErr int

func (e codeErr) Error() string { return fmt.Sprintf("sqlite code %d", int(e)) }
func (e codeErr) Code() int     { return int(e) }

type stateErr string

func (e stateErr) Error() string    { return "pg " + string(e) }
func (e stateErr) SQLState() string { return string(e) }

func TestErrorClassification(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("exec: %w", err) }
	tests := []struct {
		name              string
		d                 Dialect
		err               error
		unique, retryable bool
	}{
		{"mysql dup field", MySQL{}, wrap(&mysqlErr{Number: 1062}), true, false},
		{"mysql deadlock field", MySQL{}, wrap(&mysqlErr{Number: 1213}), false, true},
		{"mysql other", MySQL{}, wrap(&mysqlErr{Number: 1146}), false, false},
		{"mysql dup text", MySQL{}, wrap(textErr("Error 1062 (23000): Duplicate entry")), true, false},
		{"mysql unrelated text", MySQL{}, wrap(textErr("Error in something")), false, false},
		{"pg unique", Postgres{}, wrap(stateErr("23505")), true, false},
		{"pg deadlock", Postgres{}, wrap(stateErr("40P01")), false, true},
		{"pg serialization", Postgres{}, wrap(stateErr("40001")), false, true},
		{"pg other", Postgres{}, wrap(stateErr("42P01")), false, false},
		{"sqlite unique", SQLite{}, wrap(codeErr(2067)), true, false},
		{"sqlite pk", SQLite{}, wrap(codeErr(1555)), true, false},
		{"sqlite busy", SQLite{}, wrap(codeErr(5)), false, true},
		{"sqlite busy snapshot", SQLite{}, wrap(codeErr(517)), false, true},
		{"sqlite text unique", SQLite{}, wrap(textErr("UNIQUE constraint failed: t.x")), true, false},
		{"sqlite other", SQLite{}, wrap(codeErr(1)), false, false},
		{"joined", Postgres{}, errors.Join(errors.New("x"), stateErr("23505")), true, false},
	}
	for _, tt := range tests {
		if got := tt.d.uniqueViolation(tt.err); got != tt.unique {
			t.Errorf("%s: uniqueViolation = %v, want %v", tt.name, got, tt.unique)
		}
		if got := tt.d.retryable(tt.err); got != tt.retryable {
			t.Errorf("%s: retryable = %v, want %v", tt.name, got, tt.retryable)
		}
	}
}
