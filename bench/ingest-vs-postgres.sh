#!/usr/bin/env bash
# Durable batch ingest, side by side in one run: the same workload (batches
# of 500 seed-like events from 8 connections, fsync before each answer) into
# PostgreSQL 15 and into tracklake, then the ratio.
#   bench/ingest-vs-postgres.sh            (DURATION=15 seconds by default)
#
# PostgreSQL: a private cluster in a temporary directory (installed with apt
# when missing; run as root, as CI does), fsync and synchronous_commit on,
# shared_buffers 256MB, the table a hand-rolled tracker would make
# (uuid primary key, jsonb properties, an index on (user_id, event_at DESC)),
# loaded by pgbench: one 500-row INSERT of literal rows per transaction.
# tracklake: `serve` at its defaults (delivery to the lake running), loaded by
# `tracklake bench ingest`, which reports the server's memory too.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15}
CONNECTIONS=8
BATCH=500
WORK=$(mktemp -d)
PG_PORT=${PG_PORT:-55432}
TL_PORT=${TL_PORT:-57800}
cleanup() {
  [ -n "${TL_PID:-}" ] && kill "$TL_PID" 2>/dev/null && wait "$TL_PID" 2>/dev/null || true
  [ -d "$WORK/pg" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$PG_BIN" ] || ! command -v pgbench >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq postgresql postgresql-contrib >/dev/null
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
cargo build --release --locked -p tracklake

echo "== PostgreSQL ($("$PG_BIN/postgres" --version))"
chmod 755 "$WORK"
# The cluster, its log and its socket in directories the postgres user owns.
mkdir "$WORK/pg" "$WORK/pg-run" && chown postgres "$WORK/pg" "$WORK/pg-run"
SOCK="$WORK/pg-run"
runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/pg" -A trust >/dev/null
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$SOCK/pg.log" -w start \
  -o "-p $PG_PORT -k $SOCK -c fsync=on -c synchronous_commit=on -c shared_buffers=256MB" >/dev/null
PSQL=(runuser -u postgres -- psql -q -h "$SOCK" -p "$PG_PORT" -d postgres)
"${PSQL[@]}" -c "CREATE TABLE events (
  event_id uuid PRIMARY KEY DEFAULT gen_random_uuid(), user_id bigint NOT NULL,
  event_type text NOT NULL, event_at timestamptz NOT NULL, user_agent text,
  ip_address inet, properties jsonb);
  CREATE INDEX events_user_time ON events (user_id, event_at DESC);"
# Eight different 500-row INSERTs of literal rows (the client sends each
# event, as tracklake's clients do), picked at random by pgbench.
python3 - "$SOCK" "$BATCH" <<'PY'
import json, random, sys, datetime
out, batch = sys.argv[1], int(sys.argv[2])
agent = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
         "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36")
now = datetime.datetime.now(datetime.timezone.utc)
for n in range(8):
    rows = []
    for _ in range(batch):
        at = now - datetime.timedelta(seconds=random.randint(0, 30 * 86400))
        kind = "login" if random.random() < 0.3 else "material-view"
        props = json.dumps({"material_id": f"m{random.randint(1, 5000)}", "plan": "pro"})
        ip = ".".join(str(random.randint(1, 223)) for _ in range(4))
        rows.append(f"({random.randint(1, 100000)}, '{kind}', '{at.isoformat()}', "
                    f"'{agent}', '{ip}', '{props}')")
    with open(f"{out}/insert-{n}.sql", "w") as f:
        f.write("INSERT INTO events (user_id, event_type, event_at, user_agent, ip_address, "
                "properties) VALUES\n" + ",\n".join(rows) + ";\n")
PY
chmod 644 "$SOCK"/insert-*.sql
SCRIPTS=()
for f in "$SOCK"/insert-*.sql; do SCRIPTS+=(-f "$f"); done
PG_OUT=$(runuser -u postgres -- pgbench -n -h "$SOCK" -p "$PG_PORT" -c "$CONNECTIONS" -j 2 \
  -T "$DURATION" "${SCRIPTS[@]}" postgres 2>&1)
PG_TPS=$(echo "$PG_OUT" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
PG_ROWS=$(awk -v t="$PG_TPS" -v b="$BATCH" 'BEGIN { printf "%.0f", t * b }')
echo "pgbench -c $CONNECTIONS, one $BATCH-row INSERT per transaction, $DURATION s: $PG_TPS transactions/s = $PG_ROWS rows/s"
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null

echo "== tracklake"
target/release/tracklake serve --data-dir "$WORK/tracklake" --listen "127.0.0.1:$TL_PORT" \
  >"$WORK/serve.log" 2>&1 &
TL_PID=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$TL_PORT/v1/status" >/dev/null 2>&1 && break
  sleep 0.2
done
TL_OUT=$(target/release/tracklake bench ingest --url "http://127.0.0.1:$TL_PORT" \
  --connections "$CONNECTIONS" --batch "$BATCH" --duration "$DURATION" --pid "$TL_PID")
echo "$TL_OUT"
TL_RATE=$(echo "$TL_OUT" | sed -n 's/.* = \([0-9]*\) events\/s.*/\1/p' | head -1)

echo "== tracklake / PostgreSQL: $(awk -v a="$TL_RATE" -v b="$PG_ROWS" 'BEGIN { printf "%.2f", a / b }')× ($TL_RATE events/s against $PG_ROWS rows/s)"
