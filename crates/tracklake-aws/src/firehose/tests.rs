use aws_sdk_firehose::types::PutRecordBatchResponseEntry;

use super::*;

#[test]
fn calls_stay_within_500_records_and_4_mib() {
    let many: Vec<Vec<u8>> = (0..1201).map(|_| vec![b'x'; 10]).collect();
    let sizes: Vec<usize> = calls(&many).iter().map(|(_, c)| c.len()).collect();
    let starts: Vec<usize> = calls(&many).iter().map(|(s, _)| *s).collect();
    assert_eq!(starts, [0, 500, 1000]);
    assert_eq!(sizes, [500, 500, 201]);
    let big: Vec<Vec<u8>> = (0..10).map(|_| vec![b'x'; MAX_RECORD_BYTES]).collect();
    let calls = calls(&big);
    assert!(
        calls
            .iter()
            .all(|(_, c)| c.iter().map(Vec::len).sum::<usize>() <= MAX_CALL_BYTES)
    );
    assert_eq!(calls.iter().map(|(_, c)| c.len()).sum::<usize>(), 10);
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
