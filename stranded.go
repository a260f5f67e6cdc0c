package dbfallback

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// stranded.go keeps rows written to a SQLite fallback from vanishing from
// view once the primary is back. SQLite keeps no row times, so when Open
// lands on a SQLite file as a fallback it writes, next to the file, a small
// JSON record (<file>.dbfallback.json; a file of its own, so that no
// schema-diffing migration tool ever sees it) of when the fallback began
// and, for each table, the largest rowid at that moment. When Open later
// lands on the primary, it counts, on a read-only connection that sees the
// write-ahead log, the rows above those marks, and reports them until the
// operator merges them and calls MarkMerged. The user's data is only read.

// strandedSuffix names the record next to a SQLite fallback database.
const strandedSuffix = ".dbfallback.json"

// strandedTimeout bounds the counting of stranded rows during Open.
const strandedTimeout = 2 * time.Second

// Stranded describes rows a SQLite fallback file holds that were written
// while the primary was not in use: rows the primary does not have.
// SQLite keeps no row history, so rows are counted by rowid: new rows are
// counted, changes to rows that existed before the fallback began are not.
type Stranded struct {
	// Path is the SQLite file.
	Path string `json:"path"`
	// Since is when Open first used the file as a fallback after it was
	// last marked merged.
	Since time.Time `json:"since"`
	// LastWrite is when the file (or its write-ahead log) last changed,
	// by its modification time; never before Since.
	LastWrite time.Time `json:"last_write"`
	// Tables lists the tables holding such rows, by name.
	Tables []StrandedTable `json:"tables"`
	// Rows is the sum of Tables' rows.
	Rows int64 `json:"rows"`
}

// StrandedTable counts one table's stranded rows.
type StrandedTable struct {
	// Name is the table's name.
	Name string `json:"name"`
	// Rows counts the rows written since the fallback began.
	Rows int64 `json:"rows"`
	// AfterRowID is the largest rowid the table had when the fallback
	// began: the stranded rows are those with a larger rowid (for an
	// INTEGER PRIMARY KEY table, a larger id). -1 when the table has no
	// rowid (WITHOUT ROWID): Rows is then how many more rows it has than
	// when the fallback began (all of them for a table created since).
	AfterRowID int64 `json:"after_rowid"`
	// Changed reports that the row that had rowid AfterRowID when the
	// fallback began was deleted or changed since. In a table without
	// AUTOINCREMENT, SQLite then gives the next insert that rowid again,
	// so rows at or below AfterRowID may be new too (or the file was
	// replaced): compare them with the primary by hand. Always false for
	// tables without a rowid.
	Changed bool `json:"changed,omitempty"`
}

// String summarises s in one line, for logs and reasons.
func (s Stranded) String() string {
	var tables []string
	for _, t := range s.Tables {
		entry := fmt.Sprintf("%s: %d", t.Name, t.Rows)
		if t.Changed {
			entry += fmt.Sprintf(", and rows up to rowid %d changed", t.AfterRowID)
		}
		tables = append(tables, entry)
	}
	since := s.Since.UTC().Format(time.RFC3339)
	return fmt.Sprintf("SQLite fallback file %s holds %d rows written while the primary was not in use (%s), between %s and %s; merge them into the primary by hand, then call dbfallback.MarkMerged, run the doctor with -merged, or set %s=%s@%s, to stop this report",
		s.Path, s.Rows, strings.Join(tables, ", "), since, s.LastWrite.UTC().Format(time.RFC3339), mergedEnv, s.Path, since)
}

// reportable reports whether s holds anything the primary does not have.
func (s Stranded) reportable() bool {
	for _, t := range s.Tables {
		if t.Rows > 0 || t.Changed {
			return true
		}
	}
	return false
}

// findStranded reports, for each path other than skip, the rows stranded
// there. Paths without an open period are passed over quickly (one stat).
func findStranded(ctx context.Context, paths []string, skip string) ([]Stranded, []error) {
	var out []Stranded
	var errs []error
	seen := map[string]bool{skip: true}
	for _, p := range paths {
		if seen[p] {
			continue
		}
		seen[p] = true
		type counted struct {
			s  Stranded
			ok bool
		}
		c, err := withinCtx(ctx, func() (counted, error) {
			s, ok, err := countStranded(ctx, p)
			return counted{s, ok}, err
		})
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("dbfallback: count rows left in %s: %w", p, err))
		case c.ok && c.s.reportable():
			out = append(out, c.s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, errs
}

// FindStranded resolves the configuration (see [Resolve]) and reports the
// rows each SQLite fallback location holds that were written while the
// primary was not in use, as [Open] does when it lands on the primary. It
// opens the files read-only and never connects to the primary. The error
// is non-nil when ctx is done or a file could not be read.
func FindStranded(ctx context.Context, opts ...Option) ([]Stranded, error) {
	o := buildOptions(opts)
	r, err := resolve(ctx, &o)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, p := range r.Paths {
		paths = append(paths, p.Path)
	}
	skip := ""
	if r.Primary.Dialect == SQLite {
		skip = r.Primary.Path
	}
	out, errs := findStranded(ctx, paths, skip)
	return out, errors.Join(append(errs, ctx.Err())...)
}

// MarkMerged tells dbfallback that the rows written to the SQLite file at
// path while it served as a fallback are now in the primary (or are not
// wanted): Open, Health and FindStranded stop reporting them. The next time
// the file serves as a fallback, a new period begins. It writes only the
// record next to the file, never the database. It returns an error when
// no fallback period is recorded for path.
//
// Where no code or shell can run next to the file, set
// DBFALLBACK_MERGED=<path>@<since> (since as the report gives it; several
// entries separated by commas): the next Open that lands on the primary
// marks that period merged.
func MarkMerged(ctx context.Context, path string) error {
	_, err := withinCtx(ctx, func() (struct{}, error) {
		rec, err := readStrandedRecord(path)
		if err != nil {
			return struct{}{}, err
		}
		if !rec.open() {
			return struct{}{}, fmt.Errorf("no rows left by a fallback are recorded for %s", path)
		}
		now := time.Now().UTC()
		rec.MergedAt = &now
		return struct{}{}, writeStrandedRecord(path, rec)
	})
	if err != nil {
		return fmt.Errorf("dbfallback: mark %s merged: %w", path, err)
	}
	return nil
}

// trackStranded runs after Open chose db: on a SQLite fallback file it
// starts a fallback period; on the primary it looks for rows left in
// fallback files, and reports them in Reason, Health and a log line.
func (db *DB) trackStranded(ctx context.Context, o *options, r Resolution) {
	sctx, cancel := context.WithTimeout(ctx, strandedTimeout)
	defer cancel()
	t := db.target
	if db.fallback {
		if t.Dialect == SQLite && !t.Memory {
			if err := recordFallbackStart(sctx, db.DB, t.Path, o.now()); err != nil {
				db.addReason(fmt.Sprintf("could not record that %s took writes as a fallback (%v): rows written now will not be reported when the primary returns", t.Path, err))
			}
		}
		return
	}
	var paths []string
	for _, p := range r.Paths {
		paths = append(paths, p.Path)
	}
	skip := ""
	if t.Dialect == SQLite {
		skip = t.Path
	}
	found, errs := findStranded(sctx, paths, skip)
	for _, err := range errs {
		db.addReason(err.Error())
	}
	found = db.applyMergedEnv(ctx, o, found)
	db.stranded = found
	for _, s := range found {
		db.addReason(s.String())
		var tables []string
		for _, tb := range s.Tables {
			tables = append(tables, fmt.Sprintf("%s=%d", tb.Name, tb.Rows))
		}
		db.logger.Warn("dbfallback: a fallback file holds rows written while the primary was not in use",
			"path", s.Path, "rows", s.Rows, "tables", strings.Join(tables, " "),
			"since", s.Since.UTC().Format(time.RFC3339), "last_write", s.LastWrite.UTC().Format(time.RFC3339),
			"hint", "merge them into the primary by hand, then call dbfallback.MarkMerged or run the doctor with -merged")
	}
}

// mergedEnv names the variable through which an operator without a shell
// (a Hugging Face Space, say) marks a fallback period merged.
const mergedEnv = "DBFALLBACK_MERGED"

// applyMergedEnv marks merged the periods DBFALLBACK_MERGED names and
// returns the others. Each comma-separated entry is <path>@<since>, since
// as reported (RFC 3339, to the second): naming the period, not just the
// file, keeps a variable left set from hiding a later outage's rows. The
// time may carry fractions of a second, as the health JSON gives it.
func (db *DB) applyMergedEnv(ctx context.Context, o *options, found []Stranded) []Stranded {
	v, ok := o.lookupEnv(mergedEnv)
	if !ok || strings.TrimSpace(v) == "" {
		return found
	}
	var keep []Stranded
	for _, s := range found {
		entry := s.Path + "@" + s.Since.UTC().Format(time.RFC3339)
		named := false
		for _, e := range strings.Split(v, ",") {
			path, since, _ := strings.Cut(strings.TrimSpace(e), "@")
			at, err := time.Parse(time.RFC3339Nano, since)
			named = named || err == nil && path == s.Path && at.Truncate(time.Second).Equal(s.Since.Truncate(time.Second))
		}
		if !named {
			keep = append(keep, s)
			continue
		}
		if err := MarkMerged(ctx, s.Path); err != nil {
			db.addReason(fmt.Sprintf("%s names %s but %v", mergedEnv, entry, err))
			keep = append(keep, s)
			continue
		}
		db.logger.Info("dbfallback: rows left in a fallback file marked merged", "path", s.Path, "since", s.Since.UTC().Format(time.RFC3339), "by", mergedEnv)
	}
	return keep
}

// addReason appends a sentence to the DB's reason.
func (db *DB) addReason(s string) {
	if db.reason != "" {
		db.reason += "; "
	}
	db.reason += s
}

// Stranded returns the rows that SQLite fallback files hold and the
// primary does not, as found when Open landed on the primary (nil on a
// fallback, and when there are none). See [MarkMerged].
func (db *DB) Stranded() []Stranded { return append([]Stranded(nil), db.stranded...) }
