use serde_dynamo::AttributeValue;

use super::*;

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
