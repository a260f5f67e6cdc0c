package dbfallback

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidatePoolerRules(t *testing.T) {
	tests := []struct {
		name string
		in   string
		mode string // default_query_exec_mode; "" for none
		path string // search_path; "" for none
		note string // a note that must be there; "" for no pooler note
	}{
		{name: "Supabase's transaction pooler without the flag", in: "postgres://postgres.abcdefghijklmnop:pw@aws-0-us-east-1.pooler.supabase.com:6543/postgres",
			mode: "exec", note: "Supabase's transaction pooler"},
		{name: "host in upper case", in: "postgres://u:pw@AWS-0-EU-WEST-1.POOLER.SUPABASE.COM:6543/postgres", mode: "exec", note: "Supabase's transaction pooler"},
		{name: "Supabase's session pooler (port 5432) supports prepared statements", in: "postgres://postgres.abc:pw@aws-0-us-east-1.pooler.supabase.com:5432/postgres"},
		{name: "Supabase's session pooler, default port", in: "postgres://postgres.abc:pw@aws-0-us-east-1.pooler.supabase.com/postgres"},
		{name: "a direct Supabase host on 6543", in: "postgres://postgres:pw@db.abcdefghijklmnop.supabase.co:6543/postgres"},
		{name: "Railway's proxy on 6543 is PostgreSQL itself", in: "postgresql://postgres:pass@containers-us-west-1.railway.app:6543/railway"},
		{name: "a look-alike host", in: "postgres://u:pw@pooler.supabase.com.evil.example:6543/postgres"},
		{name: "pgbouncer=false is Prisma's default, not a way out", in: "postgres://u:pw@aws-0-us-east-1.pooler.supabase.com:6543/postgres?pgbouncer=false",
			mode: "exec", note: "Supabase's transaction pooler"},
		{name: "cache_statement is the way out", in: "postgres://u:pw@aws-0-us-east-1.pooler.supabase.com:6543/postgres?default_query_exec_mode=cache_statement", mode: "cache_statement"},
		{name: "an exec mode the URL sets is kept", in: "postgres://u:pw@aws-0-us-east-1.pooler.supabase.com:6543/postgres?default_query_exec_mode=simple_protocol", mode: "simple_protocol"},
		{name: "Prisma's schema=public with pgbouncer=true", in: "postgres://u:pw@h/db?pgbouncer=true&schema=public", mode: "exec", note: "public is the default search path"},
		{name: "schema before pgbouncer=true", in: "postgres://u:pw@h/db?schema=app&pgbouncer=true", mode: "exec", note: "ALTER ROLE … SET search_path = app"},
		{name: "JDBC's currentSchema in pooler mode", in: "postgres://u:pw@h/db?currentSchema=app&default_query_exec_mode=exec", mode: "exec", note: "ALTER ROLE"},
		{name: "schema with Supabase's pooler detected", in: "postgres://u:pw@aws-0-us-east-1.pooler.supabase.com:6543/postgres?schema=public", mode: "exec", note: "public is the default"},
		{name: "a search_path the URL gives is kept", in: "postgres://u:pw@h/db?pgbouncer=true&search_path=app", mode: "exec", path: "app"},
		{name: "schema without a pooler becomes search_path", in: "postgres://u:pw@h/db?schema=app", path: "app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg, err := Validate(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.mode, tg.Params["default_query_exec_mode"])
			assert.Equal(t, tt.path, tg.Params["search_path"])
			notes := strings.Join(tg.Notes, "\n")
			if tt.note != "" {
				assert.Contains(t, notes, tt.note)
			} else {
				assert.NotContains(t, notes, "pooler")
			}
			again, err := Validate(tg.DSN())
			require.NoError(t, err, "the DSN validates again")
			assert.Equal(t, tg.Params, again.Params, "and means the same")
		})
	}
}
