//! The journal: one JSON line per transition, rotated by size, with large
//! data out of line in `blobs/`.
//!
//! Files, oldest first: `journal.<keep-1>.jsonl` … `journal.1.jsonl`,
//! `journal.jsonl` (the one appended to). A `rotated` marker file appears
//! once a file has been deleted, so readers know the history is incomplete.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use crate::blob::BlobStore;
use crate::error::{FsmError, JournalTorn};
use crate::replay::Start;

/// The file appended to, inside the journal directory.
pub const CURRENT_FILE: &str = "journal.jsonl";
/// The blob directory, inside the journal directory.
pub const BLOBS_DIR: &str = "blobs";
/// Marker file present once rotation has deleted a journal file.
pub const ROTATED_MARKER: &str = "rotated";

/// One transition as written to the journal (DESIGN §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The record's place in the device's journal: one more than the record before it,
    /// across rotation and restarts (a failed write may leave a gap, never a repeat).
    /// Absent in records written before sequence numbers existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// When the transition was made (UTC, microseconds).
    #[serde(with = "timestamp")]
    pub t: DateTime<Utc>,
    /// The machine's name.
    pub fsm: String,
    /// The instance id.
    pub id: String,
    /// The state left.
    pub s: String,
    /// The event fired.
    pub e: String,
    /// The action made pending.
    pub a: String,
    /// The state entered.
    pub next: String,
    /// The event data, or `null` when it went out of line.
    #[serde(default)]
    pub data: serde_json::Value,
    /// Reference `sha256:<hex>` of the out-of-line data, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
}

impl Record {
    /// Whether the record belongs to machine `fsm` (if given) and instance `id` (if given).
    pub fn matches(&self, fsm: Option<&str>, id: Option<&str>) -> bool {
        fsm.is_none_or(|fsm| self.fsm == fsm) && id.is_none_or(|id| self.id == id)
    }

    /// Whether two records describe the same transition at the same time (data aside).
    pub fn same_transition(&self, other: &Record) -> bool {
        (
            self.t, &self.fsm, &self.id, &self.s, &self.e, &self.a, &self.next,
        ) == (
            other.t,
            &other.fsm,
            &other.id,
            &other.s,
            &other.e,
            &other.a,
            &other.next,
        )
    }
}

mod timestamp {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// Where record timestamps come from; inject a fixed one in tests.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Limits of a journal. Total size stays under about
/// `keep_files × (max_file_bytes + one record)`, plus referenced blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalConfig {
    /// Rotate `journal.jsonl` before an append would take it past this
    /// (default 1 MiB).
    pub max_file_bytes: u64,
    /// Journal files kept, the current one included; at least 1 (default 4).
    pub keep_files: usize,
    /// Event data whose JSON is longer than this goes out of line into
    /// `blobs/` (default 4 KiB).
    pub blob_threshold: usize,
}

impl Default for JournalConfig {
    fn default() -> JournalConfig {
        JournalConfig {
            max_file_bytes: 1 << 20,
            keep_files: 4,
            blob_threshold: 4096,
        }
    }
}

/// Called with every record once it is durably appended (a live event stream listens
/// here; it must not block).
pub type Observer = Arc<dyn Fn(&Record) + Send + Sync>;

/// An open journal, appended to by one writer.
pub struct Journal {
    dir: PathBuf,
    config: JournalConfig,
    clock: Arc<dyn Clock>,
    blobs: BlobStore,
    file: File,
    file_len: u64,
    /// The sequence number of the last record built (appended or not).
    last_seq: u64,
    observer: Option<Observer>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("file_len", &self.file_len)
            .field("last_seq", &self.last_seq)
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`. A torn tail of the
    /// current file is cut off durably and reported; earlier lines are kept.
    pub fn open(
        dir: impl Into<PathBuf>,
        config: JournalConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(Journal, Option<JournalTorn>), FsmError> {
        let dir = dir.into();
        ferry_durable::create_dir(&dir).map_err(journal_io("create directory", &dir))?;
        let blobs = BlobStore::open(dir.join(BLOBS_DIR))?;
        let path = dir.join(CURRENT_FILE);
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(journal_io("open", &path))?;
        if !existed {
            ferry_durable::sync_dir(&dir).map_err(journal_io("fsync directory", &dir))?;
        }
        let bytes = fs::read(&path).map_err(journal_io("read", &path))?;
        let (good_len, n_records_dropped) = find_torn_tail(&bytes);
        let mut torn = None;
        if good_len < bytes.len() {
            file.set_len(good_len as u64)
                .map_err(journal_io("truncate", &path))?;
            file.sync_all().map_err(journal_io("fsync", &path))?;
            torn = Some(JournalTorn {
                path: path.clone(),
                n_bytes_dropped: (bytes.len() - good_len) as u64,
                n_records_dropped,
            });
        }
        let config = JournalConfig {
            keep_files: config.keep_files.max(1),
            ..config
        };
        let last_seq = last_seq(&dir, &bytes[..good_len])?;
        let journal = Journal {
            dir,
            config,
            clock,
            blobs,
            file,
            file_len: good_len as u64,
            last_seq,
            observer: None,
        };
        Ok((journal, torn))
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Calls `observer` with every record appended from now on.
    pub fn set_observer(&mut self, observer: Option<Observer>) {
        self.observer = observer;
    }

    /// The sequence number of the last record built (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The journal's blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Builds the record of a transition made now, with the next sequence number. Data
    /// over the blob threshold is written durably to the blob store first.
    pub fn record(
        &mut self,
        fsm: &str,
        id: &str,
        (s, e, a, next): (&str, &str, &str, &str),
        data: serde_json::Value,
    ) -> Result<Record, FsmError> {
        let encoded = serde_json::to_vec(&data).map_err(|source| FsmError::DataEncode {
            fsm: fsm.to_string(),
            id: id.to_string(),
            source,
        })?;
        let (data, blob) = if encoded.len() > self.config.blob_threshold {
            (serde_json::Value::Null, Some(self.blobs.put(&encoded)?))
        } else {
            (data, None)
        };
        self.last_seq += 1;
        Ok(Record {
            seq: Some(self.last_seq),
            t: self.clock.now().trunc_subsecs(6),
            fsm: fsm.to_string(),
            id: id.to_string(),
            s: s.to_string(),
            e: e.to_string(),
            a: a.to_string(),
            next: next.to_string(),
            data,
            blob,
        })
    }

    /// The record's data, read back from the blob store if it went out of line.
    pub fn data(&self, record: &Record) -> Result<serde_json::Value, FsmError> {
        let Some(reference) = &record.blob else {
            return Ok(record.data.clone());
        };
        let bytes = self.blobs.get(reference)?;
        serde_json::from_slice(&bytes).map_err(|e| FsmError::BlobCorrupt {
            digest: reference.clone(),
            reason: format!("content is not JSON: {e}"),
        })
    }

    /// Appends `record` as one line and fsyncs it, rotating first if the
    /// current file would grow past its limit (and then deleting blobs no
    /// kept file references).
    pub fn append(&mut self, record: &Record) -> Result<(), FsmError> {
        let path = self.dir.join(CURRENT_FILE);
        let mut line = serde_json::to_vec(record).map_err(|source| FsmError::DataEncode {
            fsm: record.fsm.clone(),
            id: record.id.clone(),
            source,
        })?;
        line.push(b'\n');
        let rotate =
            self.file_len > 0 && self.file_len + line.len() as u64 > self.config.max_file_bytes;
        if rotate {
            self.rotate()?;
        }
        if let Err(source) = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
        {
            // Best effort: leave no half line for the next append to follow.
            let _ = self.file.set_len(self.file_len);
            return Err(FsmError::JournalIo {
                op: "append to",
                path,
                source,
            });
        }
        self.file_len += line.len() as u64;
        if let Some(seq) = record.seq {
            self.last_seq = self.last_seq.max(seq);
        }
        if let Some(observer) = &self.observer {
            observer(record);
        }
        if rotate {
            self.gc_blobs()?;
        }
        Ok(())
    }

    /// Every record kept, oldest first (see [`read_journal`]).
    pub fn read(&self) -> Result<JournalRead, FsmError> {
        read_journal(&self.dir)
    }

    /// Deletes blobs that no kept journal file references; returns how many.
    pub fn gc_blobs(&self) -> Result<usize, FsmError> {
        let read = self.read()?;
        let keep: HashSet<String> = read.records.into_iter().filter_map(|r| r.blob).collect();
        self.blobs.retain(&keep)
    }

    fn rotate(&mut self) -> Result<(), FsmError> {
        let keep = self.config.keep_files;
        let oldest = self.dir.join(file_name(keep - 1));
        if oldest.exists() {
            fs::remove_file(&oldest).map_err(journal_io("delete", &oldest))?;
            let marker = self.dir.join(ROTATED_MARKER);
            if !marker.exists() {
                ferry_durable::write_atomic(&marker, b"").map_err(journal_io("write", &marker))?;
            }
        }
        for index in (0..keep - 1).rev() {
            let from = self.dir.join(file_name(index));
            if from.exists() {
                let to = self.dir.join(file_name(index + 1));
                ferry_durable::rename(&from, &to).map_err(journal_io("rotate", &from))?;
            }
        }
        let path = self.dir.join(CURRENT_FILE);
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(journal_io("create", &path))?;
        self.file_len = 0;
        ferry_durable::sync_dir(&self.dir).map_err(journal_io("fsync directory", &self.dir))
    }
}

/// What [`read_journal`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalRead {
    /// Every kept record, oldest first.
    pub records: Vec<Record>,
    /// A torn tail of the current file, skipped (not cut off: reading never writes).
    pub torn: Option<JournalTorn>,
    /// Whether rotation has deleted older files, so instances may appear mid-way.
    pub rotated_out: bool,
}

impl JournalRead {
    /// The records of machine `fsm` (if given) and instance `id` (if given).
    pub fn filter<'a>(
        &'a self,
        fsm: Option<&'a str>,
        id: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Record> + 'a {
        self.records.iter().filter(move |r| r.matches(fsm, id))
    }

    /// Where replay should start each instance, given whether history was rotated out.
    pub fn start(&self) -> Start {
        if self.rotated_out {
            Start::FirstRecord
        } else {
            Start::Initial
        }
    }
}

/// Reads every record kept in the journal directory `dir`, oldest file
/// first, without changing anything. A bad line other than the current
/// file's tail is [`FsmError::JournalCorrupt`].
pub fn read_journal(dir: impl AsRef<Path>) -> Result<JournalRead, FsmError> {
    let dir = dir.as_ref();
    let mut records = Vec::new();
    let mut torn = None;
    let mut indexes: Vec<usize> = Vec::new();
    if dir.is_dir() {
        for entry in fs::read_dir(dir).map_err(journal_io("list", dir))? {
            let entry = entry.map_err(journal_io("list", dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(index) = parse_file_name(&name) {
                indexes.push(index);
            }
        }
    }
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    for index in indexes {
        let path = dir.join(file_name(index));
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            // Rotated away between listing and reading.
            Err(source) if source.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(FsmError::JournalIo {
                    op: "read",
                    path,
                    source,
                });
            }
        };
        let mut good_len = bytes.len();
        if index == 0 {
            let (len, n_records_dropped) = find_torn_tail(&bytes);
            good_len = len;
            if len < bytes.len() {
                torn = Some(JournalTorn {
                    path: path.clone(),
                    n_bytes_dropped: (bytes.len() - len) as u64,
                    n_records_dropped,
                });
            }
        }
        for (line_idx, line) in bytes[..good_len].split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let record =
                serde_json::from_slice::<Record>(line).map_err(|e| FsmError::JournalCorrupt {
                    path: path.clone(),
                    line: line_idx + 1,
                    reason: e.to_string(),
                })?;
            records.push(record);
        }
    }
    let rotated_out = dir.join(ROTATED_MARKER).exists();
    Ok(JournalRead {
        records,
        torn,
        rotated_out,
    })
}

/// The highest sequence number in the journal in `dir`, whose current file holds
/// `current` (already cut to its last good record): the current file's last numbered
/// record, else the newest rotated file's (0 when no record has a number).
fn last_seq(dir: &Path, current: &[u8]) -> Result<u64, FsmError> {
    let newest = |bytes: &[u8]| {
        bytes
            .split(|b| *b == b'\n')
            .rev()
            .filter_map(|line| serde_json::from_slice::<Record>(line).ok())
            .find_map(|record| record.seq)
    };
    if let Some(seq) = newest(current) {
        return Ok(seq);
    }
    let mut index = 1;
    loop {
        let path = dir.join(file_name(index));
        match fs::read(&path) {
            Ok(bytes) => {
                if let Some(seq) = newest(&bytes) {
                    return Ok(seq);
                }
            }
            Err(source) if source.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(source) => {
                return Err(FsmError::JournalIo {
                    op: "read",
                    path,
                    source,
                });
            }
        }
        index += 1;
    }
}

/// The journal file with rotation index `index` (0 is the current file).
pub fn file_name(index: usize) -> String {
    match index {
        0 => CURRENT_FILE.to_string(),
        n => format!("journal.{n}.jsonl"),
    }
}

fn parse_file_name(name: &str) -> Option<usize> {
    if name == CURRENT_FILE {
        return Some(0);
    }
    let index = name.strip_prefix("journal.")?.strip_suffix(".jsonl")?;
    match index.parse::<usize>() {
        Ok(n) if n > 0 && index == n.to_string() => Some(n),
        _ => None,
    }
}

/// Splits `bytes` into the longest prefix ending in a newline-terminated
/// valid record and a torn tail: trailing lines that are unterminated or do
/// not parse. Returns the prefix length and how many tail lines there were.
fn find_torn_tail(bytes: &[u8]) -> (usize, usize) {
    let mut end = bytes.len();
    let mut n_dropped = 0;
    while end > 0 {
        let terminated = bytes[end - 1] == b'\n';
        let content_end = if terminated { end - 1 } else { end };
        let start = bytes[..content_end]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        if terminated && serde_json::from_slice::<Record>(&bytes[start..content_end]).is_ok() {
            break;
        }
        n_dropped += 1;
        end = start;
    }
    (end, n_dropped)
}

fn journal_io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FsmError {
    let path = path.to_path_buf();
    move |source| FsmError::JournalIo { op, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"t":"2026-03-20T18:51:32.924688Z","fsm":"update","id":"u","s":"A","e":"E","a":"X","next":"B","data":null}"#;

    #[test]
    fn torn_tail_is_found_from_the_end_only() {
        let good = format!("{LINE}\n{LINE}\n");
        assert_eq!(find_torn_tail(good.as_bytes()), (good.len(), 0));
        assert_eq!(find_torn_tail(b""), (0, 0));
        let half = format!("{good}{}", &LINE[..40]);
        assert_eq!(find_torn_tail(half.as_bytes()), (good.len(), 1));
        let unterminated = format!("{good}{LINE}");
        assert_eq!(find_torn_tail(unterminated.as_bytes()), (good.len(), 1));
        let garbage = format!("{good}xx\n\nyy");
        assert_eq!(find_torn_tail(garbage.as_bytes()), (good.len(), 3));
        assert_eq!(find_torn_tail(b"junk\n"), (0, 1));
    }

    #[test]
    fn file_names_round_trip() {
        for index in [0, 1, 2, 10] {
            assert_eq!(parse_file_name(&file_name(index)), Some(index));
        }
        for name in [
            "journal.0.jsonl",
            "journal.01.jsonl",
            "journal.x.jsonl",
            "rotated",
            "blobs",
        ] {
            assert_eq!(parse_file_name(name), None, "{name}");
        }
    }
}
