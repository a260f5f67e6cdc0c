//go:build !cgo || dbfallback_puresqlite

package integration

// In a build without cgo (.ci/run's second run), the tools run on the
// pure-Go SQLite engine, which a program gets by this import.
import _ "github.com/dbfallback/dbfallback/puresqlite"

// wantEngine is the SQLite engine of this build.
const wantEngine = "modernc.org/sqlite"
