// Package dbfallback gives a Go service a database that never fails to
// start: PostgreSQL (through jackc/pgx v5) when the configured URL is valid
// and the server answers, SQLite on a writable path when it is not, and
// always a clear, redacted account of which database is live and why.
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
// fails only when ctx is done or an init hook reports a bug (an error
// [IsUnavailable] does not recognise). Under a ctx deadline it keeps part
// of the time for the fallback, so a silent primary still leaves a
// database in time. The returned [DB] embeds *sql.DB.
//
// # The fallback chain
//
// The primary comes from the first source holding a value: an invalid
// DATABASE_URL is reported, never silently replaced by PGHOST. The SQLite
// file lives at the first usable location of [WithSQLitePath] or
// SQLITE_PATH, /data/<name> (Hugging Face persistent storage), ./data/<name>
// and $TMPDIR/<name>, each usable one tried in turn; FUSE and network
// filesystems are skipped because SQLite's locking is unsafe there. An
// in-memory database is the last resort. Every location is reported as
// ephemeral unless the operator vouches for it ([WithPersistent], or an
// explicit path).
//
// # SQLite files are never lost
//
// A directory, named pipe, socket or device is never opened as a
// database; a file that is not SQLite is left untouched and skipped; a
// damaged SQLite database is moved aside under a name no other move can
// take. Once a file is in use, a background check reads all its pages and
// [DB.Health] reports what it found. Rows a fallback file takes while the
// primary is down are reported, once Open is back on the primary, until
// [MarkMerged] (see [Stranded]).
//
// # Snapshots to durable storage
//
// Where the local disk vanishes on restart, [WithSnapshotDir] (or
// DBFALLBACK_SNAPSHOT_DIR) names a durable directory, such as a mounted
// bucket: while a SQLite file is open, verified snapshots of it are
// written there when the data changed, and Open restores the newest one
// when the local file is missing or damaged. [DB.Health] reports their age
// and errors; [DB.Ephemeral] is false while they succeed.
//
// # Transactions and sessions
//
// [DB.Tx] runs a function in a transaction that is SERIALIZABLE on both
// dialects, so code that is correct on the SQLite fallback does not lose
// updates on PostgreSQL; it retries conflicts ([IsRetryable]) within a
// 30s budget and reports a commit whose outcome is unknown with
// [ErrCommitUnknown]. [Middleware] gives each HTTP request a [Session]
// that holds a pool connection only while it needs one and closes what
// the handler left open; [Session.Conn] pins one connection when a
// handler needs it. On SQLite every wait for the write lock is bounded
// by the busy timeout, once.
//
// # Several replicas, failover and poolers
//
// A service with more than one replica should use [PrimaryOnly]: each
// replica's SQLite fallback would hold different data. A URL may list
// several hosts with target_session_attrs (read-write opens the primary
// wherever it is listed); the connect timeout is then shared between the
// hosts. When a primary fails over, dead connections are dropped, a
// connection to a server that has turned read-only is closed before its
// next use, and new connections try first the host the last one reached
// and last a host whose latest attempt hung;
// [DB.Health] names the server that answered. Behind a transaction pooler
// (pgbouncer=true, or Supabase's pooler, which [Validate] recognises)
// prepared statements are unnamed, so they work through PgBouncer, and
// [IsPermanent] calls the pooler's "server down" errors transient.
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
// # Builds with and without cgo
//
// With cgo (the default where a C compiler exists) SQLite runs on
// mattn/go-sqlite3. A program built with CGO_ENABLED=0 (static binaries,
// distroless and scratch images, cross-compiles) gets the same guarantees
// from a pure-Go engine by importing
// github.com/dbfallback/dbfallback/puresqlite for its side effect; that
// module, not this one, requires modernc.org/sqlite. Without either,
// PostgreSQL works and every SQLite candidate fails with
// [ErrNoSQLiteEngine]. [SQLiteEngine] names the engine of the build.
//
// # Hooks and other tools
//
// [WithOpenDB] puts an instrumentation wrapper (otelsql and the like)
// around the pool's connector; [WithPgxConfig] reaches pgx's
// configuration (a tracer, a dialer) and [WithPgxAfterConnect] each new
// PostgreSQL connection (custom types). [Dialect.DriverName] gives the
// name goose, sqlx and golang-migrate expect. Closing the embedded
// *sql.DB, as those tools do, releases what [DB.Close] releases.
//
// # Example
//
//	db, err := dbfallback.Open(ctx, dbfallback.WithLogger(slog.Default()))
//	if err != nil {
//		return err // only when ctx is done or an init hook has a bug
//	}
//	defer db.Close()
//	if db.Fallback() {
//		log.Printf("serving from %s: %s", db.Target(), db.Reason())
//	}
//	_, err = db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS notes (body TEXT)")
//
// Run examples/doctor to see how the current environment resolves.
package dbfallback
