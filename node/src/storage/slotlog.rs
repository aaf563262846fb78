//! The slot-level operations replication needs: committing a transaction (and keeping its entry
//! in the slot's backlog), applying a master's entry on a replica (with its durable position),
//! full-sync streaming and loading, and a digest to compare two copies.

use bytes::Bytes;
use rocksdb::{ReadOptions, WriteBatch};

use super::cache::SlotCache;
use super::changelog::{self, LogMeta, LogPos, Op};
use super::encoding::{ranges_overlap, successor, SlotPrefix, TAG_META};
use super::{ApplyError, Store, WriteState, CF_LOG};

/// A master slot's log as a clean shutdown saved it.
#[derive(Debug)]
pub struct SavedMaster {
    pub head: LogPos,
    pub meta: LogMeta,
    /// The position before the first entry.
    pub base: LogPos,
    pub entries: Vec<(LogPos, Bytes)>,
}

/// The key of a master slot's saved log in the log column family (a replica slot's position is
/// at the 8-byte prefix itself).
fn saved_master_key(prefix: SlotPrefix) -> [u8; 9] {
    let mut key = [b'M'; 9];
    key[..8].copy_from_slice(prefix.bytes());
    key
}

/// Whether a key relative to its slot prefix is a meta record (the ones the cache holds).
fn is_meta(relative: &[u8]) -> bool {
    relative.first() == Some(&TAG_META)
}

/// Brings a slot's cache in line with operations just written (in their order).
fn update_cache(prefix: SlotPrefix, ops: &[Op<'_>], cache: &SlotCache) {
    for op in ops {
        match *op {
            Op::Put(k, v) if is_meta(k) => cache.update(&prefix.absolute(k), Some(v)),
            Op::Delete(k) if is_meta(k) => cache.update(&prefix.absolute(k), None),
            // A range reaching meta records (FLUSHDB, a slot-wide delete), not a collection's.
            Op::DeleteRange(start, end) if ranges_overlap((start, end), (&[TAG_META], &[TAG_META + 1])) => {
                cache.clear()
            }
            _ => {}
        }
    }
}

/// Appends an entry's operations to `batch`, with this node's slot prefix in front of every key.
pub(super) fn add_ops(prefix: SlotPrefix, ops: &[Op<'_>], batch: &mut WriteBatch) {
    let full = |rel: &[u8]| prefix.absolute(rel);
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

    /// Writes one record of the log column family (through [`Store::write`], so a write stall
    /// is waited out off the async workers).
    fn log_put(&self, key: &[u8], value: &[u8]) -> Result<(), rocksdb::Error> {
        let mut batch = WriteBatch::default();
        batch.put_cf(&self.log_cf(), key, value);
        self.write(batch)
    }

    /// Applies a master's entry to a replica slot: the same operations under this node's prefix
    /// and, in the same batch, the replica's new position, so data and position never disagree
    /// after a crash. Kept in this slot's backlog for replicas of its own (chaining).
    pub fn apply_entry(
        &self,
        prefix: SlotPrefix,
        cache: &SlotCache,
        pos: LogPos,
        entry: Bytes,
        state: &mut WriteState,
    ) -> Result<(), ApplyError> {
        let expected = state.head.pos().seq + 1;
        if pos.seq != expected {
            return Err(ApplyError::Gap { expected, got: pos.seq });
        }
        let ops = changelog::decode_entry(&entry)?;
        let mut batch = WriteBatch::default();
        add_ops(prefix, &ops, &mut batch);
        batch.put_cf(&self.log_cf(), prefix.bytes(), changelog::encode_replica_state(pos, &state.log));
        let _writing = cache.writing();
        self.write(batch)?;
        update_cache(prefix, &ops, cache);
        state.backlog.push(pos, entry);
        state.head.advance(pos);
        Ok(())
    }

    /// A replica slot's persisted position and history (None: never synced).
    pub fn replica_state(&self, prefix: SlotPrefix) -> Result<Option<(LogPos, LogMeta)>, ApplyError> {
        match self.db.get_cf(&self.log_cf(), prefix.bytes())? {
            Some(raw) => Ok(Some(changelog::decode_replica_state(&raw)?)),
            None => Ok(None),
        }
    }

    /// At a clean shutdown, once every task has stopped (nothing writes after): a master
    /// slot's position, history and the newest `max_bytes` of its backlog (the caller syncs).
    /// Returns the bytes of entries saved.
    pub fn save_master(
        &self,
        prefix: SlotPrefix,
        state: &WriteState,
        max_bytes: usize,
    ) -> Result<usize, rocksdb::Error> {
        let head = state.head.pos();
        let mut kept: Vec<&(LogPos, Bytes)> = Vec::new();
        let mut bytes = 0;
        if state.backlog.is_logging() {
            for entry in state.backlog.entries().rev() {
                if bytes + entry.1.len() > max_bytes {
                    break;
                }
                bytes += entry.1.len();
                kept.push(entry);
            }
        }
        kept.reverse();
        // The position before the first entry kept: the base, or the entry skipped last.
        let base = match kept.first() {
            Some(first) if first.0.seq > state.backlog.base().seq + 1 => {
                let before = first.0.seq - 1;
                LogPos { seq: before, offset: state.backlog.offset_at(before).expect("retained") }
            }
            Some(_) => state.backlog.base(),
            None => head,
        };
        let mut out = Vec::with_capacity(64 + bytes + 20 * kept.len());
        out.extend_from_slice(&changelog::encode_replica_state(head, &state.log));
        for v in [base.seq, base.offset, kept.len() as u64] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        for (pos, entry) in kept {
            out.extend_from_slice(&pos.seq.to_be_bytes());
            out.extend_from_slice(&pos.offset.to_be_bytes());
            out.extend_from_slice(&(entry.len() as u64).to_be_bytes());
            out.extend_from_slice(entry);
        }
        self.log_put(&saved_master_key(prefix), &out)?;
        Ok(bytes)
    }

    /// At startup: a master slot's saved log (see [`Self::save_master`]). The caller drops
    /// them all once read ([`Self::drop_saved_masters`]).
    pub fn saved_master(&self, prefix: SlotPrefix) -> Result<Option<SavedMaster>, ApplyError> {
        let Some(raw) = self.db.get_cf(&self.log_cf(), saved_master_key(prefix))? else { return Ok(None) };
        let (head, meta) = changelog::decode_replica_state(&raw)?;
        let mut input = raw.get(40..).ok_or(changelog::Corrupt("saved master log"))?;
        let base = LogPos { seq: changelog::take_u64(&mut input)?, offset: changelog::take_u64(&mut input)? };
        let count = changelog::take_u64(&mut input)?;
        let mut entries = Vec::new();
        for _ in 0..count {
            let pos = LogPos { seq: changelog::take_u64(&mut input)?, offset: changelog::take_u64(&mut input)? };
            let len = changelog::take_u64(&mut input)? as usize;
            let entry = input.get(..len).ok_or(changelog::Corrupt("saved master log entry"))?;
            entries.push((pos, Bytes::copy_from_slice(entry)));
            input = &input[len..];
        }
        Ok(Some(SavedMaster { head, meta, base, entries }))
    }

    /// Deletes the saved logs of `prefixes`, in one synced write, before the node takes a
    /// write: a crash later must not bring back a position the slots have moved past.
    pub fn drop_saved_masters(&self, prefixes: &[SlotPrefix]) -> Result<(), rocksdb::Error> {
        if prefixes.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for prefix in prefixes {
            batch.delete_cf(&self.log_cf(), saved_master_key(*prefix));
        }
        self.write(batch)?;
        self.flush_wal()
    }

    /// Restores a replica slot's position and history at startup.
    pub fn resume_replica(&self, prefix: SlotPrefix, state: &mut WriteState) -> Result<(), ApplyError> {
        let (pos, meta) = self.replica_state(prefix)?.unwrap_or_default();
        state.log = meta;
        state.backlog.reset(pos);
        state.head.advance(pos);
        Ok(())
    }

    /// Forgets a slot's replica position (promotion): should it follow a master again, it
    /// starts from a full sync unless that master shares its history.
    pub fn clear_replica_state(&self, prefix: SlotPrefix) -> Result<(), rocksdb::Error> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(&self.log_cf(), prefix.bytes());
        self.write(batch)?;
        self.flush_wal()
    }

    /// Records a replica slot's history (adopted from its master) at its position, durably.
    pub fn set_replica_meta(
        &self,
        prefix: SlotPrefix,
        meta: LogMeta,
        state: &mut WriteState,
    ) -> Result<(), rocksdb::Error> {
        self.log_put(prefix.bytes(), &changelog::encode_replica_state(state.head.pos(), &meta))?;
        self.flush_wal()?;
        state.log = meta;
        Ok(())
    }

    /// Empties a slot before a full sync into it, and tells senders streaming from its old log
    /// to stop. The slot stays empty at position 0 until [`Store::finish_full_sync`].
    pub fn begin_full_sync(
        &self,
        prefix: SlotPrefix,
        cache: &SlotCache,
        state: &mut WriteState,
    ) -> Result<(), rocksdb::Error> {
        let (start, end) = prefix.range();
        let mut batch = WriteBatch::default();
        batch.delete_range(&start, &end);
        batch.delete_range_cf(&self.log_cf(), &start, &end);
        {
            let _writing = cache.writing();
            self.write(batch)?;
            cache.clear();
        }
        self.flush_wal()?;
        state.log = LogMeta::default();
        state.backlog.reset(LogPos::default());
        state.head.replace(LogPos::default());
        Ok(())
    }

    /// Writes one chunk of a full sync. Outside the WAL: the chunks become durable together, by
    /// the memtable flush of [`Store::flush_data`]; a crash before that restarts the full sync
    /// (the replica's role record says so).
    pub fn apply_chunk(&self, prefix: SlotPrefix, cache: &SlotCache, chunk: &[u8]) -> Result<u64, ApplyError> {
        let pairs = changelog::decode_pairs(chunk)?;
        let mut batch = WriteBatch::default();
        let ops: Vec<Op<'_>> = pairs.iter().map(|(k, v)| Op::Put(k, v)).collect();
        add_ops(prefix, &ops, &mut batch);
        let _writing = cache.writing();
        self.write_with(batch, &self.unlogged)?;
        // Forgotten rather than cached: a full sync would otherwise flood the cache.
        let metas: Vec<Vec<u8>> = pairs.iter().filter(|(k, _)| is_meta(k)).map(|(k, _)| prefix.absolute(k)).collect();
        cache.invalidate(metas.iter().map(Vec::as_slice));
        Ok(pairs.len() as u64)
    }

    /// Flushes the data memtables to SST files: what full-sync chunks wrote is then durable.
    pub fn flush_data(&self) -> Result<(), rocksdb::Error> {
        self.db.flush()
    }

    /// Starts the slot at the master's snapshot position once the chunks are durable
    /// ([`Store::flush_data`]).
    pub fn finish_full_sync(
        &self,
        prefix: SlotPrefix,
        pos: LogPos,
        meta: LogMeta,
        state: &mut WriteState,
    ) -> Result<(), rocksdb::Error> {
        self.log_put(prefix.bytes(), &changelog::encode_replica_state(pos, &meta))?;
        self.flush_wal()?;
        state.log = meta;
        state.backlog.reset(pos);
        state.head.replace(pos);
        Ok(())
    }

    /// Walks a consistent snapshot of a slot: `at_snapshot` runs under the slot's write lock at
    /// the instant the snapshot is taken (so it sees the matching log position), then `each`
    /// gets every record (key relative to the prefix) until it returns false. Uncached reads:
    /// a full walk must not evict the working set. Returns the number of records visited.
    fn walk_snapshot(
        &self,
        prefix: SlotPrefix,
        lock: &super::WriteLock,
        at_snapshot: impl FnOnce(&mut WriteState),
        mut each: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<u64, rocksdb::Error> {
        let snapshot = {
            let mut state = super::lock_state(lock);
            let snapshot = self.db.snapshot();
            at_snapshot(&mut state);
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
        let mut records = 0u64;
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            records += 1;
            if !each(&k[8..], v) {
                return Ok(records);
            }
            iter.next();
        }
        iter.status()?;
        Ok(records)
    }

    /// Streams a consistent snapshot of a slot as chunks of key/value pairs (keys relative to the
    /// prefix) of about `chunk_bytes`. `start` runs under the slot's write lock when the
    /// snapshot is taken (to read the position and history it matches, and to turn the slot's
    /// backlog on, so entries after the snapshot are kept); `send` returns false to stop.
    /// Blocking: run it on a blocking thread. Returns the number of records sent.
    pub fn stream_slot(
        &self,
        prefix: SlotPrefix,
        lock: &super::WriteLock,
        chunk_bytes: usize,
        start: impl FnOnce(&mut WriteState),
        mut send: impl FnMut(Vec<u8>) -> bool,
    ) -> Result<u64, rocksdb::Error> {
        let new_chunk = || Vec::with_capacity(chunk_bytes + 4096);
        let mut chunk = new_chunk();
        let mut open = true;
        let records = self.walk_snapshot(prefix, lock, start, |k, v| {
            changelog::encode_pair(&mut chunk, k, v);
            if chunk.len() >= chunk_bytes {
                open = send(std::mem::replace(&mut chunk, new_chunk()));
            }
            open
        })?;
        if open && !chunk.is_empty() {
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
        let mut pos = LogPos::default();
        let mut hasher = crc32fast::Hasher::new();
        let records = self.walk_snapshot(
            prefix,
            lock,
            |state| pos = state.head.pos(),
            |k, v| {
                for part in [k, v] {
                    hasher.update(&(part.len() as u32).to_be_bytes());
                    hasher.update(part);
                }
                true
            },
        )?;
        Ok((hasher.finalize(), records, pos))
    }
}
