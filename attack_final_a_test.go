package dbfallback

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// attack_final_a_test.go: a last outside attack on issues 9, 10 and 11,
// with inputs and event orders the other attack files do not use.

// finalAChildEnv makes the test binary a process that opens a SQLite file
// and runs a migration (TestAttackFinalATwoProcessesMigrate).
const finalAChildEnv = "DBFALLBACK_FINAL_A_CHILD"

func init() {
	if path := os.Getenv(finalAChildEnv); path != "" {
		err := finalAOpenAndMigrate(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// finalAMigrate is a goose-like migration: a version table, then the
// schema and the version row in one transaction, applied once.
func finalAMigrate(ctx context.Context, db *DB) error {
	if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS schema_version (v INTEGER PRIMARY KEY)"); err != nil {
		return err
	}
	return db.Tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM schema_version WHERE v = 1").Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO schema_version (v) VALUES (1)")
		return err
	})
}

func finalAOpenAndMigrate(path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	db, err := Open(ctx, WithSQLitePath(path), WithStrategy(SQLiteOnly), WithLookupEnv(atkNoEnv), WithInit(finalAMigrate))
	if err != nil {
		return err
	}
	defer db.Close()
	if got := db.Target().String(); !strings.Contains(got, path) {
		return fmt.Errorf("opened %s, not %s", got, path)
	}
	_, err = db.ExecContext(ctx, "INSERT INTO notes (body) VALUES ('from child')")
	return err
}

// finalAWindows returns every 4-character part of secret without blanks.
func finalAWindows(secret string) []string {
	var out []string
	for i := 0; i+4 <= len(secret); i++ {
		w := secret[i : i+4]
		if strings.TrimSpace(w) == w && !strings.ContainsAny(w, " \t") {
			out = append(out, w)
		}
	}
	return out
}

var finalADoctor struct {
	once sync.Once
	bin  string
	err  error
}

// finalADoctorBin builds examples/doctor once per test binary.
func finalADoctorBin(t *testing.T) string {
	t.Helper()
	finalADoctor.once.Do(func() {
		dir, err := os.MkdirTemp("", "finala-doctor")
		if err != nil {
			finalADoctor.err = err
			return
		}
		finalADoctor.bin = filepath.Join(dir, "doctor")
		out, err := exec.Command("go", "build", "-o", finalADoctor.bin, "./examples/doctor").CombinedOutput()
		if err != nil {
			finalADoctor.err = fmt.Errorf("%v: %s", err, out)
		}
	})
	require.NoError(t, finalADoctor.err)
	return finalADoctor.bin
}

// TestAttackFinalASecretsUnshapedPasswords feeds passwords that have no
// URL shape (base64 with '=', a passphrase with spaces, one holding '@')
// through every source a service reads, and checks no 4-character part of
// the password reaches any channel: Resolve's sources, Open's error,
// Reason, String, %v/%+v/%#v, JSON, slog, Health, and the doctor.
func TestAttackFinalASecretsUnshapedPasswords(t *testing.T) {
	passwords := []string{
		"Kx9vQ2pL=Tz7w",         // a NAME=value look-alike
		"YWJjZGVmZ2g9PQ==",      // openssl rand -base64
		"corr3ct horse batt3ry", // a passphrase
		"Np0o@Lk9j",             // '@' inside
		"p@ss:w0rd/xyz9",        // '@', ':' and '/'
		"Zq7#Wk9!Lm2$Xv",        // symbols
	}
	sources := []struct {
		name string
		env  func(pw, dir string) map[string]string
	}{
		{"password alone as DATABASE_URL", func(pw, _ string) map[string]string {
			return map[string]string{"DATABASE_URL": pw}
		}},
		{"DATABASE_URL_FILE holding only a password", func(pw, dir string) map[string]string {
			f := filepath.Join(dir, "secret")
			if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
				panic(err)
			}
			return map[string]string{"DATABASE_URL_FILE": f}
		}},
		{"PGPASSWORD with a bad PGHOST", func(pw, _ string) map[string]string {
			return map[string]string{"PGPASSWORD": pw, "PGHOST": "db host!", "PGUSER": "app", "PGDATABASE": "app"}
		}},
		{"JSON secret with a bad port", func(pw, _ string) map[string]string {
			b, _ := json.Marshal(map[string]string{"username": "app", "password": pw, "host": "127.0.0.1",
				"port": "99999", "dbname": "app", "engine": "postgres"})
			return map[string]string{"DATABASE_URL": string(b)}
		}},
	}
	bin := finalADoctorBin(t)
	for _, src := range sources {
		for _, pw := range passwords {
			t.Run(src.name+"/"+pw, func(t *testing.T) {
				dir := t.TempDir()
				env := src.env(pw, dir)
				env["SQLITE_PATH"] = filepath.Join(dir, "app.db")
				lookup := attackLookup(env)
				var out strings.Builder

				r, err := Resolve(context.Background(), WithLookupEnv(lookup))
				require.NoError(t, err)
				for _, s := range r.Sources {
					b, _ := json.Marshal(s)
					fmt.Fprintf(&out, "%v\n%+v\n%#v\n%s\n", s, s, s, b)
				}
				b, _ := json.Marshal(r)
				fmt.Fprintf(&out, "%v\n%+v\n%#v\n%s\n", r, r, r, b)

				var logs strings.Builder
				logger := slog.New(slog.NewTextHandler(&logs, nil))
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				db, err := Open(ctx, WithLookupEnv(lookup), WithLogger(logger))
				require.NoError(t, err)
				defer db.Close()
				assert.True(t, db.Fallback())
				rec := httptest.NewRecorder()
				db.HealthHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
				b, _ = json.Marshal(db)
				fmt.Fprintf(&out, "%v\n%+v\n%#v\n%s\n%s\n%s\n%s\n", db, db, db, db.Reason(), b, rec.Body, logs.String())
				for _, a := range db.Attempts() {
					fmt.Fprintf(&out, "%v\n%+v\n%#v\n", a, a, a)
				}

				cmd := exec.Command(bin)
				cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
				for k, v := range env {
					cmd.Env = append(cmd.Env, k+"="+v)
				}
				cmd.Dir = dir
				doc, _ := cmd.CombinedOutput()
				out.Write(doc)

				var leaked []string
				for line := range strings.Lines(out.String()) {
					for _, w := range finalAWindows(pw) {
						if strings.Contains(line, w) {
							leaked = append(leaked, strings.TrimSpace(line))
							break
						}
					}
				}
				if len(leaked) > 0 {
					t.Errorf("%d lines show a part of the password, the first: %.300s", len(leaked), leaked[0])
				}
			})
		}
	}
}

// TestAttackFinalADeadlineWithSlowMigration: a caller bounds Open to
// 400 ms, the primary is silent, and the migration takes 200 ms on SQLite.
// Open either returns SQLite migrated, or fails with ctx's error leaving
// no half-applied migration; a later Open with time to spare works.
func TestAttackFinalADeadlineWithSlowMigration(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db")
	url := fmt.Sprintf("postgres://u:pw@127.0.0.1:%d/app", silentListener(t))
	slow := func(ctx context.Context, db *DB) error {
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		return finalAMigrate(ctx, db)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	db, err := Open(ctx, WithURL(url), WithSQLitePath(path), WithLookupEnv(atkNoEnv), WithInit(slow))
	took := time.Since(start)
	t.Logf("Open took %v, err %v", took, err)
	assert.Less(t, took, 2*time.Second, "Open must end near its deadline")
	if err == nil {
		require.Equal(t, SQLite, db.Dialect())
		var n int
		require.NoError(t, db.QueryRowContext(context.Background(), "SELECT count(*) FROM schema_version").Scan(&n))
		assert.Equal(t, 1, n)
		require.NoError(t, db.Close())
	} else {
		assert.True(t, errors.Is(err, context.DeadlineExceeded), "err: %v", err)
	}
	// Restart with time to spare: the file is usable, migrated exactly once.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	db2, err := Open(ctx2, WithURL(url), WithSQLitePath(path), WithLookupEnv(atkNoEnv), WithConnectTimeout(100*time.Millisecond), WithInit(finalAMigrate))
	require.NoError(t, err)
	defer db2.Close()
	assert.Contains(t, db2.Target().String(), path)
	var n int
	require.NoError(t, db2.QueryRowContext(ctx2, "SELECT count(*) FROM schema_version").Scan(&n))
	assert.Equal(t, 1, n)
	_, err = db2.ExecContext(ctx2, "INSERT INTO notes (body) VALUES ('after restart')")
	assert.NoError(t, err)
}

// TestAttackFinalAInitLeavesTxOpen: a WithInit hook begins its own
// transaction, writes, and returns nil without committing or rolling back.
// The pool must still take writes after Open (the hook's transaction must
// not hold SQLite's write lock or PostgreSQL's row lock forever).
func TestAttackFinalAInitLeavesTxOpen(t *testing.T) {
	pgURL := os.Getenv("DBFALLBACK_TEST_DATABASE_URL")
	tests := []struct {
		name string
		opts func(t *testing.T) []Option
	}{
		{"sqlite", func(t *testing.T) []Option {
			return []Option{WithURL("sqlite:///" + filepath.Join(t.TempDir(), "app.db") + "?_busy_timeout=1000")}
		}},
		{"postgres", func(t *testing.T) []Option {
			if pgURL == "" {
				t.Skip("DBFALLBACK_TEST_DATABASE_URL is not set")
			}
			return []Option{WithURL(pgURL + "&lock_timeout=1000"), WithStrategy(PrimaryOnly)}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			table := fmt.Sprintf("finala_leak_%d", os.Getpid())
			leaky := func(ctx context.Context, db *DB) error {
				if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+table); err != nil {
					return err
				}
				if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (id INTEGER PRIMARY KEY, v TEXT)"); err != nil {
					return err
				}
				if _, err := db.ExecContext(ctx, "INSERT INTO "+table+" (id, v) VALUES (1, 'a')"); err != nil {
					return err
				}
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				_, err = tx.ExecContext(ctx, "UPDATE "+table+" SET v = 'from init' WHERE id = 1")
				return err // tx left open
			}
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			opts := tt.opts(t)
			db, err := Open(ctx, append(opts, WithLookupEnv(atkNoEnv), WithInit(leaky))...)
			cancel()
			if err == nil {
				db.Close()
			}
			// A hook that leaves its transaction open is a bug: Open says
			// so rather than hand out a pool whose writes all wait behind it.
			require.Error(t, err)
			assert.Contains(t, err.Error(), "neither committed nor rolled back")
			assert.False(t, IsUnavailable(err))

			// The fixed hook then opens, and the pool takes writes at once.
			fixed := func(ctx context.Context, db *DB) error {
				return db.Tx(ctx, func(tx *sql.Tx) error {
					_, err := tx.ExecContext(ctx, "UPDATE "+table+" SET v = 'from init' WHERE id = 1")
					return err
				})
			}
			ctx, cancel = context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			db, err = Open(ctx, append(opts, WithLookupEnv(atkNoEnv), WithInit(fixed))...)
			require.NoError(t, err)
			defer func() {
				db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+table)
				db.Close()
			}()
			wctx, wcancel := context.WithTimeout(context.Background(), 4*time.Second)
			defer wcancel()
			_, err = db.ExecContext(wctx, "UPDATE "+table+" SET v = 'after open' WHERE id = 1")
			assert.NoError(t, err)
		})
	}
}

// TestAttackFinalATwoProcessesMigrate: two processes Open the same new
// file at once, each running a CREATE TABLE migration. Both must succeed on
// that file, the schema applied once, neither moved aside nor in memory.
func TestAttackFinalATwoProcessesMigrate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "shared.db")
	exe, err := os.Executable()
	require.NoError(t, err)
	var wg sync.WaitGroup
	outs := make([][]byte, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), finalAChildEnv+"="+path)
			outs[i], errs[i] = cmd.CombinedOutput()
		}()
	}
	wg.Wait()
	for i := range 2 {
		assert.NoError(t, errs[i], "process %d: %s", i, outs[i])
	}
	names := namesIn(t, dir)
	for _, n := range names {
		assert.NotContains(t, n, "corrupt", "a file was moved aside: %v", names)
	}
	db, err := Open(context.Background(), WithSQLitePath(path), WithStrategy(SQLiteOnly), WithLookupEnv(atkNoEnv))
	require.NoError(t, err)
	defer db.Close()
	var v, rows int
	require.NoError(t, db.QueryRow("SELECT count(*) FROM schema_version").Scan(&v))
	require.NoError(t, db.QueryRow("SELECT count(*) FROM notes").Scan(&rows))
	assert.Equal(t, 1, v)
	assert.Equal(t, 2, rows)
}

// TestAttackFinalASessionAndPoolInsideTx: a handler runs db.Tx and, inside
// it, writes through its Session and through the pool. On PostgreSQL
// (other rows) that works; on SQLite it must fail fast with an error that
// names the cause, not hang, and the Tx's own write must be rolled back.
func TestAttackFinalASessionAndPoolInsideTx(t *testing.T) {
	for _, d := range atkDialects() {
		t.Run(d.name, func(t *testing.T) {
			var db *DB
			if d.name == "sqlite" {
				db = atkOpenSQLite(t, 500*time.Millisecond, PoolConfig{MaxOpenConns: 4})
			} else {
				db = d.open(t, PoolConfig{MaxOpenConns: 4})
			}
			table := atkCounter(t, db)
			var txErr error
			h := Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s, err := SessionFrom(r.Context())
				if err != nil {
					txErr = err
					return
				}
				txErr = db.Tx(r.Context(), func(tx *sql.Tx) error {
					if _, err := tx.ExecContext(r.Context(), "INSERT INTO "+table+" (id, n) VALUES (2, 0)"); err != nil {
						return err
					}
					if _, err := s.ExecContext(r.Context(), "INSERT INTO "+table+" (id, n) VALUES (3, 0)"); err != nil {
						return err
					}
					_, err := db.ExecContext(r.Context(), "INSERT INTO "+table+" (id, n) VALUES (4, 0)")
					return err
				})
			}))
			returned, took := atkServe(t, h, 8*time.Second)
			require.True(t, returned, "the handler hung")
			t.Logf("took %v, err %v", took, txErr)
			var rows int
			require.NoError(t, db.QueryRow("SELECT count(*) FROM "+table).Scan(&rows))
			if d.name == "postgres" {
				assert.NoError(t, txErr)
				assert.Equal(t, 4, rows)
				return
			}
			require.Error(t, txErr)
			assert.Less(t, took, 3*time.Second, "bounded once by the 500ms busy timeout")
			assert.Contains(t, txErr.Error(), "run it on the transaction", "the error names the cause and the fix")
			assert.Equal(t, 1, rows, "nothing of the failed handler is left")
		})
	}
}

// TestAttackFinalAReadOnlyCancelledThenWrite: a read-only Tx is cancelled
// in the middle of a long query; the next write on the same (one
// connection) pool must succeed, on both dialects.
func TestAttackFinalAReadOnlyCancelledThenWrite(t *testing.T) {
	long := map[string]string{
		"postgres": "SELECT count(*) FROM generate_series(1, 1) g, pg_sleep(5)",
		"sqlite":   "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 200000000) SELECT count(*) FROM c",
	}
	for _, d := range atkDialects() {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t, PoolConfig{MaxOpenConns: 1, MaxIdleConns: 1})
			table := atkCounter(t, db)
			for round := range 3 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(50+50*round)*time.Millisecond)
				err := db.Tx(ctx, func(tx *sql.Tx) error {
					var n int
					return tx.QueryRowContext(ctx, long[d.name]).Scan(&n)
				}, WithReadOnly())
				cancel()
				require.Error(t, err, "round %d", round)
				wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err = db.ExecContext(wctx, "UPDATE "+table+" SET n = n + 1 WHERE id = 1")
				wcancel()
				require.NoError(t, err, "round %d: a write after a cancelled read-only Tx", round)
				err = db.Tx(context.Background(), func(tx *sql.Tx) error { return atkIncrement(context.Background(), tx, table) })
				require.NoError(t, err, "round %d: a Tx after a cancelled read-only Tx", round)
			}
			assert.Equal(t, 6, atkCount(t, db, table))
		})
	}
}
