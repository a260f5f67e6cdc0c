//go:build !cgo || dbfallback_puresqlite

package puresqlite

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTranslateDSN(t *testing.T) {
	tests := []struct {
		name, dsn, want string
		wantErr         string
	}{
		{name: "dbfallback's file tuning passes as it is",
			dsn:  "file:/data/app.db?_journal_mode=WAL&_synchronous=NORMAL&_foreign_keys=1&_txlock=immediate&_busy_timeout=10000",
			want: "file:/data/app.db?_journal_mode=WAL&_synchronous=NORMAL&_foreign_keys=1&_txlock=immediate&_busy_timeout=10000&_time_format=sqlite"},
		{name: "memdb", dsn: "file:/dbfallback-1?vfs=memdb&_foreign_keys=1", want: "file:/dbfallback-1?vfs=memdb&_foreign_keys=1&_time_format=sqlite"},
		{name: "no parameters", dsn: ":memory:", want: ":memory:?_time_format=sqlite"},
		{name: "the first of a repeated key wins", dsn: "file:a.db?_busy_timeout=5000&_busy_timeout=10000", want: "file:a.db?_busy_timeout=5000&_time_format=sqlite"},
		{name: "a time format of the URL wins", dsn: "file:a.db?_time_format=datetime", want: "file:a.db?_time_format=datetime"},
		{name: "_loc=auto", dsn: "file:a.db?_loc=auto", want: "file:a.db?_timezone=Local&_time_format=sqlite"},
		{name: "_loc=UTC", dsn: "file:a.db?_loc=UTC", want: "file:a.db?_timezone=UTC&_time_format=sqlite"},
		{name: "pragmas modernc lacks", dsn: "file:a.db?_cache_size=-2000&_locking=EXCLUSIVE&_rt=1",
			want: "file:a.db?_pragma=cache_size%28-2000%29&_pragma=locking_mode%28EXCLUSIVE%29&_pragma=recursive_triggers%281%29&_time_format=sqlite"},
		{name: "an alias after its key is the same setting", dsn: "file:a.db?_locking_mode=NORMAL&_locking=EXCLUSIVE",
			want: "file:a.db?_pragma=locking_mode%28NORMAL%29&_time_format=sqlite"},
		{name: "_mutex dropped", dsn: "file:a.db?_mutex=no&mode=ro", want: "file:a.db?mode=ro&_time_format=sqlite"},
		{name: "SQLite's own and unknown keys pass", dsn: "file:a.db?cache=shared&immutable=1&x=y", want: "file:a.db?cache=shared&immutable=1&x=y&_time_format=sqlite"},
		{name: "user authentication refused", dsn: "file:a.db?_auth&_auth_user=admin&_auth_pass=S3cretPw", wantErr: "_auth needs SQLite's user authentication extension"},
		{name: "a pragma value that could end the statement", dsn: "file:a.db?_cache_size=1);ATTACH%20'x'", wantErr: "_cache_size has a value that is not a word or a number"},
		{name: "an empty pragma value", dsn: "file:a.db?_secure_delete=", wantErr: "_secure_delete"},
		{name: "a bad escape in a key", dsn: "file:a.db?%zz=1", wantErr: "bad parameter name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := translateDSN(tt.dsn)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.NotContains(t, err.Error(), "S3cretPw")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// FuzzTranslateDSN: any DSN translates or fails with an error; never a
// panic, never a secret parameter's value in the error, and a translation
// whose query modernc parses, with every _pragma a single PRAGMA call.
func FuzzTranslateDSN(f *testing.F) {
	for _, s := range []string{
		"file:/data/app.db?_journal_mode=WAL&_busy_timeout=10000",
		"file:a.db?_cache_size=-2000&_loc=auto",
		"file:a.db?_auth_pass=S3cret&_auth",
		":memory:",
		"file:a.db?&&=&_rt=1",
		"file:a.db?_locking=x%29%3B",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		got, err := translateDSN(dsn)
		if err != nil {
			for _, kv := range strings.Split(dsn, "&") {
				if k, v, ok := strings.Cut(kv, "="); ok && strings.Contains(k, "pass") && len(v) > 3 {
					if strings.Contains(err.Error(), v) {
						t.Fatalf("the error shows a secret value: %v", err)
					}
				}
			}
			return
		}
		_, query, _ := strings.Cut(got, "?")
		q, perr := url.ParseQuery(query)
		if perr != nil {
			return // the input's own query was not valid; modernc reports it
		}
		for _, p := range q["_pragma"] {
			if strings.ContainsAny(p, ";'\" ") || strings.Count(p, "(") != 1 || !strings.HasSuffix(p, ")") {
				t.Fatalf("_pragma %q is not one PRAGMA call", p)
			}
		}
	})
}
