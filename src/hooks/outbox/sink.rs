//! One sink's outbox: a directory of append-only segment files, `seg-<first number>.log`, each
//! a run of [`record`]s. Only the dispatcher thread touches it.
//!
//! Events are numbered in the order they are written (1, 2, 3...; the number is the outbox's, not
//! the event's `id`), and a segment holds the events numbered from its first up to the next
//! segment's first, with the acknowledgements written meanwhile. In memory each segment keeps a
//! bit per event still undelivered. A segment is deleted once it and every older one hold no
//! undelivered event: an acknowledgement is only ever written after the event it acknowledges,
//! so deleting from the oldest end never leaves an event whose acknowledgement is gone.
//!
//! Writes go to a buffer, and reach the file (the page cache: they survive the process being
//! killed) when [`SinkOutbox::flush`] is called, before their first attempt; [`SinkOutbox::sync`]
//! fsyncs them (they survive the machine). Reopened, an outbox replays its segments; a record cut
//! short or damaged (a torn tail) ends that segment's reading with a warning, and writing goes on
//! in a new segment, so a torn tail is never written after.
//!
//! With a retention (`outbox_retain`), a delivered segment is kept until its newest event is
//! that old, so [`SinkOutbox::read_kept`] can find delivered events for a replay; kept segments
//! are the first to go when an event needs room ([`SinkOutbox::append`]).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::warn;

use super::record::{self, Record};
use super::stored;
use crate::hooks::clock::now_ms;
use crate::hooks::event::Event;

/// How much of a segment one read takes.
const READ_CHUNK: usize = 256 * 1024;

/// More events than a segment can hold (each record is at least its header long, and a segment
/// is closed past `segment_bytes`).
const MAX_SEGMENT_EVENTS: u64 = 1 << 26;

/// Why an event was not written.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The outbox holds `outbox_max_bytes` already.
    #[error("outbox full ({bytes} bytes of at most {max})")]
    Full { bytes: u64, max: u64 },
    #[error("cannot write the outbox: {0}")]
    Io(#[from] io::Error),
}

struct Segment {
    first: u64,
    path: PathBuf,
    /// Bytes in the file, buffered ones included.
    len: u64,
    /// Bit `n - first` is set while event `n` is undelivered.
    pending: Vec<u64>,
    live: u64,
    /// When its first undelivered event happened (ms), as far as known: the oldest age shown.
    first_timestamp_ms: u64,
    /// When its newest event happened (ms): a delivered segment is kept `retain` past it.
    last_timestamp_ms: u64,
}

impl Segment {
    fn new(first: u64, dir: &Path) -> Segment {
        Segment {
            first,
            path: dir.join(format!("seg-{first:020}.log")),
            len: 0,
            pending: Vec::new(),
            live: 0,
            first_timestamp_ms: 0,
            last_timestamp_ms: 0,
        }
    }

    fn set_pending(&mut self, number: u64) {
        let bit = (number - self.first) as usize;
        if self.pending.len() <= bit / 64 {
            self.pending.resize(bit / 64 + 1, 0);
        }
        if self.pending[bit / 64] & (1 << (bit % 64)) == 0 {
            self.pending[bit / 64] |= 1 << (bit % 64);
            self.live += 1;
        }
    }

    /// Clears event `number`; whether it was pending.
    fn clear(&mut self, number: u64) -> bool {
        let bit = (number - self.first) as usize;
        match self.pending.get_mut(bit / 64) {
            Some(word) if *word & (1 << (bit % 64)) != 0 => {
                *word &= !(1 << (bit % 64));
                self.live -= 1;
                true
            }
            _ => false,
        }
    }

    fn is_pending(&self, number: u64) -> bool {
        let bit = (number - self.first) as usize;
        self.pending.get(bit / 64).is_some_and(|word| word & (1 << (bit % 64)) != 0)
    }
}

/// Where the next [`SinkOutbox::read`] starts: a segment (by its first number) and an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    segment: u64,
    offset: u64,
}

/// What reopening an outbox found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Undelivered events.
    pub pending: u64,
    /// Segments whose reading ended early (a torn tail or damage).
    pub torn: usize,
}

pub struct SinkOutbox {
    dir: PathBuf,
    /// Oldest first; the last is the one written, made by this process.
    segments: VecDeque<Segment>,
    writer: Option<BufWriter<File>>,
    /// The number the next event gets.
    next_number: u64,
    /// Bytes of every segment file.
    bytes: u64,
    pending: u64,
    max_bytes: u64,
    /// A segment past this size is closed and a new one begun.
    segment_bytes: u64,
    /// Written since the last fsync.
    unsynced: bool,
    /// Written since the last flush.
    unflushed: bool,
    /// Events written since the last flush: they must reach the kernel before their first
    /// attempt; acknowledgements alone may wait for the fsync tick.
    events_unflushed: bool,
    cursor: Cursor,
    encoded: Vec<u8>,
    /// How long a delivered segment is kept (for replays) past its newest event; zero deletes
    /// it as soon as it is delivered.
    retain: Duration,
}

/// Where a [`SinkOutbox::read_kept`] goes on from, and where it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptCursor {
    at: Cursor,
    /// Events numbered from here on were written after the scan began (a replay's own copies).
    end: u64,
    /// Past the end: nothing more to read.
    done: bool,
}

impl SinkOutbox {
    /// Opens (creating it, 0700) the outbox in `dir` and replays what it holds. Reading starts at
    /// its oldest undelivered event; the first write begins a new segment.
    pub fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> io::Result<(SinkOutbox, Replayed)> {
        SinkOutbox::open_retaining(dir, max_bytes, segment_bytes, Duration::ZERO)
    }

    /// [`open`](Self::open), keeping delivered segments `retain` past their newest event.
    pub fn open_retaining(
        dir: &Path,
        max_bytes: u64,
        segment_bytes: u64,
        retain: Duration,
    ) -> io::Result<(SinkOutbox, Replayed)> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let mut firsts: Vec<u64> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(first) =
                name.strip_prefix("seg-").and_then(|n| n.strip_suffix(".log")).and_then(|n| n.parse().ok())
            {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut outbox = SinkOutbox {
            dir: dir.to_owned(),
            segments: VecDeque::new(),
            writer: None,
            next_number: 1,
            bytes: 0,
            pending: 0,
            max_bytes,
            segment_bytes: segment_bytes.max(4096),
            unsynced: false,
            unflushed: false,
            events_unflushed: false,
            cursor: Cursor { segment: 0, offset: 0 },
            encoded: Vec::new(),
            retain,
        };
        let mut replayed = Replayed::default();
        for first in firsts {
            let segment = Segment::new(first, dir);
            let bytes = fs::read(&segment.path)?;
            outbox.segments.push_back(Segment { len: bytes.len() as u64, ..segment });
            outbox.bytes += bytes.len() as u64;
            outbox.next_number = outbox.next_number.max(first + 1);
            let mut at = 0;
            while at < bytes.len() {
                match record::parse(&bytes[at..]) {
                    Ok((Record::Event { number, payload }, used)) => {
                        at += used;
                        // A number outside the segment's range is damage that passed the
                        // checksum: not worth a bitmap of that size.
                        if number < first || number - first > MAX_SEGMENT_EVENTS {
                            continue;
                        }
                        let timestamp_ms = stored::decode(payload).map_or(0, |e| e.timestamp_ms);
                        if let Some(segment) = outbox.segments.back_mut() {
                            if segment.live == 0 {
                                segment.first_timestamp_ms = timestamp_ms;
                            }
                            segment.last_timestamp_ms = segment.last_timestamp_ms.max(timestamp_ms);
                            segment.set_pending(number);
                        }
                        outbox.next_number = outbox.next_number.max(number + 1);
                    }
                    Ok((Record::Ack { number }, used)) => {
                        at += used;
                        outbox.clear(number);
                    }
                    Err(e) => {
                        warn!(file = %outbox.segments.back().map_or_else(String::new, |s| s.path.display().to_string()), offset = at, error = %e, "outbox: torn or damaged record; the rest of this segment is skipped");
                        replayed.torn += 1;
                        break;
                    }
                }
            }
        }
        outbox.pending = outbox.segments.iter().map(|s| s.live).sum();
        replayed.pending = outbox.pending;
        outbox.delete_done();
        outbox.rewind();
        Ok((outbox, replayed))
    }

    /// Undelivered events.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Bytes on disk (and in the write buffer).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The number the next event written gets: everything below it has been written.
    pub fn next_number(&self) -> u64 {
        self.next_number
    }

    /// The number of the oldest event still kept (delivered or not).
    pub fn first_number(&self) -> u64 {
        self.segments.front().map_or(self.next_number, |s| s.first)
    }

    /// When the oldest undelivered event happened (unix ms), roughly: the first undelivered one
    /// of the oldest segment holding any, as it was when that segment was written or read.
    pub fn oldest_timestamp_ms(&self) -> Option<u64> {
        self.segments.iter().find(|s| s.live > 0).map(|s| s.first_timestamp_ms)
    }

    /// Writes `event` (to the buffer: [`flush`](Self::flush) makes it durable against a kill);
    /// returns its number.
    /// Delivered segments kept for replays are deleted, oldest first, to make room for it.
    pub fn append(&mut self, event: &Event) -> Result<u64, AppendError> {
        self.append_stored(event, stored::encode(event), true)
    }

    /// Writes `event` again, marked as a replay's copy (not replayed again by a later replay).
    /// Kept segments are not deleted for it: the replay may still have them to read.
    pub fn append_replay(&mut self, event: &Event) -> Result<u64, AppendError> {
        self.append_stored(event, stored::encode_replay(event), false)
    }

    fn append_stored(&mut self, event: &Event, payload: Vec<u8>, evict: bool) -> Result<u64, AppendError> {
        let number = self.next_number;
        self.encoded.clear();
        record::encode(&Record::Event { number, payload: &payload }, &mut self.encoded);
        let len = self.encoded.len() as u64;
        let max = self.max_bytes;
        if evict && self.bytes + len > max {
            // Delivered events kept for replays give way to an undelivered one.
            self.delete_front_while(|segment, bytes| segment.live == 0 && bytes + len > max);
            if self.bytes + len > max && self.pending == 0 && self.writer.is_some() {
                // All delivered, and the segment written is what fills it: a new one lets it go.
                self.roll()?;
                self.delete_front_while(|segment, bytes| segment.live == 0 && bytes + len > max);
            }
        }
        if self.bytes + len > self.max_bytes {
            return Err(AppendError::Full { bytes: self.bytes, max: self.max_bytes });
        }
        if self.writer.is_some() && self.segments.back().is_some_and(|s| s.len >= self.segment_bytes) {
            self.roll()?;
        }
        self.write_encoded()?;
        self.events_unflushed = true;
        self.next_number += 1;
        self.pending += 1;
        if let Some(segment) = self.segments.back_mut() {
            if segment.live == 0 {
                segment.first_timestamp_ms = event.timestamp_ms;
            }
            segment.last_timestamp_ms = segment.last_timestamp_ms.max(event.timestamp_ms);
            segment.set_pending(number);
        }
        Ok(number)
    }

    /// Records event `number` as done with; deletes the segments this empties. Unknown or
    /// already acknowledged numbers are ignored (a delivery may finish after its outbox was
    /// reread).
    pub fn ack(&mut self, number: u64) -> io::Result<()> {
        if !self.clear(number) {
            return Ok(());
        }
        self.encoded.clear();
        record::encode(&Record::Ack { number }, &mut self.encoded);
        // Acknowledgements are not bounded by `max_bytes`: they are what lets it shrink.
        if self.writer.is_some() && self.segments.back().is_some_and(|s| s.len >= self.segment_bytes) {
            self.roll()?;
        }
        self.write_encoded()?;
        self.delete_done();
        Ok(())
    }

    fn clear(&mut self, number: u64) -> bool {
        let index = self.segments.partition_point(|s| s.first <= number);
        let Some(segment) = index.checked_sub(1).and_then(|i| self.segments.get_mut(i)) else { return false };
        let cleared = segment.clear(number);
        if cleared {
            self.pending = self.pending.saturating_sub(1);
        }
        cleared
    }

    /// Whether event `number` is still undelivered.
    pub fn is_pending(&self, number: u64) -> bool {
        let index = self.segments.partition_point(|s| s.first <= number);
        index.checked_sub(1).and_then(|i| self.segments.get(i)).is_some_and(|s| s.is_pending(number))
    }

    fn write_encoded(&mut self) -> io::Result<()> {
        if self.writer.is_none() {
            // Begun on the first write, never in a segment of an earlier run: its tail may be
            // torn, and reading an outbox (to report one) must not add files to it.
            self.begin_segment()?;
        }
        let Some(writer) = self.writer.as_mut() else {
            return Err(io::Error::other("no segment open for writing"));
        };
        writer.write_all(&self.encoded)?;
        let len = self.encoded.len() as u64;
        if let Some(segment) = self.segments.back_mut() {
            segment.len += len;
        }
        self.bytes += len;
        self.unsynced = true;
        self.unflushed = true;
        Ok(())
    }

    /// Hands buffered writes to the kernel: from here they survive the process, not the machine.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.unflushed
            && let Some(writer) = self.writer.as_mut()
        {
            writer.flush()?;
            self.unflushed = false;
            self.events_unflushed = false;
        }
        Ok(())
    }

    /// [`flush`](Self::flush)es if events were written since the last: what must reach the
    /// kernel before an attempt. Acknowledgements alone wait (for the next event or the fsync
    /// tick), so a burst of deliveries costs no write per delivery; a kill loses at most that
    /// wait's acknowledgements, and their events are sent once more.
    pub fn flush_events(&mut self) -> io::Result<()> {
        if self.events_unflushed { self.flush() } else { Ok(()) }
    }

    /// Flushes and fsyncs what was written: from here it survives the machine.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        if self.unsynced
            && let Some(writer) = self.writer.as_mut()
        {
            writer.get_ref().sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Whether writes wait for an fsync.
    pub fn is_unsynced(&self) -> bool {
        self.unsynced
    }

    /// Closes the segment written (fsynced) and begins the next.
    fn roll(&mut self) -> io::Result<()> {
        self.sync()?;
        self.begin_segment()
    }

    fn begin_segment(&mut self) -> io::Result<()> {
        let mut segment = Segment::new(self.next_number, &self.dir);
        if self.segments.back().is_some_and(|s| s.first >= segment.first) {
            // The last segment holds no event (only acknowledgements): its number is taken.
            self.next_number += 1;
            segment = Segment::new(self.next_number, &self.dir);
        }
        let file = OpenOptions::new().create_new(true).append(true).mode(0o600).open(&segment.path)?;
        // The new name must survive a crash with what is written in it.
        File::open(&self.dir)?.sync_all()?;
        self.writer = Some(BufWriter::with_capacity(64 * 1024, file));
        self.segments.push_back(segment);
        Ok(())
    }

    /// Deletes the oldest segments while they hold nothing undelivered and are past their
    /// retention (never the one written).
    fn delete_done(&mut self) {
        self.expire(now_ms());
    }

    /// Deletes the oldest delivered segments whose newest event happened `retain` or longer
    /// before `now_ms` (every delivered one with no retention).
    pub fn expire(&mut self, now_ms: u64) {
        let retain_ms = self.retain.as_millis() as u64;
        self.delete_front_while(|segment, _| {
            segment.live == 0 && (retain_ms == 0 || segment.last_timestamp_ms.saturating_add(retain_ms) <= now_ms)
        });
    }

    /// When (unix ms) the oldest kept, delivered segment is due to go; `None` with none kept.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        if self.retain.is_zero() || self.segments.len() <= usize::from(self.writer.is_some()) {
            return None;
        }
        let oldest = self.segments.front().filter(|s| s.live == 0)?;
        Some(oldest.last_timestamp_ms.saturating_add(self.retain.as_millis() as u64))
    }

    /// Deletes the oldest segments while `delete(segment, bytes of the outbox)` says so, never
    /// the one written: deleting from the oldest end never leaves an event whose
    /// acknowledgement is gone.
    fn delete_front_while(&mut self, mut delete: impl FnMut(&Segment, u64) -> bool) {
        let written = usize::from(self.writer.is_some());
        while self.segments.len() > written && self.segments.front().is_some_and(|s| delete(s, self.bytes)) {
            let Some(segment) = self.segments.pop_front() else { break };
            if let Err(e) = fs::remove_file(&segment.path)
                && e.kind() != io::ErrorKind::NotFound
            {
                warn!(file = %segment.path.display(), error = %e, "outbox: cannot delete a delivered segment");
            }
            self.bytes = self.bytes.saturating_sub(segment.len);
            if self.cursor.segment == segment.first {
                self.cursor = Cursor { segment: self.segments.front().map_or(0, |s| s.first), offset: 0 };
            }
        }
    }

    /// The next [`read`](Self::read) starts after everything written so far.
    pub fn skip_reading_to_end(&mut self) {
        if let Some(last) = self.segments.back() {
            self.cursor = Cursor { segment: last.first, offset: last.len };
        }
    }

    /// The next [`read`](Self::read) starts again at the oldest segment.
    pub fn rewind(&mut self) {
        self.cursor = Cursor { segment: self.first_number(), offset: 0 };
    }

    /// Reads on from the cursor: undelivered events numbered `from` or later, at most `max`
    /// of them (fewer at the end of what is written).
    pub fn read(&mut self, from: u64, max: usize) -> io::Result<Vec<(u64, Event)>> {
        self.flush()?;
        let mut out = Vec::new();
        let mut buffer = Vec::new();
        while out.len() < max {
            let index = self.segments.partition_point(|s| s.first < self.cursor.segment);
            let Some(segment) = self.segments.get(index) else { break };
            if segment.first != self.cursor.segment {
                self.cursor = Cursor { segment: segment.first, offset: 0 };
            }
            let is_last = index + 1 == self.segments.len();
            let remaining = segment.len.saturating_sub(self.cursor.offset);
            if remaining == 0 {
                match self.segments.get(index + 1) {
                    Some(next) if !is_last => {
                        self.cursor = Cursor { segment: next.first, offset: 0 };
                        continue;
                    }
                    _ => break,
                }
            }
            buffer.resize(remaining.min(READ_CHUNK as u64) as usize, 0);
            let file = File::open(&segment.path)?;
            let mut got = read_at(&file, &mut buffer, self.cursor.offset)?;
            buffer.truncate(got);
            let mut at = 0;
            let mut stop_segment = false;
            while out.len() < max {
                match record::parse(&buffer[at..]) {
                    Ok((Record::Event { number, payload }, used)) => {
                        at += used;
                        if number >= from && segment.is_pending(number) {
                            match stored::decode(payload) {
                                Some(event) => out.push((number, event)),
                                None => {
                                    warn!(file = %segment.path.display(), number, "outbox: an event that does not read back is skipped")
                                }
                            }
                        }
                    }
                    Ok((Record::Ack { .. }, used)) => at += used,
                    Err(record::Error::Incomplete) => {
                        if got as u64 == remaining {
                            // The file ends mid-record: a torn tail (of an old segment).
                            stop_segment = true;
                            break;
                        }
                        if at > 0 {
                            // The rest is read from the cursor, next round.
                            break;
                        }
                        // One record longer than a chunk: read it whole.
                        let whole = record::check(&buffer).unwrap_or(READ_CHUNK);
                        buffer.resize(whole, 0);
                        got = read_at(&file, &mut buffer, self.cursor.offset)?;
                        buffer.truncate(got);
                        if got < whole {
                            stop_segment = true;
                            break;
                        }
                    }
                    Err(record::Error::Corrupt(_)) => {
                        stop_segment = true;
                        break;
                    }
                }
            }
            self.cursor.offset += at as u64;
            if stop_segment {
                if is_last {
                    break;
                }
                self.cursor.offset = segment.len;
            }
            if at == 0 && !stop_segment {
                break;
            }
        }
        Ok(out)
    }
}

impl SinkOutbox {
    /// A scan of every event kept now, from the oldest segment: for [`read_kept`](Self::read_kept).
    pub fn scan_kept(&self) -> KeptCursor {
        KeptCursor { at: Cursor { segment: self.first_number(), offset: 0 }, end: self.next_number, done: false }
    }

    /// Reads on from `cursor`: at most `max` delivered events whose `timestamp_ms` is in
    /// `since_ms..until_ms`, in the order written, skipping copies an earlier replay wrote.
    /// Undelivered ones are left out: they are on their way already. Empty once the scan is
    /// done.
    pub fn read_kept(
        &mut self,
        cursor: &mut KeptCursor,
        since_ms: u64,
        until_ms: u64,
        max: usize,
    ) -> io::Result<Vec<Event>> {
        self.flush()?;
        let mut out = Vec::new();
        while !cursor.done && out.len() < max {
            let index = self.segments.partition_point(|s| s.first < cursor.at.segment);
            let Some(segment) = self.segments.get(index) else {
                cursor.done = true;
                break;
            };
            if segment.first >= cursor.end {
                cursor.done = true;
                break;
            }
            if segment.first != cursor.at.segment {
                cursor.at = Cursor { segment: segment.first, offset: 0 };
            }
            let next_segment = self.segments.get(index + 1).map(|s| s.first);
            // A segment is at most `segment_bytes` and a record: read the rest of it whole.
            let mut buffer = vec![0; segment.len.saturating_sub(cursor.at.offset) as usize];
            let got = read_at(&File::open(&segment.path)?, &mut buffer, cursor.at.offset)?;
            buffer.truncate(got);
            let mut at = 0;
            let mut segment_over = false;
            while out.len() < max {
                match record::parse(&buffer[at..]) {
                    Ok((Record::Event { number, payload }, used)) => {
                        at += used;
                        if number >= cursor.end {
                            cursor.done = true;
                            break;
                        }
                        if segment.is_pending(number) {
                            continue;
                        }
                        match stored::decode_kept(payload) {
                            Some((event, false)) if (since_ms..until_ms).contains(&event.timestamp_ms) => {
                                out.push(event)
                            }
                            Some(_) => {}
                            None => {
                                warn!(file = %segment.path.display(), number, "outbox: an event that does not read back is not replayed")
                            }
                        }
                    }
                    Ok((Record::Ack { .. }, used)) => at += used,
                    // The end of what is written, or a torn tail: the segment is over.
                    Err(_) => {
                        segment_over = true;
                        break;
                    }
                }
            }
            cursor.at.offset += at as u64;
            if segment_over {
                match next_segment {
                    Some(first) => cursor.at = Cursor { segment: first, offset: 0 },
                    None => cursor.done = true,
                }
            }
        }
        Ok(out)
    }
}

fn read_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buffer.len() {
        match file.read_at(&mut buffer[got..], offset + got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::event::connect_event;

    /// A fresh directory for one test (not created: the outbox creates it).
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringcast-outbox-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn event(n: u64) -> Event {
        let mut event = connect_event(&[("app", "live")]);
        event.id = format!("evt_{n}");
        event.timestamp_ms = 1_000 + n;
        event
    }

    fn ids(read: &[(u64, Event)]) -> Vec<String> {
        read.iter().map(|(_, e)| e.id.clone()).collect()
    }

    fn segment_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn events_written_read_back_in_order_and_after_a_reopen() {
        let dir = temp_dir("order");
        let (mut outbox, replayed) = SinkOutbox::open(&dir, 1 << 20, 1 << 20).unwrap();
        assert_eq!(replayed, Replayed::default());
        for n in 1..=5 {
            assert_eq!(outbox.append(&event(n)).unwrap(), n);
        }
        let read = outbox.read(1, 3).unwrap();
        assert_eq!(ids(&read), ["evt_1", "evt_2", "evt_3"]);
        assert_eq!(read[0].1, event(1), "the whole event");
        assert_eq!(ids(&outbox.read(4, 10).unwrap()), ["evt_4", "evt_5"], "read on from where it stopped");
        assert!(outbox.read(6, 10).unwrap().is_empty());
        outbox.ack(2).unwrap();
        outbox.ack(4).unwrap();
        assert_eq!(outbox.pending(), 3);
        outbox.sync().unwrap();
        drop(outbox);

        let (mut outbox, replayed) = SinkOutbox::open(&dir, 1 << 20, 1 << 20).unwrap();
        assert_eq!(replayed, Replayed { pending: 3, torn: 0 });
        assert_eq!(ids(&outbox.read(0, 10).unwrap()), ["evt_1", "evt_3", "evt_5"], "what was not acknowledged");
        assert_eq!(outbox.append(&event(6)).unwrap(), 6, "numbering goes on");
        assert_eq!(outbox.oldest_timestamp_ms(), Some(1_001));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_killed_writer_loses_nothing_flushed() {
        let dir = temp_dir("flushed");
        let (mut outbox, _) = SinkOutbox::open(&dir, 1 << 20, 1 << 20).unwrap();
        outbox.append(&event(1)).unwrap();
        outbox.append(&event(2)).unwrap();
        outbox.ack(1).unwrap();
        outbox.flush().unwrap();
        // No sync, no drop: what the kernel has is what a SIGKILL leaves.
        let (mut reopened, replayed) = SinkOutbox::open(&dir, 1 << 20, 1 << 20).unwrap();
        assert_eq!(replayed.pending, 1);
        assert_eq!(ids(&reopened.read(0, 10).unwrap()), ["evt_2"]);
        drop(outbox);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_tail_is_skipped_and_never_written_after() {
        let dir = temp_dir("torn");
        let (mut outbox, _) = SinkOutbox::open(&dir, 1 << 20, 1 << 20).unwrap();
        for n in 1..=3 {
            outbox.append(&event(n)).unwrap();
        }
        outbox.sync().unwrap();
        drop(outbox);
        let file = dir.join(&segment_files(&dir)[0]);
        let len = fs::metadata(&file).unwrap().len();
        // The last record half written, as a crash mid-write leaves it.
        let f = OpenOptions::new().write(true).open(&file).unwrap();
        f.set_len(len - 7).unwrap();
        drop(f);

        let (mut outbox, replayed) = SinkOutbox::open(&dir, 1 << 20, 1 << 20).unwrap();
        assert_eq!(replayed, Replayed { pending: 2, torn: 1 });
        assert_eq!(ids(&outbox.read(0, 10).unwrap()), ["evt_1", "evt_2"]);
        assert_eq!(outbox.append(&event(4)).unwrap(), 3, "numbered on from the last whole record");
        assert_eq!(segment_files(&dir).len(), 2, "written in a new segment");
        assert_eq!(ids(&outbox.read(0, 10).unwrap()), ["evt_4"], "read on past the torn tail");
        outbox.rewind();
        assert_eq!(ids(&outbox.read(0, 10).unwrap()), ["evt_1", "evt_2", "evt_4"]);
        drop(outbox);

        // Garbage rather than a cut: the same.
        let first = dir.join(&segment_files(&dir)[0]);
        let mut bytes = fs::read(&first).unwrap();
        bytes.extend_from_slice(&[0xAB; 40]);
        fs::write(&first, bytes).unwrap();
        let (mut outbox, replayed) = SinkOutbox::open(&dir, 1 << 20, 1 << 20).unwrap();
        assert_eq!(replayed, Replayed { pending: 3, torn: 1 });
        assert_eq!(ids(&outbox.read(0, 10).unwrap()), ["evt_1", "evt_2", "evt_4"]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn delivered_segments_are_deleted_oldest_first() {
        let dir = temp_dir("compact");
        // Segments of 4 KiB: a few events each.
        let (mut outbox, _) = SinkOutbox::open(&dir, 1 << 20, 4096).unwrap();
        for n in 1..=100 {
            outbox.append(&event(n)).unwrap();
        }
        let segments = segment_files(&dir).len();
        assert!(segments > 3, "{segments} segments");
        let full = outbox.bytes();
        // Everything but event 1: the oldest segment stays, so all stay.
        for n in 2..=100 {
            outbox.ack(n).unwrap();
        }
        assert_eq!(segment_files(&dir).len(), segments + 1, "acknowledgements fill another segment, none deleted");
        assert!(outbox.bytes() > full);
        outbox.ack(1).unwrap();
        assert_eq!(segment_files(&dir).len(), 1, "all delivered: only the one written remains");
        assert_eq!(outbox.pending(), 0);
        assert!(outbox.bytes() < 4096 + 1024, "{}", outbox.bytes());
        assert_eq!(outbox.oldest_timestamp_ms(), None);
        outbox.sync().unwrap();
        drop(outbox);
        let (_, replayed) = SinkOutbox::open(&dir, 1 << 20, 4096).unwrap();
        assert_eq!(replayed.pending, 0);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_outbox_refuses_new_events_and_keeps_the_old() {
        let dir = temp_dir("full");
        let (mut outbox, _) = SinkOutbox::open(&dir, 2000, 4096).unwrap();
        let mut written = 0;
        let refused = loop {
            match outbox.append(&event(written + 1)) {
                Ok(_) => written += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(refused, AppendError::Full { max: 2000, .. }), "{refused}");
        assert!(outbox.bytes() <= 2000);
        assert!(written > 3);
        // Acknowledgements still go in, and delivering everything makes room again.
        for n in 1..=written {
            outbox.ack(n).unwrap();
        }
        assert!(outbox.append(&event(99)).is_ok());
        let _ = fs::remove_dir_all(&dir);
    }

    /// An event of a second ago (so within any retention), numbered `n`, a millisecond apart.
    fn recent(n: u64) -> Event {
        static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        Event { timestamp_ms: *BASE.get_or_init(|| now_ms() - 1_000) + n, ..event(n) }
    }

    fn kept(outbox: &mut SinkOutbox, since_ms: u64, until_ms: u64) -> Vec<String> {
        let mut cursor = outbox.scan_kept();
        let mut all = Vec::new();
        loop {
            let batch = outbox.read_kept(&mut cursor, since_ms, until_ms, 7).unwrap();
            if batch.is_empty() {
                return all;
            }
            all.extend(batch.into_iter().map(|e| e.id));
        }
    }

    #[test]
    fn delivered_segments_are_kept_for_their_retention_and_read_back_for_a_replay() {
        let dir = temp_dir("retain");
        let day = Duration::from_secs(24 * 3600);
        let (mut outbox, _) = SinkOutbox::open_retaining(&dir, 1 << 20, 4096, day).unwrap();
        for n in 1..=60 {
            outbox.append(&recent(n)).unwrap();
        }
        for n in 1..=60 {
            if n != 30 {
                outbox.ack(n).unwrap();
            }
        }
        let segments = segment_files(&dir).len();
        assert!(segments > 2, "{segments}");
        // Delivered, in a time range, in the order written; the undelivered one is on its way.
        let since = recent(10).timestamp_ms;
        let until = recent(41).timestamp_ms;
        let expected: Vec<String> = (10..=40).filter(|n| *n != 30).map(|n| format!("evt_{n}")).collect();
        assert_eq!(kept(&mut outbox, since, until), expected);
        // A replay's copies are sent, and not replayed by the next replay.
        outbox.append_replay(&recent(12)).unwrap();
        assert!(outbox.is_pending(61));
        outbox.ack(61).unwrap();
        assert_eq!(kept(&mut outbox, since, until), expected);
        outbox.ack(30).unwrap();
        assert_eq!(segment_files(&dir).len(), segments, "delivered, but kept for a day");
        outbox.sync().unwrap();
        drop(outbox);

        // Kept across a restart, and deleted once old enough.
        let (mut outbox, _) = SinkOutbox::open_retaining(&dir, 1 << 20, 4096, day).unwrap();
        assert_eq!(kept(&mut outbox, 0, u64::MAX).len(), 60);
        let expiry = outbox.next_expiry_ms().expect("a kept segment expires");
        assert!(expiry > now_ms() + day.as_millis() as u64 - 60_000, "{expiry}");
        outbox.expire(expiry - 1);
        assert_eq!(kept(&mut outbox, 0, u64::MAX).len(), 60, "not yet");
        outbox.expire(now_ms() + day.as_millis() as u64);
        assert!(kept(&mut outbox, 0, u64::MAX).is_empty());
        assert_eq!(outbox.next_expiry_ms(), None);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn kept_segments_are_the_first_to_go_when_an_event_needs_room() {
        let dir = temp_dir("retain-full");
        let (mut outbox, _) = SinkOutbox::open_retaining(&dir, 8192, 1024, Duration::from_secs(3600)).unwrap();
        let mut n = 0;
        // Delivered events fill the outbox many times over: none is refused.
        while n < 400 {
            n += 1;
            outbox.append(&recent(n)).expect("kept, delivered events make room");
            outbox.ack(n).unwrap();
        }
        assert!(outbox.bytes() <= 8192 + 1024, "{}", outbox.bytes());
        let kept_now = kept(&mut outbox, 0, u64::MAX);
        assert!(!kept_now.is_empty() && kept_now.last().is_some_and(|id| id == "evt_400"), "the newest kept");
        // Undelivered ones fill it: then new events are refused, and the undelivered kept.
        let refused = loop {
            n += 1;
            match outbox.append(&recent(n)) {
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(matches!(refused, AppendError::Full { .. }), "{refused}");
        // Only those sharing a segment with the first undelivered event are left.
        let kept_after = kept(&mut outbox, 0, u64::MAX);
        assert!(kept_after.len() < kept_now.len() / 2, "the delivered went first: {kept_after:?}");
        assert!(outbox.pending() > 3);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn reads_skip_what_is_delivered_and_what_came_before() {
        let dir = temp_dir("skip");
        let (mut outbox, _) = SinkOutbox::open(&dir, 1 << 20, 4096).unwrap();
        for n in 1..=40 {
            outbox.append(&event(n)).unwrap();
        }
        for n in (1..=40).filter(|n| n % 3 == 0) {
            outbox.ack(n).unwrap();
        }
        let read = outbox.read(20, 100).unwrap();
        let expected: Vec<String> = (20..=40).filter(|n| n % 3 != 0).map(|n| format!("evt_{n}")).collect();
        assert_eq!(ids(&read), expected);
        assert!(outbox.is_pending(40) && !outbox.is_pending(39));
        let _ = fs::remove_dir_all(&dir);
    }
}
