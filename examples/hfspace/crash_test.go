package main

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dbfallback/dbfallback"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSpaceCrashUnderLoad kills the server with SIGKILL in the middle of
// requests, 20 times: every note whose creation was answered 201 is there
// after a restart, and the database passes PRAGMA integrity_check.
func TestSpaceCrashUnderLoad(t *testing.T) {
	dir := spaceDir(t, true)
	path := filepath.Join(dir, "notes.db")
	port := freePort(t)
	acked := map[int64]bool{}
	var lastAcked []int64
	const rounds = 20
	for round := range rounds {
		s := startSpace(t, port, "SQLITE_PATH="+path)
		s.waitStatus("/readyz", 200, 10*time.Second)
		// Through the API, the last notes acknowledged before the crash;
		// all of them are checked in the database at the end.
		for _, id := range lastAcked {
			if code, _ := s.do("GET", "/api/notes/"+strconv.FormatInt(id, 10), ""); code != 200 {
				t.Fatalf("round %d: note %d was acknowledged before the crash and is gone (%d)", round, id, code)
			}
		}
		lastAcked = lastAcked[:0]
		ctx, cancel := context.WithCancel(context.Background())
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					code, body := s.do("POST", "/api/notes", `{"title":"crash round `+strconv.Itoa(round)+`"}`)
					if code != 201 {
						continue // killed mid-request: no acknowledgement, no promise
					}
					var n struct{ ID int64 }
					if json.Unmarshal([]byte(body), &n) == nil {
						mu.Lock()
						acked[n.ID] = true
						if len(lastAcked) < 64 {
							lastAcked = append(lastAcked, n.ID)
						} else {
							lastAcked[rand.IntN(len(lastAcked))] = n.ID
						}
						mu.Unlock()
					}
				}
			}()
		}
		time.Sleep(time.Duration(50+rand.IntN(200)) * time.Millisecond)
		require.NoError(t, s.cmd.Process.Signal(syscall.SIGKILL))
		<-s.exited
		cancel()
		wg.Wait()
	}
	db, err := dbfallback.Open(context.Background(), dbfallback.WithSQLitePath(path), dbfallback.WithStrategy(dbfallback.SQLiteOnly),
		dbfallback.WithLookupEnv(func(string) (string, bool) { return "", false }))
	require.NoError(t, err)
	defer db.Close()
	var check string
	require.NoError(t, db.QueryRow("PRAGMA integrity_check").Scan(&check))
	assert.Equal(t, "ok", check)
	lost := 0
	for id := range acked {
		var n int
		if db.QueryRow("SELECT count(*) FROM notes WHERE id = ?", id).Scan(&n); n != 1 {
			lost++
		}
	}
	assert.Zero(t, lost, "acknowledged notes lost")
	assert.Greater(t, len(acked), rounds, "the server took writes between crashes")
	t.Logf("%d rounds, %d acknowledged notes, %d lost", rounds, len(acked), lost)
}
