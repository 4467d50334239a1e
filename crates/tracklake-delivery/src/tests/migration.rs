//! A lake of the layout before the Delta log, converted without loss.

use super::*;
use crate::lake::{FileName, TABLE_DIR};
use crate::{CONSUMER, Error};

/// Puts the Parquet file of changes `first..=last` (events `e<first-1>`…),
/// less `left_out`, under its name of the earlier layout.
async fn put_legacy(lake: &Lake, first: u64, last: u64, version: u32, left_out: &[&str]) {
    let events: Vec<Event> = events(first as u32 - 1..last as u32, |_| 20)
        .into_iter()
        .filter(|e| !left_out.contains(&e.event_id.as_str()))
        .collect();
    let refs: Vec<&Event> = events.iter().collect();
    let name = FileName {
        partition: "dt=2026-11-20".into(),
        first,
        last,
        version,
        extension: "parquet".into(),
    };
    let body = crate::encode(&refs, Format::Parquet, false).unwrap();
    lake.publish(&name.path(), body.into()).await.unwrap();
}

/// Plain files named by change range: a compaction's result beside its
/// sources, an erasure's second version beside its first, the files of a
/// delivery that never finished, and the stream position in the table.
/// Delivery converts the lake at start: every delivered event is in it
/// once, the unfinished delivery is made again from the change log, and
/// the superseded files are gone.
#[tokio::test]
async fn a_lake_of_the_earlier_layout_is_converted_without_loss() {
    let s = setup(LakeConfig::default());
    s.table.put(events(0..40, |_| 20)).await.unwrap();
    put_legacy(&s.lake, 1, 10, 0, &[]).await;
    put_legacy(&s.lake, 11, 20, 0, &[]).await;
    put_legacy(&s.lake, 1, 20, 0, &[]).await;
    put_legacy(&s.lake, 21, 30, 0, &[]).await;
    // e25 was erased from 21..=30: version 1 holds the rest.
    put_legacy(&s.lake, 21, 30, 1, &["e25"]).await;
    // Delivery of 31..=40 put its file, then stopped before the checkpoint.
    put_legacy(&s.lake, 31, 40, 0, &[]).await;
    s.table.save_checkpoint(CONSUMER, 30).await.unwrap();
    assert!(matches!(
        s.lake.snapshot().await,
        Err(Error::NeedsMigration(_))
    ));

    s.deliver(900).stop().await.unwrap();

    let counts = counts(&s.lake).await;
    assert_eq!(counts.len(), 39, "{counts:?}");
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    assert!(!counts.contains_key("e25"));
    let snapshot = s.lake.snapshot().await.unwrap();
    assert_eq!(snapshot.delivered, Some(40));
    let mut in_log: Vec<String> = snapshot.files.iter().map(|f| f.path.to_string()).collect();
    in_log.sort();
    let on_disk: Vec<String> = s
        .lake
        .files()
        .await
        .unwrap()
        .iter()
        .map(|f| f.location.to_string())
        .collect();
    assert_eq!(in_log, on_disk, "superseded files were left behind");
    assert!(in_log.contains(&format!(
        "{TABLE_DIR}/dt=2026-11-20/part-00000000000000000001-00000000000000000020.parquet"
    )));
    assert!(in_log.contains(&format!(
        "{TABLE_DIR}/dt=2026-11-20/part-00000000000000000021-00000000000000000030-v1.parquet"
    )));
    let operations: Vec<String> = s
        .lake
        .history(10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.operation)
        .collect();
    assert_eq!(operations, ["STREAMING UPDATE", "CREATE TABLE"]);
}

/// A file in the lake that tracklake did not write stops the conversion
/// with its name, and nothing is changed.
#[tokio::test]
async fn a_stranger_file_stops_the_conversion() {
    let s = setup(LakeConfig::default());
    put_legacy(&s.lake, 1, 10, 0, &[]).await;
    let stranger =
        object_store::path::Path::from(format!("{TABLE_DIR}/dt=2026-11-20/mine.parquet"));
    s.lake
        .publish(&stranger, bytes::Bytes::from_static(b"PAR1"))
        .await
        .unwrap();
    let error = s.lake.prepare(1, 10).await.unwrap_err().to_string();
    assert!(
        error.contains("mine.parquet is not a file tracklake wrote"),
        "{error}"
    );
    assert_eq!(s.lake.files().await.unwrap().len(), 2);
    assert!(matches!(
        s.lake.snapshot().await,
        Err(Error::NeedsMigration(_))
    ));
}
