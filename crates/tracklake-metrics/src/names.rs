//! Every metric's name, in one place, with its description and unit.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

pub const EVENTS_RECEIVED: &str = "tracklake_events_received_total";
pub const EVENTS_STORED: &str = "tracklake_events_stored_total";
pub const EVENTS_DUPLICATE: &str = "tracklake_events_duplicate_total";
pub const EVENTS_REJECTED: &str = "tracklake_events_rejected_total";
pub const BOT_EVENTS: &str = "tracklake_bot_events_total";
pub const TABLE_COMMIT_SECONDS: &str = "tracklake_table_commit_seconds";
pub const TABLE_GROUP_EVENTS: &str = "tracklake_table_group_events";
pub const STREAM_BATCHES: &str = "tracklake_stream_batches_total";
pub const STREAM_RECORDS_SIZE: &str = "tracklake_stream_records_size";
pub const DELIVERY_RECORDS: &str = "tracklake_delivery_records_total";
pub const DELIVERY_BYTES: &str = "tracklake_delivery_bytes_total";
pub const DELIVERY_FILES: &str = "tracklake_delivery_files_total";
pub const DELIVERY_FAILED_PUTS: &str = "tracklake_delivery_failed_put_count_total";
pub const DELIVERY_LAG_EVENTS: &str = "tracklake_delivery_lag_events";
pub const DELIVERY_LAG_SECONDS: &str = "tracklake_delivery_lag_seconds";
pub const COMPACTIONS: &str = "tracklake_compactions_total";
pub const COMPACTED_FILES: &str = "tracklake_compacted_files_total";
pub const QUERIES: &str = "tracklake_queries_total";
pub const QUERY_SECONDS: &str = "tracklake_query_seconds";
pub const HTTP_REQUESTS: &str = "tracklake_http_requests_total";
pub const HTTP_SECONDS: &str = "tracklake_http_request_seconds";
pub const HTTP_CONNECTIONS_REFUSED: &str = "tracklake_http_connections_refused_total";
pub const HTTP_CONNECTIONS_OPEN: &str = "tracklake_http_connections_open";
pub const PROCESS_RSS: &str = "process_resident_memory_bytes";
pub const PROCESS_CPU: &str = "process_cpu_seconds_total";
pub const FLAGGED_USERS: &str = "tracklake_flagged_users";
pub const DISK_FREE_BYTES: &str = "tracklake_disk_free_bytes";
pub const DISK_REFUSING: &str = "tracklake_disk_refusing_writes";

/// Every name above, for checks that dashboards use real metrics.
pub const ALL: [&str; 28] = [
    EVENTS_RECEIVED,
    EVENTS_STORED,
    EVENTS_DUPLICATE,
    EVENTS_REJECTED,
    BOT_EVENTS,
    TABLE_COMMIT_SECONDS,
    TABLE_GROUP_EVENTS,
    STREAM_BATCHES,
    STREAM_RECORDS_SIZE,
    DELIVERY_RECORDS,
    DELIVERY_BYTES,
    DELIVERY_FILES,
    DELIVERY_FAILED_PUTS,
    DELIVERY_LAG_EVENTS,
    DELIVERY_LAG_SECONDS,
    COMPACTIONS,
    COMPACTED_FILES,
    QUERIES,
    QUERY_SECONDS,
    HTTP_REQUESTS,
    HTTP_SECONDS,
    HTTP_CONNECTIONS_REFUSED,
    HTTP_CONNECTIONS_OPEN,
    PROCESS_RSS,
    PROCESS_CPU,
    FLAGGED_USERS,
    DISK_FREE_BYTES,
    DISK_REFUSING,
];

pub fn describe() {
    describe_counter!(
        EVENTS_RECEIVED,
        Unit::Count,
        "Events in ingest requests, before validation"
    );
    describe_counter!(
        BOT_EVENTS,
        Unit::Count,
        "Valid events from bots (by kind: ai, search, monitor, headless, crawler); stored, flagged device_is_bot, left out of web reports"
    );
    describe_counter!(
        EVENTS_STORED,
        Unit::Count,
        "Events newly stored in the table (durable)"
    );
    describe_counter!(
        EVENTS_DUPLICATE,
        Unit::Count,
        "Events already stored (same user and event_id)"
    );
    describe_counter!(
        EVENTS_REJECTED,
        Unit::Count,
        "Events rejected by validation, by reason (code)"
    );
    describe_histogram!(
        TABLE_COMMIT_SECONDS,
        Unit::Seconds,
        "Table group commit: write and fsync"
    );
    describe_histogram!(
        TABLE_GROUP_EVENTS,
        Unit::Count,
        "Events per table group commit"
    );
    describe_counter!(
        STREAM_BATCHES,
        Unit::Count,
        "Change-stream batches read by delivery"
    );
    describe_histogram!(
        STREAM_RECORDS_SIZE,
        Unit::Count,
        "Records per change-stream batch (the article's records_size)"
    );
    describe_counter!(
        DELIVERY_RECORDS,
        Unit::Count,
        "Records delivered to the lake"
    );
    describe_counter!(DELIVERY_BYTES, Unit::Bytes, "Bytes of lake files published");
    describe_counter!(DELIVERY_FILES, Unit::Count, "Lake files published");
    describe_counter!(
        DELIVERY_FAILED_PUTS,
        Unit::Count,
        "Failed lake file uploads (the article's failed_put_count)"
    );
    describe_gauge!(
        DISK_FREE_BYTES,
        Unit::Bytes,
        "Free space on the filesystem of the data directory or the local lake (path: data, lake)"
    );
    describe_gauge!(
        DISK_REFUSING,
        Unit::Count,
        "1 while events are refused because a filesystem is under server.min_free_mib"
    );
    describe_gauge!(
        FLAGGED_USERS,
        Unit::Count,
        "Users the last abnormal-behaviour check flagged, by kind (account_sharing, scraping)"
    );
    describe_gauge!(
        DELIVERY_LAG_EVENTS,
        Unit::Count,
        "Events stored but not yet in the lake"
    );
    describe_gauge!(
        DELIVERY_LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest event not yet in the lake"
    );
    describe_counter!(COMPACTIONS, Unit::Count, "Compactions of small lake files");
    describe_counter!(
        COMPACTED_FILES,
        Unit::Count,
        "Lake files merged away by compaction"
    );
    describe_counter!(
        QUERIES,
        Unit::Count,
        "SQL statements run, by outcome (ok, invalid, failed, timeout)"
    );
    describe_histogram!(QUERY_SECONDS, Unit::Seconds, "SQL statement latency");
    describe_counter!(
        HTTP_REQUESTS,
        Unit::Count,
        "HTTP requests by route, method and status"
    );
    describe_histogram!(HTTP_SECONDS, Unit::Seconds, "HTTP request latency by route");
    describe_counter!(
        HTTP_CONNECTIONS_REFUSED,
        Unit::Count,
        "Connections closed at once: server.max_connections were open"
    );
    describe_gauge!(
        HTTP_CONNECTIONS_OPEN,
        Unit::Count,
        "Client connections open now (idle ones included)"
    );
    describe_gauge!(
        PROCESS_RSS,
        Unit::Bytes,
        "Resident memory of the tracklake process"
    );
    describe_gauge!(
        PROCESS_CPU,
        Unit::Seconds,
        "CPU time (user + system) of the tracklake process so far"
    );
}

#[cfg(test)]
mod tests {
    use super::ALL;

    /// The metric names a dashboard's queries use, histogram parts folded.
    fn used(text: &str) -> Vec<String> {
        let mut names = Vec::new();
        for (i, _) in text
            .match_indices("tracklake_")
            .chain(text.match_indices("process_"))
        {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let name = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .map_or(name.clone(), str::to_owned);
            names.push(name);
        }
        names
    }

    #[test]
    fn dashboards_use_only_real_metrics() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        for file in [
            "docs/grafana/tracklake.json",
            "crates/tracklake-server/assets/dashboard.js",
            "docs/METRICS.md",
        ] {
            let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
            if file.ends_with(".json") {
                let _: serde_json::Value =
                    serde_json::from_str(&text).expect("the Grafana dashboard is JSON");
            }
            let unknown: Vec<String> = used(&text)
                .into_iter()
                .filter(|n| !ALL.contains(&n.as_str()))
                .collect();
            assert!(
                unknown.is_empty(),
                "{file} uses unknown metrics: {unknown:?}"
            );
        }
        let grafana =
            std::fs::read_to_string(format!("{root}/docs/grafana/tracklake.json")).unwrap();
        for name in [
            super::EVENTS_RECEIVED,
            super::DELIVERY_RECORDS,
            super::DELIVERY_LAG_SECONDS,
        ] {
            assert!(grafana.contains(name), "the Grafana dashboard lacks {name}");
        }
    }
}
