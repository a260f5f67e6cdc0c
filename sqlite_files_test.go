package dbfallback

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sqliteBytes builds a real SQLite database (rollback journal, so every
// page is in the main file) with a notes table of n rows, and returns its
// bytes and page size.
func sqliteBytes(t testing.TB, n int) ([]byte, int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "src.db")
	db := rawSQLite(t, path)
	_, err := db.Exec(`CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT NOT NULL);
		WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < ?)
		INSERT INTO notes(body) SELECT printf('note %d ', i) || hex(randomblob(40)) FROM c`, n)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return data, int(binary.BigEndian.Uint16(data[16:18]))
}

// junk returns n deterministic pseudo-random bytes.
func junk(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Damaged SQLite databases: SQLite's header is there, the rest is not.
var damagedDatabases = []struct {
	name  string
	build func(t *testing.T) []byte
	why   string // in the note
}{
	{"truncated mid-page", func(t *testing.T) []byte {
		data, _ := sqliteBytes(t, 2000)
		return data[:len(data)/2+100]
	}, "truncated"},
	{"header then junk", func(t *testing.T) []byte {
		data, _ := sqliteBytes(t, 2000)
		return append(data[:100:100], junk(len(data)-100, 1)...)
	}, "damaged SQLite database"},
	{"damaged header", func(t *testing.T) []byte {
		data, _ := sqliteBytes(t, 200)
		binary.BigEndian.PutUint16(data[16:18], 1000) // not a power of two
		return data
	}, "damaged header"},
	{"valid header over corrupt pages", func(t *testing.T) []byte {
		data, pageSize := sqliteBytes(t, 2000)
		return append(data[:pageSize:pageSize], junk(len(data)-pageSize, 2)...)
	}, "malformed"},
	{"only the magic", func(*testing.T) []byte { return []byte("SQLite format 3\x00") }, "truncated"},
}

// Files that are not SQLite at all: left untouched.
var foreignFiles = []struct {
	name    string
	content []byte
}{
	{"go.mod", []byte("module example.com/app\n\ngo 1.25.0\n")},
	{"html", []byte("<html>this is not SQLite</html>\n")},
	{"a prefix of the magic", []byte("SQLite for")},
	{"binary junk", junk(8192, 3)},
	{"a .env file with a secret", []byte("DATABASE_URL=postgres://app:Env-S3cret@db/app\n")},
}

// TestSQLiteForeignFileLeftUntouched: a mistyped SQLITE_PATH naming a file
// that is not SQLite leaves the file as it was, byte for byte, with its
// mode and time, and Open uses the next location with a reason.
func TestSQLiteForeignFileLeftUntouched(t *testing.T) {
	for _, tt := range foreignFiles {
		t.Run(tt.name, func(t *testing.T) {
			work, _ := isolatedDirs(t)
			path := filepath.Join(t.TempDir(), "go.mod")
			require.NoError(t, os.WriteFile(path, tt.content, 0o644))
			old := time.Now().Add(-time.Hour).Truncate(time.Second)
			require.NoError(t, os.Chtimes(path, old, old))
			db, err := Open(context.Background(), env("SQLITE_PATH", path), withDataDir(""))
			require.NoError(t, err)
			defer db.Close()
			assert.Equal(t, filepath.Join("data", "app.db"), db.Target().Path, "the next location")
			assert.Contains(t, db.Reason(), "is not a SQLite database")
			assert.Contains(t, db.Reason(), "left untouched")
			assert.NotContains(t, db.Reason(), "Env-S3cret", "no content is quoted")
			kept, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, tt.content, kept)
			st, err := os.Stat(path)
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o644), st.Mode().Perm())
			assert.True(t, st.ModTime().Equal(old), "not even opened for writing")
			matches, _ := filepath.Glob(path + "*")
			assert.Equal(t, []string{path}, matches, "nothing created next to it")
			_, err = os.Stat(filepath.Join(work, "data", "app.db"))
			assert.NoError(t, err)
		})
	}
}

// TestSQLiteSpecialFilesNeverOpened: a FIFO, a socket, a device or a
// directory at a SQLite location is skipped at once with a reason.
func TestSQLiteSpecialFilesNeverOpened(t *testing.T) {
	tests := []struct {
		name string
		mk   func(t *testing.T, path string) string // returns the path to use
		why  string
	}{
		{"fifo", func(t *testing.T, path string) string {
			require.NoError(t, syscall.Mkfifo(path, 0o600))
			return path
		}, "named pipe (FIFO)"},
		{"socket", func(t *testing.T, path string) string {
			l, err := net.Listen("unix", path)
			require.NoError(t, err)
			t.Cleanup(func() { l.Close() })
			return path
		}, "is a socket"},
		{"device", func(*testing.T, string) string { return "/dev/null" }, "is a device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolatedDirs(t)
			path := tt.mk(t, filepath.Join(t.TempDir(), "app.db"))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			db, err := Open(ctx, env("SQLITE_PATH", path), withDataDir(""))
			require.NoError(t, err)
			defer db.Close()
			assert.Less(t, time.Since(start), 2*time.Second)
			assert.Equal(t, filepath.Join("data", "app.db"), db.Target().Path)
			assert.Contains(t, db.Reason(), tt.why)
		})
	}
	t.Run("directory at the file's place", func(t *testing.T) {
		isolatedDirs(t)
		dir := filepath.Join(t.TempDir(), "app.db")
		require.NoError(t, os.Mkdir(dir, 0o700))
		r, err := Resolve(context.Background(), env(), withDataDir(""), WithSQLitePath(dir+"/"))
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(dir, "app.db"), r.Paths[0].Path, "a directory given explicitly holds <name>")
		s, err := inspectSQLiteFile(context.Background(), dir)
		require.NoError(t, err)
		assert.Equal(t, fileSpecial, s.kind)
		assert.Contains(t, s.why, "is a directory")
	})
}

// TestSQLiteFIFONeverOpened proves that Open never opens a FIFO, even
// without blocking: a writer waiting for a reader stays blocked.
func TestSQLiteFIFONeverOpened(t *testing.T) {
	isolatedDirs(t)
	fifo := filepath.Join(t.TempDir(), "app.db")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	writerOpened := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0) // blocks until someone opens it for reading
		if err == nil {
			f.Close()
		}
		writerOpened <- err
	}()
	for _, resolveOnly := range []bool{true, false} {
		if resolveOnly {
			r, err := Resolve(context.Background(), env("SQLITE_PATH", fifo), withDataDir(""))
			require.NoError(t, err)
			assert.ErrorContains(t, r.Paths[0].Err, "named pipe")
			continue
		}
		db, err := Open(context.Background(), env("SQLITE_PATH", fifo), withDataDir(""))
		require.NoError(t, err)
		assert.Equal(t, filepath.Join("data", "app.db"), db.Target().Path)
		require.NoError(t, db.Close())
	}
	select {
	case err := <-writerOpened:
		t.Fatalf("something opened the FIFO for reading (writer returned %v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	// Release the writer.
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	require.NoError(t, err)
	require.NoError(t, <-writerOpened)
	r.Close()
}

// TestWithinCtx: a probe stuck in a system call (here a real read of a FIFO
// nobody writes) does not hold the caller past ctx.
func TestWithinCtx(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "stuck")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	released := make(chan struct{})
	start := time.Now()
	_, err := withinCtx(ctx, func() (int, error) {
		defer close(released)
		f, err := os.Open(fifo) // blocks: no writer
		if err != nil {
			return 0, err
		}
		defer f.Close()
		return f.Read(make([]byte, 1))
	})
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), time.Second)
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // unblock the abandoned probe
	require.NoError(t, err)
	w.Close()
	<-released

	v, err := withinCtx(context.Background(), func() (int, error) { return 7, nil })
	assert.NoError(t, err)
	assert.Equal(t, 7, v)
	done, stop := context.WithCancel(context.Background())
	stop()
	_, err = withinCtx(done, func() (int, error) { t.Error("not run once ctx is done"); return 0, nil })
	assert.ErrorIs(t, err, context.Canceled)
}

// TestSQLiteMovesAsideNeverCollide: ten damaged files at the same path
// within the same second (the clock is frozen) give ten distinct files,
// byte for byte, and a name that is already taken is never replaced.
func TestSQLiteMovesAsideNeverCollide(t *testing.T) {
	isolatedDirs(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db")
	now := time.Date(2026, 11, 26, 12, 30, 45, 0, time.UTC)
	squatter := path + ".corrupt-20261126T123045Z-3"
	require.NoError(t, os.WriteFile(squatter, []byte("the operator's own file"), 0o600))
	var contents [][]byte
	for i := range 10 {
		content := append([]byte("SQLite format 3\x00"), junk(200, uint64(i+10))...) // damaged header
		require.NoError(t, os.WriteFile(path, content, 0o600))
		contents = append(contents, content)
		db, err := Open(context.Background(), env(), withDataDir(""), WithSQLitePath(path), withNow(func() time.Time { return now }))
		require.NoError(t, err)
		assert.Equal(t, path, db.Target().Path)
		assert.Contains(t, db.Reason(), "moved it aside")
		require.NoError(t, db.Close())
	}
	kept, err := os.ReadFile(squatter)
	require.NoError(t, err)
	assert.Equal(t, "the operator's own file", string(kept), "a taken name is never replaced")
	for i, content := range contents {
		name := path + ".corrupt-20261126T123045Z"
		if n := i + 1; n > 1 {
			if n >= 3 {
				n++ // -3 was taken
			}
			name = fmt.Sprintf("%s-%d", name, n)
		}
		got, err := os.ReadFile(name)
		require.NoError(t, err, "move %d", i+1)
		assert.True(t, bytes.Equal(content, got), "move %d kept its bytes", i+1)
	}
	matches, _ := filepath.Glob(path + ".corrupt-*[0-9Z]")
	assert.Len(t, matches, 11, "ten moved files and the operator's: %v", matches)
}

// TestSQLiteConcurrentMovesAside: eight goroutines open the same damaged
// file at once. It is moved aside exactly once, intact, and every Open
// ends on a usable database at the same path.
func TestSQLiteConcurrentMovesAside(t *testing.T) {
	isolatedDirs(t)
	path := filepath.Join(t.TempDir(), "app.db")
	content := append([]byte("SQLite format 3\x00"), junk(4096, 7)...)
	require.NoError(t, os.WriteFile(path, content, 0o600))
	var wg sync.WaitGroup
	var firstErr firstError
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := prepareSQLiteFile(context.Background(), path, time.Now, nil); err != nil {
				firstErr.set(err)
			}
		}()
	}
	wg.Wait()
	require.NoError(t, firstErr.get())
	matches, _ := filepath.Glob(path + ".corrupt-*")
	require.Len(t, matches, 1, "moved aside once")
	got, err := os.ReadFile(matches[0])
	require.NoError(t, err)
	assert.Equal(t, content, got)
	s, err := inspectSQLiteFile(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, fileNew, s.kind, "an empty file took its place")
}

// TestRenameNoReplace checks each way of moving a file that refuses to
// replace one: renameat2, link and unlink, and the placeholder.
func TestRenameNoReplace(t *testing.T) {
	ways := map[string]func(string, string) error{
		"renameNoReplace":   renameNoReplace,
		"linkUnlink":        linkUnlink,
		"placeholderRename": placeholderRename,
	}
	if err := renameat2NoReplace(filepath.Join(t.TempDir(), "missing"), filepath.Join(t.TempDir(), "x")); !errors.Is(err, errors.ErrUnsupported) {
		ways["renameat2NoReplace"] = renameat2NoReplace
	}
	for name, rename := range ways {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
			require.NoError(t, os.WriteFile(src, []byte("damaged"), 0o600))
			require.NoError(t, os.WriteFile(dst, []byte("taken"), 0o600))
			err := rename(src, dst)
			assert.ErrorIs(t, err, fs.ErrExist)
			for p, want := range map[string]string{src: "damaged", dst: "taken"} {
				got, err := os.ReadFile(p)
				require.NoError(t, err)
				assert.Equal(t, want, string(got), "nothing replaced")
			}
			free := filepath.Join(dir, "free")
			require.NoError(t, rename(src, free))
			got, err := os.ReadFile(free)
			require.NoError(t, err)
			assert.Equal(t, "damaged", string(got))
			_, err = os.Stat(src)
			assert.ErrorIs(t, err, fs.ErrNotExist)
			assert.ErrorIs(t, rename(src, filepath.Join(dir, "other")), fs.ErrNotExist)
		})
	}
}

// TestOpenTriesNextFileLocation: when the chosen file fails to open (not
// at Resolve, where it looked fine), the next file location is used,
// never memory while a file location works, and each skip is in Reason.
func TestOpenTriesNextFileLocation(t *testing.T) {
	t.Run("shm is a directory", func(t *testing.T) {
		_, tmp := isolatedDirs(t)
		first := filepath.Join(t.TempDir(), "app.db")
		require.NoError(t, os.Mkdir(first+"-shm", 0o700))
		db, err := Open(context.Background(), env("SQLITE_PATH", first, "TMPDIR", tmp), withDataDir(""))
		require.NoError(t, err)
		defer db.Close()
		assert.Equal(t, filepath.Join("data", "app.db"), db.Target().Path)
		assert.False(t, db.Target().Memory)
		// SQLite would open the -shm with the database: the location is
		// skipped before it is opened (it used to fail at Open).
		require.Len(t, db.Attempts(), 1)
		assert.Contains(t, db.Reason(), first+"-shm beside it, which is a directory")
		_, err = db.Exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
		assert.NoError(t, err)
	})
	t.Run("every file location fails: memory, each listed", func(t *testing.T) {
		work, tmp := isolatedDirs(t)
		first := filepath.Join(t.TempDir(), "app.db")
		for _, p := range []string{first, filepath.Join(work, "data", "app.db"), filepath.Join(tmp, "app.db")} {
			require.NoError(t, os.MkdirAll(p+"-shm", 0o700))
		}
		db, err := Open(context.Background(), env("SQLITE_PATH", first, "TMPDIR", tmp), withDataDir(""))
		require.NoError(t, err)
		defer db.Close()
		assert.True(t, db.Target().Memory)
		require.Len(t, db.Attempts(), 1, "each location is skipped before it is opened")
		for _, p := range []string{first, filepath.Join("data", "app.db"), filepath.Join(tmp, "app.db")} {
			assert.Contains(t, db.Reason(), p+"-shm beside it")
		}
	})
	t.Run("a device at the first location", func(t *testing.T) {
		isolatedDirs(t)
		db, err := Open(context.Background(), env("SQLITE_PATH", "/dev/null"), withDataDir(""))
		require.NoError(t, err)
		defer db.Close()
		assert.Equal(t, filepath.Join("data", "app.db"), db.Target().Path, "not :memory:")
		assert.Contains(t, db.Reason(), "/dev/null is a device")
	})
	t.Run("a truncated database with a stale WAL", func(t *testing.T) {
		isolatedDirs(t)
		path := filepath.Join(t.TempDir(), "app.db")
		data, _ := sqliteBytes(t, 2000)
		require.NoError(t, os.WriteFile(path, data[:len(data)/3], 0o600))
		require.NoError(t, os.WriteFile(path+"-wal", junk(5000, 9), 0o600))
		db, err := Open(context.Background(), env("SQLITE_PATH", path), withDataDir(""))
		require.NoError(t, err)
		defer db.Close()
		assert.False(t, db.Target().Memory, "%s", db.Reason())
		_, err = db.Exec("CREATE TABLE fresh(x)")
		assert.NoError(t, err)
		matches, _ := filepath.Glob(path + ".corrupt-*")
		assert.NotEmpty(t, matches, "the damaged file and its WAL were moved aside: %s", db.Reason())
	})
}

// TestResolveListsEveryUsableLocation: Fallbacks holds every usable file
// location in order, then memory; Chosen marks the first.
func TestResolveListsEveryUsableLocation(t *testing.T) {
	_, tmp := isolatedDirs(t)
	data := t.TempDir()
	explicit := filepath.Join(t.TempDir(), "x.db")
	r, err := Resolve(context.Background(), env("SQLITE_PATH", explicit, "TMPDIR", tmp), withDataDir(data))
	require.NoError(t, err)
	var got []string
	for _, f := range r.Fallbacks {
		got = append(got, f.String())
	}
	assert.Equal(t, []string{"file:" + explicit, "file:" + filepath.Join(data, "app.db"), "file:data/app.db", "file:" + filepath.Join(tmp, "app.db"), ":memory:"}, got)
	assert.True(t, r.Paths[0].Chosen)
	for _, p := range r.Paths[1:] {
		assert.False(t, p.Chosen)
	}
	assert.Equal(t, r.Fallbacks, PreferPrimary.Candidates(r), "without a primary, every location then memory")
}
