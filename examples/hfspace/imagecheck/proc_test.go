package main

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseStatus(t *testing.T) {
	t.Run("this process", func(t *testing.T) {
		st, err := readStatus(os.Getpid())
		require.NoError(t, err)
		assert.NotEmpty(t, st.name)
		assert.Equal(t, []int{os.Getuid(), os.Geteuid(), os.Geteuid(), os.Geteuid()}, st.uids)
		assert.Greater(t, st.rss, int64(1<<20), "a Go test binary holds more than 1 MiB")
		assert.NoError(t, checkUser(st, os.Getuid()))
		assert.ErrorContains(t, checkUser(st, os.Getuid()+1), "runs with uids")
	})
	tests := []struct {
		name, status, err string
		want              procStatus
	}{
		{"complete", "Name:\thfspace\nUmask:\t0022\nUid:\t1000\t1000\t1000\t1000\nVmRSS:\t   17408 kB\n", "",
			procStatus{name: "hfspace", uids: []int{1000, 1000, 1000, 1000}, rss: 17408 << 10}},
		{"no VmRSS (a zombie)", "Name:\thfspace\nUid:\t1000\t1000\t1000\t1000\n", "no Name, Uid or VmRSS", procStatus{}},
		{"bad uid", "Name:\thfspace\nUid:\tx\t0\t0\t0\nVmRSS:\t1 kB\n", "Uid", procStatus{}},
		{"other unit", "Name:\thfspace\nUid:\t0\t0\t0\t0\nVmRSS:\t1 MB\n", "VmRSS", procStatus{}},
		{"empty", "", "no Name", procStatus{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := parseStatus([]byte(tt.status))
			if tt.err != "" {
				assert.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, st)
		})
	}
}

func TestCheckEnviron(t *testing.T) {
	set := []string{"SPACE_ID=a/b", "DATABASE_URL=postgres://x"}
	allowed := []string{"PATH", "HOME", "container"}
	tests := []struct {
		name, environ string
		err           []string
	}{
		{"exactly the Space's", "SPACE_ID=a/b\x00DATABASE_URL=postgres://x\x00PATH=/bin\x00HOME=/home/user\x00container=podman\x00", nil},
		{"allowed names may be absent", "SPACE_ID=a/b\x00DATABASE_URL=postgres://x\x00", nil},
		{"a value with = in it", "SPACE_ID=a/b\x00DATABASE_URL=postgres://x\x00HOME=/a=b\x00", nil},
		{"a host variable leaked in", "SPACE_ID=a/b\x00DATABASE_URL=postgres://x\x00DBFALLBACK_TEST_DATABASE_URL=postgres://y\x00", []string{"DBFALLBACK_TEST_DATABASE_URL is set"}},
		{"a variable missing", "SPACE_ID=a/b\x00", []string{`DATABASE_URL is "", want "postgres://x"`}},
		{"a variable changed", "SPACE_ID=c/d\x00DATABASE_URL=postgres://x\x00TERM=xterm\x00", []string{`SPACE_ID is "c/d"`, "TERM is set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkEnviron([]byte(tt.environ), set, allowed)
			if tt.err == nil {
				assert.NoError(t, err)
				return
			}
			for _, e := range tt.err {
				assert.ErrorContains(t, err, e)
			}
		})
	}
	t.Run("this process", func(t *testing.T) {
		environ, err := os.ReadFile("/proc/self/environ")
		require.NoError(t, err)
		assert.NoError(t, checkEnviron(environ, nil, namesOf(os.Environ())))
		assert.ErrorContains(t, checkEnviron(environ, []string{"IMAGECHECK_ABSENT=1"}, namesOf(os.Environ())), "IMAGECHECK_ABSENT")
	})
}

func namesOf(env []string) []string {
	var names []string
	for _, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); ok {
			names = append(names, k)
		}
	}
	return names
}

func TestCheckOwnFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(data), mode))
		require.NoError(t, os.Chmod(p, mode))
		return p
	}
	uid := os.Geteuid()
	tests := []struct {
		name, path string
		uid        int
		err        string
	}{
		{"0600 and the owner's", write("ok.db", "SQLite format 3\x00", 0o600), uid, ""},
		{"readable by others", write("open.db", "x", 0o644), uid, "mode -rw-r--r--"},
		{"another owner", write("theirs.db", "x", 0o600), uid + 1, "want"},
		{"empty", write("empty.db", "", 0o600), uid, "not a non-empty regular file"},
		{"a directory", dir, uid, "not a non-empty regular file"},
		{"missing", filepath.Join(dir, "missing.db"), uid, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkOwnFile(tt.path, tt.uid)
			if tt.err == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tt.err)
		})
	}
}

func TestLeaks(t *testing.T) {
	secret := "ci#Pw@dbf/1 x"
	tests := []struct {
		name, output string
		leak         bool
	}{
		{"absent", `{"target":"postgres://u:xxxxx@h/db"}`, false},
		{"raw", "password=" + secret, true},
		{"query-escaped", "postgres://u:" + url.QueryEscape(secret) + "@h/db", true},
		{"path-escaped", "/" + url.PathEscape(secret), true},
		{"as userinfo", "postgres://" + url.UserPassword("u", secret).String() + "@h/db", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := leaks(secret, map[string][]byte{"the logs": []byte(tt.output), "the page": []byte("nothing")})
			if !tt.leak {
				assert.NoError(t, err)
				return
			}
			assert.EqualError(t, err, "the password appears in the logs")
		})
	}
	t.Run("no password, nothing to find", func(t *testing.T) {
		assert.NoError(t, leaks("", map[string][]byte{"the logs": []byte("anything")}))
	})
	t.Run("secretOf", func(t *testing.T) {
		assert.Equal(t, "ci#Pw@dbf/1", secretOf("postgres://dbfallback:ci%23Pw%40dbf%2F1@127.0.0.1:5432/db"))
		assert.Equal(t, "", secretOf("postgres://127.0.0.1/db"))
		assert.Equal(t, "", secretOf("postgres://u@127.0.0.1/db"))
		assert.Equal(t, "", secretOf("::not a url"))
	})
}
