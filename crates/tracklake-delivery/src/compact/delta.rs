//! Compaction of a Delta lake: per partition, small files are packed into
//! bins up to the target size; each bin becomes one file sorted by
//! `user_id` and `event_at`, committed in place of its sources.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_ord::sort::{SortColumn, lexsort_to_indices};
use parquet::arrow::ArrowWriter;

use crate::encode::{SCHEMA, parquet_properties};
use crate::lake::{LakeFile, NewFile, Operation, Update, partition_of, range_of};
use crate::rewrite::{READ_ROWS, parquet_batches};
use crate::{CompactionConfig, Error, Lake, Status};

/// Rows sorted together: a row group of the merged file. Bounds the memory
/// a merge holds decoded (about 400 bytes a row, held twice while sorting;
/// a run may pass it by a read batch, `READ_ROWS`).
const SORT_ROWS: usize = 64 * 1024;

pub(super) async fn compact(
    lake: &Lake,
    config: &CompactionConfig,
    status: &Status,
) -> Result<(), Error> {
    let target = config.target_size_mib.max(1) * 1024 * 1024;
    let mut small: BTreeMap<_, Vec<LakeFile>> = BTreeMap::new();
    for file in lake.snapshot().await?.files {
        if file.size < target / 2 {
            small.entry(file.day).or_default().push(file);
        }
    }
    for files in small.into_values() {
        for bin in bins(files, target, config.min_files.max(2)) {
            merge(lake, bin, status).await?;
        }
    }
    Ok(())
}

/// Files packed in path order (about delivery order) into bins of at most
/// `target` bytes, each of at least `min_files` files.
fn bins(mut files: Vec<LakeFile>, target: u64, min_files: usize) -> Vec<Vec<LakeFile>> {
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut bins: Vec<Vec<LakeFile>> = vec![Vec::new()];
    let mut size = 0;
    for file in files {
        if size + file.size > target && !bins.last().is_some_and(Vec::is_empty) {
            bins.push(Vec::new());
            size = 0;
        }
        size += file.size;
        if let Some(bin) = bins.last_mut() {
            bin.push(file);
        }
    }
    bins.retain(|b| b.len() >= min_files);
    bins
}

async fn merge(lake: &Lake, sources: Vec<LakeFile>, status: &Status) -> Result<(), Error> {
    // The sources are read one at a time while the merge decodes the one
    // before: a bin holds up to `target_size_mib` of files, and holding
    // them all at once took a merge of 5 M events to 521 MB.
    let (send, bodies) = tokio::sync::mpsc::channel(1);
    let merging = tokio::task::spawn_blocking(move || merge_sorted(bodies, SORT_ROWS));
    let read = async {
        for file in &sources {
            if send.send(lake.read(&file.path).await?).await.is_err() {
                break; // the merge failed: its error says why
            }
        }
        Ok::<_, Error>(())
    }
    .await;
    drop(send);
    let merged = merging.await.map_err(|e| Error::Task(e.to_string()))?;
    read?;
    let (body, rows) = merged?;
    let expected: Option<u64> = sources.iter().map(LakeFile::rows).sum();
    if let Some(expected) = expected.filter(|n| *n != rows as u64) {
        return Err(Error::Lake(format!(
            "a merge of {} files made {rows} rows of {expected}; nothing was committed",
            sources.len()
        )));
    }
    let ranges: Vec<(u64, u64)> = sources.iter().filter_map(|f| range_of(&f.path)).collect();
    let first = ranges.iter().map(|r| r.0).min().unwrap_or(0);
    let last = ranges.iter().map(|r| r.1).max().unwrap_or(0);
    let partition = partition_of(&sources[0].path)
        .ok_or_else(|| Error::Lake(format!("{} is in no partition", sources[0].path)))?
        .to_owned();
    let path = lake.file_path(&partition, first, last);
    let body = bytes::Bytes::from(body);
    let file = NewFile::parquet(path.clone(), sources[0].day, &body)?;
    let bytes = body.len();
    lake.publish(&path, body).await?;
    let merged = sources.len();
    lake.commit(Update {
        operation: Operation::Compact,
        add: vec![file],
        remove: sources,
        delivered_through: None,
    })
    .await?;
    status.compactions.fetch_add(1, Ordering::Relaxed);
    status
        .compacted_files
        .fetch_add(merged as u64, Ordering::Relaxed);
    tracing::info!(%partition, files = merged, rows, bytes, "compacted");
    Ok(())
}

/// Parquet `sources` as one file, in row groups of up to `sort_rows` rows
/// (and a read batch) each sorted by `user_id`, then `event_at`.
pub(super) fn merge_sorted(
    mut sources: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    sort_rows: usize,
) -> Result<(Vec<u8>, usize), Error> {
    let properties = parquet_properties()?
        .into_builder()
        .set_max_row_group_row_count(Some(sort_rows + READ_ROWS))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), SCHEMA.clone(), Some(properties))
        .map_err(Error::Parquet)?;
    let (mut pending, mut pending_rows, mut rows) = (Vec::new(), 0, 0);
    while let Some(source) = sources.blocking_recv() {
        for batch in parquet_batches(source, None)? {
            let batch = batch?;
            pending_rows += batch.num_rows();
            pending.push(batch);
            if pending_rows >= sort_rows {
                rows += write_sorted(&mut writer, std::mem::take(&mut pending))?;
                pending_rows = 0;
            }
        }
    }
    rows += write_sorted(&mut writer, pending)?;
    Ok((writer.into_inner().map_err(Error::Parquet)?, rows))
}

fn write_sorted(
    writer: &mut ArrowWriter<Vec<u8>>,
    batches: Vec<RecordBatch>,
) -> Result<usize, Error> {
    if batches.is_empty() {
        return Ok(0);
    }
    // Each step drops what it was made from: a run is held twice at most.
    let batch = arrow_select::concat::concat_batches(&SCHEMA, &batches).map_err(Error::Arrow)?;
    drop(batches);
    let key = |name: &str| -> Result<ArrayRef, Error> {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| Error::Lake(format!("a lake file lacks the column {name}")))
    };
    let order = lexsort_to_indices(
        &[
            SortColumn {
                values: key("user_id")?,
                options: None,
            },
            SortColumn {
                values: key("event_at")?,
                options: None,
            },
        ],
        None,
    )
    .map_err(Error::Arrow)?;
    let sorted = arrow_select::take::take_record_batch(&batch, &order).map_err(Error::Arrow)?;
    drop(batch);
    writer.write(&sorted).map_err(Error::Parquet)?;
    // Each sorted run is its own row group.
    writer.flush().map_err(Error::Parquet)?;
    Ok(sorted.num_rows())
}
