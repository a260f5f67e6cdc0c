package dbfallback

import (
	"context"
	"time"
)

// Test-only options: the seams of this package, unexported in production.

// withDataDir replaces /data, the Hugging Face persistent storage mount.
func withDataDir(dir string) Option {
	return func(o *options) { o.dataDir = dir }
}

// withFSType replaces the filesystem detector, to simulate FUSE or NFS.
func withFSType(f func(dir string) string) Option {
	return func(o *options) { o.fsType = f }
}

// withLookupFunc replaces DNS resolution of PostgreSQL hosts, to simulate a
// DNS failure without sending a query anywhere.
func withLookupFunc(f func(ctx context.Context, host string) ([]string, error)) Option {
	return func(o *options) { o.lookupFunc = f }
}

// withoutSQLiteEngine makes Open behave as in a build without a SQLite
// engine (CGO_ENABLED=0 without puresqlite).
func withoutSQLiteEngine() Option {
	return func(o *options) { o.noSQLite = true }
}

// withPGPlain opens PostgreSQL as pgx's stdlib driver does on its own:
// without the connection hooks of pg_failover.go and the unnamed prepared
// statements of pg_pooler.go (the connect timeout is still shared between
// hosts). For before/after figures.
func withPGPlain() Option {
	return func(o *options) { o.pgPlain = true }
}

// withNow fixes the clock used to name moved-aside files.
func withNow(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// withTxReport has Tx tell report how many times fn ran and what Tx
// returned, for the retry figures.
func withTxReport(report func(tries int, err error)) TxOption {
	return func(o *txOptions) { o.report = report }
}

// withTxBackoff replaces the waits of Tx's retry policy (initial, max,
// spread), to compare policies in BenchmarkTxBackoff.
func withTxBackoff(p retryPolicy) TxOption {
	return func(o *txOptions) { o.backoff = &p }
}

// withSnapshotFS replaces the check that a snapshot directory survives a
// restart (not the database's device, not an overlay or tmpfs): test
// directories share /tmp's device with their databases.
func withSnapshotFS(f func(dir, dbDir string) string) Option {
	return func(o *options) { o.snapshotFS = f }
}

// withSlowRestore waits d before each chunk (1 MiB) a restore copies: a
// snapshot directory slower than Open's deadline.
func withSlowRestore(d time.Duration) Option {
	return func(o *options) { o.slowCopy = d }
}

// withSnapshotCloseTimeout replaces the 3 s bound of Close's final
// snapshot, for tests about the data rather than the bound on a machine
// shared with other jobs.
func withSnapshotCloseTimeout(d time.Duration) Option {
	return func(o *options) { o.closeSnap = d }
}

// durableSnapshots treats every snapshot directory as durable.
var durableSnapshots = withSnapshotFS(func(string, string) string { return "" })
