package main

import (
	"bufio"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// attack_sigterm_test.go runs the Space binary the way a Space does and
// sends SIGTERM while dbfallback.Open is still at work: whatever Open is
// waiting for (a silent PostgreSQL, a SQLite file another process holds, a
// named pipe where SQLite keeps its journal), the process ends within 5s.

// attackHoldSQLite makes a rollback-journal database at path and holds it
// in BEGIN EXCLUSIVE (no other process can read it) until the test ends.
func attackHoldSQLite(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=DELETE")
	require.NoError(t, err)
	db.SetMaxOpenConns(1)
	for _, q := range []string{"CREATE TABLE notes (id INTEGER PRIMARY KEY)", "BEGIN EXCLUSIVE", "INSERT INTO notes VALUES (1)"} {
		_, err := db.Exec(q)
		require.NoError(t, err, q)
	}
	t.Cleanup(func() {
		db.Exec("ROLLBACK")
		db.Close()
	})
}

// TestAttackSpaceSIGTERMWhileOpenWaits: SIGTERM 300ms after start, while
// Open waits, ends the Space within 5 seconds.
func TestAttackSpaceSIGTERMWhileOpenWaits(t *testing.T) {
	bin := serverBinary(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) []string // returns the environment
	}{
		{name: "silent PostgreSQL", setup: func(t *testing.T, dir string) []string {
			return []string{fmt.Sprintf("DATABASE_URL=postgres://u:pw@127.0.0.1:%d/app", silentPrimary(t))}
		}},
		{name: "SQLITE_PATH held by another process", setup: func(t *testing.T, dir string) []string {
			path := filepath.Join(dir, "held.db")
			attackHoldSQLite(t, path)
			return []string{"SQLITE_PATH=" + path}
		}},
		{name: "SQLITE_PATH held by another process, DB_OPEN_TIMEOUT=1s", setup: func(t *testing.T, dir string) []string {
			path := filepath.Join(dir, "held.db")
			attackHoldSQLite(t, path)
			return []string{"SQLITE_PATH=" + path, "DB_OPEN_TIMEOUT=1s"}
		}},
		{name: "a named pipe where SQLite keeps its journal", setup: func(t *testing.T, dir string) []string {
			path := filepath.Join(dir, "notes.db")
			db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
			require.NoError(t, err)
			_, err = db.Exec("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
			require.NoError(t, err)
			require.NoError(t, db.Close())
			require.NoError(t, syscall.Mkfifo(path+"-journal", 0o600))
			t.Cleanup(func() { // free a reader still blocked on it
				if f, err := os.OpenFile(path+"-journal", os.O_RDWR|syscall.O_NONBLOCK, 0); err == nil {
					f.Close()
				}
			})
			return []string{"SQLITE_PATH=" + path}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			env := append(tt.setup(t, dir),
				"PATH=/usr/bin:/bin", "HOME="+dir, "TMPDIR="+dir, fmt.Sprintf("PORT=%d", freePort(t)))
			cmd := exec.Command(bin)
			cmd.Dir = dir
			cmd.Env = env
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			cmd.Stderr = cmd.Stdout
			require.NoError(t, cmd.Start())
			exited := make(chan error, 1)
			lines := bufio.NewReader(stdout)
			line, err := lines.ReadString('\n')
			require.NoError(t, err)
			require.Contains(t, line, "hfspace: listening")
			var rest strings.Builder
			go func() {
				io.Copy(&rest, lines)
				exited <- cmd.Wait()
			}()
			t.Cleanup(func() {
				cmd.Process.Kill()
			})

			time.Sleep(300 * time.Millisecond)
			start := time.Now()
			require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
			select {
			case err := <-exited:
				assert.Less(t, time.Since(start), 5*time.Second)
				assert.NoError(t, err, rest.String())
			case <-time.After(5 * time.Second):
				t.Errorf("the Space did not exit within 5s of SIGTERM")
				cmd.Process.Kill()
				<-exited
			}
		})
	}
}
