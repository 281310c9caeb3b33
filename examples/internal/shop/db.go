package shop

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The SQL dialects the shop's tables are written for: the same three as
// sqlstore's, since the shop's tables live in the plugin's database (one
// transaction covers a new user and their pending link, an order and its
// volume changes).
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
	DialectMySQL    = "mysql"
)

// ErrNotFound is returned by the lookups of DB when there is no such row.
var ErrNotFound = errors.New("shop: not found")

// User is a shop user. The password hash never leaves DB.
type User struct {
	ID        string
	Email     string // normalised with mlmsoft.NormalizeEmail
	Name      string
	SponsorID string // the shop user who referred them; "" for none
	CreatedAt time.Time
}

// Product is something to buy. Price is what the customer pays; Status and
// PV are what a purchase sends to MLM Soft (exact decimals, as text).
type Product struct {
	ID          string
	Name        string
	Description string
	Price       string
	Status      string
	PV          string
}

// Order is a purchase of one product, with the values it sent to MLM Soft
// copied from the product at the time.
type Order struct {
	ID          string
	UserID      string
	ProductID   string
	ProductName string
	Price       string
	Status      string
	PV          string
	CreatedAt   time.Time
}

// DB holds the shop's own tables (users, products, orders, sessions), in
// the database the plugin's sqlstore uses, under the prefix "shop_".
type DB struct {
	db      *sql.DB
	dialect string
}

// NewDB returns the shop's tables in db, written in dialect (one of the
// Dialect constants). Call Migrate before using it.
func NewDB(db *sql.DB, dialect string) (*DB, error) {
	switch dialect {
	case DialectSQLite, DialectPostgres, DialectMySQL:
	default:
		return nil, fmt.Errorf("shop: unknown SQL dialect %q", dialect)
	}
	return &DB{db: db, dialect: dialect}, nil
}

// SQL returns the *sql.DB, on which a transaction can be begun for the
// plugin's ...Tx methods.
func (d *DB) SQL() *sql.DB { return d.db }

// Dialect returns the dialect's name.
func (d *DB) Dialect() string { return d.dialect }

// queryer is what *sql.DB and *sql.Tx offer.
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// bind turns the ? placeholders of query into the dialect's. The queries of
// this file hold no ? anywhere but as placeholders.
func (d *DB) bind(query string) string {
	if d.dialect != DialectPostgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// schema returns the statements creating the shop's tables, each safe to run
// again.
func (d *DB) schema() []string {
	if d.dialect == DialectMySQL {
		const opts = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
		return []string{
			`CREATE TABLE IF NOT EXISTS shop_users (
	id VARCHAR(40) NOT NULL PRIMARY KEY,
	email VARCHAR(254) NOT NULL,
	name VARCHAR(255) NOT NULL,
	password_hash VARCHAR(100) NOT NULL,
	sponsor_id VARCHAR(40) NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	UNIQUE KEY shop_users_email (email),
	KEY shop_users_sponsor (sponsor_id)
)` + opts,
			`CREATE TABLE IF NOT EXISTS shop_products (
	id VARCHAR(40) NOT NULL PRIMARY KEY,
	position INT NOT NULL,
	name VARCHAR(255) NOT NULL,
	description VARCHAR(1000) NOT NULL,
	price VARCHAR(40) NOT NULL,
	status_value VARCHAR(40) NOT NULL,
	pv VARCHAR(40) NOT NULL
)` + opts,
			`CREATE TABLE IF NOT EXISTS shop_orders (
	id VARCHAR(40) NOT NULL PRIMARY KEY,
	user_id VARCHAR(40) NOT NULL,
	product_id VARCHAR(40) NOT NULL,
	product_name VARCHAR(255) NOT NULL,
	price VARCHAR(40) NOT NULL,
	status_value VARCHAR(40) NOT NULL,
	pv VARCHAR(40) NOT NULL,
	created_at BIGINT NOT NULL,
	KEY shop_orders_user (user_id, created_at)
)` + opts,
			`CREATE TABLE IF NOT EXISTS shop_sessions (
	id_hash VARCHAR(64) NOT NULL PRIMARY KEY,
	user_id VARCHAR(40) NOT NULL DEFAULT '',
	csrf VARCHAR(64) NOT NULL,
	flash_kind VARCHAR(10) NOT NULL DEFAULT '',
	flash VARCHAR(1000) NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	KEY shop_sessions_expires (expires_at)
)` + opts,
		}
	}
	// SQLite and PostgreSQL share their DDL.
	return []string{
		`CREATE TABLE IF NOT EXISTS shop_users (
	id VARCHAR(40) NOT NULL PRIMARY KEY,
	email VARCHAR(254) NOT NULL UNIQUE,
	name VARCHAR(255) NOT NULL,
	password_hash VARCHAR(100) NOT NULL,
	sponsor_id VARCHAR(40) NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL
)`,
		`CREATE INDEX IF NOT EXISTS shop_users_sponsor ON shop_users (sponsor_id)`,
		`CREATE TABLE IF NOT EXISTS shop_products (
	id VARCHAR(40) NOT NULL PRIMARY KEY,
	position INT NOT NULL,
	name VARCHAR(255) NOT NULL,
	description VARCHAR(1000) NOT NULL,
	price VARCHAR(40) NOT NULL,
	status_value VARCHAR(40) NOT NULL,
	pv VARCHAR(40) NOT NULL
)`,
		`CREATE TABLE IF NOT EXISTS shop_orders (
	id VARCHAR(40) NOT NULL PRIMARY KEY,
	user_id VARCHAR(40) NOT NULL,
	product_id VARCHAR(40) NOT NULL,
	product_name VARCHAR(255) NOT NULL,
	price VARCHAR(40) NOT NULL,
	status_value VARCHAR(40) NOT NULL,
	pv VARCHAR(40) NOT NULL,
	created_at BIGINT NOT NULL
)`,
		`CREATE INDEX IF NOT EXISTS shop_orders_user ON shop_orders (user_id, created_at)`,
		`CREATE TABLE IF NOT EXISTS shop_sessions (
	id_hash VARCHAR(64) NOT NULL PRIMARY KEY,
	user_id VARCHAR(40) NOT NULL DEFAULT '',
	csrf VARCHAR(64) NOT NULL,
	flash_kind VARCHAR(10) NOT NULL DEFAULT '',
	flash VARCHAR(1000) NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL
)`,
		`CREATE INDEX IF NOT EXISTS shop_sessions_expires ON shop_sessions (expires_at)`,
	}
}

// Migrate creates the shop's tables if they are missing and puts the demo
// products in an empty catalogue.
func (d *DB) Migrate(ctx context.Context) error {
	for _, stmt := range d.schema() {
		if _, err := d.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("shop: create tables: %w", err)
		}
	}
	return d.seedProducts(ctx)
}

// DemoProducts is the catalogue a new database starts with: each purchase
// sends the product's Status, then its PV, to MLM Soft.
var DemoProducts = []Product{
	{ID: "starter-kit", Name: "Starter kit", Description: "Everything to begin with: makes you a Member.", Price: "29.00", Status: "1", PV: "20"},
	{ID: "wellness-pack", Name: "Wellness pack", Description: "A month of vitamins: makes you a Partner.", Price: "49.90", Status: "2", PV: "49.90"},
	{ID: "pro-bundle", Name: "Pro bundle", Description: "For the serious: makes you a Leader.", Price: "149.00", Status: "3", PV: "120.5"},
}

func (d *DB) seedProducts(ctx context.Context) error {
	var n int
	if err := d.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM shop_products").Scan(&n); err != nil {
		return fmt.Errorf("shop: count products: %w", err)
	}
	if n > 0 {
		return nil
	}
	for i, p := range DemoProducts {
		_, err := d.db.ExecContext(ctx, d.bind(`INSERT INTO shop_products (id, position, name, description, price, status_value, pv)
VALUES (?, ?, ?, ?, ?, ?, ?)`), p.ID, i, p.Name, p.Description, p.Price, p.Status, p.PV)
		if err != nil {
			// Another replica seeding at the same moment put it there.
			if _, gerr := d.Product(ctx, p.ID); gerr == nil {
				continue
			}
			return fmt.Errorf("shop: add product %s: %w", p.ID, err)
		}
	}
	return nil
}

// NewID returns a random id with prefix ("u-", "o-"...): 16 lower-case
// letters and digits, 80 bits of randomness, so that ids never clash across
// runs or replicas.
func NewID(prefix string) string {
	b := make([]byte, 10)
	_, _ = rand.Read(b) // never fails (crypto/rand panics rather)
	return prefix + strings.ToLower(base32.StdEncoding.EncodeToString(b))
}

// ValidID reports whether s looks like an id NewID made with prefix.
func ValidID(prefix, s string) bool {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok || len(rest) != 16 {
		return false
	}
	for _, r := range rest {
		if !('a' <= r && r <= 'z' || '2' <= r && r <= '7') {
			return false
		}
	}
	return true
}

func micros(t time.Time) int64      { return t.UnixMicro() }
func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// Products returns the catalogue in display order.
func (d *DB) Products(ctx context.Context) ([]Product, error) {
	out, err := queryAll(ctx, d.db, func(row scanner) (Product, error) {
		var p Product
		err := row.Scan(&p.ID, &p.Name, &p.Description, &p.Price, &p.Status, &p.PV)
		return p, err
	}, "SELECT id, name, description, price, status_value, pv FROM shop_products ORDER BY position, id")
	if err != nil {
		return nil, fmt.Errorf("shop: list products: %w", err)
	}
	return out, nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(...any) error }

// queryAll runs query on db and scans every row with scan.
func queryAll[T any](ctx context.Context, db *sql.DB, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Product returns one product, or ErrNotFound.
func (d *DB) Product(ctx context.Context, id string) (Product, error) {
	var p Product
	err := d.db.QueryRowContext(ctx, d.bind("SELECT id, name, description, price, status_value, pv FROM shop_products WHERE id = ?"), id).
		Scan(&p.ID, &p.Name, &p.Description, &p.Price, &p.Status, &p.PV)
	if errors.Is(err, sql.ErrNoRows) {
		return Product{}, ErrNotFound
	}
	if err != nil {
		return Product{}, fmt.Errorf("shop: product %s: %w", id, err)
	}
	return p, nil
}

const userColumns = "id, email, name, sponsor_id, created_at"

func scanUser(row scanner, extra ...any) (User, error) {
	var u User
	var created int64
	err := row.Scan(append([]any{&u.ID, &u.Email, &u.Name, &u.SponsorID, &created}, extra...)...)
	u.CreatedAt = fromMicros(created)
	return u, err
}

// User returns the user with id, or ErrNotFound.
func (d *DB) User(ctx context.Context, id string) (User, error) {
	return d.user(ctx, d.db, "id", id)
}

// UserByEmail returns the user with the normalised email, or ErrNotFound.
func (d *DB) UserByEmail(ctx context.Context, email string) (User, error) {
	return d.user(ctx, d.db, "email", email)
}

func (d *DB) user(ctx context.Context, q queryer, col, v string) (User, error) {
	u, err := scanUser(q.QueryRowContext(ctx, d.bind("SELECT "+userColumns+" FROM shop_users WHERE "+col+" = ?"), v))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("shop: user by %s: %w", col, err)
	}
	return u, nil
}

// PasswordHash returns the password hash of the user with the normalised
// email, or ErrNotFound.
func (d *DB) PasswordHash(ctx context.Context, email string) (User, string, error) {
	var hash string
	u, err := scanUser(d.db.QueryRowContext(ctx, d.bind("SELECT "+userColumns+", password_hash FROM shop_users WHERE email = ?"), email), &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, "", ErrNotFound
	}
	if err != nil {
		return User{}, "", fmt.Errorf("shop: user by email: %w", err)
	}
	return u, hash, nil
}

// InsertUser adds u with its password hash in tx.
func (d *DB) InsertUser(ctx context.Context, tx *sql.Tx, u User, passwordHash string) error {
	_, err := tx.ExecContext(ctx, d.bind("INSERT INTO shop_users ("+userColumns+", password_hash) VALUES (?, ?, ?, ?, ?, ?)"),
		u.ID, u.Email, u.Name, u.SponsorID, micros(u.CreatedAt), passwordHash)
	if err != nil {
		return fmt.Errorf("shop: add user: %w", err)
	}
	return nil
}

// Referrals returns the users whom userID referred, oldest first.
func (d *DB) Referrals(ctx context.Context, userID string) ([]User, error) {
	out, err := queryAll(ctx, d.db, func(r scanner) (User, error) { return scanUser(r) }, d.bind("SELECT "+userColumns+" FROM shop_users WHERE sponsor_id = ? ORDER BY created_at, id"), userID)
	if err != nil {
		return nil, fmt.Errorf("shop: referrals: %w", err)
	}
	return out, nil
}

const orderColumns = "id, user_id, product_id, product_name, price, status_value, pv, created_at"

func scanOrder(row scanner) (Order, error) {
	var o Order
	var created int64
	err := row.Scan(&o.ID, &o.UserID, &o.ProductID, &o.ProductName, &o.Price, &o.Status, &o.PV, &created)
	o.CreatedAt = fromMicros(created)
	return o, err
}

// OrderTx returns the order with id as tx sees it, or ErrNotFound.
func (d *DB) OrderTx(ctx context.Context, tx *sql.Tx, id string) (Order, error) {
	o, err := scanOrder(tx.QueryRowContext(ctx, d.bind("SELECT "+orderColumns+" FROM shop_orders WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return Order{}, ErrNotFound
	}
	if err != nil {
		return Order{}, fmt.Errorf("shop: order %s: %w", id, err)
	}
	return o, nil
}

// InsertOrder adds o in tx.
func (d *DB) InsertOrder(ctx context.Context, tx *sql.Tx, o Order) error {
	_, err := tx.ExecContext(ctx, d.bind("INSERT INTO shop_orders ("+orderColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
		o.ID, o.UserID, o.ProductID, o.ProductName, o.Price, o.Status, o.PV, micros(o.CreatedAt))
	if err != nil {
		return fmt.Errorf("shop: add order: %w", err)
	}
	return nil
}

// Orders returns the user's orders, newest first, at most limit.
func (d *DB) Orders(ctx context.Context, userID string, limit int) ([]Order, error) {
	out, err := queryAll(ctx, d.db, scanOrder, d.bind("SELECT "+orderColumns+" FROM shop_orders WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT ?"), userID, limit)
	if err != nil {
		return nil, fmt.Errorf("shop: orders: %w", err)
	}
	return out, nil
}
