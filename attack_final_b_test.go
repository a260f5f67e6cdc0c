package dbfallback

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An outside attack on issues 12, 14 and 15 with inputs and event orders
// the other attack files do not try: a snapshot directory reached through
// a symbolic link, a SQLite file named by a file: URI, Close while a long
// transaction is open, two DBs of one process sharing one snapshot
// directory, the final snapshot when a tool closes the embedded pool
// through a WithOpenDB wrapper, and the scale path's URLs against the one
// direct server (the same host listed twice, pgbouncer=true without a
// pooler).

// finalBConnector wraps a connector the way an instrumentation library
// does; closer says whether it passes io.Closer on.
type finalBConnector struct {
	driver.Connector
}

func (c finalBConnector) Close() error {
	if cl, ok := c.Connector.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

// finalBBareConnector hides the wrapped connector's io.Closer, as a
// careless wrapper does.
type finalBBareConnector struct{ driver.Connector }

// TestAttackFinalBSnapshotDirSymlink: the bucket is mounted somewhere and
// the service is pointed at a symbolic link to it (a common way to put a
// mount at a fixed path). Snapshots must be written through the link,
// restored through it, and Health must not call it broken.
func TestAttackFinalBSnapshotDirSymlink(t *testing.T) {
	r := newSnapRig(t)
	link := filepath.Join(filepath.Dir(r.bucket), "bucket-link")
	require.NoError(t, os.Symlink(r.bucket, link))

	db := r.open(WithSnapshotDir(link))
	snapSeed(t, db, "a", "b")
	h := db.Health(context.Background())
	require.NotNil(t, h.Snapshot)
	assert.Empty(t, h.Snapshot.Off, "a link to a directory is a directory")
	require.NoError(t, db.Close())
	require.NotEmpty(t, r.manifests(), "the snapshot went through the link into the real directory")

	r.wipeLocal()
	db2 := r.open(WithSnapshotDir(link))
	defer db2.Close()
	assert.Equal(t, []string{"a", "b"}, snapNotes(t, db2))
	h2 := db2.Health(context.Background())
	require.NotNil(t, h2.Snapshot)
	assert.NotEmpty(t, h2.Snapshot.Restored, "restored through the link")
}

// TestAttackFinalBSnapshotFileURI: the SQLite database is named by a
// file: URI with mode=rwc (as Python and sqlite3 users write it) rather
// than by WithSQLitePath: snapshots are still kept, under the file's
// name, and restored into the same file.
func TestAttackFinalBSnapshotFileURI(t *testing.T) {
	r := newSnapRig(t)
	require.NoError(t, os.MkdirAll(filepath.Dir(r.local), 0o700))
	uri := WithURL("file:" + r.local + "?mode=rwc&_busy_timeout=5000")

	db := r.open(uri)
	assert.Equal(t, r.local, db.Target().Path)
	snapSeed(t, db, "uri")
	require.NoError(t, db.Close())
	ms := r.manifests()
	require.NotEmpty(t, ms)
	assert.Equal(t, filepath.Base(r.local), ms[0].Database, "the snapshot names the file, not the URI")

	r.wipeLocal()
	require.NoError(t, os.MkdirAll(filepath.Dir(r.local), 0o700))
	db2 := r.open(uri)
	defer db2.Close()
	assert.Equal(t, []string{"uri"}, snapNotes(t, db2))
}

// TestAttackFinalBCloseDuringLongTx: a request's transaction is still
// open on another goroutine when SIGTERM makes main call Close. Close
// returns within its bound; a transaction that commits while Close waits
// is in the final snapshot; one still open when the snapshot begins
// cannot commit (closing a *sql.DB does not wait for it, and its commit
// used to succeed after the final snapshot: acknowledged, then lost with
// the local disk).
func TestAttackFinalBCloseDuringLongTx(t *testing.T) {
	tests := []struct {
		name  string
		viaTx bool
		// commitAfter: the transaction ends this long after Close began;
		// 0: only after Close returned.
		commitAfter time.Duration
	}{
		{name: "BeginTx, held past Close", viaTx: false},
		{name: "db.Tx, held past Close", viaTx: true},
		{name: "BeginTx, commits while Close waits", viaTx: false, commitAfter: 200 * time.Millisecond},
		{name: "db.Tx, commits while Close waits", viaTx: true, commitAfter: 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSnapRig(t)
			db := r.open()
			snapSeed(t, db, "before")

			inTx := make(chan struct{})
			release := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				ctx := context.Background()
				if tt.viaTx {
					done <- db.Tx(ctx, func(tx *sql.Tx) error {
						if _, err := tx.ExecContext(ctx, "INSERT INTO notes VALUES ('in-tx')"); err != nil {
							return err
						}
						close(inTx)
						<-release
						return nil
					}, WithAttempts(1))
					return
				}
				tx, err := db.BeginTx(ctx, nil)
				if err == nil {
					_, err = tx.ExecContext(ctx, "INSERT INTO notes VALUES ('in-tx')")
				}
				close(inTx)
				if err != nil {
					done <- err
					return
				}
				<-release
				done <- tx.Commit()
			}()
			<-inTx

			start := time.Now()
			closed := make(chan error, 1)
			go func() { closed <- db.Close() }()
			if tt.commitAfter > 0 {
				time.Sleep(tt.commitAfter)
				close(release)
			}
			select {
			case err := <-closed:
				assert.NoError(t, err)
			case <-time.After(6 * time.Second):
				if tt.commitAfter == 0 {
					close(release)
				}
				<-closed
				t.Fatalf("Close waited %v for a transaction another goroutine holds", time.Since(start))
			}
			took := time.Since(start)
			if tt.commitAfter == 0 {
				close(release)
			}
			txErr := <-done
			t.Logf("Close took %v with a transaction open; the transaction ended with %v", took, txErr)

			r.wipeLocal()
			db2 := r.open()
			defer db2.Close()
			got := snapNotes(t, db2)
			assert.Contains(t, got, "before", "a row committed before Close is in the final snapshot")
			if tt.commitAfter > 0 {
				assert.NoError(t, txErr, "a commit while Close waits for the writer succeeds")
				assert.Contains(t, got, "in-tx", "and is in the final snapshot")
				return
			}
			assert.ErrorIs(t, txErr, errCommitShut, "a commit after the final snapshot began must fail, not be acknowledged and lost")
			assert.NotErrorIs(t, txErr, ErrCommitUnknown, "it is known to be rolled back")
			assert.NotContains(t, got, "in-tx")
		})
	}
}

// TestAttackFinalBTwoDBsOneBucket: one process keeps two SQLite
// databases (the main one and, say, a job queue) with one snapshot
// directory. Each must restore its own data, never the other's, and
// neither may delete the other's snapshots when it prunes its own. Two
// files with the same base name in different directories are the hard
// case: snapshots are keyed by the base name.
func TestAttackFinalBTwoDBsOneBucket(t *testing.T) {
	tests := []struct {
		name       string
		fileA      string
		fileB      string
		sameBase   bool
		rounds     int
		wantOwnAll bool
	}{
		{name: "different names", fileA: "a/app.db", fileB: "b/queue.db", rounds: 5, wantOwnAll: true},
		{name: "same name, other directories", fileA: "a/app.db", fileB: "b/app.db", sameBase: true, rounds: 2, wantOwnAll: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			bucket := filepath.Join(base, "bucket")
			require.NoError(t, os.MkdirAll(bucket, 0o700))
			t.Chdir(base)
			logs := &syncBuffer{}
			open := func(file string) *DB {
				t.Helper()
				db, err := Open(context.Background(),
					WithLookupEnv(atkNoEnv), withDataDir(filepath.Join(base, "no-data")),
					WithStrategy(SQLiteOnly), WithSQLitePath(filepath.Join(base, file)),
					WithSnapshotDir(bucket), WithSnapshotInterval(time.Hour), durableSnapshots,
					WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
				require.NoError(t, err)
				return db
			}
			// Several restarts, each closing both: more snapshots than
			// either keeps, so each prunes while the other's are there.
			for i := 0; i < tt.rounds; i++ {
				a, b := open(tt.fileA), open(tt.fileB)
				snapSeed(t, a, "A"+itoa(int64(i)))
				snapSeed(t, b, "B"+itoa(int64(i)))
				require.NoError(t, a.Close())
				require.NoError(t, b.Close())
			}
			wantA, wantB := []string{}, []string{}
			for i := 0; i < tt.rounds; i++ {
				wantA = append(wantA, "A"+itoa(int64(i)))
				wantB = append(wantB, "B"+itoa(int64(i)))
			}

			// A new container: both local files are gone.
			require.NoError(t, os.RemoveAll(filepath.Join(base, "a")))
			require.NoError(t, os.RemoveAll(filepath.Join(base, "b")))
			a := open(tt.fileA)
			defer a.Close()
			b := open(tt.fileB)
			defer b.Close()
			gotA, gotB := snapNotes(t, a), snapNotes(t, b)
			t.Logf("restored A: %v, B: %v; A's reason: %q", gotA, gotB, a.Reason())
			assert.Equal(t, wantA, gotA, "A restored A's rows, and only those")
			assert.Equal(t, wantB, gotB, "B restored B's rows, and only those")
		})
	}
}

// TestAttackFinalBCloseThroughWrapperSnapshots: a tool closes the
// embedded pool (GORM's sqlDB.Close) of a DB opened with a WithOpenDB
// wrapper and snapshots. With a wrapper that passes io.Closer on, that
// Close is DB.Close, final snapshot included; with one that does not,
// DB.Close afterwards must still leave the data in the snapshot
// directory.
func TestAttackFinalBCloseThroughWrapperSnapshots(t *testing.T) {
	tests := []struct {
		name      string
		wrap      func(driver.Connector) driver.Connector
		alsoClose bool
	}{
		{name: "wrapper passes io.Closer", wrap: func(c driver.Connector) driver.Connector { return finalBConnector{Connector: c} }},
		{name: "wrapper hides io.Closer, then DB.Close", wrap: func(c driver.Connector) driver.Connector { return finalBBareConnector{c} }, alsoClose: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSnapRig(t)
			db := r.open(WithOpenDB(func(c driver.Connector) *sql.DB { return sql.OpenDB(tt.wrap(c)) }))
			snapSeed(t, db, "x", "y")
			require.NoError(t, db.DB.Close())
			if tt.alsoClose {
				require.NoError(t, db.Close())
			}
			require.NotEmpty(t, r.manifests(), "closing the pool wrote the final snapshot; logs:\n%s", r.logs.String())
			r.wipeLocal()
			db2 := r.open()
			defer db2.Close()
			assert.Equal(t, []string{"x", "y"}, snapNotes(t, db2))
			if tt.alsoClose {
				return
			}
			require.NoError(t, db.Close(), "DB.Close after the pool's Close is a no-op")
		})
	}
}

// TestAttackFinalBPgSameHostTwice: a URL with
// target_session_attrs=read-write that lists the one server twice (a
// template filled with the same host for primary and standby). It must
// open, write, and Health must name the server; read-only must fail
// quickly with a clear reason and no secret, not hang.
func TestAttackFinalBPgSameHostTwice(t *testing.T) {
	u := os.Getenv("DBFALLBACK_TEST_DATABASE_URL")
	if u == "" {
		t.Skip("DBFALLBACK_TEST_DATABASE_URL is not set")
	}
	tgt, err := Validate(u)
	require.NoError(t, err)
	require.Len(t, tgt.Hosts, 1)
	h := tgt.Hosts[0].String()
	twice := strings.Replace(u, h, h+","+h, 1)

	t.Run("read-write", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		db, err := Open(ctx, WithURL(withParam(twice, "target_session_attrs=read-write")), WithLookupEnv(atkNoEnv), WithStrategy(PrimaryOnly))
		require.NoError(t, err)
		defer db.Close()
		assert.Len(t, db.Target().Hosts, 2)
		table := atkCounter(t, db)
		require.NoError(t, db.Tx(ctx, func(tx *sql.Tx) error { return atkIncrement(ctx, tx, table) }))
		assert.Equal(t, 1, atkCount(t, db, table))
		health := db.Health(ctx)
		assert.Equal(t, "up", health.Status)
		assert.Equal(t, h, health.Server)
	})
	t.Run("read-only", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		_, err := Open(ctx, WithURL(withParam(twice, "target_session_attrs=read-only")), WithLookupEnv(atkNoEnv), WithStrategy(PrimaryOnly))
		took := time.Since(start)
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrNoDatabase)
		assert.Less(t, took, 5*time.Second, "no standby is not a hang")
		assert.NotContains(t, err.Error(), "ci#Pw@dbf/1")
		assert.NotContains(t, err.Error(), "ci%23Pw%40dbf%2F1")
		t.Logf("read-only against a primary listed twice: %v (%v)", err, took)
	})
}

// TestAttackFinalBPgBouncerFlagWithoutPooler: pgbouncer=true in the URL
// of a direct server (the flag left over after a move off a pooler, or a
// provider whose pooler was bypassed). Prepared statements, Tx, sessions
// and queries with arguments must all work there too, on several
// goroutines.
func TestAttackFinalBPgBouncerFlagWithoutPooler(t *testing.T) {
	db := atkOpenPGWith(t, PoolConfig{MaxOpenConns: 4}, "pgbouncer=true")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	table := atkCounter(t, db)

	stmt, err := db.PrepareContext(ctx, "SELECT n FROM "+table+" WHERE id = $1")
	require.NoError(t, err)
	defer stmt.Close()

	errs := make(chan error, 8*20)
	done := make(chan struct{})
	for g := 0; g < 8; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 20; i++ {
				var n int
				if err := stmt.QueryRowContext(ctx, 1).Scan(&n); err != nil {
					errs <- err
				}
				if err := db.Tx(ctx, func(tx *sql.Tx) error {
					s, err := tx.PrepareContext(ctx, "UPDATE "+table+" SET n = n + $1 WHERE id = 1")
					if err != nil {
						return err
					}
					defer s.Close()
					_, err = s.ExecContext(ctx, 1)
					return err
				}); err != nil {
					errs <- err
				}
			}
		}()
	}
	for g := 0; g < 8; g++ {
		<-done
	}
	close(errs)
	var all []string
	for err := range errs {
		all = append(all, err.Error())
	}
	assert.Empty(t, all, "pgbouncer=true against a direct server")
	assert.Equal(t, 160, atkCount(t, db, table))
}

func withParam(u, kv string) string {
	if strings.Contains(u, "?") {
		return u + "&" + kv
	}
	return u + "?" + kv
}
