//! Starts and stops real `tracklake serve` processes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_tracklake");

pub struct Server {
    child: Child,
    pub url: String,
    http: reqwest::Client,
}

impl Server {
    /// Starts a server on `data_dir`, with `config` as its TOML config.
    pub fn start(data_dir: &Path, config: &str) -> Server {
        Self::start_with_env(data_dir, config, &[])
    }

    pub fn start_with_env(data_dir: &Path, config: &str, env: &[(&str, &str)]) -> Server {
        let config_path = data_dir.with_extension("toml");
        std::fs::write(&config_path, config).unwrap();
        let mut command = Command::new(BIN);
        command
            .envs(env.iter().copied())
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config_path)
            .arg("--data-dir")
            .arg(data_dir);
        Self::spawn(command)
    }

    /// Runs `command` (a `tracklake serve …`) until it names its address.
    pub fn spawn(mut command: Command) -> Server {
        let mut child = command
            .env("TRACKLAKE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tracklake");
        // The one line on stdout names the address.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("tracklake listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        Server {
            child,
            url,
            http: reqwest::Client::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "tracklake exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tracklake did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `within` for it to exit by itself; its status.
    pub fn wait_exit(mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "tracklake did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub async fn post_raw(
        &self,
        body: impl Into<reqwest::Body>,
        content_type: &str,
    ) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/events", self.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, body: &Value) -> (u16, Value) {
        self.post_raw(body.to_string(), "application/json").await
    }

    /// A GET's body as text (for `/metrics`).
    pub async fn text(&self, path: &str) -> String {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        r.text().await.unwrap()
    }

    /// `POST /v1/query` with `{"sql": sql}`.
    pub async fn sql(&self, sql: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/query", self.url))
            .json(&serde_json::json!({ "sql": sql }))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path_and_query}", self.url))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `DELETE /v1/users/{user}/events`: asserts 202 and returns the job's
    /// location.
    pub async fn delete_user(&self, user: &str) -> String {
        // A connection of its own: a pooled one the server closed while
        // idle would fail the request, and a DELETE is not retried.
        let response = reqwest::Client::new()
            .delete(format!("{}/v1/users/{user}/events", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
        response.headers()["location"].to_str().unwrap().to_owned()
    }

    /// Every event id of a user, following cursors.
    pub async fn all_ids(&self, user: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor = String::new();
        loop {
            let (status, body) = self
                .get(&format!(
                    "/v1/users/{user}/events?limit=1000&fields=event_id{cursor}"
                ))
                .await;
            assert_eq!(status, 200, "{body}");
            for e in body["events"].as_array().unwrap() {
                ids.push(e["event_id"].as_str().unwrap().to_owned());
            }
            match body["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return ids,
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` to its end and returns what it printed on stdout; a
/// failure panics with both its outputs.
pub fn stdout_of(command: &mut Command) -> String {
    let out = command.output().expect("start the command");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{command:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Config used by most tests: the article's two event types.
pub const ARTICLE_CONFIG: &str = "[ingest]\nevent_types = [\"login\", \"material-view\"]\n";

/// How often each event id occurs in the current version of the Delta
/// table under `lake_dir`: the file list from delta-rs (not tracklake's
/// reader), each file read with the `parquet` crate. Empty before the
/// table exists.
pub fn lake_ids(lake_dir: &Path) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for path in lake_files(lake_dir) {
        let data = bytes::Bytes::from(std::fs::read(&path).unwrap());
        for id in parquet_ids(data) {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

/// The files of the current version of the Delta table under `lake_dir`,
/// as delta-rs lists them; none before the table exists.
pub fn lake_files(lake_dir: &Path) -> Vec<std::path::PathBuf> {
    let table_dir = lake_dir.join("events");
    if !table_dir.join("_delta_log").exists() {
        return Vec::new();
    }
    let url = url::Url::from_directory_path(std::fs::canonicalize(&table_dir).unwrap()).unwrap();
    // Tests call this from async code: open the table on a runtime of its own.
    let files: Vec<String> = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let table = deltalake_core::open_table(url).await.unwrap();
            table.get_file_uris().unwrap().collect()
        })
    })
    .join()
    .unwrap();
    files
        .into_iter()
        .map(|uri| {
            url::Url::parse(&uri)
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .unwrap_or_else(|| uri.into())
        })
        .collect()
}

/// Config with a one-second delivery buffer and compaction every second,
/// so files appear and merge while a test watches.
pub const FAST_LAKE_CONFIG: &str = "[ingest]\nevent_types = [\"login\", \"material-view\"]\n\
     [delivery]\nbuffer_interval_secs = 1\n[compaction]\ninterval_secs = 1\n";

/// Whether a program from outside cargo that a test needs is here. Without
/// it the test skips with a message naming it and how to install it —
/// except on CI (`CI` set), where every test must run.
pub fn have(what: &str, present: bool, install: &str) -> bool {
    if !present {
        assert!(
            std::env::var("CI").is_err(),
            "{what} is missing, and CI must run this test ({install})"
        );
        eprintln!("skipping: {what} is not installed ({install})");
    }
    present
}

/// Whether `program args…` runs and succeeds.
pub fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The AWS emulator (`moto_server`) on a loopback port.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

pub const AWS_TEST_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
];

impl Moto {
    /// Whether `moto_server` can run here. Without it the S3 tests skip —
    /// except on CI, where they must run.
    pub fn available() -> bool {
        have(
            "moto_server",
            runs("moto_server", &["--help"]),
            "pip install 'moto[server]'",
        )
    }

    pub async fn start(port: u16) -> Moto {
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(&endpoint).await.is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Moto { child, endpoint }
    }

    /// The AWS SDK's configuration for this emulator, with test credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let settings = tracklake_aws::AwsSettings {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
        };
        let credentials = tracklake_aws::Credentials::new("testing", "testing", None, None, "test");
        tracklake_aws::sdk_config(&settings, Some(credentials)).await
    }

    pub async fn create_bucket(&self, bucket: &str) {
        let r = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "creating bucket: {}", r.status());
    }

    /// Keys under `prefix`, read with plain S3 REST calls.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let xml = reqwest::get(format!(
            "{}/{bucket}?list-type=2&prefix={prefix}",
            self.endpoint
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        xml.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }

    /// How often each event id occurs in the current version of the Delta
    /// table at `table` (`lake/events/`) in `bucket`: the log's commits
    /// replayed here (adds less removes), each live file read with the
    /// `parquet` crate.
    pub async fn delta_ids(&self, bucket: &str, table: &str) -> HashMap<String, usize> {
        let mut commits: Vec<String> = self
            .keys(bucket, &format!("{table}_delta_log/"))
            .await
            .into_iter()
            .filter(|k| k.ends_with(".json"))
            .collect();
        commits.sort();
        let mut live = std::collections::BTreeSet::new();
        for key in commits {
            let body = self.get(bucket, &key).await;
            for line in String::from_utf8_lossy(&body).lines() {
                let action: Value = serde_json::from_str(line).unwrap();
                if let Some(path) = action["add"]["path"].as_str() {
                    live.insert(path.to_owned());
                }
                if let Some(path) = action["remove"]["path"].as_str() {
                    live.remove(path);
                }
            }
        }
        let mut counts = HashMap::new();
        for path in live {
            for id in parquet_ids(self.get(bucket, &format!("{table}{path}")).await) {
                *counts.entry(id).or_default() += 1;
            }
        }
        counts
    }

    /// An object's bytes, through a signed GET (the emulator refuses
    /// anonymous reads).
    pub async fn get(&self, bucket: &str, key: &str) -> bytes::Bytes {
        use object_store::ObjectStoreExt;
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .build()
            .unwrap();
        store
            .get(&object_store::path::Path::from(key))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Event ids in a Parquet file's bytes.
pub fn parquet_ids(data: bytes::Bytes) -> Vec<String> {
    use arrow_array::{Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut ids = Vec::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(data)
        .unwrap()
        .build()
        .unwrap()
    {
        let batch = batch.unwrap();
        let col = batch.column_by_name("event_id").unwrap();
        let col = col.as_any().downcast_ref::<StringArray>().unwrap();
        ids.extend((0..col.len()).map(|i| col.value(i).to_owned()));
    }
    ids
}

/// Headless Chromium's command, when installed.
pub fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| runs(c, &["--version"]));
    have("chromium", found.is_some(), "apt-get install chromium").then_some(())?;
    found
}

/// Loads `url` in headless Chromium with a fresh profile, runs its timers
/// for up to 20 s of virtual time (network waits pause it), and returns
/// what it printed (the DOM with `--dump-dom`) and its log.
pub fn browse(chromium: &str, url: &str, extra: &[&str]) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=20000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), log)
}

/// Waits up to `within` for delivery to catch up, then checks that the
/// lake's current version holds exactly `ids`, each once.
pub async fn lake_holds_once(lake_dir: &Path, ids: &[String], within: Duration) {
    let mut want = ids.to_vec();
    want.sort();
    let deadline = Instant::now() + within;
    loop {
        let in_lake = lake_ids(lake_dir);
        if in_lake.len() >= want.len() {
            let mut found: Vec<String> = in_lake.keys().cloned().collect();
            found.sort();
            assert_eq!(found, want);
            let doubled: Vec<_> = in_lake.iter().filter(|(_, n)| **n > 1).collect();
            assert!(doubled.is_empty(), "doubled in the lake: {doubled:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "delivery did not catch up: {} of {} in the lake",
            in_lake.len(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The text of the element `<pre id="{id}">` in a dumped DOM, unescaped.
pub fn dom_text(dom: &str, id: &str) -> Option<String> {
    let text = dom
        .split(&format!("<pre id=\"{id}\">"))
        .nth(1)?
        .split("</pre>")
        .next()?;
    Some(
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&amp;", "&"),
    )
}
