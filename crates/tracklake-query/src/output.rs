//! Answers as JSON: rows plus column names and types.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::json::writer::{JsonArray, WriterBuilder};
use serde_json::{Value, json};

use crate::Answer;

/// A CSV or JSON writer writes nothing for an empty batch.
fn non_empty(batches: &[RecordBatch]) -> impl Iterator<Item = &RecordBatch> {
    batches.iter().filter(|b| b.num_rows() > 0)
}

/// A column's type as answers name it: text is `Utf8` however the engine
/// holds it (the lake's text columns are read as string views).
fn type_name(data_type: &datafusion::arrow::datatypes::DataType) -> String {
    use datafusion::arrow::datatypes::DataType;
    match data_type {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8.to_string(),
        other => other.to_string(),
    }
}

/// `{"columns": [{"name", "type"}], "rows": [{…}], "row_count", "truncated", "elapsed_ms"}`.
pub fn to_json_rows(answer: &Answer) -> Result<Value, datafusion::arrow::error::ArrowError> {
    let mut buffer = Vec::new();
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, JsonArray>(&mut buffer);
    for batch in non_empty(&answer.batches) {
        writer.write(batch)?;
    }
    writer.finish()?;
    let rows: Value = if buffer.is_empty() {
        json!([])
    } else {
        serde_json::from_slice(&buffer)
            .map_err(|e| datafusion::arrow::error::ArrowError::JsonError(e.to_string()))?
    };
    let columns: Vec<Value> = answer
        .schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": type_name(f.data_type())}))
        .collect();
    Ok(json!({
        "columns": columns,
        "rows": rows,
        "row_count": answer.rows,
        "truncated": answer.truncated,
        "elapsed_ms": answer.elapsed.as_secs_f64() * 1000.0,
    }))
}
