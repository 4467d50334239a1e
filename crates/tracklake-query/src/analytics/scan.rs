//! One query whose answer has a row per user (the engine groups by
//! `user_id` and gathers what each report needs into lists, with
//! `array_agg` or [`super::sorted_agg`]), read on a task per
//! partition of the plan, each folding its rows into its own tally.
//!
//! The grouping is DataFusion's: it hashes a batch at a time and runs on
//! every core, several times faster than a map filled a row at a time
//! (docs/BENCHMARKS.md, "Funnels and retention").

use std::time::Duration;

use datafusion::arrow::array::{
    Array, AsArray, Int64Array, LargeStringArray, ListArray, RecordBatch, StringArray,
    StringViewArray, StructArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit};
use futures_util::StreamExt;

use super::AnalyticsError;
use crate::{Engine, Error};

/// Runs `sql` and folds every batch into a `T` per partition of the plan,
/// with `fold` on that partition's task; cut at `query.timeout_secs`.
pub(crate) async fn per_partition<T, F>(
    engine: &Engine,
    sql: &str,
    fold: F,
) -> Result<Vec<T>, AnalyticsError>
where
    T: Default + Send + 'static,
    F: Fn(&RecordBatch, &mut T) -> Result<(), AnalyticsError> + Send + Sync + Clone + 'static,
{
    let timeout = engine.config().timeout_secs.max(1);
    let work = async {
        let mut tasks = tokio::task::JoinSet::new();
        for mut stream in engine.partitions(sql).await? {
            let fold = fold.clone();
            tasks.spawn(async move {
                let mut tally = T::default();
                while let Some(batch) = stream.next().await {
                    fold(&batch.map_err(Error::from)?, &mut tally)?;
                }
                Ok::<_, AnalyticsError>(tally)
            });
        }
        let mut tallies = Vec::new();
        while let Some(done) = tasks.join_next().await {
            tallies.push(done.map_err(|e| Error::Engine(format!("a scan task failed: {e}")))??);
        }
        Ok(tallies)
    };
    tokio::time::timeout(Duration::from_secs(timeout), work)
        .await
        .map_err(|_| Error::Timeout(timeout))?
}

/// A text column, however the engine chose to hold it.
pub(crate) enum Texts<'a> {
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
}

impl Texts<'_> {
    pub fn get(&self, i: usize) -> Option<&str> {
        match self {
            Texts::Utf8(a) => a.is_valid(i).then(|| a.value(i)),
            Texts::Large(a) => a.is_valid(i).then(|| a.value(i)),
            Texts::View(a) => a.is_valid(i).then(|| a.value(i)),
        }
    }
}

/// Column `i` of the batch as text; an error (not a panic) when the plan
/// gave another type.
pub(crate) fn texts(batch: &RecordBatch, i: usize) -> Result<Texts<'_>, AnalyticsError> {
    array_texts(batch.column(i).as_ref(), || {
        batch.schema().field(i).name().clone()
    })
}

fn array_texts<'a>(
    array: &'a dyn Array,
    name: impl Fn() -> String,
) -> Result<Texts<'a>, AnalyticsError> {
    Ok(match array.data_type() {
        DataType::Utf8 => Texts::Utf8(array.as_string::<i32>()),
        DataType::LargeUtf8 => Texts::Large(array.as_string::<i64>()),
        DataType::Utf8View => Texts::View(array.as_string_view()),
        other => return Err(unexpected(&name(), "text", other)),
    })
}

/// Column `i` as microseconds since the epoch.
pub(crate) fn micros(
    batch: &RecordBatch,
    i: usize,
) -> Result<&TimestampMicrosecondArray, AnalyticsError> {
    let column = batch.column(i);
    match column.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => Ok(column.as_primitive()),
        other => Err(unexpected(
            batch.schema().field(i).name(),
            "a timestamp in microseconds",
            other,
        )),
    }
}

/// Column `i` as BIGINT.
pub(crate) fn ints(batch: &RecordBatch, i: usize) -> Result<&Int64Array, AnalyticsError> {
    let column = batch.column(i);
    column
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| unexpected(batch.schema().field(i).name(), "BIGINT", column.data_type()))
}

/// Column `i`, lists of integers: each row's list as a slice.
pub(crate) struct IntLists<'a> {
    lists: &'a ListArray,
    values: &'a Int64Array,
}

impl IntLists<'_> {
    pub fn row(&self, i: usize) -> &[i64] {
        &self.values.values()[range(self.lists, i)]
    }
}

/// Where row `i`'s list is among the list's values (none when null).
fn range(lists: &ListArray, i: usize) -> std::ops::Range<usize> {
    if lists.is_null(i) {
        return 0..0;
    }
    let offsets = lists.value_offsets();
    offsets[i] as usize..offsets[i + 1] as usize
}

/// Column `i` as a list, and its name for errors.
fn list(batch: &RecordBatch, i: usize) -> Result<(&ListArray, String), AnalyticsError> {
    let name = batch.schema().field(i).name().clone();
    match batch.column(i).as_list_opt::<i32>() {
        Some(lists) => Ok((lists, name)),
        None => Err(unexpected(&name, "a list", batch.column(i).data_type())),
    }
}

pub(crate) fn int_lists(batch: &RecordBatch, i: usize) -> Result<IntLists<'_>, AnalyticsError> {
    let (lists, name) = list(batch, i)?;
    let values = lists
        .values()
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| unexpected(&name, "a list of BIGINT", lists.values().data_type()))?;
    Ok(IntLists { lists, values })
}

/// Column `i`, an `array_agg` of structs: every row's fields side by side,
/// and each row's range of them.
pub(crate) struct StructLists<'a> {
    lists: &'a ListArray,
    fields: &'a StructArray,
}

impl StructLists<'_> {
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        range(self.lists, i)
    }

    pub fn ints(&self, field: usize) -> Result<&Int64Array, AnalyticsError> {
        let column = self.fields.column(field);
        column
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| unexpected(&format!("field {field}"), "BIGINT", column.data_type()))
    }

    pub fn texts(&self, field: usize) -> Result<Texts<'_>, AnalyticsError> {
        array_texts(self.fields.column(field).as_ref(), || {
            format!("field {field}")
        })
    }
}

pub(crate) fn struct_lists(
    batch: &RecordBatch,
    i: usize,
) -> Result<StructLists<'_>, AnalyticsError> {
    let (lists, name) = list(batch, i)?;
    let fields = lists
        .values()
        .as_struct_opt()
        .ok_or_else(|| unexpected(&name, "a list of structs", lists.values().data_type()))?;
    Ok(StructLists { lists, fields })
}

fn unexpected(name: &str, wanted: &str, got: &DataType) -> AnalyticsError {
    AnalyticsError::Query(Error::Engine(format!(
        "column {name} of the scan is {got}, not {wanted}"
    )))
}
