//! One segment of the change log on disk: a file of frames in sequence
//! order, with an index of where each frame starts (8 bytes a frame, made
//! when the segment is first read).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::dict::Dicts;
use super::frame::{self, Encoder, HEADER, Header, Placed};
use crate::Error;

pub(crate) struct SegmentFile {
    pub path: PathBuf,
    /// The sequence number the segment starts at.
    base: u64,
    inner: RwLock<Inner>,
}

struct Inner {
    file: Arc<File>,
    index: Option<Index>,
}

/// Where frames start: the first seq of each (as an offset from the
/// segment's base) and its position in the file.
#[derive(Default)]
struct Index {
    firsts: Vec<u32>,
    offsets: Vec<u32>,
    end: u64,
    last: u64,
}

/// A frame located in a file, to be read outside the lock.
struct Located {
    file: Arc<File>,
    offset: u64,
    len: u64,
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Log {
        path: path.display().to_string(),
        source,
    }
}

impl SegmentFile {
    /// Opens a segment; `verify` checks every frame and cuts a torn tail
    /// (a write the process did not finish, never acknowledged).
    pub fn open(path: PathBuf, base: u64, verify: bool) -> Result<SegmentFile, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let segment = SegmentFile {
            path,
            base,
            inner: RwLock::new(Inner {
                file: Arc::new(file),
                index: None,
            }),
        };
        if verify {
            let mut inner = segment.write_lock();
            let index = segment.scan(&inner.file, true)?;
            inner.index = Some(index);
        }
        Ok(segment)
    }

    /// Creates an empty segment file (its directory entry is synced).
    pub fn create(dir: &Path, path: PathBuf, base: u64) -> Result<SegmentFile, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error(&path))?;
        sync_dir(dir)?;
        Ok(SegmentFile {
            path,
            base,
            inner: RwLock::new(Inner {
                file: Arc::new(file),
                index: Some(Index::default()),
            }),
        })
    }

    /// Reads the headers (and with `verify` the payloads) from the start;
    /// with `verify`, what follows the last good frame is cut off.
    fn scan(&self, file: &File, verify: bool) -> Result<Index, Error> {
        let size = file.metadata().map_err(io_error(&self.path))?.len();
        let mut index = Index::default();
        // Read in large chunks: a read per header made the first read of a
        // segment take milliseconds (thousands of frames).
        let mut window = Window::default();
        while index.end + HEADER as u64 <= size {
            let bytes = window.get(file, index.end, HEADER as u64, size, &self.path)?;
            let Some(header) = bytes.first_chunk::<HEADER>().and_then(Header::parse) else {
                break;
            };
            if index.end + header.len() > size || header.first < self.base {
                break;
            }
            if verify {
                let frame = window.get(file, index.end, header.len(), size, &self.path)?;
                if !header.verifies(&frame[HEADER..]) {
                    break;
                }
            }
            index.push(header.first - self.base, index.end);
            index.end += header.len();
            index.last = header.last;
        }
        if index.end < size {
            if !verify {
                return Err(Error::Corrupt("a change-log segment with a damaged frame"));
            }
            tracing::warn!(
                path = %self.path.display(),
                kept = index.end,
                cut = size - index.end,
                "cutting a torn write off the change log (it was never acknowledged)"
            );
            file.set_len(index.end).map_err(io_error(&self.path))?;
            file.sync_all().map_err(io_error(&self.path))?;
        }
        Ok(index)
    }

    /// The newest change in the segment (0 when empty).
    pub fn last_seq(&self) -> Result<u64, Error> {
        self.with_index(|index| index.last)
    }

    /// Bytes on disk (without reading the segment's index).
    pub fn disk_bytes(&self) -> Result<u64, Error> {
        let file = self.read_lock().file.clone();
        Ok(file.metadata().map_err(io_error(&self.path))?.len())
    }

    /// Appends frames made by [`Encoder::encode`] (the writer's only).
    pub fn append(&self, bytes: &[u8], frames: &[Placed], last: u64) -> Result<(), Error> {
        let mut inner = self.write_lock();
        let (file, index) = self.indexed(&mut inner)?;
        file.write_all_at(bytes, index.end)
            .map_err(io_error(&self.path))?;
        for frame in frames {
            index.push(frame.first - self.base, index.end + frame.offset as u64);
        }
        index.end += bytes.len() as u64;
        index.last = last;
        Ok(())
    }

    /// Makes what was appended durable.
    pub fn sync(&self) -> Result<(), Error> {
        let file = self.read_lock().file.clone();
        file.sync_data().map_err(io_error(&self.path))
    }

    /// Calls `each` with every change in `from..=to`, oldest first, until
    /// it returns false.
    pub fn read(
        &self,
        from: u64,
        to: u64,
        dicts: &Dicts,
        mut each: impl FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), Error> {
        let mut at = self.locate(from)?;
        while let Some(frame) = at {
            let (header, payload) = self.read_frame(&frame)?;
            let raw = frame::decode(&header, &payload, dicts)?;
            for record in frame::records(&raw) {
                let (seq, json) = record?;
                if seq < from {
                    continue;
                }
                if seq > to || !each(seq, json) {
                    return Ok(());
                }
            }
            at = self.next_frame(frame.offset + frame.len)?;
        }
        Ok(())
    }

    /// The frame that would hold `seq`, if any.
    fn locate(&self, seq: u64) -> Result<Option<Located>, Error> {
        let from = seq.saturating_sub(self.base);
        self.with_index_file(|index, file| {
            let i = index.firsts.partition_point(|f| u64::from(*f) <= from);
            let i = i.saturating_sub(1);
            index.frame(i, file)
        })
    }

    fn next_frame(&self, offset: u64) -> Result<Option<Located>, Error> {
        self.with_index_file(|index, file| {
            let i = index.offsets.partition_point(|o| u64::from(*o) < offset);
            index.frame(i, file)
        })
    }

    fn read_frame(&self, frame: &Located) -> Result<(Header, Vec<u8>), Error> {
        let mut bytes = vec![0u8; frame.len as usize];
        frame
            .file
            .read_exact_at(&mut bytes, frame.offset)
            .map_err(io_error(&self.path))?;
        let header = bytes
            .first_chunk::<HEADER>()
            .and_then(Header::parse)
            .filter(|h| h.len() == frame.len)
            .ok_or(Error::Corrupt("a change-log frame whose header is damaged"))?;
        bytes.drain(..HEADER);
        Ok((header, bytes))
    }

    /// Writes the segment anew, without the changes `keep` refuses, and
    /// puts the new file in its place. Returns the changes left out.
    pub fn rewrite(
        &self,
        encoder: &mut Encoder,
        dicts: &Dicts,
        mut keep: impl FnMut(u64) -> bool,
    ) -> Result<Vec<u64>, Error> {
        let mut inner = self.write_lock();
        let (file, index) = self.indexed(&mut inner)?;
        let last = index.last;
        let mut kept: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut dropped = Vec::new();
        for i in 0..index.offsets.len() {
            let Some(located) = index.frame(i, file) else {
                break;
            };
            let (header, payload) = self.read_frame(&located)?;
            let raw = frame::decode(&header, &payload, dicts)?;
            for record in frame::records(&raw) {
                let (seq, json) = record?;
                if keep(seq) {
                    kept.push((seq, json.to_vec()));
                } else {
                    dropped.push(seq);
                }
            }
        }
        if dropped.is_empty() {
            return Ok(dropped);
        }
        let (mut bytes, mut frames) = (Vec::new(), Vec::new());
        encoder.encode(&kept, dicts, &mut bytes, &mut frames)?;
        let temporary = self.path.with_extension("rewrite");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temporary)
            .map_err(io_error(&temporary))?;
        file.write_all_at(&bytes, 0).map_err(io_error(&temporary))?;
        file.sync_all().map_err(io_error(&temporary))?;
        std::fs::rename(&temporary, &self.path).map_err(io_error(&self.path))?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        let mut index = Index::default();
        for frame in &frames {
            index.push(frame.first - self.base, frame.offset as u64);
        }
        index.end = bytes.len() as u64;
        index.last = last;
        *inner = Inner {
            file: Arc::new(file),
            index: Some(index),
        };
        Ok(dropped)
    }

    fn with_index<T>(&self, f: impl FnOnce(&Index) -> T) -> Result<T, Error> {
        self.with_index_file(|index, _| f(index))
    }

    /// Runs `f` on the index, made first if the segment was not read yet.
    fn with_index_file<T>(&self, f: impl FnOnce(&Index, &Arc<File>) -> T) -> Result<T, Error> {
        {
            let inner = self.read_lock();
            if let Some(index) = &inner.index {
                return Ok(f(index, &inner.file));
            }
        }
        let mut inner = self.write_lock();
        let (file, index) = self.indexed(&mut inner)?;
        Ok(f(index, file))
    }

    /// The file and its index, made first if the segment was not read yet.
    fn indexed<'a>(&self, inner: &'a mut Inner) -> Result<(&'a Arc<File>, &'a mut Index), Error> {
        if inner.index.is_none() {
            inner.index = Some(self.scan(&inner.file, false)?);
        }
        match inner {
            Inner {
                file,
                index: Some(index),
            } => Ok((file, index)),
            Inner { index: None, .. } => {
                Err(Error::Corrupt("a change-log segment without its index"))
            }
        }
    }

    fn read_lock(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_lock(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// A stretch of a file read at once, for scanning it from the start.
#[derive(Default)]
struct Window {
    at: u64,
    bytes: Vec<u8>,
}

impl Window {
    const CHUNK: u64 = 1 << 20;

    /// `len` bytes at `offset` (within `size`), read with what follows
    /// unless the window holds them already.
    fn get(
        &mut self,
        file: &File,
        offset: u64,
        len: u64,
        size: u64,
        path: &Path,
    ) -> Result<&[u8], Error> {
        let held = offset >= self.at && offset + len <= self.at + self.bytes.len() as u64;
        if !held {
            let read = len.max(Self::CHUNK).min(size - offset);
            self.bytes.resize(read as usize, 0);
            file.read_exact_at(&mut self.bytes, offset)
                .map_err(io_error(path))?;
            self.at = offset;
        }
        let start = (offset - self.at) as usize;
        Ok(&self.bytes[start..start + len as usize])
    }
}

impl Index {
    fn push(&mut self, first: u64, offset: u64) {
        // A segment spans fewer than 2^32 changes and its file stays under
        // 4 GiB (a change is at most 1 MiB, SEGMENT of them compressed).
        self.firsts.push(first as u32);
        self.offsets.push(offset as u32);
    }

    fn frame(&self, i: usize, file: &Arc<File>) -> Option<Located> {
        let offset = u64::from(*self.offsets.get(i)?);
        let next = self.offsets.get(i + 1).map_or(self.end, |o| u64::from(*o));
        Some(Located {
            file: file.clone(),
            offset,
            len: next - offset,
        })
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}
