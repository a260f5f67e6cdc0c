package dbfallback

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Resolution is what [Resolve] found: the primary database (if a source
// held a valid one), every source it looked at with the reason it was not
// used, and the SQLite fallback chain [Open] walks after the primary.
type Resolution struct {
	// Primary is the target from the first source that held a value, when
	// that value is valid. Its zero value (Primary.IsZero()) means no
	// primary: Open goes straight to the fallbacks.
	Primary Target
	// Sources lists every source looked at, in precedence order.
	Sources []Source
	// Fallbacks is the SQLite chain: every usable file location, in the
	// order of Paths, then an in-memory database. Open tries them in turn,
	// so a location that fails to open passes to the next, and memory is
	// used only when no file location works.
	Fallbacks []Target
	// Paths lists every SQLite location considered, with why it was or was
	// not usable.
	Paths []SQLitePath
	// SpaceID is the Hugging Face Space (from SPACE_ID), or "" outside one.
	SpaceID string
	// ConnectTimeout is PGCONNECT_TIMEOUT, or 0 when unset or invalid.
	ConnectTimeout time.Duration
}

// Source is one place a primary URL may come from.
type Source struct {
	// Name says where: "WithURL", "DATABASE_URL", "DATABASE_URL_FILE",
	// "PG* variables".
	Name string
	// Found reports that the source held a value (possibly empty).
	Found bool
	// Detail is a redacted description of the value: for a valid value,
	// the target's redacted form (built from the parsed parts, never from
	// the raw text); for an invalid one, the value with every place a
	// secret can hide masked; for a secret file, its path.
	Detail string
	// Target is the valid target the source held; zero when Err is set.
	Target Target
	// Err says why the source was not used: a *ValidationError, a file
	// error, or ErrShadowed when an earlier source took precedence. Nil for
	// the chosen source and for sources that held nothing.
	Err error
	// Chosen reports the source that supplied Resolution.Primary.
	Chosen bool
}

// SQLitePath is one candidate location for the SQLite fallback file.
type SQLitePath struct {
	// Path is the database file.
	Path string
	// Origin says where the location came from: "WithSQLitePath",
	// "SQLITE_PATH", "/data", "./data" or "TMPDIR".
	Origin string
	// Persistent reports that the operator vouched for the location
	// (an explicit path, or WithPersistent).
	Persistent bool
	// Err says why the location is not usable; nil when it is.
	Err error
	// Chosen reports the first usable location: the file Open tries first
	// (every usable location is in Resolution.Fallbacks).
	Chosen bool
}

// ErrShadowed marks a source that held a value but was not used because an
// earlier source took precedence.
var ErrShadowed = errors.New("dbfallback: shadowed by an earlier source")

// Resolve reads the configuration and returns where [Open] would connect. It
// reads environment variables (through [WithLookupEnv]), secret files,
// file-system metadata and the header of existing SQLite files, and probes
// candidate SQLite directories by creating and removing a small file; it
// never connects to a database and never creates a database or a
// directory. The error is non-nil only when ctx is done: problems with the
// configuration are reported in the Resolution.
//
// Primary sources, first one holding a non-blank value wins even if that
// value is invalid (a broken DATABASE_URL is never silently replaced by
// PGHOST):
//
//  1. [WithURL];
//  2. each variable of [WithEnvVars] (default DATABASE_URL), then its _FILE
//     twin naming a Docker or Kubernetes secret file;
//  3. libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE,
//     PGSSLMODE, …) when PGHOST or PGDATABASE is set.
//
// SQLite locations, in order: [WithSQLitePath] or SQLITE_PATH;
// /data/<name> when /data exists; ./data/<name>; $TMPDIR/<name>. Every
// usable one is in Resolution.Fallbacks, followed by an in-memory
// database. A location is usable when its directory exists or can be
// created, a file can be written there, it is not on a FUSE or network
// filesystem (where SQLite's locking is unsafe), and nothing is there but
// a SQLite database (possibly damaged: Open moves it aside) or an empty
// file. A directory, named pipe, socket or device is never opened, and a
// file that is not SQLite at all is left untouched: both are skipped with
// a reason. Each probe reads at most a file's first 100 bytes and returns
// when ctx is done.
func Resolve(ctx context.Context, opts ...Option) (Resolution, error) {
	o := buildOptions(opts)
	return resolve(ctx, &o)
}

func resolve(ctx context.Context, o *options) (Resolution, error) {
	var r Resolution
	if err := ctx.Err(); err != nil {
		return r, err
	}
	r.SpaceID, r.ConnectTimeout = envDefaults(o)
	r.Sources = resolveSources(o)
	for _, s := range r.Sources {
		if s.Chosen {
			r.Primary = s.Target
		}
	}
	if err := ctx.Err(); err != nil {
		return r, err
	}
	r.Paths = resolvePaths(ctx, o)
	for i := range r.Paths {
		if r.Paths[i].Err == nil {
			r.Paths[i].Chosen = len(r.Fallbacks) == 0
			r.Fallbacks = append(r.Fallbacks, sqliteTarget(r.Paths[i].Path, false, nil))
		}
	}
	r.Fallbacks = append(r.Fallbacks, sqliteTarget("", true, nil))
	return r, ctx.Err()
}

// envDefaults reads SPACE_ID and PGCONNECT_TIMEOUT (0 when unset or
// invalid) through the options' lookup.
func envDefaults(o *options) (spaceID string, connectTimeout time.Duration) {
	spaceID, _ = o.lookupEnv("SPACE_ID")
	if s, ok := o.lookupEnv("PGCONNECT_TIMEOUT"); ok && s != "" {
		if d, err := parseSeconds(s); err == nil {
			connectTimeout = d
		}
	}
	return spaceID, connectTimeout
}

// InSpace reports whether the process runs in a Hugging Face Space.
func (r Resolution) InSpace() bool { return r.SpaceID != "" }

// Ephemeral reports whether data written to t may vanish on restart: an
// in-memory database, or a file in a location the operator did not vouch
// for (see [WithPersistent]). PostgreSQL targets are never ephemeral.
func (r Resolution) Ephemeral(t Target) bool {
	if t.Dialect != SQLite {
		return false
	}
	if t.Memory {
		return true
	}
	if !r.Primary.IsZero() && r.Primary.Dialect == SQLite && r.Primary.Path == t.Path {
		return false // the operator named this file as the database
	}
	for _, p := range r.Paths {
		if p.Path == t.Path {
			return !p.Persistent
		}
	}
	return true
}

// Reason summarises why there is no usable primary, redacted; "" when the
// primary is valid.
func (r Resolution) Reason() string {
	if !r.Primary.IsZero() {
		return ""
	}
	for _, s := range r.Sources {
		if s.Found && s.Err != nil && !errors.Is(s.Err, ErrShadowed) && !errors.Is(s.Err, ErrEmpty) {
			return fmt.Sprintf("%s is not usable: %v", s.Name, s.Err)
		}
	}
	var blank []string
	for _, s := range r.Sources {
		if s.Found && errors.Is(s.Err, ErrEmpty) {
			blank = append(blank, s.Name)
		}
	}
	if len(blank) > 0 {
		return strings.Join(blank, ", ") + " set but empty; no database URL configured"
	}
	return "no database URL configured"
}

func resolveSources(o *options) []Source {
	var out []Source
	chosen := ""
	add := func(s Source) {
		switch {
		case !s.Found:
		case chosen != "":
			s.Target, s.Err = Target{}, fmt.Errorf("%w: %s takes precedence", ErrShadowed, chosen)
		case s.Err == nil:
			s.Chosen = true
			chosen = s.Name
		case !errors.Is(s.Err, ErrEmpty):
			chosen = s.Name // an invalid value still decides: no silent divergence
		}
		out = append(out, s)
	}
	if o.hasURL {
		add(sourceFromValue("WithURL", o.url))
	}
	for _, name := range o.envVars {
		if v, ok := o.lookupEnv(name); ok {
			add(sourceFromValue(name, v))
		} else {
			add(Source{Name: name})
		}
		fileVar := name + "_FILE"
		if path, ok := o.lookupEnv(fileVar); ok {
			if chosen != "" {
				add(Source{Name: fileVar, Found: true, Detail: redactInput(path)})
			} else {
				add(sourceFromFile(name, path))
			}
		} else {
			add(Source{Name: fileVar})
		}
	}
	add(sourceFromPGEnv(o.lookupEnv))
	return out
}

func sourceFromValue(name, value string) Source {
	s := Source{Name: name, Found: true}
	s.Target, s.Err = Validate(value)
	s.Detail = detailOf(s.Target, s.Err, value)
	return s
}

// detailOf describes a value for Source.Detail: a valid one by its
// target's redacted form, an invalid one exactly as its error shows it
// (a bare word or an oversized value is described, not repeated).
func detailOf(t Target, err error, value string) string {
	if err == nil {
		return t.Redacted()
	}
	var verr *ValidationError
	if errors.As(err, &verr) {
		if verr.Input == "" {
			return fmt.Sprintf("<%d bytes, not shown>", len(value))
		}
		return verr.Input
	}
	return redactInput(value)
}

// pgEnvKeys maps libpq variables to connection keywords.
var pgEnvKeys = []struct{ env, key string }{
	{"PGHOST", "host"}, {"PGHOSTADDR", "hostaddr"}, {"PGPORT", "port"}, {"PGDATABASE", "dbname"},
	{"PGUSER", "user"}, {"PGPASSWORD", "password"}, {"PGSSLMODE", "sslmode"},
	{"PGSSLROOTCERT", "sslrootcert"}, {"PGSSLCERT", "sslcert"}, {"PGSSLKEY", "sslkey"},
	{"PGAPPNAME", "application_name"}, {"PGCONNECT_TIMEOUT", "connect_timeout"},
	{"PGSSLPASSWORD", "sslpassword"}, {"PGTARGETSESSIONATTRS", "target_session_attrs"}, {"PGOPTIONS", "options"},
	{"PGCHANNELBINDING", "channel_binding"}, {"PGSSLNEGOTIATION", "sslnegotiation"},
	{"PGREQUIREAUTH", "require_auth"}, {"PGTZ", "timezone"},
}

// sourceFromPGEnv builds a target from libpq variables when PGHOST or
// PGDATABASE is set.
func sourceFromPGEnv(lookup func(string) (string, bool)) Source {
	s := Source{Name: "PG* variables"}
	host, _ := lookup("PGHOST")
	db, _ := lookup("PGDATABASE")
	if strings.TrimSpace(host) == "" && strings.TrimSpace(db) == "" {
		return s
	}
	s.Found = true
	var settings []setting
	var detail []string
	for _, kv := range pgEnvKeys {
		val, ok := lookup(kv.env)
		if !ok || val == "" {
			continue
		}
		settings = append(settings, setting{kv.key, val})
		shown := redactedMask
		if !isSecretKey(kv.key) {
			shown = redactInput(val) // a pasted URL or key=value line may hold one too
		}
		detail = append(detail, kv.env+"="+shown)
	}
	s.Detail = strings.Join(detail, " ")
	v := &validation{raw: s.Detail}
	for _, st := range settings {
		if isSecretKey(st.key) {
			continue
		}
		if err := v.checkTemplates(st.value); err != nil {
			s.Err = err
			return s
		}
	}
	s.Target, s.Err = v.buildPostgres(settings, "PG* variables")
	if s.Err == nil {
		s.Target.Notes = v.notes
	}
	return s
}

func resolvePaths(ctx context.Context, o *options) []SQLitePath {
	var out []SQLitePath
	name := o.sqliteName
	if name == "" {
		name = "app.db"
	}
	add := func(origin, path string, persistent bool, err error) {
		if err == nil {
			err = sqliteFileUsable(ctx, path, o.fsType)
		}
		out = append(out, SQLitePath{Path: path, Origin: origin, Persistent: persistent || o.persistent, Err: err})
	}
	if o.sqlitePath != "" {
		p, err := explicitSQLitePath(o.sqlitePath, name)
		add("WithSQLitePath", p, true, err)
	} else if v, ok := o.lookupEnv("SQLITE_PATH"); ok && strings.TrimSpace(v) != "" {
		p, err := explicitSQLitePath(v, name)
		add("SQLITE_PATH", p, true, err)
	}
	if o.dataDir != "" {
		if st, err := os.Stat(o.dataDir); err == nil && st.IsDir() {
			add(o.dataDir, filepath.Join(o.dataDir, name), false, nil)
		}
	}
	add("./data", filepath.Join("data", name), false, nil)
	tmp, ok := o.lookupEnv("TMPDIR")
	if !ok || tmp == "" {
		tmp = "/tmp"
	}
	add("TMPDIR", filepath.Join(tmp, name), false, nil)
	return out
}

// explicitSQLitePath accepts a file path, a directory (to hold name) or a
// SQLite URL. A value that is not usable is returned redacted, with the
// reason: a database URL with a password put in SQLITE_PATH by mistake is
// reported, never echoed, and a path that reads like it holds a secret
// (user:password@…, password=…) is refused rather than created.
func explicitSQLitePath(value, name string) (string, error) {
	value = strings.TrimSpace(value)
	if value == ":memory:" {
		return value, fmt.Errorf("dbfallback: SQLite path %s does not name a SQLite file (the in-memory database is already the last fallback)", value)
	}
	if _, _, hasScheme := splitScheme(value); hasScheme && len(value) > 2 && value[1] != ':' {
		t, err := Validate(value)
		if err != nil {
			return redactInput(value), err
		}
		if t.Dialect != SQLite || t.Memory {
			return t.Redacted(), fmt.Errorf("dbfallback: SQLite path %s does not name a SQLite file", t)
		}
		value = t.Path
	} else if shown := maskSecrets(value); shown != value {
		shown = shorten(shown)
		return shown, fmt.Errorf("dbfallback: SQLite path %q reads like a connection string with a secret, not a file path", shown)
	}
	if st, err := os.Stat(value); err == nil && st.IsDir() {
		return filepath.Join(value, name), nil
	}
	return value, nil
}

// sqliteFileUsable reports why SQLite cannot keep a database at path, or
// nil. It creates nothing that outlives the call, never opens a
// directory, FIFO, socket or device, and returns by the time ctx is done
// (see sqlite_files.go).
func sqliteFileUsable(ctx context.Context, path string, fsType func(string) string) error {
	s, err := inspectSQLiteFile(ctx, path)
	if err != nil {
		return fmt.Errorf("dbfallback: %s: %w", path, err)
	}
	if err := s.skip(path); err != nil {
		return err
	}
	_, err = withinProbe(ctx, func() (struct{}, error) { return struct{}{}, locationWritable(path, s.info != nil, fsType) })
	return err
}

// locationWritable checks that the existing file at path (if any) opens
// for writing and that the nearest existing directory takes new files and
// is on a local filesystem.
func locationWritable(path string, exists bool, fsType func(string) string) error {
	if exists {
		f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Gone since it was inspected: another process is moving a
			// damaged database aside. The directory decides.
		case err != nil:
			return fmt.Errorf("dbfallback: %s cannot be opened for writing: %w", path, err)
		default:
			f.Close()
		}
	}
	dir := filepath.Dir(path)
	existing := dir
	for {
		st, err := os.Stat(existing)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("dbfallback: %s is not a directory", existing)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("dbfallback: %s: %w", existing, err)
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			return fmt.Errorf("dbfallback: no existing parent directory for %s", dir)
		}
		existing = parent
	}
	if kind := fsType(existing); kind != "" {
		return fmt.Errorf("dbfallback: %s is on a %s filesystem, where SQLite locking and WAL are unsafe", existing, kind)
	}
	probe, err := os.CreateTemp(existing, ".dbfallback-probe-*")
	if err != nil {
		return fmt.Errorf("dbfallback: %s is not writable: %w", existing, unwrapPathError(err))
	}
	name := probe.Name()
	probe.Close()
	os.Remove(name)
	return nil
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// parseSeconds reads a libpq timeout (connect_timeout, PGCONNECT_TIMEOUT):
// a non-negative whole number of seconds, 1 meaning one second as in pgx.
func parseSeconds(s string) (time.Duration, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("dbfallback: %q is not a whole number of seconds", s)
	}
	return time.Duration(n) * time.Second, nil
}
