//! zstd dictionaries for the change log's frames, trained on the table's
//! own events.
//!
//! Seed-like events share most of their bytes with each other (keys,
//! user agents, event types), and a dictionary holds those once: with one,
//! frames of [`super::frame::FRAME_RAW_DICT`] compress better than frames
//! twice the size without, and reading one change decompresses half the
//! bytes.
//!
//! Each dictionary is a file `dict/<first seq>.zdict`, written and synced
//! before any frame uses it. The change with sequence number `s` is
//! compressed with the dictionary whose first seq is the greatest `<= s`
//! (none before the first). A frame names its dictionary by the id zstd
//! writes into it, so reading needs no rule. A dictionary goes once the
//! next one's first seq is at or before the oldest change kept.
//!
//! The writer samples every [`STRIDE`]th change (identifiers masked:
//! [`IDENTIFIERS`]) until it holds
//! [`SAMPLES`], then trains on a thread of its own (about 0.15 s); the next
//! group after training uses the new dictionary. The first is trained
//! after a segment's worth of changes, and a new one every [`RETRAIN`]
//! changes, so that new event shapes are learned.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::thread::JoinHandle;

use zstd::zstd_safe::{CDict, DDict};

use super::file::{io_error, sync_dir};
use super::frame::LEVEL;
use crate::Error;

const EXTENSION: &str = "zdict";
/// Bytes a dictionary holds at most.
const DICT_SIZE: usize = if cfg!(test) { 4 * 1024 } else { 64 * 1024 };
/// One change in this many is kept as a sample.
const STRIDE: u64 = if cfg!(test) { 1 } else { 16 };
/// Samples a training uses (about 2 MB of seed-like events).
const SAMPLES: usize = if cfg!(test) { 150 } else { 4096 };
/// A sample is cut to this many bytes.
const SAMPLE_MAX: usize = 4096;
/// Changes between one dictionary and the next.
const RETRAIN: u64 = if cfg!(test) { 1000 } else { 1 << 20 };

/// One dictionary, prepared for compression and decompression on first use.
pub(crate) struct Dict {
    /// The id zstd writes into every frame compressed with it.
    pub id: u32,
    bytes: Vec<u8>,
    compress: OnceLock<CDict<'static>>,
    decompress: OnceLock<DDict<'static>>,
}

impl Dict {
    pub fn compression(&self) -> &CDict<'static> {
        self.compress
            .get_or_init(|| CDict::create(&self.bytes, LEVEL))
    }

    pub fn decompression(&self) -> &DDict<'static> {
        self.decompress.get_or_init(|| DDict::create(&self.bytes))
    }
}

/// The dictionaries of one log, by first sequence number.
pub(crate) struct Dicts {
    dir: PathBuf,
    by_first: RwLock<BTreeMap<u64, Arc<Dict>>>,
}

impl Dicts {
    /// Loads the dictionaries in `dir` (made if missing).
    pub fn open(dir: &Path) -> Result<Dicts, Error> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let mut by_first = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
            let path = entry.map_err(io_error(dir))?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                // Written, never renamed: no frame uses it.
                std::fs::remove_file(&path).map_err(io_error(&path))?;
                continue;
            }
            let Some(first) = path
                .extension()
                .filter(|e| *e == EXTENSION)
                .and_then(|_| path.file_stem()?.to_str()?.parse::<u64>().ok())
            else {
                continue;
            };
            let bytes = std::fs::read(&path).map_err(io_error(&path))?;
            let dict =
                prepare(bytes).ok_or(Error::Corrupt("a change-log dictionary without its id"))?;
            by_first.insert(first, Arc::new(dict));
        }
        Ok(Dicts {
            dir: dir.to_path_buf(),
            by_first: RwLock::new(by_first),
        })
    }

    /// The dictionary for the change `seq`, and the first seq of the next
    /// one (where a frame must end).
    pub fn for_seq(&self, seq: u64) -> (Option<Arc<Dict>>, Option<u64>) {
        let all = self.read_lock();
        let dict = all.range(..=seq).next_back().map(|(_, d)| d.clone());
        let next = all.range(seq + 1..).next().map(|(first, _)| *first);
        (dict, next)
    }

    /// The dictionary a frame names.
    pub fn by_id(&self, id: u32) -> Option<Arc<Dict>> {
        self.read_lock().values().find(|d| d.id == id).cloned()
    }

    /// The first seq of the newest dictionary.
    pub fn newest_first(&self) -> Option<u64> {
        self.read_lock().keys().next_back().copied()
    }

    pub fn len(&self) -> usize {
        self.read_lock().len()
    }

    /// Stores a trained dictionary for the changes from `first` on (past
    /// every change stored). `None` when zstd gave no usable id.
    pub fn install(&self, bytes: Vec<u8>, first: u64) -> Result<Option<Arc<Dict>>, Error> {
        let Some(dict) = prepare(bytes) else {
            return Ok(None);
        };
        if self.by_id(dict.id).is_some() {
            return Ok(None);
        }
        let path = self.dir.join(format!("{first:020}.{EXTENSION}"));
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, &dict.bytes).map_err(io_error(&temporary))?;
        std::fs::File::open(&temporary)
            .and_then(|f| f.sync_all())
            .map_err(io_error(&temporary))?;
        std::fs::rename(&temporary, &path).map_err(io_error(&path))?;
        sync_dir(&self.dir)?;
        let dict = Arc::new(dict);
        self.by_first
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(first, dict.clone());
        Ok(Some(dict))
    }

    /// Removes the dictionaries no kept change uses: those followed by one
    /// whose first seq is `<= oldest`.
    pub fn drop_before(&self, oldest: u64) -> Result<usize, Error> {
        let gone: Vec<u64> = {
            let mut all = self.by_first.write().unwrap_or_else(|p| p.into_inner());
            let firsts: Vec<u64> = all.keys().copied().collect();
            let gone: Vec<u64> = firsts
                .windows(2)
                .filter(|pair| pair[1] <= oldest)
                .map(|pair| pair[0])
                .collect();
            for first in &gone {
                all.remove(first);
            }
            gone
        };
        for first in &gone {
            let path = self.dir.join(format!("{first:020}.{EXTENSION}"));
            std::fs::remove_file(&path).map_err(io_error(&path))?;
        }
        if !gone.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(gone.len())
    }

    fn read_lock(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, Arc<Dict>>> {
        self.by_first.read().unwrap_or_else(|p| p.into_inner())
    }
}

fn prepare(bytes: Vec<u8>) -> Option<Dict> {
    let id = zstd::zstd_safe::get_dict_id_from_dict(&bytes)?.get();
    Some(Dict {
        id,
        bytes,
        compress: OnceLock::new(),
        decompress: OnceLock::new(),
    })
}

/// The fields whose values name a person or a device: masked in samples,
/// so that no dictionary holds them (a deleted user's id or address must
/// not outlive the deletion in a dictionary file).
const IDENTIFIERS: [&[u8]; 4] = [
    b"\"user_id\":",
    b"\"anonymous_id\":",
    b"\"ip_address\":",
    b"\"event_id\":",
];

/// Overwrites the values of [`IDENTIFIERS`] in a sample of an event's
/// compact JSON with `0`s (the quotes of a string stay).
fn mask_identifiers(json: &mut [u8]) {
    for key in IDENTIFIERS {
        let mut from = 0;
        while let Some(at) = find(&json[from..], key) {
            let mut i = from + at + key.len();
            let quoted = json.get(i) == Some(&b'"');
            if quoted {
                i += 1;
            }
            while let Some(b) = json.get(i).copied() {
                let end = if quoted {
                    b == b'"'
                } else {
                    matches!(b, b',' | b'}' | b']')
                };
                if end {
                    break;
                }
                // An escaped quote inside a string is masked with it.
                let skip = usize::from(quoted && b == b'\\');
                for byte in json.iter_mut().skip(i).take(1 + skip) {
                    *byte = b'0';
                }
                i += 1 + skip;
            }
            from = i;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Samples the writer's changes and trains dictionaries from them.
#[derive(Default)]
pub(crate) struct Trainer {
    samples: Vec<u8>,
    sizes: Vec<usize>,
    training: Option<JoinHandle<std::io::Result<Vec<u8>>>>,
}

impl Trainer {
    /// Called by the writer before it appends `changes` (the first being
    /// `first`): installs a dictionary whose training finished, then takes
    /// samples and starts a training when one is due.
    pub fn before_append<'a>(
        &mut self,
        dicts: &Dicts,
        first: u64,
        changes: impl Iterator<Item = (u64, &'a [u8])>,
    ) -> Result<(), Error> {
        if let Some(done) = self.training.take_if(|t| t.is_finished()) {
            match done.join() {
                Ok(Ok(bytes)) => {
                    if let Some(dict) = dicts.install(bytes, first)? {
                        tracing::info!(
                            id = dict.id,
                            first,
                            "the change log compresses with a new dictionary"
                        );
                    }
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "training a change-log dictionary failed; frames stay without one");
                }
                Err(_) => tracing::warn!("training a change-log dictionary panicked"),
            }
        }
        let due = self.training.is_none()
            && dicts
                .newest_first()
                .is_none_or(|newest| first >= newest + RETRAIN);
        if !due {
            return Ok(());
        }
        for (seq, json) in changes {
            if seq.is_multiple_of(STRIDE) && self.sizes.len() < SAMPLES {
                let sample = &json[..json.len().min(SAMPLE_MAX)];
                let start = self.samples.len();
                self.samples.extend_from_slice(sample);
                mask_identifiers(&mut self.samples[start..]);
                self.sizes.push(sample.len());
            }
        }
        if self.sizes.len() >= SAMPLES {
            let samples = std::mem::take(&mut self.samples);
            let sizes = std::mem::take(&mut self.sizes);
            let train = move || zstd::dict::from_continuous(&samples, &sizes, DICT_SIZE);
            if cfg!(test) {
                // Tests see the dictionary at the next append.
                let done = std::thread::spawn(train);
                while !done.is_finished() {
                    std::thread::yield_now();
                }
                self.training = Some(done);
            } else {
                self.training = Some(
                    std::thread::Builder::new()
                        .name("tracklake-dict".into())
                        .spawn(train)
                        .map_err(Error::Compress)?,
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_keep_no_identifier_of_a_person() {
        let mut json = br#"{"event_id":"abc","user_id":42,"x":"y","ip_address":"1.2.3.4","properties":{"user_id":"a\"b","n":1}}"#.to_vec();
        mask_identifiers(&mut json);
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"event_id":"000","user_id":00,"x":"y","ip_address":"0000000","properties":{"user_id":"0000","n":1}}"#
        );
        // A sample cut inside a value.
        let mut cut = br#"{"user_id":"abc"#.to_vec();
        mask_identifiers(&mut cut);
        assert_eq!(cut, br#"{"user_id":"000"#);
    }
}
