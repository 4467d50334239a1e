//! Athena DDL text through the Hive-dialect parser and the translation of
//! `CREATE EXTERNAL TABLE`: never a panic, and a definition it accepts has
//! a schema Arrow takes.
#![no_main]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tracklake_ddl::TableDef;
use tracklake_ddl::sqlparser::ast::Statement;

static LOCATIONS: LazyLock<BTreeMap<String, String>> = LazyLock::new(|| {
    BTreeMap::from([("s3://exampro-events/".to_owned(), "/data/lake".to_owned())])
});

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let Some(Statement::CreateTable(create)) = tracklake_ddl::parse(sql) else {
        return;
    };
    if tracklake_ddl::is_external(&create)
        && let Ok(def) = TableDef::from_statement(&create, &LOCATIONS)
    {
        let schema = def.schema();
        assert_eq!(schema.fields().len(), def.columns.len() + def.partitions.len());
        assert!(def.location.ends_with('/'));
    }
});
