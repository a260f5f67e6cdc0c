package main

import (
	"fmt"
	"net/url"
	"time"

	"github.com/dbfallback/dbfallback"
)

const (
	// spacePort is the port a Space's front matter names (app_port).
	spacePort = 7860
	// spaceUID is the user Hugging Face runs a Space's container as.
	spaceUID = 1000
	// spaceID is the Space the checks pretend to be.
	spaceID = "dbfallback-ci/notes"
	// connectTimeout is dbfallback's default connect timeout, which the
	// silent primary must cost.
	connectTimeout = 5 * time.Second
	// stopGrace is how long SIGTERM may take before podman kills.
	stopGrace = 5 * time.Second
	// silentSecret is the password of the silent primary's URL.
	silentSecret = "Imagecheck-S3cret#/"
)

// spaceEnv is what Hugging Face sets in a Space's container (here a Space
// dbfallback-ci/notes on the free CPU tier), as documented under "Helper
// environment variables" in https://huggingface.co/docs/hub/spaces-overview.
// Secrets and variables the owner adds come on top (DATABASE_URL below).
func spaceEnv() []string {
	return []string{
		"SPACE_ID=" + spaceID,
		"SPACE_AUTHOR_NAME=dbfallback-ci",
		"SPACE_REPO_NAME=notes",
		"SPACE_TITLE=dbfallback notes",
		"SPACE_HOST=dbfallback-ci-notes.hf.space",
		"SPACE_CREATOR_USER_ID=000000000000000000000001",
		"CPU_CORES=2",
		"MEMORY=16Gi",
	}
}

// scenario is one run of the image.
type scenario struct {
	name string
	// databaseURL is the DATABASE_URL secret, "" for none; "{silent}"
	// stands for the silent primary's address.
	databaseURL string
	// env holds more variables the Space's owner set (NAME=value).
	env []string
	// ready is what /readyz must report once the database is open.
	ready readiness
	// readyAfter is the least time /readyz may take to answer 200.
	readyAfter time.Duration
	// stopEarly sends SIGTERM while the primary is still being tried.
	stopEarly bool
	// sqliteFile is where the SQLite file must be, inside the container
	// (relative to its working directory), owned by the Space's user and
	// mode 0600; "" when the database is not SQLite.
	sqliteFile string
	// persistentData mounts a directory owned by the Space's user at
	// /data, as persistent storage is on a Space, and checks that a note
	// outlives the container: a second one on the same /data has it.
	persistentData bool
	// baseline copies the server's binary out of the container, to run it
	// outside as the baseline of the figures.
	baseline bool
}

// scenarios lists the runs, in order; pg is a reachable PostgreSQL URL.
func scenarios(pg string) []scenario {
	return []scenario{{
		name:       "sqlite",
		ready:      readiness{dialect: dbfallback.SQLite, fallback: true, ephemeral: true, target: "data/notes.db"},
		sqliteFile: "data/notes.db",
		baseline:   true,
	}, {
		name:        "postgres",
		databaseURL: pg,
		ready:       readiness{dialect: dbfallback.Postgres},
	}, {
		name:        "silent-primary",
		databaseURL: "postgres://space:" + url.QueryEscape(silentSecret) + "@{silent}/notes",
		// The reason names the Space: its hint about blocked ports.
		ready:      readiness{dialect: dbfallback.SQLite, fallback: true, ephemeral: true, reason: spaceID},
		readyAfter: connectTimeout,
		sqliteFile: "data/notes.db",
	}, {
		name:        "sigterm-while-opening",
		databaseURL: "postgres://space:" + url.QueryEscape(silentSecret) + "@{silent}/notes",
		stopEarly:   true,
	}, {
		// The Space's README: with persistent storage, set SQLITE_PATH.
		name:           "persistent-storage",
		env:            []string{"SQLITE_PATH=/data/notes.db"},
		ready:          readiness{dialect: dbfallback.SQLite, fallback: true, target: "/data/notes.db"},
		sqliteFile:     "/data/notes.db",
		persistentData: true,
	}}
}

// secretOf returns the password of a database URL, "" when it has none.
func secretOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return ""
	}
	p, _ := u.User.Password()
	return p
}

// figures are one run's measurements, from the start of `podman run` (or
// of the process, outside a container).
type figures struct {
	runReturned, healthz, readyz, stop time.Duration
	rss                                int64
	// binary is the server's executable copied out of the container.
	binary string
	// kept is a note left for the next container on the same /data.
	kept note
}

func (f figures) String() string {
	s := fmt.Sprintf("/healthz 200 at %s", secs(f.healthz))
	if f.runReturned > 0 {
		s = fmt.Sprintf("podman run returned %s, ", secs(f.runReturned)) + s
	}
	if f.readyz > 0 {
		s += fmt.Sprintf(", /readyz 200 at %s", secs(f.readyz))
	}
	if f.rss > 0 {
		s += fmt.Sprintf(", idle RSS %.1f MB", float64(f.rss)/(1<<20))
	}
	return s + fmt.Sprintf(", SIGTERM to exit 0 in %s", secs(f.stop))
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }
