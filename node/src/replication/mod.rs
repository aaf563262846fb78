//! Per-slot master/replica replication between pika-nodes (docs/compatibility.md, "Replication
//! states"; our protocol).
//!
//! A replica slot runs one task ([`replica`]) that connects to the master's client port and asks
//! for the slot from its log position; the master ([`master`]) answers with either the log from
//! there or a consistent snapshot followed by the log, and keeps, per attached replica, the
//! acknowledged position (the lag `pkcluster info slot` shows). Frames: [`protocol`]. The log
//! itself lives in storage (`storage::slotlog`), written in the same batch as the data.
//!
//! Roles persist in the node column family (`role:<table>:<slot>` = `<host:port> <full|inc>`), so
//! a restarted replica comes back read-only, following the same master; `full` marks a full sync
//! in progress, which a restart begins again.

pub mod master;
pub mod protocol;
pub mod replica;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{CmdError, CmdResult};
use crate::server::Server;
use crate::slots::{Role, Slot};
use crate::storage::{LogPos, Store};

pub use common::protocol::{LinkState, SyncStatus};

/// A replica attached to a master slot.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// `ip:port` of the replica's client port, as it identified itself.
    pub addr: String,
    /// Distinguishes a reconnected replica's new connection from its old one.
    pub session: u64,
    pub status: SyncStatus,
    /// The last position the replica acknowledged as durable.
    pub acked: LogPos,
    /// Its acknowledgements count for replicated acknowledgement (a group replica, not a
    /// migration's target).
    pub counted: bool,
}

static SESSIONS: AtomicU64 = AtomicU64::new(1);

/// Attaches a replica to a slot (replacing an older connection of the same replica).
pub fn attach(slot: &Slot, addr: &str, acked: LogPos, counted: bool) -> u64 {
    let session = SESSIONS.fetch_add(1, Ordering::Relaxed);
    let mut list = slot.downstream.lock();
    list.retain(|d| d.addr != addr);
    list.push(Downstream { addr: addr.to_string(), session, status: SyncStatus::NotSync, acked, counted });
    session
}

/// Detaches a replica's connection, unless a newer one replaced it. When the last one leaves,
/// the slot keeps its backlog for a while, for a reconnect.
pub fn detach(slot: &Slot, session: u64) {
    let empty = {
        let mut list = slot.downstream.lock();
        list.retain(|d| d.session != session);
        list.is_empty()
    };
    if empty {
        slot.state().backlog.detached(std::time::Instant::now());
    }
}

/// Updates an attached replica's progress; false when the session is no longer attached.
pub fn record(slot: &Slot, session: u64, status: SyncStatus, acked: LogPos) -> bool {
    let found = {
        let mut list = slot.downstream.lock();
        match list.iter_mut().find(|d| d.session == session) {
            Some(d) => {
                d.status = status;
                d.acked = acked;
                true
            }
            None => false,
        }
    };
    slot.acks.notify_waiters();
    found
}

/// Whether `addr` (`host:port`) is a replica attached to this slot (codis's migration probe).
pub fn is_attached(slot: &Slot, addr: &str) -> bool {
    slot.downstream.lock().iter().any(|d| d.addr.eq_ignore_ascii_case(addr))
}

/// A new random history id (never 0, which means "none").
pub fn new_history() -> u64 {
    rand::random::<u64>() | 1
}

fn role_key(slot: &Slot) -> String {
    format!("role:{}:{}", slot.table, slot.id)
}

/// Persists a slot's role: `Some((master, full_sync_pending))` for a replica, `None` for a master;
/// a migration's target is marked `noack` (`Slot::counted`).
pub fn save_role(store: &Store, slot: &Slot, replica_of: Option<(&str, bool)>) -> CmdResult<()> {
    match replica_of {
        Some((master, full)) => {
            let noack = if slot.counted.load(Ordering::Acquire) { "" } else { " noack" };
            let value = format!("{master} {}{noack}", if full { "full" } else { "inc" });
            store.node_put(&role_key(slot), value.as_bytes())?;
        }
        // Most slots never had a role record: skip the synced delete for them.
        None if store.node_get(&role_key(slot))?.is_some() => store.node_delete(&role_key(slot))?,
        None => {}
    }
    Ok(())
}

/// The persisted role of a slot: `(master, full sync pending, counted)` for a replica.
fn load_role(store: &Store, slot: &Slot) -> CmdResult<Option<(String, bool, bool)>> {
    let Some(raw) = store.node_get(&role_key(slot))? else { return Ok(None) };
    let text = String::from_utf8_lossy(&raw);
    let mut words = text.split(' ');
    let master = words.next().unwrap_or_default().to_string();
    let full = words.next() != Some("inc");
    Ok(Some((master, full, words.next() != Some("noack"))))
}

/// Backlog bytes a clean shutdown saves over all master slots (the newest entries of each slot
/// up to `slot-log-size`, while this lasts; a slot beyond it saves its position alone, which
/// still lets replicas at its head continue).
const SAVE_BUDGET: usize = 256 << 20;

/// At a clean shutdown, once nothing runs any more: every master slot's position, history and
/// recent backlog, saved (`Store::save_master`) so that its replicas continue incrementally
/// from the restarted node. After a crash there is nothing saved: they re-sync in full.
pub fn save_masters(server: &Server) {
    let per_slot = server.config.read().slot_log_size as usize;
    let mut budget = SAVE_BUDGET;
    let (mut slots, mut bytes) = (0, 0);
    let topology = server.slots.snapshot();
    for slot in topology.tables.values().flat_map(|t| t.owned()) {
        // A master slot has no role record, hence no full sync pending: replicas are skipped.
        if slot.master_addr().is_some() {
            continue;
        }
        let state = slot.state();
        match server.store.save_master(slot.prefix, &state, per_slot.min(budget)) {
            Ok(saved) => {
                budget -= saved;
                bytes += saved;
                slots += 1;
            }
            Err(e) => tracing::error!(table = slot.table, slot = slot.id, error = %e, "master log not saved"),
        }
    }
    if let Err(e) = server.store.flush_wal() {
        tracing::error!(error = %e, "saved master logs not synced");
    }
    tracing::info!(slots, bytes, "master logs saved for the restart");
}

/// At startup: every slot persisted as a replica comes back read-only at its durable position
/// and follows its master. A master slot takes back the log a clean shutdown saved (same
/// history and position, recent entries), so its replicas continue; without one (a crash) it
/// starts a fresh history and its replicas re-sync in full.
pub fn restore(server: &Arc<Server>) -> CmdResult<()> {
    let topology = server.slots.snapshot();
    let now = std::time::Instant::now();
    let mut taken = Vec::new();
    for slot in topology.tables.values().flat_map(|t| t.owned()) {
        let saved = server.store.saved_master(slot.prefix).map_err(|e| CmdError::err(e.to_string()))?;
        if let Some(saved) = saved {
            let mut state = slot.state();
            state.log = saved.meta;
            state.backlog = crate::storage::Backlog::restored(saved.base, saved.entries, now);
            state.head.advance(saved.head);
            taken.push(slot.prefix);
        }
    }
    server.store.drop_saved_masters(&taken).map_err(|e| CmdError::err(e.to_string()))?;
    for slot in topology.tables.values().flat_map(|t| t.owned()) {
        if let Some((master, full, counted)) = load_role(&server.store, slot)? {
            tracing::info!(table = slot.table, slot = slot.id, %master, full, counted, "resuming as a replica");
            slot.counted.store(counted, Ordering::Release);
            server.store.resume_replica(slot.prefix, &mut slot.state()).map_err(|e| CmdError::err(e.to_string()))?;
            *slot.role.write() = Role::Replica { master: master.clone() };
            replica::spawn(server, slot.clone(), master, full);
        }
    }
    Ok(())
}

/// `slotsslaveof <host> <port>` for one slot: becomes a replica of `master`. Returns false when
/// the slot already follows that master and is connected (Pika skips those, even with force).
pub fn follow(server: &Arc<Server>, slot: &Arc<Slot>, master: &str, force: bool, counted: bool) -> CmdResult<bool> {
    if slot.master_addr().as_deref() == Some(master)
        && slot.link_state() == crate::replication::LinkState::Connected
        && slot.counted.load(Ordering::Acquire) == counted
    {
        return Ok(false);
    }
    stop_upstream(slot);
    slot.counted.store(counted, Ordering::Release);
    save_role(&server.store, slot, Some((master, force)))?;
    {
        // Under the slot's write lock, as a fence: a write that passed its role check under the
        // lock (a cross-slot MSET may hold it while it runs its other slots) lands first, and
        // every later one is refused as read-only.
        let _writes = slot.state();
        *slot.role.write() = Role::Replica { master: master.to_string() };
    }
    replica::spawn(server, slot.clone(), master.to_string(), force);
    Ok(true)
}

/// `slotsslaveof no one` for one slot: stops replicating and becomes a writable master under a new
/// history (replicas of the old master can still continue from it up to this point).
pub fn promote(server: &Arc<Server>, slot: &Arc<Slot>) -> CmdResult<()> {
    if slot.master_addr().is_none() {
        return Ok(());
    }
    if full_sync_pending(server, slot) {
        return Err(CmdError::err(format!("Slot {} is in a full sync: its data is partial", slot.id)));
    }
    stop_upstream(slot);
    {
        let mut state = slot.state();
        let head = state.head.pos();
        state.log = state.log.promoted(head, new_history());
        // Logging from the promotion on, for a while even if nobody attaches yet: the old
        // master (after a switchover) and the other replicas (after a failover) re-point to
        // this slot, and writes it takes before they attach would otherwise move its backlog
        // past their position and make them re-sync in full.
        if !state.backlog.is_logging() {
            state.backlog.start(head);
            state.backlog.detached(std::time::Instant::now());
        }
        server.store.clear_replica_state(slot.prefix)?;
        state.head.restart_streams();
        *slot.role.write() = Role::Master;
    }
    slot.set_link(LinkState::NoConnect);
    save_role(&server.store, slot, None)?;
    Ok(())
}

/// Whether a replica slot's full sync has not finished (its data is partial).
pub fn full_sync_pending(server: &Server, slot: &Slot) -> bool {
    matches!(load_role(&server.store, slot), Ok(Some((_, true, _))))
}

/// Stops a slot's replica task; closing its connection makes the master forget this replica.
pub fn stop_upstream(slot: &Slot) {
    if let Some(cancel) = slot.upstream.lock().take() {
        cancel.cancel();
    }
    slot.set_link(LinkState::NoConnect);
}

/// Why a slot cannot be deleted now: it has replicas, or replicates (docs/compatibility.md,
/// "pkcluster commands and replies").
pub fn busy_reason(slot: &Slot, table: &str) -> Option<CmdError> {
    if !slot.downstream.lock().is_empty() {
        return Some(CmdError::err(format!("Corruption: sync master partition ({table}:{}) in syncing", slot.id)));
    }
    let state = slot.link_state();
    // As Pika: a replica slot that is not connected and not syncing (kError) may be deleted;
    // the caller stops its task. Ours also: one waiting to start a full sync (kTryDBSync), whose
    // data is partial anyway; a slot left behind by a cutover whose master no longer owns it
    // stays in that state for good, and must not be undeletable.
    let deletable = matches!(state, LinkState::NoConnect | LinkState::Error | LinkState::TryDbSync);
    slot.master_addr().filter(|_| !deletable).map(|_| {
        CmdError::err(format!("Corruption: sync slave partition ({table}:{}) in {} state", slot.id, state.name()))
    })
}

/// Forgets the replication of slots being deleted: stops their replica tasks and drops their
/// role records, so they do not come back as replicas.
pub fn forget(server: &Server, slots: &[Arc<Slot>]) -> CmdResult<()> {
    for slot in slots {
        stop_upstream(slot);
        *slot.role.write() = Role::Master;
        save_role(&server.store, slot, None)?;
    }
    Ok(())
}

/// Trims every slot's backlog once a second: to `slot-log-size` beyond what attached replicas
/// still need, and to `slot-log-max` in any case; turns it off for slots whose replicas left.
pub async fn purge_loop(server: Arc<Server>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let (keep, max) = {
            let c = server.config.read();
            (c.slot_log_size as usize, c.slot_log_max as usize)
        };
        let now = std::time::Instant::now();
        let topology = server.slots.snapshot();
        for slot in topology.tables.values().flat_map(|t| t.owned()) {
            let needed_from = slot.downstream.lock().iter().map(|d| d.acked.seq).min();
            let mut state = slot.state();
            if state.backlog.is_logging() {
                state.backlog.trim(keep, max.max(keep), needed_from, now);
            }
        }
    }
}
