#!/usr/bin/env bash
# The report queries in tracklake and in DuckDB, one run, same Parquet files.
#   bench/query-vs-duckdb.sh [DATA_DIR]   (EVENTS=10000000 REPEAT=10 by default)
# The first run generates the lake (a few minutes); later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-bench-query-data}
EVENTS=${EVENTS:-10000000}
REPEAT=${REPEAT:-10}
REPORTS=logins_per_day,events_per_type_per_day,daily_active_users,device_types,device_os,device_browsers

cargo build --release -p tracklake
echo "== tracklake"
target/release/tracklake bench query --data-dir "$DATA" --events "$EVENTS" --repeat "$REPEAT" --reports "$REPORTS"
target/release/tracklake query --data-dir "$DATA" \
  "SELECT CAST(event_at AS DATE) AS day, count(*) AS logins FROM events WHERE event_type = 'login' AND event_at >= CAST(current_date - INTERVAL '6' DAY AS TIMESTAMP) GROUP BY 1 ORDER BY 1" 2>/dev/null | sed 's/^/    /'

echo "== duckdb"
VENV=${TMPDIR:-/tmp}/tracklake-bench-venv
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q duckdb
"$VENV/bin/python" bench/duckdb_reports.py "$DATA/lake" "$REPEAT"
