"""Deploys template.yaml into the AWS emulator (moto) and prints what it made.

    python3 deploy/aws/check_in_emulator.py http://127.0.0.1:PORT

The emulator's CloudFormation lacks Kinesis Firehose, so the delivery stream
is left out and references to it become placeholders; every other resource
is created as written. Prints one JSON object describing the resources, for
tests/it/deploy.rs to check.
"""

import json
import re
import sys
from pathlib import Path

import boto3
from cfnlint.decode import decode_str

# Resource types the emulator's CloudFormation cannot create.
UNSUPPORTED = {"AWS::KinesisFirehose::DeliveryStream"}


def placeholders(node, dropped):
    """References to dropped resources, replaced by stand-in names and ARNs."""
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in dropped:
            return f"emulator-lacks-{node['Ref']}"
        if set(node) == {"Fn::GetAtt"} and node["Fn::GetAtt"][0] in dropped:
            name = node["Fn::GetAtt"][0]
            return f"arn:aws:firehose:us-east-1:123456789012:deliverystream/{name}"
        return {k: placeholders(v, dropped) for k, v in node.items()}
    if isinstance(node, list):
        return [placeholders(v, dropped) for v in node]
    if isinstance(node, str):
        for name in dropped:
            node = node.replace("${%s}" % name, f"emulator-lacks-{name}")
    return node


def main(endpoint):
    kw = dict(endpoint_url=endpoint, region_name="us-east-1",
              aws_access_key_id="test", aws_secret_access_key="test")
    path = Path(__file__).with_name("template.yaml")
    template, problems = decode_str(path.read_text())
    if problems:
        sys.exit(f"template does not parse: {problems}")
    template = json.loads(json.dumps(template, default=str))
    declared = declared_only(template["Resources"])
    dropped = {k for k, r in template["Resources"].items() if r["Type"] in UNSUPPORTED}
    template["Resources"] = {k: placeholders(v, dropped)
                             for k, v in template["Resources"].items() if k not in dropped}
    template["Outputs"] = placeholders(template.get("Outputs", {}), dropped)

    s3 = boto3.client("s3", **kw)
    s3.create_bucket(Bucket="lambda-code")
    s3.put_object(Bucket="lambda-code", Key="tracklake-lambda.zip", Body=b"PK\x05\x06" + b"\0" * 18)
    cfn = boto3.client("cloudformation", **kw)
    cfn.create_stack(StackName="tracklake", TemplateBody=json.dumps(template),
                     Parameters=[{"ParameterKey": "LambdaCodeBucket", "ParameterValue": "lambda-code"}],
                     Capabilities=["CAPABILITY_IAM"])
    stack = cfn.describe_stacks(StackName="tracklake")["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    table = boto3.client("dynamodb", **kw).describe_table(TableName=outputs["TableName"])["Table"]
    bucket = outputs["LakeBucket"]
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    try:
        public = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        public_access_blocked = all(public.values())
    except s3.exceptions.ClientError:
        public_access_blocked = None  # the emulator's CloudFormation does not apply it
    lam = boto3.client("lambda", **kw)
    function = lam.get_function(FunctionName="tracklake-stream-to-firehose")["Configuration"]
    mappings = lam.list_event_source_mappings(FunctionName="tracklake-stream-to-firehose")["EventSourceMappings"]
    alarms = boto3.client("cloudwatch", **kw).describe_alarms()["MetricAlarms"]
    filters = boto3.client("logs", **kw).describe_metric_filters()["metricFilters"]
    print(json.dumps({
        "stack_status": stack["StackStatus"],
        "dropped": sorted(dropped),
        "table": {
            "keys": [k["AttributeName"] for k in table["KeySchema"]],
            "stream": table.get("StreamSpecification", {}).get("StreamViewType"),
            "sse": table.get("SSEDescription", {}).get("SSEType"),
        },
        "bucket": {
            "sse": encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"],
            "public_access_blocked": public_access_blocked,
        },
        "function": {
            "runtime": function["Runtime"],
            "delivery_stream_env": function["Environment"]["Variables"].get("DELIVERY_STREAM_NAME"),
        },
        "trigger": [{
            "batch_size": m["BatchSize"],
            "response_types": m.get("FunctionResponseTypes", []),
            "bisect": m.get("BisectBatchOnFunctionError"),
            "on_failure": bool(m.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")),
        } for m in mappings],
        "alarms": sorted(a["AlarmName"] for a in alarms),
        "metric_filters": sorted(f["filterPattern"] for f in filters),
        "outputs": sorted(outputs),
        "declared": declared,
    }, indent=2))


def declared_only(resources):
    """What the template declares that the emulator cannot create or show."""
    def of_type(kind):
        return [r["Properties"] for r in resources.values() if r["Type"] == kind]
    firehose = of_type("AWS::KinesisFirehose::DeliveryStream")[0]["ExtendedS3DestinationConfiguration"]
    body = of_type("AWS::CloudWatch::Dashboard")[0]["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))["widgets"]
    return {
        "alarms": sorted(a["MetricName"] for a in of_type("AWS::CloudWatch::Alarm")),
        "metric_filters": sorted(f["FilterPattern"] for f in of_type("AWS::Logs::MetricFilter")),
        "dashboard_widgets": len(widgets),
        "public_access_block": of_type("AWS::S3::Bucket")[0]["PublicAccessBlockConfiguration"],
        "firehose": {
            "prefix": firehose["Prefix"],
            "error_prefix": firehose["ErrorOutputPrefix"],
            "compression": firehose["CompressionFormat"],
            "kms": "KMSEncryptionConfig" in firehose["EncryptionConfiguration"],
            "buffering": sorted(firehose["BufferingHints"]),
        },
    }


if __name__ == "__main__":
    main(sys.argv[1])
