package dbfallback

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dbfallback/dbfallback/internal/secretgen"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pgMarker is a password of distinctive tokens and the characters that
// split passwords in parsers; pgMarkerTokens are the tokens.
const pgMarker = `Mk4PwAbc@#Mk5QrDef/:&=Mk6StGhi;' "Mk7UvJkm%`

var pgMarkerTokens = []string{"Mk4PwAbc", "Mk5QrDef", "Mk6StGhi", "Mk7UvJkm"}

// pgCase is a generated-style case whose marker is pgMarker.
func pgCase(shape, url string) secretgen.Case {
	return secretgen.Case{Family: "real PostgreSQL", Shape: shape, Secret: pgMarker, Tokens: pgMarkerTokens,
		Env: map[string]string{"DATABASE_URL": url}}
}

// checkRealPGCase runs c through every channel with Open and checks the
// marker and, when given, another secret (the real password, whose
// pieces are too short to be tokens) in all its forms. It returns the DB's
// attempts' errors, for the caller to check what happened.
func checkRealPGCase(t *testing.T, c secretgen.Case, wantFallback bool, others ...string) string {
	t.Helper()
	dir := t.TempDir()
	t.Chdir(dir)
	run := runSecretCase(t, c, dir, true)
	checkSecretCase(t, c, run)
	for name, text := range run.texts {
		assertNoSecretText(t, name, text, others...)
	}
	reason := run.texts["*DB via fmt %v"]
	if wantFallback {
		assert.Contains(t, reason, "dbfallback.DB(sqlite", "the primary was not used")
	} else {
		assert.Contains(t, reason, "dbfallback.DB(postgres", "the primary was used")
	}
	return run.texts["Reason"] + run.texts["log text"]
}

// TestSecretsAgainstRealPostgres puts a marker password, and the real one,
// through every channel while a real server rejects the password, the
// user or the database, and accepts the password: the server's answers
// (SQLSTATE messages, pgx's connect errors) must not carry them either.
func TestSecretsAgainstRealPostgres(t *testing.T) {
	base, err := Validate(testPostgresURL(t))
	require.NoError(t, err)
	realPW, _ := base.Password()
	h := base.Hosts[0]
	hp := h.Name + ":" + strconv.Itoa(int(h.Port))
	withReal := func(user, db, extra string) string {
		return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable%s", escapeComponent(user), escapeComponent(realPW), hp, escapeComponent(db), extra)
	}
	sslpw := "&sslpassword=" + escapeComponent(pgMarker)
	tests := []struct {
		name     string
		url      string
		fallback bool
		want     string // in the log: what the server said
	}{
		{"wrong password", fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", base.User, escapeComponent(pgMarker), hp, base.Database), true, "28P01"},
		{"unknown user", fmt.Sprintf("postgres://nobody_mk:%s@%s/%s?sslmode=disable", escapeComponent(pgMarker), hp, base.Database), true, "28P01"},
		{"unknown database", withReal(base.User, "no_such_db_h9", sslpw), true, "3D000"},
		{"correct password", withReal(base.User, base.Database, sslpw), false, "using the primary database"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			said := checkRealPGCase(t, pgCase(tt.name, tt.url), tt.fallback, realPW)
			assert.Contains(t, said, tt.want)
		})
	}
}

// TestSecretsWithScramRole connects with a marker password that a
// throwaway server checks (scram-sha-256), and with a wrong one.
func TestSecretsWithScramRole(t *testing.T) {
	srv := startPGServer(t)
	srv.exec("CREATE ROLE leak_check LOGIN PASSWORD '" + strings.ReplaceAll(pgMarker, "'", "''") + "'")
	hba := "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
	require.NoError(t, os.WriteFile(filepath.Join(srv.dataDir, "pg_hba.conf"), []byte(hba), 0o600))
	srv.run("pg_ctl", "-D", srv.dataDir, "reload")
	url := func(pw string) string {
		return fmt.Sprintf("postgres://leak_check:%s@127.0.0.1:%d/postgres?sslmode=disable", escapeComponent(pw), srv.port)
	}
	t.Run("correct password", func(t *testing.T) {
		said := checkRealPGCase(t, pgCase("scram, correct", url(pgMarker)), false)
		assert.Contains(t, said, "using the primary database")
	})
	t.Run("wrong password", func(t *testing.T) {
		wrong := strings.ReplaceAll(pgMarker, "Mk7", "Mk8")
		c := pgCase("scram, wrong", url(wrong))
		c.Tokens = append(c.Tokens, "Mk8UvJkm")
		said := checkRealPGCase(t, c, true)
		assert.Contains(t, said, "28P01")
	})
}

// refusingTLS is a loopback server that answers every SSLRequest with
// 'N' (no TLS), as a server without ssl does, then closes the connection.
func refusingTLS(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			var req [8]byte
			if _, err := io.ReadFull(c, req[:]); err == nil && binary.BigEndian.Uint32(req[4:]) == 80877103 {
				c.Write([]byte{'N'})
			}
			c.Close()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return l.Addr().(*net.TCPAddr).Port
}

// TestSecretsWhenTLSIsRefused: a server that refuses TLS to a client that
// requires it (the CI cluster has ssl = on, so a loopback listener plays
// the refusing server).
func TestSecretsWhenTLSIsRefused(t *testing.T) {
	port := refusingTLS(t)
	for _, mode := range []string{"require", "verify-full"} {
		t.Run(mode, func(t *testing.T) {
			url := fmt.Sprintf("postgres://app:%s@127.0.0.1:%d/app?sslmode=%s&sslpassword=%s", escapeComponent(pgMarker), port, mode,
				escapeComponent(pgMarker))
			said := checkRealPGCase(t, pgCase("TLS refused", url), true)
			assert.Contains(t, said, "refused TLS")
		})
	}
}
