package main

import (
	"bytes"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// Hugging Face's Space configuration reference: the README's YAML front
// matter. Colors come from a fixed list; short_description has at most 60
// characters.
var (
	hfColors = []string{"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
	hfKeys   = map[string]bool{
		"title": true, "emoji": true, "colorFrom": true, "colorTo": true, "sdk": true, "sdk_version": true,
		"python_version": true, "app_file": true, "app_port": true, "base_path": true, "fullWidth": true,
		"header": true, "short_description": true, "models": true, "datasets": true, "tags": true,
		"thumbnail": true, "pinned": true, "hf_oauth": true, "hf_oauth_scopes": true, "hf_oauth_expiration_minutes": true,
		"disable_embedding": true, "startup_duration_timeout": true, "custom_headers": true,
		"preload_from_hub": true, "license": true, "suggested_hardware": true, "suggested_storage": true,
	}
)

func TestSpaceFrontMatter(t *testing.T) {
	data, err := os.ReadFile("README.md")
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(data, []byte("---\n")), "the front matter opens the README")
	end := bytes.Index(data[4:], []byte("\n---\n"))
	require.Positive(t, end, "the front matter is closed by ---")
	var fm map[string]any
	require.NoError(t, yaml.Unmarshal(data[4:4+end], &fm))

	for k := range fm {
		assert.Truef(t, hfKeys[k], "unknown Space configuration key %q", k)
	}
	assert.Equal(t, "docker", fm["sdk"])
	assert.Equal(t, 7860, fm["app_port"])
	title, _ := fm["title"].(string)
	assert.NotEmpty(t, strings.TrimSpace(title))
	emoji, _ := fm["emoji"].(string)
	require.NotEmpty(t, emoji)
	r, _ := utf8.DecodeRuneInString(emoji)
	assert.True(t, r > 0x2000 && !unicode.IsLetter(r), "emoji is an emoji: %q", emoji)
	assert.LessOrEqual(t, utf8.RuneCountInString(emoji), 3, "a single emoji")
	for _, k := range []string{"colorFrom", "colorTo"} {
		assert.Containsf(t, hfColors, fm[k], "%s must be one of %v", k, hfColors)
	}
	desc, _ := fm["short_description"].(string)
	assert.NotEmpty(t, desc)
	assert.LessOrEqual(t, utf8.RuneCountInString(desc), 60)
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	df := string(data)
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1)
	require.GreaterOrEqual(t, len(froms), 2, "multi-stage")
	m := regexp.MustCompile(`^golang:1\.(\d+)`).FindStringSubmatch(froms[0][1])
	require.NotNil(t, m, "the builder is a Go image: %s", froms[0][1])
	gomod, err := os.ReadFile("go.mod")
	require.NoError(t, err)
	want := regexp.MustCompile(`(?m)^go 1\.(\d+)`).FindSubmatch(gomod)
	require.NotNil(t, want)
	have, _ := strconv.Atoi(m[1])
	need, _ := strconv.Atoi(string(want[1]))
	assert.GreaterOrEqual(t, have, need, "the builder's Go is no older than go.mod needs")
	assert.Contains(t, df, "CGO_ENABLED=1")
	assert.Regexp(t, `(?m)^RUN go build .*github.com/mattn/go-sqlite3`, df, "go-sqlite3 compiles in its own layer")
	deps := strings.Index(df, "github.com/mattn/go-sqlite3")
	for _, code := range []string{"COPY dbfallback/*.go", "COPY dbfallback/internal/", "COPY *.go"} {
		at := strings.Index(df, code)
		assert.Positivef(t, at, "%s: the library's and the server's Go files are copied", code)
		assert.Lessf(t, deps, at, "go-sqlite3 builds before %s", code)
	}
	assert.Less(t, strings.Index(df, "COPY go.work"), deps, "the dependency build sees the workspace")
	assert.NotContains(t, df, "COPY . .", "only the files the build uses are copied")
	assert.NotRegexp(t, `(?m)^#\s*syntax=`, df, "no syntax line: BuildKit would fetch a frontend image from a registry")
	assert.Contains(t, df, "GOPROXY=off", "the build never fetches a module")
	assert.Contains(t, df, "--uid 1000")
	assert.Regexp(t, `(?m)^USER user$`, df)
	assert.Regexp(t, `(?m)^EXPOSE 7860$`, df)
	assert.Regexp(t, `(?m)^CMD \[`, df)
	assert.NotContains(t, df, "docker-compose")
}
