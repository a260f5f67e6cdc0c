package dbfallback_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/dbfallback/dbfallback"
)

func ExampleValidate() {
	// A Heroku-style URL pasted with quotes, an unescaped '#' in the
	// password and Prisma's pgbouncer flag.
	t, err := dbfallback.Validate(`"postgres://app:s3cr#t@db.example.com/shop?pgbouncer=true"`)
	if err != nil {
		panic(err)
	}
	fmt.Println(t) // redacted: the password never prints
	for _, n := range t.Notes {
		fmt.Println("note:", n)
	}
	// Output:
	// postgres://app:xxxxx@db.example.com:5432/shop?default_query_exec_mode=exec
	// note: removed surrounding double quotes
	// note: the password contains unescaped '#' (as %23); it was percent-encoded
	// note: translated Prisma's pgbouncer=true to default_query_exec_mode=exec (no named prepared statements)
}

func ExampleValidate_errors() {
	_, err := dbfallback.Validate("postgres://app:s3cret@db.example.com:${DB_PORT}/shop")
	fmt.Println(errors.Is(err, dbfallback.ErrPlaceholder))

	var ve *dbfallback.ValidationError
	if errors.As(err, &ve) {
		fmt.Println(ve.Code)
		fmt.Println(ve.Input)
	}
	// Output:
	// true
	// placeholder
	// postgres://app:xxxxx@db.example.com:${DB_PORT}/shop
}

func ExampleValidate_sqlite() {
	for _, raw := range []string{"sqlite:///data/app.db", "sqlite:////var/lib/app.db", "sqlite://", "file:app.db?mode=ro"} {
		t, err := dbfallback.Validate(raw)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%-28s path=%q memory=%v\n", raw, t.Path, t.Memory)
	}
	// Output:
	// sqlite:///data/app.db        path="data/app.db" memory=false
	// sqlite:////var/lib/app.db    path="/var/lib/app.db" memory=false
	// sqlite://                    path="" memory=true
	// file:app.db?mode=ro          path="app.db" memory=false
}

func ExampleValidate_jsonSecret() {
	// What AWS Secrets Manager holds for an RDS database.
	t, err := dbfallback.Validate(`{"username":"app","password":"s3cret","engine":"postgres",` +
		`"host":"db.abc.eu-west-1.rds.amazonaws.com","port":5432,"dbname":"shop"}`)
	if err != nil {
		panic(err)
	}
	fmt.Println(t)
	fmt.Println(t.Notes[0])
	// Output:
	// postgres://app:xxxxx@db.abc.eu-west-1.rds.amazonaws.com:5432/shop
	// read an AWS Secrets Manager JSON secret (engine postgres)
}

func ExampleTarget_Secret() {
	t, err := dbfallback.Validate("postgres://app@db.example.com/shop?sslmode=verify-full&sslpassword=k3y-pass")
	if err != nil {
		panic(err)
	}
	fmt.Println(t.Params)       // secret-valued parameters are not in Params
	fmt.Println(t.SecretKeys()) // but the target has them
	pw, _ := t.Secret("sslpassword")
	fmt.Println(len(pw), strings.Contains(t.DSN(), "k3y-pass"))
	fmt.Printf("%+v\n", t) // every printed form masks them
	// Output:
	// map[sslmode:verify-full]
	// [sslpassword]
	// 8 true
	// postgres://app@db.example.com:5432/shop?sslmode=verify-full&sslpassword=xxxxx
}

func ExampleResolve() {
	// A fake environment: DATABASE_URL is set but broken, so Resolve reports
	// it and leaves the SQLite chain. Resolve never connects.
	env := map[string]string{"DATABASE_URL": "mysql://root@localhost/app", "SQLITE_PATH": "/nonexistent-dir/app.db"}
	r, err := dbfallback.Resolve(context.Background(), dbfallback.WithLookupEnv(func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}))
	if err != nil {
		panic(err)
	}
	fmt.Println("primary:", !r.Primary.IsZero())
	for _, s := range r.Sources {
		if s.Found {
			fmt.Println(s.Name, "->", s.Err)
		}
	}
	fmt.Println("last resort:", r.Fallbacks[len(r.Fallbacks)-1])
	// Output:
	// primary: false
	// DATABASE_URL -> dbfallback: validate "mysql://root@localhost/app": the "mysql" scheme is MySQL (hint: dbfallback connects to PostgreSQL (postgres://, postgresql://, libpq keyword/value) and SQLite (sqlite:///path.db, file:path.db, path.db); unset the variable to use SQLite)
	// last resort: :memory:
}

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "dbfallback-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	// DATABASE_URL holds a template nobody expanded: Open reports it and
	// serves from SQLite instead of failing.
	env := map[string]string{"DATABASE_URL": "postgres://app:${DB_PASSWORD}@db:5432/shop"}
	db, err := dbfallback.Open(context.Background(),
		dbfallback.WithLookupEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }),
		dbfallback.WithSQLitePath(filepath.Join(dir, "shop.db")),
		dbfallback.WithInit(func(ctx context.Context, db *dbfallback.DB) error {
			_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS items (name TEXT NOT NULL)")
			return err
		}))
	if err != nil {
		panic(err)
	}
	defer db.Close()

	fmt.Println(db.Dialect(), db.Fallback(), db.Ephemeral())
	fmt.Println(strings.Contains(db.Reason(), "unexpanded template"))
	if _, err := db.Exec("INSERT INTO items (name) VALUES ('tea')"); err != nil {
		panic(err)
	}
	var n int
	db.QueryRow("SELECT count(*) FROM items").Scan(&n)
	fmt.Println(n, "item")
	// Output:
	// sqlite true false
	// true
	// 1 item
}

// openExample opens a DB on a SQLite file in a temporary directory, the way
// a service without DATABASE_URL would.
func openExample() (*dbfallback.DB, func()) {
	dir, err := os.MkdirTemp("", "dbfallback-example-")
	if err != nil {
		panic(err)
	}
	db, err := dbfallback.Open(context.Background(),
		dbfallback.WithLookupEnv(func(string) (string, bool) { return "", false }),
		dbfallback.WithSQLitePath(filepath.Join(dir, "app.db")),
		dbfallback.WithInit(func(ctx context.Context, db *dbfallback.DB) error {
			_, err := db.ExecContext(ctx, `CREATE TABLE accounts (name TEXT PRIMARY KEY, balance INTEGER NOT NULL);
				INSERT INTO accounts VALUES ('alice', 100), ('bob', 0)`)
			return err
		}))
	if err != nil {
		panic(err)
	}
	return db, func() { db.Close(); os.RemoveAll(dir) }
}

func ExampleDB_Tx() {
	db, done := openExample()
	defer done()
	ctx := context.Background()

	// Move 30 from alice to bob: both updates or neither. A busy database
	// or a serialization failure makes Tx run the function again.
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		var balance int
		if err := tx.QueryRowContext(ctx, "SELECT balance FROM accounts WHERE name = 'alice'").Scan(&balance); err != nil {
			return err
		}
		if balance < 30 {
			return errors.New("insufficient funds")
		}
		if _, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = balance - 30 WHERE name = 'alice'"); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = balance + 30 WHERE name = 'bob'")
		return err
	})
	fmt.Println(err)

	var alice, bob int
	db.QueryRow("SELECT (SELECT balance FROM accounts WHERE name = 'alice'), (SELECT balance FROM accounts WHERE name = 'bob')").Scan(&alice, &bob)
	fmt.Println(alice, bob)
	// Output:
	// <nil>
	// 70 30
}

func ExampleMiddleware() {
	db, done := openExample()
	defer done()

	balance := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := dbfallback.SessionFrom(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		var n int
		if err := s.QueryRowContext(r.Context(), "SELECT balance FROM accounts WHERE name = ?", r.URL.Query().Get("name")).Scan(&n); err != nil {
			http.Error(w, "no such account", http.StatusNotFound)
			return
		}
		fmt.Fprintf(w, "%d\n", n)
	})
	h := dbfallback.Middleware(db)(balance)

	for _, name := range []string{"alice", "carol"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/balance?name="+name, nil))
		fmt.Print(rec.Code, " ", rec.Body.String())
	}
	fmt.Println("connections in use:", db.Stats().InUse)
	// Output:
	// 200 100
	// 404 no such account
	// connections in use: 0
}

func ExampleSession_Conn() {
	db, done := openExample()
	defer done()

	// A session's statements may run on different pool connections. A
	// handler that needs one connection for several statements (here
	// SQLite's last_insert_rowid(); on PostgreSQL a SET or a temporary
	// table) pins one with Conn; the session gives it back at the end.
	open := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		s, err := dbfallback.SessionFrom(ctx)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if _, err := s.Conn(ctx); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if _, err := s.ExecContext(ctx, "INSERT INTO accounts VALUES ('carol', 5)"); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		var id int64
		s.QueryRowContext(ctx, "SELECT last_insert_rowid()").Scan(&id)
		fmt.Fprintln(w, "row", id, "connections in use:", db.Stats().InUse)
	})
	rec := httptest.NewRecorder()
	dbfallback.Middleware(db)(open).ServeHTTP(rec, httptest.NewRequest("POST", "/accounts", nil))
	fmt.Print(rec.Body.String())
	fmt.Println("after the request:", db.Stats().InUse)
	// Output:
	// row 3 connections in use: 1
	// after the request: 0
}

func ExampleErrCommitUnknown() {
	db, done := openExample()
	defer done()
	ctx := context.Background()

	err := db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = balance + 1 WHERE name = 'bob'")
		return err
	})
	switch {
	case errors.Is(err, dbfallback.ErrCommitUnknown):
		// The connection was lost or ctx ended during COMMIT: the update
		// may or may not be in. Read it back (or make the write
		// idempotent) before telling the user it failed.
		fmt.Println("unknown; check before retrying")
	case err != nil:
		fmt.Println("not committed:", err)
	default:
		fmt.Println("committed")
	}
	// Output:
	// committed
}

func ExampleDB_HealthHandler() {
	db, done := openExample()
	defer done()

	rec := httptest.NewRecorder()
	db.HealthHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	var h dbfallback.Health
	json.Unmarshal(rec.Body.Bytes(), &h)
	fmt.Println(rec.Code, h.Status, h.Dialect, h.Fallback, h.Ephemeral, h.Reason)
	// Output:
	// 200 up sqlite true false no database URL configured
}
