// Package puresqlite gives dbfallback a SQLite engine written in Go
// (modernc.org/sqlite), for programs built without cgo. Import it for its
// side effect:
//
//	import _ "github.com/dbfallback/dbfallback/puresqlite"
//
// and build with CGO_ENABLED=0: static binaries, distroless and scratch
// images, cross-compiles. dbfallback then keeps every SQLite guarantee it
// has with go-sqlite3: WAL, immediate transactions, the in-process write
// gate, the in-memory last resort that lives as long as the DB, damaged
// files moved aside, busy and locked errors classified for Tx and
// IsRetryable. The public API is the same; errors.As reaches modernc's
// *sqlite.Error where go-sqlite3's sqlite3.Error would be.
//
// In a cgo build this package does nothing and links nothing: dbfallback
// runs on go-sqlite3, whether or not the program imports it. The build tag
// dbfallback_puresqlite selects this engine in a cgo build too (it is how
// the pure-Go engine is tested with the race detector).
//
// It is a module of its own so that modernc.org/sqlite, which needs Go
// 1.26, stays out of the library's go.mod: programs that never import it
// neither download nor vendor it. Keep its version in step with
// dbfallback's: the two share an internal interface.
//
// Differences a program may notice from go-sqlite3: the driver's own
// errors (*sqlite.Error, whose Code method is the extended result code);
// the go-sqlite3 DSN parameters _loc (read as modernc's _timezone, which
// also converts times written) and _auth, _auth_user, _auth_pass,
// _auth_crypt and _auth_salt (SQLite's user authentication extension,
// which modernc.org/sqlite lacks: a URL with them fails to open); times
// are written as go-sqlite3 writes them ("2006-01-02
// 15:04:05.999999999-07:00"), so a file moves between the two engines.
package puresqlite
