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
        .encode(
            &[(41, big.as_slice())],
            &log_dicts(&dir),
            &mut torn,
            &mut frames,
        )
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
        segment_files(dir.path()).any(|path| {
            let bytes = std::fs::read(path).unwrap();
            let raw = decode_all(&bytes, &log.dicts);
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

fn log_dicts(dir: &tempfile::TempDir) -> Dicts {
    Dicts::open(&dir.path().join("dict")).unwrap()
}

fn segment_files(dir: &Path) -> impl Iterator<Item = PathBuf> {
    let files = std::fs::read_dir(dir).unwrap().map(|f| f.unwrap().path());
    files.filter(|p| p.extension().is_some_and(|e| e == EXTENSION))
}

/// The header and payload of every frame of a segment file.
fn frames_in(bytes: &[u8]) -> Vec<(frame::Header, &[u8])> {
    let (mut frames, mut at) = (Vec::new(), 0);
    while at + frame::HEADER <= bytes.len() {
        let header =
            frame::Header::parse(bytes[at..at + frame::HEADER].try_into().unwrap()).unwrap();
        frames.push((
            header,
            &bytes[at + frame::HEADER..at + header.len() as usize],
        ));
        at += header.len() as usize;
    }
    frames
}

/// Every frame of a segment file, decompressed and concatenated.
fn decode_all(bytes: &[u8], dicts: &Dicts) -> Vec<u8> {
    let frames = frames_in(bytes).into_iter();
    frames
        .flat_map(|(header, payload)| frame::decode(&header, payload, dicts).unwrap())
        .collect()
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

const TITLES: [&str; 5] = [
    "ad est impedit qui",
    "voluptatem sequi nesciunt",
    "quia dolor sit amet consectetur",
    "ut enim ad minima veniam",
    "neque porro quisquam est",
];

/// A seed-like event: the keys, agents and shapes real events repeat,
/// with the ids, users, times and properties that vary.
fn event_json(seq: u64) -> Vec<u8> {
    let r = seq
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        >> 16;
    let (kind, agent) = match r % 3 {
        0 => (
            "login",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        ),
        1 => (
            "material-view",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        ),
        _ => (
            "material-view",
            "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
        ),
    };
    format!(
        r#"{{"event_id":"01a2394d-{:04x}-771b-942d-{:012x}","user_id":{},"event_type":"{kind}","event_at":"2026-11-25T15:{:02}:{:02}.836Z","user_agent":"{agent}","received_at":"2026-12-03T00:29:{:02}.905337Z","ip_address":"135.{}.{}.1","properties":{{"material_id":{},"title":"{}","seq":{seq}}},"device":{{"type":"desktop","os":"Windows","os_version":"10","browser":"Chrome","browser_version":"131.0","is_bot":false}}}}"#,
        r % 65536,
        r,
        r % 1000,
        r % 60,
        (r >> 8) % 60,
        (r >> 12) % 60,
        r % 250,
        (r >> 4) % 250,
        r % 500,
        TITLES[(r % 5) as usize],
    )
    .into_bytes()
}

fn append_events(log: &Log, seqs: std::ops::RangeInclusive<u64>) {
    let changes: Vec<(u64, Vec<u8>)> = seqs.map(|s| (s, event_json(s))).collect();
    for group in changes.chunks(50) {
        let touched: BTreeSet<u64> = log.append(group).unwrap().into_iter().collect();
        log.sync(&touched).unwrap();
    }
}

/// The zstd dictionary id a segment's frames name, frame by frame.
fn frame_dicts(path: &Path) -> Vec<Option<u32>> {
    let bytes = std::fs::read(path).unwrap();
    let frames = frames_in(&bytes).into_iter();
    frames
        .map(|(_, payload)| zstd::zstd_safe::get_dict_id_from_frame(payload).map(|id| id.get()))
        .collect()
}

#[test]
fn a_dictionary_trained_on_the_events_compresses_later_frames_and_goes_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), BTreeSet::new()).unwrap();
    // The first dictionary is trained from the first 150 changes and used
    // from the next group on.
    append_events(&log, 1..=4 * SEGMENT);
    assert_eq!(log.dicts.len(), 1);
    let first = log.dicts.newest_first().unwrap();
    assert_eq!(first, 151);
    let id = log.dicts.for_seq(first).0.unwrap().id;
    assert!(
        frame_dicts(&dir.path().join(file_name(0)))
            .iter()
            .all(Option::is_none)
    );
    // No user id or address of the samples is in the dictionary.
    let dict_file = dir.path().join("dict").join(format!("{first:020}.zdict"));
    let held = std::fs::read(dict_file).unwrap();
    for identifier in [&br#""user_id":1"#[..], br#""ip_address":"135"#] {
        assert!(!held.windows(identifier.len()).any(|w| w == identifier));
    }
    assert!(
        frame_dicts(&dir.path().join(file_name(3)))
            .iter()
            .all(|d| *d == Some(id))
    );
    let size = |segment| {
        std::fs::metadata(dir.path().join(file_name(segment)))
            .unwrap()
            .len()
    };
    // Smaller, though its frames hold half as much.
    assert!(
        size(3) < size(0),
        "with the dictionary {} bytes, without {}",
        size(3),
        size(0)
    );

    // Reads, a purge and a reopen all go through it.
    log.hide([200]);
    log.purge(&[segment_of(200)]).unwrap();
    log.forget_hidden(&[200]);
    drop(log);
    let log = Log::open(dir.path(), BTreeSet::new()).unwrap();
    let all = log.read(1, 4 * SEGMENT, usize::MAX).unwrap();
    assert_eq!(all.len() as u64, 4 * SEGMENT - 1);
    assert!(all.iter().all(|c| c.json == event_json(c.seq)));
    assert_eq!(log.get(250).unwrap(), Some(event_json(250)));

    // A new one every RETRAIN changes; the first goes once no kept change
    // is older than its successor.
    append_events(&log, 4 * SEGMENT + 1..=1500);
    assert_eq!(log.dicts.len(), 2);
    let second = log.dicts.newest_first().unwrap();
    // The segment where the second starts holds changes of the first.
    let its_segment = segment_of(second);
    log.drop_through(first_seq(its_segment) - 1).unwrap();
    assert_eq!(log.dicts.len(), 2);
    log.drop_through(first_seq(its_segment + 1) - 1).unwrap();
    assert_eq!(log.dicts.len(), 1);
    let kept = std::fs::read_dir(dir.path().join("dict")).unwrap().count();
    assert_eq!(kept, 1);
    let from = first_seq(its_segment + 1);
    let tail = log.read(from, 1500, usize::MAX).unwrap();
    assert_eq!(tail.len() as u64, 1500 - from + 1);
    drop(log);
    let log = Log::open(dir.path(), BTreeSet::new()).unwrap();
    assert_eq!(log.get(1500).unwrap(), Some(event_json(1500)));
}

#[test]
fn a_frame_whose_dictionary_is_missing_is_an_error_not_a_guess() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), BTreeSet::new()).unwrap();
        append_events(&log, 1..=300);
    }
    for file in std::fs::read_dir(dir.path().join("dict")).unwrap() {
        std::fs::remove_file(file.unwrap().path()).unwrap();
    }
    let log = Log::open(dir.path(), BTreeSet::new()).unwrap();
    assert_eq!(log.get(10).unwrap(), Some(event_json(10)));
    assert!(matches!(log.get(290), Err(Error::Corrupt(_))));
}
