//! The seam between the operator's logic and the data plane: [`DataPlane`], the administration
//! of nodes (`pkcluster ...`) and proxies (`PX...`) the operator uses, and [`Admin`], its
//! production implementation over RESP (`common::client`). The deterministic simulation
//! (`tests/simulation`) implements the same trait against an in-memory cluster, so the cutover,
//! resume, failover and repair code it runs is the code that runs in production.

use std::future::Future;
use std::sync::Arc;

use crate::authority::Authority;

use common::auth::Credential;
use common::pkinfo::SlotInfo;
use common::protocol::SlotError;
use common::resp::Frame;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("{addr}: {text}")]
    Refused { addr: String, text: String },
    #[error("{addr}: {text}")]
    Unreachable { addr: String, text: String },
}

impl AdminError {
    pub fn text(&self) -> &str {
        match self {
            AdminError::Refused { text, .. } | AdminError::Unreachable { text, .. } => text,
        }
    }

    /// The slot administration error this is, if it is one.
    pub fn slot_error(&self) -> Option<SlotError> {
        match self {
            AdminError::Refused { text, .. } => SlotError::of(text),
            AdminError::Unreachable { .. } => None,
        }
    }
}

pub type AdminResult<T> = Result<T, AdminError>;

/// The proxies' routing table for one epoch: `(group, master address, slots)`.
pub type Routes = Vec<(String, String, String)>;

/// A proxy's table as it routes: epoch, and slot -> address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    pub epoch: u64,
    pub slots: std::collections::BTreeMap<u32, String>,
}

impl RouteTable {
    /// Slot -> address of `routes`.
    pub fn of(routes: &Routes) -> std::collections::BTreeMap<u32, String> {
        let mut slots = std::collections::BTreeMap::new();
        for (_, addr, ranges) in routes {
            for s in common::slotset::parse_slots(ranges).unwrap_or_default() {
                slots.insert(s, addr.clone());
            }
        }
        slots
    }

    /// Parses `PXROUTE GET` (docs/proxy.md): `epoch N`, then per table `table T slots C` and
    /// `group <name> <addr> <slots>` lines; table 0 only.
    pub fn parse(text: &str) -> RouteTable {
        let mut table = RouteTable::default();
        let mut current = None;
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["epoch", n] => table.epoch = n.parse().unwrap_or(0),
                ["table", t, ..] => current = t.parse::<u32>().ok(),
                ["group", _, addr, ranges @ ..] if current == Some(0) => {
                    let ranges = ranges.first().copied().unwrap_or("");
                    for s in common::slotset::parse_slots(ranges).unwrap_or_default() {
                        table.slots.insert(s, addr.to_string());
                    }
                }
                _ => {}
            }
        }
        table
    }
}

/// Everything the operator asks of nodes and proxies. Slots are in range syntax (`0-99,512`) or
/// `all`. The primitives behave as the commands of docs/node.md and docs/proxy.md ("Admin commands") do;
/// the provided methods add the operator's "a retried step is done" rules once, for every
/// implementation.
pub trait DataPlane: Sync {
    /// Whether a node or proxy answers at all right now (any reply, an error too, proves life).
    fn answers(&self, addr: &str) -> impl Future<Output = bool> + Send;
    /// `pkcluster addslots`: new master slots (an owned one is [`SlotError::Exists`]).
    fn add_slots_once(&self, node: &str, slots: &str) -> impl Future<Output = AdminResult<()>> + Send;
    /// `pkcluster delslots` (one not owned is [`SlotError::NotExists`]).
    fn del_slots_once(&self, node: &str, slots: &str) -> impl Future<Output = AdminResult<()>> + Send;
    /// `pkcluster slotsslaveof`: follow `master` (`force`: with a full sync whatever is held), or
    /// with `None` become master (promotion; refused while a full sync is pending).
    fn slaveof(
        &self,
        node: &str,
        master: Option<&str>,
        slots: &str,
        force: bool,
    ) -> impl Future<Output = AdminResult<()>> + Send;
    /// `pkcluster slotsslaveof ... noack`: a migration's target follows the source master;
    /// its acknowledgements do not count for the source's replicated acknowledgement (a
    /// failover of the source group looks at the group's replicas, not at the target's copy).
    fn follow_to_move(&self, node: &str, master: &str, slots: &str) -> impl Future<Output = AdminResult<()>> + Send;
    /// `pkcluster fence`: master slots refuse writes until unfenced; a barrier (no write in flight
    /// when it returns).
    fn fence(&self, node: &str, slots: &str) -> impl Future<Output = AdminResult<()>> + Send;
    /// Fences every slot of a master being replaced, without waiting long for an answer: it is
    /// best effort (its lease has run out anyway), and a master that does not answer (stopped,
    /// hung) must not hold up the failover. Sent all the same: a stopped master reads it when it
    /// resumes.
    fn fence_unanswered(&self, node: &str) -> impl Future<Output = AdminResult<()>> + Send {
        self.fence(node, "all")
    }
    fn unfence(&self, node: &str, slots: &str) -> impl Future<Output = AdminResult<()>> + Send;
    /// `pkcluster info slot <slots>`, parsed (slots not owned are left out).
    fn slot_info(&self, node: &str, slots: &str) -> impl Future<Output = AdminResult<Vec<SlotInfo>>> + Send;
    /// The slots a node accepts writes for in table 0 (`pkcluster writable`).
    fn writable(&self, node: &str) -> impl Future<Output = AdminResult<Vec<u32>>> + Send;
    /// `pkcluster lease <ms>`: the node's master slots accept writes for `ms` more milliseconds.
    fn lease(&self, node: &str, ms: u64) -> impl Future<Output = AdminResult<()>> + Send;
    /// `PXHOLD 0 <slots>`: the proxy queues requests for these slots.
    fn hold(&self, proxy: &str, slots: &str) -> impl Future<Output = AdminResult<()>> + Send;
    /// `PXRELEASE 0 <slots>`: queued requests go to the current routes.
    fn release(&self, proxy: &str, slots: &str) -> impl Future<Output = AdminResult<()>> + Send;
    /// `PXROUTE SET`: the table for `epoch` (an older epoch than the proxy's is refused); releases
    /// the holds of slots whose route changed.
    fn set_route(
        &self,
        proxy: &str,
        epoch: u64,
        slot_count: u32,
        routes: &Routes,
    ) -> impl Future<Output = AdminResult<()>> + Send;
    /// The proxy's table 0 as it routes now: its epoch (0: none from the operator) and each
    /// routed slot's address. After a rebuild from the nodes the epoch stays but the table may
    /// differ from the operator's.
    fn route_table(&self, proxy: &str) -> impl Future<Output = AdminResult<RouteTable>> + Send;

    /// `addslots` of the slots the node does not own yet (steps are retried after a restart, and
    /// a replica that was down while its group took more slots holds only some of them: the
    /// node refuses the whole command when it owns any).
    fn add_slots(&self, node: &str, slots: &str) -> impl Future<Output = AdminResult<()>> + Send {
        async move {
            match self.add_slots_once(node, slots).await {
                Err(e) if matches!(e.slot_error(), Some(SlotError::Exists(_))) => {
                    let held: Vec<u32> = self.slot_info(node, slots).await?.iter().map(|s| s.slot).collect();
                    let wanted = common::slotset::parse_slots(slots).unwrap_or_default();
                    let missing: Vec<u32> = wanted.into_iter().filter(|s| !held.contains(s)).collect();
                    if missing.is_empty() {
                        return Ok(());
                    }
                    self.add_slots_once(node, &common::slotset::format_slots(&missing)).await
                }
                other => other,
            }
        }
    }

    /// `delslots`, treating "not owned" as done.
    fn del_slots(&self, node: &str, slots: &str) -> impl Future<Output = AdminResult<()>> + Send {
        async move {
            match self.del_slots_once(node, slots).await {
                Err(e) if matches!(e.slot_error(), Some(SlotError::NotExists(_))) => Ok(()),
                other => other,
            }
        }
    }

    fn follow(&self, node: &str, master: &str, slots: &str) -> impl Future<Output = AdminResult<()>> + Send {
        self.slaveof(node, Some(master), slots, false)
    }

    /// Follows `master` with a full sync whatever this node holds (a demoted old master).
    fn follow_force(&self, node: &str, master: &str, slots: &str) -> impl Future<Output = AdminResult<()>> + Send {
        self.slaveof(node, Some(master), slots, true)
    }

    fn promote(&self, node: &str, slots: &str) -> impl Future<Output = AdminResult<()>> + Send {
        self.slaveof(node, None, slots, false)
    }
}

/// A new admin password: 32 characters of the system's randomness (about 190 bits), letters
/// and digits only so that it survives every config syntax and shell.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(32);
    while out.len() < 32 {
        let mut bytes = [0u8; 64];
        getrandom::fill(&mut bytes).expect("the system's random source");
        // Only bytes below the largest multiple of 62: no letter more likely than another.
        for b in bytes.iter().filter(|&&b| (b as usize) < 248).take(32 - out.len()) {
            out.push(ALPHABET[*b as usize % ALPHABET.len()] as char);
        }
    }
    out
}

/// The production [`DataPlane`]: RESP requests as the admin user (common/src/auth.rs), sent
/// only while this operator instance leads ([`Authority`]).
#[derive(Debug, Clone)]
pub struct Admin {
    /// The cluster's admin credential (None: its nodes have no admin password).
    pub credential: Option<Credential>,
    /// Tried in order when the admin credential is refused: the data passwords, for nodes and
    /// proxies started before the admin user was apart (their only password was the data one).
    pub fallbacks: Vec<Credential>,
    pub authority: Arc<Authority>,
}

impl Admin {
    /// A request that changes something (it may take a while: a slot's data deleted...).
    pub async fn call(&self, addr: &str, args: &[&str]) -> AdminResult<Frame> {
        self.call_within(addr, args, common::client::REQUEST_TIMEOUT).await
    }

    /// A question about state, or a lease: answered at once by a live process.
    async fn probe(&self, addr: &str, args: &[&str]) -> AdminResult<Frame> {
        self.call_within(addr, args, common::client::PROBE_TIMEOUT).await
    }

    /// Checked before connecting and again right before sending: an instance that lost its
    /// Lease sends nothing (not even a question: a lapsed instance must not decide anything).
    async fn call_within(&self, addr: &str, args: &[&str], timeout: std::time::Duration) -> AdminResult<Frame> {
        let lapsed = || AdminError::Unreachable { addr: addr.into(), text: Authority::LAPSED.into() };
        if !self.authority.valid() {
            return Err(lapsed());
        }
        let may_send = || self.authority.valid();
        let started = std::time::Instant::now();
        let mut sent = common::client::request_if(addr, self.credential.as_ref(), args, timeout, may_send).await;
        if started.elapsed() > std::time::Duration::from_secs(1) {
            tracing::warn!(%addr, request = %args.join(" "), elapsed_ms = started.elapsed().as_millis() as u64, "slow admin request");
        }
        for fallback in &self.fallbacks {
            match &sent {
                Err(e) if e.contains("invalid password") || e.contains("WRONGPASS") => {
                    sent = common::client::request_if(addr, Some(fallback), args, timeout, may_send).await;
                }
                _ => break,
            }
        }
        match sent {
            Ok(Some(Frame::Error(text))) => Err(AdminError::Refused { addr: addr.into(), text }),
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => Err(lapsed()),
            Err(text) => Err(AdminError::Unreachable { addr: addr.into(), text }),
        }
    }

    async fn ok(&self, addr: &str, args: &[&str]) -> AdminResult<()> {
        self.call(addr, args).await.map(|_| ())
    }
}

impl DataPlane for Admin {
    async fn answers(&self, addr: &str) -> bool {
        // A lapsed instance decides nothing, not even that a master is down.
        self.authority.valid() && common::client::alive(addr).await
    }

    async fn add_slots_once(&self, node: &str, slots: &str) -> AdminResult<()> {
        self.ok(node, &["pkcluster", "addslots", slots]).await
    }

    async fn del_slots_once(&self, node: &str, slots: &str) -> AdminResult<()> {
        self.ok(node, &["pkcluster", "delslots", slots]).await
    }

    async fn slaveof(&self, node: &str, master: Option<&str>, slots: &str, force: bool) -> AdminResult<()> {
        let (host, port) = match master {
            Some(m) => m.rsplit_once(':').unwrap_or((m, "9221")),
            None => ("no", "one"),
        };
        let mut args = vec!["pkcluster", "slotsslaveof", host, port, slots];
        if force {
            args.push("force");
        }
        self.ok(node, &args).await
    }

    async fn follow_to_move(&self, node: &str, master: &str, slots: &str) -> AdminResult<()> {
        let (host, port) = master.rsplit_once(':').unwrap_or((master, "9221"));
        self.ok(node, &["pkcluster", "slotsslaveof", host, port, slots, "noack"]).await
    }

    async fn fence(&self, node: &str, slots: &str) -> AdminResult<()> {
        self.ok(node, &["pkcluster", "fence", slots]).await
    }

    async fn fence_unanswered(&self, node: &str) -> AdminResult<()> {
        let timeout = common::client::ALIVE_TIMEOUT / 4;
        self.call_within(node, &["pkcluster", "fence", "all"], timeout).await.map(|_| ())
    }

    async fn unfence(&self, node: &str, slots: &str) -> AdminResult<()> {
        self.ok(node, &["pkcluster", "unfence", slots]).await
    }

    async fn slot_info(&self, node: &str, slots: &str) -> AdminResult<Vec<SlotInfo>> {
        let frame = self.probe(node, &["pkcluster", "info", "slot", slots]).await?;
        let text = frame.as_bytes().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        common::pkinfo::parse_slot_info(&text)
            .map_err(|e| AdminError::Refused { addr: node.into(), text: e.to_string() })
    }

    async fn writable(&self, node: &str) -> AdminResult<Vec<u32>> {
        let frame = self.probe(node, &["pkcluster", "writable"]).await?;
        let bad = || AdminError::Refused { addr: node.into(), text: format!("unexpected reply {frame:?}") };
        let Frame::Array(tables) = &frame else { return Err(bad()) };
        for t in tables {
            if let Frame::Array(fields) = t {
                if let [Frame::Integer(0), Frame::Integer(_), Frame::Bulk(slots)] = fields.as_slice() {
                    return common::slotset::parse_slots(&String::from_utf8_lossy(slots)).map_err(|_| bad());
                }
            }
        }
        Ok(Vec::new())
    }

    async fn lease(&self, node: &str, ms: u64) -> AdminResult<()> {
        self.probe(node, &["pkcluster", "lease", &ms.to_string()]).await.map(|_| ())
    }

    async fn hold(&self, proxy: &str, slots: &str) -> AdminResult<()> {
        self.ok(proxy, &["pxhold", "0", slots]).await
    }

    async fn release(&self, proxy: &str, slots: &str) -> AdminResult<()> {
        self.ok(proxy, &["pxrelease", "0", slots]).await
    }

    /// `PXROUTE SET <epoch> 0 <slot-count> (<group> <addr> <slots>)*`.
    async fn set_route(&self, proxy: &str, epoch: u64, slot_count: u32, routes: &Routes) -> AdminResult<()> {
        let (epoch, count) = (epoch.to_string(), slot_count.to_string());
        let mut args = vec!["pxroute", "set", &epoch, "0", &count];
        for (name, addr, slots) in routes {
            args.extend([name.as_str(), addr.as_str(), slots.as_str()]);
        }
        self.ok(proxy, &args).await
    }

    async fn route_table(&self, proxy: &str) -> AdminResult<RouteTable> {
        let frame = self.probe(proxy, &["pxroute", "get"]).await?;
        let text = frame.as_bytes().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        Ok(RouteTable::parse(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_tables_parse_from_pxroute_get() {
        let text = "epoch 42\ntable 0 slots 8\ngroup g0 10.0.0.1:9221 0-3\ngroup 10.0.0.2:9221 10.0.0.2:9221 4-5,7\n\
                    group g2 10.0.0.3:9221 \ntable 1 slots 4\ngroup g9 10.0.0.9:9221 0-3\n";
        let t = RouteTable::parse(text);
        assert_eq!(t.epoch, 42);
        assert_eq!(t.slots.len(), 7);
        assert_eq!(t.slots[&5], "10.0.0.2:9221");
        assert!(!t.slots.contains_key(&6));
        let routes: Routes = vec![("g0".into(), "10.0.0.1:9221".into(), "0-3".into())];
        assert_eq!(RouteTable::of(&routes).len(), 4);
    }
}
