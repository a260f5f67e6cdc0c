package dbfallback

import "strings"

// validator_pooler.go: what Validate does for a PostgreSQL URL that goes
// through a transaction pooler. The URL says so with Prisma's
// pgbouncer=true (or pgx's default_query_exec_mode=exec), or names a
// pooler that its provider documents as a transaction pooler without
// prepared statements. Nothing else can tell: a pooler passes on the
// server's own startup messages, and a port proves nothing (PgBouncer's
// default is 6432, Supabase's pooler is on 6543, and Railway's proxy
// serves PostgreSQL itself on 6543).

// transactionPoolers are the poolers Validate knows by host and port, in
// transaction mode and without named prepared statements, by their
// provider's documentation. A URL naming one gets pooler mode (see
// pg_pooler.go) as if it said pgbouncer=true, unless it sets
// default_query_exec_mode itself (default_query_exec_mode=cache_statement
// is the way out; Prisma's pgbouncer=false is its default, not a choice,
// and is removed from the DSN, which must validate to the same Target).
var transactionPoolers = []struct {
	hostSuffix string // lower case, with its leading dot
	port       string
	name       string
}{
	// https://supabase.com/docs/guides/troubleshooting/disabling-prepared-statements-qL8lEL:
	// "Supavisor in transaction mode [port 6543] does not [support
	// prepared statements]"; port 5432 of the same host is its session
	// mode, which does.
	{hostSuffix: ".pooler.supabase.com", port: "6543", name: "Supabase's transaction pooler (port 6543)"},
}

// poolerParams applies the pooler rules to a URL's settings, once every
// setting is read:
//
//   - a known transaction pooler without default_query_exec_mode (or
//     pgbouncer=true, which sets it) gets default_query_exec_mode=exec;
//   - in pooler mode, a search_path that came from Prisma's schema (or
//     JDBC's currentSchema) is removed: PgBouncer refuses search_path as
//     a connection setting ("unsupported startup parameter", which would
//     send Open to the fallback), and a transaction pooler cannot keep a
//     SET between transactions. The note says to set it on the role. A
//     search_path the URL gives as such is kept: PgBouncer 1.20 and later
//     can be told to accept it (track_extra_parameters).
func (v *validation) poolerParams(c *pgCore, settings []setting) {
	keys := map[string]bool{}
	for _, s := range settings {
		keys[s.key] = true
	}
	if _, set := c.params["default_query_exec_mode"]; !set {
		host := strings.ToLower(c.host)
		for _, p := range transactionPoolers {
			if strings.HasSuffix(host, p.hostSuffix) && c.port == p.port && !strings.Contains(host, ",") {
				c.set("default_query_exec_mode", "exec")
				v.note("set default_query_exec_mode=exec, as pgbouncer=true would: %s does not support prepared statements", p.name)
				break
			}
		}
	}
	switch c.params["default_query_exec_mode"] {
	case "exec", "simple_protocol":
	default:
		return
	}
	path, has := c.params["search_path"]
	if !has || keys["search_path"] || !(keys["schema"] || keys["currentSchema"]) {
		return
	}
	delete(c.params, "search_path")
	if path == "public" {
		v.note("removed the schema setting: through a transaction pooler it cannot be sent when connecting (PgBouncer refuses search_path), and public is the default search path")
		return
	}
	v.note("removed the schema setting %s: through a transaction pooler it cannot be sent when connecting (PgBouncer refuses search_path); set it on the role instead: ALTER ROLE … SET search_path = %s", safeValue(path), safeValue(path))
}
