#!/usr/bin/env bash
# The SQL analysts write, in tracklake and in DuckDB, on a lake made by
# tracklake's own pipeline: `seed` posts USERS × PER_USER events over 30
# days to `serve`, which delivers them and compacts the files; then
# bench/sql_vs_duckdb.py runs each query in both and checks the answers.
#   bench/query-vs-duckdb.sh [DATA_DIR] [QUERY,…]
#   (USERS=100000 PER_USER=50 REPEAT=10 by default: 5 M events;
#    TRACKLAKE=path runs that binary instead of building one)
# The first run makes the lake (a few minutes); later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-bench-sql-data}
ONLY=${2:-}
USERS=${USERS:-100000}
PER_USER=${PER_USER:-50}
REPEAT=${REPEAT:-10}
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"

if [ -z "${TRACKLAKE:-}" ]; then
  cargo build --release -p tracklake
  TRACKLAKE=target/release/tracklake
fi
VENV=${TMPDIR:-/tmp}/tracklake-bench-venv
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c 'import duckdb, deltalake' 2>/dev/null || "$VENV/bin/pip" install -q duckdb deltalake

mkdir -p "$DATA"
# Compaction every 5 s instead of 5 min, so the lake settles quickly.
printf '[compaction]\ninterval_secs = 5\n' >"$DATA/bench.toml"
"$TRACKLAKE" serve --data-dir "$DATA" --config "$DATA/bench.toml" --listen "127.0.0.1:$PORT" \
  >"$DATA/serve.log" 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null; wait $SERVE 2>/dev/null || true' EXIT
for _ in $(seq 300); do curl -fsS "$URL/readyz" >/dev/null 2>&1 && break; sleep 0.2; done

if [ ! -e "$DATA/seeded" ]; then
  echo "== seeding $((USERS * PER_USER)) events through serve"
  "$TRACKLAKE" seed --users "$USERS" --events-per-user "$PER_USER" --days 30 \
    --types login,material-view --concurrency 8 --url "$URL"
  touch "$DATA/seeded"
fi

echo "== waiting for delivery and compaction to finish"
"$VENV/bin/python" - "$URL" "$DATA/lake/events" <<'PY'
import json, sys, time, urllib.request
import deltalake
url, table = sys.argv[1], sys.argv[2]
last, quiet = None, 0
while quiet < 4:  # the table unchanged for 4 polls of 5 s, and nothing left to deliver
    time.sleep(5)
    status = json.load(urllib.request.urlopen(f"{url}/v1/status"))
    t = deltalake.DeltaTable(table)
    now = (t.version(), len(t.file_uris()))
    lag = status["delivery"]["lag_events"]
    quiet = quiet + 1 if now == last and lag == 0 else 0
    last = now
    print(f"  version {now[0]}, {now[1]} files, {lag} events to deliver", flush=True)
PY

echo "== tracklake and DuckDB"
"$VENV/bin/python" bench/sql_vs_duckdb.py "$URL" "$DATA/lake/events" "$REPEAT" "$ONLY"
