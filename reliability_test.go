package dbfallback

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Environment variables that turn the test binary into a helper process.
const (
	crashChildEnv = "DBFALLBACK_CRASH_CHILD" // path of the SQLite file to write to
	openChildEnv  = "DBFALLBACK_OPEN_CHILD"  // JSON-encoded openRequest
)

// crashChild writes rows through Tx from four goroutines and prints each id
// after its commit returns, until it is killed.
func crashChild(path string) {
	db, err := Open(context.Background(), WithSQLitePath(path), WithStrategy(SQLiteOnly),
		WithInit(func(ctx context.Context, db *DB) error {
			_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS crash (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
			return err
		}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	var next atomic.Int64
	var last int64
	db.QueryRow("SELECT coalesce(max(id), 0) FROM crash").Scan(&last)
	next.Store(last)
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				id := next.Add(1)
				err := db.Tx(context.Background(), func(tx *sql.Tx) error {
					_, err := tx.Exec("INSERT INTO crash (id, payload) VALUES (?, ?)", id, strings.Repeat("p", 512))
					return err
				})
				if err != nil {
					fmt.Fprintln(os.Stderr, "write failed:", err)
					os.Exit(4)
				}
				mu.Lock()
				fmt.Fprintf(out, "committed %d\n", id)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestCrashSafety kills a writer with SIGKILL at a random moment while it
// writes, 25 times:
// every id it reported as committed must be in the database afterwards,
// and the database must pass PRAGMA integrity_check.
func TestCrashSafety(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash.db")
	setup, err := Open(context.Background(), env(), withDataDir(""), WithSQLitePath(path), WithStrategy(SQLiteOnly))
	require.NoError(t, err)
	_, err = setup.Exec("CREATE TABLE crash (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
	require.NoError(t, err)
	require.NoError(t, setup.Close())
	committed := map[int64]bool{}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	const rounds = 25
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		reported := make(chan []int64, 1)
		writing := make(chan struct{})
		go func() {
			var ids []int64
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if id, err := strconv.ParseInt(strings.TrimPrefix(sc.Text(), "committed "), 10, 64); err == nil {
					if len(ids) == 0 {
						close(writing)
					}
					ids = append(ids, id)
				}
			}
			reported <- ids
		}()
		select {
		case <-writing:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: the writer never committed: %s", round, stderr.String())
		}
		// Kill it at a random moment while it writes.
		time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		ids := <-reported
		err = cmd.Wait()
		var ee *exec.ExitError
		require.True(t, errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled(), "round %d: the writer died of SIGKILL, not %v: %s", round, err, stderr.String())
		for _, id := range ids {
			committed[id] = true
		}
		// Reopen as a service would after the crash: SQLite recovers the WAL.
		db, err := Open(context.Background(), env(), withDataDir(""), WithSQLitePath(path), WithStrategy(SQLiteOnly))
		require.NoError(t, err)
		var check string
		require.NoError(t, db.QueryRow("PRAGMA integrity_check").Scan(&check))
		assert.Equal(t, "ok", check, "round %d", round)
		present := map[int64]bool{}
		rows, err := db.Query("SELECT id FROM crash")
		require.NoError(t, err)
		for rows.Next() {
			var id int64
			require.NoError(t, rows.Scan(&id))
			present[id] = true
		}
		require.NoError(t, rows.Err())
		rows.Close()
		db.Close()
		lost := 0
		for id := range committed {
			if !present[id] {
				lost++
			}
		}
		require.Zerof(t, lost, "round %d: %d committed rows lost", round, lost)
	}
	t.Logf("%d rounds, %d committed rows reported, none lost", rounds, len(committed))
	assert.Greater(t, len(committed), rounds, "the writer made progress")
}

// openRequest is what an unprivileged Open helper is asked to do.
type openRequest struct {
	SQLitePath string
	TMPDIR     string
}

// openResult is what it reports.
type openResult struct {
	Dialect string
	Path    string
	Memory  bool
	Reason  string
	Err     string
}

// openChild opens a database as described by the request in its
// environment and prints the outcome as JSON.
func openChild() {
	var req openRequest
	json.Unmarshal([]byte(os.Getenv(openChildEnv)), &req)
	env := map[string]string{"TMPDIR": req.TMPDIR}
	if req.SQLitePath != "" {
		env["SQLITE_PATH"] = req.SQLitePath
	}
	db, err := Open(context.Background(), WithLookupEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }),
		withDataDir(""), WithStrategy(SQLiteOnly))
	var res openResult
	if err != nil {
		res.Err = err.Error()
	} else {
		res.Dialect, res.Path, res.Memory, res.Reason = string(db.Dialect()), db.Target().Path, db.Target().Memory, db.Reason()
		db.Close()
	}
	json.NewEncoder(os.Stdout).Encode(res)
}

// unprivilegedUID is the user filesystem-fault tests run as when the test
// runs as root, for whom permission bits do not apply.
const unprivilegedUID = 65534

// openAsUser runs openChild as an unprivileged user in dir (its working
// directory) and returns the outcome.
func openAsUser(t *testing.T, dir string, req openRequest) openResult {
	t.Helper()
	exe := childBinary(t)
	data, _ := json.Marshal(req)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir, openChildEnv + "=" + string(data)}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: unprivilegedUID, Gid: unprivilegedUID}}
	}
	out, err := cmd.Output()
	require.NoError(t, err, "helper: %s", out)
	var res openResult
	require.NoError(t, json.Unmarshal(out, &res), "%s", out)
	return res
}

var (
	childOnce sync.Once
	childPath string
)

// childBinary copies the test binary where an unprivileged user can run it;
// TestMain removes the copy.
func childBinary(t *testing.T) string {
	t.Helper()
	childOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dbfallback-child-")
		require.NoError(t, err)
		require.NoError(t, os.Chmod(dir, 0o755))
		src, err := os.Open(os.Args[0])
		require.NoError(t, err)
		defer src.Close()
		childPath = filepath.Join(dir, "dbfallback.test")
		dst, err := os.OpenFile(childPath, os.O_CREATE|os.O_WRONLY, 0o755)
		require.NoError(t, err)
		_, err = io.Copy(dst, src)
		require.NoError(t, err)
		require.NoError(t, dst.Close())
	})
	return childPath
}

// ownedDir makes a directory the unprivileged user may (writable) or may
// not write.
func ownedDir(t *testing.T, writable bool) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dbfallback-fs-")
	require.NoError(t, err)
	t.Cleanup(func() { os.Chmod(dir, 0o755); os.RemoveAll(dir) })
	mode := os.FileMode(0o755)
	if writable {
		mode = 0o777
	} else if os.Geteuid() != 0 {
		mode = 0o555
	}
	require.NoError(t, os.Chmod(dir, mode))
	return dir
}

// TestFilesystemFaults: locations SQLite cannot use are skipped with a
// reason, and nothing already there is changed or deleted.
func TestFilesystemFaults(t *testing.T) {
	t.Run("directory without write permission", func(t *testing.T) {
		work := ownedDir(t, true)
		locked := ownedDir(t, false)
		res := openAsUser(t, work, openRequest{SQLitePath: filepath.Join(locked, "app.db"), TMPDIR: work})
		require.Empty(t, res.Err)
		assert.Equal(t, filepath.Join("data", "app.db"), res.Path, "the next location is used")
		assert.Contains(t, res.Reason, "SQLITE_PATH skipped")
		assert.Contains(t, res.Reason, "not writable")
		entries, _ := os.ReadDir(locked)
		assert.Empty(t, entries)
	})
	t.Run("file without write permission", func(t *testing.T) {
		work := ownedDir(t, true)
		dir := ownedDir(t, true)
		file := filepath.Join(dir, "app.db")
		content, _ := sqliteBytes(t, 10) // someone else's database
		require.NoError(t, os.WriteFile(file, content, 0o444))
		res := openAsUser(t, work, openRequest{SQLitePath: file, TMPDIR: work})
		require.Empty(t, res.Err)
		assert.Equal(t, filepath.Join("data", "app.db"), res.Path)
		assert.Contains(t, res.Reason, "cannot be opened for writing")
		kept, err := os.ReadFile(file)
		require.NoError(t, err)
		assert.Equal(t, content, kept, "never changed, never deleted")
	})
	t.Run("path that is a directory", func(t *testing.T) {
		work := ownedDir(t, true)
		require.NoError(t, os.MkdirAll(filepath.Join(work, "data", "app.db"), 0o777))
		require.NoError(t, os.Chmod(filepath.Join(work, "data"), 0o777))
		require.NoError(t, os.Chmod(filepath.Join(work, "data", "app.db"), 0o777))
		tmp := ownedDir(t, true)
		res := openAsUser(t, work, openRequest{TMPDIR: tmp})
		require.Empty(t, res.Err)
		assert.Equal(t, filepath.Join(tmp, "app.db"), res.Path)
		assert.Contains(t, res.Reason, "is a directory")
	})
	t.Run("nothing writable leaves memory", func(t *testing.T) {
		work := ownedDir(t, false)
		res := openAsUser(t, work, openRequest{TMPDIR: ownedDir(t, false)})
		require.Empty(t, res.Err)
		assert.True(t, res.Memory)
		assert.Contains(t, res.Reason, "not writable")
	})
	t.Run("special files are never opened", func(t *testing.T) {
		for name, mk := range map[string]func(t *testing.T, path string) (string, string){
			"fifo": func(t *testing.T, path string) (string, string) {
				require.NoError(t, syscall.Mkfifo(path, 0o666))
				return path, "named pipe (FIFO)"
			},
			"socket": func(t *testing.T, path string) (string, string) {
				l, err := net.Listen("unix", path)
				require.NoError(t, err)
				t.Cleanup(func() { l.Close() })
				return path, "is a socket"
			},
			"device": func(*testing.T, string) (string, string) { return "/dev/null", "is a device" },
		} {
			t.Run(name, func(t *testing.T) {
				work := ownedDir(t, true)
				path, why := mk(t, filepath.Join(ownedDir(t, true), "app.db"))
				res := openAsUser(t, work, openRequest{SQLitePath: path, TMPDIR: work})
				require.Empty(t, res.Err)
				assert.Equal(t, filepath.Join("data", "app.db"), res.Path, "the next location, not memory")
				assert.Contains(t, res.Reason, why)
			})
		}
	})
	t.Run("file that is not SQLite is left untouched", func(t *testing.T) {
		work := ownedDir(t, true)
		file := filepath.Join(ownedDir(t, true), "go.mod")
		content := []byte("module example.com/app\n")
		require.NoError(t, os.WriteFile(file, content, 0o666))
		chownUnprivileged(t, file)
		res := openAsUser(t, work, openRequest{SQLitePath: file, TMPDIR: work})
		require.Empty(t, res.Err)
		assert.Equal(t, filepath.Join("data", "app.db"), res.Path)
		assert.Contains(t, res.Reason, "not a SQLite database")
		kept, err := os.ReadFile(file)
		require.NoError(t, err)
		assert.Equal(t, content, kept)
		matches, _ := filepath.Glob(file + "*")
		assert.Equal(t, []string{file}, matches)
	})
	t.Run("damaged SQLite file is moved aside", func(t *testing.T) {
		work := ownedDir(t, true)
		file := filepath.Join(ownedDir(t, true), "app.db")
		content := damagedDatabases[0].build(t)
		require.NoError(t, os.WriteFile(file, content, 0o600))
		chownUnprivileged(t, file)
		res := openAsUser(t, work, openRequest{SQLitePath: file, TMPDIR: work})
		require.Empty(t, res.Err)
		assert.Equal(t, file, res.Path)
		matches, _ := filepath.Glob(file + ".corrupt-*")
		require.Len(t, matches, 1, "%s", res.Reason)
		kept, err := os.ReadFile(matches[0])
		require.NoError(t, err)
		assert.Equal(t, content, kept)
	})
	t.Run("write-ahead log owned by someone else", func(t *testing.T) {
		// A database whose -wal another user left behind (say, the sqlite3
		// shell run as root on a live file): it opens read-only, so writes
		// would fail on the first request. The next location is used and
		// neither file changes.
		work := ownedDir(t, true)
		dir := ownedDir(t, true)
		file := filepath.Join(dir, "app.db")
		src := filepath.Join(t.TempDir(), "src.db")
		live, err := openRawSQLite(src + "?_journal_mode=WAL")
		require.NoError(t, err)
		defer live.Close()
		_, err = live.Exec("CREATE TABLE notes(body TEXT); INSERT INTO notes VALUES ('only in the WAL')")
		require.NoError(t, err)
		for _, suffix := range []string{"", "-wal"} {
			data, err := os.ReadFile(src + suffix)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(file+suffix, data, 0o644))
		}
		chownUnprivileged(t, file)
		if os.Geteuid() != 0 {
			require.NoError(t, os.Chmod(file+"-wal", 0o444))
		}
		before := fileDigests(t, file, file+"-wal")
		res := openAsUser(t, work, openRequest{SQLitePath: file, TMPDIR: work})
		require.Empty(t, res.Err)
		assert.Equal(t, filepath.Join("data", "app.db"), res.Path, "the next location, not memory")
		assert.Contains(t, res.Reason, "cannot be written")
		assert.Equal(t, before, fileDigests(t, file, file+"-wal"), "neither file changed")
	})
}

// chownUnprivileged gives path to the unprivileged user when running as
// root.
func chownUnprivileged(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() == 0 {
		require.NoError(t, os.Chown(path, unprivilegedUID, unprivilegedUID))
	}
}

// fileDigests returns the SHA-256 of each file.
func fileDigests(t *testing.T, paths ...string) []string {
	t.Helper()
	var out []string
	for _, p := range paths {
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		sum := sha256.Sum256(data)
		out = append(out, hex.EncodeToString(sum[:]))
	}
	return out
}

// TestHostileConfiguration: junk and broken values never panic, hang or
// leak, and Open still serves.
func TestHostileConfiguration(t *testing.T) {
	junk := strings.Repeat("postgres://admin:Junk-S3cret@db/", 16<<10/32)
	secretFile := func(t *testing.T, content []byte) string {
		p := filepath.Join(t.TempDir(), "secret")
		require.NoError(t, os.WriteFile(p, content, 0o600))
		return p
	}
	huge := bytes.Repeat([]byte("postgres://admin:Junk-S3cret@db/app\n"), 4000)
	tests := []struct {
		name string
		env  func(t *testing.T) []string
		want string // substring of the DB's Reason
	}{
		{"16 KiB of junk in DATABASE_URL", func(*testing.T) []string { return []string{"DATABASE_URL", junk} }, "16384 bytes long"},
		{"secret file missing", func(t *testing.T) []string {
			return []string{"DATABASE_URL_FILE", filepath.Join(t.TempDir(), "missing")}
		}, "no such file"},
		{"secret file empty", func(t *testing.T) []string { return []string{"DATABASE_URL_FILE", secretFile(t, nil)} }, "empty"},
		{"secret file is a directory", func(t *testing.T) []string { return []string{"DATABASE_URL_FILE", t.TempDir()} }, "is a directory"},
		{"secret file is huge", func(t *testing.T) []string { return []string{"DATABASE_URL_FILE", secretFile(t, huge)} }, "larger than 64 KiB"},
		{"binary junk", func(*testing.T) []string {
			return []string{"DATABASE_URL", "postgres://admin:Junk-S3cret@\x00\xff\xfe/app"}
		}, "UTF-8"},
		{"PG variables with junk", func(*testing.T) []string {
			return []string{"PGHOST", "db host with spaces", "PGPASSWORD", "Junk-S3cret", "PGDATABASE", "app"}
		}, "not a valid host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolatedDirs(t)
			var logs bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			db, err := Open(ctx, env(tt.env(t)...), withDataDir(""), WithLogger(slogJSON(&logs)))
			require.NoError(t, err)
			defer db.Close()
			assert.Equal(t, SQLite, db.Dialect())
			assert.Contains(t, db.Reason(), tt.want)
			h, _ := json.Marshal(db.Health(ctx))
			for _, s := range []string{db.Reason(), logs.String(), string(h)} {
				assert.NotContains(t, s, "Junk-S3cret")
				assert.Less(t, len(s), 4096, "no junk is echoed at length")
			}
		})
	}
}

// TestNoDescriptorLeaks opens and closes every kind of database many times
// and counts the process's open files.
func TestNoDescriptorLeaks(t *testing.T) {
	kinds := map[string][]Option{
		"sqlite file": {WithSQLitePath(filepath.Join(t.TempDir(), "fd.db")), WithStrategy(SQLiteOnly)},
		"memory":      {WithURL("sqlite://"), WithStrategy(PreferPrimary)},
		"refused primary": {WithURL(fmt.Sprintf("postgres://u:p@127.0.0.1:%d/app?sslmode=disable", freePort(t))),
			WithSQLitePath(filepath.Join(t.TempDir(), "fd2.db"))},
	}
	if url := os.Getenv("DBFALLBACK_TEST_DATABASE_URL"); url != "" {
		kinds["postgres"] = []Option{WithURL(url), WithStrategy(PrimaryOnly)}
	}
	count := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		require.NoError(t, err)
		return len(entries)
	}
	for name, opts := range kinds {
		t.Run(name, func(t *testing.T) {
			isolatedDirs(t)
			open := func() {
				db, err := Open(context.Background(), append([]Option{env(), withDataDir("")}, opts...)...)
				require.NoError(t, err)
				_, err = db.Exec("SELECT 1")
				require.NoError(t, err)
				require.NoError(t, db.Close())
			}
			open() // warm up lazily opened files (timezone data and the like)
			before := count()
			for range 20 {
				open()
			}
			assert.Equal(t, before, count(), "open files after 20 Open/Close cycles")
		})
	}
}
