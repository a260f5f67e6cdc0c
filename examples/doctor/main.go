// Command doctor explains how the current environment resolves to a
// database under dbfallback: each source it looked at, what the source held
// (passwords masked), the normalizations applied, every problem with its
// hint, and the chain of databases Open would try.
//
// It also shows the snapshot directory (DBFALLBACK_SNAPSHOT_DIR): whether
// it survives a restart, and every snapshot with whether a restore would
// take it. It also lists rows that SQLite fallback files hold and the primary does
// not (written while the primary was not in use; see dbfallback.Stranded),
// and, once they are merged by hand, marks them merged.
//
// Usage:
//
//	go run ./examples/doctor                       # explain the current environment
//	go run ./examples/doctor -url '…'              # check one value instead
//	go run ./examples/doctor -merged /data/app.db  # stop reporting that file's rows
//
// The exit status is 0 when a valid primary database is configured and 1
// when only a fallback is left (2 for bad flags). With -merged it is 0
// when the file was marked and 1 when it could not be.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/dbfallback/dbfallback"
)

func main() {
	os.Exit(run(os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// run is main without the process: flags, environment and output are
// passed in, the exit status returned.
func run(args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "check this value instead of the environment")
	merged := fs.String("merged", "", "mark the rows left in this SQLite fallback file as merged into the primary")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *merged != "" {
		if err := dbfallback.MarkMerged(context.Background(), *merged); err != nil {
			fmt.Fprintln(stderr, "doctor:", err)
			return 1
		}
		fmt.Fprintf(stdout, "Marked the rows left in %s as merged: Open no longer reports them.\n", *merged)
		return 0
	}
	opts := []dbfallback.Option{dbfallback.WithLookupEnv(lookup)}
	checkOne := false
	fs.Visit(func(f *flag.Flag) { checkOne = checkOne || f.Name == "url" })
	if checkOne {
		// Only the given value counts: hide the URL variables and libpq's.
		opts = []dbfallback.Option{
			dbfallback.WithURL(*url),
			dbfallback.WithEnvVars(),
			dbfallback.WithLookupEnv(func(k string) (string, bool) {
				if strings.HasPrefix(k, "PG") {
					return "", false
				}
				return lookup(k)
			}),
		}
	}
	r, err := dbfallback.Resolve(context.Background(), opts...)
	if err != nil {
		fmt.Fprintln(stderr, "doctor:", err)
		return 1
	}
	report(stdout, r, dbfallback.SQLiteEngine())
	stranded, err := dbfallback.FindStranded(context.Background(), opts...)
	reportStranded(stdout, stranded, err)
	snaps, err := dbfallback.InspectSnapshots(context.Background(), opts...)
	reportSnapshots(stdout, snaps, err)
	if r.Primary.IsZero() {
		return 1
	}
	return 0
}

// report prints what r found and the chain Open would walk; engine is the
// build's SQLite engine (dbfallback.SQLiteEngine), "" when it has none.
func report(w io.Writer, r dbfallback.Resolution, engine string) {
	fmt.Fprintln(w, "Primary database sources (the first one holding a value decides):")
	for _, s := range r.Sources {
		switch {
		case !s.Found:
			fmt.Fprintf(w, "  %-18s not set\n", s.Name)
			continue
		case s.Chosen:
			fmt.Fprintf(w, "  %-18s %s\n  %-18s -> valid, used: %s\n", s.Name, s.Detail, "", s.Target)
		case errors.Is(s.Err, dbfallback.ErrShadowed):
			fmt.Fprintf(w, "  %-18s set, not used: an earlier source takes precedence\n", s.Name)
			continue
		default:
			fmt.Fprintf(w, "  %-18s %s\n", s.Name, s.Detail)
			explain(w, s.Err)
		}
		for _, n := range s.Target.Notes {
			fmt.Fprintf(w, "  %-18s    note: %s\n", "", n)
		}
	}
	if r.Primary.IsZero() {
		fmt.Fprintf(w, "\nNo usable primary: %s.\n", r.Reason())
	} else if r.InSpace() && r.Primary.Dialect == dbfallback.Postgres {
		for _, h := range r.Primary.Hosts {
			if !h.IsSocket() && h.Port != 80 && h.Port != 443 && h.Port != 8080 {
				fmt.Fprintf(w, "\nWarning: this is Hugging Face Space %s, which allows outbound connections only to ports 80, 443 and 8080; port %d will time out.\n", r.SpaceID, h.Port)
				break
			}
		}
	}

	fmt.Fprintln(w, "\nSQLite fallback locations (the first usable one is used):")
	for _, p := range r.Paths {
		state := "usable"
		if p.Err != nil {
			state = "skipped: " + p.Err.Error()
		} else if !p.Persistent {
			state += ", ephemeral (data may vanish on restart)"
		} else {
			state += ", persistent"
		}
		fmt.Fprintf(w, "  %-14s %s: %s\n", p.Origin, p.Path, state)
	}

	fmt.Fprintln(w, "\nDatabases Open would try, in order (PreferPrimary):")
	for i, t := range dbfallback.PreferPrimary.Candidates(r) {
		kind := "primary"
		switch {
		case t.Memory:
			kind = "SQLite in memory, last resort"
		case i > 0 || r.Primary.IsZero():
			kind = "SQLite file"
		}
		if r.Ephemeral(t) {
			kind += ", ephemeral"
		}
		if engine == "" && t.Dialect == dbfallback.SQLite {
			kind += ", fails in this build"
		}
		fmt.Fprintf(w, "  %d. %s (%s)\n", i+1, t, kind)
	}
	if engine == "" {
		fmt.Fprintln(w, "  This build has no SQLite engine (built without cgo and without importing github.com/dbfallback/dbfallback/puresqlite):")
		fmt.Fprintln(w, "  Open fails with ErrNoSQLiteEngine where it would use SQLite, touching no SQLite location.")
	}
}

// reportStranded lists rows left in fallback files.
func reportStranded(w io.Writer, found []dbfallback.Stranded, err error) {
	fmt.Fprintln(w, "\nRows left in SQLite fallback files (written while the primary was not in use):")
	if len(found) == 0 && err == nil {
		fmt.Fprintln(w, "  none")
	}
	for _, s := range found {
		fmt.Fprintf(w, "  %s: %d rows, written between %s and %s\n", s.Path, s.Rows,
			s.Since.UTC().Format(time.RFC3339), s.LastWrite.UTC().Format(time.RFC3339))
		for _, t := range s.Tables {
			if t.AfterRowID >= 0 {
				fmt.Fprintf(w, "    %s: %d rows (rowid > %d)\n", t.Name, t.Rows, t.AfterRowID)
			} else {
				fmt.Fprintf(w, "    %s: %d more rows\n", t.Name, t.Rows)
			}
			if t.Changed {
				fmt.Fprintf(w, "    %s: the row with rowid %d, its last before the fallback, was deleted or changed: rows up to rowid %d may be new too; compare them with the primary\n", t.Name, t.AfterRowID, t.AfterRowID)
			}
		}
		fmt.Fprintf(w, "    merge them into the primary by hand (see the README), then run: doctor -merged %s\n", s.Path)
	}
	if err != nil {
		fmt.Fprintf(w, "  could not read every file: %v\n", err)
	}
}

// reportSnapshots shows the snapshot directory's checks and contents.
func reportSnapshots(w io.Writer, rep dbfallback.SnapshotReport, err error) {
	fmt.Fprintln(w, "\nSnapshots of the SQLite file to durable storage (DBFALLBACK_SNAPSHOT_DIR):")
	if rep.Dir == "" && rep.Off == "" {
		fmt.Fprintln(w, "  none configured: a SQLite file in an ephemeral location is lost when the container restarts")
		return
	}
	if rep.Dir != "" {
		fmt.Fprintf(w, "  directory %s, for %s\n", rep.Dir, rep.Database)
	}
	for _, p := range []string{rep.Off, rep.Warning, rep.Unwritable} {
		if p != "" {
			fmt.Fprintf(w, "  problem: %s\n", p)
		}
	}
	if err != nil {
		fmt.Fprintf(w, "  could not list it: %v\n", err)
	}
	if rep.Off == "" && len(rep.Snapshots) == 0 && err == nil {
		fmt.Fprintln(w, "  no snapshot yet")
	}
	restores := ""
	for _, s := range rep.Snapshots {
		state := "verified"
		if s.Problem != "" {
			state = "SKIPPED by a restore: " + s.Problem
		} else if restores == "" {
			restores = s.File
			state += ", the one a restore takes"
		}
		if s.Stranded {
			state += ", holds rows written while the primary was down"
		}
		if s.File == "" {
			fmt.Fprintf(w, "  %s: %s\n", s.Manifest, state)
			continue
		}
		fmt.Fprintf(w, "  %s  %s  writer %s  %d bytes: %s\n", s.Taken.UTC().Format(time.RFC3339), s.File, s.Writer, s.Size, state)
	}
	if len(rep.Writers) > 1 {
		fmt.Fprintf(w, "  warning: %d writers (%s): each process keeps its own snapshots; if they ran at the same time (two replicas), a restore takes one writer's rows only: run one replica, or use PrimaryOnly with a shared PostgreSQL\n",
			len(rep.Writers), strings.Join(rep.Writers, ", "))
	}
}

// explain prints a rejection with its code and hint.
func explain(w io.Writer, err error) {
	var ve *dbfallback.ValidationError
	if errors.As(err, &ve) {
		fmt.Fprintf(w, "  %-18s -> rejected [%s]: %s\n", "", ve.Code, ve.Reason)
		fmt.Fprintf(w, "  %-18s    hint: %s\n", "", ve.Hint)
		return
	}
	fmt.Fprintf(w, "  %-18s -> not usable: %v\n", "", err)
}
