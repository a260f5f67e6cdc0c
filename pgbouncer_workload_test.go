package dbfallback

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

// The workload of the PgBouncer tests and benchmarks: many clients of one
// DB, each running, in turn, every way a service reaches PostgreSQL
// through the library.

// opKinds are the operations of the workload, one per way of reaching the
// database.
var opKinds = []string{"query", "prepared", "prepare-each", "tx", "sqlc", "session"}

// workload is the state the clients share: the DB, a table of their own,
// statements prepared once for all, and the errors seen, by kind.
type workload struct {
	round  []string // the operations of one round, opKinds unless a benchmark says otherwise
	db     *DB
	table  string
	shared *sql.Stmt    // db.PrepareContext once, used by every client
	q      *queries     // sqlc-style generated code, prepared once
	mw     http.Handler // Middleware around a handler that uses the session

	mu      sync.Mutex
	errs    map[string]int // "op: kind" → count
	ops     map[string]int // op → count
	latency []time.Duration
}

// queries is the shape of sqlc's generated code with emit_prepared_queries:
// statements prepared on the pool at start, run directly or, inside a
// transaction, through tx.StmtContext.
type queries struct {
	insert, count *sql.Stmt
}

func prepareQueries(ctx context.Context, db *sql.DB, table string) (*queries, error) {
	insert, err := db.PrepareContext(ctx, "INSERT INTO "+table+" (client, n) VALUES ($1, $2)")
	if err != nil {
		return nil, err
	}
	count, err := db.PrepareContext(ctx, "SELECT count(*) FROM "+table+" WHERE client = $1")
	if err != nil {
		insert.Close()
		return nil, err
	}
	return &queries{insert: insert, count: count}, nil
}

func (q *queries) close() {
	q.insert.Close()
	q.count.Close()
}

// newWorkload creates the table and the shared statements on db; both are
// dropped when the test ends. A failure to prepare is counted, not fatal:
// it is one of the errors a pooler causes.
func newWorkload(tb testing.TB, db *DB) *workload {
	tb.Helper()
	ctx := context.Background()
	w := &workload{round: opKinds, db: db, table: fmt.Sprintf("pgb_%d", rand.Uint32()), errs: map[string]int{}, ops: map[string]int{}}
	_, err := db.ExecContext(ctx, "CREATE TABLE "+w.table+" (id bigserial PRIMARY KEY, client int NOT NULL, n int NOT NULL)")
	require.NoError(tb, err)
	_, err = db.ExecContext(ctx, "CREATE INDEX ON "+w.table+" (client)")
	require.NoError(tb, err)
	tb.Cleanup(func() { db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+w.table) })
	if w.shared, err = db.PrepareContext(ctx, "SELECT $1::int * 2"); err != nil {
		w.count("prepared", err)
	} else {
		tb.Cleanup(func() { w.shared.Close() })
	}
	if w.q, err = prepareQueries(ctx, db.DB, w.table); err != nil {
		w.count("sqlc", err)
	} else {
		tb.Cleanup(w.q.close)
	}
	w.mw = Middleware(db)(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if err := w.sessionWork(r.Context()); err != nil {
			http.Error(rw, err.Error(), http.StatusInternalServerError)
		}
	}))
	return w
}

// count records one finished operation; err nil is a success.
func (w *workload) count(op string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ops[op]++
	if err != nil {
		w.errs[op+": "+errorKind(err)]++
	}
}

// pgxStatementName matches the names pgx gives prepared statements.
var pgxStatementName = regexp.MustCompile(`"stmt(cache)?_[0-9a-f]+"`)

// errorKind names an error by its SQLSTATE and message (the first line of
// its text otherwise), with the statement names pgx generates cut out so
// that one kind is one line.
func errorKind(err error) string {
	var pg *pgconn.PgError
	s := err.Error()
	if errors.As(err, &pg) {
		s = pg.Code + " " + pg.Message
	}
	s, _, _ = strings.Cut(s, "\n")
	return pgxStatementName.ReplaceAllString(s, `"…"`)
}

// client runs rounds of every operation as client number c, timing each.
func (w *workload) client(ctx context.Context, c, rounds int) {
	for i := range rounds {
		for _, op := range w.round {
			start := time.Now()
			err := w.run(ctx, op, c, i)
			took := time.Since(start)
			w.count(op, err)
			w.mu.Lock()
			w.latency = append(w.latency, took)
			w.mu.Unlock()
		}
	}
}

// run is one operation.
func (w *workload) run(ctx context.Context, op string, c, i int) error {
	db := w.db
	var n int
	switch op {
	case "query": // a query with arguments on the pool
		return db.QueryRowContext(ctx, "SELECT $1::int + $2::int", c, i).Scan(&n)
	case "prepared": // a statement prepared once on the pool, used by all
		if w.shared == nil {
			return errors.New("not prepared")
		}
		return w.shared.QueryRowContext(ctx, i).Scan(&n)
	case "prepare-each": // Prepare, run, Close, as code that prepares per call does
		st, err := db.PrepareContext(ctx, "SELECT $1::int - 1")
		if err != nil {
			return err
		}
		defer st.Close()
		return st.QueryRowContext(ctx, i).Scan(&n)
	case "tx": // db.Tx: SERIALIZABLE, an insert and a read
		return db.Tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, "INSERT INTO "+w.table+" (client, n) VALUES ($1, $2)", c, i); err != nil {
				return err
			}
			return tx.QueryRowContext(ctx, "SELECT count(*) FROM "+w.table+" WHERE client = $1", c).Scan(&n)
		})
	case "sqlc": // generated code: prepared statements, in and out of a transaction
		if w.q == nil {
			return errors.New("not prepared")
		}
		if err := w.q.count.QueryRowContext(ctx, c).Scan(&n); err != nil {
			return err
		}
		return db.Tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.StmtContext(ctx, w.q.insert).ExecContext(ctx, c, i); err != nil {
				return err
			}
			return tx.StmtContext(ctx, w.q.count).QueryRowContext(ctx, c).Scan(&n)
		})
	case "session": // a request through Middleware using its Session
		rec := httptest.NewRecorder()
		w.mw.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil))
		if rec.Code != http.StatusOK {
			return errors.New(strings.TrimSpace(rec.Body.String()))
		}
		return nil
	}
	return fmt.Errorf("unknown op %q", op)
}

// sessionWork is the handler's work: a query, a statement prepared on the
// session, and a session transaction.
func (w *workload) sessionWork(ctx context.Context) error {
	s, err := SessionFrom(ctx)
	if err != nil {
		return err
	}
	var n int
	if err := s.QueryRowContext(ctx, "SELECT $1::int", 7).Scan(&n); err != nil {
		return err
	}
	st, err := s.PrepareContext(ctx, "SELECT count(*) FROM "+w.table+" WHERE n = $1")
	if err != nil {
		return err
	}
	if err := st.QueryRowContext(ctx, 1).Scan(&n); err != nil {
		return err
	}
	tx, err := s.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+w.table+" (client, n) VALUES ($1, $2)", -1, 0); err != nil {
		return err
	}
	return tx.Commit()
}

// runClients runs clients concurrently, rounds each, and returns the
// wall time.
func (w *workload) runClients(clients, rounds int) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.client(ctx, c, rounds)
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// totals returns the operations and errors counted.
func (w *workload) totals() (ops, errs int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range w.ops {
		ops += n
	}
	for _, n := range w.errs {
		errs += n
	}
	return ops, errs
}

// errorLines lists the errors by kind, most frequent first.
func (w *workload) errorLines() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var kinds []string
	for k := range w.errs {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool {
		if w.errs[kinds[i]] != w.errs[kinds[j]] {
			return w.errs[kinds[i]] > w.errs[kinds[j]]
		}
		return kinds[i] < kinds[j]
	})
	var out []string
	for _, k := range kinds {
		out = append(out, fmt.Sprintf("%5d × %s", w.errs[k], k))
	}
	return out
}

// percentile returns the p-th percentile (0 < p ≤ 100) of the operations'
// times.
func (w *workload) percentile(p float64) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.latency) == 0 {
		return 0
	}
	d := append([]time.Duration(nil), w.latency...)
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(float64(len(d))*p/100+0.5) - 1
	return d[min(max(i, 0), len(d)-1)]
}
