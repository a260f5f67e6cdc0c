package dbfallback

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTargetSessionAttrs opens a URL naming both servers of a real
// primary/standby pair, in both orders, and checks which server every
// connection of the pool lands on: read-write and primary pick the
// primary wherever it is listed, read-only, standby and prefer-standby
// the standby, any the first listed.
func TestTargetSessionAttrs(t *testing.T) {
	pair := startPGPair(t, false)
	p, s := pair.primary, pair.standby
	tests := []struct {
		name          string
		first, second *pgServer
		attrs         string
		want          *pgServer
	}{
		{name: "read-write, standby listed first", first: s, second: p, attrs: "read-write", want: p},
		{name: "read-write, primary listed first", first: p, second: s, attrs: "read-write", want: p},
		{name: "primary, standby listed first", first: s, second: p, attrs: "primary", want: p},
		{name: "read-only, primary listed first", first: p, second: s, attrs: "read-only", want: s},
		{name: "read-only, standby listed first", first: s, second: p, attrs: "read-only", want: s},
		{name: "standby, primary listed first", first: p, second: s, attrs: "standby", want: s},
		{name: "prefer-standby, primary listed first", first: p, second: s, attrs: "prefer-standby", want: s},
		{name: "any, standby listed first", first: s, second: p, attrs: "any", want: s},
		{name: "unset, standby listed first", first: s, second: p, attrs: "", want: s},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, _ := openWith(t, pair.url(tt.first, tt.second, tt.attrs), WithStrategy(PrimaryOnly), WithPool(PoolConfig{MaxOpenConns: 4, MaxIdleConns: 4}))
			assert.False(t, db.Fallback())
			// Every connection of the pool, not only the first, lands there.
			ctx := context.Background()
			var conns []interface{ Close() error }
			for range 4 {
				c, err := db.Conn(ctx)
				require.NoError(t, err)
				conns = append(conns, c)
				var port int
				var standby bool
				require.NoError(t, c.QueryRowContext(ctx, "SELECT inet_server_port(), pg_is_in_recovery()").Scan(&port, &standby))
				assert.Equal(t, tt.want.port, port)
				assert.Equal(t, tt.want == s, standby)
			}
			for _, c := range conns {
				c.Close()
			}
			h := db.Health(ctx)
			assert.Equal(t, "up", h.Status)
		})
	}

	t.Run("prefer-standby with the standby down opens the primary", func(t *testing.T) {
		s.stop("fast")
		defer s.start()
		db, _ := openWith(t, pair.url(s, p, "prefer-standby"), WithStrategy(PrimaryOnly))
		var standby bool
		require.NoError(t, db.QueryRow("SELECT pg_is_in_recovery()").Scan(&standby))
		assert.False(t, standby)
	})

	t.Run("read-write with only the standby up falls back, saying why", func(t *testing.T) {
		url := pair.url(s, p, "read-write")
		p.stop("fast")
		defer p.start()
		db, took := openWith(t, url)
		assert.Equal(t, SQLite, db.Dialect())
		assert.Less(t, took.Seconds(), 2.0, "a standby that is up answers at once")
		assert.Contains(t, db.Reason(), "read only")
		assert.NotContains(t, db.Reason(), "App-Pw")
	})
}
