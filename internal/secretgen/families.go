package secretgen

import (
	"encoding/json"
	"strings"
)

// One value in DATABASE_URL.
func single(shape, value string) Case {
	return Case{Shape: shape, Env: map[string]string{"DATABASE_URL": value}}
}

// escapeURL percent-encodes every byte but letters, digits and "-._~".
func escapeURL(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// password returns pw as some writer would put it in a URL: encoded,
// raw, or half-encoded.
func (g *gen) urlPassword(pw string) (string, string) {
	switch g.r.IntN(3) {
	case 0:
		return escapeURL(pw), "encoded"
	case 1:
		return pw, "raw"
	}
	return strings.NewReplacer("@", "%40", "/", "%2F").Replace(pw), "half-encoded"
}

var secretKeys = []string{"password", "PASSWORD", "Password", "sslpassword", "pwd", "Pwd", "passwd", "api_key",
	"oauth_client_secret", "scram_client_key", "scram_server_key", "auth_token", "db_secret", "pass%77ord",
	"client_key", "x-api-key", "aws_credentials"}

func urlUserinfo(g *gen, pw string) Case {
	p, how := g.urlPassword(pw)
	scheme := g.pick("postgres", "postgresql", "pgsql", "PostgreSQL", "postgresql+psycopg2", "jdbc:postgresql", "pg")
	tail := g.pick(
		"@"+g.hostPort()+"/app",
		"@"+g.hostPort()+"/app?sslmode=require",
		"@"+g.hostPort()+"/app?sslmode=bogus",
		"@"+g.cfg.Host+":notaport/app",
		"@"+g.hostPort()+","+g.hostPort()+"/app?target_session_attrs=any",
		"@"+g.hostPort()+"/app/extra",
		"@"+g.hostPort()+"/app?connect_timeout=ten",
		"@"+g.hostPort()+"/app?application_name=web&sslmode=disable",
		"@"+g.hostPort(),
		"@/app?host=/nonexistent/dbfallback-socket&port="+g.cfg.Port,
		"@"+g.hostPort()+"/app#frag",
		"@"+g.hostPort()+"/app?"+g.pick(secretKeys...)+"="+p,
	)
	user := g.pick("app", "app@tenant", "me%40srv", "", "${USER}")
	return single(scheme+"/"+how+"/"+tail, scheme+"://"+user+":"+p+tail)
}

func querySecret(g *gen, pw string) Case {
	p, how := g.urlPassword(pw)
	key := g.pick(secretKeys...)
	sep := g.pick("&", ";", "'", "\"", "?", "#", " ", "", "&&", "\t")
	next := g.pick("sslmode=require", "sslmode=bogus", "host=cd", "application_name=web", "connect_timeout=5", "", "x")
	before := g.pick("", "sslmode=require&", "application_name=web&", "user=app&")
	base := g.pick("postgres://app@"+g.hostPort()+"/app", "postgresql://"+g.hostPort()+"/app",
		"jdbc:postgresql://"+g.hostPort()+"/app", "sqlite:///app.db", "file:app.db", "prisma+postgres://"+g.hostPort()+"/")
	if strings.HasPrefix(base, "sqlite") || strings.HasPrefix(base, "file") {
		key = g.pick("_auth_pass", "password", key)
	}
	return single(key+"/"+how+"/sep="+sep, base+"?"+before+key+"="+p+sep+next)
}

func keywordValue(g *gen, pw string) Case {
	eq := g.pick("=", " = ", " =", "= ", "\t=\t", "  =  ")
	space := g.pick(" ", "  ", "\t", " \t ")
	key := g.pick("password", "sslpassword", "password", "pwd", "PASSWORD")
	var val, how string
	switch g.r.IntN(4) {
	case 0:
		val, how = "'"+strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw)+"'", "quoted"
	case 1:
		val, how = strings.NewReplacer(`\`, `\\`, ` `, `\ `, `'`, `\'`).Replace(pw), "escaped"
	case 2:
		val, how = pw, "raw"
	default:
		val, how = "'"+pw, "unterminated"
	}
	pairs := []string{"host" + eq + g.cfg.Host, "port" + eq + g.cfg.Port, "dbname" + eq + "app", key + eq + val}
	if g.r.IntN(2) == 0 {
		pairs = append(pairs, "sslmode"+eq+g.pick("require", "bogus"))
	}
	g.r.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
	return single(how+"/eq="+eq, strings.Join(pairs, space))
}

func jdbc(g *gen, pw string) Case {
	p, how := g.urlPassword(pw)
	base := "jdbc:postgresql://" + g.hostPort() + "/app"
	return single(how, g.pick(
		base+";user=app;password="+p,
		base+";password="+p+";ssl=true",
		base+"?user=app&password="+p,
		base+"?user=app&password="+p+"&ssl=maybe",
		base+"?password="+p+";ssl=true",
		base+"?user=app;password="+p,
		"jdbc:postgresql:app?user=app&password="+p,
	))
}

func forgottenQuestionMark(g *gen, pw string) Case {
	p, how := g.urlPassword(pw)
	base := "postgres://app@" + g.hostPort() + "/app"
	return single(how, g.pick(
		base+"&password="+p,
		base+"&sslmode=require&password="+p,
		base+"&password="+p+"&sslmode=require",
		base+"/&password="+p,
		"postgres://"+g.hostPort()+"/app&user=app&"+g.pick(secretKeys...)+"="+p,
	))
}

func adoNet(g *gen, pw string) Case {
	key := g.pick("Password", "password", "PWD", "Pwd", "Passwd")
	var val, how string
	switch g.r.IntN(4) {
	case 0:
		val, how = `"`+strings.ReplaceAll(pw, `"`, `""`)+`"`, "double-quoted"
	case 1:
		val, how = `'`+strings.ReplaceAll(pw, `'`, `''`)+`'`, "single-quoted"
	case 2:
		val, how = pw, "raw"
	default:
		val, how = `"`+pw, "unterminated"
	}
	sep := g.pick(";", "; ", " ;")
	eq := g.pick("=", " = ")
	pairs := []string{g.pick("Host", "Server", "Data Source") + eq + g.cfg.Host, "Port" + eq + g.cfg.Port,
		g.pick("Database", "Initial Catalog") + eq + "app", g.pick("Username", "User Id", "UID") + eq + "app", key + eq + val}
	g.r.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
	return single(how, strings.Join(pairs, sep)+g.maybe(sep))
}

func odbc(g *gen, pw string) Case {
	var val, how string
	switch g.r.IntN(3) {
	case 0:
		val, how = "{"+strings.ReplaceAll(pw, "}", "}}")+"}", "braced"
	case 1:
		val, how = pw, "raw"
	default:
		val, how = "{"+pw, "unterminated"
	}
	s := "Driver={PostgreSQL Unicode};Server=" + g.cfg.Host + ";Port=" + g.cfg.Port + ";Database=app;Uid=app;" +
		g.pick("Pwd", "PWD", "Password") + "=" + val + g.pick(";", "", ";SSLmode=require;")
	return single(how, s)
}

func jsonSecret(g *gen, pw string) Case {
	enc, _ := json.Marshal(pw)
	port := g.pick(g.cfg.Port, `"`+g.cfg.Port+`"`)
	engine := g.pick("postgres", "postgresql", "aurora-postgresql", "mysql", "")
	fields := []string{`"username":"app"`, `"password":` + string(enc), `"host":"` + g.cfg.Host + `"`,
		`"port":` + port, `"dbname":"app"`}
	if engine != "" {
		fields = append(fields, `"engine":"`+engine+`"`)
	}
	if g.r.IntN(4) == 0 {
		fields = append(fields, `"dbInstanceIdentifier":"prod-db"`)
	}
	g.r.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
	sep := g.pick(",", ", ", ",\n  ")
	s := "{" + strings.Join(fields, sep) + "}"
	shape := "valid/engine=" + engine
	switch g.r.IntN(6) {
	case 0:
		s, shape = strings.Replace(s, ",", " ", 1), "missing-comma"
	case 1:
		s, shape = strings.TrimSuffix(s, "}"), "unclosed"
	case 2:
		s, shape = strings.ReplaceAll(s, `"`, `'`), "python-dict"
	case 3:
		s, shape = `{"password":"`+pw+`","host":"`+g.cfg.Host+`"}`, "unescaped"
	}
	c := single(shape, s)
	if g.r.IntN(3) == 0 {
		c = Case{Shape: shape + "/file", File: s + "\n"}
	}
	return c
}

func yamlEnvLine(g *gen, pw string) Case {
	p, _ := g.urlPassword(pw)
	enc, _ := json.Marshal(pw)
	return single("line", g.pick(
		"password: "+pw,
		"password: "+string(enc),
		"  password: '"+pw+"'",
		"PGPASSWORD="+pw,
		"POSTGRES_PASSWORD="+pw,
		`DB_PASSWORD="`+pw+`"`,
		"export PGPASSWORD="+pw,
		"DATABASE_URL=postgres://app:"+p+"@"+g.hostPort()+"/app",
		"url: postgres://app:"+p+"@"+g.hostPort()+"/app",
		"DATABASE_URL: postgres://app:"+p+"@"+g.hostPort()+"/app",
		"secret_key = "+pw,
	))
}

func secretFile(g *gen, pw string) Case {
	p, _ := g.urlPassword(pw)
	url := "postgres://app:" + p + "@" + g.hostPort() + "/app"
	var content, shape string
	switch g.r.IntN(7) {
	case 0:
		content, shape = url+"\nPOSTGRES_PASSWORD="+pw+"\n", "url-then-env"
	case 1:
		content, shape = "POSTGRES_USER=app\nPOSTGRES_PASSWORD="+pw+"\nPOSTGRES_DB=app\n", "env-without-url"
	case 2:
		content, shape = "# app settings\nPOSTGRES_PASSWORD="+pw+"\nDATABASE_URL="+url+"\nDEBUG=1\n", "env-with-url"
	case 3:
		content, shape = "services:\n  db:\n    environment:\n      POSTGRES_PASSWORD: "+pw+"\n", "compose"
	case 4:
		content, shape = "DATABASE_URL="+url+"\nDATABASE_URL="+url+"x\n", "two-url-lines"
	case 5:
		content, shape = url+"\n"+pw+"\n", "url-then-bare-secret"
	default:
		content, shape = "export DATABASE_URL='"+url+"'\r\n", "export-line"
	}
	return Case{Shape: shape, File: content}
}

func sqlitePath(g *gen, pw string) Case {
	p, _ := g.urlPassword(pw)
	v := g.pick(
		"postgres://app:"+p+"@"+g.hostPort()+"/app",
		"sqlite:///app.db?_auth_user=u&_auth_pass="+p,
		"file:app.db?_auth_user=u&_auth_pass="+p,
		"app:"+pw+"@"+g.hostPort()+"/app",
		"host="+g.cfg.Host+" password="+pw,
		"data/app.db?password="+p,
		"sqlite:///data/app.db?password="+p+"&mode=bogus",
	)
	return Case{Shape: "SQLITE_PATH", Env: map[string]string{"SQLITE_PATH": v}}
}

func pgVariables(g *gen, pw string) Case {
	p, _ := g.urlPassword(pw)
	env := map[string]string{"PGHOST": g.cfg.Host, "PGPORT": g.cfg.Port, "PGDATABASE": "app", "PGUSER": "app"}
	shape := g.pick("PGPASSWORD", "PGSSLPASSWORD", "bad-host", "url-in-PGHOST", "kv-in-PGOPTIONS", "template-host")
	switch shape {
	case "PGPASSWORD":
		env["PGPASSWORD"] = pw
	case "PGSSLPASSWORD":
		env["PGSSLPASSWORD"] = pw
		env["PGSSLMODE"] = "require"
	case "bad-host":
		env["PGPASSWORD"] = pw
		env["PGHOST"] = "db example"
	case "url-in-PGHOST":
		env["PGHOST"] = "postgres://app:" + p + "@" + g.hostPort() + "/app"
	case "kv-in-PGOPTIONS":
		env["PGPASSWORD"] = pw
		env["PGOPTIONS"] = "password=" + pw
	case "template-host":
		env["PGPASSWORD"] = pw
		env["PGHOST"] = "${DB_HOST}"
	}
	return Case{Shape: shape, Env: env}
}

func foreignAndTemplate(g *gen, pw string) Case {
	p, _ := g.urlPassword(pw)
	return single("foreign", g.pick(
		"mysql://app:"+p+"@"+g.hostPort()+"/app",
		"redis://default:"+p+"@"+g.hostPort(),
		"mongodb+srv://app:"+p+"@cluster0.example.net/app",
		"prisma+postgres://accelerate.prisma-data.net/?api_key="+p,
		"postgres://app:"+p+"@"+g.cfg.Host+":${PORT}/app",
		"postgres://${USER}:"+p+"@"+g.hostPort()+"/app",
		"postgres://app:"+p+"@"+g.hostPort()+"/<dbname>",
		"posgresql://app:"+p+"@"+g.hostPort()+"/app",
		"user:"+p+"@"+g.hostPort()+"/app",
		"http://app:"+p+"@"+g.hostPort()+"/",
	))
}

func pastedAndQuoted(g *gen, pw string) Case {
	p, _ := g.urlPassword(pw)
	url := "postgres://app:" + p + "@" + g.hostPort() + "/app"
	return single("pasted", g.pick(
		`"`+url,
		url+`"`,
		"'"+url+"'",
		`"'`+url+`'"`,
		"export DATABASE_URL='"+url+"'",
		"DATABASE_URL="+url,
		"set DATABASE_URL="+url,
		"ENV DATABASE_URL "+url,
		url+"\nsecond line",
		url+"\x00",
		"\ufeff"+url+"\r\n",
		"“"+url+"”",
		url+" # production",
	))
}
