package dbfallback

// sysRenameat2 is renameat2's system call number on linux/amd64, which
// package syscall does not list.
const sysRenameat2 = 316
