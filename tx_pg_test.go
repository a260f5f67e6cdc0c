package dbfallback

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slowCommitTable creates a table whose rows take a deferred trigger 1.5s
// to check at COMMIT, so a test can act while COMMIT is under way.
func slowCommitTable(t *testing.T, db *DB) {
	t.Helper()
	for _, q := range []string{
		"DROP TABLE IF EXISTS commit_probe",
		"CREATE TABLE commit_probe (id INTEGER PRIMARY KEY)",
		`CREATE OR REPLACE FUNCTION commit_probe_slow() RETURNS trigger LANGUAGE plpgsql AS
			$$ BEGIN PERFORM pg_sleep(1.5); RETURN NULL; END $$`,
		`CREATE CONSTRAINT TRIGGER commit_probe_slow AFTER INSERT ON commit_probe
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION commit_probe_slow()`,
	} {
		_, err := db.Exec(q)
		require.NoError(t, err)
	}
}

// whenCommitting calls act once the backend pid is running COMMIT and
// waiting for waitEvent (PgSleep in the trigger, SyncRep for a standby).
func whenCommitting(t *testing.T, db *DB, pid <-chan int, waitEvent string, act func(pid int)) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		p := <-pid
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			var query, state, event string
			err := db.QueryRow("SELECT coalesce(query, ''), coalesce(state, ''), coalesce(wait_event, '') FROM pg_stat_activity WHERE pid = $1", p).
				Scan(&query, &state, &event)
			if err == nil && state == "active" && query == "commit" && event == waitEvent {
				act(p)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Errorf("backend %d never ran COMMIT", p)
	}()
	return done
}

// TestTxCommitUnknown: on the real PostgreSQL, a COMMIT cut short (the
// backend terminated from another connection, or ctx ending) returns an
// error matching ErrCommitUnknown and is not retried; a COMMIT the server
// refused is a plain error.
func TestTxCommitUnknown(t *testing.T) {
	db, _ := openWith(t, testPostgresURL(t), WithStrategy(PrimaryOnly))
	slowCommitTable(t, db)
	insert := func(id int, pid chan<- int, runs *int) func(*sql.Tx) error {
		return func(tx *sql.Tx) error {
			*runs++
			var p int
			if err := tx.QueryRow("SELECT pg_backend_pid()").Scan(&p); err != nil {
				return err
			}
			pid <- p
			_, err := tx.Exec("INSERT INTO commit_probe (id) VALUES ($1)", id)
			return err
		}
	}
	rowCount := func(id int) (n int) {
		require.NoError(t, db.QueryRow("SELECT count(*) FROM commit_probe WHERE id = $1", id).Scan(&n))
		return n
	}

	t.Run("backend terminated during COMMIT", func(t *testing.T) {
		pid := make(chan int, 1)
		done := whenCommitting(t, db, pid, "PgSleep", func(p int) {
			var ok bool
			require.NoError(t, db.QueryRow("SELECT pg_terminate_backend($1)", p).Scan(&ok))
			require.True(t, ok)
		})
		runs := 0
		err := db.Tx(context.Background(), insert(1, pid, &runs))
		<-done
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrCommitUnknown)
		assert.False(t, IsRetryable(err))
		assert.Equal(t, 1, runs, "never retried")
		var pg *pgconn.PgError
		if errors.As(err, &pg) {
			assert.Equal(t, "57P01", pg.Code, "the server said why")
		}
		t.Logf("Tx returned: %v; rows committed: %d", err, rowCount(1))
	})

	t.Run("ctx ends during COMMIT", func(t *testing.T) {
		pid := make(chan int, 1)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := whenCommitting(t, db, pid, "PgSleep", func(int) { cancel() })
		runs := 0
		start := time.Now()
		err := db.Tx(ctx, insert(2, pid, &runs))
		<-done
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrCommitUnknown)
		assert.Equal(t, 1, runs, "never retried")
		assert.Less(t, time.Since(start), 1500*time.Millisecond, "Tx returned without waiting for the server")
		// pgx sends the server a cancel request, which here (the commit was
		// still checking the trigger) rolled it back; a moment later it
		// would have committed (see TestTxCommitUnknownCommitted).
		t.Logf("Tx returned: %v", err)
	})

	t.Run("a COMMIT the server refused is not unknown", func(t *testing.T) {
		_, err := db.Exec("DROP TABLE IF EXISTS commit_refused")
		require.NoError(t, err)
		_, err = db.Exec("CREATE TABLE commit_refused (k INTEGER, CONSTRAINT k_unique UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)")
		require.NoError(t, err)
		runs := 0
		err = db.Tx(context.Background(), func(tx *sql.Tx) error {
			runs++
			_, err := tx.Exec("INSERT INTO commit_refused VALUES (1), (1)")
			return err
		})
		require.Error(t, err)
		assert.NotErrorIs(t, err, ErrCommitUnknown)
		var pg *pgconn.PgError
		require.ErrorAs(t, err, &pg)
		assert.Equal(t, "23505", pg.Code, "the deferred unique check failed at COMMIT")
		assert.Equal(t, 1, runs)
	})
	assert.Eventually(t, func() bool { return db.Stats().InUse == 0 }, 5*time.Second, 10*time.Millisecond)
}

// TestTxCommitUnknownCommitted: the case ErrCommitUnknown is for. A
// throwaway server requires a synchronous standby that never answers, so
// COMMIT is durable locally and then waits; whether the backend is
// terminated or ctx ends, the caller gets ErrCommitUnknown and the row is
// committed.
func TestTxCommitUnknownCommitted(t *testing.T) {
	srv := startPGServer(t)
	srv.exec("CREATE TABLE committed_probe (id INTEGER PRIMARY KEY)")
	// From now on every write's COMMIT waits for the standby.
	srv.exec("ALTER SYSTEM SET synchronous_standby_names = 'ghost_standby'")
	srv.exec("SELECT pg_reload_conf()")
	db, _ := openWith(t, srv.url(), WithStrategy(PrimaryOnly), WithPool(PoolConfig{MaxIdleConns: -1}))
	require.Eventually(t, func() bool { // the reload is asynchronous
		var standbys string
		return db.QueryRow("SHOW synchronous_standby_names").Scan(&standbys) == nil && standbys == "ghost_standby"
	}, 10*time.Second, 20*time.Millisecond)
	db.SetMaxIdleConns(2)
	tests := []struct {
		name string
		act  func(cancel context.CancelFunc, pid int)
	}{
		{"backend terminated", func(_ context.CancelFunc, pid int) {
			srv.exec(fmt.Sprintf("SELECT pg_terminate_backend(%d)", pid))
		}},
		{"ctx ends", func(cancel context.CancelFunc, _ int) { cancel() }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pid := make(chan int, 1)
			done := whenCommitting(t, db, pid, "SyncRep", func(p int) { tt.act(cancel, p) })
			time.AfterFunc(20*time.Second, cancel) // never hang the suite
			runs := 0
			err := db.Tx(ctx, func(tx *sql.Tx) error {
				runs++
				var p int
				if err := tx.QueryRow("SELECT pg_backend_pid()").Scan(&p); err != nil {
					return err
				}
				pid <- p
				_, err := tx.Exec("INSERT INTO committed_probe (id) VALUES ($1)", i)
				return err
			})
			<-done
			assert.ErrorIs(t, err, ErrCommitUnknown)
			assert.Equal(t, 1, runs, "never retried")
			// The server ends the wait for the standby a moment after the
			// client gave up, and the commit becomes visible.
			assert.Eventually(t, func() bool {
				var n int
				return db.QueryRow("SELECT count(*) FROM committed_probe WHERE id = $1", i).Scan(&n) == nil && n == 1
			}, 10*time.Second, 20*time.Millisecond, "committed although Tx returned an error")
			t.Logf("Tx returned: %v", err)
		})
	}
}
