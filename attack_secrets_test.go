package dbfallback

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Hostile inputs against the secrets guarantee, written by an outside
// reviewer from the user-facing documents alone: shapes the corpus and the
// generator did not hold. Each case names its secrets; every channel of
// Validate, Resolve and Open must hide every 4-character part of each.

// atkSecretCase is one configuration and the secrets it carries.
type atkSecretCase struct {
	name string
	// url goes through Validate and WithURL; env through WithLookupEnv.
	url string
	env map[string]string
	// file, when set, is written to a file DATABASE_URL_FILE names
	// (fileKind "symlink": a link to it; "dir": a directory holding it).
	file     string
	fileKind string
	secrets  []string
	// benign is text the output may rightly show (a host name equal to
	// the password): windows found in it are not looked for.
	benign []string
}

const atkPw = "Kq3VbW9zJh" // the plain marker password

// atkSecretCases returns the table. Hosts are loopback ports nobody
// listens on, so Open's attempt is refused at once and never leaves the
// machine.
func atkSecretCases() []atkSecretCase {
	mb := strings.Repeat("Zr8Tq", 1<<20/5)
	return []atkSecretCase{
		// Password encodings.
		{name: "url-encoded specials", url: "postgres://u:Kq3%40Vb%3AW9%2Fz%23J%3Fh%25@127.0.0.1:1/app", secrets: []string{"Kq3@Vb:W9/z#J?h%"}},
		{name: "double-encoded", url: "postgres://u:Kq3%2540VbW9z%2523Jh@127.0.0.1:1/app", secrets: []string{"Kq3%40VbW9z%23Jh"}},
		{name: "raw at colon slash", url: "postgres://u:Kq3@Vb:W9/zJh@127.0.0.1:1/app", secrets: []string{"Kq3@Vb:W9/zJh"}},
		{name: "raw hash question", url: "postgres://u:Kq3#VbW9?zJh@127.0.0.1:1/app", secrets: []string{"Kq3#VbW9?zJh"}},
		{name: "raw percent", url: "postgres://u:Kq3%VbW9%zJh@127.0.0.1:1/app", secrets: []string{"Kq3%VbW9%zJh"}},
		{name: "raw space", url: "postgres://u:Kq3Vb W9zJh@127.0.0.1:1/app", secrets: []string{"Kq3Vb W9zJh"}},
		{name: "quotes", url: `postgres://u:Kq3'Vb"W9z@127.0.0.1:1/app`, secrets: []string{`Kq3'Vb"W9z`}},
		{name: "backslash", url: `postgres://u:Kq3\VbW9\zJh@127.0.0.1:1/app`, secrets: []string{`Kq3\VbW9\zJh`}},
		{name: "newline in password", url: "postgres://u:Kq3Vb\nW9zJh@127.0.0.1:1/app", secrets: []string{"Kq3Vb", "W9zJh"}},
		{name: "newline then more", url: "postgres://u:Kq3VbW9zJh@127.0.0.1:1/app\nPGPASSWORD=Wp4NcY7sLm", secrets: []string{atkPw, "Wp4NcY7sLm"}},
		{name: "NUL in password", url: "postgres://u:Kq3Vb\x00W9zJh@127.0.0.1:1/app", secrets: []string{"Kq3Vb\x00W9zJh"}},
		{name: "encoded NUL", url: "postgres://u:Kq3Vb%00W9zJh@127.0.0.1:1/app", secrets: []string{"Kq3Vb\x00W9zJh"}},
		{name: "non-UTF-8", url: "postgres://u:Kq3V\xff\xfeW9zJh@127.0.0.1:1/app", secrets: []string{"Kq3V\xff\xfeW9zJh"}},
		{name: "encoded non-UTF-8", url: "postgres://u:Kq3V%FF%FEW9zJh@127.0.0.1:1/app", secrets: []string{"Kq3V\xff\xfeW9zJh"}},
		{name: "RTL override", url: "postgres://u:Kq3V\u202eW9zJh@127.0.0.1:1/app", secrets: []string{"Kq3V\u202eW9zJh"}},
		{name: "zero-width", url: "postgres://u:Kq3V\u200bW9z\u200dJh@127.0.0.1:1/app", secrets: []string{"Kq3V\u200bW9z\u200dJh"}},
		{name: "encoded zero-width", url: "postgres://u:Kq3V%E2%80%8BW9zJh@127.0.0.1:1/app", secrets: []string{"Kq3V\u200bW9zJh"}},
		{name: "1 MB password", url: "postgres://u:" + mb + "@127.0.0.1:1/app", secrets: []string{mb[:4000]}},
		{name: "1 MB encoded", url: "postgres://u:" + strings.Repeat("%5A", 1<<20/3) + "Kq3VbW9zJh@127.0.0.1:1/app", secrets: []string{atkPw}},
		// Where else a password goes.
		{name: "userinfo and password=", url: "postgres://u:Kq3VbW9zJh@127.0.0.1:1/app?password=Wp4NcY7sLm", secrets: []string{atkPw, "Wp4NcY7sLm"}},
		{name: "userinfo and PASSWORD= and sslpassword", url: "postgres://u:Kq3VbW9zJh@127.0.0.1:1/app?PASSWORD=Wp4NcY7sLm&sslpassword=Hd6RfX2pQe", secrets: []string{atkPw, "Wp4NcY7sLm", "Hd6RfX2pQe"}},
		{name: "password twice in query", url: "postgres://u@127.0.0.1:1/app?password=Kq3VbW9zJh&password=Wp4NcY7sLm", secrets: []string{atkPw, "Wp4NcY7sLm"}},
		{name: "encoded key pass%77ord", url: "postgres://u@127.0.0.1:1/app?pass%77ord=Kq3VbW9zJh", secrets: []string{atkPw}},
		{name: "encoded key with bad value", url: "postgres://u@127.0.0.1:1/app?pass%77ord=Kq3VbW9zJh&sslmode=bogus", secrets: []string{atkPw}},
		{name: "key with plus", url: "postgres://u@127.0.0.1:1/app?pass+word=Kq3VbW9zJh", secrets: []string{atkPw}},
		{name: "key with space encoded", url: "postgres://u@127.0.0.1:1/app?password%20=Kq3VbW9zJh", secrets: []string{atkPw}},
		{name: "ipv6 zone", url: "postgres://u:Kq3VbW9zJh@[fe80::1%25lo]:1/app", secrets: []string{atkPw}},
		{name: "ipv6 zone bad", url: "postgres://u:Kq3VbW9zJh@[fe80::1%lo]:1/app", secrets: []string{atkPw}},
		{name: "ipv6 unbracketed", url: "postgres://u:Kq3VbW9zJh@::1:1/app", secrets: []string{atkPw}},
		{name: "multi-host", url: "postgres://u:Kq3VbW9zJh@127.0.0.1:1,127.0.0.2:1,[::1]:1/app?target_session_attrs=read-write", secrets: []string{atkPw}},
		{name: "multi-host bad port", url: "postgres://u:Kq3VbW9zJh@127.0.0.1:1,127.0.0.2:x/app", secrets: []string{atkPw}},
		{name: "multi-host password per host", url: "postgres://u:Kq3VbW9zJh@127.0.0.1:1,u:Wp4NcY7sLm@127.0.0.2:1/app", secrets: []string{atkPw, "Wp4NcY7sLm"}},
		{name: "service=", url: "postgres:///app?service=Kq3svc&password=Kq3VbW9zJh", secrets: []string{atkPw}},
		{name: "keyword service", url: "service=prod password=Kq3VbW9zJh", secrets: []string{atkPw}},
		{name: "JDBC user password", url: "jdbc:postgresql://127.0.0.1:1/app?user=u&password=Kq3VbW9zJh&ssl=true", secrets: []string{atkPw}},
		{name: "JDBC password first", url: "jdbc:postgresql://127.0.0.1:1/app?password=Kq3VbW9zJh&user=u&loginTimeout=x", secrets: []string{atkPw}},
		{name: "JDBC semicolons", url: "jdbc:postgresql://127.0.0.1:1/app;user=u;password=Kq3VbW9zJh", secrets: []string{atkPw}},
		{name: "SQLAlchemy asyncpg", url: "postgresql+asyncpg://u:Kq3VbW9zJh@127.0.0.1:1/app", secrets: []string{atkPw}},
		{name: "SQLAlchemy unknown driver", url: "postgresql+Kq3drv://u:Kq3VbW9zJh@127.0.0.1:1/app", secrets: []string{atkPw}},
		{name: "Prisma api_key", url: "prisma://accelerate.prisma-data.net/?api_key=Kq3VbW9zJh", secrets: []string{atkPw}},
		{name: "prisma+postgres", url: "prisma+postgres://accelerate.prisma-data.net/?api_key=Kq3VbW9zJh", secrets: []string{atkPw}},
		{name: "Heroku style", url: "postgres://ucq1bvlqk8:Kq3VbW9zJhP4e7f2a9@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d8p6fl", secrets: []string{"Kq3VbW9zJhP4e7f2a9"}},
		{name: "basic auth in query", url: "postgres://127.0.0.1:1/app?authorization=Basic%20dTpLcTNWYlc5ekpo", secrets: []string{"dTpLcTNWYlc5ekpo"}},
		{name: "bearer token in options", url: "postgres://127.0.0.1:1/app?options=-c%20app.jwt%3DeyKq3VbW9zJh", secrets: []string{"eyKq3VbW9zJh"}},
		{name: "RDS IAM token raw", url: "postgres://u:rds.example:5432/?Action=connect&DBUser=u&X-Amz-Credential=AKIAKQ3VBW9Z%2F20240101&X-Amz-Signature=Kq3VbW9zJhQ0R@127.0.0.1:1/app", secrets: []string{"AKIAKQ3VBW9Z", "Kq3VbW9zJhQ0R"}},
		{name: "RDS IAM token encoded", url: "postgres://u:rds.example%3A5432%2F%3FAction%3Dconnect%26X-Amz-Signature%3DKq3VbW9zJhQ0R@127.0.0.1:1/app", secrets: []string{"Kq3VbW9zJhQ0R"}},
		{name: "X-Amz-Signature as param", url: "postgres://u@127.0.0.1:1/app?X-Amz-Signature=Kq3VbW9zJhQ0R", secrets: []string{"Kq3VbW9zJhQ0R"}},
		{name: "token in path", url: "postgres://127.0.0.1:1/app/Kq3VbW9zJh?password=Wp4NcY7sLm", secrets: []string{"Wp4NcY7sLm"}},
		{name: "sslkey sslpassword", url: "postgres://u@127.0.0.1:1/app?sslkey=/k/client.key&sslpassword=Kq3VbW9zJh&sslmode=verify-full", secrets: []string{atkPw}},
		{name: "sslpassword bad sslmode", url: "postgres://u@127.0.0.1:1/app?sslpassword=Kq3VbW9zJh&sslmode=nope", secrets: []string{atkPw}},
		{name: "options -c password", url: "postgres://u@127.0.0.1:1/app?options=-c%20password%3DKq3VbW9zJh", secrets: []string{atkPw}},
		{name: "options --password", url: "postgres://u@127.0.0.1:1/app?options=--password%3DKq3VbW9zJh", secrets: []string{atkPw}},
		{name: "options -cpassword", url: "postgres://u@127.0.0.1:1/app?options=-cpassword%3DKq3VbW9zJh", secrets: []string{atkPw}},
		{name: "keyword options", url: "host=127.0.0.1 port=1 options='-c password=Kq3VbW9zJh'", secrets: []string{atkPw}},
		{name: "pgpass line", url: "127.0.0.1:5432:app:u:Kq3VbW9zJh", secrets: []string{atkPw}},
		{name: "pgpass wildcard", url: "*:*:*:u:Kq3VbW9zJh", secrets: []string{atkPw}},
		{name: "user:pass only", url: "u:Kq3VbW9zJh", secrets: []string{atkPw}},
		{name: "user:pass@host no scheme", url: "u:Kq3VbW9zJh@127.0.0.1:1/app", secrets: []string{atkPw}},
		{name: "password equals host", url: "postgres://u:localhost@localhost:1/app", secrets: []string{"localhost"}, benign: []string{"localhost"}},
		{name: "keyword password last unquoted", url: "host=127.0.0.1 port=1 dbname=app password=Kq3Vb\\ W9zJh", secrets: []string{"Kq3Vb", "W9zJh"}},
		{name: "keyword password quoted escapes", url: `host=127.0.0.1 port=1 password='Kq3\'Vb W9zJh' sslmode=nope`, secrets: []string{`Kq3'Vb W9zJh`}},
		{name: "keyword password=Kq3=W9z", url: "host=127.0.0.1 password=Kq3VbW9=zJh port=x", secrets: []string{"Kq3VbW9=zJh"}},
		{name: "keyword user holds pass", url: "host=127.0.0.1 port=1 user=u:Kq3VbW9zJh", secrets: []string{atkPw}},
		{name: "ODBC Pwd braces", url: "Driver={PostgreSQL};Server=127.0.0.1;Uid=u;Pwd={Kq3;Vb}W9zJh};", secrets: []string{"Kq3;Vb}W9zJh"}},
		{name: "ADO.NET quoted", url: `Host=127.0.0.1;Username=u;Password='Kq3;Vb''W9zJh';Database=app`, secrets: []string{"Kq3;Vb'W9zJh"}},
		{name: "JSON secret other keys", url: `{"username":"u","password":"Kq3VbW9zJh","host":"127.0.0.1","port":1,"dbname":"app","engine":"postgres","masterarn":"arn:Wp4NcY7sLm"}`, secrets: []string{atkPw}},
		{name: "JSON secret escaped", url: `{"username":"u","password":"Kq3\"Vb\\W9\u007azJh","host":"127.0.0.1","port":1,"engine":"postgres"}`, secrets: []string{`Kq3"Vb\W9zzJh`}},
		{name: "JSON secret Password capital", url: `{"Username":"u","Password":"Kq3VbW9zJh","Host":"127.0.0.1"}`, secrets: []string{atkPw}},
		{name: "JSON secret nested", url: `{"db":{"password":"Kq3VbW9zJh","host":"127.0.0.1"}}`, secrets: []string{atkPw}},
		{name: "JSON secret bad port", url: `{"username":"u","password":"Kq3VbW9zJh","host":"127.0.0.1","port":"x","engine":"postgres"}`, secrets: []string{atkPw}},
		{name: "JSON secret mysql", url: `{"username":"u","password":"Kq3VbW9zJh","host":"127.0.0.1","engine":"mysql"}`, secrets: []string{atkPw}},
		{name: "JSON array", url: `["postgres://u:Kq3VbW9zJh@127.0.0.1:1/app"]`, secrets: []string{atkPw}},
		{name: "JSON string", url: `"postgres://u:Kq3VbW9zJh@127.0.0.1:1/app`, secrets: []string{atkPw}},
		{name: "JSON password number", url: `{"username":"u","password":73917733917,"host":"127.0.0.1","engine":"postgres"}`, secrets: []string{"73917733917"}},
		{name: "YAML url", url: "url: postgres://u:Kq3VbW9zJh@127.0.0.1:1/app", secrets: []string{atkPw}},
		{name: "YAML flow", url: "{password: Kq3VbW9zJh, host: 127.0.0.1}", secrets: []string{atkPw}},
		{name: "export line", url: "export DATABASE_URL='postgres://u:Kq3VbW9zJh@127.0.0.1:1/app'", secrets: []string{atkPw}},
		{name: "set line", url: "set PGPASSWORD=Kq3VbW9zJh", secrets: []string{atkPw}},
		{name: "docker -e", url: "-e DATABASE_URL=postgres://u:Kq3VbW9zJh@127.0.0.1:1/app", secrets: []string{atkPw}},
		{name: "psql command", url: "psql postgres://u:Kq3VbW9zJh@127.0.0.1:1/app", secrets: []string{atkPw}},
		{name: "psql -W", url: "PGPASSWORD=Kq3VbW9zJh psql -h 127.0.0.1", secrets: []string{atkPw}},
		{name: "mysql url", url: "mysql://u:Kq3VbW9zJh@127.0.0.1:1/app", secrets: []string{atkPw}},
		{name: "mongodb srv", url: "mongodb+srv://u:Kq3VbW9zJh@cluster0.example.net/app", secrets: []string{atkPw}},
		{name: "redis no user", url: "redis://:Kq3VbW9zJh@127.0.0.1:1", secrets: []string{atkPw}},
		{name: "http basic", url: "https://u:Kq3VbW9zJh@127.0.0.1:1/app", secrets: []string{atkPw}},
		{name: "unknown scheme", url: "cockroach://u:Kq3VbW9zJh@127.0.0.1:1/app", secrets: []string{atkPw}},
		{name: "scheme typo", url: "postgress://u:Kq3VbW9zJh@127.0.0.1:1/app", secrets: []string{atkPw}},
		{name: "scheme one slash", url: "postgres:/u:Kq3VbW9zJh@127.0.0.1:1/app", secrets: []string{atkPw}},
		{name: "scheme no slash", url: "postgres:u:Kq3VbW9zJh@127.0.0.1:1/app", secrets: []string{atkPw}},
		{name: "scheme three slashes", url: "postgres:///u:Kq3VbW9zJh@127.0.0.1:1/app", secrets: []string{atkPw}},
		{name: "backslashes for slashes", url: `postgres:\\u:Kq3VbW9zJh@127.0.0.1:1\app`, secrets: []string{atkPw}},
		{name: "fullwidth colon", url: "postgres://u\uff1aKq3VbW9zJh@127.0.0.1:1/app", secrets: []string{atkPw}},
		{name: "fullwidth at", url: "postgres://u:Kq3VbW9zJh\uff20127.0.0.1:1/app", secrets: []string{atkPw}},
		{name: "template then secret", url: "postgres://u:Kq3VbW9zJh@${DB_HOST}:5432/app", secrets: []string{atkPw}},
		{name: "angle template user", url: "postgres://<user>:Kq3VbW9zJh@127.0.0.1:1/app", secrets: []string{atkPw}},
		{name: "quoted mismatched", url: "'postgres://u:Kq3VbW9zJh@127.0.0.1:1/app\"", secrets: []string{atkPw}},
		{name: "tab separated", url: "postgres://u:Kq3VbW9zJh@127.0.0.1:1/app\tsslmode=require", secrets: []string{atkPw}},
		{name: "CRLF inside", url: "postgres://u:Kq3VbW9zJh@127.0.0.1:1/app\r\n", secrets: []string{atkPw}},
		{name: "CR only between", url: "postgres://u:Kq3Vb\rW9zJh@127.0.0.1:1/app", secrets: []string{"Kq3Vb", "W9zJh"}},
		{name: "VT FF", url: "postgres://u:Kq3Vb\vW9z\fJh@127.0.0.1:1/app", secrets: []string{"Kq3Vb", "W9zJh"}},
		{name: "NEL LS", url: "postgres://u:Kq3Vb\u0085W9z\u2028Jh@127.0.0.1:1/app", secrets: []string{"Kq3Vb", "W9zJh"}},
		{name: "fragment holds password", url: "postgres://u@127.0.0.1:1/app#password=Kq3VbW9zJh", secrets: []string{atkPw}},
		{name: "too long with secret at end", url: "postgres://u@127.0.0.1:1/app?application_name=" + strings.Repeat("a", 9000) + "&password=Kq3VbW9zJh&sslmode=x", secrets: []string{atkPw}},
		{name: "sqlite auth pass", url: "file:app.db?_auth&_auth_user=u&_auth_pass=Kq3VbW9zJh", secrets: []string{atkPw}},
		{name: "sqlite auth pass bad", url: "file:app.db?_auth_pass=Kq3VbW9zJh&mode=bogus", secrets: []string{atkPw}},
		{name: "sqlite key pragma", url: "file:app.db?_pragma_key=Kq3VbW9zJh", secrets: []string{atkPw}},
		{name: "sqlite userinfo", url: "sqlite://u:Kq3VbW9zJh@/app.db", secrets: []string{atkPw}},
		{name: "sqlite cipher key", url: "sqlite:///app.db?cipher=aes&key=Kq3VbW9zJh", secrets: []string{atkPw}},
		// Environment shapes.
		{name: "PGPASSWORD", env: map[string]string{"PGHOST": "127.0.0.1", "PGPORT": "1", "PGPASSWORD": atkPw, "PGSSLMODE": "bogus"}, secrets: []string{atkPw}},
		{name: "PGPASSWORD with CRLF", env: map[string]string{"PGHOST": "127.0.0.1", "PGPORT": "1", "PGPASSWORD": "Kq3Vb\r\nW9zJh"}, secrets: []string{"Kq3Vb", "W9zJh"}},
		{name: "PGPASSWORD NUL", env: map[string]string{"PGHOST": "127.0.0.1", "PGPORT": "1", "PGPASSWORD": "Kq3Vb\x00W9zJh"}, secrets: []string{"Kq3Vb\x00W9zJh"}},
		{name: "PGSSLPASSWORD", env: map[string]string{"PGHOST": "127.0.0.1", "PGPORT": "x", "PGSSLPASSWORD": atkPw}, secrets: []string{atkPw}},
		{name: "PGUSER holds user:pass", env: map[string]string{"PGHOST": "127.0.0.1", "PGPORT": "1", "PGUSER": "u:Kq3VbW9zJh"}, secrets: []string{atkPw}},
		{name: "PGHOST holds URL", env: map[string]string{"PGHOST": "postgres://u:Kq3VbW9zJh@127.0.0.1:1/app"}, secrets: []string{atkPw}},
		{name: "PGDATABASE holds URL", env: map[string]string{"PGDATABASE": "postgres://u:Kq3VbW9zJh@127.0.0.1:1/app"}, secrets: []string{atkPw}},
		{name: "PGDATABASE keyword", env: map[string]string{"PGHOST": "127.0.0.1", "PGPORT": "1", "PGDATABASE": "dbname=app password=Kq3VbW9zJh"}, secrets: []string{atkPw}},
		{name: "PGOPTIONS password", env: map[string]string{"PGHOST": "127.0.0.1", "PGPORT": "1", "PGOPTIONS": "-c password=Kq3VbW9zJh"}, secrets: []string{atkPw}},
		{name: "PGAPPNAME token", env: map[string]string{"PGHOST": "127.0.0.1", "PGPORT": "1", "PGAPPNAME": "app token=Kq3VbW9zJh"}, secrets: []string{atkPw}},
		{name: "PGPASSFILE PGSERVICEFILE", env: map[string]string{"PGHOST": "127.0.0.1", "PGPORT": "1", "PGPASSFILE": "/nonexistent/Kq3VbW9zJh", "PGSERVICEFILE": "/nonexistent/svc"}, secrets: nil},
		{name: "PGSERVICE", env: map[string]string{"PGSERVICE": "password=Kq3VbW9zJh"}, secrets: []string{atkPw}},
		{name: "PGHOST with password env shadowed", env: map[string]string{"DATABASE_URL": "postgres://u:Wp4NcY7sLm@127.0.0.1:1/app", "PGHOST": "127.0.0.1", "PGPASSWORD": atkPw}, secrets: []string{atkPw, "Wp4NcY7sLm"}},
		{name: "DATABASE_URL CRLF pair", env: map[string]string{"DATABASE_URL": "postgres://u:Kq3VbW9zJh@127.0.0.1:1/app\r\nsslmode=x"}, secrets: []string{atkPw}},
		{name: "DATABASE_URL only CR", env: map[string]string{"DATABASE_URL": "\rpostgres://u:Kq3VbW9zJh@127.0.0.1:1/app\r"}, secrets: []string{atkPw}},
		{name: "DATABASE_URL invalid and PGPASSWORD", env: map[string]string{"DATABASE_URL": "postgres://u:Wp4NcY7sLm@127.0.0.1:x/app", "PGHOST": "127.0.0.1", "PGPASSWORD": atkPw}, secrets: []string{atkPw, "Wp4NcY7sLm"}},
		{name: "SQLITE_PATH url", env: map[string]string{"SQLITE_PATH": "postgres://u:Kq3VbW9zJh@127.0.0.1:1/app"}, secrets: []string{atkPw}},
		{name: "SQLITE_PATH user:pass path", env: map[string]string{"SQLITE_PATH": "/tmp/u:Kq3VbW9zJh@db/app.db"}, secrets: []string{atkPw}},
		{name: "SQLITE_PATH password=", env: map[string]string{"SQLITE_PATH": "/tmp/app.db?_auth_pass=Kq3VbW9zJh"}, secrets: []string{atkPw}},
		{name: "SQLITE_PATH key file", env: map[string]string{"SQLITE_PATH": "file:/tmp/app.db?_key=Kq3VbW9zJh"}, secrets: []string{atkPw}},
		{name: "SQLITE_PATH multi-line", env: map[string]string{"SQLITE_PATH": "/tmp/app.db\nKq3VbW9zJh"}, secrets: []string{atkPw}},
		{name: "SQLITE_PATH pgpass", env: map[string]string{"SQLITE_PATH": "127.0.0.1:5432:app:u:Kq3VbW9zJh"}, secrets: []string{atkPw}},
		{name: "WithEnvVars custom name", env: map[string]string{"POSTGRES_URL": "postgres://u:Kq3VbW9zJh@127.0.0.1:x/app"}, secrets: []string{atkPw}},
		// DATABASE_URL_FILE shapes.
		{name: "file .env two lines", file: "DATABASE_URL=postgres://u:Kq3VbW9zJh@127.0.0.1:1/app\nPOSTGRES_PASSWORD=Wp4NcY7sLm\n", secrets: []string{atkPw, "Wp4NcY7sLm"}},
		{name: "file .env twice", file: "DATABASE_URL=postgres://u:Kq3VbW9zJh@127.0.0.1:1/app\nDATABASE_URL=postgres://u:Wp4NcY7sLm@127.0.0.1:1/app\n", secrets: []string{atkPw, "Wp4NcY7sLm"}},
		{name: "file .env bad value", file: "DATABASE_URL=postgres://u:Kq3VbW9zJh@127.0.0.1:x/app\nX=1\n", secrets: []string{atkPw}},
		{name: "file .env export quoted", file: "export DATABASE_URL=\"postgres://u:Kq3VbW9zJh@127.0.0.1:1/app\"\nA=Wp4NcY7sLm\n", secrets: []string{atkPw, "Wp4NcY7sLm"}},
		{name: "file CRLF", file: "postgres://u:Kq3VbW9zJh@127.0.0.1:1/app\r\n", secrets: []string{atkPw}},
		{name: "file CRLF bad", file: "postgres://u:Kq3VbW9zJh@127.0.0.1:x/app\r\n", secrets: []string{atkPw}},
		{name: "file BOM UTF-16", file: "\xff\xfep\x00o\x00s\x00t\x00g\x00r\x00e\x00s\x00:\x00/\x00/\x00u\x00:\x00K\x00q\x003\x00V\x00b\x00W\x009\x00z\x00J\x00h\x00@\x00h\x00", secrets: []string{"K\x00q\x003\x00V\x00b\x00W\x009\x00z\x00"}},
		{name: "file JSON multiline", file: "{\n  \"username\": \"u\",\n  \"password\": \"Kq3VbW9zJh\",\n  \"host\": \"127.0.0.1\",\n  \"port\": \"x\"\n}\n", secrets: []string{atkPw}},
		{name: "file symlink", file: "postgres://u:Kq3VbW9zJh@127.0.0.1:x/app", fileKind: "symlink", secrets: []string{atkPw}},
		{name: "file is dir", file: "postgres://u:Kq3VbW9zJh@127.0.0.1:1/app", fileKind: "dir", secrets: []string{atkPw}},
		{name: "file huge", file: "postgres://u:Kq3VbW9zJh@127.0.0.1:1/app?application_name=" + strings.Repeat("a", 2<<20), secrets: []string{atkPw}},
		{name: "file huge one line bad", file: "postgres://u:Kq3VbW9zJh@127.0.0.1:x/app" + strings.Repeat(" ", 2<<20), secrets: []string{atkPw}},
		{name: "file name holds password", fileKind: "name", file: "postgres://127.0.0.1:x/app", secrets: []string{atkPw}},
	}
}

// TestAttackSecretsEveryChannel* run every case through Validate, Resolve
// and Open and check every channel each of them feeds; the table is cut
// in four so that each test stays short under -race.
func TestAttackSecretsEveryChannel1(t *testing.T) { atkRunSecretQuarter(t, 0) }
func TestAttackSecretsEveryChannel2(t *testing.T) { atkRunSecretQuarter(t, 1) }
func TestAttackSecretsEveryChannel3(t *testing.T) { atkRunSecretQuarter(t, 2) }
func TestAttackSecretsEveryChannel4(t *testing.T) { atkRunSecretQuarter(t, 3) }

func atkRunSecretQuarter(t *testing.T, q int) {
	cases := atkSecretCases()
	n := (len(cases) + 3) / 4
	total := 0
	for _, tt := range cases[min(q*n, len(cases)):min((q+1)*n, len(cases))] {
		t.Run(tt.name, func(t *testing.T) {
			total += atkRunSecretCase(t, tt)
		})
	}
	t.Logf("%d renderings checked", total)
}

func atkRunSecretCase(t *testing.T, tt atkSecretCase) int {
	dir := t.TempDir()
	t.Chdir(dir) // relative SQLite paths (file:app.db, ./data) land here
	env := map[string]string{"TMPDIR": dir, "SQLITE_PATH": filepath.Join(dir, "fb.db")}
	for k, v := range tt.env {
		env[k] = v
	}
	if tt.file != "" || tt.fileKind != "" {
		env["DATABASE_URL_FILE"] = atkWriteSecretFile(t, dir, tt)
	}
	var rs []atkRendering
	opts := []Option{withDataDir(filepath.Join(dir, "nodata")), WithLookupEnv(func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})}
	if tt.url != "" {
		target, err := Validate(tt.url)
		rs = append(rs, atkRenderTarget("Validate target", target)...)
		if err != nil {
			rs = append(rs, atkRenderErr("Validate err", err)...)
		}
		opts = append(opts, WithURL(tt.url))
	}
	if _, ok := tt.env["POSTGRES_URL"]; ok {
		opts = append(opts, WithEnvVars("POSTGRES_URL", "DATABASE_URL"))
	}
	r, err := Resolve(context.Background(), opts...)
	require.NoError(t, err)
	rs = append(rs, atkRenderResolution(r)...)

	var logs bytes.Buffer
	logger := slog.New(atkTee{slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}),
		slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	db, err := Open(ctx, append(opts, WithLogger(logger), WithConnectTimeout(2*time.Second),
		WithStrategy(StrategyFunc(atkLoopbackOnly)))...)
	if err != nil {
		rs = append(rs, atkRenderErr("Open err", err)...)
	} else {
		rs = append(rs, atkRenderDB(t, db)...)
		require.NoError(t, db.Close())
		rs = append(rs, atkRender("closed db", db)...)
	}
	rs = append(rs, atkRendering{"Open log", logs.String()})
	return atkCheck(t, tt.secrets, tt.benign, rs)
}

// atkLoopbackOnly is PreferPrimary, except that a primary naming any host
// off this machine is left out: tests never dial anything else.
func atkLoopbackOnly(r Resolution) []Target {
	var out []Target
	if !r.Primary.IsZero() {
		local := true
		for _, h := range r.Primary.Hosts {
			local = local && (h.IsSocket() || h.Name == "127.0.0.1" || h.Name == "127.0.0.2" || h.Name == "::1" || h.Name == "localhost")
		}
		if local {
			out = append(out, r.Primary)
		}
	}
	return append(out, r.Fallbacks...)
}

// atkTee sends every record to several handlers.
type atkTee []slog.Handler

func (h atkTee) Enabled(context.Context, slog.Level) bool { return true }
func (h atkTee) Handle(ctx context.Context, r slog.Record) error {
	for _, x := range h {
		if err := x.Handle(ctx, r.Clone()); err != nil {
			return err
		}
	}
	return nil
}
func (h atkTee) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(atkTee, len(h))
	for i, x := range h {
		out[i] = x.WithAttrs(as)
	}
	return out
}
func (h atkTee) WithGroup(name string) slog.Handler {
	out := make(atkTee, len(h))
	for i, x := range h {
		out[i] = x.WithGroup(name)
	}
	return out
}

func atkWriteSecretFile(t *testing.T, dir string, tt atkSecretCase) string {
	p := filepath.Join(dir, "secret")
	switch tt.fileKind {
	case "symlink":
		real := filepath.Join(dir, "real-secret")
		require.NoError(t, os.WriteFile(real, []byte(tt.file), 0o600))
		require.NoError(t, os.Symlink(real, p))
	case "dir":
		require.NoError(t, os.Mkdir(p, 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(p, "url"), []byte(tt.file), 0o600))
	case "name":
		// An operator who put the value in the _FILE variable itself.
		return "postgres://u:Kq3VbW9zJh@127.0.0.1:1/app"
	default:
		require.NoError(t, os.WriteFile(p, []byte(tt.file), 0o600))
	}
	return p
}

func atkRenderErr(name string, err error) []atkRendering {
	rs := atkRender(name, err)
	rs = append(rs, atkRendering{name + " Error()", err.Error()})
	for e := err; e != nil; e = errors.Unwrap(e) {
		rs = append(rs, atkRendering{name + " chain", e.Error()})
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		rs = append(rs, atkRender(name+" *ValidationError", *ve)...)
		rs = append(rs, atkRendering{name + " fields", ve.Input + "|" + ve.Reason + "|" + ve.Hint + "|" + string(ve.Code)})
	}
	return rs
}

func atkRenderTarget(name string, t Target) []atkRendering {
	rs := atkRender(name, t)
	rs = append(rs, atkRender(name+" ptr", &t)...)
	text, _ := t.MarshalText()
	parts := []string{t.String(), t.Redacted(), t.GoString(), string(text), t.User, t.Database, t.Path,
		strings.Join(t.Notes, "|"), strings.Join(t.SecretKeys(), "|")}
	for k, v := range t.Params {
		parts = append(parts, k+"="+v)
	}
	for _, h := range t.Hosts {
		parts = append(parts, h.Name, h.String())
	}
	return append(rs, atkRendering{name + " fields", strings.Join(parts, "\n")})
}

func atkRenderResolution(r Resolution) []atkRendering {
	rs := atkRender("Resolution", r)
	rs = append(rs, atkRendering{"Resolution Reason", r.Reason()}, atkRendering{"Resolution String", r.String()})
	rs = append(rs, atkRenderTarget("Resolution Primary", r.Primary)...)
	for _, s := range r.Sources {
		rs = append(rs, atkRender("Source", s)...)
		rs = append(rs, atkRendering{"Source fields", s.Name + "|" + s.Detail})
		if s.Err != nil {
			rs = append(rs, atkRenderErr("Source err", s.Err)...)
		}
		rs = append(rs, atkRenderTarget("Source target", s.Target)...)
	}
	for _, p := range r.Paths {
		rs = append(rs, atkRender("SQLitePath", p)...)
		rs = append(rs, atkRendering{"SQLitePath fields", p.Path + "|" + p.Origin})
		if p.Err != nil {
			rs = append(rs, atkRenderErr("SQLitePath err", p.Err)...)
		}
	}
	for _, f := range r.Fallbacks {
		rs = append(rs, atkRenderTarget("Fallback", f)...)
	}
	return rs
}

func atkRenderDB(t *testing.T, db *DB) []atkRendering {
	rs := atkRender("DB", db)
	rs = append(rs, atkRendering{"DB Reason", db.Reason()}, atkRendering{"DB String", db.String()})
	rs = append(rs, atkRenderTarget("DB Target", db.Target())...)
	for _, a := range db.Attempts() {
		rs = append(rs, atkRender("Attempt", a)...)
		if a.Err != nil {
			rs = append(rs, atkRenderErr("Attempt err", a.Err)...)
		}
	}
	h := db.Health(context.Background())
	rs = append(rs, atkRender("Health", h)...)
	rs = append(rs, atkRender("Stats", db.Stats())...)
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost} {
		rec := httptest.NewRecorder()
		db.HealthHandler().ServeHTTP(rec, httptest.NewRequest(m, "/health", nil))
		body, _ := io.ReadAll(rec.Result().Body)
		rs = append(rs, atkRendering{"HealthHandler " + m, string(body) + "\n" + strings.Join(rec.Result().Header.Values("Content-Type"), "")})
	}
	return rs
}

// TestAttackSecretsServerEcho: a server (a proxy, a pooler, a fork) that
// answers the password with an error quoting it, whole, cut short or
// escaped: Open's attempts, reason, log and health must not repeat it.
func TestAttackSecretsServerEcho(t *testing.T) {
	const pw = `Kq3'Vb"W9z\Jh`
	tests := []struct {
		name string
		echo func(got string) string
	}{
		{"whole", func(got string) string { return `password "` + got + `" is wrong` }},
		{"SQL-quoted", func(got string) string { return `password '` + strings.ReplaceAll(got, `'`, `''`) + `' is wrong` }},
		{"Go-quoted", func(got string) string { return "password " + strconv.Quote(got) + " is wrong" }},
		{"JSON", func(got string) string { j, _ := json.Marshal(got); return "password " + string(j) }},
		{"cut short", func(got string) string { return "password starting " + got[:7] + "… is wrong" }},
		{"tail", func(got string) string { return "password ending " + got[len(got)-6:] + " is wrong" }},
		{"percent", func(got string) string { return "password " + url.QueryEscape(got) }},
		{"hex", func(got string) string { return "password " + hex.EncodeToString([]byte(got)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := atkEchoServer(t, tt.echo)
			dir := t.TempDir()
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			raw := "postgres://u:" + url.PathEscape(pw) + "@" + addr + "/app?sslmode=disable"
			db, err := Open(context.Background(), WithURL(raw), WithEnvVars(), WithSQLitePath(filepath.Join(dir, "fb.db")),
				withDataDir(filepath.Join(dir, "nodata")), WithLogger(logger), WithConnectTimeout(2*time.Second),
				WithLookupEnv(func(string) (string, bool) { return "", false }))
			require.NoError(t, err)
			require.True(t, db.Fallback())
			rs := atkRenderDB(t, db)
			require.NoError(t, db.Close())
			rs = append(rs, atkRendering{"Open log", logs.String()})
			// The driver's own error, which an Attempt's error wraps for
			// errors.As (a *pgconn.PgError), holds what the server said:
			// only the Attempt's own text is redacted.
			rs = slices.DeleteFunc(rs, func(r atkRendering) bool { return strings.HasSuffix(r.channel, " chain") })
			// The server really answered: its error is the attempt's.
			require.Contains(t, db.Reason(), "28P01")
			atkCheck(t, []string{pw}, nil, rs)
		})
	}
}

// atkEchoServer listens on loopback and speaks just enough of the
// PostgreSQL protocol to ask for a cleartext password and answer it with
// a FATAL error whose message echo makes from the password. It serves
// until the test ends.
func atkEchoServer(t *testing.T, echo func(string) string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				var n uint32
				if binary.Read(c, binary.BigEndian, &n) != nil || n < 8 || n > 1<<16 {
					return
				}
				if _, err := io.ReadFull(c, make([]byte, n-4)); err != nil {
					return
				}
				_, _ = c.Write([]byte{'R', 0, 0, 0, 8, 0, 0, 0, 3}) // cleartext password, please
				hdr := make([]byte, 5)
				if _, err := io.ReadFull(c, hdr); err != nil || hdr[0] != 'p' {
					return
				}
				body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
				if _, err := io.ReadFull(c, body); err != nil {
					return
				}
				got := strings.TrimSuffix(string(body), "\x00")
				var msg bytes.Buffer
				for _, f := range []struct {
					code byte
					val  string
				}{{'S', "FATAL"}, {'V', "FATAL"}, {'C', "28P01"}, {'M', echo(got)}} {
					msg.WriteByte(f.code)
					msg.WriteString(f.val)
					msg.WriteByte(0)
				}
				msg.WriteByte(0)
				out := []byte{'E', 0, 0, 0, 0}
				binary.BigEndian.PutUint32(out[1:], uint32(msg.Len()+4))
				_, _ = c.Write(append(out, msg.Bytes()...))
			}()
		}
	}()
	return ln.Addr().String()
}

// TestAttackSecretsRealServer: the real PostgreSQL rejecting a password
// with quotes and backslashes, an unknown user and database, and, with the
// right password, the errors a service meets once its connection dies
// (inside Tx, and on the pool) must not show the password either.
func TestAttackSecretsRealServer(t *testing.T) {
	const pw = `Kq3'Vb"W9z\Jh`
	base, err := Validate(testPostgresURL(t))
	require.NoError(t, err)
	right, _ := base.Password()
	tests := []struct {
		name, url, secret string
		fallback          bool
	}{
		{"wrong password", pgURLWith(t, "", 0, "", pw, ""), pw, true},
		{"unknown user", pgURLWith(t, "", 0, "nouser_Wp4NcY7sLm", pw, ""), pw, true},
		{"unknown database", pgURLWith(t, "", 0, "", pw+"x", "nodb_Wp4NcY7sLm"), pw + "x", true},
		{"right password", pgURLWith(t, "", 0, "", "", ""), right, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var logs bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			db, err := Open(context.Background(), WithURL(tt.url), WithEnvVars(), WithSQLitePath(filepath.Join(dir, "fb.db")),
				withDataDir(filepath.Join(dir, "nodata")), WithLogger(logger),
				WithLookupEnv(func(string) (string, bool) { return "", false }))
			require.NoError(t, err)
			defer db.Close()
			require.Equal(t, tt.fallback, db.Fallback(), db.Reason())
			rs := atkRenderDB(t, db)
			if !tt.fallback {
				rs = append(rs, atkDeadConnErrors(t, db)...)
			}
			rs = append(rs, atkRendering{"Open log", logs.String()})
			atkCheck(t, []string{tt.secret}, nil, rs)
		})
	}
}

// atkDeadConnErrors kills the backend under a transaction and a pinned
// connection and returns the errors the service then sees.
func atkDeadConnErrors(t *testing.T, db *DB) []atkRendering {
	ctx := context.Background()
	var rs []atkRendering
	kill := func(pid int) {
		_, err := db.ExecContext(ctx, "SELECT pg_terminate_backend($1)", pid)
		require.NoError(t, err)
	}
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		var pid int
		if err := tx.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			return err
		}
		kill(pid)
		_, err := tx.ExecContext(ctx, "SELECT 1")
		return err
	})
	require.Error(t, err)
	rs = append(rs, atkRenderErr("Tx after kill", err)...)

	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	var pid int
	require.NoError(t, conn.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid))
	kill(pid)
	_, err = conn.ExecContext(ctx, "SELECT 1")
	require.Error(t, err)
	rs = append(rs, atkRenderErr("Conn after kill", err)...)
	_ = conn.Close()
	rs = append(rs, atkRender("Health after kill", db.Health(ctx))...)
	return rs
}
