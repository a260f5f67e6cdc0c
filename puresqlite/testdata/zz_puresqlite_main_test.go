package main

// This file is not part of the doctor example. .ci/run overlays it into
// examples/doctor (go test -overlay) for the run without cgo, as it
// overlays zz_puresqlite_test.go into the library's package: the doctor
// reads SQLite files, which a build without cgo can only do on the pure-Go
// engine, and the library's go.mod must not require this module.

import _ "github.com/dbfallback/dbfallback/puresqlite"
