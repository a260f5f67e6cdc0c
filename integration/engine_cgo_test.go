//go:build cgo && !dbfallback_puresqlite

package integration

// wantEngine is the SQLite engine of this build.
const wantEngine = "mattn/go-sqlite3"
