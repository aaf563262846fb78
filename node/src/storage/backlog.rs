//! A slot's replication backlog: the most recent change-log entries, in memory, in order.
//! Pure data structure; the slot's write lock guards it.
//!
//! Why memory and not RocksDB: a second copy of every write in a column family doubled the
//! memtable inserts and the flush/compaction work of every write and halved pipelined write
//! throughput (bench/RESULTS.md). Redis keeps its replication backlog in memory for the same
//! reason. The price: after a master restarts, its replicas re-sync in full (a 1 GB slot takes
//! about 2 s on loopback). Replica positions themselves are durable (see `slotlog`).
//!
//! A slot keeps entries only while it has replicas, or had one in the last [`KEEP_AFTER_DETACH`]
//! (so a restarting replica can resume); otherwise its backlog is off and costs nothing. A clean
//! shutdown saves each master slot's backlog (`slotlog::save_master`), so that its replicas
//! continue from the restarted master; after a crash they re-sync in full.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::changelog::LogPos;

/// How long a slot keeps logging after its last replica detached.
pub const KEEP_AFTER_DETACH: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Backlog {
    entries: VecDeque<(LogPos, Bytes)>,
    bytes: usize,
    /// The position just before the first retained entry.
    base: LogPos,
    /// Off: commits are not retained (no replica needs them).
    logging: bool,
    /// When the last replica detached (None while one is attached or none ever was).
    idle_since: Option<Instant>,
}

impl Backlog {
    pub fn is_logging(&self) -> bool {
        self.logging
    }

    pub fn base(&self) -> LogPos {
        self.base
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Turns logging on (a replica attached). Entries start after `head` if it was off.
    pub fn start(&mut self, head: LogPos) {
        if !self.logging {
            self.reset(head);
            self.logging = true;
        }
        self.idle_since = None;
    }

    /// The last replica detached: keep logging for a while for a reconnect.
    pub fn detached(&mut self, now: Instant) {
        self.idle_since = Some(now);
    }

    /// Empties the backlog; the next entry follows `head`.
    pub fn reset(&mut self, head: LogPos) {
        self.entries.clear();
        self.bytes = 0;
        self.base = head;
    }

    /// Records a committed entry at `pos` (the slot's new head). When not logging, only the
    /// base moves, so the backlog stays "empty at the head".
    pub fn push(&mut self, pos: LogPos, entry: Bytes) {
        if !self.logging {
            self.base = pos;
            return;
        }
        self.bytes += entry.len();
        self.entries.push_back((pos, entry));
    }

    /// The retained entries, oldest first.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &(LogPos, Bytes)> {
        self.entries.iter()
    }

    /// A backlog saved at a clean shutdown, back after the restart: logging from `base` with
    /// `entries`, kept [`KEEP_AFTER_DETACH`] from `now` for the replicas to come back.
    pub fn restored(base: LogPos, entries: Vec<(LogPos, Bytes)>, now: Instant) -> Backlog {
        let bytes = entries.iter().map(|e| e.1.len()).sum();
        Backlog { entries: entries.into(), bytes, base, logging: true, idle_since: Some(now) }
    }

    /// The end offset of entry `seq`, if it is the base or retained.
    pub fn offset_at(&self, seq: u64) -> Option<u64> {
        if seq == self.base.seq {
            return Some(self.base.offset);
        }
        self.index(seq).map(|i| self.entries[i].0.offset)
    }

    fn index(&self, seq: u64) -> Option<usize> {
        let i = seq.checked_sub(self.base.seq + 1)? as usize;
        (i < self.entries.len()).then_some(i)
    }

    /// Entries from `from_seq` on, up to about `max_bytes` (at least one). `None` when
    /// `from_seq` is no longer retained; an empty list when nothing that new exists yet.
    pub fn read(&self, from_seq: u64, max_bytes: usize) -> Option<Vec<(LogPos, Bytes)>> {
        if from_seq <= self.base.seq {
            return None;
        }
        let Some(start) = self.index(from_seq) else {
            let newest = self.entries.back().map_or(self.base.seq, |e| e.0.seq);
            return (from_seq > newest).then(Vec::new);
        };
        let mut out = Vec::new();
        let mut bytes = 0;
        for (pos, entry) in self.entries.range(start..) {
            out.push((*pos, entry.clone()));
            bytes += entry.len();
            if bytes >= max_bytes {
                break;
            }
        }
        Some(out)
    }

    /// Drops old entries: beyond `keep_bytes` those no attached replica still needs (all up to
    /// `needed_from`, the oldest position a replica has acknowledged), and beyond `max_bytes`
    /// any. Turns logging off once no replica has been attached for [`KEEP_AFTER_DETACH`].
    /// Returns how many entries were dropped.
    pub fn trim(&mut self, keep_bytes: usize, max_bytes: usize, needed_from: Option<u64>, now: Instant) -> usize {
        if self.logging && self.idle_since.is_some_and(|t| now.duration_since(t) >= KEEP_AFTER_DETACH) {
            let dropped = self.entries.len();
            let head = self.entries.back().map_or(self.base, |e| e.0);
            self.reset(head);
            self.logging = false;
            self.idle_since = None;
            return dropped;
        }
        let mut dropped = 0;
        while let Some((pos, entry)) = self.entries.front() {
            let over_keep = self.bytes > keep_bytes && needed_from.is_none_or(|seq| pos.seq <= seq);
            if !(over_keep || self.bytes > max_bytes) {
                break;
            }
            self.bytes -= entry.len();
            self.base = *pos;
            self.entries.pop_front();
            dropped += 1;
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(seq: u64) -> LogPos {
        LogPos { seq, offset: seq * 10 }
    }

    fn logging_from(head: u64) -> Backlog {
        let mut b = Backlog::default();
        b.start(pos(head));
        b
    }

    #[test]
    fn off_by_default_and_then_empty_at_the_head() {
        let mut b = Backlog::default();
        b.push(pos(1), Bytes::from_static(b"0123456789"));
        assert_eq!(b.base(), pos(1));
        assert_eq!(b.read(2, 100), Some(vec![]), "nothing newer yet");
        assert_eq!(b.read(1, 100), None, "not retained");
        assert_eq!(b.offset_at(1), Some(10));
    }

    #[test]
    fn reads_from_any_retained_position() {
        let mut b = logging_from(5);
        for s in 6..=9 {
            b.push(pos(s), Bytes::from(vec![b'x'; 10]));
        }
        assert_eq!(b.read(7, 1000).unwrap().iter().map(|e| e.0.seq).collect::<Vec<_>>(), vec![7, 8, 9]);
        assert_eq!(b.read(6, 15).unwrap().len(), 2, "stops once max_bytes is reached");
        assert_eq!(b.read(10, 100), Some(vec![]));
        assert_eq!(b.read(5, 100), None);
        assert_eq!(b.offset_at(5), Some(50));
        assert_eq!(b.offset_at(8), Some(80));
        assert_eq!(b.offset_at(10), None);
    }

    #[test]
    fn trim_keeps_what_replicas_need_up_to_the_hard_limit() {
        let mut b = logging_from(0);
        for s in 1..=10 {
            b.push(pos(s), Bytes::from(vec![b'x'; 10]));
        }
        let now = Instant::now();
        // A replica acknowledged up to 3: entries after it stay although over the soft limit.
        assert_eq!(b.trim(20, 1000, Some(3), now), 3);
        assert_eq!(b.base(), pos(3));
        // Past the hard limit even needed entries go.
        assert_eq!(b.trim(20, 50, Some(3), now), 2);
        assert_eq!(b.base(), pos(5));
        // Nobody attached: down to the soft limit.
        assert_eq!(b.trim(20, 1000, None, now), 3);
        assert_eq!(b.bytes(), 20);
    }

    #[test]
    fn logging_stops_a_while_after_the_last_replica_left() {
        let mut b = logging_from(0);
        b.push(pos(1), Bytes::from_static(b"x"));
        let t = Instant::now();
        b.detached(t);
        assert_eq!(b.trim(100, 100, None, t), 0);
        assert!(b.is_logging());
        assert_eq!(b.trim(100, 100, None, t + KEEP_AFTER_DETACH), 1);
        assert!(!b.is_logging());
        assert_eq!(b.base(), pos(1));
        b.push(pos(2), Bytes::from_static(b"y"));
        assert_eq!(b.read(3, 10), Some(vec![]));
        assert_eq!(b.read(2, 10), None);
    }
}
