//! Athena's catalog statements: `CREATE DATABASE`, `CREATE EXTERNAL TABLE`
//! (Hive syntax: `ROW FORMAT SERDE`, `STORED AS`, `LOCATION`,
//! `TBLPROPERTIES`), `DROP TABLE`/`DATABASE`, `SHOW DATABASES`, `SHOW TABLES`,
//! `DESCRIBE`, `MSCK REPAIR TABLE` and `ALTER TABLE … ADD PARTITION`.
//!
//! Definitions persist as the statements that made them, in
//! `<data-dir>/query/catalog.json`, and are replayed at start. Partitions
//! need no repair: files are found under a table's location at every query.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{CatalogProvider, MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    AlterTableOperation, CreateTable, ObjectName, ObjectType, SchemaName, ShowStatementOptions,
    Statement,
};
use serde::{Deserialize, Serialize};
use tracklake_delivery::Lake;

use tracklake_ddl::{TableDef, athena_type};

use crate::external::ExternalTable;
use crate::{Error, QueryConfig};

const CATALOG: &str = "tracklake";

/// What `catalog.json` holds: the statements that made each definition.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    databases: BTreeMap<String, String>,
    tables: BTreeMap<String, String>,
}

pub struct Catalog {
    path: PathBuf,
    saved: Mutex<Saved>,
    default_database: String,
    locations: BTreeMap<String, String>,
    lake: Arc<Lake>,
}

impl Catalog {
    pub async fn open(
        ctx: &SessionContext,
        dir: PathBuf,
        config: &QueryConfig,
        lake: Arc<Lake>,
        events: Arc<dyn TableProvider>,
    ) -> Result<Catalog, Error> {
        ctx.register_table("events", events)?;
        let path = dir.join("catalog.json");
        let catalog_error = |message: String| Error::Catalog {
            path: path.display().to_string(),
            message,
        };
        let saved: Saved = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| catalog_error(e.to_string()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => return Err(catalog_error(e.to_string())),
        };
        let catalog = Catalog {
            path,
            saved: Mutex::new(Saved::default()),
            default_database: config.database.clone(),
            locations: config.locations.clone(),
            lake,
        };
        for sql in saved.databases.values() {
            if let Err(e) = catalog.run(ctx, sql).await {
                tracing::warn!(statement = %sql, error = %e, "a saved database definition no longer applies; skipped");
            }
        }
        for (name, sql) in &saved.tables {
            if let Err(e) = catalog.run(ctx, sql).await {
                // Kept, to be tried again at the next start: its location
                // may only be out of reach for now (a Delta table's log on
                // S3, say). DROP TABLE removes it.
                tracing::warn!(statement = %sql, error = %e, "a saved table definition cannot be loaded now; the table is missing until a restart finds it");
                let mut kept = catalog.saved.lock().expect("catalog lock");
                kept.tables.insert(name.clone(), sql.clone());
            }
        }
        Ok(catalog)
    }

    /// Runs `sql` if it is a catalog statement; `None` for anything else.
    pub async fn run(
        &self,
        ctx: &SessionContext,
        sql: &str,
    ) -> Result<Option<Vec<RecordBatch>>, Error> {
        let Some(statement) = tracklake_ddl::parse(sql) else {
            return Ok(None);
        };
        let answer = match statement {
            Statement::CreateDatabase {
                db_name,
                if_not_exists,
                ..
            } => self.create_database(ctx, &db_name, if_not_exists, sql)?,
            Statement::CreateSchema {
                schema_name: SchemaName::Simple(name) | SchemaName::NamedAuthorization(name, _),
                if_not_exists,
                ..
            } => self.create_database(ctx, &name, if_not_exists, sql)?,
            Statement::CreateTable(create) if tracklake_ddl::is_external(&create) => {
                self.create_table(ctx, create, sql).await?
            }
            Statement::Drop {
                object_type: ObjectType::Table,
                if_exists,
                names,
                ..
            } => {
                for name in &names {
                    self.drop_table(ctx, name, if_exists)?;
                }
                message("Table dropped (its files are untouched)")
            }
            Statement::Drop {
                object_type: ObjectType::Schema | ObjectType::Database,
                if_exists,
                names,
                cascade,
                ..
            } => {
                for name in &names {
                    self.drop_database(ctx, name, if_exists, cascade)?;
                }
                message("Database dropped")
            }
            Statement::ShowDatabases { .. } | Statement::ShowSchemas { .. } => {
                let mut names = self.catalog(ctx)?.schema_names();
                names.sort();
                one_column("database_name", names)
            }
            Statement::ShowTables { show_options, .. } => {
                let database = shown_in(&show_options).unwrap_or(self.default_database.clone());
                let schema = self.schema(ctx, &database)?;
                let mut names = schema.table_names();
                names.sort();
                one_column("tab_name", names)
            }
            Statement::ExplainTable { table_name, .. } => self.describe(ctx, &table_name).await?,
            Statement::Msck(msck) => {
                self.table_exists(ctx, &msck.table_name).await?;
                message("Partitions are found from the files at every query; nothing to repair")
            }
            Statement::AlterTable(alter)
                if alter
                    .operations
                    .iter()
                    .all(|op| matches!(op, AlterTableOperation::AddPartitions { .. })) =>
            {
                self.table_exists(ctx, &alter.name).await?;
                message("Partitions are found from the files at every query; nothing to add")
            }
            _ => return Ok(None),
        };
        Ok(Some(vec![answer]))
    }

    fn catalog(&self, ctx: &SessionContext) -> Result<Arc<dyn CatalogProvider>, Error> {
        ctx.catalog(CATALOG)
            .ok_or_else(|| Error::Engine("the default catalog is missing".into()))
    }

    fn schema(
        &self,
        ctx: &SessionContext,
        database: &str,
    ) -> Result<Arc<dyn SchemaProvider>, Error> {
        self.catalog(ctx)?
            .schema(database)
            .ok_or_else(|| Error::Invalid(format!("Database {database} does not exist")))
    }

    /// `(database, table)` of a possibly qualified name, lower-cased as Athena does.
    fn split(&self, name: &ObjectName) -> Result<(String, String), Error> {
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|p| p.to_string().trim_matches(['"', '`']).to_lowercase())
            .collect();
        match parts.as_slice() {
            [table] => Ok((self.default_database.clone(), table.clone())),
            [database, table] => Ok((database.clone(), table.clone())),
            _ => Err(Error::Invalid(format!(
                "{name}: expected table or database.table"
            ))),
        }
    }

    fn create_database(
        &self,
        ctx: &SessionContext,
        name: &ObjectName,
        if_not_exists: bool,
        sql: &str,
    ) -> Result<RecordBatch, Error> {
        let database = name.to_string().trim_matches(['"', '`']).to_lowercase();
        let catalog = self.catalog(ctx)?;
        if catalog.schema(&database).is_some() {
            if if_not_exists
                || self
                    .saved
                    .lock()
                    .expect("catalog lock")
                    .databases
                    .get(&database)
                    .is_some_and(|s| s == sql)
            {
                return Ok(message("Database already exists"));
            }
            return Err(Error::Invalid(format!(
                "Database {database} already exists"
            )));
        }
        catalog.register_schema(&database, Arc::new(MemorySchemaProvider::new()))?;
        self.save(|saved| {
            saved.databases.insert(database.clone(), sql.to_owned());
        })?;
        Ok(message("Database created"))
    }

    async fn create_table(
        &self,
        ctx: &SessionContext,
        create: CreateTable,
        sql: &str,
    ) -> Result<RecordBatch, Error> {
        let (database, table) = self.split(&create.name)?;
        let schema = self.schema(ctx, &database)?;
        if schema.table_exist(&table) {
            if create.if_not_exists
                || self
                    .saved
                    .lock()
                    .expect("catalog lock")
                    .tables
                    .get(&format!("{database}.{table}"))
                    .is_some_and(|s| s == sql)
            {
                return Ok(message("Table already exists"));
            }
            return Err(Error::Invalid(format!(
                "Table {database}.{table} already exists"
            )));
        }
        let def = TableDef::from_statement(&create, &self.locations)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let provider = ExternalTable::open(def, &self.lake).await?;
        schema.register_table(table.clone(), Arc::new(provider))?;
        self.save(|saved| {
            saved
                .tables
                .insert(format!("{database}.{table}"), sql.to_owned());
        })?;
        Ok(message("Table created"))
    }

    fn drop_table(
        &self,
        ctx: &SessionContext,
        name: &ObjectName,
        if_exists: bool,
    ) -> Result<(), Error> {
        let (database, table) = self.split(name)?;
        let key = format!("{database}.{table}");
        if !self
            .saved
            .lock()
            .expect("catalog lock")
            .tables
            .contains_key(&key)
        {
            if database == self.default_database && table == "events" {
                return Err(Error::Invalid(
                    "events is the lake itself and cannot be dropped".into(),
                ));
            }
            if if_exists {
                return Ok(());
            }
            return Err(Error::Invalid(format!("Table {key} does not exist")));
        }
        self.schema(ctx, &database)?.deregister_table(&table)?;
        self.save(|saved| {
            saved.tables.remove(&key);
        })
    }

    fn drop_database(
        &self,
        ctx: &SessionContext,
        name: &ObjectName,
        if_exists: bool,
        cascade: bool,
    ) -> Result<(), Error> {
        let database = name.to_string().to_lowercase();
        if !self
            .saved
            .lock()
            .expect("catalog lock")
            .databases
            .contains_key(&database)
        {
            if if_exists {
                return Ok(());
            }
            return Err(Error::Invalid(format!(
                "Database {database} does not exist or cannot be dropped"
            )));
        }
        let tables = self.schema(ctx, &database)?.table_names();
        if !tables.is_empty() && !cascade {
            return Err(Error::Invalid(format!(
                "Database {database} is not empty (it has {}); use DROP DATABASE … CASCADE",
                tables.join(", ")
            )));
        }
        self.catalog(ctx)?.deregister_schema(&database, true)?;
        self.save(|saved| {
            saved.databases.remove(&database);
            saved
                .tables
                .retain(|key, _| !key.starts_with(&format!("{database}.")));
        })
    }

    async fn table_exists(
        &self,
        ctx: &SessionContext,
        name: &ObjectName,
    ) -> Result<Arc<dyn TableProvider>, Error> {
        let (database, table) = self.split(name)?;
        self.schema(ctx, &database)?
            .table(&table)
            .await?
            .ok_or_else(|| Error::Invalid(format!("Table {database}.{table} does not exist")))
    }

    async fn describe(
        &self,
        ctx: &SessionContext,
        name: &ObjectName,
    ) -> Result<RecordBatch, Error> {
        let table = self.table_exists(ctx, name).await?;
        let schema = table.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let types: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| athena_type(f.data_type()))
            .collect();
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("col_name", DataType::Utf8, false),
                Field::new("data_type", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(StringArray::from(names)),
                Arc::new(StringArray::from(types)),
            ],
        )
        .expect("two string columns"))
    }

    /// Applies a change to the saved definitions and writes them atomically.
    fn save(&self, change: impl FnOnce(&mut Saved)) -> Result<(), Error> {
        let mut saved = self.saved.lock().expect("catalog lock");
        change(&mut saved);
        let error = |e: std::io::Error| Error::Catalog {
            path: self.path.display().to_string(),
            message: e.to_string(),
        };
        let dir = self.path.parent().expect("catalog.json is in a directory");
        std::fs::create_dir_all(dir).map_err(error)?;
        let staged = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(&*saved).expect("strings serialize");
        std::fs::write(&staged, body).map_err(error)?;
        std::fs::rename(&staged, &self.path).map_err(error)
    }
}

fn shown_in(options: &ShowStatementOptions) -> Option<String> {
    let name = options.show_in.as_ref()?.parent_name.as_ref()?;
    Some(name.to_string().to_lowercase())
}

fn message(text: &str) -> RecordBatch {
    one_column("result", vec![text.to_owned()])
}

fn one_column(name: &str, values: Vec<String>) -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)])),
        vec![Arc::new(StringArray::from(values))],
    )
    .expect("one string column")
}
