//! deploy/aws/template.yaml: cfn-lint passes, and what the AWS emulator's
//! CloudFormation supports deploys from it and comes out as declared.

use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{Moto, free_port, have, runs};

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
    let out = Command::new("python3")
        .arg(CHECK)
        .arg(&moto.endpoint)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
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
