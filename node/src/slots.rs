//! Tables and the slots this node owns: the routing truth for every keyed command.
//!
//! The topology is an immutable snapshot swapped atomically on change (addslots, delslots,
//! addtable, deltable), so a command reads it without locks. Changes are serialised by one admin
//! lock (Pika's global "busy" flag) and persisted, synced, in the node column family before they
//! take effect, so `kill -9` never loses a slot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};

use tokio_util::sync::CancellationToken;

use crate::config::InstanceMode;
use crate::error::{CmdError, CmdResult};
use crate::replication::{Downstream, LinkState};
use crate::storage::cache::{CacheBudget, SlotCache};
use crate::storage::{LogHead, LogMeta, SlotPrefix, Store, Txn, WriteLock, WriteState};
use common::protocol::SlotError;

/// One owned slot.
#[derive(Debug)]
pub struct Slot {
    pub table: u32,
    pub id: u32,
    pub prefix: SlotPrefix,
    /// Serialises writes to this slot (see `storage`).
    pub lock: WriteLock,
    /// The slot's meta records in memory (see `storage::cache`).
    pub cache: SlotCache,
    pub role: RwLock<Role>,
    /// A fenced master slot refuses writes with a retryable error (cutover).
    pub fenced: AtomicBool,
    /// Cleared when the slot is deleted; a writer that raced with delslots sees it under the lock.
    pub alive: AtomicBool,
    /// Replica side: the link to the master (a [`LinkState`]), and what stops its task.
    pub link: AtomicU8,
    pub upstream: Mutex<Option<CancellationToken>>,
    /// Replica side: whether its master counts this slot's acknowledgements for replicated
    /// acknowledgement (false for a migration's target: it is not one of the group's replicas,
    /// and a failover of the group would not look at its copy).
    pub counted: AtomicBool,
    /// Master side: the replicas attached to this slot.
    pub downstream: Mutex<Vec<Downstream>>,
    /// The slot's log position, readable without the write lock (the same as the lock's).
    pub head: Arc<LogHead>,
    /// Woken whenever a replica acknowledges a position (replicated acknowledgement, WAIT).
    pub acks: tokio::sync::Notify,
}

/// A slot's replication role: a writable master (which may have replicas), or a read-only replica
/// of `master` (`host:port`), which may itself have replicas (chaining).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica { master: String },
}

impl Slot {
    fn new(table: u32, id: u32, fenced: bool, cache: &Arc<CacheBudget>, cache_shards: usize) -> Slot {
        let state = WriteState {
            log: LogMeta { history: crate::replication::new_history(), ..Default::default() },
            ..Default::default()
        };
        Slot {
            head: state.head.clone(),
            acks: tokio::sync::Notify::new(),
            table,
            id,
            prefix: SlotPrefix::new(table, id),
            // Every slot starts as a master with a history of its own; a replica slot's is
            // restored from its persisted position (replication::restore).
            lock: Arc::new(Mutex::new(state)),
            cache: SlotCache::new(cache.clone(), cache_shards),
            role: RwLock::new(Role::Master),
            fenced: AtomicBool::new(fenced),
            alive: AtomicBool::new(true),
            link: AtomicU8::new(LinkState::NoConnect as u8),
            upstream: Mutex::new(None),
            counted: AtomicBool::new(true),
            downstream: Mutex::new(Vec::new()),
        }
    }

    pub fn link_state(&self) -> LinkState {
        LinkState::from_u8(self.link.load(Ordering::Acquire))
    }

    pub fn set_link(&self, state: LinkState) {
        self.link.store(state as u8, Ordering::Release);
    }

    pub fn master_addr(&self) -> Option<String> {
        match &*self.role.read() {
            Role::Replica { master } => Some(master.clone()),
            Role::Master => None,
        }
    }

    pub fn is_replica(&self) -> bool {
        matches!(*self.role.read(), Role::Replica { .. })
    }

    /// The slot's write state, under its write lock, waited for off the async workers when a
    /// writer holds it long ([`crate::storage::lock_state`]).
    pub fn state(&self) -> parking_lot::MutexGuard<'_, WriteState> {
        crate::storage::lock_state(&self.lock)
    }

    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// A transaction holding this slot's write lock, with ownership and role judged under it: a
    /// delslots, role change or fence that raced with the write wins (a fence waits for the
    /// lock, so a check made before taking it could let a write through after the fence).
    /// `PartitionNotFound` for a deleted slot, else the write refusal.
    pub fn write_txn<'a>(&'a self, store: &'a Store) -> CmdResult<Txn<'a>> {
        let txn = store.txn(self.prefix, &self.cache, Some(&self.lock));
        if !self.alive.load(Ordering::Acquire) {
            return Err(CmdError::PartitionNotFound);
        }
        if let Some(err) = self.write_refusal().or_else(|| crate::durability::refusal(self)) {
            return Err(err);
        }
        Ok(txn)
    }

    /// The error a write to this slot gets, if any.
    pub fn write_refusal(&self) -> Option<CmdError> {
        if self.is_replica() {
            Some(CmdError::ReadOnly)
        } else if self.is_fenced() {
            Some(CmdError::Fenced(self.id))
        } else if crate::lease::expired() {
            Some(CmdError::LeaseExpired(self.id))
        } else {
            None
        }
    }
}

/// Query counters of a table, for `pkcluster info table`.
#[derive(Debug, Default)]
pub struct TableStats {
    pub commands: AtomicU64,
    pub writes: AtomicU64,
    /// Per-second rates, sampled once a second.
    pub qps: AtomicU64,
    pub write_qps: AtomicU64,
    last: Mutex<(u64, u64)>,
}

impl TableStats {
    /// Turns the counters into per-second rates; called once a second.
    pub fn sample(&self) {
        let (commands, writes) = (self.commands.load(Ordering::Relaxed), self.writes.load(Ordering::Relaxed));
        let mut last = self.last.lock();
        self.qps.store(commands - last.0, Ordering::Relaxed);
        self.write_qps.store(writes - last.1, Ordering::Relaxed);
        *last = (commands, writes);
    }
}

#[derive(Debug)]
pub struct Table {
    pub id: u32,
    pub slot_count: u32,
    slots: Vec<Option<Arc<Slot>>>,
    pub stats: Arc<TableStats>,
}

impl Table {
    pub fn name(&self) -> String {
        format!("db{}", self.id)
    }

    pub fn slot(&self, id: u32) -> Option<&Arc<Slot>> {
        self.slots.get(id as usize)?.as_ref()
    }

    /// The slot a key maps to in this table (owned or not).
    pub fn slot_of(&self, key: &[u8]) -> u32 {
        if self.slot_count == 1 {
            0
        } else {
            common::slot::key_slot(key, self.slot_count)
        }
    }

    pub fn owned(&self) -> impl Iterator<Item = &Arc<Slot>> {
        self.slots.iter().flatten()
    }

    pub fn owned_ids(&self) -> Vec<u32> {
        self.owned().map(|s| s.id).collect()
    }
}

/// All tables at one instant.
#[derive(Debug, Default)]
pub struct Topology {
    pub tables: BTreeMap<u32, Arc<Table>>,
    /// The first table: where new connections start and what SLOTS* commands use.
    pub default_table: u32,
}

impl Topology {
    pub fn table(&self, id: u32) -> Option<&Arc<Table>> {
        self.tables.get(&id)
    }

    pub fn default(&self) -> Option<&Arc<Table>> {
        self.tables.get(&self.default_table)
    }
}

pub struct Slots {
    pub mode: InstanceMode,
    current: ArcSwap<Topology>,
    admin: Mutex<()>,
    store: Arc<Store>,
    /// `start-fenced`: slots start fenced, at start and when `addslots` creates them, so that
    /// nothing accepts writes for a slot before the operator decides it should.
    fenced: bool,
}

const TABLES_RECORD: &str = "tables";

impl Slots {
    /// Loads the persisted topology, or creates the first one: in sharding mode table db0 with
    /// `default_slot_num` slots and none owned (Pika's first start); in classic mode `databases`
    /// tables of one slot each, all owned.
    pub fn open(
        store: Arc<Store>,
        mode: InstanceMode,
        default_slot_num: u32,
        databases: u32,
        fenced: bool,
    ) -> CmdResult<Slots> {
        let topology = match mode {
            InstanceMode::Classic => {
                let tables = (0..databases)
                    .map(|id| (id, Arc::new(build_table(id, 1, &[0], None, false, store.cache()))))
                    .collect();
                Topology { tables, default_table: 0 }
            }
            InstanceMode::Sharding => match store.node_get(TABLES_RECORD)? {
                Some(raw) => decode_topology(&String::from_utf8_lossy(&raw), fenced, store.cache())
                    .ok_or_else(|| CmdError::err("corrupt tables record in the node column family"))?,
                None => {
                    let t = Topology {
                        tables: BTreeMap::from([(
                            0,
                            Arc::new(build_table(0, default_slot_num, &[], None, false, store.cache())),
                        )]),
                        default_table: 0,
                    };
                    store.node_put(TABLES_RECORD, encode_topology(&t).as_bytes())?;
                    t
                }
            },
        };
        Ok(Slots { mode, current: ArcSwap::from_pointee(topology), admin: Mutex::new(()), store, fenced })
    }

    pub fn snapshot(&self) -> Arc<Topology> {
        self.current.load_full()
    }

    /// Runs a topology change under the admin lock: `change` edits a copy of the table map;
    /// the result is persisted, then published.
    fn change<T>(&self, change: impl FnOnce(&mut BTreeMap<u32, Arc<Table>>) -> CmdResult<T>) -> CmdResult<T> {
        let Some(_busy) = self.admin.try_lock() else {
            return Err(CmdError::msg("ERR Slot in syncing or a change operation is under way, retry later"));
        };
        let old = self.snapshot();
        let mut tables = old.tables.clone();
        let out = change(&mut tables)?;
        let default_table = tables.keys().next().copied().unwrap_or(0);
        let next = Topology { tables, default_table };
        self.store.node_put(TABLES_RECORD, encode_topology(&next).as_bytes())?;
        self.current.store(Arc::new(next));
        Ok(out)
    }

    pub fn add_slots(&self, table: u32, ids: &[u32]) -> CmdResult<()> {
        self.change(|tables| {
            let t = tables.get(&table).ok_or_else(|| CmdError::msg("ERR Internal error: table not found!"))?;
            for &id in ids {
                if id >= t.slot_count {
                    return Err(CmdError::msg("ERR Corruption: partition index out of range"));
                }
                if t.slot(id).is_some() {
                    return Err(CmdError::msg(SlotError::Exists(id).text()));
                }
            }
            let mut owned = t.owned_ids();
            owned.extend_from_slice(ids);
            let rebuilt = build_table(table, t.slot_count, &owned, Some(t), self.fenced, self.store.cache());
            for &id in ids {
                // A new slot is a master, whatever a crashed delslots may have left behind.
                crate::replication::save_role(&self.store, rebuilt.slot(id).expect("just added"), None)?;
            }
            tables.insert(table, Arc::new(rebuilt));
            Ok(())
        })
    }

    /// Removes slots and drops their data. Refused while a slot replicates either way. Returns
    /// the removed slots.
    pub fn del_slots(
        &self,
        table: u32,
        ids: &[u32],
        busy: impl Fn(&Slot) -> Option<CmdError>,
    ) -> CmdResult<Vec<Arc<Slot>>> {
        let removed = self.change(|tables| {
            let t = tables.get(&table).ok_or_else(|| CmdError::msg("ERR Internal error: default table not found!"))?;
            let mut removed = Vec::new();
            for &id in ids {
                let slot = t.slot(id).ok_or_else(|| CmdError::msg(SlotError::NotExists(id).text()))?;
                if let Some(err) = busy(slot) {
                    return Err(err);
                }
                removed.push(slot.clone());
            }
            let keep: Vec<u32> = t.owned_ids().into_iter().filter(|id| !ids.contains(id)).collect();
            let rebuilt = build_table(table, t.slot_count, &keep, Some(t), false, self.store.cache());
            tables.insert(table, Arc::new(rebuilt));
            Ok(removed)
        })?;
        self.drop_data(&removed)?;
        Ok(removed)
    }

    /// Drops the data of slots no longer in the topology. Each slot's write lock is taken first,
    /// so a write that already passed routing finishes before the range is dropped, and one that
    /// has not yet locked sees `alive == false`.
    fn drop_data(&self, slots: &[Arc<Slot>]) -> CmdResult<()> {
        for slot in slots {
            let _writes = slot.state();
            slot.alive.store(false, Ordering::Release);
            let _writing = slot.cache.writing();
            self.store.drop_slot(slot.prefix)?;
            slot.cache.clear();
        }
        Ok(())
    }

    pub fn add_table(&self, id: u32, slot_count: u32) -> CmdResult<()> {
        self.change(|tables| {
            if tables.contains_key(&id) {
                return Err(CmdError::msg("ERR Internal error: table already exist!"));
            }
            tables.insert(id, Arc::new(build_table(id, slot_count, &[], None, false, self.store.cache())));
            Ok(())
        })
    }

    pub fn del_table(&self, id: u32, busy: impl Fn(&Slot) -> Option<CmdError>) -> CmdResult<Vec<Arc<Slot>>> {
        let removed = self.change(|tables| {
            let t = tables.get(&id).ok_or_else(|| CmdError::msg("ERR Internal error: table not found!"))?;
            if t.owned().any(|s| busy(s).is_some()) {
                return Err(CmdError::msg("ERR Corruption: table have slots!"));
            }
            let removed: Vec<Arc<Slot>> = t.owned().cloned().collect();
            tables.remove(&id);
            Ok(removed)
        })?;
        self.drop_data(&removed)?;
        Ok(removed)
    }
}

/// Builds a table owning `owned`, reusing the slot objects (locks, roles) and stats of `previous`.
fn build_table(
    id: u32,
    slot_count: u32,
    owned: &[u32],
    previous: Option<&Table>,
    fenced: bool,
    cache: &Arc<CacheBudget>,
) -> Table {
    let mut slots: Vec<Option<Arc<Slot>>> = vec![None; slot_count as usize];
    // A table of one slot (classic mode) takes every read on one cache: split it.
    let cache_shards = if slot_count == 1 { 16 } else { 1 };
    for &sid in owned {
        let existing = previous.and_then(|p| p.slot(sid)).cloned();
        slots[sid as usize] =
            Some(existing.unwrap_or_else(|| Arc::new(Slot::new(id, sid, fenced, cache, cache_shards))));
    }
    let stats = previous.map(|p| p.stats.clone()).unwrap_or_default();
    Table { id, slot_count, slots, stats }
}

/// One line per table, in table order: `<id> <slot_count> <owned slots in range syntax>`.
fn encode_topology(t: &Topology) -> String {
    t.tables
        .values()
        .map(|table| {
            format!("{} {} {}\n", table.id, table.slot_count, common::slotset::format_slots(&table.owned_ids()))
        })
        .collect()
}

fn decode_topology(text: &str, fenced: bool, cache: &Arc<CacheBudget>) -> Option<Topology> {
    let mut tables = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.splitn(3, ' ');
        let id: u32 = parts.next()?.parse().ok()?;
        let count: u32 = parts.next()?.parse().ok()?;
        let owned = common::slotset::parse_slots(parts.next().unwrap_or("").trim()).ok()?;
        if owned.iter().any(|&s| s >= count) {
            return None;
        }
        tables.insert(id, Arc::new(build_table(id, count, &owned, None, fenced, cache)));
    }
    let default_table = tables.keys().next().copied().unwrap_or(0);
    Some(Topology { tables, default_table })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_record_round_trips() {
        let budget = CacheBudget::new(0);
        let mut tables = BTreeMap::new();
        tables.insert(0, Arc::new(build_table(0, 1024, &[0, 1, 2, 7], None, false, &budget)));
        tables.insert(3, Arc::new(build_table(3, 16, &[], None, false, &budget)));
        let t = Topology { tables, default_table: 0 };
        let text = encode_topology(&t);
        assert_eq!(text, "0 1024 0-2,7\n3 16 \n");
        let back = decode_topology(&text, true, &budget).unwrap();
        assert_eq!(back.table(0).unwrap().owned_ids(), vec![0, 1, 2, 7]);
        assert!(back.table(0).unwrap().slot(7).unwrap().is_fenced());
        assert_eq!(back.table(3).unwrap().slot_count, 16);
        assert!(decode_topology("0 4 9\n", false, &budget).is_none(), "slot beyond count");
    }
}
