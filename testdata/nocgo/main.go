// Command nocgo is what TestBuildWithoutCgo builds with CGO_ENABLED=0 and
// without puresqlite: a program that opens DATABASE_URL with the default
// strategy and says what it got.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/dbfallback/dbfallback"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fmt.Printf("engine=%q\n", dbfallback.SQLiteEngine())
	db, err := dbfallback.Open(ctx, dbfallback.WithConnectTimeout(2*time.Second))
	if err != nil {
		fmt.Println("error:", err)
		fmt.Println("no SQLite engine:", errors.Is(err, dbfallback.ErrNoSQLiteEngine))
		fmt.Println("no database:", errors.Is(err, dbfallback.ErrNoDatabase))
		os.Exit(1)
	}
	defer db.Close()
	var one int
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		fmt.Println("query:", err)
		os.Exit(2)
	}
	fmt.Printf("dialect=%s fallback=%t select=%d\n", db.Dialect(), db.Fallback(), one)
}
