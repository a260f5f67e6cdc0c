package dbfallback

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// snapshot_format.go is the layout of a snapshot directory. Every
// snapshot is two files, both created with O_EXCL under a name never used
// before, and never renamed, rewritten or truncated:
//
//	<db>.<UTC time>.<writer>.<seq>.snap           the database (VACUUM INTO output)
//	<db>.<UTC time>.<writer>.<seq>.manifest.json  written last: what the .snap must be
//
// <db> is the base name of the local database file (notes.db), <writer> a
// random id per DB (per Open, so per process), <seq> its count. A .snap
// without its manifest is unpublished (a writer died while copying) and
// ignored. The manifest must agree with its own name (database, writer,
// sequence, snapshot file), so a manifest copied over another name, or a
// snapshot file replaced by an older one, is rejected: restore checks
// size and SHA-256 before it uses a byte.

// snapshotFormat is the manifest's format number.
const snapshotFormat = 1

// Name suffixes in a snapshot directory.
const (
	snapshotSuffix = ".snap"
	manifestSuffix = ".manifest.json"
)

// maxManifestSize bounds a manifest read: a real one is under 2 KB, plus
// the stranded-rows record it carries.
const maxManifestSize = 2 << 20

// snapshotManifest describes one published snapshot.
type snapshotManifest struct {
	Format int `json:"format"`
	// Database is the base name of the local database file.
	Database string `json:"database"`
	// Path is the local database file's absolute path, so that two
	// databases with the same base name sharing a directory (two
	// directories' app.db in one process) restore their own snapshots.
	// Empty in manifests written before it was added.
	Path string `json:"path,omitempty"`
	// Writer is the id of the DB that wrote it; Lineage the writers whose
	// snapshots it was restored from, oldest first.
	Writer  string   `json:"writer"`
	Lineage []string `json:"lineage,omitempty"`
	Seq     int64    `json:"seq"`
	// Taken is when the copy began (its data is at least that recent).
	Taken time.Time `json:"taken"`
	// File is the snapshot's name in the directory.
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// DataVersion is SQLite's PRAGMA data_version on the snapshotting
	// connection when the copy began: it changes when another connection
	// commits (it means nothing across processes).
	DataVersion int64 `json:"data_version"`
	// Library is this module's version in the writing binary.
	Library string `json:"library"`
	// Stranded is the record of rows written while the primary was not in
	// use (stranded.go) as it was next to the database, so that a restore
	// keeps reporting them.
	Stranded json.RawMessage `json:"stranded_record,omitempty"`
}

// prefix is the name both files of the snapshot start with.
func (m *snapshotManifest) prefix() string {
	return fmt.Sprintf("%s.%s.%s.%06d", m.Database, m.Taken.UTC().Format("20060102T150405Z"), m.Writer, m.Seq)
}

// lineage returns the writers whose data a snapshot continues: its own and
// its ancestors'.
func (m *snapshotManifest) lineage() map[string]bool {
	out := map[string]bool{m.Writer: true}
	for _, w := range m.Lineage {
		out[w] = true
	}
	return out
}

// snapshotEntry is a manifest found in a directory, and what is wrong
// with it ("" when nothing was found wrong so far).
type snapshotEntry struct {
	name    string // manifest file name
	m       snapshotManifest
	problem string
}

// listSnapshots reads the manifests for database db in dir, newest first
// (by time taken, then sequence). A manifest that cannot be read or does
// not agree with its name is returned with its problem; its snapshot is
// not checked here (see verifySnapshot).
func listSnapshots(ctx context.Context, dir, db string) ([]snapshotEntry, error) {
	names, err := withinProbe(ctx, func() ([]string, error) {
		des, err := os.ReadDir(dir)
		var out []string
		for _, de := range des {
			if n := de.Name(); strings.HasPrefix(n, db+".") && strings.HasSuffix(n, manifestSuffix) {
				out = append(out, n)
			}
		}
		return out, err
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, unwrapPathError(err))
	}
	var out []snapshotEntry
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e := snapshotEntry{name: n}
		data, err := withinProbe(ctx, func() ([]byte, error) { return readLimited(filepath.Join(dir, n), maxManifestSize) })
		switch {
		case err != nil:
			e.problem = fmt.Sprintf("the manifest cannot be read: %v", unwrapPathError(err))
		case json.Unmarshal(data, &e.m) != nil:
			e.problem = "the manifest is not valid JSON (truncated or tampered)"
		default:
			e.problem = e.m.disagrees(n, db)
		}
		out = append(out, e)
	}
	sortSnapshots(out)
	return out, nil
}

// sortSnapshots orders entries newest first: manifests that verify so far
// before the others, then by newerSnapshot.
func sortSnapshots(entries []snapshotEntry) {
	sort.SliceStable(entries, func(i, j int) bool {
		a, b := &entries[i], &entries[j]
		if (a.problem == "") != (b.problem == "") {
			return a.problem == ""
		}
		return newerSnapshot(&a.m, &b.m)
	})
}

// newerSnapshot reports whether a holds newer data than b. Clocks decide
// only between unrelated writers: one writer's snapshots are ordered by
// sequence (its clock may step back), and a writer that restored from
// another's snapshot (b's writer is in a's lineage) continues its data,
// whatever the times say (that writer's clock may have run ahead).
func newerSnapshot(a, b *snapshotManifest) bool {
	switch {
	case a.Writer == b.Writer:
		return a.Seq > b.Seq
	case slices.Contains(a.Lineage, b.Writer):
		return true
	case slices.Contains(b.Lineage, a.Writer):
		return false
	case !a.Taken.Equal(b.Taken):
		return a.Taken.After(b.Taken)
	}
	return a.Seq > b.Seq
}

// disagrees says how a manifest read from the file name contradicts it, or
// "".
func (m *snapshotManifest) disagrees(name, db string) string {
	switch {
	case m.Format != snapshotFormat:
		return fmt.Sprintf("the manifest has format %d, this library reads %d", m.Format, snapshotFormat)
	case m.Database != db:
		return fmt.Sprintf("the manifest is for database %q, not %q (tampered or renamed)", m.Database, db)
	case m.prefix()+manifestSuffix != name:
		return "the manifest does not match its own file name (copied over another snapshot's, or tampered)"
	case m.File != m.prefix()+snapshotSuffix:
		return "the manifest names another snapshot file than its own (tampered)"
	case m.Size < 512 || len(m.SHA256) != 64:
		return "the manifest has no valid size or checksum (tampered)"
	}
	return ""
}

// readLimited reads at most limit bytes of a regular file, without
// blocking on anything else: anything but a regular file is refused with a
// *notRegularError, a larger file with an *overLimitError (and the
// limit+1 bytes read).
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, &notRegularError{path: path, mode: st.Mode()}
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(data)) > limit {
		err = &overLimitError{path: path, limit: limit}
	}
	return data, err
}

// notRegularError is readLimited's refusal of a directory, named pipe,
// socket or device.
type notRegularError struct {
	path string
	mode fs.FileMode
}

func (e *notRegularError) Error() string { return fmt.Sprintf("%s is %s", e.path, modeName(e.mode)) }

// overLimitError is readLimited's error for a file over its limit.
type overLimitError struct {
	path  string
	limit int64
}

func (e *overLimitError) Error() string {
	return fmt.Sprintf("%s is larger than %d bytes", e.path, e.limit)
}

// copyChunk is the unit of a copy to or from a snapshot directory: each
// read and write is bounded by fileProbeTimeout, so a mount that stops
// answering ends the copy instead of holding it.
const copyChunk = 1 << 20

// copyVerified copies src to the writer w (when not nil) and returns the
// bytes copied and their SHA-256. It stops when ctx is done, or when one
// chunk's read or write takes longer than fileProbeTimeout.
func copyVerified(ctx context.Context, w io.Writer, src io.Reader) (int64, string, error) {
	h := sha256.New()
	var n int64
	buf := make([]byte, copyChunk)
	for {
		if err := ctx.Err(); err != nil {
			return n, "", err
		}
		k, rerr := withinProbe(ctx, func() (int, error) { return io.ReadFull(src, buf) })
		if k > 0 {
			h.Write(buf[:k])
			if w != nil {
				if _, err := withinProbe(ctx, func() (int, error) { return w.Write(buf[:k]) }); err != nil {
					return n, "", err
				}
			}
			n += int64(k)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			return n, sumHex(h), nil
		}
		if rerr != nil {
			return n, "", rerr
		}
	}
}

func sumHex(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// verifySnapshot reads the snapshot of e whole and checks its size, SHA-256
// and SQLite header against the manifest. It returns "" when they agree,
// else what is wrong.
func verifySnapshot(ctx context.Context, dir string, m *snapshotManifest) string {
	f, err := withinProbe(ctx, func() (*os.File, error) {
		return os.OpenFile(filepath.Join(dir, m.File), os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	})
	if err != nil {
		return fmt.Sprintf("the snapshot file cannot be read: %v", unwrapPathError(err))
	}
	defer f.Close()
	return checkAgainst(ctx, f, nil, m)
}

// checkAgainst copies the snapshot src (to w, when not nil) and says how
// it differs from the manifest, "" when it does not.
func checkAgainst(ctx context.Context, src *os.File, w io.Writer, m *snapshotManifest) string {
	st, err := src.Stat()
	if err != nil {
		return fmt.Sprintf("the snapshot file cannot be read: %v", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Sprintf("the snapshot file is %s", modeName(st.Mode()))
	}
	if st.Size() != m.Size {
		return fmt.Sprintf("the snapshot file has %d bytes, its manifest says %d (truncated, or replaced by another copy)", st.Size(), m.Size)
	}
	var hdr [16]byte
	if _, err := src.ReadAt(hdr[:], 0); err != nil || !bytes.Equal(hdr[:], sqliteMagic) {
		return "the snapshot file is not a SQLite database (tampered)"
	}
	n, sum, err := copyVerified(ctx, w, src)
	switch {
	case err != nil:
		return fmt.Sprintf("the snapshot file could not be read whole: %v", unwrapPathError(err))
	case n != m.Size:
		return fmt.Sprintf("the snapshot file gave %d bytes, its manifest says %d (it changed while read)", n, m.Size)
	case sum != m.SHA256:
		return "the snapshot file's SHA-256 differs from its manifest (tampered, damaged, or replaced by another copy)"
	}
	return ""
}

// createExclusive creates name, failing when anything is there: a name
// in a snapshot directory is used once.
func createExclusive(ctx context.Context, name string) (*os.File, error) {
	return withinProbe(ctx, func() (*os.File, error) {
		return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOCTTY, 0o600)
	})
}

// syncDir flushes a directory's entries where the filesystem allows it
// (a FUSE bucket may not: the error is ignored, the file's own fsync and
// the read-back are what the snapshot relies on).
func syncDir(ctx context.Context, dir string) {
	withinProbe(ctx, func() (struct{}, error) {
		d, err := os.Open(dir)
		if err != nil {
			return struct{}{}, err
		}
		defer d.Close()
		return struct{}{}, d.Sync()
	})
}

// libraryVersion is this module's version in the running binary.
func libraryVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if bi.Main.Path == "github.com/dbfallback/dbfallback" {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/dbfallback/dbfallback" {
			return d.Version
		}
	}
	return "unknown"
}
