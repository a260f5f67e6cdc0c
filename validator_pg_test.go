package dbfallback

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMessyFormsConnect takes the CI server's URL, rewrites it the ways
// people paste URLs (unescaped password, quotes and a newline, JDBC,
// SQLAlchemy, keyword/value, libpq socket-less forms) and checks that each
// canonical DSN logs in to the real server as the same user and database.
func TestMessyFormsConnect(t *testing.T) {
	base := testPostgresURL(t)
	tg, err := Validate(base)
	require.NoError(t, err)
	pw, ok := tg.Password()
	require.True(t, ok, "the CI URL carries a password")
	h := tg.Hosts[0]
	hp := fmt.Sprintf("%s:%d", h.Name, h.Port)
	esc := url.QueryEscape(pw)
	forms := map[string]string{
		"canonical":      tg.DSN(),
		"raw password":   fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", tg.User, pw, hp, tg.Database),
		"quoted newline": fmt.Sprintf("\"postgresql://%s:%s@%s/%s?sslmode=disable\"\n", tg.User, esc, hp, tg.Database),
		"jdbc":           fmt.Sprintf("jdbc:postgresql://%s/%s?user=%s&password=%s&ssl=false", hp, tg.Database, tg.User, esc),
		"sqlalchemy":     fmt.Sprintf("postgresql+psycopg2://%s:%s@%s/%s?sslmode=disable&connection_limit=3", tg.User, esc, hp, tg.Database),
		"keyword/value":  fmt.Sprintf("host=%s port=%d dbname=%s user=%s password='%s' sslmode=disable", h.Name, h.Port, tg.Database, tg.User, strings.ReplaceAll(pw, "'", `\'`)),
		"prisma schema":  fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable&schema=public", tg.User, esc, hp, tg.Database),
		// In pooler mode the schema is removed (PgBouncer refuses
		// search_path at login): the server's default applies.
		"prisma schema, pgbouncer=true": fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable&schema=public&pgbouncer=true", tg.User, esc, hp, tg.Database),
	}
	wantSearchPath := map[string]string{"prisma schema": "public", "prisma schema, pgbouncer=true": `"$user", public`}
	for name, raw := range forms {
		t.Run(name, func(t *testing.T) {
			got, err := Validate(raw)
			require.NoError(t, err)
			db, err := sql.Open("pgx", got.DSN())
			require.NoError(t, err)
			defer db.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var user, database, searchPath string
			require.NoError(t, db.QueryRowContext(ctx, "SELECT current_user, current_database(), current_setting('search_path')").Scan(&user, &database, &searchPath))
			assert.Equal(t, tg.User, user)
			assert.Equal(t, tg.Database, database)
			if want, ok := wantSearchPath[name]; ok {
				assert.Equal(t, want, searchPath)
			}
		})
	}
}
