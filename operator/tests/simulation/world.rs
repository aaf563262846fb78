//! The simulated cluster: nodes with per-slot role, fence, data and replication position;
//! proxies with routes and holds; clients whose every acknowledged write is recorded. Its rules
//! are the real components' as docs/node.md, docs/replication.md and docs/proxy.md state them
//! (the comments name the rule); everything runs in one thread under a seeded generator, so a
//! seed replays exactly.

use std::collections::{BTreeMap, BTreeSet};

use common::pkinfo::{MasterRole, ReplicaInfo, SlaveRole, SlotInfo};
use common::protocol::{LinkState, SlotError, SyncStatus};
use pika_operator::admin::{AdminError, RouteTable, Routes};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Bytes per simulated write (lags and positions are shown in bytes, as the node does).
pub const ENTRY: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Connecting (the handshake decides between an incremental and a full sync).
    Connecting {
        force_full: bool,
    },
    /// A full sync in progress: the slot's data is partial until it ends.
    FullSync {
        ticks: u32,
    },
    Streaming,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica { master: String, link: Link },
}

#[derive(Debug, Clone)]
pub struct Slot {
    pub role: Role,
    pub fenced: bool,
    /// History id (docs/replication.md, "Histories and promotion"); 0 during a full sync.
    pub history: u64,
    /// The history this one continued at promotion, and the position it ended at.
    pub prev: Option<(u64, usize)>,
    /// The slot's data: keys written, in log order (position = length).
    pub log: Vec<u64>,
    /// Replicas streaming from this slot: address -> (acknowledged position, in full sync).
    pub downstream: BTreeMap<String, (usize, bool)>,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub addr: String,
    pub group: u32,
    pub alive: bool,
    /// Alive, but the operator cannot reach it (clients and peers can).
    pub cut_off: bool,
    pub slots: BTreeMap<u32, Slot>,
    /// When a killed node comes back (virtual ms).
    pub restart_at: Option<u64>,
    /// Until when its master slots accept writes (every node starts with `start-fenced`, so
    /// it needs a lease before its first write as a master).
    pub lease_until: Option<u64>,
    /// The spec it runs (its pod's template: an image), for the rolling update.
    pub image: u32,
}

impl Node {
    /// Master slots that accept writes now: not fenced, and the lease (if any) not run out.
    fn writable_at(&self, now: u64) -> Vec<u32> {
        if self.lease_until.is_some_and(|t| now >= t) {
            return Vec::new();
        }
        writable_slots(self)
    }
}

#[derive(Debug, Clone)]
pub struct Parked {
    key: u64,
    slot: u32,
    since: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Proxy {
    pub addr: String,
    pub alive: bool,
    pub epoch: u64,
    pub table: Routes,
    pub routes: BTreeMap<u32, String>,
    pub held: BTreeMap<u32, u64>,
    pub parked: Vec<Parked>,
    /// The next route update to it is lost (the operator sees it fail).
    pub miss_next_update: bool,
}

/// A write applied on a master and waiting for its replicas (replicated acknowledgement).
#[derive(Debug, Clone)]
pub struct Pending {
    key: u64,
    slot: u32,
    node: String,
    /// The slot's history and position right after the write.
    history: u64,
    pos: usize,
    since: u64,
}

/// How long a write waits for its replicas before the client gets an error (`ackTimeoutMs`).
const ACK_TIMEOUT_MS: u64 = 2_000;

/// An acknowledged write: which key, to which slot, acknowledged by which node.
#[derive(Debug, Clone)]
pub struct Ack {
    pub key: u64,
    pub slot: u32,
    pub node: String,
    pub at: u64,
}

pub struct World {
    pub rng: StdRng,
    pub slot_count: u32,
    pub nodes: BTreeMap<String, Node>,
    pub proxies: Vec<Proxy>,
    pub acked: Vec<Ack>,
    next_key: u64,
    next_history: u64,
    pub now_ms: u64,
    pub trace: Vec<String>,
    pub violations: Vec<String>,
    /// Nodes killed, with when (for telling losses of asynchronous replication from bugs).
    pub kills: Vec<(String, u64)>,
    /// Nodes cut off from the operator, with when (a failover then replaces a master as if
    /// it had died: what its replicas lacked is lost the same way).
    pub cut_offs: Vec<(String, u64)>,
    /// Faults injected so far, by kind.
    pub faults: BTreeMap<&'static str, u32>,
    /// Whether faults are injected (off for the final convergence).
    pub chaos: bool,
    /// Probability per operator call that the operator crashes there.
    pub crash_rate: f64,
    /// Operator processes stopped (SIGSTOP, a long pause), until when.
    pub paused: BTreeMap<u32, u64>,
    /// The identity of the last operator process started.
    pub next_instance: u32,
    /// Probability per scheduling point that a fault strikes there.
    pub fault_rate: f64,
    /// Nodes cut off from the operator, until when.
    pub cut_until: BTreeMap<String, u64>,
    /// For scripted scenarios: right after the operator's next call whose description starts
    /// with the first string, the node named by the second is cut off from it for good.
    pub cut_after_call: Option<(String, String)>,
    /// Full syncs started, all replicas together.
    pub full_syncs: u64,
    /// The kinds of fault injected (`chaos::FAULTS`), and `crash` for operator crashes.
    pub enabled: BTreeSet<String>,
    pub calls: u64,
    /// `spec.durability`: replicas that must have a write before it is acknowledged (0:
    /// asynchronous replication).
    pub min_acks: usize,
    /// Writes applied on a master, not acknowledged yet (replicated mode).
    pub pending: Vec<Pending>,
    /// Replica slots following with `noack` (a migration's target): (node, slot).
    pub uncounted: BTreeSet<(String, u32)>,
}

fn refused(addr: &str, text: impl Into<String>) -> AdminError {
    AdminError::Refused { addr: addr.into(), text: text.into() }
}

fn unreachable(addr: &str) -> AdminError {
    AdminError::Unreachable { addr: addr.into(), text: "connection refused".into() }
}

pub fn node_addr(group: u32, member: u32) -> String {
    format!("10.0.{group}.{member}:9221")
}

impl World {
    pub fn new(seed: u64, slot_count: u32) -> World {
        World {
            rng: StdRng::seed_from_u64(seed),
            slot_count,
            nodes: BTreeMap::new(),
            proxies: Vec::new(),
            acked: Vec::new(),
            next_key: 1,
            next_history: 1,
            now_ms: 0,
            trace: Vec::new(),
            violations: Vec::new(),
            kills: Vec::new(),
            cut_offs: Vec::new(),
            faults: BTreeMap::new(),
            chaos: true,
            crash_rate: 0.0,
            paused: BTreeMap::new(),
            next_instance: 0,
            fault_rate: 0.0,
            cut_until: BTreeMap::new(),
            cut_after_call: None,
            full_syncs: 0,
            enabled: BTreeSet::new(),
            calls: 0,
            min_acks: 0,
            pending: Vec::new(),
            uncounted: BTreeSet::new(),
        }
    }

    pub fn log(&mut self, line: String) {
        self.trace.push(format!("{:>7}ms {line}", self.now_ms));
    }

    fn history(&mut self) -> u64 {
        self.next_history += 1;
        self.next_history
    }

    pub fn add_node(&mut self, group: u32, member: u32) {
        let addr = node_addr(group, member);
        let node = Node {
            addr: addr.clone(),
            group,
            alive: true,
            cut_off: false,
            slots: BTreeMap::new(),
            restart_at: None,
            // Started with start-fenced: needs a lease before its first write as a master.
            lease_until: Some(0),
            image: 0,
        };
        self.nodes.insert(addr, node);
    }

    pub fn add_proxy(&mut self, i: usize) {
        self.proxies.push(Proxy { addr: format!("10.1.0.{i}:9221"), alive: true, ..Proxy::default() });
    }

    // ----- what the operator sees (the DataPlane primitives) -----

    /// The node as the operator reaches it.
    fn reach(&mut self, addr: &str) -> Result<&mut Node, AdminError> {
        match self.nodes.get_mut(addr) {
            Some(n) if n.alive && !n.cut_off => Ok(n),
            _ => Err(unreachable(addr)),
        }
    }

    fn proxy(&mut self, addr: &str) -> Result<usize, AdminError> {
        match self.proxies.iter().position(|p| p.addr == addr) {
            Some(i) if self.proxies[i].alive => Ok(i),
            _ => Err(unreachable(addr)),
        }
    }

    pub fn answers(&mut self, addr: &str) -> bool {
        self.reach(addr).is_ok() || self.proxy(addr).is_ok()
    }

    /// Slots of a request: `all` is every owned slot.
    fn select(node: &Node, slots: &str) -> Result<Vec<u32>, AdminError> {
        if slots == "all" {
            return Ok(node.slots.keys().copied().collect());
        }
        common::slotset::parse_slots(slots).map_err(|e| refused(&node.addr, format!("ERR {e}")))
    }

    /// The owned slots named, or the node's "not found" error for the first that is not.
    fn owned(node: &Node, slots: &str) -> Result<Vec<u32>, AdminError> {
        let ids = Self::select(node, slots)?;
        match ids.iter().find(|id| !node.slots.contains_key(id)) {
            Some(&id) => Err(refused(&node.addr, SlotError::NotFound(id).text())),
            None => Ok(ids),
        }
    }

    pub fn add_slots(&mut self, addr: &str, slots: &str) -> Result<(), AdminError> {
        let history = self.history();
        let node = self.reach(addr)?;
        let ids = Self::select(node, slots)?;
        if let Some(&id) = ids.iter().find(|id| node.slots.contains_key(id)) {
            return Err(refused(addr, SlotError::Exists(id).text()));
        }
        // docs/node.md: a new slot is an empty master slot, fenced on a `start-fenced` node (as
        // the operator starts every node).
        for id in ids {
            let slot = Slot {
                role: Role::Master,
                fenced: true,
                history,
                prev: None,
                log: Vec::new(),
                downstream: BTreeMap::new(),
            };
            node.slots.insert(id, slot);
        }
        Ok(())
    }

    pub fn del_slots(&mut self, addr: &str, slots: &str) -> Result<(), AdminError> {
        let node = self.reach(addr)?;
        let ids = Self::select(node, slots)?;
        for id in &ids {
            let Some(slot) = node.slots.get(id) else {
                return Err(refused(addr, SlotError::NotExists(*id).text()));
            };
            // Refused while something replicates from it, or while it replicates.
            if !slot.downstream.is_empty() {
                return Err(refused(addr, format!("ERR Corruption: sync master partition (db0:{id}) in syncing")));
            }
            // A replica slot may go only while waiting for a full sync (kTryDBSync).
            if matches!(
                slot.role,
                Role::Replica {
                    link: Link::Streaming | Link::FullSync { .. } | Link::Connecting { force_full: false },
                    ..
                }
            ) {
                return Err(refused(addr, format!("ERR Corruption: sync slave partition (db0:{id}) in syncing")));
            }
        }
        for id in ids {
            node.slots.remove(&id);
        }
        self.detach_everywhere(addr);
        Ok(())
    }

    /// `slotsslaveof ... noack`: as [`World::slaveof`], and its acknowledgements do not count
    /// for replicated acknowledgement (docs/replication.md).
    pub fn follow_to_move(&mut self, addr: &str, master: &str, slots: &str) -> Result<(), AdminError> {
        let ids = Self::owned(self.reach(addr)?, slots)?;
        self.slaveof(addr, Some(master), slots, false)?;
        self.uncounted.extend(ids.into_iter().map(|id| (addr.to_string(), id)));
        Ok(())
    }

    pub fn slaveof(&mut self, addr: &str, master: Option<&str>, slots: &str, force: bool) -> Result<(), AdminError> {
        if let Ok(ids) = self.nodes.get(addr).map_or(Ok(Vec::new()), |n| Self::owned(n, slots)) {
            for id in ids {
                self.uncounted.remove(&(addr.to_string(), id));
            }
        }
        let master_alive = master.is_none_or(|m| self.nodes.get(m).is_some_and(|n| n.alive));
        let history = self.history();
        let node = self.reach(addr)?;
        let ids = Self::owned(node, slots)?;
        if ids.is_empty() {
            return Err(refused(addr, "ERR Slots set empty"));
        }
        match master {
            None => {
                // Refused while a full sync is pending: the data is partial.
                for id in &ids {
                    if let Role::Replica {
                        link: Link::FullSync { .. } | Link::Connecting { force_full: true }, ..
                    } = node.slots[id].role
                    {
                        return Err(refused(addr, format!("ERR Slot {id} is in a full sync: its data is partial")));
                    }
                    if node.slots[id].history == 0 {
                        return Err(refused(addr, format!("ERR Slot {id} is in a full sync: its data is partial")));
                    }
                }
                for id in &ids {
                    let slot = node.slots.get_mut(id).expect("owned");
                    if slot.role != Role::Master {
                        slot.prev = Some((slot.history, slot.log.len()));
                        slot.history = history;
                        slot.role = Role::Master;
                    }
                }
            }
            Some(m) => {
                if m == addr {
                    return Err(refused(addr, "ERR You fucked up"));
                }
                if !master_alive {
                    return Err(refused(addr, "ERR Corruption: connect remote node error"));
                }
                for id in &ids {
                    let slot = node.slots.get_mut(id).expect("owned");
                    let same = matches!(&slot.role, Role::Replica { master: cur, .. } if cur == m);
                    if same && !force {
                        continue; // already following it: nothing to do
                    }
                    slot.downstream.clear();
                    slot.role = Role::Replica { master: m.to_string(), link: Link::Connecting { force_full: force } };
                }
            }
        }
        // It no longer streams from wherever it did before.
        let ids_set: BTreeSet<u32> = ids.into_iter().collect();
        self.detach(addr, &ids_set);
        Ok(())
    }

    /// Drops `replica` from the downstream lists of the slots `ids` on every other node, where
    /// it no longer follows that node.
    fn detach(&mut self, replica: &str, ids: &BTreeSet<u32>) {
        let following: BTreeMap<u32, Option<String>> = ids
            .iter()
            .map(|id| {
                let up = self.nodes.get(replica).and_then(|n| n.slots.get(id)).and_then(|s| match &s.role {
                    Role::Replica { master, .. } => Some(master.clone()),
                    Role::Master => None,
                });
                (*id, up)
            })
            .collect();
        for node in self.nodes.values_mut() {
            for (id, slot) in node.slots.iter_mut() {
                if following.get(id).is_some_and(|up| up.as_deref() != Some(node.addr.as_str())) {
                    slot.downstream.remove(replica);
                }
            }
        }
    }

    fn detach_everywhere(&mut self, replica: &str) {
        let ids: BTreeSet<u32> = (0..self.slot_count).collect();
        self.detach(replica, &ids);
    }

    pub fn fence(&mut self, addr: &str, slots: &str, fenced: bool) -> Result<(), AdminError> {
        let node = self.reach(addr)?;
        for id in Self::owned(node, slots)? {
            node.slots.get_mut(&id).expect("owned").fenced = fenced;
        }
        Ok(())
    }

    pub fn slot_info(&mut self, addr: &str, slots: &str) -> Result<Vec<SlotInfo>, AdminError> {
        let node = self.reach(addr)?;
        let ids = Self::select(node, slots)?;
        Ok(ids.iter().filter_map(|id| Some(info(*id, node.slots.get(id)?))).collect())
    }

    pub fn writable(&mut self, addr: &str) -> Result<Vec<u32>, AdminError> {
        let now = self.now_ms;
        let node = self.reach(addr)?;
        Ok(node.writable_at(now))
    }

    pub fn lease(&mut self, addr: &str, ms: u64) -> Result<(), AdminError> {
        let now = self.now_ms;
        self.reach(addr)?.lease_until = Some(now + ms);
        Ok(())
    }

    pub fn hold(&mut self, addr: &str, slots: &str, hold: bool) -> Result<(), AdminError> {
        let i = self.proxy(addr)?;
        let ids = if slots == "all" {
            (0..self.slot_count).collect()
        } else {
            common::slotset::parse_slots(slots).map_err(|e| refused(addr, e.to_string()))?
        };
        let now = self.now_ms;
        for id in ids {
            if hold {
                self.proxies[i].held.entry(id).or_insert(now);
            } else {
                self.proxies[i].held.remove(&id);
            }
        }
        if !hold {
            self.dispatch_parked(i);
        }
        Ok(())
    }

    pub fn set_route(&mut self, addr: &str, epoch: u64, routes: &Routes) -> Result<(), AdminError> {
        let i = self.proxy(addr)?;
        if std::mem::take(&mut self.proxies[i].miss_next_update) {
            return Err(AdminError::Unreachable { addr: addr.into(), text: "connection reset".into() });
        }
        let p = &mut self.proxies[i];
        if epoch < p.epoch {
            return Err(refused(addr, "ERR stale route epoch"));
        }
        if epoch == p.epoch && p.table != *routes {
            return Err(refused(addr, "ERR route epoch conflict"));
        }
        p.epoch = epoch;
        p.table = routes.clone();
        p.routes.clear();
        for (_, node, slots) in routes {
            for s in common::slotset::parse_slots(slots).unwrap_or_default() {
                p.routes.insert(s, node.clone());
            }
        }
        // docs/proxy.md: a route update releases every held slot to the new owners.
        p.held.clear();
        self.dispatch_parked(i);
        Ok(())
    }

    pub fn route_table(&mut self, addr: &str) -> Result<RouteTable, AdminError> {
        let i = self.proxy(addr)?;
        Ok(RouteTable { epoch: self.proxies[i].epoch, slots: self.proxies[i].routes.clone() })
    }

    // ----- clients -----

    /// One client write of a new key through proxy `p`.
    pub fn client_write(&mut self, p: usize) {
        if !self.proxies[p].alive {
            return;
        }
        let key = self.next_key;
        self.next_key += 1;
        let slot = (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as u32 % self.slot_count;
        if self.proxies[p].held.contains_key(&slot) {
            let since = self.now_ms;
            self.proxies[p].parked.push(Parked { key, slot, since });
            return;
        }
        self.forward(p, key, slot);
    }

    /// The proxy sends the write to the slot's route; a refusal that means "not here" makes it
    /// rebuild its routes from the nodes and try again (docs/proxy.md, "Missed route updates").
    fn forward(&mut self, p: usize, key: u64, slot: u32) {
        for attempt in 0..3 {
            if attempt > 0 {
                self.rebuild(p);
                if self.proxies[p].held.contains_key(&slot) {
                    let since = self.now_ms;
                    self.proxies[p].parked.push(Parked { key, slot, since });
                    return;
                }
            }
            let Some(addr) = self.proxies[p].routes.get(&slot).cloned() else { continue };
            let now = self.now_ms;
            let Some(node) = self.nodes.get_mut(&addr).filter(|n| n.alive) else { return };
            let leased = node.lease_until.is_none_or(|t| now < t);
            let min_acks = self.min_acks;
            match node.slots.get_mut(&slot) {
                Some(s) if s.role == Role::Master && !s.fenced && leased => {
                    if min_acks == 0 {
                        s.log.push(key);
                        let at = self.now_ms;
                        self.acked.push(Ack { key, slot, node: addr, at });
                        return;
                    }
                    // Replicated acknowledgement (docs/replication.md): refused before it runs
                    // while too few replicas stream; else applied, and answered once enough
                    // replicas have it (`settle`).
                    let uncounted = &self.uncounted;
                    let counted = |replica: &String| !uncounted.contains(&(replica.clone(), slot));
                    let streaming = s.downstream.iter().filter(|(r, (_, full))| !full && counted(r)).count();
                    if streaming < min_acks {
                        return; // TRYAGAIN, and the client gives up
                    }
                    s.log.push(key);
                    let (history, pos, since) = (s.history, s.log.len(), now);
                    self.pending.push(Pending { key, slot, node: addr, history, pos, since });
                    return;
                }
                Some(s) if matches!(s.role, Role::Replica { .. }) => return, // read-only: an error
                _ => {}                                                      // not here: retry
            }
        }
    }

    /// A proxy's rebuild: every node's writable slots; the current owner keeps a slot it still
    /// claims, else the first claimant. The epoch stays.
    fn rebuild(&mut self, p: usize) {
        let mut claims: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        let now = self.now_ms;
        for node in self.nodes.values().filter(|n| n.alive) {
            for s in node.writable_at(now) {
                claims.entry(s).or_default().push(node.addr.clone());
            }
        }
        let proxy = &mut self.proxies[p];
        let mut routes = BTreeMap::new();
        for (slot, owners) in claims {
            let current = proxy.routes.get(&slot).filter(|c| owners.contains(c)).cloned();
            routes.insert(slot, current.unwrap_or_else(|| owners[0].clone()));
        }
        proxy.routes = routes;
    }

    fn dispatch_parked(&mut self, p: usize) {
        let parked = std::mem::take(&mut self.proxies[p].parked);
        for w in parked {
            if self.proxies[p].held.contains_key(&w.slot) {
                self.proxies[p].parked.push(w);
            } else {
                self.forward(p, w.key, w.slot);
            }
        }
    }

    // ----- time passing: replication, timeouts, restarts -----

    pub fn tick(&mut self) {
        let now = self.now_ms;
        // Killed nodes restart (fenced, as every pod starts: docs/operator.md).
        let due: Vec<String> = self
            .nodes
            .values()
            .filter(|n| !n.alive && n.restart_at.is_some_and(|t| t <= now))
            .map(|n| n.addr.clone())
            .collect();
        for addr in due {
            self.restart(&addr);
        }
        let healed: Vec<String> = self.cut_until.iter().filter(|(_, t)| **t <= now).map(|(a, _)| a.clone()).collect();
        for addr in healed {
            self.reconnect(&addr);
            self.log(format!("{addr} reachable again"));
        }
        for p in 0..self.proxies.len() {
            // Parked requests time out after 10 s; holds expire after 120 s.
            self.proxies[p].parked.retain(|w| now - w.since < 10_000);
            let expired: Vec<u32> =
                self.proxies[p].held.iter().filter(|(_, t)| now - **t >= 120_000).map(|(s, _)| *s).collect();
            if !expired.is_empty() {
                for s in expired {
                    self.proxies[p].held.remove(&s);
                }
                self.dispatch_parked(p);
            }
        }
        for (addr, id) in self.replica_slots(|_| true) {
            let step = self.rng.random_range(0..4usize);
            self.replicate(&addr, id, step);
        }
        self.settle();
    }

    /// Answers the pending writes the replicas confirmed, as a master does after its wait: only
    /// while its lease holds, and the slot is still the same master's; a write not confirmed
    /// within the timeout, or whose master died or changed, gets an error (its outcome unknown).
    fn settle(&mut self) {
        let now = self.now_ms;
        let (min_acks, nodes, uncounted) = (self.min_acks, &self.nodes, &self.uncounted);
        let mut acked = Vec::new();
        self.pending.retain(|w| {
            let Some(node) = nodes.get(&w.node).filter(|n| n.alive) else { return false };
            let Some(slot) = node.slots.get(&w.slot).filter(|s| s.role == Role::Master && s.history == w.history)
            else {
                return false;
            };
            let counted = |replica: &String| !uncounted.contains(&(replica.clone(), w.slot));
            let confirmed =
                slot.downstream.iter().filter(|(r, (at, full))| !full && *at >= w.pos && counted(r)).count()
                    >= min_acks;
            let leased = node.lease_until.is_none_or(|t| now < t);
            if confirmed && leased {
                acked.push(Ack { key: w.key, slot: w.slot, node: w.node.clone(), at: now });
                return false;
            }
            now - w.since < ACK_TIMEOUT_MS
        });
        self.acked.extend(acked);
    }

    /// One step of slot `id` on replica `addr` (docs/replication.md).
    fn replicate(&mut self, addr: &str, id: u32, batch: usize) {
        let Role::Replica { master, link } = self.nodes[addr].slots[&id].role.clone() else { return };
        let upstream = self
            .nodes
            .get(&master)
            .filter(|n| n.alive)
            .and_then(|n| n.slots.get(&id))
            .map(|s| (s.history, s.prev, s.log.clone(), s.role.clone()));
        let Some((up_history, up_prev, up_log, up_role)) = upstream else {
            self.set_link(
                addr,
                id,
                Link::Connecting {
                    force_full: matches!(link, Link::FullSync { .. } | Link::Connecting { force_full: true }),
                },
            );
            return;
        };
        // A slot in a full sync refuses replicas of its own until it is complete.
        if up_history == 0
            || matches!(up_role, Role::Replica { link: Link::FullSync { .. } | Link::Connecting { .. }, .. })
        {
            return;
        }
        let mine = &self.nodes[addr].slots[&id];
        let (my_history, my_len) = (mine.history, mine.log.len());
        match link {
            Link::Connecting { force_full } => {
                // The handshake: the same history (or the one the upstream continued at its
                // promotion, up to that point) and a position the upstream has.
                let continues =
                    my_history == up_history || up_prev.is_some_and(|(h, at)| h == my_history && my_len <= at);
                if !force_full && continues && my_len <= up_log.len() {
                    let slot = self.slot_mut(addr, id);
                    slot.history = up_history;
                    slot.role = Role::Replica { master: master.clone(), link: Link::Streaming };
                    self.attach(&master, id, addr, my_len, false);
                } else {
                    let ticks = self.rng.random_range(1..6);
                    self.full_syncs += 1;
                    let slot = self.slot_mut(addr, id);
                    // The data is replaced: partial from now until the sync ends.
                    slot.log.clear();
                    slot.history = 0;
                    slot.role = Role::Replica { master: master.clone(), link: Link::FullSync { ticks } };
                    self.attach(&master, id, addr, 0, true);
                }
            }
            Link::FullSync { ticks } if ticks > 1 => {
                self.slot_mut(addr, id).role = Role::Replica { master, link: Link::FullSync { ticks: ticks - 1 } };
            }
            Link::FullSync { .. } => {
                let slot = self.slot_mut(addr, id);
                slot.log = up_log.clone();
                slot.history = up_history;
                slot.role = Role::Replica { master: master.clone(), link: Link::Streaming };
                self.attach(&master, id, addr, up_log.len(), false);
            }
            Link::Streaming => {
                if my_history != up_history || my_len > up_log.len() {
                    // The upstream was promoted (a new history): a new handshake.
                    self.set_link(addr, id, Link::Connecting { force_full: false });
                    return;
                }
                let end = (my_len + batch).min(up_log.len());
                let slot = self.slot_mut(addr, id);
                slot.log.extend_from_slice(&up_log[my_len..end]);
                self.attach(&master, id, addr, end, false);
            }
        }
    }

    /// (node, slot) of the replica slots on nodes that are alive whose link passes `link`.
    pub fn replica_slots(&self, link: impl Fn(&Link) -> bool) -> Vec<(String, u32)> {
        self.nodes
            .values()
            .filter(|n| n.alive)
            .flat_map(|n| {
                n.slots
                    .iter()
                    .filter(|(_, s)| matches!(&s.role, Role::Replica { link: l, .. } if link(l)))
                    .map(|(id, _)| (n.addr.clone(), *id))
            })
            .collect()
    }

    fn slot_mut(&mut self, addr: &str, id: u32) -> &mut Slot {
        self.nodes.get_mut(addr).and_then(|n| n.slots.get_mut(&id)).expect("slot")
    }

    fn set_link(&mut self, addr: &str, id: u32, link: Link) {
        let slot = self.slot_mut(addr, id);
        if let Role::Replica { master, .. } = &slot.role {
            slot.role = Role::Replica { master: master.clone(), link };
        }
    }

    fn attach(&mut self, master: &str, id: u32, replica: &str, acked: usize, full: bool) {
        if let Some(s) = self.nodes.get_mut(master).and_then(|n| n.slots.get_mut(&id)) {
            s.downstream.insert(replica.to_string(), (acked, full));
        }
    }

    // ----- faults -----

    /// Cuts `addr` off from the operator until `until` (ms); its clients still reach it.
    pub fn cut_off(&mut self, addr: &str, until: u64) {
        let Some(node) = self.nodes.get_mut(addr) else { return };
        node.cut_off = true;
        self.cut_offs.push((addr.to_string(), self.now_ms));
        self.cut_until.insert(addr.to_string(), until);
    }

    /// The operator reaches `addr` again.
    pub fn reconnect(&mut self, addr: &str) {
        self.cut_until.remove(addr);
        if let Some(n) = self.nodes.get_mut(addr) {
            n.cut_off = false;
        }
    }

    /// Acknowledged writes that are not on their slot's one writable master.
    pub fn missing(&self) -> usize {
        self.acked
            .iter()
            .filter(|a| !self.writer(a.slot).is_some_and(|n| n.slots[&a.slot].log.contains(&a.key)))
            .count()
    }

    /// The slots `addr` accepts writes for, whether the operator reaches it or not.
    pub fn writable_at_any(&self, addr: &str) -> Vec<u32> {
        self.nodes.get(addr).filter(|n| n.alive).map(|n| n.writable_at(self.now_ms)).unwrap_or_default()
    }

    pub fn kill(&mut self, addr: &str, down_for_ms: u64) {
        if self.stop(addr, down_for_ms) {
            self.kills.push((addr.to_string(), self.now_ms));
        }
    }

    /// The rolling update's restart of a node (its pod deleted and made again from the new
    /// template): down for `down_for_ms`, then back on `image`. Not a fault: writes it
    /// acknowledged are never excused as lost with it.
    pub fn replace(&mut self, addr: &str, image: u32, down_for_ms: u64) {
        if self.stop(addr, down_for_ms) {
            self.nodes.get_mut(addr).expect("node").image = image;
            self.log(format!("replace {addr} (image {image}), back in {down_for_ms}ms"));
        }
    }

    /// Stops a node that runs, until `down_for_ms` from now; false if it was not running.
    fn stop(&mut self, addr: &str, down_for_ms: u64) -> bool {
        let now = self.now_ms;
        let Some(node) = self.nodes.get_mut(addr) else { return false };
        if !node.alive {
            return false;
        }
        node.alive = false;
        node.restart_at = Some(now + down_for_ms);
        // Its connections break: nothing streams from it any more.
        self.detach_everywhere(addr);
        for n in self.nodes.values_mut() {
            for s in n.slots.values_mut() {
                s.downstream.remove(addr);
            }
        }
        true
    }

    /// A restarted node: its slots, roles, data and positions are what it persisted; its
    /// master slots start a new history (the backlog was in memory) and every slot starts
    /// fenced (`start-fenced`, as the operator starts every node); nothing streams from it yet.
    fn restart(&mut self, addr: &str) {
        let mut histories = Vec::new();
        for _ in 0..self.slot_count {
            histories.push(self.history());
        }
        let node = self.nodes.get_mut(addr).expect("node");
        node.alive = true;
        node.restart_at = None;
        // Started with start-fenced: no write as a master before the operator leases it again.
        node.lease_until = Some(0);
        for (id, slot) in node.slots.iter_mut() {
            slot.fenced = true;
            slot.downstream.clear();
            match &mut slot.role {
                Role::Master => {
                    slot.prev = None;
                    slot.history = histories[*id as usize];
                }
                Role::Replica { link, .. } => {
                    let full = matches!(link, Link::FullSync { .. } | Link::Connecting { force_full: true });
                    *link = Link::Connecting { force_full: full };
                }
            }
        }
        self.log(format!("restart {addr}"));
    }

    pub fn restart_proxy(&mut self, p: usize) {
        let proxy = &mut self.proxies[p];
        // A new process: no routes, no holds (parked requests fail); it rebuilds from the nodes.
        *proxy = Proxy { addr: proxy.addr.clone(), alive: true, ..Proxy::default() };
        self.rebuild(p);
    }

    // ----- checks -----

    /// At most one writable master per slot, among the nodes that are alive (a node cut off from
    /// the operator counts: clients still reach it).
    pub fn check_one_writer(&mut self, context: &str) {
        let mut writers: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        let now = self.now_ms;
        for n in self.nodes.values().filter(|n| n.alive) {
            for s in n.writable_at(now) {
                writers.entry(s).or_default().push(n.addr.clone());
            }
        }
        for (slot, w) in writers {
            if w.len() > 1 {
                let v = format!("slot {slot} writable on {w:?} ({context})");
                if !self.violations.contains(&v) {
                    self.log(format!("VIOLATION {v}"));
                    self.violations.push(v);
                }
            }
        }
    }

    /// The node that accepts writes for `slot` (None: no node, or more than one).
    pub fn writer(&self, slot: u32) -> Option<&Node> {
        let now = self.now_ms;
        let mut w = self.nodes.values().filter(|n| n.alive && n.writable_at(now).contains(&slot));
        let first = w.next()?;
        w.next().is_none().then_some(first)
    }
}

fn writable_slots(node: &Node) -> Vec<u32> {
    node.slots.iter().filter(|(_, s)| s.role == Role::Master && !s.fenced).map(|(id, _)| *id).collect()
}

/// `pkcluster info slot` of one slot, as the node renders it.
fn info(id: u32, slot: &Slot) -> SlotInfo {
    let head = slot.log.len();
    let replicas: Vec<ReplicaInfo> = slot
        .downstream
        .iter()
        .map(|(addr, (acked, full))| ReplicaInfo {
            addr: addr.clone(),
            status: if *full { SyncStatus::DbSync } else { SyncStatus::BinlogSync },
            lag: Some((head.saturating_sub(*acked)) as u64 * ENTRY),
        })
        .collect();
    let slave = match &slot.role {
        Role::Master => None,
        Role::Replica { master, link } => Some(SlaveRole {
            master: master.clone(),
            state: match link {
                Link::Connecting { force_full: true } => LinkState::TryDbSync,
                Link::Connecting { .. } => LinkState::TryConnect,
                Link::FullSync { .. } => LinkState::WaitDbSync,
                Link::Streaming => LinkState::Connected,
            },
        }),
    };
    let master = (slave.is_none() || !replicas.is_empty()).then_some(MasterRole { replicas });
    let offset = head as u64 * ENTRY;
    SlotInfo {
        table: "db0".into(),
        slot: id,
        binlog_offset: (offset / (100 << 20), offset % (100 << 20)),
        safety_purge: "none".into(),
        master,
        slave,
    }
}
