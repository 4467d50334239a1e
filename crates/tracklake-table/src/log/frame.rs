//! One frame of the change log: consecutive changes written by one group
//! commit, compressed together and checksummed.
//!
//! A frame is a 36-byte header and a payload, little-endian:
//!
//! - header: `TLF1`, payload length (4), raw length (4), changes (4),
//!   first seq (8), last seq (8), CRC-32 (4) of the header's bytes 4..32
//!   and the payload;
//! - payload: zstd of the records, each `seq(8) length(4) json`.
//!
//! A frame holds about [`FRAME_RAW`] bytes of JSON, or [`FRAME_RAW_DICT`]
//! when compressed with a dictionary (`dict.rs`; zstd names it in the
//! payload): reading one change decompresses one frame.

use zstd::zstd_safe::{CCtx, DCtx, get_dict_id_from_frame};

use super::dict::Dicts;
use crate::Error;

pub(crate) const HEADER: usize = 36;
const MAGIC: &[u8; 4] = b"TLF1";
/// Raw bytes a frame holds at most (a single larger change gets a frame
/// of its own).
pub(crate) const FRAME_RAW: usize = 16 * 1024;
/// The same with a dictionary: 8 KiB frames of seed-like events compress
/// 7.8× with one, against 5.9× for 16 KiB frames without.
pub(crate) const FRAME_RAW_DICT: usize = 8 * 1024;
/// zstd's fastest level: a few hundred MB/s on the writer thread.
pub(crate) const LEVEL: i32 = 1;
const RECORD: usize = 12;

/// A frame's header, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub payload: u32,
    pub raw: u32,
    pub count: u32,
    pub first: u64,
    pub last: u64,
    pub crc: u32,
}

impl Header {
    /// The header in `bytes`, or `None` where there is none (a torn or
    /// zeroed tail).
    pub fn parse(bytes: &[u8; HEADER]) -> Option<Header> {
        if &bytes[..4] != MAGIC {
            return None;
        }
        let u32_at =
            |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
        let u64_at =
            |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
        let header = Header {
            payload: u32_at(4),
            raw: u32_at(8),
            count: u32_at(12),
            first: u64_at(16),
            last: u64_at(24),
            crc: u32_at(32),
        };
        (header.count > 0 && header.first <= header.last).then_some(header)
    }

    /// Header and payload, in bytes.
    pub fn len(&self) -> u64 {
        HEADER as u64 + u64::from(self.payload)
    }

    fn encode(&self) -> [u8; HEADER] {
        let mut bytes = [0u8; HEADER];
        bytes[..4].copy_from_slice(MAGIC);
        bytes[4..8].copy_from_slice(&self.payload.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.raw.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.count.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.first.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.last.to_le_bytes());
        bytes[32..36].copy_from_slice(&self.crc.to_le_bytes());
        bytes
    }

    fn checksum(&self, payload: &[u8]) -> u32 {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&self.encode()[4..32]);
        hasher.update(payload);
        hasher.finalize()
    }

    /// Whether `payload` is this frame's, whole and undamaged.
    pub fn verifies(&self, payload: &[u8]) -> bool {
        payload.len() == self.payload as usize && self.checksum(payload) == self.crc
    }
}

/// A frame written: its first change and where it starts in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placed {
    pub first: u64,
    pub offset: usize,
}

/// Makes frames; holds the compression context between calls.
pub(crate) struct Encoder {
    context: CCtx<'static>,
    raw: Vec<u8>,
    compressed: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Result<Encoder, Error> {
        Ok(Encoder {
            context: CCtx::try_create()
                .ok_or_else(|| Error::Compress(std::io::Error::other("no zstd context")))?,
            raw: Vec::with_capacity(FRAME_RAW * 2),
            compressed: Vec::new(),
        })
    }

    /// Appends frames holding `changes` (in sequence order) to `out`, each
    /// compressed with the dictionary its changes are due (`dicts`).
    pub fn encode(
        &mut self,
        changes: &[(u64, impl AsRef<[u8]>)],
        dicts: &Dicts,
        out: &mut Vec<u8>,
        frames: &mut Vec<Placed>,
    ) -> Result<(), Error> {
        let mut start = 0;
        while start < changes.len() {
            self.raw.clear();
            let (dict, next_dict) = dicts.for_seq(changes[start].0);
            let limit = if dict.is_some() {
                FRAME_RAW_DICT
            } else {
                FRAME_RAW
            };
            let mut end = start;
            while end < changes.len()
                && (end == start
                    || (self.raw.len() < limit && next_dict.is_none_or(|n| changes[end].0 < n)))
            {
                let (seq, json) = (changes[end].0, changes[end].1.as_ref());
                let len =
                    u32::try_from(json.len()).map_err(|_| Error::Corrupt("a change over 4 GiB"))?;
                self.raw.extend_from_slice(&seq.to_le_bytes());
                self.raw.extend_from_slice(&len.to_le_bytes());
                self.raw.extend_from_slice(json);
                end += 1;
            }
            let bound = zstd::zstd_safe::compress_bound(self.raw.len());
            self.compressed.clear();
            self.compressed.reserve(bound);
            let written = match &dict {
                Some(dict) => self.context.compress_using_cdict(
                    &mut self.compressed,
                    &self.raw,
                    dict.compression(),
                ),
                None => self
                    .context
                    .compress(&mut self.compressed, &self.raw, LEVEL),
            };
            written.map_err(zstd_error)?;
            let mut header = Header {
                payload: self.compressed.len() as u32,
                raw: self.raw.len() as u32,
                count: (end - start) as u32,
                first: changes[start].0,
                last: changes[end - 1].0,
                crc: 0,
            };
            header.crc = header.checksum(&self.compressed);
            frames.push(Placed {
                first: header.first,
                offset: out.len(),
            });
            out.extend_from_slice(&header.encode());
            out.extend_from_slice(&self.compressed);
            start = end;
        }
        Ok(())
    }
}

fn zstd_error(code: usize) -> Error {
    Error::Compress(std::io::Error::other(zstd::zstd_safe::get_error_name(code)))
}

/// The records of a frame's payload, decompressed.
pub(crate) fn decode(header: &Header, payload: &[u8], dicts: &Dicts) -> Result<Vec<u8>, Error> {
    if !header.verifies(payload) {
        return Err(Error::Corrupt("a change-log frame that fails its checksum"));
    }
    let dict = match get_dict_id_from_frame(payload) {
        None => None,
        Some(id) => Some(dicts.by_id(id.get()).ok_or(Error::Corrupt(
            "a change-log frame whose dictionary is missing",
        ))?),
    };
    thread_local! {
        // A decompression context per thread, not per frame (making one
        // was 1% of the CPU time of ingest, in delivery's reads).
        static CONTEXT: std::cell::RefCell<Option<DCtx<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let mut raw = Vec::with_capacity(header.raw as usize);
    CONTEXT.with_borrow_mut(|context| {
        let context = match context {
            Some(context) => context,
            None => context.insert(
                DCtx::try_create()
                    .ok_or_else(|| Error::Compress(std::io::Error::other("no zstd context")))?,
            ),
        };
        match &dict {
            Some(dict) => context.decompress_using_ddict(&mut raw, payload, dict.decompression()),
            None => context.decompress(&mut raw, payload),
        }
        .map_err(zstd_error)
    })?;
    if raw.len() != header.raw as usize {
        return Err(Error::Corrupt(
            "a change-log frame shorter than its header says",
        ));
    }
    Ok(raw)
}

/// The `(seq, json)` records of a decompressed payload.
pub(crate) fn records(raw: &[u8]) -> impl Iterator<Item = Result<(u64, &[u8]), Error>> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let record = (|| {
            let head = rest.get(..RECORD)?;
            let seq = u64::from_le_bytes(head[..8].try_into().ok()?);
            let len = u32::from_le_bytes(head[8..12].try_into().ok()?) as usize;
            let json = rest.get(RECORD..RECORD + len)?;
            rest = &rest[RECORD + len..];
            Some((seq, json))
        })();
        match record {
            Some(record) => Some(Ok(record)),
            None => {
                rest = &[];
                Some(Err(Error::Corrupt(
                    "a change-log record that runs past its frame",
                )))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log's dictionaries, none yet.
    fn no_dicts() -> (tempfile::TempDir, Dicts) {
        let dir = tempfile::tempdir().unwrap();
        let dicts = Dicts::open(dir.path()).unwrap();
        (dir, dicts)
    }

    fn frames_of(changes: &[(u64, &[u8])]) -> (Vec<u8>, Vec<Placed>) {
        let (mut out, mut frames) = (Vec::new(), Vec::new());
        Encoder::new()
            .unwrap()
            .encode(changes, &no_dicts().1, &mut out, &mut frames)
            .unwrap();
        (out, frames)
    }

    fn header_at(out: &[u8], at: usize) -> Header {
        Header::parse(out[at..at + HEADER].try_into().unwrap()).unwrap()
    }

    #[test]
    fn frames_hold_their_changes_in_order() {
        let big = vec![b'x'; FRAME_RAW + 10];
        let small = br#"{"a":1}"#.as_slice();
        let changes = [(1, small), (2, big.as_slice()), (3, small), (5, small)];
        let (out, frames) = frames_of(&changes);
        // The big change closes the first frame; the rest share the next.
        assert_eq!(frames.iter().map(|f| f.first).collect::<Vec<_>>(), [1, 3]);
        let mut read = Vec::new();
        for frame in &frames {
            let header = header_at(&out, frame.offset);
            let payload = &out[frame.offset + HEADER..][..header.payload as usize];
            let raw = decode(&header, payload, &no_dicts().1).unwrap();
            for record in records(&raw) {
                let (seq, json) = record.unwrap();
                read.push((seq, json.to_vec()));
            }
        }
        let expected: Vec<_> = changes.iter().map(|(s, j)| (*s, j.to_vec())).collect();
        assert_eq!(read, expected);
    }

    #[test]
    fn a_damaged_frame_is_refused() {
        let (mut out, _) = frames_of(&[(7, br#"{"a":1}"#.as_slice())]);
        let header = header_at(&out, 0);
        let last = out.len() - 1;
        out[last] ^= 1;
        assert!(matches!(
            decode(&header, &out[HEADER..], &no_dicts().1),
            Err(Error::Corrupt(_))
        ));
        assert!(Header::parse(&[0u8; HEADER]).is_none());
    }
}
