//! The per-slot change log in RocksDB, and the slot-level operations replication needs:
//! committing a transaction with its log entry in one batch, applying a master's entry on a
//! replica, reading and purging the log, streaming a consistent snapshot of a slot, and a digest
//! to compare two copies.

use rocksdb::{ReadOptions, WriteBatch, WriteOptions};

use super::changelog::{self, ChangeSet, LogMeta, LogPos, Op};
use super::encoding::{successor, SlotPrefix};
use super::{ApplyError, Store, WriteState, CF_LOG};

/// One log entry as read back: its position (seq, offset after it) and its operations.
pub type LogEntry = (LogPos, Vec<u8>);

fn log_key(prefix: SlotPrefix, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(prefix.bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Appends an entry's operations to `batch`, with this node's slot prefix in front of every key.
fn add_ops(prefix: SlotPrefix, ops: &[Op<'_>], batch: &mut WriteBatch) {
    let mut key = prefix.bytes().to_vec();
    let mut full = |rel: &[u8]| -> Vec<u8> {
        key.truncate(8);
        key.extend_from_slice(rel);
        key.clone()
    };
    for op in ops {
        match *op {
            Op::Put(k, v) => batch.put(full(k), v),
            Op::Delete(k) => batch.delete(full(k)),
            Op::DeleteRange(start, end) => {
                let start = full(start);
                let end = if end.is_empty() { successor(prefix.bytes()) } else { full(end) };
                if start < end {
                    batch.delete_range(start, end);
                }
            }
        }
    }
}

impl Store {
    pub(super) fn log_cf(&self) -> std::sync::Arc<rocksdb::BoundColumnFamily<'_>> {
        self.db.cf_handle(CF_LOG).expect("log column family exists")
    }

    /// Commits a transaction's changes and their log entry atomically, under the slot's lock.
    pub fn commit_changes(
        &self,
        prefix: SlotPrefix,
        changes: &ChangeSet,
        state: &mut WriteState,
    ) -> Result<(), rocksdb::Error> {
        let ops = changelog::decode_entry(changes.bytes()).expect("a change set encodes valid operations");
        let head = state.head.pos();
        let next = LogPos { seq: head.seq + 1, offset: head.offset + changes.bytes().len() as u64 };
        self.write_entry(prefix, &ops, changes.bytes(), next, state)
    }

    /// Applies a master's entry to a replica slot: the same operations under this node's prefix,
    /// logged at the master's position so this slot can serve replicas of its own (chaining).
    pub fn apply_entry(
        &self,
        prefix: SlotPrefix,
        pos: LogPos,
        entry: &[u8],
        state: &mut WriteState,
    ) -> Result<(), ApplyError> {
        let expected = state.head.pos().seq + 1;
        if pos.seq != expected {
            return Err(ApplyError::Gap { expected, got: pos.seq });
        }
        let ops = changelog::decode_entry(entry)?;
        Ok(self.write_entry(prefix, &ops, entry, pos, state)?)
    }

    fn write_entry(
        &self,
        prefix: SlotPrefix,
        ops: &[Op<'_>],
        entry: &[u8],
        pos: LogPos,
        state: &mut WriteState,
    ) -> Result<(), rocksdb::Error> {
        let mut batch = WriteBatch::default();
        add_ops(prefix, ops, &mut batch);
        batch.put_cf(&self.log_cf(), log_key(prefix, pos.seq), changelog::encode_stored(pos.offset, entry));
        self.write(batch)?;
        state.head.advance(pos);
        Ok(())
    }

    /// Reads a slot's log bookkeeping and last position, as stored (at startup).
    pub fn load_log(&self, prefix: SlotPrefix) -> Result<(LogMeta, LogPos), ApplyError> {
        let cf = self.log_cf();
        let meta = match self.db.get_cf(&cf, prefix.bytes())? {
            Some(raw) => LogMeta::decode(&raw)?,
            None => LogMeta::default(),
        };
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(log_key(prefix, 1).to_vec());
        ro.set_iterate_upper_bound(successor(prefix.bytes()));
        let mut iter = self.db.raw_iterator_cf_opt(&cf, ro);
        iter.seek_to_last();
        let last = match (iter.key(), iter.value()) {
            (Some(k), Some(v)) if k.len() == 16 => {
                let seq = u64::from_be_bytes(k[8..].try_into().expect("16-byte key"));
                LogPos { seq, offset: changelog::decode_stored(v)?.0 }
            }
            _ => meta.base,
        };
        iter.status()?;
        Ok((meta, last))
    }

    /// Restores a slot's log state at startup.
    pub fn init_log(&self, prefix: SlotPrefix, state: &mut WriteState) -> Result<(), ApplyError> {
        let (meta, pos) = self.load_log(prefix)?;
        state.log = meta;
        state.head.advance(pos);
        Ok(())
    }

    /// Stores new bookkeeping for a slot (promotion, a new master slot). Durable after the next
    /// [`Store::flush_wal`], which the caller runs once for a batch of slots.
    pub fn set_log_meta(
        &self,
        prefix: SlotPrefix,
        meta: LogMeta,
        state: &mut WriteState,
    ) -> Result<(), rocksdb::Error> {
        self.db.put_cf(&self.log_cf(), prefix.bytes(), meta.encode())?;
        state.log = meta;
        Ok(())
    }

    /// Up to `max_bytes` (at least one entry) of the log from `from_seq` on. The first entry
    /// returned is not `from_seq` when that entry was purged.
    pub fn read_log(&self, prefix: SlotPrefix, from_seq: u64, max_bytes: usize) -> Result<Vec<LogEntry>, ApplyError> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(log_key(prefix, from_seq.max(1)).to_vec());
        ro.set_iterate_upper_bound(successor(prefix.bytes()));
        let mut iter = self.db.raw_iterator_cf_opt(&self.log_cf(), ro);
        iter.seek_to_first();
        let (mut out, mut bytes) = (Vec::new(), 0);
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            if k.len() != 16 {
                break;
            }
            let seq = u64::from_be_bytes(k[8..].try_into().expect("16-byte key"));
            let (offset, entry) = changelog::decode_stored(v)?;
            bytes += entry.len();
            out.push((LogPos { seq, offset }, entry.to_vec()));
            if bytes >= max_bytes {
                break;
            }
            iter.next();
        }
        iter.status()?;
        Ok(out)
    }

    /// The stored end offset of entry `seq` (`None`: not retained).
    pub fn log_offset_at(&self, prefix: SlotPrefix, seq: u64) -> Result<Option<u64>, ApplyError> {
        match self.db.get_cf(&self.log_cf(), log_key(prefix, seq))? {
            Some(v) => Ok(Some(changelog::decode_stored(&v)?.0)),
            None => Ok(None),
        }
    }

    /// Drops the oldest entries until the retained log is at most `max_bytes`. Returns how many
    /// entries were dropped. A replica that still needed them re-syncs in full.
    pub fn purge_log(&self, prefix: SlotPrefix, max_bytes: u64, state: &mut WriteState) -> Result<u64, ApplyError> {
        let head = state.head.pos();
        if head.offset.saturating_sub(state.log.base.offset) <= max_bytes {
            return Ok(0);
        }
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(log_key(prefix, state.log.base.seq + 1).to_vec());
        ro.set_iterate_upper_bound(successor(prefix.bytes()));
        let mut iter = self.db.raw_iterator_cf_opt(&self.log_cf(), ro);
        iter.seek_to_first();
        let mut cut = state.log.base;
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            let seq =
                u64::from_be_bytes(k.get(8..16).and_then(|s| s.try_into().ok()).ok_or(changelog::Corrupt("log key"))?);
            let (offset, _) = changelog::decode_stored(v)?;
            cut = LogPos { seq, offset };
            if head.offset - offset <= max_bytes {
                break;
            }
            iter.next();
        }
        iter.status()?;
        let dropped = cut.seq - state.log.base.seq;
        let meta = LogMeta { base: cut, ..state.log };
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(&self.log_cf(), log_key(prefix, 1), log_key(prefix, cut.seq + 1));
        batch.put_cf(&self.log_cf(), prefix.bytes(), meta.encode());
        self.write(batch)?;
        state.log = meta;
        Ok(dropped)
    }

    /// Empties a slot (data and log) before a full sync into it, and tells senders streaming
    /// from its old log to stop. The slot stays empty-at-position-0 until [`Store::finish_full_sync`].
    pub fn begin_full_sync(&self, prefix: SlotPrefix, state: &mut WriteState) -> Result<(), rocksdb::Error> {
        let (start, end) = prefix.range();
        let mut batch = WriteBatch::default();
        batch.delete_range(&start, &end);
        batch.delete_range_cf(&self.log_cf(), &start, &end);
        self.write(batch)?;
        self.flush_wal()?;
        state.log = LogMeta::default();
        state.head.replace(LogPos::default());
        Ok(())
    }

    /// Writes one chunk of a full sync. Unlogged and outside the WAL: the chunks become durable
    /// together, by the memtable flush in [`Store::flush_data`]; a crash before that
    /// restarts the full sync (the replica's role record says so).
    pub fn apply_chunk(&self, prefix: SlotPrefix, chunk: &[u8]) -> Result<u64, ApplyError> {
        let pairs = changelog::decode_pairs(chunk)?;
        let mut batch = WriteBatch::default();
        let ops: Vec<Op<'_>> = pairs.iter().map(|(k, v)| Op::Put(k, v)).collect();
        add_ops(prefix, &ops, &mut batch);
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        self.db.write_opt(batch, &wo)?;
        Ok(pairs.len() as u64)
    }

    /// Flushes the data memtables to SST files: what full-sync chunks wrote is then durable.
    pub fn flush_data(&self) -> Result<(), rocksdb::Error> {
        self.db.flush()
    }

    /// Starts the slot's log at the master's position once the chunks are durable
    /// ([`Store::flush_data`]).
    pub fn finish_full_sync(
        &self,
        prefix: SlotPrefix,
        meta: LogMeta,
        state: &mut WriteState,
    ) -> Result<(), rocksdb::Error> {
        self.db.put_cf(&self.log_cf(), prefix.bytes(), meta.encode())?;
        self.flush_wal()?;
        state.log = meta;
        state.head.replace(meta.base);
        Ok(())
    }

    /// Streams a consistent snapshot of a slot as chunks of key/value pairs (keys relative to the
    /// prefix) of about `chunk_bytes`. `start` receives the log position, bookkeeping and log
    /// epoch the snapshot corresponds to, taken under the slot's write lock; `send` returns false to stop.
    /// Blocking: run it on a blocking thread. Returns the number of records sent.
    pub fn stream_slot(
        &self,
        prefix: SlotPrefix,
        lock: &super::WriteLock,
        chunk_bytes: usize,
        start: impl FnOnce(LogPos, LogMeta, u64),
        mut send: impl FnMut(Vec<u8>) -> bool,
    ) -> Result<u64, rocksdb::Error> {
        let snapshot = {
            let state = lock.lock();
            let snapshot = self.db.snapshot();
            start(state.head.pos(), state.log, state.head.epoch());
            snapshot
        };
        let (lower, upper) = prefix.range();
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&snapshot);
        ro.set_iterate_lower_bound(lower);
        ro.set_iterate_upper_bound(upper);
        ro.fill_cache(false);
        let mut iter = self.db.raw_iterator_opt(ro);
        iter.seek_to_first();
        let (mut chunk, mut records) = (Vec::with_capacity(chunk_bytes + 4096), 0u64);
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            changelog::encode_pair(&mut chunk, &k[8..], v);
            records += 1;
            if chunk.len() >= chunk_bytes
                && !send(std::mem::replace(&mut chunk, Vec::with_capacity(chunk_bytes + 4096)))
            {
                return Ok(records);
            }
            iter.next();
        }
        iter.status()?;
        if !chunk.is_empty() {
            send(chunk);
        }
        Ok(records)
    }

    /// A digest of a slot's stored data (CRC-32 over every key and value, in order), the number
    /// of records, and the log position it corresponds to. Two copies at the same position have
    /// the same digest.
    pub fn slot_digest(
        &self,
        prefix: SlotPrefix,
        lock: &super::WriteLock,
    ) -> Result<(u32, u64, LogPos), rocksdb::Error> {
        let (snapshot, pos) = {
            let state = lock.lock();
            (self.db.snapshot(), state.head.pos())
        };
        let (lower, upper) = prefix.range();
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&snapshot);
        ro.set_iterate_lower_bound(lower);
        ro.set_iterate_upper_bound(upper);
        ro.fill_cache(false);
        let mut iter = self.db.raw_iterator_opt(ro);
        iter.seek_to_first();
        let (mut hasher, mut records) = (crc32fast::Hasher::new(), 0u64);
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            for part in [&k[8..], v] {
                hasher.update(&(part.len() as u32).to_be_bytes());
                hasher.update(part);
            }
            records += 1;
            iter.next();
        }
        iter.status()?;
        Ok((hasher.finalize(), records, pos))
    }
}
