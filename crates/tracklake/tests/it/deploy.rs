//! deploy/aws/template.yaml: cfn-lint passes, and what the AWS emulator's
//! CloudFormation supports deploys from it and comes out as declared.
//! deploy/systemd and deploy/docker: the unit verifies and the container's
//! command and health check work, each run with this build's binary.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{BIN, Moto, Server, free_port, have, runs, stdout_of};

const TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/aws/template.yaml"
);
const CHECK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/aws/check_in_emulator.py"
);

#[test]
fn template_passes_cfn_lint() {
    if !have(
        "cfn-lint",
        runs("cfn-lint", &["--version"]),
        "pip install cfn-lint",
    ) {
        return;
    }
    let out = Command::new("cfn-lint").arg(TEMPLATE).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn template_deploys_in_the_emulator() {
    if !Moto::available()
        || !have(
            "cfn-lint",
            runs("cfn-lint", &["--version"]),
            "pip install cfn-lint",
        )
    {
        return;
    }
    let moto = Moto::start(free_port()).await;
    let out = stdout_of(Command::new("python3").arg(CHECK).arg(&moto.endpoint));
    let made: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(made["stack_status"], "CREATE_COMPLETE", "{made}");
    // The emulator has no Firehose in CloudFormation; all else deployed.
    assert_eq!(made["dropped"], json!(["DeliveryStream"]));
    assert_eq!(made["table"]["keys"], json!(["user_id", "sk"]));
    assert_eq!(made["table"]["stream"], "NEW_IMAGE");
    assert_eq!(made["bucket"]["sse"], "aws:kms");
    assert_eq!(made["function"]["runtime"], "provided.al2023");
    assert_eq!(
        made["trigger"],
        json!([{"batch_size": 100, "response_types": ["ReportBatchItemFailures"], "bisect": true, "on_failure": true}])
    );
    for output in [
        "LakeUrl",
        "LakeKeyArn",
        "StreamArn",
        "TableName",
        "DeliveryStreamName",
    ] {
        assert!(
            made["outputs"].as_array().unwrap().contains(&json!(output)),
            "{output}"
        );
    }
    // What the emulator cannot create, read from the template as declared.
    let declared = &made["declared"];
    assert_eq!(
        declared["alarms"],
        json!([
            "ApproximateNumberOfMessagesVisible",
            "FailedPutCount",
            "IteratorAge"
        ])
    );
    assert_eq!(
        declared["metric_filters"],
        json!(["{ $.failed_put_count >= 0 }", "{ $.records_size > 0 }"])
    );
    assert_eq!(declared["dashboard_widgets"], 4);
    assert!(
        declared["public_access_block"]
            .as_object()
            .unwrap()
            .values()
            .all(|v| v == true)
    );
    assert_eq!(
        declared["firehose"]["prefix"],
        "events/dt=!{partitionKeyFromQuery:dt}/"
    );
    assert_eq!(declared["firehose"]["kms"], true);
}

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The installed paths the unit and the image name, and what a test puts
/// in their place.
struct Installed<'a> {
    binary: &'a str,
    data_dir: &'a str,
}

impl Installed<'_> {
    fn local(&self, text: &str, data_dir: &Path) -> String {
        text.replace(self.binary, BIN)
            .replace(self.data_dir, &data_dir.display().to_string())
    }
}

/// Runs a `tracklake serve` command line (words split at spaces, as the
/// unit and the image write them) and checks it answers `/healthz` and
/// `/readyz`, then stops on SIGTERM with success.
async fn serves(command_line: &str) -> Server {
    let words: Vec<&str> = command_line.split_whitespace().collect();
    let mut command = Command::new(words[0]);
    command.args(&words[1..]);
    let server = Server::spawn(command);
    for path in ["/healthz", "/readyz"] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    server
}

#[tokio::test]
async fn systemd_unit_verifies_and_its_command_serves() {
    if !have(
        "systemd-analyze",
        runs("systemd-analyze", &["--version"]),
        "apt-get install systemd",
    ) {
        return;
    }
    let unit = std::fs::read_to_string(format!("{ROOT}/deploy/systemd/tracklake.service")).unwrap();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for needed in [
        "Restart=on-failure",
        "DynamicUser=yes",
        "StateDirectory=tracklake",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "LimitNOFILE=65536",
        "TimeoutStopSec=45s",
    ] {
        assert!(lines.contains(&needed), "the unit lacks {needed}");
    }
    let exec = lines
        .iter()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let installed = Installed {
        binary: "/usr/local/bin/tracklake",
        data_dir: "/var/lib/tracklake",
    };
    // The data directory is the state directory systemd makes.
    assert!(
        exec.starts_with(&format!("{} serve ", installed.binary)),
        "{exec}"
    );
    assert!(
        exec.contains(&format!("--data-dir {}", installed.data_dir)),
        "{exec}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tracklake.toml");
    std::fs::write(&config, "[server]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let local = |text: &str| {
        installed.local(text, &dir.path().join("data")).replace(
            "/etc/tracklake/tracklake.toml",
            &config.display().to_string(),
        )
    };
    let unit_path = dir.path().join("tracklake.service");
    std::fs::write(&unit_path, local(&unit)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );

    serves(&local(exec)).await.stop();

    // The status it is not restarted on is the one a config it cannot use
    // exits with.
    let prevented = lines
        .iter()
        .find_map(|l| l.strip_prefix("RestartPreventExitStatus="))
        .expect("RestartPreventExitStatus");
    std::fs::write(&config, "[server]\nlisten = 7\n").unwrap();
    let out = Command::new("sh")
        .args(["-c", &local(exec)])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code().map(|c| c.to_string()).as_deref(),
        Some(prevented),
        "{said}"
    );
    assert!(said.contains("listen"), "{said}");
}

#[tokio::test]
async fn docker_image_runs_its_command_and_health_check() {
    let python_has_parser = runs("python3", &["-c", "import dockerfile_parse"]);
    if !have(
        "python3 dockerfile-parse",
        python_has_parser,
        "pip install dockerfile-parse",
    ) || !have("curl", runs("curl", &["--version"]), "apt-get install curl")
    {
        return;
    }
    let dockerfile = format!("{ROOT}/deploy/docker/Dockerfile");
    let out = stdout_of(Command::new("python3").args([
        "-c",
        "import json, sys\nfrom dockerfile_parse import DockerfileParser\n\
         print(json.dumps(DockerfileParser(path=sys.argv[1]).structure))",
        &dockerfile,
    ]));
    let steps: Vec<Value> = serde_json::from_str(&out).unwrap();
    let all = |name: &str| -> Vec<String> {
        steps
            .iter()
            .filter(|s| s["instruction"] == name)
            .map(|s| s["value"].as_str().unwrap().to_owned())
            .collect()
    };
    let last = |name: &str| all(name).pop().unwrap_or_else(|| panic!("no {name}"));
    let json_words = |text: String| -> Vec<String> { serde_json::from_str(&text).unwrap() };

    // Two stages: the build's output is what the second copies.
    let froms = all("FROM");
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(froms[0].ends_with(" AS build"), "{froms:?}");
    let manifest = std::fs::read_to_string(format!("{ROOT}/Cargo.toml")).unwrap();
    assert!(
        manifest.contains("[profile.dist]"),
        "Cargo.toml has no dist profile"
    );
    assert!(
        all("RUN")
            .iter()
            .any(|r| r.contains("cargo build --profile dist --locked -p tracklake")),
        "the build stage builds the dist profile"
    );
    let copy = all("COPY")
        .into_iter()
        .find(|c| c.starts_with("--from=build"))
        .expect("a COPY from the build stage");
    assert_eq!(
        copy,
        "--from=build /src/target/dist/tracklake /usr/local/bin/tracklake"
    );
    // `COPY . .` leaves out what is built and kept locally.
    let ignored = std::fs::read_to_string(format!("{ROOT}/.dockerignore")).unwrap();
    assert!(
        ignored.lines().any(|l| l.trim() == "target"),
        ".dockerignore keeps target out"
    );

    // Not root; the data on a volume; the port it listens on exposed.
    let user = last("USER");
    assert!(user != "root" && user != "0", "USER {user}");
    let entrypoint = json_words(last("ENTRYPOINT"));
    assert_eq!(entrypoint, ["/usr/local/bin/tracklake"]);
    let cmd = json_words(last("CMD"));
    let flag = |name: &str| {
        let at = cmd
            .iter()
            .position(|w| w == name)
            .unwrap_or_else(|| panic!("CMD lacks {name}"));
        cmd[at + 1].clone()
    };
    let (data_dir, listen) = (flag("--data-dir"), flag("--listen"));
    assert_eq!(last("VOLUME"), data_dir);
    let port = listen.rsplit(':').next().unwrap();
    assert_eq!(last("EXPOSE"), port);
    let check = last("HEALTHCHECK");
    let check = check
        .split_once(" CMD ")
        .expect("HEALTHCHECK … CMD …")
        .1
        .to_owned();
    let probed = format!("http://127.0.0.1:{port}/healthz");
    assert!(check.contains(&probed), "{check}");

    let installed = Installed {
        binary: "/usr/local/bin/tracklake",
        data_dir: &data_dir,
    };
    let dir = tempfile::tempdir().unwrap();
    let command_line = installed.local(
        &format!("{} {}", entrypoint.join(" "), cmd.join(" ")),
        &dir.path().join("data"),
    );
    // As the image runs it (every interface), without keys: refused, with
    // the reason.
    let refused = Command::new("sh")
        .args(["-c", &command_line.replace(&format!(":{port}"), ":0")])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("refusing to listen on 0.0.0.0:0 without API keys"),
        "{said}"
    );

    // On loopback it serves, and the health check passes against it.
    let server = serves(&command_line.replace(&listen, "127.0.0.1:0")).await;
    let address = server.url.trim_start_matches("http://").to_owned();
    let status = Command::new("sh")
        .args(["-c", &check.replace(&format!("127.0.0.1:{port}"), &address)])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the health check failed: {check}");
    server.stop();
}
