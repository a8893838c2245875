//! Retention: events older than a horizon, once a snapshot covers them, move out of the hot
//! journal into compressed archive files, and every read finds them there.
//!
//! **Files.** `events-{file id}-{random}.jsonl.zst` in the archive directory: a run of
//! independent zstd frames, each holding up to [`crate::JournalConfig::archive_frame_events_max`]
//! events as JSON lines ([`ArchivedEvent`]: the stored envelope, the payload in hex). Any zstd
//! tool reads a file whole (`zstdcat events-….jsonl.zst | jq`); the journal reads one frame,
//! whose byte range each archived event's row names.
//!
//! **What moves.** An event recorded before the horizon whose stream has a snapshot at or
//! after it, and that is not its stream's last event (appends find a stream's next sequence
//! among the hot rows, and recovery starts from the snapshot, so neither ever needs an
//! archived event). Streams never snapshotted (sagas, alerts) stay hot.
//!
//! **A run** ([`crate::Journal::archive`]), one file at a time: select the candidates; write
//! the file under a temporary name, fsync it, rename it and fsync the directory; then one
//! transaction records the file, inserts a thin row per event (`archived_events`: where it
//! is, and what reads filter on; its tags stay in `event_tags`) and deletes the events. A
//! crash before that commit leaves a file no row names (unused; its random name is never
//! written again).
//!
//! **Reads** ([`crate::Journal::read_stream`], `read_all`, `read_stream_as_of`) query the hot
//! rows first, then the thin rows, and merge: an event moved between the two queries is in
//! both (kept once), never in neither (a move is one transaction).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::codec::{from_hex, to_hex};
use crate::error::Error;
use crate::record::{Decoded, StoredEvent};

/// The zstd level of archive files: zstd's default, a fair trade of speed for size.
const COMPRESSION_LEVEL: i32 = 3;

/// Where an archived event is: its file and the byte range of its frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ArchivedRow {
    /// The event's global offset.
    pub(crate) global_offset: u64,
    /// Its file's name in the archive directory.
    pub(crate) file: String,
    /// Where its frame starts in the file.
    pub(crate) frame_start: u64,
    /// The frame's length in bytes.
    pub(crate) frame_length: u64,
}

/// An archive file as its row records it.
#[derive(Debug)]
pub(crate) struct RecordedFile {
    pub(crate) file_id: u64,
    pub(crate) name: String,
    pub(crate) first_offset: u64,
    pub(crate) last_offset: u64,
    pub(crate) events: u64,
    pub(crate) bytes: u64,
    pub(crate) created_at: i64,
}

/// How far an archive run is (after each file), and what it did in the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveProgress {
    /// Files written.
    pub files: u64,
    /// Events moved.
    pub events: u64,
    /// Bytes written.
    pub bytes: u64,
    /// The last offset the run has looked at: every event up to it that could move, moved.
    pub through_offset: u64,
    /// The journal's last offset when the run started: where it stops.
    pub last_offset: u64,
}

/// What the archive holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveTotals {
    /// Files.
    pub files: u64,
    /// Events.
    pub events: u64,
    /// Bytes.
    pub bytes: u64,
}

/// One file written: the place of each of its events (in the order given) and its size.
#[derive(Debug)]
pub(crate) struct WrittenFile {
    /// `(frame_start, frame_length)` of each event.
    pub(crate) frames: Vec<(u64, u64)>,
    /// The file's size.
    pub(crate) bytes: u64,
}

/// One line of an archive file: a stored event as JSON.
#[derive(Debug, Serialize, Deserialize)]
pub struct ArchivedEvent {
    /// Position in the global log.
    pub global_offset: u64,
    /// The stream.
    pub stream: String,
    /// The kind of entity.
    pub kind: String,
    /// Position in the stream.
    pub sequence: u64,
    /// Event name.
    pub name: String,
    /// Schema version of the payload.
    pub schema_version: u16,
    /// The encoded event, in lowercase hex.
    pub payload: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Transaction time, microseconds since the epoch.
    pub recorded_at: i64,
    /// Valid time, microseconds since the epoch.
    pub effective_at: i64,
}

impl ArchivedEvent {
    fn of(event: &StoredEvent) -> Self {
        Self {
            global_offset: event.global_offset,
            stream: event.stream.clone(),
            kind: event.kind.clone(),
            sequence: event.sequence,
            name: event.name.clone(),
            schema_version: event.schema_version,
            payload: to_hex(&event.payload),
            tags: event.tags.clone(),
            recorded_at: event.recorded_at,
            effective_at: event.effective_at,
        }
    }

    fn into_stored(self) -> Result<StoredEvent, Error> {
        let payload = from_hex(&self.payload).ok_or_else(|| {
            corrupt(format!(
                "the payload of offset {} is not hex",
                self.global_offset
            ))
        })?;
        Ok(StoredEvent {
            global_offset: self.global_offset,
            stream: self.stream,
            kind: self.kind,
            sequence: self.sequence,
            name: self.name,
            schema_version: self.schema_version,
            payload,
            tags: self.tags,
            recorded_at: self.recorded_at,
            effective_at: self.effective_at,
            decoded: Decoded::default(),
        })
    }
}

/// The archive directory and its frame size.
#[derive(Clone, Debug)]
pub(crate) struct ArchiveFiles {
    dir: PathBuf,
    frame_events_max: usize,
}

impl ArchiveFiles {
    pub(crate) fn new(dir: PathBuf, frame_events_max: usize) -> Self {
        assert!(frame_events_max > 0, "a frame holds at least one event");
        Self {
            dir,
            frame_events_max,
        }
    }

    /// A new name for file `file_id`: the id, then a random part (two runs that picked the
    /// same id never write the same file).
    pub(crate) fn name(file_id: u64) -> Result<String, Error> {
        let mut random = [0_u8; 4];
        getrandom::fill(&mut random)
            .map_err(|error| Error::Archive(format!("no randomness for a file name: {error}")))?;
        Ok(format!(
            "events-{file_id:010}-{}.jsonl.zst",
            to_hex(&random)
        ))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `events` as file `name`, durably (see the [module](self)). Blocking.
    pub(crate) fn write(&self, name: &str, events: &[StoredEvent]) -> Result<WrittenFile, Error> {
        fs::create_dir_all(&self.dir).map_err(|error| io("create", &self.dir, &error))?;
        let path = self.path(name);
        let temporary = path.with_extension("zst.partial");
        let mut file =
            File::create(&temporary).map_err(|error| io("create", &temporary, &error))?;
        let mut frames = Vec::with_capacity(events.len());
        let mut at = 0_u64;
        for chunk in events.chunks(self.frame_events_max) {
            let frame = compress_frame(chunk)?;
            file.write_all(&frame)
                .map_err(|error| io("write", &temporary, &error))?;
            let length = frame.len() as u64;
            frames.extend(chunk.iter().map(|_| (at, length)));
            at += length;
        }
        file.sync_all()
            .map_err(|error| io("sync", &temporary, &error))?;
        drop(file);
        fs::rename(&temporary, &path).map_err(|error| io("rename", &temporary, &error))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| io("sync", &self.dir, &error))?;
        Ok(WrittenFile { frames, bytes: at })
    }

    /// The events `rows` name, in the rows' order, each frame read once. Blocking.
    pub(crate) fn read(&self, rows: &[ArchivedRow]) -> Result<Vec<StoredEvent>, Error> {
        let mut frames: BTreeMap<(&str, u64, u64), Vec<u64>> = BTreeMap::new();
        for row in rows {
            frames
                .entry((row.file.as_str(), row.frame_start, row.frame_length))
                .or_default()
                .push(row.global_offset);
        }
        let mut found: BTreeMap<u64, StoredEvent> = BTreeMap::new();
        for ((file, start, length), offsets) in frames {
            for event in self.read_frame(file, start, length)? {
                if offsets.contains(&event.global_offset) {
                    found.insert(event.global_offset, event);
                }
            }
        }
        rows.iter()
            .map(|row| {
                found.remove(&row.global_offset).ok_or_else(|| {
                    corrupt(format!(
                        "offset {} is not in the frame of {} its row names",
                        row.global_offset, row.file
                    ))
                })
            })
            .collect()
    }

    fn read_frame(&self, name: &str, start: u64, length: u64) -> Result<Vec<StoredEvent>, Error> {
        let path = self.path(name);
        let mut file = File::open(&path).map_err(|error| io("open", &path, &error))?;
        file.seek(SeekFrom::Start(start))
            .map_err(|error| io("seek", &path, &error))?;
        let length = usize::try_from(length).map_err(|_| corrupt("a frame too long".into()))?;
        let mut frame = vec![0; length];
        file.read_exact(&mut frame)
            .map_err(|error| io("read", &path, &error))?;
        let lines =
            zstd::decode_all(frame.as_slice()).map_err(|error| io("decompress", &path, &error))?;
        lines
            .lines()
            .map(|line| {
                let line = line.map_err(|error| io("read", &path, &error))?;
                let event: ArchivedEvent = serde_json::from_str(&line)
                    .map_err(|error| corrupt(format!("{}: {error}", path.display())))?;
                event.into_stored()
            })
            .collect()
    }
}

fn compress_frame(events: &[StoredEvent]) -> Result<Vec<u8>, Error> {
    let mut lines = Vec::new();
    for event in events {
        serde_json::to_writer(&mut lines, &ArchivedEvent::of(event))
            .map_err(|error| corrupt(error.to_string()))?;
        lines.push(b'\n');
    }
    zstd::encode_all(lines.as_slice(), COMPRESSION_LEVEL)
        .map_err(|error| corrupt(format!("cannot compress a frame: {error}")))
}

/// Merges `hot` and `cold` (each ordered by `key`, each at most `limit` long) into the first
/// `limit` by `key`, an event in both kept once (it moved between the two reads).
pub(crate) fn merge(
    hot: Vec<StoredEvent>,
    cold: Vec<StoredEvent>,
    limit: usize,
    key: impl Fn(&StoredEvent) -> (i64, u64),
) -> Vec<StoredEvent> {
    if cold.is_empty() {
        return hot;
    }
    let mut merged: BTreeMap<(i64, u64), StoredEvent> = BTreeMap::new();
    for event in cold.into_iter().chain(hot) {
        merged.entry(key(&event)).or_insert(event);
    }
    merged.into_values().take(limit).collect()
}

fn io(what: &str, path: &Path, error: &std::io::Error) -> Error {
    Error::Archive(format!("cannot {what} {}: {error}", path.display()))
}

fn corrupt(reason: String) -> Error {
    Error::Archive(format!("archive file damaged: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(offset: u64) -> StoredEvent {
        StoredEvent {
            global_offset: offset,
            stream: format!("account|a{}", offset % 3),
            kind: "account".to_owned(),
            sequence: offset,
            name: "deposited".to_owned(),
            schema_version: 2,
            payload: vec![0, 1, 0xfe, u8::try_from(offset % 256).unwrap()],
            tags: vec![format!("order:{offset}"), "trade".to_owned()],
            recorded_at: 1_000 + i64::try_from(offset).unwrap(),
            effective_at: 7,
            decoded: Decoded::default(),
        }
    }

    #[test]
    fn a_file_reads_back_frame_by_frame_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let files = ArchiveFiles::new(dir.path().join("archive"), 4);
        let events: Vec<StoredEvent> = (1..=10).map(event).collect();
        let name = ArchiveFiles::name(1).unwrap();
        assert_ne!(name, ArchiveFiles::name(1).unwrap(), "random names");
        let written = files.write(&name, &events).unwrap();
        assert_eq!(written.frames.len(), 10);
        let frames: std::collections::BTreeSet<_> = written.frames.iter().collect();
        assert_eq!(frames.len(), 3, "10 events in frames of 4");
        let rows: Vec<ArchivedRow> = [9, 2, 5]
            .into_iter()
            .map(|offset: u64| {
                let (frame_start, frame_length) =
                    written.frames[usize::try_from(offset).unwrap() - 1];
                ArchivedRow {
                    global_offset: offset,
                    file: name.clone(),
                    frame_start,
                    frame_length,
                }
            })
            .collect();
        let read = files.read(&rows).unwrap();
        assert_eq!(read, vec![event(9), event(2), event(5)]);
        // The whole file is ordinary zstd of JSON lines.
        let whole = zstd::decode_all(File::open(files.path(&name)).unwrap()).unwrap();
        assert_eq!(whole.lines().count(), 10);
        assert_eq!(fs::read_dir(dir.path().join("archive")).unwrap().count(), 1);
    }

    #[test]
    fn a_damaged_or_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let files = ArchiveFiles::new(dir.path().to_owned(), 4);
        let name = ArchiveFiles::name(3).unwrap();
        let written = files.write(&name, &[event(1)]).unwrap();
        let row = ArchivedRow {
            global_offset: 1,
            file: name.clone(),
            frame_start: written.frames[0].0,
            frame_length: written.frames[0].1,
        };
        fs::write(files.path(&name), b"not zstd at all").unwrap();
        let rows = [row];
        assert!(matches!(files.read(&rows), Err(Error::Archive(_))));
        fs::remove_file(files.path(&name)).unwrap();
        assert!(matches!(files.read(&rows), Err(Error::Archive(_))));
    }
}
