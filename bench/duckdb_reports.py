"""Times tracklake's built-in report queries in DuckDB over the same Parquet
lake, for the comparison in docs/BENCHMARKS.md. Run by query-vs-duckdb.sh.

Usage: python3 duckdb_reports.py LAKE_DIR REPEAT
"""
import statistics
import sys
import time

import duckdb

LAKE, REPEAT = sys.argv[1], int(sys.argv[2])
WEEK = "event_at >= CAST(current_date - INTERVAL 6 DAY AS TIMESTAMP)"
REPORTS = {
    "logins_per_day": f"""SELECT CAST(event_at AS DATE) AS day, count(*) AS logins FROM events
        WHERE event_type = 'login' AND {WEEK} GROUP BY 1 ORDER BY 1""",
    "events_per_type_per_day": f"""SELECT CAST(event_at AS DATE) AS day, event_type, count(*) AS events
        FROM events WHERE {WEEK} GROUP BY 1, 2 ORDER BY 1, 2""",
    "daily_active_users": """SELECT CAST(event_at AS DATE) AS day, count(DISTINCT user_id) AS users FROM events
        WHERE event_at >= CAST(current_date - INTERVAL 29 DAY AS TIMESTAMP) GROUP BY 1 ORDER BY 1""",
    "device_types": f"""SELECT device_type, count(*) AS events, count(DISTINCT user_id) AS users FROM events
        WHERE {WEEK} GROUP BY 1 ORDER BY events DESC, device_type""",
    "device_os": f"""SELECT coalesce(device_os, 'Other') AS os, count(*) AS events, count(DISTINCT user_id) AS users
        FROM events WHERE {WEEK} GROUP BY 1 ORDER BY events DESC, os""",
    "device_browsers": f"""SELECT coalesce(device_browser, 'Other') AS browser, count(*) AS events,
        count(DISTINCT user_id) AS users FROM events WHERE {WEEK} GROUP BY 1 ORDER BY events DESC, browser""",
}

con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
con.execute(
    f"CREATE VIEW events AS SELECT * FROM read_parquet('{LAKE}/events/*/*.parquet', hive_partitioning = true)"
)
print(f"duckdb {duckdb.__version__}, {con.execute('SELECT current_setting(?)', ['threads']).fetchone()[0]} threads")
print(f"{'report':<26} {'min ms':>9} {'median':>9} {'max':>9}  rows")
for name, sql in REPORTS.items():
    rows = con.execute(sql).fetchall()  # warm-up, untimed
    times = []
    for _ in range(max(REPEAT, 1)):
        started = time.perf_counter()
        con.execute(sql).fetchall()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    print(f"{name:<26} {times[0]:>9.1f} {statistics.median(times):>9.1f} {times[-1]:>9.1f}  {len(rows)}")
    if name == "logins_per_day":
        for row in rows:
            print(f"    {row[0]} {row[1]}")
