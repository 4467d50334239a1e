"""The SQL analysts write, in tracklake and in DuckDB, over one lake that
tracklake's own pipeline made. Run by query-vs-duckdb.sh (which makes the
lake and starts `serve`); docs/BENCHMARKS.md has the method and figures.

Usage: python3 sql_vs_duckdb.py URL TABLE_DIR REPEAT [ONLY]

tracklake: `POST URL/v1/query`, timed by the server (`elapsed_ms`: planning
and execution, no HTTP). DuckDB: in this process over the Parquet files of
the Delta table's current version (from its log, so both read the same
files), `TimeZone = 'UTC'`, its default threads (the machine's cores).
Each query: one untimed warm-up, then REPEAT timed runs; the medians are
compared. Both answers must be the same (rows compared as sets, numbers to
six digits, times to the microsecond), or the script fails.
"""
import datetime
import json
import math
import statistics
import sys
import time
import urllib.request

import deltalake
import duckdb

URL, TABLE, REPEAT = sys.argv[1], sys.argv[2], int(sys.argv[3])
ONLY = set(sys.argv[4].split(",")) if len(sys.argv) > 4 and sys.argv[4] else None

WEEK_TL = "event_at >= CAST(current_date - INTERVAL '6' DAY AS TIMESTAMP)"
WEEK_DD = "event_at >= CAST(current_date - INTERVAL 6 DAY AS TIMESTAMP)"


def both(sql):
    """The same text in both dialects, `{week}` and `{interval:N unit}` filled."""
    return (
        sql.replace("{week}", WEEK_TL).replace("{30m}", "INTERVAL '30' MINUTE").replace("{1h}", "INTERVAL '1' HOUR")
        .replace("{29d}", "INTERVAL '29' DAY"),
        sql.replace("{week}", WEEK_DD).replace("{30m}", "INTERVAL 30 MINUTE").replace("{1h}", "INTERVAL 1 HOUR")
        .replace("{29d}", "INTERVAL 29 DAY"),
    )


# name: (shape, tracklake SQL, DuckDB SQL)
QUERIES = {
    "logins_per_day": ("time buckets, a filter", *both(
        "SELECT CAST(event_at AS DATE) AS day, count(*) AS logins FROM events "
        "WHERE event_type = 'login' AND {week} GROUP BY 1 ORDER BY 1")),
    "distinct_ips_per_user": ("distinct count per group, top-N", *both(
        "SELECT user_id, count(DISTINCT ip_address) AS ips FROM events WHERE event_type = 'login' "
        "GROUP BY user_id ORDER BY ips DESC, user_id LIMIT 20")),
    "users_per_device": ("distinct count per group", *both(
        "SELECT device_type, count(*) AS events, count(DISTINCT user_id) AS users FROM events "
        "WHERE {week} GROUP BY 1 ORDER BY 1")),
    "top_materials": (
        "JSON property extraction and grouping",
        "SELECT json_extract_scalar(properties, '$.material_id') AS material, count(*) AS views FROM events "
        "WHERE event_type = 'material-view' GROUP BY 1 ORDER BY views DESC, material LIMIT 10",
        "SELECT json_extract_string(properties, '$.material_id') AS material, count(*) AS views FROM events "
        "WHERE event_type = 'material-view' GROUP BY 1 ORDER BY views DESC, material LIMIT 10"),
    "day_by_browser": ("two dimensions", *both(
        "SELECT CAST(event_at AS DATE) AS day, device_browser AS browser, count(*) AS events FROM events "
        "GROUP BY 1, 2 ORDER BY 1, 2")),
    "top_users": ("top-N", *both(
        "SELECT user_id, count(*) AS events FROM events GROUP BY user_id ORDER BY events DESC, user_id LIMIT 10")),
    "one_user": ("needle by user", *both(
        "SELECT count(*) AS events, min(event_at) AS first, max(event_at) AS last FROM events "
        "WHERE user_id = '{user}'")),
    "one_event": ("needle by event_id", *both(
        "SELECT user_id, event_type, event_at FROM events WHERE event_id = '{event}'")),
    "daily_users_30d": ("time buckets over 30 days, distinct", *both(
        "SELECT CAST(event_at AS DATE) AS day, count(*) AS events, count(DISTINCT user_id) AS users FROM events "
        "WHERE event_at >= CAST(current_date - {29d} AS TIMESTAMP) GROUP BY 1 ORDER BY 1")),
    "hourly_30d": ("time buckets over 30 days", *both(
        "SELECT date_trunc('hour', event_at) AS hour, count(*) AS events FROM events GROUP BY 1 ORDER BY 1")),
    "sessions_per_user": ("window functions over each user's events", *both(
        "SELECT count(*) AS sessions, count(DISTINCT user_id) AS users FROM ("
        "SELECT user_id, event_at, lag(event_at) OVER (PARTITION BY user_id ORDER BY event_at) AS previous "
        "FROM events WHERE {week}) AS t WHERE previous IS NULL OR previous < event_at - {30m}")),
    "login_then_view": ("self-join (funnel steps)", *both(
        "SELECT count(DISTINCT a.user_id) AS users FROM events a JOIN events b ON a.user_id = b.user_id "
        "WHERE a.event_type = 'login' AND b.event_type = 'material-view' AND b.event_at > a.event_at "
        "AND b.event_at <= a.event_at + {1h} AND a.{week} AND b.{week}")),
}


def tracklake(sql):
    request = urllib.request.Request(
        f"{URL}/v1/query", data=json.dumps({"sql": sql}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as answer:
        body = json.load(answer)
    return body["rows"], body["elapsed_ms"]


def normal(value):
    """One cell, comparable across the engines."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T" and value[4] == "-":
        return normal(datetime.datetime.fromisoformat(value.replace("Z", "+00:00")))
    return value


def rows_of(rows, columns=None):
    if columns is None:  # tracklake: objects
        return sorted(json.dumps([normal(v) for v in r.values()]) for r in rows)
    return sorted(json.dumps([normal(v) for v in r]) for r in rows)


files = deltalake.DeltaTable(TABLE).file_uris()
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
listing = ", ".join(f"'{f}'" for f in files)
con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet([{listing}], hive_partitioning = true)")
total = con.execute("SELECT count(*) FROM events").fetchone()[0]
user, event = con.execute(
    "SELECT user_id, event_id FROM events WHERE event_type = 'login' ORDER BY event_id LIMIT 1 OFFSET 1000").fetchone()
threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
print(f"lake: {total:,} events in {len(files)} files (the Delta table's current version); "
      f"duckdb {duckdb.__version__}, {threads} threads; {REPEAT} runs each, medians in ms")
print(f"{'query':<24} {'shape':<42} {'tracklake':>10} {'duckdb':>9} {'ratio':>7}  rows")

ratios, failed = [], []
for name, (shape, tl_sql, dd_sql) in QUERIES.items():
    if ONLY and name not in ONLY:
        continue
    tl_sql = tl_sql.format(user=user, event=event)
    dd_sql = dd_sql.format(user=user, event=event)
    tl_rows, _ = tracklake(tl_sql)  # warm-up
    tl_times = [tracklake(tl_sql)[1] for _ in range(max(REPEAT, 1))]
    cursor = con.execute(dd_sql)
    dd_rows = cursor.fetchall()  # warm-up
    dd_times = []
    for _ in range(max(REPEAT, 1)):
        started = time.perf_counter()
        con.execute(dd_sql).fetchall()
        dd_times.append((time.perf_counter() - started) * 1000)
    tl, dd = statistics.median(tl_times), statistics.median(dd_times)
    ratio = tl / dd
    ratios.append(ratio)
    same = rows_of(tl_rows) == rows_of(dd_rows, True)
    if not same:
        failed.append(name)
    print(f"{name:<24} {shape:<42} {tl:>10.1f} {dd:>9.1f} {ratio:>6.2f}×  {len(dd_rows)}{'' if same else '  ANSWERS DIFFER'}")
    if not same:
        print(f"    tracklake: {rows_of(tl_rows)[:5]}\n    duckdb:    {rows_of(dd_rows, True)[:5]}")

if ratios:
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"geometric mean of the ratios: {geo:.2f}×; the largest {max(ratios):.2f}×")
if failed:
    print(f"the engines answered differently: {', '.join(failed)}", file=sys.stderr)
    sys.exit(1)
