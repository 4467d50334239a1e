use super::*;

fn json(seq: u64) -> Vec<u8> {
    format!(r#"{{"seq":{seq},"marker":"event-{seq}"}}"#).into_bytes()
}

fn append(log: &Log, seqs: std::ops::RangeInclusive<u64>) -> BTreeSet<u64> {
    let owned: Vec<(u64, Vec<u8>)> = seqs.map(|s| (s, json(s))).collect();
    let changes: Vec<(u64, &[u8])> = owned.iter().map(|(s, j)| (*s, j.as_slice())).collect();
    let touched: BTreeSet<u64> = log.append(&changes).unwrap().into_iter().collect();
    log.sync(&touched).unwrap();
    touched
}

fn seqs(changes: &[Change]) -> Vec<u64> {
    changes.iter().map(|c| c.seq).collect()
}

#[test]
fn segments_cover_consecutive_sequence_numbers() {
    assert_eq!(segment_of(1), 0);
    assert_eq!(segment_of(SEGMENT), 0);
    assert_eq!(segment_of(SEGMENT + 1), 1);
    // Segment 0 holds 1..=SEGMENT: it goes once SEGMENT is trimmed.
    assert_eq!(first_kept(SEGMENT - 1), 0);
    assert_eq!(first_kept(SEGMENT), 1);
    assert!(file_name(0) < file_name(1) && file_name(1) < file_name(10));
}

#[test]
fn changes_are_read_back_across_segments_and_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), BTreeSet::new()).unwrap();
        assert_eq!(log.last_seq().unwrap(), 0);
        let touched = append(&log, 1..=100);
        assert_eq!(touched.into_iter().collect::<Vec<_>>(), [0, 1]);
        append(&log, 101..=150);
        assert_eq!(log.size().0, 3);
    }
    let log = Log::open(dir.path(), BTreeSet::new()).unwrap();
    assert_eq!(log.last_seq().unwrap(), 150);
    let all = log.read(1, 150, 1000).unwrap();
    assert_eq!(seqs(&all), (1..=150).collect::<Vec<_>>());
    assert!(all.iter().all(|c| c.json == json(c.seq)));
    assert_eq!(seqs(&log.read(60, 70, 5).unwrap()), [60, 61, 62, 63, 64]);
    assert_eq!(log.get(129).unwrap(), Some(json(129)));
    assert_eq!(log.get(151).unwrap(), None);
}

#[test]
fn a_torn_write_is_cut_off_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), BTreeSet::new()).unwrap();
        append(&log, 1..=40);
    }
    let path = dir.path().join(file_name(0));
    let whole = std::fs::metadata(&path).unwrap().len();
    // Half a frame written when the process died.
    let mut bytes = std::fs::read(&path).unwrap();
    let (mut torn, mut frames) = (Vec::new(), Vec::new());
    let big: Vec<u8> = (0..3000).map(|i| (i % 251) as u8).collect();
    Encoder::new()
        .unwrap()
        .encode(&[(41, big.as_slice())], &mut torn, &mut frames)
        .unwrap();
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&path, &bytes).unwrap();
    let log = Log::open(dir.path(), BTreeSet::new()).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
    assert_eq!(log.last_seq().unwrap(), 40);
    append(&log, 41..=45);
    assert_eq!(
        seqs(&log.read(38, 100, 100).unwrap()),
        [38, 39, 40, 41, 42, 43, 44, 45]
    );
}

#[test]
fn hidden_changes_are_not_read_and_a_purge_takes_them_off_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), BTreeSet::new()).unwrap();
    append(&log, 1..=100);
    log.hide([5, 70]);
    assert_eq!(log.get(5).unwrap(), None);
    assert_eq!(log.read(1, 100, 1000).unwrap().len(), 98);
    assert_eq!(log.hidden_segments(), [0, 1]);
    let on_disk = |seq: u64| {
        let marker = format!("event-{seq}\"");
        std::fs::read_dir(dir.path()).unwrap().any(|f| {
            let bytes = std::fs::read(f.unwrap().path()).unwrap();
            let raw = decode_all(&bytes);
            raw.windows(marker.len()).any(|w| w == marker.as_bytes())
        })
    };
    assert!(on_disk(5) && on_disk(70));
    let mut removed = log.purge(&[0, 1]).unwrap();
    removed.sort();
    assert_eq!(removed, [5, 70]);
    assert!(!on_disk(5) && !on_disk(70) && on_disk(6));
    log.forget_hidden(&removed);
    assert_eq!(seqs(&log.read(4, 7, 10).unwrap()), [4, 6, 7]);
    // Appends go on after a rewrite, and all of it reads after a reopen.
    append(&log, 101..=110);
    drop(log);
    let log = Log::open(dir.path(), BTreeSet::new()).unwrap();
    assert_eq!(log.read(1, 200, 1000).unwrap().len(), 108);
}

/// Every frame of a segment file, decompressed and concatenated.
fn decode_all(bytes: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut at = 0;
    while at + frame::HEADER <= bytes.len() {
        let header =
            frame::Header::parse(bytes[at..at + frame::HEADER].try_into().unwrap()).unwrap();
        let payload = &bytes[at + frame::HEADER..at + header.len() as usize];
        raw.extend(frame::decode(&header, payload).unwrap());
        at += header.len() as usize;
    }
    raw
}

#[test]
fn the_newest_segment_is_never_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), BTreeSet::new()).unwrap();
    append(&log, 1..=3 * SEGMENT);
    assert_eq!(log.drop_through(3 * SEGMENT).unwrap(), 2);
    assert_eq!(log.size().0, 1);
    assert_eq!(log.last_seq().unwrap(), 3 * SEGMENT);
}
