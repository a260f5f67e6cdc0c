package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// snapshot_test.go runs the Space with a snapshot directory, as on a
// Space with a mounted bucket, and replaces its container: the local
// directory is deleted between runs.

// snapSpace is a Space's local data directory and its bucket.
type snapSpace struct {
	local, bucket string
}

func newSnapSpace(t *testing.T) snapSpace {
	t.Helper()
	return snapSpace{local: filepath.Join(spaceDir(t, true), "data"), bucket: spaceDir(t, true)}
}

func (s snapSpace) start(t *testing.T, port int, interval string) *space {
	t.Helper()
	require.NoError(t, os.MkdirAll(s.local, 0o700))
	if os.Geteuid() == 0 {
		require.NoError(t, os.Chown(s.local, spaceUID, spaceUID))
	}
	return startSpace(t, port, "SQLITE_PATH="+filepath.Join(s.local, "notes.db"),
		"DBFALLBACK_SNAPSHOT_DIR="+s.bucket, "DBFALLBACK_SNAPSHOT_INTERVAL="+interval)
}

// newContainer deletes the local data directory.
func (s snapSpace) newContainer(t *testing.T) {
	t.Helper()
	require.NoError(t, os.RemoveAll(s.local))
}

func (s *space) noteIDs(t *testing.T) map[int64]bool {
	t.Helper()
	code, body := s.do("GET", "/api/notes?limit=200", "")
	require.Equal(t, 200, code, body)
	var list struct {
		Notes []struct{ ID int64 }
	}
	require.NoError(t, json.Unmarshal([]byte(body), &list), body)
	out := map[int64]bool{}
	for _, n := range list.Notes {
		out[n.ID] = true
	}
	return out
}

// TestSpaceSnapshotGracefulRestart: notes written, SIGTERM, a new
// container (the local directory deleted), start again: all the notes are
// there. The interval is an hour, so only Close's final snapshot can
// have saved them; the exit still takes under 5 s.
func TestSpaceSnapshotGracefulRestart(t *testing.T) {
	ss := newSnapSpace(t)
	port := freePort(t)
	const n = 40
	s := ss.start(t, port, "1h")
	s.waitStatus("/readyz", 200, 10*time.Second)
	want := map[int64]bool{}
	for i := range n {
		code, body := s.do("POST", "/api/notes", `{"title":"note `+strconv.Itoa(i)+`"}`)
		require.Equal(t, 201, code, body)
		var created struct{ ID int64 }
		require.NoError(t, json.Unmarshal([]byte(body), &created))
		want[created.ID] = true
	}
	exit, took := s.stop()
	assert.Equal(t, 0, exit, s.logs.String())
	assert.Less(t, took, 5*time.Second, "a Space must exit within 5 s of SIGTERM")

	ss.newContainer(t)
	s = ss.start(t, port, "1h")
	_, body := s.waitStatus("/readyz", 200, 10*time.Second)
	assert.Equal(t, want, s.noteIDs(t), "0 notes lost")
	ready := readyJSON(t, body)
	assert.Contains(t, ready["reason"], "restored it from snapshot")
	_, page := s.do("GET", "/", "")
	assert.Contains(t, page, `id="snapshot"`)
	assert.Contains(t, page, "restored at start from")
	exit, _ = s.stop()
	assert.Equal(t, 0, exit)
}

// TestSpaceSnapshotCrash kills the Space with SIGKILL under a write load,
// deletes the local directory and starts again, for several rounds: the
// notes lost are at most those acknowledged within the last interval plus
// one snapshot's time before the kill. DBFALLBACK_SNAPSHOT_ROUNDS sets the
// rounds (default 3; RELIABILITY.md reports 20).
func TestSpaceSnapshotCrash(t *testing.T) {
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("DBFALLBACK_SNAPSHOT_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	const interval = 500 * time.Millisecond
	bound := interval + time.Second // the interval, a snapshot's time (ms here), and slack for a loaded machine
	ss := newSnapSpace(t)
	port := freePort(t)
	var lostPerRound []int
	var ages []string              // the last snapshot's age and duration just before each kill
	acked := map[int64]time.Time{} // every note acknowledged and not yet found lost
	for round := range rounds {
		s := ss.start(t, port, interval.String())
		s.waitStatus("/readyz", 200, 10*time.Second)
		present := s.noteIDsAll(t, filepath.Join(ss.local, "notes.db"))
		lost := 0
		for id := range acked {
			if !present[id] {
				lost++
				delete(acked, id)
			}
		}
		if round > 0 {
			lostPerRound = append(lostPerRound, lost)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					code, body := s.do("POST", "/api/notes", `{"title":"crash `+strconv.Itoa(round)+`"}`)
					if code != 201 {
						continue
					}
					var created struct{ ID int64 }
					if json.Unmarshal([]byte(body), &created) == nil {
						mu.Lock()
						acked[created.ID] = time.Now()
						mu.Unlock()
					}
				}
			}()
		}
		time.Sleep(1500 * time.Millisecond)
		if _, body := s.do("GET", "/readyz", ""); strings.Contains(body, `"snapshot"`) {
			var h struct {
				Snapshot struct {
					AgeSeconds float64 `json:"age_seconds"`
					TookMS     float64 `json:"took_ms"`
				}
			}
			if json.Unmarshal([]byte(body), &h) == nil {
				ages = append(ages, fmt.Sprintf("%.2fs/%.0fms", h.Snapshot.AgeSeconds, h.Snapshot.TookMS))
			}
		}
		killed := time.Now()
		require.NoError(t, s.cmd.Process.Signal(syscall.SIGKILL))
		<-s.exited
		cancel()
		wg.Wait()
		// Notes acknowledged long enough before the kill must survive it.
		mu.Lock()
		for id, at := range acked {
			if killed.Sub(at) > bound {
				acked[id] = time.Time{} // must be there next round
			}
		}
		mu.Unlock()
		ss.newContainer(t)
		if round == rounds-1 {
			s = ss.start(t, port, interval.String())
			s.waitStatus("/readyz", 200, 10*time.Second)
			present := s.noteIDsAll(t, filepath.Join(ss.local, "notes.db"))
			lost := 0
			for id, at := range acked {
				if !present[id] {
					lost++
					assert.False(t, at.IsZero(), "note %d was acknowledged more than %s before the kill and is gone", id, bound)
				}
			}
			lostPerRound = append(lostPerRound, lost)
			s.stop()
		}
	}
	sort.Ints(lostPerRound)
	parts := make([]string, len(lostPerRound))
	for i, n := range lostPerRound {
		parts[i] = strconv.Itoa(n)
	}
	t.Logf("acknowledged notes lost per SIGKILL round (sorted): %s", strings.Join(parts, " "))
	t.Logf("last snapshot's age/duration just before each kill: %s", strings.Join(ages, " "))
}

// noteIDsAll reads every note's id from the running server's SQLite
// file, read-only (the API lists at most 200).
func (s *space) noteIDsAll(t *testing.T, path string) map[int64]bool {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	require.NoError(t, err)
	defer db.Close()
	rows, err := db.Query("SELECT id FROM notes")
	require.NoError(t, err)
	defer rows.Close()
	out := map[int64]bool{}
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		out[id] = true
	}
	require.NoError(t, rows.Err())
	return out
}
