package dbfallback

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// hostilePasswords hold every character that splits a password in some
// parser: reserved URL characters, '%', '&', '=', ';', quotes and a space.
// Each alphanumeric run is distinctive, so finding one in output is a leak.
var hostilePasswords = []string{
	"Sekr1tQz8",
	"Sekr1t#Qz8@Vw2/Ty5?Lm3:Nb7",
	"Abc9Q#Def8W#Ghi7E",
	"Pq7Zx%Wv3Yu%2Ft6",
	"Hj6Rt5 Kx4Lm3",
	"Tq8Wd2&Zp4Nm6=Yk3",
	"Fb5Gh7;Jk2Lp9",
	"Mn4'Xc8\"Vb1",
	"Ws3[Qe5]Rt7{Yu9}",
	"Zk8@Zk9@Zk7",
}

// hostileShapes place the password where people put passwords, in valid and
// broken values alike. Some are rejected, some accepted; none may leak.
var hostileShapes = []string{
	"postgres://user:%s@db.example.com:5432/app",
	"postgresql://user:%s@db.example.com/app?sslmode=require",
	"postgres://user:%s@db.example.com:5432/app?sslmode=bogus",
	"postgres://user:%s@db.example.com:notaport/app",
	"postgres://user:%s@/app",
	"postgres://user:%s/app",
	"postgres://user:%s@",
	"postgres://user:%s@db.example.com/app/extra",
	"postgres://user:%s@db.example.com/app@x",
	"postgres://user:%s@[::1/app",
	"postgres://user:%s@2001:db8::1:5432/app",
	"postgres://user:%s@db.example.com/app?connect_timeout=ten",
	"postgres://user:%s@h1,,h3/app",
	"postgres://db.example.com/app?password=%s",
	"postgres://db.example.com/app?password=%s&sslmode=bogus",
	"postgres://db.example.com/app?sslmode=bogus&password=%s",
	"jdbc:postgresql://db.example.com/app?user=u&password=%s",
	"jdbc:postgresql://db.example.com/app?user=u&password=%s&ssl=maybe",
	"host=db.example.com dbname=app password=%s",
	"host=db.example.com dbname=app password='%s' bogus=1",
	"host=db.example.com password=%s dbname=app sslmode=bogus",
	"mysql://user:%s@db.example.com/app",
	"DATABASE_URL=postgres://user:%s@db.example.com/app",
	"export DATABASE_URL='postgres://user:%s@db.example.com/app'",
	"\"postgres://user:%s@db.example.com/app",
	"postgres://user:%s@db.example.com/app\x00",
	"postgres://user:%s@db.example.com/app\nsecond line",
	"Server=db;Database=app;User Id=u;Password=%s;",
	"user:%s@db.example.com/app",
	"postgres://${USER}:%s@db.example.com/app",
	"postgres://user:%s@db.example.com:PORT/app",
	"postgres://user:%s@db.example.com/<dbname>",
	"sqlite:///app.db?_auth_user=u&_auth_pass=%s",
	"sqlite:///app.db?_auth_pass=%s&mode=bogus",
	"prisma+postgres://user:%s@accelerate.prisma-data.net/",
}

func TestNoPasswordFragmentLeaks(t *testing.T) {
	for i, shape := range hostileShapes {
		for j, pw := range hostilePasswords {
			in := fmt.Sprintf(shape, pw)
			t.Run(fmt.Sprintf("shape%d/pw%d", i, j), func(t *testing.T) {
				tg, err := Validate(in)
				if err != nil {
					assertNoFragment(t, err.Error(), pw, "error")
					if ve, ok := err.(*ValidationError); ok {
						assertNoFragment(t, ve.Input+ve.Reason+ve.Hint, pw, "error fields")
					}
					return
				}
				// An accepted value was read as written: when the shape names
				// no host of its own, a password holding '@' or '&' can
				// legitimately read as host or parameter, and the parsed
				// password is what must stay hidden.
				if !strings.Contains(shape, "@db.example.com") && !strings.Contains(shape, "//db.example.com") {
					pw, _ = tg.Password()
				}
				js, _ := json.Marshal(tg)
				for name, s := range map[string]string{
					"String": tg.String(), "Redacted": tg.Redacted(), "%v": fmt.Sprintf("%v", tg),
					"%+v": fmt.Sprintf("%+v", tg), "%#v": fmt.Sprintf("%#v", tg),
					"LogValue": tg.LogValue().String(), "json": string(js), "notes": strings.Join(tg.Notes, " "),
				} {
					assertNoFragment(t, s, pw, name)
				}
			})
		}
	}
}

func TestRedactInput(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://u:secret@h/db", "postgres://u:xxxxx@h/db"},
		{"postgres://u:se@cr@et@h/db", "postgres://u:xxxxx@h/db"},
		{"postgres://u:secret/db", "postgres://u:xxxxx"},
		{"postgres://h:5432/db?sslmode=x", "postgres://h:5432/db?sslmode=x"},
		{"postgres://u:,secret/db", "postgres://u:xxxxx"},
		{"postgres://h:5432/db", "postgres://h:5432/db"},
		{"postgres://h/db?password=secret&sslmode=x", "postgres://h/db?password=xxxxx&sslmode=x"},
		{"postgres://h/db?pass%77ord=secret", "postgres://h/db?pass%77ord=xxxxx"},
		{"host=h password='a b c' dbname=d", "host=h password=xxxxx dbname=d"},
		{"host=h password=a b c dbname=d", "host=h password=xxxxx dbname=d"},
		{"Server=s;Password=p;w;Database=d", "Server=s;Password=xxxxx;Database=d"},
		{"user:secret@host/db", "user:xxxxx@host/db"},
		{"jdbc:postgresql://u:secret@h/db", "jdbc:postgresql://u:xxxxx@h/db"},
		{"user: secret://@h/db", "user:xxxxx@h/db"},
		{"", ""},
		// Keyword/value with other spacing (leak class 2).
		{"host = h port = 1 password = s3cr3t sslmode = bogus", "host = h port = 1 password = xxxxx sslmode = bogus"},
		{"host=h\tpassword=s3cr3t\tsslmode=x", "host=h\tpassword=xxxxx\tsslmode=x"},
		{"host=h password =s3cr3t", "host=h password =xxxxx"},
		{"password=ab\\ cd sslmode=x", "password=xxxxx sslmode=x"},
		{"host=h password=ab'cd sslmode=x", "host=h password=xxxxx sslmode=x"},
		{"host=h password=ab&cd dbname=d", "host=h password=xxxxx dbname=d"},
		{"host=h password='a\\' b' dbname=d", "host=h password=xxxxx dbname=d"},
		{"host=h password='a b", "host=h password=xxxxx"},
		{"host=h password='a' b dbname=d", "host=h password=xxxxx"}, // cannot tell where it ends
		// Query-string secrets followed by other separators (class 3).
		{"postgres://h/db?password=ab;sslmode=cd", "postgres://h/db?password=xxxxx"},
		{"postgres://h/db?password=ab'host=cd", "postgres://h/db?password=xxxxx"},
		{"postgres://h/db?password=ab\"x&sslmode=require", "postgres://h/db?password=xxxxx&sslmode=require"},
		{"postgres://h/db?password=ab?x=y", "postgres://h/db?password=xxxxx"},
		{"postgres://h/db?password=ab&cd&sslmode=x", "postgres://h/db?password=xxxxx&sslmode=x"},
		{"postgres://h/db?password=ab&xkey=cd&sslmode=x", "postgres://h/db?password=xxxxx&sslmode=x"},
		// Other secret-bearing keys (class 4).
		{"postgres://h/db?sslpassword=a&PASSWORD=b&pwd=c&passwd=d&api_key=e&oauth_client_secret=f&scram_client_key=g",
			"postgres://h/db?sslpassword=xxxxx&PASSWORD=xxxxx&pwd=xxxxx&passwd=xxxxx&api_key=xxxxx&oauth_client_secret=xxxxx&scram_client_key=xxxxx"},
		// Non-URL shapes (class 5).
		{`{"username":"u","password":"p\"q,x","host":"h"}`, `{"username":"u","password":xxxxx,"host":"h"}`},
		{`{"username":"u","password":"p","host"`, `{"username":"u","password":xxxxx`},
		{`{'password': 'p', 'host': 'h'}`, `{'password': xxxxx, 'host': 'h'}`},
		{"password: s3cr3t", "password: xxxxx"},
		{"  password: 's3 cr3t'", "  password: xxxxx"},
		{"PGPASSWORD=s3cr3t", "PGPASSWORD=xxxxx"},
		{"export POSTGRES_PASSWORD=s3cr3t", "export POSTGRES_PASSWORD=xxxxx"},
		{`Host=b;Password="a"";Host=b";Database=d`, `Host=b;Password=xxxxx;Database=d`},
		{`Host=b;Password="a"";Host=b`, `Host=b;Password=xxxxx`},
		{"Driver={x};Pwd={a;Port=b};Server=h", "Driver={x};Pwd=xxxxx;Server=h"},
		{"Driver={x};Pwd={a}}b};Server=h", "Driver={x};Pwd=xxxxx;Server=h"},
		{"Driver={x};Pwd={a;Port=b", "Driver={x};Pwd=xxxxx"},
		// JDBC properties and a forgotten '?' (class 7).
		{"jdbc:postgresql://h/db;user=u;password=p;ssl=true", "jdbc:postgresql://h/db;user=u;password=xxxxx;ssl=true"},
		{"postgres://h/db&password=p", "postgres://h/db&password=xxxxx"},
		{"postgres://h/db&password=p&sslmode=require", "postgres://h/db&password=xxxxx&sslmode=require"},
		// Several lines: nothing is shown.
		{"postgres://u:p@h/db\nPOSTGRES_PASSWORD=x\n", "<2 lines, not shown>"},
		{"postgres://u:p@h/db\n", "postgres://u:xxxxx@h/db\n"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			assert.Equal(t, tt.want, redactInput(tt.in))
		})
	}
	long := "postgres://u:p@h/" + strings.Repeat("é", 400)
	assert.LessOrEqual(t, len(redactInput(long)), maxShownInput+len("…"))
	assert.True(t, strings.HasSuffix(redactInput(long), "…"))
}

func TestScrubSecrets(t *testing.T) {
	got := scrubSecrets(`failed to connect: password "p@ss word" rejected, url p%40ss%20word`, "p@ss word")
	assert.NotContains(t, got, "p@ss")
	assert.NotContains(t, got, "p%40ss")
	assert.Equal(t, "abc", scrubSecrets("abc", "b"), "secrets shorter than minScrubLen are left alone")
}
