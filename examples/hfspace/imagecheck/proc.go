package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// procStatus is what the checks read from /proc/<pid>/status.
type procStatus struct {
	name string
	uids []int // real, effective, saved, filesystem
	rss  int64 // bytes
}

// parseStatus reads the Name, Uid and VmRSS lines of a /proc/<pid>/status.
func parseStatus(data []byte) (procStatus, error) {
	var st procStatus
	for line := range strings.SplitSeq(string(data), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		switch key {
		case "Name":
			if len(f) > 0 {
				st.name = f[0]
			}
		case "Uid":
			for _, s := range f {
				n, err := strconv.Atoi(s)
				if err != nil {
					return st, fmt.Errorf("status: Uid %q", val)
				}
				st.uids = append(st.uids, n)
			}
		case "VmRSS":
			if len(f) != 2 || f[1] != "kB" {
				return st, fmt.Errorf("status: VmRSS %q", val)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return st, fmt.Errorf("status: VmRSS %q", val)
			}
			st.rss = kb << 10
		}
	}
	if st.name == "" || len(st.uids) != 4 || st.rss == 0 {
		return st, errors.New("status: no Name, Uid or VmRSS line")
	}
	return st, nil
}

func readStatus(pid int) (procStatus, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procStatus{}, err
	}
	return parseStatus(data)
}

// checkUser reports an error unless every uid of st is uid.
func checkUser(st procStatus, uid int) error {
	for _, u := range st.uids {
		if u != uid {
			return fmt.Errorf("process %s runs with uids %v, want %d", st.name, st.uids, uid)
		}
	}
	return nil
}

// checkEnviron compares a process's environment (/proc/<pid>/environ:
// NUL-separated NAME=value) with what it may hold: exactly the values in
// set, plus names in allowed with any value. Anything else came from
// somewhere a Space would not put it.
func checkEnviron(environ []byte, set []string, allowed []string) error {
	got := map[string]string{}
	for kv := range bytes.SplitSeq(bytes.TrimRight(environ, "\x00"), []byte{0}) {
		k, v, _ := strings.Cut(string(kv), "=")
		got[k] = v
	}
	var errs []error
	for _, kv := range set {
		k, v, _ := strings.Cut(kv, "=")
		if g, ok := got[k]; !ok || g != v {
			errs = append(errs, fmt.Errorf("%s is %q, want %q", k, g, v))
		}
		delete(got, k)
	}
	for k := range got {
		if !slices.Contains(allowed, k) {
			errs = append(errs, fmt.Errorf("%s is set, and a Space does not set it", k))
		}
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("environment: %w", err)
	}
	return nil
}

// checkOwnFile reports an error unless path is a non-empty regular file
// owned by uid and readable only by its owner (0600).
func checkOwnFile(path string, uid int) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.Mode().IsRegular() || fi.Size() == 0 {
		return fmt.Errorf("%s: not a non-empty regular file (%v, %d bytes)", path, fi.Mode(), fi.Size())
	}
	if int(st.Uid) != uid || fi.Mode().Perm() != 0o600 {
		return fmt.Errorf("%s: owner %d mode %v, want %d and 0600", path, st.Uid, fi.Mode().Perm(), uid)
	}
	return nil
}

// leaks reports where secret, raw or percent-encoded, appears in outputs
// (name to content).
func leaks(secret string, outputs map[string][]byte) error {
	if secret == "" {
		return nil
	}
	forms := []string{secret, url.QueryEscape(secret), url.PathEscape(secret), url.UserPassword("u", secret).String()[2:]}
	var where []string
	for name, out := range outputs {
		for _, f := range forms {
			if bytes.Contains(out, []byte(f)) {
				where = append(where, name)
				break
			}
		}
	}
	if len(where) == 0 {
		return nil
	}
	slices.Sort(where)
	return fmt.Errorf("the password appears in %s", strings.Join(where, ", "))
}
