package dbfallback

// This file is not part of the library. .ci/run overlays it into the
// library's package (go test -overlay) for the run of the library's tests
// on the pure-Go SQLite engine, so that the library's go.mod never
// requires this module, nor modernc.org/sqlite with it.

import _ "github.com/dbfallback/dbfallback/puresqlite"
