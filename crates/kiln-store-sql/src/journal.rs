//! The metric journal (SQLite, the server process): small metric writes acknowledged with one
//! append to a file beside the database instead of a SQLite commit.
//!
//! A single-metric request through the embedded store used to be one write transaction: six
//! `fcntl` calls on the WAL index, a WAL frame of a whole page (two or three `pwrite`s) and the
//! statements themselves, most of the cost of a log-metric request at one connection. With the
//! journal, a batch of plain metrics for an active run is appended as one record with one
//! `write` and acknowledged; its latest-value candidates go to the [`LatestBuffer`] as before.
//! The background fold (latest.rs, every 100 ms, and before any other store call reads or
//! writes) takes the journaled batches together with their candidates, stages them in SQLite and
//! folds them in the same transaction, which also records the highest record folded
//! (`journal_applied`).
//!
//! Two files take turns (`<db>-kiln-journal.0` and `.1`): when a fold takes the batches, new
//! appends move to the other file, and once the fold commits, a file whose records are all
//! folded is truncated. So under steady logging neither grows past about one fold's worth, and
//! nothing acknowledged is ever only in memory.
//!
//! Durability is the same as the WAL's under `synchronous=NORMAL`: an appended record is in the
//! page cache, so it survives the process being killed (SIGKILL), and only an OS crash can lose
//! the last ones. Opening the store replays the records above `journal_applied` from both files
//! in order (a torn tail, which only an OS crash leaves, ends a file's records) and truncates
//! them.
//!
//! One process owns a journal: the server holds an exclusive lock on `.0` for its lifetime.
//! Another process opening the same database (a second server, or a CLI command) without the
//! lock writes through SQLite as before and does not touch the file.
//!
//! Record layout, little-endian: `len: u32` (of what follows the checksum), `checksum: u64`
//! (FNV-1a of what follows), `seq: u64`, `n: u32` (points), `run_id_len: u16`, `run_id`, then
//! the staged points in `metrics_staged_batches`' format.
//!
//! [`LatestBuffer`]: crate::latest::LatestBuffer

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use kiln_store::{StoreError, StoreResult};

/// A record's fixed header: length and checksum.
const HEADER: usize = 4 + 8;
/// Batches whose points take more than this go through SQLite instead: one commit is already
/// cheap per point for them, and keeping bulk batches out keeps what waits for a fold (and the
/// fold's memory) small. About 130 metrics with short keys; a training step's few metrics and
/// every single log-metric are journaled.
const MAX_POINTS_BYTES: usize = 4 << 10;
/// Points waiting in memory for a fold, at most. A write that finds the journal full first moves
/// them to SQLite's staging table (`latest::spill_journal`, waiting for a fold under way):
/// back-pressure, so a client faster than the fold cannot grow the server's memory.
const MAX_PENDING_BYTES: usize = 4 << 20;

/// One journaled batch, kept in memory until a fold stages it.
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) run_id: String,
    pub(crate) n: u32,
    /// The points, encoded as a `metrics_staged_batches` row.
    pub(crate) points: Vec<u8>,
}

/// What [`Journal::try_open`] found.
pub(crate) enum Opened {
    Held(Journal),
    /// Another process holds the journal.
    Busy,
    /// The file system cannot lock files.
    NoLocks,
}

pub(crate) struct Journal {
    paths: [PathBuf; 2],
    state: Mutex<State>,
}

struct Half {
    file: File,
    /// Bytes in the file (appends go to the end).
    len: u64,
    /// Highest sequence number written to it since it was last emptied (0: none).
    top: u64,
}

pub(crate) struct State {
    halves: [Half; 2],
    /// The file appends go to.
    active: usize,
    next_seq: u64,
    /// Appended and not yet taken by a fold, in order.
    entries: Vec<Entry>,
    /// The points in `entries`, in bytes.
    pending_bytes: usize,
    /// Highest sequence number known folded.
    applied: u64,
    /// A write failed and the file could not be cut back: journaling stops.
    broken: bool,
}

impl State {
    /// The entries appended since the last take, in order (for a fold). Appends move to the
    /// other file, so the one these are in can be emptied once the fold commits.
    pub(crate) fn take_entries(&mut self) -> Vec<Entry> {
        if !self.entries.is_empty() {
            self.active ^= 1;
        }
        self.pending_bytes = 0;
        std::mem::take(&mut self.entries)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::backend(format!("{what} `{}`", path.display()), e)
}

/// The journal's two files for the database at `db`.
pub(crate) fn paths_for(db: &Path) -> [PathBuf; 2] {
    [0, 1].map(|i| {
        let mut name = db.as_os_str().to_owned();
        name.push(format!("-kiln-journal.{i}"));
        PathBuf::from(name)
    })
}

fn open_half(path: &Path) -> StoreResult<Half> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| io_err("Failed to open the metric journal", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| io_err("Failed to read the metric journal", path, e))?
        .len();
    Ok(Half { file, len, top: 0 })
}

impl Journal {
    /// Open (creating) and lock the journal beside `db`. `None` when another process holds it
    /// (or the file system cannot lock).
    pub(crate) fn open(db: &Path) -> StoreResult<Option<Journal>> {
        Ok(match Self::try_open(db)? {
            Opened::Held(j) => Some(j),
            Opened::Busy | Opened::NoLocks => None,
        })
    }

    /// [`Journal::open`], saying why there is none: another process holds it, or the file
    /// system cannot lock (then there will never be one: no point in trying again).
    pub(crate) fn try_open(db: &Path) -> StoreResult<Opened> {
        let paths = paths_for(db);
        let first = open_half(&paths[0])?;
        match first.file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(Opened::Busy),
            Err(std::fs::TryLockError::Error(e)) => {
                // A file system without locks: no journal, writes go through SQLite.
                tracing::warn!(error = %e, path = %paths[0].display(), "Cannot lock the metric journal; writing metrics through SQLite.");
                return Ok(Opened::NoLocks);
            }
        }
        let second = open_half(&paths[1])?;
        Ok(Opened::Held(Journal {
            paths,
            state: Mutex::new(State {
                halves: [first, second],
                active: 0,
                next_seq: 1,
                entries: Vec::new(),
                pending_bytes: 0,
                applied: 0,
                broken: false,
            }),
        }))
    }

    /// Whether a batch of `bytes` of points is small enough to be journaled at all.
    pub(crate) fn accepts(&self, bytes: usize) -> bool {
        bytes <= MAX_POINTS_BYTES
    }

    /// Whether `bytes` more points would pass what may wait for a fold.
    pub(crate) fn is_full(&self, bytes: usize) -> bool {
        self.lock().pending_bytes + bytes > MAX_PENDING_BYTES
    }

    /// Whether journaled batches wait for a fold.
    pub(crate) fn has_entries(&self) -> bool {
        !self.lock().entries.is_empty()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The records on file with a sequence number above `applied`, in order; a torn or corrupt
    /// record ends its file's list. Sets the next sequence number past everything seen.
    pub(crate) fn unapplied(&self, applied: u64) -> StoreResult<Vec<Entry>> {
        let mut st = self.lock();
        let mut all = Vec::new();
        for (i, path) in self.paths.iter().enumerate() {
            let mut bytes = Vec::new();
            // A fresh handle: the locked one appends.
            File::open(path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(|e| io_err("Failed to read the metric journal", path, e))?;
            let (records, good) = parse(&bytes);
            if good < bytes.len() {
                tracing::warn!(
                    path = %path.display(),
                    kept = records.len(),
                    ignored_bytes = bytes.len() - good,
                    "The metric journal ends in an incomplete record (left by an OS crash); ignoring it."
                );
            }
            st.halves[i].top = records.iter().map(|e| e.seq).max().unwrap_or(0);
            all.extend(records);
        }
        let top = all.iter().map(|e| e.seq).max().unwrap_or(0).max(applied);
        st.next_seq = top + 1;
        st.applied = applied;
        all.retain(|e| e.seq > applied);
        all.sort_by_key(|e| e.seq);
        Ok(all)
    }

    /// Empty both files (everything in them is folded).
    pub(crate) fn truncate(&self) -> StoreResult<()> {
        let mut st = self.lock();
        for (half, path) in st.halves.iter_mut().zip(&self.paths) {
            half.file
                .set_len(0)
                .map_err(|e| io_err("Failed to truncate the metric journal", path, e))?;
            half.len = 0;
            half.top = 0;
        }
        Ok(())
    }

    /// Append one batch and, still under the journal lock, run `then` (which buffers its
    /// latest-value candidates, so a fold takes both or neither). `None` when the batch is too
    /// big, too much waits for the fold already, or journaling stopped: the caller writes
    /// through SQLite instead.
    pub(crate) fn append(
        &self,
        run_id: &str,
        n: u32,
        points: Vec<u8>,
        then: impl FnOnce(),
    ) -> Option<StoreResult<()>> {
        if !self.accepts(points.len()) {
            return None;
        }
        let run_len = u16::try_from(run_id.len()).ok()?;
        let body_len = 8 + 4 + 2 + run_id.len() + points.len();
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.broken || st.pending_bytes + points.len() > MAX_PENDING_BYTES {
            return None;
        }
        let seq = st.next_seq;
        let mut record = Vec::with_capacity(HEADER + body_len);
        record.extend_from_slice(&u32::try_from(body_len).ok()?.to_le_bytes());
        record.extend_from_slice(&[0; 8]);
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(&n.to_le_bytes());
        record.extend_from_slice(&run_len.to_le_bytes());
        record.extend_from_slice(run_id.as_bytes());
        record.extend_from_slice(&points);
        let sum = fnv1a(&record[HEADER..]);
        record[4..HEADER].copy_from_slice(&sum.to_le_bytes());
        let active = st.active;
        let half = &mut st.halves[active];
        if let Err(e) = half.file.write_all(&record) {
            // Cut back a partial record, or later ones would be unreadable after it.
            if half.file.set_len(half.len).is_err() {
                st.broken = true;
            }
            return Some(Err(io_err(
                "Failed to append to the metric journal",
                &self.paths[active],
                e,
            )));
        }
        half.len += record.len() as u64;
        half.top = seq;
        st.next_seq += 1;
        st.pending_bytes += points.len();
        st.entries.push(Entry {
            seq,
            run_id: run_id.to_string(),
            n,
            points,
        });
        then();
        Some(Ok(()))
    }

    /// Put back entries whose fold failed, ahead of any appended since.
    pub(crate) fn restore(&self, mut failed: Vec<Entry>) {
        let mut st = self.lock();
        st.pending_bytes += failed.iter().map(|e| e.points.len()).sum::<usize>();
        failed.append(&mut st.entries);
        st.entries = failed;
    }

    /// A fold committed everything up to `seq`: empty each file whose records are all folded.
    pub(crate) fn applied(&self, seq: u64) {
        let mut guard = self.lock();
        let st = &mut *guard;
        st.applied = st.applied.max(seq);
        for (half, path) in st.halves.iter_mut().zip(&self.paths) {
            if half.len > 0 && half.top <= st.applied {
                match half.file.set_len(0) {
                    Ok(()) => {
                        half.len = 0;
                        half.top = 0;
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        path = %path.display(),
                        "Failed to truncate the metric journal; will retry"
                    ),
                }
            }
        }
    }
}

/// The whole records at the start of `bytes`, and how many bytes they take.
fn parse(bytes: &[u8]) -> (Vec<Entry>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(entry_len) = parse_one(&bytes[at..]).map(|(e, used)| {
        out.push(e);
        used
    }) {
        at += entry_len;
    }
    (out, at)
}

fn parse_one(b: &[u8]) -> Option<(Entry, usize)> {
    let body_len = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?) as usize;
    let sum = u64::from_le_bytes(b.get(4..HEADER)?.try_into().ok()?);
    let body = b.get(HEADER..HEADER.checked_add(body_len)?)?;
    if fnv1a(body) != sum {
        return None;
    }
    let seq = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
    let n = u32::from_le_bytes(body.get(8..12)?.try_into().ok()?);
    let run_len = u16::from_le_bytes(body.get(12..14)?.try_into().ok()?) as usize;
    let run_id = std::str::from_utf8(body.get(14..14 + run_len)?).ok()?;
    let points = body.get(14 + run_len..)?.to_vec();
    Some((
        Entry {
            seq,
            run_id: run_id.to_string(),
            n,
            points,
        },
        HEADER + body_len,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("kiln.db")
    }

    fn len(path: &Path) -> u64 {
        std::fs::metadata(path).expect("meta").len()
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(&db_path(&dir)).expect("open").expect("lock");
        j.unapplied(0).expect("empty");
        for (i, run) in ["a", "bb", "ccc"].iter().enumerate() {
            let mut called = false;
            j.append(run, i as u32 + 1, vec![i as u8; 10 * (i + 1)], || {
                called = true
            })
            .expect("journaled")
            .expect("appended");
            assert!(called);
            if i == 0 {
                // The first record's fold is under way: the others go to the second file.
                assert_eq!(j.lock().take_entries().len(), 1);
            }
        }
        drop(j);
        // A half-written record at the end, as an OS crash could leave.
        let [_, second] = paths_for(&db_path(&dir));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&second)
            .expect("reopen");
        f.write_all(&[40, 0, 0, 0, 1, 2, 3]).expect("torn");
        drop(f);

        let j = Journal::open(&db_path(&dir)).expect("open").expect("lock");
        let all = j.unapplied(0).expect("read");
        let seen: Vec<(u64, &str, u32, usize)> = all
            .iter()
            .map(|e| (e.seq, e.run_id.as_str(), e.n, e.points.len()))
            .collect();
        assert_eq!(seen, [(1, "a", 1, 10), (2, "bb", 2, 20), (3, "ccc", 3, 30)]);
        // Only what is above the applied mark is replayed; numbering continues past both.
        let rest = j.unapplied(2).expect("read");
        assert_eq!(rest.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
        j.append("d", 1, vec![], || ())
            .expect("journaled")
            .expect("ok");
        assert_eq!(j.lock().take_entries()[0].seq, 4);
    }

    #[test]
    fn a_second_owner_is_refused_and_folded_files_are_emptied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(&db_path(&dir)).expect("open").expect("lock");
        j.unapplied(0).expect("empty");
        // Another handle (as another process would be) does not get the lock.
        assert!(Journal::open(&db_path(&dir)).expect("open").is_none());
        // A bulk batch is left to SQLite.
        assert!(j.append("a", 200, vec![0; 5000], || ()).is_none());
        let [first, second] = paths_for(&db_path(&dir));
        j.append("a", 1, vec![1; 24], || ())
            .expect("j")
            .expect("ok");
        j.append("a", 1, vec![2; 24], || ())
            .expect("j")
            .expect("ok");
        let taken = j.lock().take_entries();
        assert_eq!(taken.len(), 2);
        // Appends during the fold go to the other file.
        j.append("a", 1, vec![3; 24], || ())
            .expect("j")
            .expect("ok");
        assert!(len(&second) > 0);
        // The fold of the first two commits: their file is emptied, the newer record stays.
        j.applied(2);
        assert_eq!(len(&first), 0);
        assert!(len(&second) > 0);
        // Steady logging: each fold empties the file the one before it filled.
        for round in 0..4 {
            let taken = j.lock().take_entries();
            j.append("a", 1, vec![round; 24], || ())
                .expect("j")
                .expect("ok");
            j.applied(taken.last().expect("taken").seq);
            assert!(len(&first) == 0 || len(&second) == 0, "one file is empty");
        }
        let rest = j.lock().take_entries();
        j.applied(rest[0].seq);
        assert_eq!((len(&first), len(&second)), (0, 0));
    }
}
