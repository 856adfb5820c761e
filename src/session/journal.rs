//! The session journal: which sessions publish or play right now, kept in
//! `state_dir/sessions.journal` so that the start after a crash (SIGKILL, power loss) can end
//! them with their stop events and done callbacks (`recovery.rs`; docs/operations.md).
//!
//! # Layout
//!
//! - [`OpenSession`]: what the journal keeps of a publish or play: enough to word its stop
//!   events and done callbacks as the session itself would have (identity, stream, the
//!   client's URL and arguments, when it started).
//! - The file: one JSON record a line, `{"start":{...}}` or `{"stop":{"conn_id":..,
//!   "publisher":..}}`. A line that does not parse (a torn tail after a power loss) is
//!   skipped. Its modification time says when the server was last alive: the writer touches
//!   it every [`ALIVE_TICK`] while sessions are open.
//! - [`JournalFile::open`]: locks the journal (`sessions.journal.lock`: one server per
//!   `state_dir`) and reads what the last run left open; [`JournalFile::start`] empties it and
//!   starts the writer.
//! - [`Journal`]: the sessions' handle. Records go over a bounded channel to one writer
//!   thread, which appends them in batches (never a write per packet, never on a shard),
//!   syncs at most every [`SYNC_INTERVAL`], and rewrites the file with only the open sessions
//!   once it has grown past [`COMPACT_BYTES`]. A clean shutdown ends with an empty file.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use tracing::{error, warn};

/// The journal's file name in `state_dir`.
pub const FILE_NAME: &str = "sessions.journal";
/// Held locked (flock) while a server uses the journal: two servers sharing a `state_dir`
/// would end each other's sessions after a crash.
const LOCK_NAME: &str = "sessions.journal.lock";
/// Records waiting for the writer. A start and a stop per session: a storm of 2000 players
/// is 4000; past this bound a record is dropped, counted and logged.
const CHANNEL_CAPACITY: usize = 65_536;
/// How often the file is synced at most: a power loss forgets the records of at most this
/// long (a crash of the process alone forgets nothing the writer wrote).
pub const SYNC_INTERVAL: Duration = Duration::from_millis(200);
/// How often the writer touches the file while sessions are open, so its modification time
/// tells the next start, within this, when the server was last alive.
pub const ALIVE_TICK: Duration = Duration::from_secs(1);
/// Past this size the file is rewritten with only the open sessions.
pub const COMPACT_BYTES: u64 = 1 << 20;
/// At most one "records dropped" line this often.
const DROP_LOG_INTERVAL_MS: u64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("session journal {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("session journal {}: another process holds it (one server per state_dir)", .path.display())]
    Locked { path: PathBuf },
}

/// A publish or play as the journal keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpenSession {
    pub conn_id: u64,
    /// A publish (true) or a play (false).
    pub publisher: bool,
    /// `rtmp`, `rtsp` or `http-flv`.
    pub protocol: String,
    pub addr: SocketAddr,
    /// `app/name`, as admitted (after any rename).
    pub stream: String,
    pub app: String,
    pub name: String,
    /// The URL the client connected to (the callbacks' `url` is this plus the stream).
    pub url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tc_url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub flash_ver: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub swf_url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub page_url: String,
    /// The connect's query arguments, then the publish's or play's.
    #[serde(default)]
    pub connect_args: Vec<(String, String)>,
    #[serde(default)]
    pub args: Vec<(String, String)>,
    /// Unix milliseconds.
    pub started_ms: u64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Record {
    /// Boxed: the channel's slots are allocated up front, each the size of its largest message.
    Start(Box<OpenSession>),
    Stop {
        conn_id: u64,
        publisher: bool,
    },
}

enum Message {
    Record(Record),
    /// Write what is left and end the writer: the server is done.
    Close,
}

/// What a previous run left: the sessions it never ended.
#[derive(Debug, Default)]
pub struct Recovered {
    pub sessions: Vec<OpenSession>,
    /// When that run was last seen alive (the file's modification time), Unix milliseconds.
    pub last_alive_ms: u64,
    /// Lines that did not parse (a torn tail).
    pub skipped_lines: usize,
}

/// An opened, locked journal not written yet: recovery reads it first.
pub struct JournalFile {
    path: PathBuf,
    /// Holds the lock for as long as the server runs.
    lock: File,
}

impl JournalFile {
    /// Locks the journal in `dir` (made 0700 if missing) and reads what a previous run left
    /// open.
    pub fn open(dir: &Path) -> Result<(JournalFile, Recovered), JournalError> {
        let path = dir.join(FILE_NAME);
        let io_error = |source| JournalError::Io { path: path.clone(), source };
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_error)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join(LOCK_NAME))
            .map_err(io_error)?;
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = io::Error::last_os_error();
            return Err(match error.kind() {
                io::ErrorKind::WouldBlock => JournalError::Locked { path },
                _ => io_error(error),
            });
        }
        let recovered = match fs::read(&path) {
            Ok(bytes) => {
                let last_alive_ms = fs::metadata(&path).and_then(|m| m.modified()).map_or(0, unix_ms);
                Recovered { last_alive_ms, ..replay(&bytes) }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => Recovered::default(),
            Err(error) => return Err(io_error(error)),
        };
        Ok((JournalFile { path, lock }, recovered))
    }

    /// Empties the file (what it held has been recovered) and starts the writer.
    pub fn start(self) -> Result<Arc<Journal>, JournalError> {
        let path = self.path.clone();
        let io_error = |source| JournalError::Io { path: path.clone(), source };
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(&self.path).map_err(io_error)?;
        file.set_len(0).and_then(|()| file.sync_all()).map_err(io_error)?;
        let (sender, receiver) = crossbeam_channel::bounded(CHANNEL_CAPACITY);
        let writer = Writer { path: self.path, file, written: 0, live: HashMap::new(), unsynced: None };
        let thread =
            thread::Builder::new().name("journal".into()).spawn(move || writer.run(receiver)).map_err(io_error)?;
        Ok(Arc::new(Journal {
            sender,
            dropped: AtomicU64::new(0),
            last_drop_log_ms: AtomicU64::new(0),
            thread: Mutex::new(Some(thread)),
            _lock: self.lock,
        }))
    }
}

/// The open sessions a journal's bytes describe, in the order they started.
fn replay(bytes: &[u8]) -> Recovered {
    let mut open: Vec<OpenSession> = Vec::new();
    let mut skipped_lines = 0;
    for line in bytes.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
        match serde_json::from_slice::<Record>(line) {
            Ok(Record::Start(session)) => open.push(*session),
            Ok(Record::Stop { conn_id, publisher }) => {
                open.retain(|s| !(s.conn_id == conn_id && s.publisher == publisher));
            }
            Err(_) => skipped_lines += 1,
        }
    }
    Recovered { sessions: open, last_alive_ms: 0, skipped_lines }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The sessions' handle on the journal: never blocks, never touches the file.
pub struct Journal {
    sender: Sender<Message>,
    /// Records dropped on a full channel (a stop dropped ends a session twice after a crash,
    /// a start dropped not at all).
    pub dropped: AtomicU64,
    last_drop_log_ms: AtomicU64,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
    _lock: File,
}

impl Journal {
    /// A publish or play started; false when the record was dropped (the channel was full).
    pub fn started(&self, session: OpenSession) -> bool {
        self.send(Message::Record(Record::Start(Box::new(session))))
    }

    /// A publish or play ended; false when the record was dropped.
    pub fn stopped(&self, conn_id: u64, publisher: bool) -> bool {
        self.send(Message::Record(Record::Stop { conn_id, publisher }))
    }

    fn send(&self, message: Message) -> bool {
        match self.sender.try_send(message) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let now = crate::hooks::now_ms();
                let last = self.last_drop_log_ms.load(Ordering::Relaxed);
                if now.saturating_sub(last) >= DROP_LOG_INTERVAL_MS
                    && self.last_drop_log_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
                {
                    error!(dropped, "session journal full: records dropped");
                }
                false
            }
        }
    }

    /// Writes what is left and stops the writer. Sessions still open then (abandoned at the
    /// shutdown deadline) stay in the file, for the next start to end.
    pub fn close(&self) {
        let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() else { return };
        // Blocking is fine here: the shards are gone, nothing else sends.
        let _ = self.sender.send(Message::Close);
        let _ = thread.join();
    }
}

/// The writer thread's state.
struct Writer {
    path: PathBuf,
    /// Opened for appending.
    file: File,
    /// Bytes in the file.
    written: u64,
    live: HashMap<(u64, bool), OpenSession>,
    /// Since when written bytes wait for a sync.
    unsynced: Option<Instant>,
}

impl Writer {
    fn run(mut self, receiver: Receiver<Message>) {
        let mut batch = Vec::new();
        let mut last_touch = Instant::now();
        loop {
            let wait = match self.unsynced {
                Some(since) => SYNC_INTERVAL.saturating_sub(since.elapsed()),
                None => ALIVE_TICK,
            };
            let mut closing = false;
            match receiver.recv_timeout(wait) {
                Ok(message) => {
                    closing |= self.take(message, &mut batch);
                    // Whatever else is waiting goes in the same write.
                    while let Ok(message) = receiver.try_recv() {
                        closing |= self.take(message, &mut batch);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => closing = true,
            }
            if let Err(error) = self.write(&mut batch, closing) {
                error!(path = %self.path.display(), %error, "session journal: write failed");
            }
            if !self.live.is_empty() && last_touch.elapsed() >= ALIVE_TICK {
                last_touch = Instant::now();
                let _ = self.file.set_modified(SystemTime::now());
            }
            if closing {
                return;
            }
        }
    }

    /// Adds `message`'s line to `batch`; true when it asks the writer to end.
    fn take(&mut self, message: Message, batch: &mut Vec<u8>) -> bool {
        let record = match message {
            Message::Record(record) => record,
            Message::Close => return true,
        };
        match &record {
            Record::Start(session) => {
                self.live.insert((session.conn_id, session.publisher), (**session).clone());
            }
            Record::Stop { conn_id, publisher } => {
                self.live.remove(&(*conn_id, *publisher));
            }
        }
        if serde_json::to_writer(&mut *batch, &record).is_ok() {
            batch.push(b'\n');
        }
        false
    }

    fn write(&mut self, batch: &mut Vec<u8>, closing: bool) -> io::Result<()> {
        if closing && self.live.is_empty() {
            // Every session ended: nothing for the next start to do.
            batch.clear();
            self.file.set_len(0)?;
            self.written = 0;
            return self.file.sync_all();
        }
        if !batch.is_empty() {
            self.file.write_all(batch)?;
            self.written += batch.len() as u64;
            batch.clear();
            self.unsynced.get_or_insert_with(Instant::now);
        }
        if self.written > COMPACT_BYTES {
            return self.compact();
        }
        if let Some(since) = self.unsynced
            && (closing || since.elapsed() >= SYNC_INTERVAL)
        {
            self.unsynced = None;
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Rewrites the file with only the open sessions: a new file, synced, renamed over the
    /// old one, so a crash midway leaves one or the other whole.
    fn compact(&mut self) -> io::Result<()> {
        let mut fresh = Vec::new();
        let mut sessions: Vec<&OpenSession> = self.live.values().collect();
        sessions.sort_by_key(|s| (s.conn_id, s.publisher));
        for session in sessions {
            serde_json::to_writer(&mut fresh, &Record::Start(Box::new(session.clone())))?;
            fresh.push(b'\n');
        }
        let temporary = self.path.with_extension("journal.tmp");
        let mut file = OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&temporary)?;
        file.write_all(&fresh)?;
        file.sync_all()?;
        fs::rename(&temporary, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.written = fresh.len() as u64;
        self.unsynced = None;
        Ok(())
    }
}

/// Opens the journal of `state_dir` for a server: what a crashed run left open, and the
/// journal to start once that has been ended. `None` (with a warning) when it cannot be used:
/// a server without its journal still serves.
pub fn open_for_server(state_dir: &Path) -> Option<(JournalFile, Recovered)> {
    match JournalFile::open(state_dir) {
        Ok(opened) => {
            if opened.1.skipped_lines > 0 {
                warn!(
                    path = %state_dir.join(FILE_NAME).display(),
                    skipped = opened.1.skipped_lines,
                    "session journal: skipped lines that do not parse (a torn tail)"
                );
            }
            Some(opened)
        }
        Err(error) => {
            warn!("{error}; running without a session journal (no stop events after a crash)");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(conn_id: u64, publisher: bool) -> OpenSession {
        OpenSession {
            conn_id,
            publisher,
            protocol: "rtmp".into(),
            addr: "127.0.0.1:5000".parse().unwrap(),
            stream: "live/cam".into(),
            app: "live".into(),
            name: "cam".into(),
            url: "rtmp://h/live".into(),
            tc_url: String::new(),
            flash_ver: String::new(),
            swf_url: String::new(),
            page_url: String::new(),
            connect_args: vec![],
            args: vec![("token".into(), "x".into())],
            started_ms: 1000,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringcast-journal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn line(record: &Record) -> String {
        serde_json::to_string(record).unwrap() + "\n"
    }

    #[test]
    fn replay_keeps_what_started_and_never_stopped_and_skips_a_torn_tail() {
        let mut text = String::new();
        text += &line(&Record::Start(Box::new(session(1, true))));
        text += &line(&Record::Start(Box::new(session(2, false))));
        text += &line(&Record::Start(Box::new(session(3, false))));
        text += &line(&Record::Stop { conn_id: 2, publisher: false });
        // The same connection's play stop does not end its publish.
        text += &line(&Record::Stop { conn_id: 1, publisher: false });
        text += r#"{"start":{"conn_id":4,"publ"#;
        let recovered = replay(text.as_bytes());
        let open: Vec<(u64, bool)> = recovered.sessions.iter().map(|s| (s.conn_id, s.publisher)).collect();
        assert_eq!(open, [(1, true), (3, false)]);
        assert_eq!(recovered.skipped_lines, 1);
        assert_eq!(recovered.sessions[0], session(1, true));
    }

    #[test]
    fn a_second_server_cannot_take_a_locked_journal() {
        let dir = temp_dir("lock");
        let (first, _) = JournalFile::open(&dir).unwrap();
        assert!(matches!(JournalFile::open(&dir), Err(JournalError::Locked { .. })));
        drop(first);
        assert!(JournalFile::open(&dir).is_ok());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn what_stays_open_survives_the_writer_and_a_clean_close_empties_the_file() {
        let dir = temp_dir("writer");
        let (file, recovered) = JournalFile::open(&dir).unwrap();
        assert!(recovered.sessions.is_empty());
        let journal = file.start().unwrap();
        journal.started(session(1, true));
        journal.started(session(2, false));
        journal.stopped(2, false);
        // Written within a sync interval, as a crash would leave it.
        let path = dir.join(FILE_NAME);
        let written = (0..100).find_map(|_| {
            thread::sleep(Duration::from_millis(20));
            let open = replay(&fs::read(&path).unwrap()).sessions;
            (open.len() == 1).then_some(open)
        });
        assert_eq!(written.unwrap()[0], session(1, true));
        // The server stopped with the publish still open (abandoned at the deadline).
        journal.close();
        drop(journal);
        let (file, recovered) = JournalFile::open(&dir).unwrap();
        assert_eq!(recovered.sessions, [session(1, true)]);
        assert!(recovered.last_alive_ms > 0);
        let journal = file.start().unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 0, "recovered sessions are not recovered twice");
        journal.started(session(5, false));
        journal.stopped(5, false);
        journal.close();
        assert_eq!(fs::metadata(&path).unwrap().len(), 0, "a clean close leaves an empty journal");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_grown_file_is_compacted_to_the_open_sessions() {
        let dir = temp_dir("compact");
        let (file, _) = JournalFile::open(&dir).unwrap();
        let journal = file.start().unwrap();
        journal.started(session(1, true));
        for conn_id in 2..10_000 {
            journal.started(session(conn_id, false));
            journal.stopped(conn_id, false);
        }
        journal.close();
        let bytes = fs::read(dir.join(FILE_NAME)).unwrap();
        let open: Vec<u64> = replay(&bytes).sessions.iter().map(|s| s.conn_id).collect();
        assert_eq!(open, [1]);
        // Everything written would be several times the threshold without compaction.
        let appended = 9998 * (line(&Record::Start(Box::new(session(2, false)))).len() + 30);
        assert!(appended as u64 > 2 * COMPACT_BYTES);
        assert!(bytes.len() as u64 <= COMPACT_BYTES, "size {}", bytes.len());
        let _ = fs::remove_dir_all(&dir);
    }
}
