package main

import (
	"bytes"
	"context"
	"html/template"
	"net/http"
	"time"

	"github.com/dbfallback/dbfallback"
)

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Notes · dbfallback on a Space</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #1f2328; }
.badge { display: inline-block; padding: .1rem .5rem; border-radius: 1rem; font-size: .85rem; }
.ok { background: #dafbe1; } .warn { background: #fff8c5; } .bad { background: #ffebe9; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
dt { font-weight: 600; } code { font-size: .9rem; word-break: break-all; }
li { margin: .5rem 0; }
</style>
</head>
<body>
<h1>Notes</h1>
{{if .Ready}}
<p>Database: <span id="dialect" class="badge {{if .Health.Fallback}}warn{{else}}ok{{end}}">{{.Health.Dialect}}</span>
{{if eq .Health.Status "up"}}<span class="badge ok">up</span>{{else}}<span class="badge bad">down</span>{{end}}
{{if .Health.Ephemeral}}<span id="ephemeral" class="badge warn">ephemeral: notes vanish when the Space restarts{{if not .Health.Snapshot}} (mount a bucket and set DBFALLBACK_SNAPSHOT_DIR){{end}}</span>{{end}}</p>
<dl>
<dt>In use</dt><dd><code id="target">{{.Health.Target}}</code></dd>
<dt>Fallback</dt><dd id="fallback">{{if .Health.Fallback}}yes{{else}}no{{end}}</dd>
{{with .Health.Reason}}<dt>Why</dt><dd id="reason">{{.}}</dd>{{end}}
<dt>Ping</dt><dd>{{printf "%.1f" .Health.LatencyMS}} ms</dd>
{{with .Health.Snapshot}}<dt>Snapshot</dt><dd id="snapshot">{{if .Last}}last one {{printf "%.0f" .AgeSeconds}} s ago ({{.Size}} bytes){{else}}none yet{{end}}, {{.State}}{{with .LastError}}: {{.}}{{end}}{{with .Off}}: {{.}}{{end}}{{with .Warning}} <span class="badge warn">{{.}}</span>{{end}}
{{with .Restored}}<br>restored at start from {{.}}{{end}}</dd>{{end}}
</dl>
<h2>Latest notes</h2>
{{if .Notes}}<ul id="notes">{{range .Notes}}<li><strong>{{.Title}}</strong>{{with .Body}} — {{.}}{{end}}</li>{{end}}</ul>
{{else}}<p id="notes">No notes yet. <code>curl -X POST -d '{"title":"hello"}' $SPACE_URL/api/notes</code></p>{{end}}
{{else}}
<p id="dialect" class="badge warn">starting: the database is opening</p>
{{end}}
</body>
</html>
`))

// page serves the HTML status page for GET and HEAD /.
func (a *app) page(w http.ResponseWriter, r *http.Request) {
	data := struct {
		Ready  bool
		Health dbfallback.Health
		Notes  []note
	}{}
	if db := a.db.Load(); db != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		data.Ready = true
		data.Health = db.Health(ctx)
		if list, err := listNotes(ctx, db.DB, 20); err == nil {
			data.Notes = list
		}
	}
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, data); err != nil {
		a.internal(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}
