// Package integration tests dbfallback with the tools services use on top
// of database/sql, one file per tool, on both dialects. It is its own
// module so that those tools stay out of the library's go.mod; it has no
// API.
package integration
