use super::*;
use arrow_array::{Array, BooleanArray, StringArray, TimestampMicrosecondArray};
use chrono::{TimeZone, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::io::Read;
use tracklake_event::{Device, UserId};

fn sample(i: u32) -> Event {
    Event {
        event_id: format!("e{i}"),
        user_id: if i.is_multiple_of(2) {
            UserId::Int(i as i64)
        } else {
            UserId::Text(format!("u-{i}"))
        },
        event_type: "login".into(),
        event_at: Utc.with_ymd_and_hms(2019, 6, 29, 16, 46, 23).unwrap()
            + chrono::Duration::microseconds(i as i64),
        received_at: Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0).unwrap(),
        user_agent: (!i.is_multiple_of(3)).then(|| {
            "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; AS; rv:11.0) like Gecko".into()
        }),
        ip_address: Some("2001:db8::1".parse().unwrap()),
        properties: serde_json::from_str(r#"{"material_id": 42, "nested": {"a": [1, 2]}}"#)
            .unwrap(),
        device: Device {
            kind: "desktop".into(),
            os: Some("Windows".into()),
            os_version: Some("7".into()),
            browser: Some("IE".into()),
            browser_version: Some("11.0".into()),
            is_bot: i == 3,
            bot: (i == 3).then(|| "ai".into()),
            ..Device::default()
        },
        web: tracklake_event::Web {
            path: i.is_multiple_of(2).then(|| format!("/page/{i}")),
            utm_source: Some("news".into()),
            ..Default::default()
        },
        server_assigned_id: false,
    }
}

#[test]
fn parquet_reads_back_with_the_parquet_crate() {
    let events: Vec<Event> = (0..10).map(sample).collect();
    let refs: Vec<&Event> = events.iter().collect();
    let bytes = encode(&refs, Format::Parquet, false).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 10);
    let b = &batches[0];
    let col = |name: &str| b.column_by_name(name).unwrap().clone();
    let ids = col("event_id");
    let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
    let users = col("user_id");
    let users = users.as_any().downcast_ref::<StringArray>().unwrap();
    let at = col("event_at");
    let at = at
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap();
    let ua = col("user_agent");
    let ua = ua.as_any().downcast_ref::<StringArray>().unwrap();
    let props = col("properties");
    let props = props.as_any().downcast_ref::<StringArray>().unwrap();
    let bot = col("device_is_bot");
    let bot = bot.as_any().downcast_ref::<BooleanArray>().unwrap();
    let bot_kind = col("device_bot");
    let bot_kind = bot_kind.as_any().downcast_ref::<StringArray>().unwrap();
    let path = col("path");
    let path = path.as_any().downcast_ref::<StringArray>().unwrap();
    let utm = col("utm_source");
    let utm = utm.as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(
        b.column_by_name("session_id").unwrap().null_count(),
        b.num_rows()
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(ids.value(i), e.event_id);
        assert_eq!(users.value(i), e.user_id.as_key());
        assert_eq!(at.value(i), e.event_at.timestamp_micros());
        assert_eq!(ua.is_null(i), e.user_agent.is_none());
        let p: serde_json::Value = serde_json::from_str(props.value(i)).unwrap();
        assert_eq!(p["nested"]["a"][1], 2);
        assert_eq!(bot.value(i), e.device.is_bot);
        assert_eq!(bot_kind.is_null(i), e.device.bot.is_none());
        assert_eq!(
            (!path.is_null(i)).then(|| path.value(i)),
            e.web.path.as_deref()
        );
        assert_eq!(utm.value(i), "news");
    }
    assert_eq!(at.timezone(), Some("UTC"));
}

#[test]
fn ndjson_is_one_event_per_line_with_the_article_names() {
    let events: Vec<Event> = (0..5).map(sample).collect();
    let refs: Vec<&Event> = events.iter().collect();
    for gzip in [false, true] {
        let bytes = encode(&refs, Format::Ndjson, gzip).unwrap();
        let text = if gzip {
            let mut s = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut s)
                .unwrap();
            s
        } else {
            String::from_utf8(bytes).unwrap()
        };
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        for (line, e) in lines.iter().zip(&events) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for field in [
                "user_id",
                "event_at",
                "event_id",
                "event_type",
                "ip_address",
            ] {
                assert!(v.get(field).is_some(), "{field} missing in {line}");
            }
            let back: Event = serde_json::from_str(line).unwrap();
            assert_eq!(&back, e);
        }
        assert!(text.ends_with('\n'));
    }
}

/// A file written before the lake had its newer columns reads them as null;
/// a column the lake does not have, or of another type, is an error.
#[test]
fn older_files_conform_to_the_lake_schema() {
    let events: Vec<Event> = (0..4).map(sample).collect();
    let refs: Vec<&Event> = events.iter().collect();
    let full = record_batch(&refs).unwrap();
    let older = full.project(&(0..16).collect::<Vec<_>>()).unwrap();
    assert!(older.column_by_name("url").is_none());
    let conformed = conform(older.clone()).unwrap();
    assert_eq!(conformed.schema(), SCHEMA.clone());
    assert_eq!(conformed.column_by_name("path").unwrap().null_count(), 4);
    assert_eq!(conformed.column(0), full.column(0));

    let renamed = arrow_schema::Schema::new(
        older
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let name = if f.name() == "properties" {
                    "props"
                } else {
                    f.name()
                };
                f.as_ref().clone().with_name(name)
            })
            .collect::<Vec<_>>(),
    );
    let odd = RecordBatch::try_new(std::sync::Arc::new(renamed), older.columns().to_vec()).unwrap();
    let error = conform(odd).unwrap_err().to_string();
    assert!(error.contains("properties"), "{error}");
}
