#!/usr/bin/env bash
# The figures of BENCHMARKS.md "SQLite with and without cgo" and "An
# instrumentation wrapper through WithOpenDB", in one run: go-sqlite3 (cgo)
# and the pure-Go engine (CGO_ENABLED=0, puresqlite overlaid into the
# library's package) in alternating rounds, so that load from elsewhere
# falls on both; then benchstat, the binary sizes, and otelsql's cost.
# Needs DBFALLBACK_TEST_DATABASE_URL for the PostgreSQL rows (as .ci/run
# sets it) and benchstat (go install golang.org/x/perf/cmd/benchstat@latest).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"
ROUNDS=${ROUNDS:-3}
COUNT=${COUNT:-2}
out=${OUT:-$(mktemp -d)}
overlay="$out/overlay.json"
printf '{"Replace":{"%s/zz_puresqlite_test.go":"%s/puresqlite/testdata/zz_puresqlite_test.go"}}\n' "$PWD" "$PWD" >"$overlay"
bench='BenchmarkSQLiteEngine|BenchmarkWithOpenDB'
go test -c -o "$out/cgo.test" .
CGO_ENABLED=0 go test -c -overlay "$overlay" -o "$out/pure.test" .
for round in $(seq "$ROUNDS"); do
	echo "round $round of $ROUNDS" >&2
	"$out/cgo.test" -test.run '^$' -test.bench "$bench" -test.count "$COUNT" >>"$out/cgo.txt"
	"$out/pure.test" -test.run '^$' -test.bench "$bench" -test.count "$COUNT" >>"$out/pure.txt"
done
echo "== go-sqlite3 (cgo) against the pure-Go engine (modernc.org/sqlite), same names"
benchstat -col .file "$out/cgo.txt" "$out/pure.txt" || benchstat "$out/cgo.txt" "$out/pure.txt"

echo "== binary size of one program (testdata/nocgo; with the import for the pure-Go engine), -ldflags='-s -w'"
go build -ldflags='-s -w' -o "$out/prog-cgo" ./testdata/nocgo
CGO_ENABLED=0 go build -ldflags='-s -w' -o "$out/prog-nosqlite" ./testdata/nocgo
(cd puresqlite && CGO_ENABLED=0 go build -ldflags='-s -w' -o "$out/prog-pure" ./testdata/sizeprog)
for b in prog-cgo prog-pure prog-nosqlite; do
	printf '%-14s %10d bytes  %s\n' "$b" "$(stat -c %s "$out/$b")" "$(file -b "$out/$b" | cut -d, -f1-5)"
done

echo "== otelsql through WithOpenDB"
go test -run '^$' -bench BenchmarkOtelsql -count $((ROUNDS * COUNT)) ./integration/ >"$out/otelsql.txt"
benchstat "$out/otelsql.txt"
echo "raw results in $out"
