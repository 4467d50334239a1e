use aws_sdk_firehose::types::PutRecordBatchResponseEntry;
use serde_dynamo::AttributeValue;

use super::*;

fn line(n: usize) -> Line {
    Line {
        seq: Some(n.to_string()),
        bytes: vec![b'x'; n],
    }
}

#[test]
fn a_tracklake_item_is_its_stored_event_and_an_article_item_its_attributes() {
    let item: serde_dynamo::Item = [
        ("user_id".to_owned(), AttributeValue::S("42".into())),
        (
            "event".to_owned(),
            AttributeValue::S(r#"{"event_id":"e1","user_id":42}"#.into()),
        ),
    ]
    .into_iter()
    .collect::<std::collections::HashMap<_, _>>()
    .into();
    assert_eq!(
        line_of(&item).unwrap(),
        b"{\"event_id\":\"e1\",\"user_id\":42}\n"
    );

    let article: serde_dynamo::Item = [
        ("user_id".to_owned(), AttributeValue::N("42".into())),
        (
            "event_at".to_owned(),
            AttributeValue::S("2019-06-29T16:46:23Z".into()),
        ),
        ("event_type".to_owned(), AttributeValue::S("login".into())),
    ]
    .into_iter()
    .collect::<std::collections::HashMap<_, _>>()
    .into();
    let line = line_of(&article).unwrap();
    assert_eq!(line.last(), Some(&b'\n'));
    let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(value["user_id"], 42);
    assert_eq!(value["event_type"], "login");
    assert!(line_of(&serde_dynamo::Item::default()).is_err());
}

#[test]
fn calls_stay_within_500_records_and_4_mib() {
    let many: Vec<Line> = (0..1201).map(|_| line(10)).collect();
    let sizes: Vec<usize> = calls(&many).iter().map(|c| c.len()).collect();
    assert_eq!(sizes, [500, 500, 201]);
    let big: Vec<Line> = (0..10).map(|_| line(MAX_RECORD_BYTES)).collect();
    let calls = calls(&big);
    assert!(
        calls
            .iter()
            .all(|c| c.iter().map(|l| l.bytes.len()).sum::<usize>() <= MAX_CALL_BYTES)
    );
    assert_eq!(calls.iter().map(|c| c.len()).sum::<usize>(), 10);
    assert!(super::calls(&[]).is_empty());
}

#[test]
fn only_refused_entries_are_sent_again() {
    let ok = PutRecordBatchResponseEntry::builder()
        .record_id("r")
        .build();
    let refused = PutRecordBatchResponseEntry::builder()
        .error_code("ServiceUnavailableException")
        .error_message("slow down")
        .build();
    let output = PutRecordBatchOutput::builder()
        .failed_put_count(2)
        .request_responses(refused.clone())
        .request_responses(ok.clone())
        .request_responses(refused)
        .build()
        .unwrap();
    // Response entry i is the line sent[i].
    assert_eq!(refused_entries(&output, &[3, 5, 8]), [3, 8]);
    let all_ok = PutRecordBatchOutput::builder()
        .failed_put_count(0)
        .request_responses(ok)
        .build()
        .unwrap();
    assert!(refused_entries(&all_ok, &[0]).is_empty());
}

#[test]
fn the_log_line_carries_the_articles_fields_and_emf() {
    let line = log_line("f", 100, 97, 3, chrono::Utc::now());
    assert_eq!(line["records_size"], 100);
    assert_eq!(line["failed_put_count"], 3);
    assert_eq!(line["RecordsPut"], 97);
    let metrics = &line["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(metrics["Namespace"], "Tracklake");
    for m in metrics["Metrics"].as_array().unwrap() {
        assert!(line.get(m["Name"].as_str().unwrap()).is_some(), "{m}");
    }
}
