package dbfallback

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbfallback/dbfallback/internal/sqlengine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests run on whichever SQLite engine the build has: go-sqlite3
// (cgo), or the pure-Go engine of puresqlite, which .ci/run overlays into
// this package for a second run of the whole suite (see
// puresqlite/testdata). Errors are real ones, made by SQLite, so that
// what is classified is what the engine returns.

// rawSQLite opens a plain pool of the build's engine on dsn, outside the
// write gate, as another process or tool would.
func rawSQLite(tb testing.TB, dsn string) *sql.DB {
	tb.Helper()
	db, err := openRawSQLite(dsn)
	require.NoError(tb, err)
	tb.Cleanup(func() { db.Close() })
	return db
}

// realSQLiteError makes SQLite fail with the result code code (a primary
// code, or sqlengine.BusySnapshot) and returns the engine's error.
func realSQLiteError(tb testing.TB, code int) error {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	path := filepath.Join(dir, "e.db")
	file := "file:" + path
	db := rawSQLite(tb, file+"?_journal_mode=WAL&_busy_timeout=0")
	db.SetMaxOpenConns(1)
	_, err := db.Exec("CREATE TABLE t (k TEXT PRIMARY KEY); INSERT INTO t VALUES ('a'), ('b')")
	require.NoError(tb, err)
	switch code {
	case sqlengine.Error:
		_, err = db.Exec("SELEC 1")
	case sqlengine.Constraint:
		_, err = db.Exec("INSERT INTO t VALUES ('a')")
	case sqlengine.Busy:
		holder := rawSQLite(tb, file+"?_busy_timeout=0&_txlock=immediate")
		tx, berr := holder.Begin()
		require.NoError(tb, berr)
		defer tx.Rollback()
		_, err = rawSQLite(tb, file+"?_busy_timeout=0&_txlock=immediate").Begin()
	case sqlengine.BusySnapshot:
		conn, cerr := db.Conn(ctx)
		require.NoError(tb, cerr)
		defer conn.Close()
		_, err = conn.ExecContext(ctx, "BEGIN")
		require.NoError(tb, err)
		var n int
		require.NoError(tb, conn.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n))
		_, err = rawSQLite(tb, file).Exec("INSERT INTO t VALUES ('c')")
		require.NoError(tb, err)
		_, err = conn.ExecContext(ctx, "INSERT INTO t VALUES ('d')")
		conn.ExecContext(ctx, "ROLLBACK")
	case sqlengine.Locked:
		e, eerr := sqliteEngine()
		require.NoError(tb, eerr)
		c, cerr := e.Open(file)
		require.NoError(tb, cerr)
		defer c.Close()
		rows, qerr := c.QueryContext(ctx, "SELECT k FROM t", nil)
		require.NoError(tb, qerr)
		require.NoError(tb, rows.Next(make([]driver.Value, 1)))
		_, err = c.ExecContext(ctx, "DROP TABLE t", nil)
		rows.Close()
	case sqlengine.Full:
		var pages int
		require.NoError(tb, db.QueryRow("PRAGMA page_count").Scan(&pages))
		_, err = db.Exec(fmt.Sprintf("PRAGMA max_page_count = %d", pages))
		require.NoError(tb, err)
		_, err = db.Exec("INSERT INTO t VALUES (zeroblob(1000000))")
	case sqlengine.ReadOnly:
		_, err = rawSQLite(tb, file+"?mode=ro").Exec("INSERT INTO t VALUES ('c')")
	case sqlengine.CantOpen:
		_, err = rawSQLite(tb, "file:"+filepath.Join(dir, "missing", "x.db")).Exec("CREATE TABLE t (x)")
	case sqlengine.NotADB:
		junkPath := filepath.Join(dir, "junk.db")
		require.NoError(tb, os.WriteFile(junkPath, junk(8192, 3), 0o600))
		_, err = rawSQLite(tb, "file:"+junkPath).Exec("SELECT * FROM sqlite_schema")
	case sqlengine.Corrupt:
		data, pageSize := sqliteBytes(tb, 2000)
		bad := filepath.Join(dir, "bad.db")
		require.NoError(tb, os.WriteFile(bad, append(data[:pageSize:pageSize], junk(len(data)-pageSize, 2)...), 0o600))
		var n int
		err = rawSQLite(tb, "file:"+bad).QueryRow("SELECT count(*) FROM notes").Scan(&n)
	default:
		tb.Fatalf("no recipe for SQLite result code %d", code)
	}
	require.Error(tb, err, "result code %d", code)
	got, ok := sqliteCode(err)
	require.Truef(tb, ok, "not an error of the engine: %T %v", err, err)
	if code > 0xff {
		require.Equalf(tb, code, got, "extended code of %v", err)
	} else {
		require.Equalf(tb, code, got&0xff, "primary code of %v", err)
	}
	return err
}

// TestSQLiteErrorsClassified: real errors of the build's engine are
// classified the same on every engine, for Open's init hooks
// (IsUnavailable), Tx's retries (IsRetryable) and damaged files.
func TestSQLiteErrorsClassified(t *testing.T) {
	tests := []struct {
		name                         string
		code                         int
		unavailable, retryable, busy bool
		damage                       bool
	}{
		{name: "syntax", code: sqlengine.Error},
		{name: "constraint", code: sqlengine.Constraint},
		{name: "busy at once", code: sqlengine.Busy, unavailable: true, retryable: true, busy: true},
		{name: "busy snapshot", code: sqlengine.BusySnapshot, unavailable: true, retryable: true, busy: true},
		{name: "table locked", code: sqlengine.Locked, unavailable: true, retryable: true, busy: true},
		{name: "full", code: sqlengine.Full, unavailable: true},
		{name: "read-only", code: sqlengine.ReadOnly, unavailable: true},
		{name: "cannot open", code: sqlengine.CantOpen, unavailable: true},
		{name: "not a database", code: sqlengine.NotADB, unavailable: true, damage: true},
		{name: "corrupt", code: sqlengine.Corrupt, unavailable: true, damage: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := realSQLiteError(t, tt.code)
			wrapped := fmt.Errorf("hook: %w", err)
			assert.Equal(t, tt.unavailable, IsUnavailable(wrapped), "IsUnavailable(%v)", err)
			assert.Equal(t, tt.retryable, IsRetryable(wrapped), "IsRetryable(%v)", err)
			assert.Equal(t, tt.busy, isBusy(wrapped), "isBusy(%v)", err)
			assert.Equal(t, tt.damage, isDamage(wrapped), "isDamage(%v)", err)
			assert.False(t, commitOutcomeUnknown(wrapped), "a failed SQLite COMMIT is rolled back in the process")
			if tt.busy {
				assert.False(t, IsRetryable(&lockWaitError{waited: sqliteBusyTimeout, err: err}), "a wait that used the busy timeout is final")
			}
		})
	}
}

// TestSQLiteEngineNamed: the build says which engine it has.
func TestSQLiteEngineNamed(t *testing.T) {
	assert.Contains(t, []string{"mattn/go-sqlite3", "modernc.org/sqlite"}, SQLiteEngine())
	t.Logf("SQLite engine: %s", SQLiteEngine())
}

// TestOpenWithoutSQLiteEngine: in a build without a SQLite engine
// (CGO_ENABLED=0 without puresqlite, simulated here by a seam; see
// TestBuildWithoutCgo for the real build), Open still opens PostgreSQL,
// and where it would fall back it returns ErrNoDatabase wrapping
// ErrNoSQLiteEngine and the primary's failure, once, without creating or
// touching any SQLite location.
func TestOpenWithoutSQLiteEngine(t *testing.T) {
	tests := []struct {
		name     string
		opts     []Option
		wantErr  bool
		inReason []string
	}{
		{name: "no primary", wantErr: true, inReason: []string{"no database URL configured"}},
		{name: "primary refused", opts: []Option{WithURL("postgres://app@127.0.0.1:1/app?sslmode=disable")}, wantErr: true, inReason: []string{"127.0.0.1:1"}},
		{name: "SQLiteOnly", opts: []Option{WithStrategy(SQLiteOnly)}, wantErr: true},
		{name: "primary answers", wantErr: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if !tt.wantErr {
				opts = []Option{WithURL(testPostgresURL(t)), WithStrategy(PreferPrimary)}
			}
			work, tmp := isolatedDirs(t)
			data := filepath.Join(t.TempDir(), "data")
			require.NoError(t, os.Mkdir(data, 0o700))
			db, err := Open(context.Background(), append([]Option{env("TMPDIR", tmp), withDataDir(data), withoutSQLiteEngine()}, opts...)...)
			for _, dir := range []string{work, tmp, data} {
				entries, rerr := os.ReadDir(dir)
				require.NoError(t, rerr)
				assert.Empty(t, entries, "no SQLite location is created or touched in %s", dir)
			}
			if !tt.wantErr {
				require.NoError(t, err)
				defer db.Close()
				assert.Equal(t, Postgres, db.Dialect())
				return
			}
			require.Error(t, err)
			assert.Nil(t, db)
			assert.ErrorIs(t, err, ErrNoDatabase)
			assert.ErrorIs(t, err, ErrNoSQLiteEngine)
			assert.Equal(t, 1, strings.Count(err.Error(), "no SQLite engine"), "one SQLite attempt, not one per location: %v", err)
			assert.Contains(t, err.Error(), `import _ "github.com/dbfallback/dbfallback/puresqlite"`)
			for _, s := range tt.inReason {
				assert.Contains(t, err.Error(), s)
			}
		})
	}
}

// TestBuildWithoutCgo builds a program that imports the library with
// CGO_ENABLED=0 and without puresqlite (issue 12: it did not compile), and
// runs it: PostgreSQL works, a missing primary is a clear error, and
// neither go-sqlite3 nor modernc.org/sqlite is linked in.
func TestBuildWithoutCgo(t *testing.T) {
	pgURL := testPostgresURL(t)
	goTool, err := exec.LookPath("go")
	require.NoError(t, err, "the go command builds the program")
	bin := filepath.Join(t.TempDir(), "nocgo")
	build := exec.Command(goTool, "build", "-o", bin, "./testdata/nocgo")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "CGO_ENABLED=0 go build: %s", out)
	deps := exec.Command(goTool, "list", "-deps", "./testdata/nocgo")
	deps.Env = build.Env
	out, err = deps.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.NotContains(t, string(out), "github.com/mattn/go-sqlite3")
	assert.NotContains(t, string(out), "modernc.org/sqlite")

	run := func(databaseURL string) (string, int) {
		work := t.TempDir()
		cmd := exec.Command(bin)
		cmd.Dir = work
		cmd.Env = []string{"DATABASE_URL=" + databaseURL, "TMPDIR=" + work, "HOME=" + work}
		out, err := cmd.CombinedOutput()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else {
			require.NoError(t, err)
		}
		entries, err := os.ReadDir(work)
		require.NoError(t, err)
		assert.Empty(t, entries, "no SQLite file is created")
		return string(out), code
	}
	out2, code := run(pgURL)
	assert.Equal(t, 0, code, "%s", out2)
	assert.Contains(t, out2, `engine=""`)
	assert.Contains(t, out2, "dialect=postgres fallback=false select=1")

	out2, code = run("postgres://app@127.0.0.1:1/app?sslmode=disable")
	assert.Equal(t, 1, code, "%s", out2)
	assert.Contains(t, out2, "no SQLite engine: true")
	assert.Contains(t, out2, "no database: true")
	assert.Contains(t, out2, "CGO_ENABLED=0")
}

// TestGoModLeavesThePureEngineOut: the library's module requires neither
// puresqlite nor modernc.org/sqlite (which needs Go 1.26 and adds 141 MB
// to every vendored build), and still says go 1.25: programs that do not
// import puresqlite never download or vendor it.
func TestGoModLeavesThePureEngineOut(t *testing.T) {
	data, err := os.ReadFile("go.mod")
	require.NoError(t, err)
	mod := string(data)
	assert.NotContains(t, mod, "modernc.org")
	assert.NotContains(t, mod, "puresqlite")
	assert.Contains(t, mod, "\ngo 1.25")
}
