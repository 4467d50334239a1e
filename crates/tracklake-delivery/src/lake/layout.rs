//! Where things are in the lake: partition directories and file names.
//! The only place that knows them; delivery, compaction, deletion, query
//! and the CLI ask here.
//!
//! ```text
//! events/                         the Delta table (Parquet) or plain NDJSON files
//!   _delta_log/                   the Delta log: commits and checkpoints
//!   dt=2026-11-27/                a partition: the events' UTC date
//!     part-<first>-<last>-<id>.parquet    a Delta data file (unique name)
//!     part-<first>-<last>[-v<n>].json     an NDJSON file (covering rule)
//! errors/part-<first>-<last>.json         records that could not be read
//! ```
//!
//! `first..=last` are the change-stream sequence numbers (20 digits) of the
//! events a file was made from. A Parquet file's name ends in a unique id,
//! so no file a snapshot may read is ever written twice; which files make
//! up the table is the Delta log's business alone. NDJSON files are plain
//! files with no log: a name derives from its range alone (a redo after a
//! crash rewrites the same name), and a file whose range lies inside
//! another's in the same partition (a compaction's source) or an earlier
//! version of the same range (before an erasure) is superseded. The
//! `firehose` layout puts files in `events/YYYY/MM/DD/HH/` (by event time).

use chrono::{DateTime, NaiveDate, Utc};
use object_store::ObjectMeta;
use object_store::path::Path;

use super::config::Layout;

/// The directory of the table, under the lake's root.
pub const TABLE_DIR: &str = "events";
/// The Delta table's partition column.
pub const PARTITION_COLUMN: &str = "dt";

/// The partition directory of an event time: `dt=2026-11-27` or `2026/11/27/13`.
pub fn partition(layout: Layout, event_at: DateTime<Utc>) -> String {
    match layout {
        Layout::Hive => event_at.format("dt=%Y-%m-%d").to_string(),
        Layout::Firehose => event_at.format("%Y/%m/%d/%H").to_string(),
    }
}

/// The partition directory with its value written `${dt}` (Athena's
/// `storage.location.template`), and that value's pattern in Java's date
/// format (`projection.dt.format`).
pub fn partition_template(layout: Layout) -> (&'static str, &'static str) {
    match layout {
        Layout::Hive => ("dt=${dt}", "yyyy-MM-dd"),
        Layout::Firehose => ("${dt}", "yyyy/MM/dd/HH"),
    }
}

/// The UTC date of a partition directory: `dt=2026-11-27` or `2026/11/27/13`.
pub fn partition_day(partition: &str) -> Option<NaiveDate> {
    if let Some(day) = partition.strip_prefix("dt=") {
        return day.parse().ok();
    }
    let mut parts = partition.split('/');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

/// How a file is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// A Delta data file: a unique name.
    Unique,
    /// A plain file: the same range gives the same name (`version` 0 as
    /// delivered, one more for each rewrite).
    Range { version: u32 },
}

/// The one function that names lake files: the file of changes
/// `first..=last` in `partition`, with `extension` (`parquet`, `json`, `json.gz`).
pub fn file_path(partition: &str, first: u64, last: u64, naming: Naming, extension: &str) -> Path {
    let suffix = match naming {
        Naming::Unique => format!("-{}", uuid::Uuid::now_v7().simple()),
        Naming::Range { version: 0 } => String::new(),
        Naming::Range { version } => format!("-v{version}"),
    };
    Path::from(format!(
        "{TABLE_DIR}/{partition}/part-{first:020}-{last:020}{suffix}.{extension}"
    ))
}

/// Where records of `first..=last` that could not be read are kept.
pub fn error_path(first: u64, last: u64) -> Path {
    Path::from(format!("errors/part-{first:020}-{last:020}.json"))
}

/// The partition directory of a file under [`TABLE_DIR`].
pub fn partition_of(path: &Path) -> Option<&str> {
    let inner = path.as_ref().strip_prefix(TABLE_DIR)?.strip_prefix('/')?;
    Some(inner.rsplit_once('/')?.0)
}

/// A lake file's place: its partition and the change range in its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    pub partition: String,
    pub first: u64,
    pub last: u64,
    /// 0 as delivered; each rewrite that erased events adds one.
    pub version: u32,
    /// `parquet`, `json` or `json.gz`.
    pub extension: String,
}

impl FileName {
    /// Parses `events/<partition>/part-<first>-<last>[-v<version>].<ext>`
    /// (NDJSON files, and Parquet files of lakes from before the Delta log).
    pub fn parse(path: &Path) -> Option<FileName> {
        let partition = partition_of(path)?;
        let name = path.filename()?;
        let (stem, extension) = name.strip_prefix("part-")?.split_once('.')?;
        let mut parts = stem.split('-');
        let (first, last) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
        let version = match parts.next() {
            None => 0,
            Some(v) => v.strip_prefix('v')?.parse().ok()?,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(FileName {
            partition: partition.to_owned(),
            first,
            last,
            version,
            extension: extension.to_owned(),
        })
    }

    /// Where this file is (the inverse of [`FileName::parse`]).
    pub fn path(&self) -> Path {
        let naming = Naming::Range {
            version: self.version,
        };
        file_path(
            &self.partition,
            self.first,
            self.last,
            naming,
            &self.extension,
        )
    }

    /// Whether readers should read `self` instead of `other`: a wider range
    /// (a compaction's output), or the same range in a later version.
    pub(crate) fn covers(&self, other: &FileName) -> bool {
        if self.partition != other.partition {
            return false;
        }
        if (self.first, self.last) == (other.first, other.last) {
            return self.version > other.version;
        }
        self.first <= other.first && other.last <= self.last
    }
}

/// Splits files into (live, covered): a covered file's range lies inside
/// another's in the same partition.
pub fn split_covered(files: Vec<ObjectMeta>) -> (Vec<ObjectMeta>, Vec<ObjectMeta>) {
    let names: Vec<Option<FileName>> = files.iter().map(|f| FileName::parse(&f.location)).collect();
    let covered: Vec<bool> = names
        .iter()
        .map(|n| {
            n.as_ref()
                .is_some_and(|n| names.iter().flatten().any(|other| other.covers(n)))
        })
        .collect();
    let (mut live, mut dead) = (Vec::new(), Vec::new());
    for (file, covered) in files.into_iter().zip(covered) {
        if covered {
            dead.push(file)
        } else {
            live.push(file)
        }
    }
    (live, dead)
}

/// The change range `first..=last` in a file's name, whichever naming.
pub fn range_of(path: &Path) -> Option<(u64, u64)> {
    let mut parts = path.filename()?.strip_prefix("part-")?.split(['-', '.']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Athena's projection template names the directories delivery writes.
    #[test]
    fn the_partition_template_is_the_partition_of_its_value() {
        let at = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 27, 13, 5, 0).unwrap();
        for (layout, value) in [
            (Layout::Hive, "2026-11-27"),
            (Layout::Firehose, "2026/11/27/13"),
        ] {
            let (template, _) = partition_template(layout);
            assert_eq!(template.replace("${dt}", value), partition(layout, at));
            assert_eq!(partition_day(&partition(layout, at)), Some(at.date_naive()));
        }
    }
}
