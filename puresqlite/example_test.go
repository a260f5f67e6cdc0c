//go:build !cgo || dbfallback_puresqlite

package puresqlite_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dbfallback/dbfallback"
	_ "github.com/dbfallback/dbfallback/puresqlite"
)

// A program built with CGO_ENABLED=0 imports puresqlite for its side
// effect; the rest is the same as with cgo.
func Example() {
	dir, _ := os.MkdirTemp("", "puresqlite-example")
	defer os.RemoveAll(dir)
	db, err := dbfallback.Open(context.Background(),
		dbfallback.WithSQLitePath(filepath.Join(dir, "app.db")),
		dbfallback.WithStrategy(dbfallback.SQLiteOnly))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	var mode string
	db.QueryRow("PRAGMA journal_mode").Scan(&mode)
	fmt.Println(dbfallback.SQLiteEngine(), db.Dialect(), mode)
	// Output: modernc.org/sqlite sqlite wal
}
