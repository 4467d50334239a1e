//! `tracklake query "SELECT …"` and the interactive `tracklake sql` shell.
//!
//! With no server on the data directory they open it themselves (the table
//! too, so undelivered events count); while `tracklake serve` holds it, they
//! send the statement to that server's `POST /v1/query`, so the answer is
//! the same either way.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tracklake_query::{Engine, Error as QueryError, to_json_rows};
use tracklake_table::{ChangeLog, EmbeddedTable, Table};

use super::place::{self, Opened, Where};
use super::{Api, describe_error, print_table};

#[derive(clap::Args)]
pub struct QueryArgs {
    /// The statement (or use --file).
    sql: Option<String>,
    /// Read the statement from a file.
    #[arg(long, conflicts_with = "sql")]
    file: Option<PathBuf>,
    /// table, csv or json.
    #[arg(long, default_value = "table")]
    format: Format,
    #[command(flatten)]
    place: Where,
}

#[derive(clap::Args)]
pub struct ShellArgs {
    /// table, csv or json.
    #[arg(long, default_value = "table")]
    format: Format,
    #[command(flatten)]
    place: Where,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(super) enum Format {
    Table,
    Csv,
    Json,
}

/// Where statements run.
pub(super) enum Runner {
    Local {
        engine: Arc<Engine>,
        table: Arc<EmbeddedTable>,
        config: Box<crate::config::Config>,
    },
    Remote(Api),
}

impl Runner {
    pub(super) async fn open(place: Where) -> anyhow::Result<Runner> {
        let local = match place::open(place).await? {
            Opened::Remote(api) => return Ok(Runner::Remote(api)),
            Opened::Local(local) => local,
        };
        let engine = Engine::open(
            &local.config.query,
            &local.config.data_dir,
            local.lake,
            Some(local.table.clone() as Arc<dyn ChangeLog>),
        )
        .await
        .context("starting the query engine")?;
        Ok(Runner::Local {
            engine: Arc::new(engine),
            table: local.table,
            config: Box::new(local.config),
        })
    }

    /// The answer as `{"columns", "rows", …}`, or the statement's error.
    async fn run(&self, sql: &str) -> anyhow::Result<Value> {
        match self {
            Runner::Local { engine, .. } => match engine.run(sql).await {
                Ok(answer) => Ok(to_json_rows(&answer)?),
                Err(e @ QueryError::Invalid(_)) => bail!("{e}"),
                Err(e) => Err(e.into()),
            },
            Runner::Remote(api) => {
                let (status, body) = api.post("/v1/query", &json!({ "sql": sql })).await?;
                if status >= 400 {
                    bail!("{}", describe_error(status, &body));
                }
                Ok(body)
            }
        }
    }

    pub(super) async fn close(self) -> anyhow::Result<()> {
        if let Runner::Local { table, .. } = self {
            table.close().await?;
        }
        Ok(())
    }
}

pub async fn query(args: QueryArgs) -> anyhow::Result<()> {
    let sql = match (&args.sql, &args.file) {
        (Some(sql), _) => sql.clone(),
        (None, Some(file)) => {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
        }
        (None, None) => bail!("give a statement: tracklake query \"SELECT …\" (or --file)"),
    };
    let runner = Runner::open(args.place).await?;
    let result = runner.run(&sql).await;
    runner.close().await?;
    print(&result?, args.format)
}

pub async fn shell(args: ShellArgs) -> anyhow::Result<()> {
    let runner = Runner::open(args.place).await?;
    let history = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".tracklake_history");
    let mut editor = rustyline::DefaultEditor::new()?;
    let _ = editor.load_history(&history);
    eprintln!("tracklake SQL: end statements with ';', \\q or Ctrl-D quits. Tables: SHOW TABLES;");
    let mut statement = String::new();
    loop {
        let prompt = if statement.is_empty() {
            "tracklake> "
        } else {
            "       ...> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                statement.clear();
                continue;
            }
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        if statement.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
            break;
        }
        statement.push_str(&line);
        statement.push('\n');
        if !line.trim_end().ends_with(';') {
            continue;
        }
        let sql = std::mem::take(&mut statement);
        let _ = editor.add_history_entry(sql.trim());
        match runner.run(&sql).await {
            Ok(answer) => print(&answer, args.format)?,
            Err(e) => eprintln!("error: {e:#}"),
        }
    }
    let _ = editor.save_history(&history);
    runner.close().await
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn print(answer: &Value, format: Format) -> anyhow::Result<()> {
    let names: Vec<&str> = answer["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let rows: Vec<Vec<String>> = answer["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| names.iter().map(|n| cell(&row[*n])).collect())
        .collect();
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, answer)?;
            writeln!(out)?;
        }
        Format::Csv => {
            let quote = |s: &str| {
                if s.contains([',', '"', '\n']) {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else {
                    s.to_owned()
                }
            };
            writeln!(
                out,
                "{}",
                names.iter().map(|n| quote(n)).collect::<Vec<_>>().join(",")
            )?;
            for row in &rows {
                writeln!(
                    out,
                    "{}",
                    row.iter().map(|c| quote(c)).collect::<Vec<_>>().join(",")
                )?;
            }
        }
        Format::Table => {
            drop(out);
            print_table(&names, &rows);
            let count = answer["row_count"].as_u64().unwrap_or(rows.len() as u64);
            let cut = if answer["truncated"].as_bool() == Some(true) {
                " (cut at query.max_rows)"
            } else {
                ""
            };
            eprintln!(
                "({count} row{}{cut}, {:.1} ms)",
                if count == 1 { "" } else { "s" },
                answer["elapsed_ms"].as_f64().unwrap_or_default()
            );
        }
    }
    Ok(())
}
