//! A command's view of one slot: point reads that see the command's own pending writes, element
//! iteration, and one atomic commit.

use std::cell::RefCell;
use std::collections::HashMap;

use parking_lot::{lock_api::ArcMutexGuard, RawMutex};
use rocksdb::WriteBatch;

use super::cache::{Lookup, SlotCache};
use super::changelog::{self, ChangeSet};
use super::encoding::{self, Kind, Meta, MetaBody, SlotPrefix};
use super::{now_ms, Db, Store, WriteState};
use crate::error::{CmdError, CmdResult};

/// Collections up to this many elements are deleted element by element (point tombstones);
/// bigger ones with one range tombstone, which costs the same whatever the size.
const POINT_DELETE_LIMIT: u64 = 256;

/// The transactions of one command spanning several slots (MSET, DEL), committed together by
/// [`commit_group`] as one RocksDB write: all or nothing, across a crash too. Each keeps its
/// slot's write lock until then; the dispatcher runs the slots in ascending order, so two such
/// commands always lock in the same order and cannot deadlock (single-slot commands hold one
/// lock and never wait for another).
pub type Group<'a> = RefCell<Vec<Txn<'a>>>;

pub struct Txn<'a> {
    store: &'a Store,
    pub prefix: SlotPrefix,
    /// The slot's meta records in memory: read through, updated on commit.
    cache: &'a SlotCache,
    /// The command's clock: every expiry decision in one command uses the same instant.
    pub now_ms: u64,
    /// The writes so far, applied as one batch; created on the first write, so read-only
    /// commands never allocate one. Unused in a group, whose batch is built from the change sets.
    batch: Option<WriteBatch>,
    /// The same writes with keys relative to the slot prefix: the slot's log entry.
    changes: ChangeSet,
    /// Pending point writes (`None` = deleted), so a command reads what it wrote.
    overlay: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Pending range deletes: point reads inside them see nothing (unless written again).
    deleted_ranges: Vec<(Vec<u8>, Vec<u8>)>,
    /// Earliest expiry this transaction sets (u64::MAX: none), published to the slot on commit.
    earliest_expiry: u64,
    guard: Option<ArcMutexGuard<RawMutex, WriteState>>,
    /// Where [`Txn::commit`] leaves this transaction when it is part of a [`Group`].
    group: Option<&'a Group<'a>>,
}

impl<'a> Txn<'a> {
    pub(super) fn new(
        store: &'a Store,
        prefix: SlotPrefix,
        cache: &'a SlotCache,
        guard: Option<ArcMutexGuard<RawMutex, WriteState>>,
    ) -> Self {
        // Whether the slot logs cannot change while the write lock is held (it only changes
        // under that lock).
        let logging = guard.as_ref().is_some_and(|state| state.backlog.is_logging());
        Txn {
            store,
            prefix,
            cache,
            now_ms: now_ms(),
            batch: None,
            changes: ChangeSet::new(logging),
            overlay: HashMap::new(),
            deleted_ranges: Vec::new(),
            earliest_expiry: u64::MAX,
            guard,
            group: None,
        }
    }

    /// Makes this (not yet written) transaction part of `group`: its commit waits for the
    /// group's. Its change set is kept whole, since the group's batch is built from it.
    pub fn in_group(mut self, group: &'a Group<'a>) -> Self {
        debug_assert!(self.changes.is_empty());
        self.changes = ChangeSet::new(true);
        self.group = Some(group);
        self
    }

    pub fn get(&self, key: &[u8]) -> CmdResult<Option<Vec<u8>>> {
        if let Some(pending) = self.overlay.get(key) {
            return Ok(pending.clone());
        }
        if self
            .deleted_ranges
            .iter()
            .any(|(start, end)| key >= start.as_slice() && (end.is_empty() || key < end.as_slice()))
        {
            return Ok(None);
        }
        if !is_meta_key(key) {
            return Ok(self.store.get(key)?);
        }
        match self.cache.lookup(key) {
            Lookup::Hit(value) => Ok(value),
            Lookup::Miss(ticket) => {
                let value = self.store.get(key)?;
                self.cache.fill(key, value.as_deref(), ticket);
                Ok(value)
            }
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        if let Some(batch) = self.batch() {
            batch.put(&key, &value);
        }
        self.changes.put(self.relative(&key), &value);
        self.overlay.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        if let Some(batch) = self.batch() {
            batch.delete(&key);
        }
        self.changes.delete(self.relative(&key));
        self.overlay.insert(key, None);
    }

    /// This transaction's own batch (None in a group).
    fn batch(&mut self) -> Option<&mut WriteBatch> {
        self.group.is_none().then(|| self.batch.get_or_insert_with(WriteBatch::default))
    }

    /// A key of this slot without the slot prefix, as the change log stores it.
    fn relative<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        debug_assert!(self.guard.is_some(), "write outside a locked transaction");
        debug_assert!(key.starts_with(self.prefix.bytes()), "key outside the transaction's slot");
        &key[8..]
    }

    /// Marks the slot's next expiry as unknown, so the background expirer looks again.
    pub fn reset_next_expiry(&mut self) {
        if let Some(state) = self.guard.as_mut() {
            state.next_expiry = 0;
        }
    }

    /// Whether this transaction has written anything.
    pub fn is_dirty(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Writes everything atomically, with its change-log entry (to the WAL buffer before it
    /// returns; durable at the connection's next group commit).
    /// In a group, the writes are made by [`commit_group`] instead.
    pub fn commit(mut self) -> CmdResult<bool> {
        let dirty = self.is_dirty();
        if dirty && self.guard.is_none() {
            return Err(CmdError::err("write outside a locked transaction"));
        }
        if let Some(group) = self.group {
            // Kept even when it wrote nothing: its lock stays held until the group's batch is in,
            // so what it read (a key DEL found missing) still holds when the others' writes land.
            group.borrow_mut().push(self);
            return Ok(dirty);
        }
        if !dirty {
            return Ok(false);
        }
        let batch = self.batch.take().expect("a transaction with changes has a batch");
        let _writing = self.cache.writing();
        self.store.write(batch)?;
        self.written();
        Ok(true)
    }

    /// What follows the RocksDB write, still under the slot's lock: the slot's log entry, the
    /// cache (see `cache`), the slot's commit count and next expiry.
    fn written(mut self) {
        let state = self.guard.as_mut().expect("checked by commit");
        state.log_entry(std::mem::take(&mut self.changes));
        state.commits += 1;
        if self.earliest_expiry < state.next_expiry {
            state.next_expiry = self.earliest_expiry;
            state.expiry_gen += 1;
        }
        if !self.deleted_ranges.is_empty() {
            let (meta_start, meta_end) = self.prefix.tag_range(encoding::TAG_META);
            if self.deleted_ranges.iter().any(|(s, e)| encoding::ranges_overlap((s, e), (&meta_start, &meta_end))) {
                self.cache.clear();
            }
        }
        for (key, value) in self.overlay.iter().filter(|(key, _)| is_meta_key(key)) {
            self.cache.update(key, value.as_deref());
        }
    }

    // ---- keys ----

    /// The live meta record of `key` (an expired key reads as absent).
    pub fn meta(&self, key: &[u8]) -> CmdResult<Option<Meta>> {
        let Some(raw) = self.get(&self.prefix.meta_key(key))? else { return Ok(None) };
        let meta = Meta::decode(&raw).ok_or_else(|| CmdError::err("corrupt key record"))?;
        Ok((!meta.is_expired(self.now_ms)).then_some(meta))
    }

    /// The live meta of `key`, which must be of `kind` if it exists.
    pub fn typed_meta(&self, key: &[u8], kind: Kind) -> CmdResult<Option<Meta>> {
        match self.meta(key)? {
            Some(meta) if meta.kind != kind => Err(CmdError::WrongType),
            other => Ok(other),
        }
    }

    /// For a writing command: like [`Txn::meta`], but an expired key's leftovers are removed in
    /// this transaction, so the command starts from a clean key.
    pub fn meta_for_write(&mut self, key: &[u8]) -> CmdResult<Option<Meta>> {
        let Some(raw) = self.get(&self.prefix.meta_key(key))? else { return Ok(None) };
        let meta = Meta::decode(&raw).ok_or_else(|| CmdError::err("corrupt key record"))?;
        if meta.is_expired(self.now_ms) {
            self.delete_key(key, &meta)?;
            return Ok(None);
        }
        Ok(Some(meta))
    }

    pub fn typed_meta_for_write(&mut self, key: &[u8], kind: Kind) -> CmdResult<Option<Meta>> {
        match self.meta_for_write(key)? {
            Some(meta) if meta.kind != kind => Err(CmdError::WrongType),
            other => Ok(other),
        }
    }

    /// Stores `meta` for `key`, keeping the expiry index in step. `old_expire` is the expiry of
    /// the record being replaced (0 for none or a new key).
    pub fn put_meta(&mut self, key: &[u8], meta: &Meta, old_expire: u64) {
        if old_expire != meta.expire_at {
            if old_expire != 0 {
                self.delete(self.prefix.expire_key(old_expire, key));
            }
            if meta.expire_at != 0 {
                self.put(self.prefix.expire_key(meta.expire_at, key), Vec::new());
                self.earliest_expiry = self.earliest_expiry.min(meta.expire_at);
            }
        }
        self.put(self.prefix.meta_key(key), meta.encode());
    }

    /// Removes a key, its elements and its expiry index entry.
    pub fn delete_key(&mut self, key: &[u8], meta: &Meta) -> CmdResult<()> {
        self.delete(self.prefix.meta_key(key));
        if meta.expire_at != 0 {
            self.delete(self.prefix.expire_key(meta.expire_at, key));
        }
        match meta.body {
            MetaBody::Value(_) => {}
            MetaBody::List { head, tail, .. } if tail - head <= POINT_DELETE_LIMIT => {
                for index in head..tail {
                    self.delete(self.prefix.data_key(key, &index.to_be_bytes()));
                }
            }
            _ if meta.count() <= POINT_DELETE_LIMIT => {
                let elements: Vec<Vec<u8>> = self.elements(key, &[], &[], false).map(|(k, _)| k).collect();
                for suffix in elements {
                    self.delete(self.prefix.data_key(key, &suffix));
                }
            }
            _ => {
                let start = self.prefix.data_prefix(key);
                let end = encoding::successor(&start);
                self.delete_range(start, end);
            }
        }
        Ok(())
    }

    /// Deletes everything stored in the slot (FLUSHDB), as one range tombstone.
    pub fn clear_slot(&mut self) {
        let (start, end) = self.prefix.range();
        self.delete_range(start, end);
    }

    /// Deletes `[start, end)`; later point reads in this transaction see it deleted.
    fn delete_range(&mut self, start: Vec<u8>, end: Vec<u8>) {
        // The slot's own end (the next slot's prefix) is logged as "to the end of the slot".
        let rel_end: &[u8] = if end.starts_with(self.prefix.bytes()) { &end[8..] } else { &[] };
        if let Some(batch) = self.batch() {
            batch.delete_range(&start, &end);
        }
        self.changes.delete_range(self.relative(&start), rel_end);
        self.overlay
            .retain(|k, _| !(k.as_slice() >= start.as_slice() && (end.is_empty() || k.as_slice() < end.as_slice())));
        self.deleted_ranges.push((start, end));
    }

    /// The slot's live keys with their meta records, in key order (stored state only).
    pub fn metas(&self) -> impl Iterator<Item = (Vec<u8>, Meta)> + 'a {
        self.metas_from(&[])
    }

    /// Like [`Txn::metas`], starting at the first key `>= from`.
    pub fn metas_from(&self, from: &[u8]) -> impl Iterator<Item = (Vec<u8>, Meta)> + 'a {
        let (mut start, end) = self.prefix.tag_range(encoding::TAG_META);
        start.extend_from_slice(from);
        let mut iter = self.store.raw_iter(&start, &end);
        iter.seek_to_first();
        let now = self.now_ms;
        std::iter::from_fn(move || {
            while iter.valid() {
                let item = match (iter.key().and_then(encoding::decode_meta_key), iter.value().and_then(Meta::decode)) {
                    (Some(key), Some(meta)) if !meta.is_expired(now) => Some((key.to_vec(), meta)),
                    _ => None,
                };
                iter.next();
                if item.is_some() {
                    return item;
                }
            }
            None
        })
    }

    // ---- collection elements ----

    pub fn elem(&self, key: &[u8], suffix: &[u8]) -> CmdResult<Option<Vec<u8>>> {
        self.get(&self.prefix.data_key(key, suffix))
    }

    pub fn put_elem(&mut self, key: &[u8], suffix: &[u8], value: Vec<u8>) {
        self.put(self.prefix.data_key(key, suffix), value);
    }

    pub fn delete_elem(&mut self, key: &[u8], suffix: &[u8]) {
        self.delete(self.prefix.data_key(key, suffix));
    }

    /// Iterates a collection's stored elements (not this transaction's pending writes) whose
    /// suffix is in `[from, to)`, as `(suffix, value)`; empty bounds mean unbounded.
    pub fn elements(&self, key: &[u8], from: &[u8], to: &[u8], reverse: bool) -> ElemIter<'a> {
        let base = self.prefix.data_prefix(key);
        let mut start = base.clone();
        start.extend_from_slice(from);
        let end = if to.is_empty() {
            encoding::successor(&base)
        } else {
            let mut end = base.clone();
            end.extend_from_slice(to);
            end
        };
        let mut iter = self.store.raw_iter(&start, &end);
        if reverse {
            iter.seek_to_last();
        } else {
            iter.seek_to_first();
        }
        ElemIter { iter, skip: base.len(), reverse }
    }
}

/// Writes a group's transactions as one RocksDB batch, then finishes each (log entry, cache),
/// releasing their locks. The transactions that wrote nothing are released last: their slots stay locked until the
/// batch is in (two-phase locking: a cross-slot DEL that found a key missing must not let an
/// MSET write it before the DEL's own deletes land).
pub fn commit_group(store: &Store, txns: Vec<Txn<'_>>) -> CmdResult<()> {
    let (dirty, _clean): (Vec<Txn<'_>>, Vec<Txn<'_>>) = txns.into_iter().partition(Txn::is_dirty);
    if dirty.is_empty() {
        // Nothing changed (a DEL of missing keys): no write, and no WAL flush before the reply.
        return Ok(());
    }
    let mut batch = WriteBatch::default();
    for txn in &dirty {
        let ops = changelog::decode_entry(txn.changes.bytes()).map_err(|e| CmdError::err(e.0))?;
        super::slotlog::add_ops(txn.prefix, &ops, &mut batch);
    }
    let _writing: Vec<_> = dirty.iter().map(|txn| txn.cache.writing()).collect();
    store.write(batch)?;
    for txn in dirty {
        txn.written();
    }
    Ok(())
}

/// Whether a stored key is a meta record (the ones the cache holds).
fn is_meta_key(key: &[u8]) -> bool {
    encoding::decode_meta_key(key).is_some()
}

/// A collection element as iterated: `(suffix, value)`.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Iterator over a collection's elements, yielding `(suffix, value)`.
pub struct ElemIter<'a> {
    iter: rocksdb::DBRawIteratorWithThreadMode<'a, Db>,
    skip: usize,
    reverse: bool,
}

impl Iterator for ElemIter<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.iter.valid() {
            return None;
        }
        let item = (self.iter.key()?[self.skip..].to_vec(), self.iter.value()?.to_vec());
        if self.reverse {
            self.iter.prev();
        } else {
            self.iter.next();
        }
        Some(item)
    }
}
