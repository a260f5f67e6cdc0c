package dbfallback

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// attack_helpers_test.go holds what the attack_*_test.go files share: an
// isolated set of SQLite locations, a second process that holds a SQLite
// file or opens one, and byte-for-byte digests of a directory.

// attackChildEnv makes the test binary act as the second process of an
// attack (see attackChild) instead of running tests.
const attackChildEnv = "DBFALLBACK_ATTACK_CHILD"

// attackRequest is what the parent asks the second process to do.
type attackRequest struct {
	// Op is "lock" (hold path locked until stdin closes) or "open" (Open
	// with SQLiteOnly on path, insert the process id into table who, print
	// the outcome as JSON, hold the database until stdin closes).
	Op   string `json:"op"`
	Path string `json:"path"`
	// Journal is the journal mode for "lock": "DELETE" (a rollback
	// journal: BEGIN EXCLUSIVE keeps every reader out) or "WAL" with
	// locking_mode=EXCLUSIVE.
	Journal string `json:"journal,omitempty"`
	// Now fixes the clock that names moved-aside files, for "open".
	Now time.Time `json:"now,omitzero"`
	// DatabaseURL is the primary for "report" (Open with the default
	// strategy, print the outcome, close, exit); TMPDIR is TMPDIR for
	// "open" and "report".
	DatabaseURL string `json:"database_url,omitempty"`
	TMPDIR      string `json:"tmpdir,omitempty"`
	// More are further SQLite paths "report" opens in turn, one Open
	// each: a process started as another user is slow to start.
	More []string `json:"more,omitempty"`
}

// attackOutcome is what an "open" child prints.
type attackOutcome struct {
	Target   string     `json:"target"`
	Reason   string     `json:"reason"`
	Err      string     `json:"err"`
	Stranded []Stranded `json:"stranded,omitempty"`
}

// attackChild runs in the second process. It reports readiness with one
// line on stdout and waits for stdin to close before letting go.
func attackChild() {
	var req attackRequest
	if err := json.Unmarshal([]byte(os.Getenv(attackChildEnv)), &req); err != nil {
		fmt.Println("bad request:", err)
		os.Exit(2)
	}
	switch req.Op {
	case "lock":
		db, err := openRawSQLite("file:" + req.Path + "?_journal_mode=" + req.Journal)
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(1)
		}
		db.SetMaxOpenConns(1)
		stmts := []string{"CREATE TABLE IF NOT EXISTS held (n INTEGER)"}
		if req.Journal == "WAL" {
			stmts = append(stmts, "PRAGMA locking_mode=EXCLUSIVE")
		}
		stmts = append(stmts, "BEGIN EXCLUSIVE", "INSERT INTO held VALUES (1)")
		for _, s := range stmts {
			if _, err := db.Exec(s); err != nil {
				fmt.Println(s+":", err)
				os.Exit(1)
			}
		}
		fmt.Println("locked")
		io.Copy(io.Discard, os.Stdin)
		db.Exec("ROLLBACK")
		db.Close()
	case "open":
		opts := []Option{WithSQLitePath(req.Path), WithStrategy(SQLiteOnly), WithLookupEnv(attackLookup(map[string]string{"TMPDIR": req.TMPDIR})), withDataDir("")}
		if !req.Now.IsZero() {
			opts = append(opts, withNow(func() time.Time { return req.Now }))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		db, err := Open(ctx, opts...)
		var out attackOutcome
		if err != nil {
			out.Err = err.Error()
		} else {
			out.Target, out.Reason = db.Target().Path, db.Reason()
			defer db.Close()
			for _, q := range []string{"CREATE TABLE IF NOT EXISTS who (pid INTEGER)", fmt.Sprintf("INSERT INTO who VALUES (%d)", os.Getpid())} {
				if _, err := db.ExecContext(ctx, q); err != nil {
					out.Err = err.Error()
				}
			}
		}
		json.NewEncoder(os.Stdout).Encode(out)
		io.Copy(io.Discard, os.Stdin)
	case "report":
		for _, path := range append([]string{req.Path}, req.More...) {
			env := map[string]string{"SQLITE_PATH": path, "TMPDIR": req.TMPDIR}
			if req.DatabaseURL != "" {
				env["DATABASE_URL"] = req.DatabaseURL
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			db, err := Open(ctx, WithLookupEnv(attackLookup(env)), withDataDir(""))
			var out attackOutcome
			if err != nil {
				out.Err = err.Error()
			} else {
				out.Target, out.Reason, out.Stranded = db.Target().Path, db.Reason(), db.Stranded()
				db.Close()
			}
			cancel()
			json.NewEncoder(os.Stdout).Encode(out)
		}
	default:
		fmt.Println("unknown op", req.Op)
		os.Exit(2)
	}
}

// attackProcess is a running second process.
type attackProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	first string // its first line of output
}

// startAttackChild starts the second process and waits for its first line.
func startAttackChild(t testing.TB, req attackRequest) *attackProcess {
	t.Helper()
	data, err := json.Marshal(req)
	require.NoError(t, err)
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Dir = t.TempDir() // ./data of an Open that passes over its SQLite path
	cmd.Env = append(os.Environ(), attackChildEnv+"="+string(data))
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	p := &attackProcess{cmd: cmd, stdin: stdin}
	t.Cleanup(p.stop)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "the second process said nothing")
	p.first = strings.TrimSpace(line)
	return p
}

// reportAsUnprivileged runs the "report" op as uid 65534 (when the test
// runs as root, for whom permission bits do not apply) in dir, its
// working directory, and returns the outcome of each path.
func reportAsUnprivileged(t *testing.T, dir string, req attackRequest) []attackOutcome {
	t.Helper()
	req.Op = "report"
	data, err := json.Marshal(req)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // an Open that hangs fails the test
	defer cancel()
	cmd := exec.CommandContext(ctx, childBinary(t), "-test.run=^$")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir, attackChildEnv + "=" + string(data)}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: unprivilegedUID, Gid: unprivilegedUID}}
	}
	out, err := cmd.Output()
	require.NoError(t, err, "helper: %s", out)
	var res []attackOutcome
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var o attackOutcome
		require.NoError(t, dec.Decode(&o), "%s", out)
		res = append(res, o)
	}
	require.Len(t, res, 1+len(req.More), "%s", out)
	return res
}

// stop lets the second process go and waits for it.
func (p *attackProcess) stop() {
	if p.stdin != nil {
		p.stdin.Close()
		p.stdin = nil
		p.cmd.Wait()
	}
}

// attackLookup is a WithLookupEnv function over vars alone: nothing from
// the real environment reaches Open.
func attackLookup(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

// attackDirs isolates every automatic SQLite location of a test: the
// working directory (./data) and TMPDIR are new temporary directories,
// /data does not exist. It returns the working directory and TMPDIR.
type attackDirs struct {
	work, tmp string
	vars      map[string]string
}

func isolateAttack(t *testing.T) *attackDirs {
	t.Helper()
	d := &attackDirs{work: t.TempDir(), tmp: t.TempDir()}
	t.Chdir(d.work)
	d.vars = map[string]string{"TMPDIR": d.tmp}
	return d
}

// opts returns the options that keep Open inside the test's directories,
// with extra variables (SQLITE_PATH, DATABASE_URL, …).
func (d *attackDirs) opts(vars map[string]string, more ...Option) []Option {
	all := map[string]string{}
	for k, v := range d.vars {
		all[k] = v
	}
	for k, v := range vars {
		all[k] = v
	}
	return append([]Option{WithLookupEnv(attackLookup(all)), withDataDir(filepath.Join(d.work, "no-data-mount"))}, more...)
}

// treeDigest maps every entry under dir (relative name) to its type and,
// for regular files, the SHA-256 of its bytes; symbolic links to their
// target. It never opens anything but regular files.
func treeDigest(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			out[rel] = "symlink " + target
			return err
		case e.Type().IsRegular():
			data, err := os.ReadFile(p)
			sum := sha256.Sum256(data)
			out[rel] = "file " + hex.EncodeToString(sum[:])
			return err
		default:
			out[rel] = "type " + e.Type().String()
		}
		return nil
	})
	require.NoError(t, err)
	return out
}

// fileDigest is the SHA-256 of one file's bytes.
func fileDigest(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// makeSQLite creates a SQLite database at path in the given journal mode
// with the statements run, and closes it.
func makeSQLite(t testing.TB, path, journal string, stmts ...string) {
	t.Helper()
	db, err := openRawSQLite("file:" + path + "?_journal_mode=" + journal)
	require.NoError(t, err)
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, s := range stmts {
		_, err := db.Exec(s)
		require.NoError(t, err, s)
	}
}

// namesIn lists the names in dir, sorted.
func namesIn(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}
