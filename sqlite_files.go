package dbfallback

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// sqlite_files.go decides what may be done with the file at a SQLite
// location before SQLite sees it, and moves damaged databases aside.
//
// The rules, in order:
//   - a directory, named pipe (FIFO), socket or device is never opened as a
//     database, and is opened by the probes only without blocking; nor is
//     a location where SQLite's -wal, -journal or -shm is one (or a
//     symbolic link), nor a symbolic link to nothing;
//   - a missing or empty file becomes a new database;
//   - a regular file that does not start with SQLite's 16-byte magic is
//     someone else's file (a mistyped SQLITE_PATH naming go.mod): it is
//     left untouched and the location is skipped with a reason;
//   - a file with SQLite's magic whose header or pages are damaged is
//     renamed aside under a name no other move can take, with its -wal,
//     -journal and -shm, and a new database takes its place;
//   - every probe is bounded by ctx and by fileProbeTimeout, so a stuck
//     filesystem cannot hold Open.

// fileProbeTimeout bounds one probe of a SQLite location (stat, open,
// read of the header) when ctx allows longer: a filesystem that does not
// answer in this time is treated as unusable.
const fileProbeTimeout = 5 * time.Second

// fileKind is what a SQLite location holds.
type fileKind int

const (
	fileNew     fileKind = iota // nothing, or an empty file: SQLite creates a database
	fileOrphan                  // like fileNew, but a -wal or -journal is left beside it
	fileSQLite                  // a SQLite database, by its header
	fileDamaged                 // SQLite's magic, but a damaged header or missing pages
	fileForeign                 // a regular file that is not SQLite
	fileSpecial                 // a directory, FIFO, socket or device
)

// fileState is the outcome of inspecting a location.
type fileState struct {
	kind fileKind
	why  string      // for fileDamaged, fileForeign, fileSpecial: what the file is
	info os.FileInfo // the file inspected, nil when there is none
}

// skip returns the error that makes a location unusable, or nil when
// SQLite may use it (after moving a damaged file aside).
func (s fileState) skip(path string) error {
	switch s.kind {
	case fileSpecial:
		return fmt.Errorf("dbfallback: %s %s", path, s.why)
	case fileForeign:
		return fmt.Errorf("dbfallback: %s %s; it was left untouched (check the SQLite path)", path, s.why)
	}
	return nil
}

var sqliteMagic = []byte("SQLite format 3\x00")

// sqliteCompanions are the files SQLite keeps next to a database, plus
// this package's record of fallback writes: they move with it.
var sqliteCompanions = []string{"-wal", "-journal", "-shm", strandedSuffix}

// inspectSQLiteFile says what is at path without blocking past ctx or
// fileProbeTimeout. It never opens a non-regular file, and opens regular
// files read-only and non-blocking.
func inspectSQLiteFile(ctx context.Context, path string) (fileState, error) {
	return withinProbe(ctx, func() (fileState, error) { return inspectFile(path) })
}

func inspectFile(path string) (fileState, error) {
	for try := 1; ; try++ {
		s, err := inspectFileOnce(path)
		// Gone between the look and the open: another process moved a
		// damaged file aside (its new database follows). Look again.
		if try < 3 && errors.Is(err, fs.ErrNotExist) {
			continue
		}
		return s, err
	}
}

func inspectFileOnce(path string) (fileState, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		// A symbolic link to nothing points somewhere on purpose (a volume
		// not mounted yet, say): a database created through it would land
		// where nobody looks for it.
		if lst, err := os.Lstat(path); err == nil && lst.Mode()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(path)
			return fileState{kind: fileSpecial, why: fmt.Sprintf("is a symbolic link to %s, which does not exist; it was left untouched", target)}, nil
		}
		return sideFilesState(path, newState(path, nil)), nil
	}
	if err != nil {
		return fileState{}, unwrapPathError(err)
	}
	if why := specialKind(st.Mode()); why != "" {
		return fileState{kind: fileSpecial, why: why, info: st}, nil
	}
	// SQLite follows a symbolic link and keeps its -wal, -journal and -shm
	// beside the file the link names.
	real := path
	if r, err := filepath.EvalSymlinks(path); err == nil {
		real = r
	}
	if st.Size() == 0 {
		return sideFilesState(real, newState(real, st)), nil
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return fileState{}, fmt.Errorf("cannot be read: %w", unwrapPathError(err))
	}
	defer f.Close()
	// The file may have been replaced between the two calls.
	if st, err = f.Stat(); err != nil {
		return fileState{}, err
	}
	if why := specialKind(st.Mode()); why != "" {
		return fileState{kind: fileSpecial, why: why, info: st}, nil
	}
	if st.Size() == 0 {
		return sideFilesState(real, newState(real, st)), nil
	}
	var hdr [100]byte
	n, err := io.ReadFull(f, hdr[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fileState{}, fmt.Errorf("cannot be read: %w", err)
	}
	s := classifyHeader(hdr[:n], st.Size(), func(suffix string) int64 {
		if st, err := os.Lstat(real + suffix); err == nil && st.Mode().IsRegular() {
			return st.Size()
		}
		return 0
	})
	s.info = st
	if s.kind == fileForeign {
		return s, nil // left untouched whatever is beside it
	}
	return sideFilesState(real, s), nil
}

// newState is the state of a location with no database (info nil), or an
// empty file, at path. A non-empty -wal there has lost its database
// (deleted, or emptied: a live database in WAL mode always has its first
// page written), and so has a non-empty -journal when the database file
// itself is gone (beside an empty file it may be the journal of another
// process creating the database right now). SQLite deletes such a log
// when it creates the new database, and it may hold the only copy of
// recent rows.
func newState(path string, info os.FileInfo) fileState {
	suffixes := []string{"-wal"}
	if info == nil {
		suffixes = append(suffixes, "-journal")
	}
	for _, suffix := range suffixes {
		if st, err := os.Lstat(path + suffix); err == nil && st.Mode().IsRegular() && st.Size() > 0 {
			return fileState{kind: fileOrphan, info: info, why: fmt.Sprintf("has %s%s beside it but no database", path, suffix)}
		}
	}
	return fileState{kind: fileNew, info: info}
}

// sqliteSideFiles are the files SQLite opens, creates or deletes beside a
// database.
var sqliteSideFiles = []string{"-wal", "-journal", "-shm"}

// sideFilesState returns s, or a fileSpecial state when SQLite would open
// (or delete) something beside the database at path that is not a regular
// file: a named pipe there blocks SQLite's open forever, a link would
// have SQLite write through it.
func sideFilesState(path string, s fileState) fileState {
	for _, suffix := range sqliteSideFiles {
		st, err := os.Lstat(path + suffix)
		if err != nil || st.Mode().IsRegular() {
			continue
		}
		return fileState{kind: fileSpecial, info: s.info,
			why: fmt.Sprintf("has %s%s beside it, which is %s, not SQLite's %s file; SQLite would open it with the database, so it was left untouched", path, suffix, modeName(st.Mode()), suffix)}
	}
	return s
}

// modeName names the kind of a file that is not a regular file.
func modeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file"
}

// specialKind names a file that must never be opened as a database; ""
// for a regular file.
func specialKind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return ""
	case m.IsDir():
		return "is a directory, not a database file"
	case m&fs.ModeNamedPipe != 0:
		return "is a named pipe (FIFO), not a database file"
	case m&fs.ModeSocket != 0:
		return "is a socket, not a database file"
	case m&fs.ModeDevice != 0:
		return "is a device, not a database file"
	}
	return "is not a regular file"
}

// classifyHeader reads the first bytes of a non-empty regular file of the
// given size. sideSize reports the size of a companion file ("-wal",
// "-journal"), 0 when there is none.
func classifyHeader(hdr []byte, size int64, sideSize func(string) int64) fileState {
	if len(hdr) < len(sqliteMagic) || !bytes.Equal(hdr[:len(sqliteMagic)], sqliteMagic) {
		return fileState{kind: fileForeign, why: "is not a SQLite database (it does not start with SQLite's header)"}
	}
	if len(hdr) < 100 {
		return fileState{kind: fileDamaged, why: "a truncated SQLite database"}
	}
	// The header's fixed fields (https://sqlite.org/fileformat.html#the_database_header):
	// the page size is a power of two from 512 to 65536 (1 meaning 65536),
	// the payload fractions are 64, 32 and 32.
	pageSize := int64(binary.BigEndian.Uint16(hdr[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	if pageSize < 512 || pageSize&(pageSize-1) != 0 || hdr[21] != 64 || hdr[22] != 32 || hdr[23] != 32 {
		return fileState{kind: fileDamaged, why: "a SQLite database with a damaged header"}
	}
	// A crash can leave the file shorter than its header says while a
	// write-ahead log or hot journal still holds the pages: SQLite recovers
	// those, so the size check applies only without one.
	if sideSize("-wal") > 0 || sideSize("-journal") > 0 {
		return fileState{kind: fileSQLite}
	}
	// The page count (offset 28) is valid when the change counter (24)
	// equals the version-valid-for number (92): a shorter file lost pages.
	pages := int64(binary.BigEndian.Uint32(hdr[28:32]))
	changes, validFor := binary.BigEndian.Uint32(hdr[24:28]), binary.BigEndian.Uint32(hdr[92:96])
	if pages > 0 && changes == validFor && size < pages*pageSize {
		return fileState{kind: fileDamaged, why: "a truncated SQLite database"}
	}
	return fileState{kind: fileSQLite}
}

// withinProbe runs probe, bounded by ctx and by fileProbeTimeout.
func withinProbe[T any](ctx context.Context, probe func() (T, error)) (T, error) {
	pctx, cancel := context.WithTimeout(ctx, fileProbeTimeout)
	defer cancel()
	v, err := withinCtx(pctx, probe)
	if pctx.Err() != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("the filesystem did not answer within %s (a stuck network mount?)", fileProbeTimeout)
	}
	return v, err
}

// withinCtx runs fn and returns its result, or ctx's error as soon as ctx
// is done. A system call cannot be interrupted, so fn then finishes on
// its own goroutine and its result is dropped: fn must only return
// values, never publish them.
func withinCtx[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	if ctx.Done() == nil {
		return fn()
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := fn()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// prepareSQLiteFile makes path ready for SQLite: its directory exists (new
// directories 0700), the file exists (new files 0600), and a damaged SQLite
// database there is moved aside, never deleted. A directory, FIFO, socket,
// device or non-SQLite file is an error: the location is skipped and
// nothing there is touched. The note says what was moved. When restore is
// not nil and the location holds no database (nothing, an empty file, or
// a damaged one just moved aside), restore may put one there first (see
// snapshot_restore.go).
func prepareSQLiteFile(ctx context.Context, path string, now func() time.Time, restore func(ctx context.Context, path string, emptyFile bool) (string, error)) (note string, err error) {
	if _, err := withinProbe(ctx, func() (struct{}, error) {
		return struct{}{}, os.MkdirAll(filepath.Dir(path), 0o700)
	}); err != nil {
		return "", fmt.Errorf("dbfallback: create directory for %s: %w", path, unwrapPathError(err))
	}
	// Another process may act on the same file at the same moment: the
	// lock makes looking, moving aside and creating one step, and when the
	// file still changes under a move (a process without the lock), look
	// again.
	unlock, err := lockDir(ctx, filepath.Dir(path))
	if err != nil {
		return "", fmt.Errorf("dbfallback: %s: %w", path, err)
	}
	defer unlock()
	for range 3 {
		s, err := inspectSQLiteFile(ctx, path)
		if err != nil {
			return "", fmt.Errorf("dbfallback: %s: %w", path, err)
		}
		if err := s.skip(path); err != nil {
			return "", err
		}
		if s.kind == fileDamaged {
			aside, err := moveAside(ctx, path, s.info, now)
			if errors.Is(err, errChanged) {
				continue
			}
			if err != nil {
				return "", fmt.Errorf("dbfallback: %s is %s and could not be moved aside: %w", path, s.why, err)
			}
			note = fmt.Sprintf("%s was %s; moved it aside to %s", path, s.why, aside)
		}
		if s.kind == fileOrphan {
			aside, err := moveOrphansAside(ctx, path, now)
			if err != nil {
				return "", fmt.Errorf("dbfallback: %s %s, which could not be moved aside: %w", path, s.why, err)
			}
			note = fmt.Sprintf("%s %s (SQLite would delete it); moved it aside to %s-wal/-journal", path, s.why, aside)
		}
		if restore != nil && s.kind != fileSQLite {
			if st, err := os.Stat(path); err != nil || st.Size() == 0 {
				restored, err := restore(ctx, path, err == nil)
				if err != nil {
					if note != "" {
						return "", fmt.Errorf("%s; then: %w", note, err)
					}
					return "", err
				}
				note = joinNotes(note, restored)
			}
		}
		if _, err := withinProbe(ctx, func() (struct{}, error) { return struct{}{}, createFile(path) }); err != nil {
			return note, fmt.Errorf("dbfallback: open %s: %w", path, unwrapPathError(err))
		}
		return note, nil
	}
	return "", fmt.Errorf("dbfallback: %s keeps changing while it is inspected (another process is moving it?)", path)
}

// dirLockPoll is how often lockDir tries again for a lock another process
// holds.
const dirLockPoll = 5 * time.Millisecond

// lockDir takes an exclusive advisory lock (flock(2)) on dir and returns
// its release. Every process of this package takes it to look at, move
// aside, or create a database in dir, so that one never moves aside the
// files (a new -wal, say) of a database another has just created there.
// The wait polls, bounded by ctx and fileProbeTimeout (a lock is a
// resource: it is not taken on a goroutine that could outlive the call).
// Where the filesystem has no flock, or the directory cannot be opened, it
// goes on without the lock.
func lockDir(ctx context.Context, dir string) (func(), error) {
	pctx, cancel := context.WithTimeout(ctx, fileProbeTimeout)
	defer cancel()
	f, err := os.Open(dir)
	if err != nil {
		// A directory that can be written but not read (mode 0733, say)
		// cannot be locked: go on as without flock.
		return func() {}, nil
	}
	fd := int(f.Fd())
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return func() { syscall.Flock(fd, syscall.LOCK_UN); f.Close() }, nil
		case !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR):
			return func() { f.Close() }, nil // no flock here: no lock to take
		}
		if !sleepCtx(pctx, dirLockPoll) {
			f.Close()
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("another process held %s locked for %s", dir, fileProbeTimeout)
		}
	}
}

// createFile creates path with mode 0600 if it does not exist, without
// blocking on whatever is there.
func createFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// errChanged reports that the file to move aside is no longer the one
// inspected.
var errChanged = errors.New("the file changed while it was being moved")

// maxAsideNames bounds the names tried for one move.
const maxAsideNames = 1000

// moveAside renames the damaged database at path, which must still be the
// file described by was, and its companions to
// <path>.corrupt-<UTC time>[-n]: the first such name that neither it nor
// a companion takes yet. The rename refuses to replace anything, so two
// moves, even from two processes in the same second, never share a name.
// It returns the new name.
func moveAside(ctx context.Context, path string, was os.FileInfo, now func() time.Time) (string, error) {
	if now == nil {
		now = time.Now
	}
	stamp := now().UTC().Format("20060102T150405Z")
	return withinProbe(ctx, func() (string, error) {
		for n := 1; n <= maxAsideNames; n++ {
			aside := path + ".corrupt-" + stamp
			if n > 1 {
				aside = fmt.Sprintf("%s-%d", aside, n)
			}
			if anyExists(aside, sqliteCompanions) {
				continue
			}
			// Stat follows a symbolic link, as the inspection did: the link
			// is what moves, and the file it points to stays as it is.
			if cur, err := os.Stat(path); err != nil || was == nil || !os.SameFile(cur, was) {
				return "", errChanged
			}
			err := renameNoReplace(path, aside)
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			if errors.Is(err, fs.ErrNotExist) {
				return "", errChanged
			}
			if err != nil {
				return "", err
			}
			// A -wal or -journal left next to a new database would be
			// replayed into it: the location is unusable until they move.
			for _, c := range sqliteCompanions {
				if _, err := os.Lstat(path + c); err != nil {
					continue
				}
				if err := renameNoReplace(path+c, aside+c); err != nil {
					return aside, fmt.Errorf("moved the database to %s but not its %s: %w", aside, c, err)
				}
			}
			return aside, nil
		}
		return "", fmt.Errorf("%d names %s.corrupt-%s[-n] are taken", maxAsideNames, path, stamp)
	})
}

// moveOrphansAside renames the -wal and -journal of path, whose database
// is gone or empty, to <path>.orphan-<UTC time>[-n]-wal and -journal, the
// first such names nothing takes yet, without replacing anything. It
// returns the new base name.
func moveOrphansAside(ctx context.Context, path string, now func() time.Time) (string, error) {
	if now == nil {
		now = time.Now
	}
	stamp := now().UTC().Format("20060102T150405Z")
	return withinProbe(ctx, func() (string, error) {
		for n := 1; n <= maxAsideNames; n++ {
			aside := path + ".orphan-" + stamp
			if n > 1 {
				aside = fmt.Sprintf("%s-%d", aside, n)
			}
			if anyExists(aside, sqliteCompanions) {
				continue
			}
			for _, c := range []string{"-wal", "-journal"} {
				if st, err := os.Lstat(path + c); err != nil || !st.Mode().IsRegular() {
					continue
				}
				if err := renameNoReplace(path+c, aside+c); err != nil {
					return "", err
				}
			}
			return aside, nil
		}
		return "", fmt.Errorf("%d names %s.orphan-%s[-n] are taken", maxAsideNames, path, stamp)
	})
}

// anyExists reports whether base or base+suffix exists for any suffix.
func anyExists(base string, suffixes []string) bool {
	if _, err := os.Lstat(base); !errors.Is(err, fs.ErrNotExist) {
		return true
	}
	for _, s := range suffixes {
		if _, err := os.Lstat(base + s); !errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	return false
}

// renameNoReplace renames oldpath to newpath, failing with an error that
// matches fs.ErrExist when newpath exists: renameat2(RENAME_NOREPLACE)
// where the kernel and filesystem have it, else a hard link and an unlink
// (link(2) never replaces), else an exclusively created placeholder that
// the rename then replaces.
func renameNoReplace(oldpath, newpath string) error {
	err := renameat2NoReplace(oldpath, newpath)
	if !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	err = linkUnlink(oldpath, newpath)
	if !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	return placeholderRename(oldpath, newpath)
}

// linkUnlink moves oldpath to newpath with link(2) and unlink(2). Between
// the two, and after a crash there, both names hold the same file: nothing
// is lost. It returns errors.ErrUnsupported where the filesystem has no
// hard links.
func linkUnlink(oldpath, newpath string) error {
	if err := os.Link(oldpath, newpath); err != nil {
		if errors.Is(err, fs.ErrExist) || errors.Is(err, fs.ErrNotExist) {
			return err
		}
		var errno syscall.Errno
		if errors.As(err, &errno) && (errno == syscall.EPERM || errno == syscall.ENOTSUP || errno == syscall.EOPNOTSUPP || errno == syscall.EMLINK || errno == syscall.EXDEV || errno == syscall.ENOSYS) {
			return fmt.Errorf("%w: %w", errors.ErrUnsupported, err)
		}
		return err
	}
	return os.Remove(oldpath)
}

// placeholderRename claims newpath by creating it exclusively, then
// renames oldpath over that placeholder, which is its own.
func placeholderRename(oldpath, newpath string) error {
	f, err := os.OpenFile(newpath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	if err := os.Rename(oldpath, newpath); err != nil {
		os.Remove(newpath)
		return err
	}
	return nil
}

// joinNotes joins the non-empty notes with "; ".
func joinNotes(notes ...string) string {
	var out []string
	for _, n := range notes {
		if n != "" {
			out = append(out, n)
		}
	}
	return strings.Join(out, "; ")
}
