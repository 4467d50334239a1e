//! Commands that talk to a running tracklake over its HTTP API.

pub mod aws;
pub mod bench;
mod bench_analytics;
mod bench_delivery;
mod bench_lake;
mod bench_query;
mod fake_data;
pub mod keys;
pub mod lake;
pub mod place;
pub mod put;
pub mod query;
pub mod recent;
pub mod report;
pub mod seed;
pub mod users;

use anyhow::{Context, bail};
use serde_json::Value;

/// Where the running tracklake is.
#[derive(clap::Args, Clone)]
pub struct Target {
    /// Base URL of the tracklake server.
    #[arg(long, env = "TRACKLAKE_URL", default_value = "http://127.0.0.1:7800")]
    pub url: String,
    /// API key, when the server asks for one.
    #[arg(long, env = "TRACKLAKE_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

/// A small JSON client for the API.
#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(target: &Target) -> anyhow::Result<Self> {
        Ok(Api {
            base: target.url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .user_agent(concat!("tracklake-cli/", env!("CARGO_PKG_VERSION")))
                .default_headers(match &target.key {
                    Some(key) => {
                        let mut value =
                            reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
                                .context("the API key has characters a header cannot carry")?;
                        value.set_sensitive(true);
                        reqwest::header::HeaderMap::from_iter([(
                            reqwest::header::AUTHORIZATION,
                            value,
                        )])
                    }
                    None => reqwest::header::HeaderMap::new(),
                })
                .build()?,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// POSTs JSON; returns the status and body, or an error when the server
    /// cannot be reached.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// DELETEs; returns the status and body.
    pub async fn delete(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        self.send(self.http.delete(self.url(path))).await
    }

    /// GETs JSON, turning an API error into a readable one.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let (status, body) = self
            .send(self.http.get(self.url(path)).query(query))
            .await?;
        if status >= 400 {
            bail!("{}", describe_error(status, &body));
        }
        Ok(body)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach tracklake at {} (is `tracklake serve` running?)",
                self.base
            )
        })?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }
}

/// `400 invalid_format (event_at): …` from an API error body.
pub fn describe_error(status: u16, body: &Value) -> String {
    let e = &body["error"];
    let field = e["field"]
        .as_str()
        .map(|f| format!(" ({f})"))
        .unwrap_or_default();
    format!(
        "{status} {}{field}: {}",
        e["code"].as_str().unwrap_or("error"),
        e["message"].as_str().unwrap_or("no details")
    )
}

/// A user id from the command line: integers stay integers, as in the article.
pub fn user_id_json(user: &str) -> Value {
    match user.parse::<i64>() {
        Ok(n) => Value::from(n),
        Err(_) => Value::from(user),
    }
}

/// Prints rows as aligned columns.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
