package dbfallback

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// attack_files_test.go attacks "SQLite files are never deleted or
// overwritten": whatever sits at a SQLite location (or next to it, where
// SQLite keeps its -wal, -journal and -shm) is either a database Open may
// use, a damaged database moved aside byte for byte, or left untouched and
// skipped with a reason, and no probe blocks past ctx.

// openBounded runs Open and fails the test if it has not returned 5
// seconds after ctx's deadline; unblock then frees whatever holds it, so
// the test can end.
func openBounded(t *testing.T, ctx context.Context, unblock func(), opts ...Option) (*DB, error) {
	t.Helper()
	type result struct {
		db  *DB
		err error
	}
	ch := make(chan result, 1)
	go func() {
		db, err := Open(ctx, opts...)
		ch <- result{db, err}
	}()
	deadline, _ := ctx.Deadline()
	select {
	case r := <-ch:
		return r.db, r.err
	case <-time.After(time.Until(deadline) + 5*time.Second):
		t.Errorf("Open still blocked 5s after ctx's deadline")
		if unblock != nil {
			unblock()
		}
		r := <-ch
		return r.db, r.err
	}
}

// unblockFIFO opens a FIFO's other end, which releases a blocked open.
func unblockFIFO(path string) func() {
	return func() {
		if f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NONBLOCK, 0); err == nil {
			time.Sleep(100 * time.Millisecond)
			f.Close()
		}
	}
}

// TestAttackFilesLeftUntouched: every kind of thing that is not a usable
// SQLite database at SQLITE_PATH, or beside it, is left byte for byte as
// it was, the location is skipped with a reason naming it, and Open
// returns a usable database elsewhere before ctx's deadline.
func TestAttackFilesLeftUntouched(t *testing.T) {
	walDB := func(t *testing.T, path string) {
		makeSQLite(t, path, "WAL", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)", "INSERT INTO notes (body) VALUES ('mine')")
	}
	tests := []struct {
		name string
		// setup prepares dir (SQLITE_PATH is dir/app.db) and elsewhere,
		// and returns the function that frees a blocked open, if any.
		setup func(t *testing.T, dir, elsewhere string) func()
		// path is SQLITE_PATH relative to dir when not "app.db".
		path string
	}{
		{name: "go.mod", setup: func(t *testing.T, dir, _ string) func() {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "app.db"), []byte("module example.com/app\n\ngo 1.25\n"), 0o644))
			return nil
		}},
		{name: "a JSON file", setup: func(t *testing.T, dir, _ string) func() {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "app.db"), []byte(`{"notes": [1, 2, 3]}`), 0o600))
			return nil
		}},
		{name: "one byte", setup: func(t *testing.T, dir, _ string) func() {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "app.db"), []byte("S"), 0o600))
			return nil
		}},
		{name: "the first 15 bytes of SQLite's magic", setup: func(t *testing.T, dir, _ string) func() {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "app.db"), []byte("SQLite format 3"), 0o600))
			return nil
		}},
		{name: "a symlink to a text file elsewhere", setup: func(t *testing.T, dir, elsewhere string) func() {
			require.NoError(t, os.WriteFile(filepath.Join(elsewhere, "notes.txt"), []byte("my notes\n"), 0o600))
			require.NoError(t, os.Symlink(filepath.Join(elsewhere, "notes.txt"), filepath.Join(dir, "app.db")))
			return nil
		}},
		{name: "a symlink loop", setup: func(t *testing.T, dir, _ string) func() {
			require.NoError(t, os.Symlink("loop.db", filepath.Join(dir, "app.db")))
			require.NoError(t, os.Symlink("app.db", filepath.Join(dir, "loop.db")))
			return nil
		}},
		{name: "a dangling symlink into another directory", setup: func(t *testing.T, dir, elsewhere string) func() {
			require.NoError(t, os.Symlink(filepath.Join(elsewhere, "not-mounted-yet.db"), filepath.Join(dir, "app.db")))
			return nil
		}},
		{name: "a hard link to a text file", setup: func(t *testing.T, dir, elsewhere string) func() {
			require.NoError(t, os.WriteFile(filepath.Join(elsewhere, "notes.txt"), []byte("my notes\n"), 0o600))
			require.NoError(t, os.Link(filepath.Join(elsewhere, "notes.txt"), filepath.Join(dir, "app.db")))
			return nil
		}},
		{name: "a directory where the file would be", setup: func(t *testing.T, dir, _ string) func() {
			// SQLITE_PATH names a file whose parent is dir/sub; sub/app.db is
			// a directory.
			require.NoError(t, os.MkdirAll(filepath.Join(dir, "app.db", "inside"), 0o700))
			return nil
		}, path: "app.db/"},
		{name: "a FIFO", setup: func(t *testing.T, dir, _ string) func() {
			require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "app.db"), 0o600))
			return unblockFIFO(filepath.Join(dir, "app.db"))
		}},
		{name: "a socket", setup: func(t *testing.T, dir, _ string) func() {
			l, err := net.Listen("unix", filepath.Join(dir, "app.db"))
			require.NoError(t, err)
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			t.Cleanup(func() { l.Close() })
			return nil
		}},
		{name: "a database whose -journal is a FIFO", setup: func(t *testing.T, dir, _ string) func() {
			walDB(t, filepath.Join(dir, "app.db"))
			require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "app.db-journal"), 0o600))
			return unblockFIFO(filepath.Join(dir, "app.db-journal"))
		}},
		{name: "a database whose -wal is a FIFO", setup: func(t *testing.T, dir, _ string) func() {
			walDB(t, filepath.Join(dir, "app.db"))
			require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "app.db-wal"), 0o600))
			return unblockFIFO(filepath.Join(dir, "app.db-wal"))
		}},
		{name: "a database whose -shm is a FIFO", setup: func(t *testing.T, dir, _ string) func() {
			walDB(t, filepath.Join(dir, "app.db"))
			require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "app.db-shm"), 0o600))
			return unblockFIFO(filepath.Join(dir, "app.db-shm"))
		}},
		{name: "a database whose -wal is a directory", setup: func(t *testing.T, dir, _ string) func() {
			walDB(t, filepath.Join(dir, "app.db"))
			require.NoError(t, os.Mkdir(filepath.Join(dir, "app.db-wal"), 0o700))
			return nil
		}},
		{name: "a database whose -wal is a symlink to a file elsewhere", setup: func(t *testing.T, dir, elsewhere string) func() {
			walDB(t, filepath.Join(dir, "app.db"))
			require.NoError(t, os.WriteFile(filepath.Join(elsewhere, "thesis.txt"), []byte(strings.Repeat("chapter one\n", 100)), 0o600))
			require.NoError(t, os.Symlink(filepath.Join(elsewhere, "thesis.txt"), filepath.Join(dir, "app.db-wal")))
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dirs := isolateAttack(t)
			dir, elsewhere := t.TempDir(), t.TempDir()
			unblock := tt.setup(t, dir, elsewhere)
			before, beforeElsewhere := treeDigest(t, dir), treeDigest(t, elsewhere)
			path := filepath.Join(dir, "app.db")
			sqlitePath := path
			if tt.path != "" {
				// A path ending in "/" names a directory to hold app.db:
				// here it names dir itself, where app.db is a directory.
				sqlitePath = dir + "/"
			}

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			start := time.Now()
			db, err := openBounded(t, ctx, unblock, dirs.opts(map[string]string{"SQLITE_PATH": sqlitePath})...)
			took := time.Since(start)
			require.NoError(t, err)
			defer db.Close()
			assert.Less(t, took, 2*time.Second)
			assert.NotEqual(t, path, db.Target().Path, "the location must be skipped")
			assert.Equal(t, "data/app.db", db.Target().Path, "the next file location, not memory")
			assert.Contains(t, db.Reason(), path, "Reason names the skipped location")
			requireUsable(t, db)
			require.NoError(t, db.Close())
			assert.Equal(t, before, treeDigest(t, dir), "nothing at or beside the location may change")
			assert.Equal(t, beforeElsewhere, treeDigest(t, elsewhere), "nothing a link points to may change")
		})
	}
}

// TestAttackFilesUsable: what SQLite can use is used, with its rows: a
// database with another page size, one reached through a symbolic link
// (whose log lives beside the file the link names), an empty file.
func TestAttackFilesUsable(t *testing.T) {
	tests := []struct {
		name string
		// setup makes dir/app.db and returns how many notes it holds.
		setup func(t *testing.T, dir, elsewhere string) int
	}{
		{name: "page size 512", setup: func(t *testing.T, dir, _ string) int {
			makeSQLite(t, filepath.Join(dir, "app.db"), "DELETE", "PRAGMA page_size=512", "CREATE TABLE notes (body TEXT)", "INSERT INTO notes VALUES ('a'), ('b')")
			return 2
		}},
		{name: "page size 65536", setup: func(t *testing.T, dir, _ string) int {
			makeSQLite(t, filepath.Join(dir, "app.db"), "DELETE", "PRAGMA page_size=65536", "CREATE TABLE notes (body TEXT)", "INSERT INTO notes VALUES ('a')")
			return 1
		}},
		{name: "an empty file", setup: func(t *testing.T, dir, _ string) int {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "app.db"), nil, 0o600))
			return 0
		}},
		{name: "a symlink to a database elsewhere", setup: func(t *testing.T, dir, elsewhere string) int {
			makeSQLite(t, filepath.Join(elsewhere, "real.db"), "WAL", "CREATE TABLE notes (body TEXT)", "INSERT INTO notes VALUES ('a'), ('b'), ('c')")
			require.NoError(t, os.Symlink(filepath.Join(elsewhere, "real.db"), filepath.Join(dir, "app.db")))
			return 3
		}},
		{name: "a symlink to a database whose committed rows are only in its -wal", setup: func(t *testing.T, dir, elsewhere string) int {
			real := filepath.Join(elsewhere, "real.db")
			src := filepath.Join(t.TempDir(), "src.db")
			db, err := openRawSQLite("file:" + src + "?_journal_mode=WAL")
			require.NoError(t, err)
			db.SetMaxOpenConns(1)
			for _, q := range []string{"PRAGMA wal_autocheckpoint=0", "CREATE TABLE notes (body TEXT)",
				"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 500) INSERT INTO notes SELECT hex(randomblob(64)) FROM c"} {
				_, err := db.Exec(q)
				require.NoError(t, err)
			}
			// What a crash leaves: the log holds every page.
			copyFile(t, src, real)
			copyFile(t, src+"-wal", real+"-wal")
			require.NoError(t, db.Close())
			require.NoError(t, os.Symlink(real, filepath.Join(dir, "app.db")))
			return 500
		}},
		{name: "a hard link to a database", setup: func(t *testing.T, dir, elsewhere string) int {
			makeSQLite(t, filepath.Join(elsewhere, "real.db"), "DELETE", "CREATE TABLE notes (body TEXT)", "INSERT INTO notes VALUES ('a')")
			require.NoError(t, os.Link(filepath.Join(elsewhere, "real.db"), filepath.Join(dir, "app.db")))
			return 1
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dirs := isolateAttack(t)
			dir, elsewhere := t.TempDir(), t.TempDir()
			want := tt.setup(t, dir, elsewhere)
			path := filepath.Join(dir, "app.db")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			db, err := Open(ctx, dirs.opts(map[string]string{"SQLITE_PATH": path})...)
			require.NoError(t, err)
			defer db.Close()
			assert.Equal(t, path, db.Target().Path, db.Reason())
			assert.NotContains(t, db.Reason(), "moved it aside")
			_, err = db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS notes (body TEXT)")
			require.NoError(t, err)
			var n int
			require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM notes").Scan(&n))
			assert.Equal(t, want, n)
			assert.Empty(t, globAside(t, dir), "nothing may be moved aside")
		})
	}
}

// globAside lists the moved-aside files in dir.
func globAside(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.corrupt-*"))
	require.NoError(t, err)
	return m
}

// damagedSQLite is a file with SQLite's header and garbage after it.
func damagedSQLite(seed int) []byte {
	b := []byte("SQLite format 3\x00")
	for i := 0; len(b) < 4096; i++ {
		b = append(b, byte(seed*31+i*7))
	}
	return b
}

// TestAttackMovesNeverCollide: ten damaged databases opened within one
// second at the same path are moved aside to ten names, byte for byte;
// a hard link to a damaged database keeps its bytes under its other name.
func TestAttackMovesNeverCollide(t *testing.T) {
	dirs := isolateAttack(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db")
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	var want []string
	for i := range 10 {
		data := damagedSQLite(i)
		want = append(want, string(data))
		require.NoError(t, os.WriteFile(path, data, 0o600))
		if i == 3 {
			require.NoError(t, os.Link(path, filepath.Join(dir, "hardlink.db")))
		}
		db, err := Open(context.Background(), dirs.opts(map[string]string{"SQLITE_PATH": path},
			withNow(func() time.Time { return now.Add(time.Duration(i) * 90 * time.Millisecond) }))...)
		require.NoError(t, err)
		assert.Equal(t, path, db.Target().Path)
		assert.Contains(t, db.Reason(), "moved it aside")
		require.NoError(t, db.Close())
		require.NoError(t, os.Remove(path)) // the next damaged file takes the new database's place
		for _, s := range []string{"-wal", "-shm", strandedSuffix} {
			os.Remove(path + s)
		}
	}
	aside := globAside(t, dir)
	require.Len(t, aside, 10)
	var got []string
	for _, a := range aside {
		data, err := os.ReadFile(a)
		require.NoError(t, err)
		got = append(got, string(data))
	}
	assert.ElementsMatch(t, want, got, "every damaged file is kept, byte for byte")
	data, err := os.ReadFile(filepath.Join(dir, "hardlink.db"))
	require.NoError(t, err)
	assert.Equal(t, want[3], string(data))
}

// TestAttackTwoProcessesMoveAtOnce: two processes open the same damaged
// database at the same moment. The damaged bytes survive in exactly one
// moved-aside file, and both processes end up writing to the same new
// database: neither writes into a file the other moved away.
func TestAttackTwoProcessesMoveAtOnce(t *testing.T) {
	for round := range 3 {
		// After the first round the header is whole and the damage is in a
		// page, which each process finds with a read before moving the
		// file: the slower one must not then move the other's new database.
		pages := round > 0
		t.Run(fmt.Sprintf("round %d, damaged pages %v", round, pages), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "app.db")
			tmp := t.TempDir()
			damaged := damagedSQLite(round)
			if pages {
				makeNotes(t, path, 50, 3000, 1)
				damaged = corruptPageHolding(t, path, "NEEDLE-ATTACK")
			}
			require.NoError(t, os.WriteFile(path, damaged, 0o600))
			now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
			var wg sync.WaitGroup
			outcomes := make([]attackOutcome, 2)
			children := make([]*attackProcess, 2)
			for i := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					children[i] = startAttackChild(t, attackRequest{Op: "open", Path: path, Now: now, TMPDIR: tmp})
				}()
			}
			wg.Wait()
			for i, c := range children {
				require.NoError(t, json.Unmarshal([]byte(c.first), &outcomes[i]), c.first)
				assert.Empty(t, outcomes[i].Err)
				assert.Equal(t, path, outcomes[i].Target, outcomes[i].Reason)
			}
			for _, c := range children {
				c.stop()
			}
			var kept int
			for _, a := range globAside(t, dir) {
				if data, err := os.ReadFile(a); err == nil && string(data) == string(damaged) {
					kept++
				}
			}
			assert.Equal(t, 1, kept, "the damaged bytes are kept exactly once: %v", namesIn(t, dir))
			db, err := openRawSQLite("file:" + path + "?mode=ro")
			require.NoError(t, err)
			defer db.Close()
			var n int
			require.NoError(t, db.QueryRow("SELECT count(DISTINCT pid) FROM who").Scan(&n))
			assert.Equal(t, 2, n, "both processes wrote to the database at %s", path)
		})
	}
}

// TestAttackEveryLocationBeforeMemory: with every file location unusable
// for a different reason, Open uses memory and Reason lists each one; with
// the last one usable, Open uses it rather than memory.
func TestAttackEveryLocationBeforeMemory(t *testing.T) {
	for _, lastUsable := range []bool{false, true} {
		t.Run(fmt.Sprint("TMPDIR usable: ", lastUsable), func(t *testing.T) {
			dirs := isolateAttack(t)
			gomod := filepath.Join(t.TempDir(), "go.mod")
			require.NoError(t, os.WriteFile(gomod, []byte("module x\n"), 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(dirs.work, "data"), []byte("not a directory"), 0o600))
			if !lastUsable {
				require.NoError(t, syscall.Mkfifo(filepath.Join(dirs.tmp, "app.db"), 0o600))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			db, err := openBounded(t, ctx, unblockFIFO(filepath.Join(dirs.tmp, "app.db")), dirs.opts(map[string]string{"SQLITE_PATH": gomod})...)
			require.NoError(t, err)
			defer db.Close()
			if lastUsable {
				assert.Equal(t, filepath.Join(dirs.tmp, "app.db"), db.Target().Path)
			} else {
				assert.True(t, db.Target().Memory)
				assert.Contains(t, db.Reason(), filepath.Join(dirs.tmp, "app.db"))
			}
			assert.Contains(t, db.Reason(), gomod)
			assert.Contains(t, db.Reason(), "./data")
			requireUsable(t, db)
		})
	}
}

// TestAttackOrphanLogKept: a -wal or -journal whose database was deleted
// or emptied may hold the only copy of recent rows; SQLite deletes it when
// it creates a database there. Open moves it aside, byte for byte, first.
func TestAttackOrphanLogKept(t *testing.T) {
	tests := []struct {
		name   string
		suffix string
		empty  bool // an empty database file stays beside the log
	}{
		{name: "-wal without its database", suffix: "-wal"},
		{name: "-wal beside an emptied database", suffix: "-wal", empty: true},
		{name: "-journal without its database", suffix: "-journal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dirs := isolateAttack(t)
			dir := t.TempDir()
			path := filepath.Join(dir, "app.db")
			log := []byte(strings.Repeat("frames of the last committed rows ", 100))
			require.NoError(t, os.WriteFile(path+tt.suffix, log, 0o600))
			if tt.empty {
				require.NoError(t, os.WriteFile(path, nil, 0o600))
			}
			db, err := Open(context.Background(), dirs.opts(map[string]string{"SQLITE_PATH": path})...)
			require.NoError(t, err)
			defer db.Close()
			assert.Equal(t, path, db.Target().Path)
			assert.Contains(t, db.Reason(), "moved it aside")
			requireUsable(t, db)
			kept, err := filepath.Glob(filepath.Join(dir, "app.db.orphan-*"+tt.suffix))
			require.NoError(t, err)
			require.Len(t, kept, 1, namesIn(t, dir))
			data, err := os.ReadFile(kept[0])
			require.NoError(t, err)
			assert.Equal(t, log, data)
		})
	}
}

// TestAttackRecordNotAFile: a named pipe or a directory where the record
// of a fallback period goes is neither opened in a way that blocks nor
// replaced: the database is used and Reason says the period could not be
// recorded.
func TestAttackRecordNotAFile(t *testing.T) {
	for _, kind := range []string{"fifo", "directory"} {
		t.Run(kind, func(t *testing.T) {
			dirs := isolateAttack(t)
			dir := t.TempDir()
			path := filepath.Join(dir, "app.db")
			if kind == "fifo" {
				require.NoError(t, syscall.Mkfifo(path+strandedSuffix, 0o600))
			} else {
				require.NoError(t, os.Mkdir(path+strandedSuffix, 0o700))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			db, err := openBounded(t, ctx, unblockFIFO(path+strandedSuffix), dirs.opts(map[string]string{"SQLITE_PATH": path})...)
			require.NoError(t, err)
			defer db.Close()
			assert.Equal(t, path, db.Target().Path)
			assert.Contains(t, db.Reason(), "could not record")
			st, err := os.Lstat(path + strandedSuffix)
			require.NoError(t, err)
			assert.False(t, st.Mode().IsRegular(), "left as it was")
			requireUsable(t, db)
		})
	}
}

// TestAttackFilesAsUnprivilegedUser: the file-type and permission attacks
// again as uid 65534, for whom permission bits apply: whatever cannot be
// used is skipped with a reason and left byte for byte as it was.
func TestAttackFilesAsUnprivilegedUser(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares the location in dir (writable by the user unless
		// it says otherwise) and returns SQLITE_PATH.
		setup func(t *testing.T, dir string) string
		// moved: the location is used after moving a damaged file aside;
		// used: it is used as it is.
		moved, used bool
		why         string // in Reason
	}{
		{name: "go.mod owned by root", why: "not a SQLite database", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "go.mod")
			require.NoError(t, os.WriteFile(p, []byte("module x\n"), 0o644))
			return p
		}},
		{name: "a database the user cannot read", why: "permission denied", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "app.db")
			makeSQLite(t, p, "DELETE", "CREATE TABLE notes (body TEXT)", "INSERT INTO notes VALUES ('private')")
			require.NoError(t, os.Chmod(p, 0o000))
			return p
		}},
		{name: "a database in a read-only directory", why: "not writable", setup: func(t *testing.T, dir string) string {
			ro := ownedDir(t, false)
			p := filepath.Join(ro, "app.db")
			makeSQLite(t, p, "WAL", "CREATE TABLE notes (body TEXT)", "INSERT INTO notes VALUES ('kept')")
			require.NoError(t, os.Chmod(p, 0o666))
			return p
		}},
		{name: "a damaged database in a read-only directory", why: "not writable", setup: func(t *testing.T, dir string) string {
			ro := ownedDir(t, false)
			p := filepath.Join(ro, "app.db")
			require.NoError(t, os.WriteFile(p, damagedSQLite(1), 0o666))
			require.NoError(t, os.Chmod(p, 0o666))
			return p
		}},
		{name: "a FIFO", why: "named pipe", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "app.db")
			require.NoError(t, syscall.Mkfifo(p, 0o666))
			chownUnprivileged(t, p)
			return p
		}},
		{name: "a FIFO for the journal", why: "named pipe", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "app.db")
			makeSQLite(t, p, "WAL", "CREATE TABLE notes (body TEXT)")
			chownUnprivileged(t, p)
			require.NoError(t, syscall.Mkfifo(p+"-journal", 0o666))
			chownUnprivileged(t, p+"-journal")
			return p
		}},
		{name: "a dangling symlink", why: "does not exist", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "app.db")
			require.NoError(t, os.Symlink(filepath.Join(dir, "elsewhere", "app.db"), p))
			require.NoError(t, os.Mkdir(filepath.Join(dir, "elsewhere"), 0o777))
			require.NoError(t, os.Chmod(filepath.Join(dir, "elsewhere"), 0o777))
			return p
		}},
		{name: "a directory the user may write but not list (0733)", used: true, why: "no database URL", setup: func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "drop")
			require.NoError(t, os.Mkdir(d, 0o733))
			require.NoError(t, os.Chmod(d, 0o733))
			return filepath.Join(d, "app.db")
		}},
		{name: "a damaged database the user owns", moved: true, why: "moved it aside", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "app.db")
			require.NoError(t, os.WriteFile(p, damagedSQLite(2), 0o600))
			chownUnprivileged(t, p)
			return p
		}},
	}
	// Every case in a directory of its own, all opened by one process of
	// the unprivileged user (each with its own Open), then checked.
	work := ownedDir(t, true)
	paths := make([]string, len(tests))
	dirs := make([]string, len(tests))
	before := make([]map[string]string, len(tests))
	for i, tt := range tests {
		dirs[i] = ownedDir(t, true)
		paths[i] = tt.setup(t, dirs[i])
		before[i] = treeDigest(t, filepath.Dir(paths[i]))
	}
	outcomes := reportAsUnprivileged(t, work, attackRequest{Path: paths[0], More: paths[1:], TMPDIR: work})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, path := outcomes[i], paths[i]
			require.Empty(t, res.Err)
			assert.Contains(t, res.Reason, tt.why)
			if tt.used {
				assert.Equal(t, path, res.Target, res.Reason)
				return
			}
			if tt.moved {
				assert.Equal(t, path, res.Target)
				aside := globAside(t, dirs[i])
				require.Len(t, aside, 1)
				assert.Equal(t, before[i]["app.db"], "file "+fileDigest(t, aside[0]), "moved byte for byte")
				return
			}
			assert.Equal(t, filepath.Join("data", "app.db"), res.Target, "the next file location")
			assert.Equal(t, before[i], treeDigest(t, filepath.Dir(path)), "left untouched")
		})
	}
}

// TestAttackDamagedNameTooLong: a damaged database whose name leaves no
// room for the moved-aside suffix cannot be moved: it stays byte for byte
// and the next location serves.
func TestAttackDamagedNameTooLong(t *testing.T) {
	dirs := isolateAttack(t)
	dir := t.TempDir()
	path := filepath.Join(dir, strings.Repeat("n", 240)+".db")
	require.NoError(t, os.WriteFile(path, damagedSQLite(3), 0o600))
	before := treeDigest(t, dir)
	db, err := Open(context.Background(), dirs.opts(map[string]string{"SQLITE_PATH": path})...)
	require.NoError(t, err)
	defer db.Close()
	assert.Equal(t, "data/app.db", db.Target().Path)
	assert.Contains(t, db.Reason(), "could not be moved aside")
	assert.Equal(t, before, treeDigest(t, dir))
}
