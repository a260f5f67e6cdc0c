//go:build linux && (amd64 || arm64)

package dbfallback

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// renameNoReplaceFlag is RENAME_NOREPLACE from <linux/fs.h>.
const renameNoReplaceFlag = 1

// renameat2NoReplace renames with renameat2(2) and RENAME_NOREPLACE, which
// fails with EEXIST instead of replacing newpath. It returns an error
// matching errors.ErrUnsupported where the kernel (before 3.15) or the
// filesystem lacks the flag.
func renameat2NoReplace(oldpath, newpath string) error {
	oldp, err := syscall.BytePtrFromString(oldpath)
	if err != nil {
		return err
	}
	newp, err := syscall.BytePtrFromString(newpath)
	if err != nil {
		return err
	}
	atFDCWD := -100 // AT_FDCWD
	_, _, errno := syscall.Syscall6(sysRenameat2, uintptr(atFDCWD), uintptr(unsafe.Pointer(oldp)),
		uintptr(atFDCWD), uintptr(unsafe.Pointer(newp)), renameNoReplaceFlag, 0)
	switch errno {
	case 0:
		return nil
	case syscall.ENOSYS, syscall.EINVAL, syscall.ENOTSUP:
		return fmt.Errorf("%w: renameat2: %w", errors.ErrUnsupported, errno)
	}
	return &os.LinkError{Op: "renameat2", Old: oldpath, New: newpath, Err: errno}
}
