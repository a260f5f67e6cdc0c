//go:build linux

package dbfallback

import "syscall"

// unsafeFilesystems maps statfs magic numbers to names of filesystems where
// SQLite's POSIX locks and WAL shared memory cannot be trusted.
var unsafeFilesystems = map[int64]string{
	0x65735546: "FUSE", // Hugging Face bucket mounts, sshfs, gcsfuse, s3fs
	0x6969:     "NFS",
	0x517b:     "SMB",
	0xff534d42: "CIFS",
	0xfe534d42: "SMB2",
	0x00c36400: "Ceph",
	0x5346414f: "AFS",
	0x73757245: "Coda",
	0x01021997: "9P",
	0x0bd00bd0: "Lustre",
}

// networkFS returns the kind of filesystem holding dir when SQLite is
// unsafe there, or "" for a local filesystem (or when it cannot tell).
func networkFS(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return ""
	}
	return unsafeFilesystems[int64(st.Type)]
}
