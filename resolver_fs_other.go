//go:build !linux

package dbfallback

// networkFS cannot tell filesystems apart on this platform and assumes dir
// is local.
func networkFS(dir string) string { return "" }
