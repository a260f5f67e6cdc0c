package dbfallback

// DriverName returns the name Go's database tools key this dialect on:
// "postgres" or "sqlite3", the driver names of lib/pq and go-sqlite3 that
// goose (SetDialect, NewProvider), sqlx (NewDb, BindType: $1 or ?) and
// golang-migrate (its database URL schemes) expect, whichever driver runs
// underneath: pgx for PostgreSQL, and for SQLite go-sqlite3 or the pure-Go
// engine, which registers itself as "sqlite", a name goose's NewProvider
// and sqlx's BindType do not know. It is "" for any other dialect.
//
//	sqlx.NewDb(db.DB, db.Dialect().DriverName())
//	goose.NewProvider(goose.Dialect(db.Dialect().DriverName()), db.DB, migrations)
func (d Dialect) DriverName() string {
	switch d {
	case Postgres:
		return "postgres"
	case SQLite:
		return "sqlite3"
	}
	return ""
}
