package dbfallback

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An outside attack on the scale path (issue 14): what a service meets
// behind PgBouncer and a multi-host URL. One PgBouncer or one pair per
// test.

// atkBouncerOpen opens raw through PgBouncer, PrimaryOnly, with a 2s
// connect timeout; the DB is closed when the test ends.
func atkBouncerOpen(t *testing.T, raw string, opts ...Option) (*DB, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts = append([]Option{WithURL(raw), WithLookupEnv(atkNoEnv), WithStrategy(PrimaryOnly), WithConnectTimeout(2 * time.Second)}, opts...)
	db, err := Open(ctx, opts...)
	if err == nil {
		t.Cleanup(func() { db.Close() })
	}
	return db, err
}

// TestAttackScale2PgBouncerOwnErrors: PgBouncer's own errors all carry
// SQLSTATE 08P01; IsPermanent must still tell a wrong password (never
// helped by retrying) from a full pool (helped by waiting).
func TestAttackScale2PgBouncerOwnErrors(t *testing.T) {
	upstream := testPostgresURL(t)
	b := startPgBouncer(t, pgBouncerConfig{mode: "transaction", poolSize: 2,
		settings: []string{"max_client_conn = 2"}})
	up, err := Validate(upstream)
	require.NoError(t, err)
	const wrong = "Wr0ng-Pw#x9q"
	bad := fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable&pgbouncer=true",
		escapeComponent(up.User), escapeComponent(wrong), b.addr(), escapeComponent(up.Database))

	t.Run("wrong password is permanent", func(t *testing.T) {
		start := time.Now()
		_, err := atkBouncerOpen(t, bad, WithPrimaryWait(5*time.Second))
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrNoDatabase)
		assert.True(t, IsPermanent(err), "a wrong password through PgBouncer is permanent: %v", err)
		assert.Less(t, time.Since(start), 3*time.Second, "a permanent failure is not retried for WithPrimaryWait")
		assertNoFragment(t, err.Error(), wrong, "Open's error")
	})

	t.Run("pool full is transient", func(t *testing.T) {
		good := b.url(t, upstream, "pgbouncer=true")
		// Two clients hold PgBouncer's max_client_conn = 2.
		var held []*sql.Conn
		db, err := atkBouncerOpen(t, good)
		require.NoError(t, err)
		for range 2 {
			c, err := db.Conn(context.Background())
			require.NoError(t, err)
			require.NoError(t, c.PingContext(context.Background()))
			held = append(held, c)
		}
		_, err = atkBouncerOpen(t, good)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "no more connections allowed")
		assert.False(t, IsPermanent(err), "a full pooler is transient: %v", err)
		for _, c := range held {
			c.Close()
		}
	})
}
