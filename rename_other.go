//go:build !(linux && (amd64 || arm64))

package dbfallback

import "errors"

// renameat2NoReplace is not available here: renameNoReplace falls back to
// a hard link and an unlink.
func renameat2NoReplace(oldpath, newpath string) error { return errors.ErrUnsupported }
