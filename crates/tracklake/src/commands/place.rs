//! Commands that work on a data directory: they open it themselves, or —
//! while `tracklake serve` holds it — talk to that server instead, so the
//! outcome is the same either way.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tracklake_delivery::Lake;
use tracklake_table::EmbeddedTable;

use super::{Api, Target};
use crate::config::{self, Config};

#[derive(clap::Args)]
pub struct Where {
    /// Config file (default: ./tracklake.toml when present).
    #[arg(long, env = "TRACKLAKE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (default: ./tracklake-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The server to ask when another tracklake holds the data directory
    /// (default: the config's server.listen).
    #[arg(long, env = "TRACKLAKE_URL")]
    url: Option<String>,
}

/// The data directory, opened here.
pub struct Local {
    pub config: Config,
    pub table: Arc<EmbeddedTable>,
    pub lake: Arc<Lake>,
}

pub enum Opened {
    Local(Box<Local>),
    /// The server that holds the data directory (key from `TRACKLAKE_KEY`).
    Remote(Api),
}

pub async fn open(place: Where) -> anyhow::Result<Opened> {
    let config = config::load(place.config.as_deref(), place.data_dir, None)?;
    let table_dir = config.data_dir.join("table");
    std::fs::create_dir_all(&table_dir)
        .with_context(|| format!("creating {}", table_dir.display()))?;
    let table = match EmbeddedTable::open(&table_dir, &config.table) {
        Ok(table) => Arc::new(table),
        Err(open_error) => {
            let url = place
                .url
                .unwrap_or_else(|| format!("http://{}", config.server.listen));
            let key = std::env::var("TRACKLAKE_KEY")
                .ok()
                .filter(|k| !k.is_empty());
            let api = Api::new(&Target {
                url: url.clone(),
                key,
            })?;
            if api.get("/healthz", &[]).await.is_ok() {
                return Ok(Opened::Remote(api));
            }
            return Err(open_error).with_context(|| {
                format!(
                    "opening {} (and no tracklake answers at {url})",
                    table_dir.display()
                )
            });
        }
    };
    let privacy = tracklake_event::Privacy::new(&config.privacy, &config.data_dir)
        .map_err(anyhow::Error::msg)?;
    let lake = Arc::new(
        Lake::open(&config.lake, &config.data_dir)
            .context("opening the lake")?
            .with_privacy(privacy),
    );
    Ok(Opened::Local(Box::new(Local {
        config,
        table,
        lake,
    })))
}
