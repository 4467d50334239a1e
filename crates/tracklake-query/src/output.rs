//! Answers as a text table, CSV or JSON (rows plus column types).

use std::io::Write;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::json::writer::{JsonArray, WriterBuilder};
use serde_json::{Value, json};

use crate::Answer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Table,
    Csv,
    Json,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(OutputFormat::Table),
            "csv" => Ok(OutputFormat::Csv),
            "json" => Ok(OutputFormat::Json),
            other => Err(format!("{other:?}: use table, csv or json")),
        }
    }
}

pub fn write_output(
    answer: &Answer,
    format: OutputFormat,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let io = std::io::Error::other;
    match format {
        OutputFormat::Table => {
            let table = datafusion::arrow::util::pretty::pretty_format_batches(&answer.batches)
                .map_err(io)?;
            writeln!(out, "{table}")?;
        }
        OutputFormat::Csv => {
            if answer.rows > 0 {
                let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut *out);
                for batch in non_empty(&answer.batches) {
                    writer.write(batch).map_err(io)?;
                }
            } else {
                let names: Vec<&str> = answer
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                writeln!(out, "{}", names.join(","))?;
            }
        }
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &to_json_rows(answer).map_err(io)?)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// A CSV writer writes its header with the first batch it sees.
fn non_empty(batches: &[RecordBatch]) -> impl Iterator<Item = &RecordBatch> {
    batches.iter().filter(|b| b.num_rows() > 0)
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
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    Ok(json!({
        "columns": columns,
        "rows": rows,
        "row_count": answer.rows,
        "truncated": answer.truncated,
        "elapsed_ms": answer.elapsed.as_secs_f64() * 1000.0,
    }))
}
