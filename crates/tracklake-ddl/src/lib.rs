//! Athena's DDL, translated: statements are parsed in the Hive dialect
//! (what Athena's DDL is), and a `CREATE EXTERNAL TABLE` (columns,
//! `PARTITIONED BY`, `ROW FORMAT SERDE … WITH SERDEPROPERTIES`, `LOCATION`)
//! becomes a [`TableDef`]. Kept apart from the query engine so that it can
//! be fuzzed without building DataFusion.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
pub use sqlparser;
use sqlparser::ast::{
    CreateTable, CreateTableOptions, HiveDistributionStyle, SqlOption, Statement,
};
use sqlparser::dialect::HiveDialect;
use sqlparser::parser::Parser;

mod limits;
pub use limits::{MAX_OPERATORS, RECURSION_LIMIT, check_size};

/// Why a statement cannot be taken: shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdlError(pub String);

impl std::fmt::Display for DdlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DdlError {}

/// The one statement in `sql`, parsed in the Hive dialect; `None` when it
/// is not exactly one statement Hive's grammar accepts.
pub fn parse(sql: &str) -> Option<Statement> {
    check_size(sql).ok()?;
    let sql = map_and_struct_as_string(sql);
    let mut statements = Parser::new(&HiveDialect {})
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(&sql)
        .and_then(|mut parser| parser.parse_statements())
        .ok()?;
    (statements.len() == 1).then(|| statements.remove(0))
}

/// `map<…>` and `struct<…>` column types (common in Athena tables) written
/// as `string`: the parser's Hive dialect does not know them, and tracklake
/// reads such columns as their JSON text anyway. Quoted text is left alone.
fn map_and_struct_as_string(sql: &str) -> String {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let (mut i, mut copied) = (0, 0);
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(q) = quote {
            quote = (b != q).then_some(q);
            i += 1;
            continue;
        }
        if matches!(b, b'\'' | b'"' | b'`') {
            quote = Some(b);
            i += 1;
            continue;
        }
        let word_start = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let keyword = ["map", "struct"].into_iter().find(|k| {
            word_start
                && bytes.len() >= i + k.len()
                && bytes[i..i + k.len()].eq_ignore_ascii_case(k.as_bytes())
        });
        if let Some(k) = keyword {
            let mut j = i + k.len();
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if bytes.get(j) == Some(&b'<') {
                let mut depth = 0usize;
                while j < bytes.len() {
                    match bytes[j] {
                        b'<' => depth += 1,
                        b'>' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if j < bytes.len() {
                    out.push_str(&sql[copied..i]);
                    out.push_str("string");
                    i = j + 1;
                    copied = i;
                    continue;
                }
            }
        }
        i += 1;
    }
    out.push_str(&sql[copied..]);
    out
}

/// Whether a `CREATE TABLE` defines a table over files (Athena's kind).
pub fn is_external(create: &CreateTable) -> bool {
    create.external
        || create.location.is_some()
        || create
            .hive_formats
            .as_ref()
            .is_some_and(|f| f.location.is_some())
}

/// A table's definition, from its `CREATE EXTERNAL TABLE`.
#[derive(Debug, Clone)]
pub struct TableDef {
    pub columns: Vec<(String, DataType)>,
    pub partitions: Vec<(String, DataType)>,
    /// The location after `[query.locations]` is applied.
    pub location: String,
    /// `'mapping.<column>' = '<json key>'` SerDe properties.
    pub mapping: BTreeMap<String, String>,
    /// `TBLPROPERTIES ('table_type' = 'DELTA')`: a Delta Lake table, whose
    /// columns, partitions and files come from its log (Athena's DDL for
    /// one declares no columns).
    pub delta: bool,
}

impl TableDef {
    pub fn from_statement(
        create: &CreateTable,
        locations: &BTreeMap<String, String>,
    ) -> Result<TableDef, DdlError> {
        let column = |c: &sqlparser::ast::ColumnDef| -> Result<(String, DataType), DdlError> {
            Ok((
                c.name.value.to_lowercase(),
                declared_type(&c.data_type.to_string())?,
            ))
        };
        let columns = create
            .columns
            .iter()
            .map(column)
            .collect::<Result<Vec<_>, _>>()?;
        let partitions = match &create.hive_distribution {
            HiveDistributionStyle::PARTITIONED { columns } => {
                columns.iter().map(column).collect::<Result<Vec<_>, _>>()?
            }
            _ => Vec::new(),
        };
        let formats = create.hive_formats.as_ref();
        let location = create
            .location
            .clone()
            .or_else(|| formats.and_then(|f| f.location.clone()))
            .ok_or_else(|| DdlError("CREATE EXTERNAL TABLE needs a LOCATION".into()))?;
        let mut mapping = BTreeMap::new();
        for option in formats
            .and_then(|f| f.serde_properties.as_ref())
            .into_iter()
            .flatten()
        {
            if let SqlOption::KeyValue { key, value } = option {
                let key = unquote(&key.value).to_lowercase();
                let value = unquote(&value.to_string()).to_owned();
                if let Some(column) = key.strip_prefix("mapping.") {
                    mapping.insert(column.to_owned(), value);
                }
            }
        }
        let table_type = match &create.table_options {
            CreateTableOptions::TableProperties(options) => options.iter().find_map(|o| match o {
                SqlOption::KeyValue { key, value }
                    if unquote(&key.value).eq_ignore_ascii_case("table_type") =>
                {
                    Some(unquote(&value.to_string()).to_uppercase())
                }
                _ => None,
            }),
            _ => None,
        };
        let delta = match table_type.as_deref() {
            None | Some("HIVE") => false,
            Some("DELTA") => true,
            Some(other) => {
                return Err(DdlError(format!(
                    "table_type '{other}' is not supported: tracklake reads Hive tables (files under a location) and DELTA tables"
                )));
            }
        };
        if delta && !(columns.is_empty() && partitions.is_empty()) {
            return Err(DdlError(
                "a DELTA table takes its columns and partitions from its log: declare none (CREATE EXTERNAL TABLE t LOCATION '…' TBLPROPERTIES ('table_type' = 'DELTA'))".into(),
            ));
        }
        if !delta && columns.is_empty() {
            return Err(DdlError("CREATE EXTERNAL TABLE needs columns".into()));
        }
        Ok(TableDef {
            columns,
            partitions,
            location: map_location(&location, locations),
            mapping,
            delta,
        })
    }

    /// The columns, then the partition columns, all nullable.
    pub fn schema(&self) -> SchemaRef {
        let fields = self
            .columns
            .iter()
            .chain(&self.partitions)
            .map(|(name, t)| Field::new(name, t.clone(), true));
        Arc::new(Schema::new(fields.collect::<Vec<_>>()))
    }
}

fn unquote(text: &str) -> &str {
    text.trim_matches(['\'', '"'])
}

/// Applies the longest matching `[query.locations]` prefix.
fn map_location(location: &str, locations: &BTreeMap<String, String>) -> String {
    let with_slash = |s: &str| format!("{}/", s.trim_end_matches('/'));
    let location = with_slash(location);
    locations
        .iter()
        .filter(|(from, _)| location.starts_with(&with_slash(from)))
        .max_by_key(|(from, _)| from.len())
        .map(|(from, to)| format!("{}{}", with_slash(to), &location[with_slash(from).len()..]))
        .unwrap_or(location)
}

/// Hive/Athena column types; complex types are kept as their JSON text.
fn declared_type(text: &str) -> Result<DataType, DdlError> {
    let t = text.trim().to_lowercase();
    let base = t.split(['(', '<']).next().unwrap_or("").trim();
    Ok(match base {
        "string" | "varchar" | "char" | "text" => DataType::Utf8,
        "tinyint" => DataType::Int8,
        "smallint" => DataType::Int16,
        "int" | "integer" => DataType::Int32,
        "bigint" => DataType::Int64,
        "float" | "real" => DataType::Float32,
        "double" => DataType::Float64,
        "boolean" => DataType::Boolean,
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "decimal" | "numeric" => {
            let args: Vec<u8> = t
                .trim_start_matches(base)
                .trim_matches(['(', ')', ' '])
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect();
            let (precision, scale) = match args.as_slice() {
                [p, s] => (*p, *s),
                [p] => (*p, 0),
                _ => (10, 0),
            };
            // Hive's own bounds; Arrow refuses values outside them later.
            if !(1..=38).contains(&precision) || scale > precision {
                return Err(DdlError(format!(
                    "{text}: a decimal needs a precision from 1 to 38 and a scale no larger"
                )));
            }
            DataType::Decimal128(precision, scale as i8)
        }
        "array" | "map" | "struct" => DataType::Utf8,
        other => {
            return Err(DdlError(format!("column type {other:?} is not supported")));
        }
    })
}

/// Athena's name for a column type (DESCRIBE, and the DDL written for
/// the lake).
pub fn athena_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(..) => "timestamp".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        other => other.to_string().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `sql`, failing if that takes over `SLOW` (microseconds with the
    /// patched parser; seconds to hours without it).
    fn parse_quickly(sql: &str) -> Option<Statement> {
        const SLOW: std::time::Duration = std::time::Duration::from_secs(2);
        let started = std::time::Instant::now();
        let parsed = parse(sql);
        assert!(
            started.elapsed() < SLOW,
            "{:?} to parse {sql:?}",
            started.elapsed()
        );
        parsed
    }

    #[test]
    fn crafted_text_is_refused_at_once() {
        // Found by the athena_ddl fuzz target: 779 bytes that took sqlparser
        // minutes at depth 50, and 472 bytes that took 25 s at depth 30.
        for slow in [
            &include_bytes!("slow-parse.txt")[..],
            include_bytes!("slow-parse-2.txt"),
        ] {
            assert!(parse_quickly(&String::from_utf8_lossy(slow)).is_none());
        }
    }

    /// The shapes upstream fixed (vendor/README.md), 26 deep: each took
    /// sqlparser 0.62 from seconds to minutes.
    #[test]
    fn backtracking_shapes_parse_in_linear_time() {
        let n = 26;
        for sql in [
            format!("IF {}x.#", "a.".repeat(n)),
            format!("SELECT x{}", ".not-b".repeat(n)),
            format!("SELECT {}c", "case-".repeat(n)),
            format!("SELECT {}x", "if(current_time(".repeat(n)),
            format!("SELECT 1 FROM {}", "(".repeat(n)),
            format!("SELECT {}x", "POSITION(".repeat(n)),
        ] {
            parse_quickly(&sql);
        }
        // What they are near still parses.
        let chain = format!("SELECT a{} FROM t", ".b".repeat(n));
        assert!(parse_quickly(&chain).is_some());
        let nested = format!("SELECT {}1{}", "(".repeat(20), ")".repeat(20));
        assert!(parse_quickly(&nested).is_some());
    }

    #[test]
    fn complex_types_parse_as_text() {
        assert_eq!(
            map_and_struct_as_string(
                "CREATE EXTERNAL TABLE t (p MAP<string,string>, d struct<type:string, tags:array<struct<a:int>>>, \
                 remap string, s array<STRUCT <x:int>>) COMMENT 'map<a,b>' LOCATION 's3://b/'"
            ),
            "CREATE EXTERNAL TABLE t (p string, d string, remap string, s array<string>) \
             COMMENT 'map<a,b>' LOCATION 's3://b/'"
        );
        let Some(Statement::CreateTable(create)) =
            parse("CREATE EXTERNAL TABLE t (d struct<type:string>, n int) LOCATION 's3://b/'")
        else {
            panic!("a struct column parses");
        };
        let def = TableDef::from_statement(&create, &BTreeMap::new()).unwrap();
        assert_eq!(def.columns[0], ("d".to_owned(), DataType::Utf8));
        // An unclosed type is left for the parser to refuse.
        assert!(parse("CREATE EXTERNAL TABLE t (d map<string LOCATION 's3://b/'").is_none());
    }

    #[test]
    fn delta_tables_take_their_columns_from_the_log() {
        let def = |sql: &str| {
            let Some(Statement::CreateTable(create)) = parse(sql) else {
                panic!("{sql} does not parse");
            };
            TableDef::from_statement(&create, &BTreeMap::new())
        };
        // Athena's DDL for a Delta table: no columns.
        let delta = def(
            "CREATE EXTERNAL TABLE IF NOT EXISTS db.events LOCATION 's3://b/lake/events/' \
             TBLPROPERTIES ('table_type' = 'DELTA')",
        )
        .unwrap();
        assert!(delta.delta && delta.columns.is_empty());
        assert_eq!(delta.location, "s3://b/lake/events/");
        let hive =
            def("CREATE EXTERNAL TABLE t (n int) LOCATION 's3://b/' TBLPROPERTIES ('a' = 'b')");
        assert!(!hive.unwrap().delta);
        for (sql, rule) in [
            (
                "CREATE EXTERNAL TABLE t (n int) LOCATION 's3://b/' TBLPROPERTIES ('table_type' = 'delta')",
                "declare none",
            ),
            (
                "CREATE EXTERNAL TABLE t LOCATION 's3://b/' TBLPROPERTIES ('table_type' = 'ICEBERG')",
                "table_type 'ICEBERG' is not supported",
            ),
            (
                "CREATE EXTERNAL TABLE t LOCATION 's3://b/'",
                "needs columns",
            ),
        ] {
            let error = def(sql).unwrap_err().0;
            assert!(error.contains(rule), "{sql}: {error}");
        }
    }

    #[test]
    fn locations_map_by_longest_prefix() {
        let map = BTreeMap::from([
            ("s3://exampro-events/".to_owned(), "/data/lake".to_owned()),
            (
                "s3://exampro-events/old".to_owned(),
                "s3://archive/old/".to_owned(),
            ),
        ]);
        assert_eq!(map_location("s3://exampro-events/", &map), "/data/lake/");
        assert_eq!(
            map_location("s3://exampro-events/events", &map),
            "/data/lake/events/"
        );
        assert_eq!(
            map_location("s3://exampro-events/old/x/", &map),
            "s3://archive/old/x/"
        );
        assert_eq!(map_location("s3://elsewhere/", &map), "s3://elsewhere/");
    }

    #[test]
    fn hive_types() {
        assert_eq!(declared_type("INT").unwrap(), DataType::Int32);
        assert_eq!(declared_type("varchar(64)").unwrap(), DataType::Utf8);
        assert_eq!(
            declared_type("DECIMAL(10,2)").unwrap(),
            DataType::Decimal128(10, 2)
        );
        assert_eq!(declared_type("array<string>").unwrap(), DataType::Utf8);
        assert!(declared_type("geometry").is_err());
        assert!(declared_type("decimal(0,0)").is_err());
        assert!(declared_type("decimal(10,12)").is_err());
    }
}
