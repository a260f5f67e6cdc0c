// Package dbfallback gives a Go service a database that never fails to
// start: PostgreSQL (through jackc/pgx v5) when the configured URL is valid
// and the server answers, SQLite (through mattn/go-sqlite3) on a writable
// path when it is not, and always a clear, redacted account of which
// database is live and why.
//
// # The verbs
//
// [Validate] checks one database URL. It is pure (no environment, files or
// network), never panics, fixes harmless noise with a note (quotes,
// whitespace, scheme aliases, SQLAlchemy and JDBC forms, parameters meant
// for Prisma, Rails or pgxpool, AWS JSON secrets) and rejects the rest
// with a *[ValidationError] that carries a [Code] and a hint.
//
// [Resolve] reads the configuration without connecting: [WithURL], then
// DATABASE_URL, DATABASE_URL_FILE (a Docker or Kubernetes secret) and the
// libpq PG* variables for the primary; then a writable SQLite location for
// the fallback.
//
// [Open] resolves, then opens the first candidate of a [Strategy] that
// answers within its connect timeout, tunes it for its dialect, runs the
// [WithInit] hooks, and logs one line saying which database is live, why,
// and whether its data is ephemeral. With the default [PreferPrimary] it
// fails only when ctx is done. The returned [DB] embeds *sql.DB.
//
// # The fallback chain
//
// The primary comes from the first source holding a value: an invalid
// DATABASE_URL is reported, never silently replaced by PGHOST. The SQLite
// file lives at the first usable location of [WithSQLitePath] or
// SQLITE_PATH, /data/<name> (Hugging Face persistent storage), ./data/<name>
// and $TMPDIR/<name>; FUSE and network filesystems are skipped because
// SQLite's locking is unsafe there. An in-memory database is the last
// resort. Every location is reported as ephemeral unless the operator
// vouches for it ([WithPersistent], or an explicit path).
//
// # Secrets
//
// No error, note, fmt verb, slog attribute, JSON or text encoding of any
// type of this package, *[DB] included, contains a password or the value of
// a secret-bearing parameter: a [Target] keeps them behind an unexported
// pointer that no printer follows ([Target.Password], [Target.Secret] and
// [Target.DSN] give them to the driver), and a rejected value is shown
// only redacted, masked to the end of the line where the redactor cannot
// tell where a secret ends.
//
// # Example
//
//	db, err := dbfallback.Open(ctx, dbfallback.WithLogger(slog.Default()))
//	if err != nil {
//		return err // only when ctx is done
//	}
//	defer db.Close()
//	if db.Fallback() {
//		log.Printf("serving from %s: %s", db.Target(), db.Reason())
//	}
//	_, err = db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS notes (body TEXT)")
//
// Run examples/doctor to see how the current environment resolves.
package dbfallback
