//! The proxy's shared state and request execution: routing by key, splitting by group, holds,
//! and the retry that makes a missed route update harmless.
//!
//! Retry rule: a node answering `-ERR Partition not found` (it does not own the slot) or
//! `-TRYAGAIN` (the slot is fenced for a cutover) did not execute the request, so the proxy
//! rebuilds its table from the nodes and sends it again, with back-off, for up to
//! [`RETRY_FOR`] or `hold-timeout-ms`. A request that reached a node and failed otherwise is never re-sent.
//!
//! A node that cannot be connected to (killed, its host gone) got nothing: its slot is held,
//! as for a cutover, with the request parked on it, until the slot is routed elsewhere (a
//! failover) or the node answers again; then the parked requests go on in arrival order. A
//! client sees a pause, not `Connection refused`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use common::auth::{Credential, Passwords};
use common::resp::{self, Frame};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::backend::{self, Pool};
use crate::commands::{self, FanOut, Keys, Kind, Merge};
use crate::config::Config;
use crate::hold::{Holds, Parked};
use crate::metrics::Metrics;
use crate::route::{self, NodeReport, Routes};

/// How long a request whose node refused it (not owned, fenced) is retried, at least (the
/// hold timeout, if longer: a refusal is the other face of a hold).
const RETRY_FOR: Duration = Duration::from_secs(5);
/// Table rebuilds closer together than this share one result.
const REFRESH_DEBOUNCE: Duration = Duration::from_millis(100);

pub type ReplyFuture = Pin<Box<dyn Future<Output = Bytes> + Send>>;

/// A request's answer: known now, or later (in request order, the client awaits each).
pub enum Pending {
    Ready(Bytes),
    Later(ReplyFuture),
}

pub struct Proxy {
    pub config: Config,
    routes: ArcSwap<Routes>,
    pool: Pool,
    holds: Mutex<Holds<oneshot::Sender<Bytes>>>,
    pub metrics: Metrics,
    /// Serialises table rebuilds; holds when the last one finished.
    refreshing: tokio::sync::Mutex<Option<Instant>>,
    pub shutdown: tokio::sync::Notify,
    /// A client's SHUTDOWN: the accept loop ends (a stored permit, so it is never missed).
    pub stop: tokio::sync::Notify,
    /// True once the proxy stops (SIGTERM): nothing new is accepted, and each connection
    /// closes as soon as it has no request unanswered (`client::run`).
    pub draining: tokio::sync::watch::Sender<bool>,
    /// The passwords clients may AUTH with (common/src/auth.rs); the current data password
    /// is also the one the pool's new connections give the nodes.
    pub auth: Arc<ArcSwap<Passwords>>,
    /// Slots held because their node could not be reached, by node address; each address has
    /// one watcher task while it has any.
    unreachable: Mutex<std::collections::HashMap<String, std::collections::BTreeSet<(u32, u32)>>>,
}

/// What the proxy gives the nodes for data: the data password (their `userpass`), with
/// `AUTH <password>` (the form every node version takes); none without one.
pub fn data_credential(p: &Passwords) -> Option<Credential> {
    p.user.is_set().then(|| Credential::password(&p.user.current))
}

/// What the proxy gives the nodes for FLUSHDB/FLUSHALL: the admin user.
pub fn admin_credential(p: &Passwords) -> Option<Credential> {
    p.admin.is_set().then(|| Credential::admin(&p.admin.current))
}

pub fn error(text: &str) -> Bytes {
    let mut out = BytesMut::new();
    resp::write_error(&mut out, text);
    out.freeze()
}

fn encode(frame: &Frame) -> Bytes {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    out.freeze()
}

fn encode_args(args: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    resp::write_command(&mut out, args);
    out.freeze()
}

/// Whether a node's reply means "not executed here, ask again elsewhere".
fn refused(reply: &[u8]) -> bool {
    reply.strip_prefix(b"-").is_some_and(common::protocol::is_redirect)
}

impl Proxy {
    pub fn new(config: Config) -> Arc<Proxy> {
        let auth = Arc::new(ArcSwap::from_pointee(config.passwords()));
        let pool = Pool::new(config.pool_size, auth.clone());
        let holds = Mutex::new(Holds::new(config.hold_max_bytes));
        Arc::new(Proxy {
            config,
            routes: ArcSwap::from_pointee(Routes::default()),
            pool,
            holds,
            metrics: Metrics::default(),
            refreshing: tokio::sync::Mutex::new(None),
            shutdown: tokio::sync::Notify::new(),
            stop: tokio::sync::Notify::new(),
            draining: tokio::sync::watch::Sender::new(false),
            auth,
            unreachable: Mutex::new(Default::default()),
        })
    }

    /// A rotation of the data password: clients may AUTH with `password` or `previous`; new
    /// connections to the nodes use `password`. The admin password stays.
    pub fn set_passwords(&self, password: String, previous: String) {
        let admin = self.auth.load().admin.clone();
        self.auth.store(Arc::new(Passwords { admin, user: common::auth::Accepted::new(password, previous) }));
    }

    pub fn routes(&self) -> Arc<Routes> {
        self.routes.load_full()
    }

    fn publish(&self, routes: Routes) {
        self.metrics.route_epoch.set(routes.epoch as i64);
        self.routes.store(Arc::new(routes));
    }

    // ---- routing table ----

    /// Applies an operator update; held slots of that table are released to the new owners.
    pub fn set_route(self: &Arc<Self>, update: route::RouteUpdate) -> Result<(), route::RouteError> {
        let table = update.table;
        let next = self.routes().apply(update)?;
        tracing::info!(epoch = next.epoch, table, "route update");
        self.publish(next);
        self.release(table, None);
        Ok(())
    }

    /// Rebuilds the table from what the nodes report (seed nodes and every routed address).
    /// Concurrent callers share one rebuild.
    pub async fn refresh(self: &Arc<Self>) -> Result<(), String> {
        let started = Instant::now();
        let mut last = self.refreshing.lock().await;
        if last.is_some_and(|t| t >= started || started.duration_since(t) < REFRESH_DEBOUNCE) {
            return Ok(());
        }
        let current = self.routes();
        let mut addrs: Vec<String> = Vec::new();
        for seed in &self.config.seed_nodes {
            // A seed name may stand for many nodes (a headless Service has one address per
            // pod): every address is asked, so the seeds need not change as groups come and go.
            match tokio::net::lookup_host(seed.as_str()).await {
                Ok(resolved) => {
                    for a in resolved {
                        let a = a.to_string();
                        if !addrs.contains(&a) {
                            addrs.push(a);
                        }
                    }
                }
                Err(_) => addrs.push(seed.clone()),
            }
        }
        for t in current.tables.values() {
            for a in t.addrs() {
                if !addrs.contains(&a) {
                    addrs.push(a);
                }
            }
        }
        let mut reports = Vec::new();
        for addr in &addrs {
            match node_report(addr, data_credential(&self.auth.load()).as_ref()).await {
                Ok(r) => reports.push(r),
                Err(e) => tracing::debug!(%addr, error = %e, "node did not report"),
            }
        }
        *last = Some(Instant::now());
        self.metrics.refreshes.inc();
        if reports.is_empty() {
            return Err("no node answered".into());
        }
        let (next, conflicts) = route::from_reports(&current, &reports);
        if !conflicts.is_empty() {
            tracing::warn!(?conflicts, "several nodes accept writes for the same slots");
        }
        // Only over the table it was built from: an operator's route update that came in while
        // the nodes were asked is newer (a failover's routes were overwritten by a rebuild from
        // reports gathered before the successor was promoted).
        let previous = self.routes.compare_and_swap(&current, Arc::new(next));
        if Arc::ptr_eq(&*previous, &current) {
            self.metrics.route_epoch.set(self.routes().epoch as i64);
        }
        Ok(())
    }

    // ---- holds ----

    pub fn hold(&self, table: u32, slots: &[u32]) {
        self.holds.lock().hold(table, slots, Instant::now());
        self.update_hold_gauges();
    }

    /// Releases held slots and sends their parked requests on, in arrival order.
    pub fn release(self: &Arc<Self>, table: u32, slots: Option<&[u32]>) {
        let parked = self.holds.lock().release(table, slots);
        self.update_hold_gauges();
        for p in parked {
            let pending = self.dispatch(table, p.client, p.args);
            let reply = p.reply;
            tokio::spawn(async move {
                let _ = reply.send(resolve(pending).await);
            });
        }
    }

    /// Fails parked requests past their deadline and releases holds nobody released (an
    /// operator that died mid-cutover); run every few milliseconds.
    pub fn expire_holds(self: &Arc<Self>) {
        let now = Instant::now();
        let (expired, stale) = {
            let mut holds = self.holds.lock();
            (holds.expired(now), holds.stale(self.config.hold_expire, now))
        };
        for (slot, p) in expired {
            let text = format!("TRYAGAIN slot {slot} is held (a cutover or failover); timed out");
            let _ = p.reply.send(error(&text));
        }
        for (table, slot) in stale {
            tracing::warn!(table, slot, "hold expired without a release; releasing");
            self.release(table, Some(&[slot]));
        }
        self.update_hold_gauges();
    }

    /// Holds `slot` because its node `addr` cannot be reached, and watches that node: the slot
    /// is released once it is routed elsewhere (the operator's route push, or the nodes' own
    /// report after a failover) or the node answers again. Held requests that wait longer than
    /// `hold-timeout-ms` fail as for a cutover.
    fn hold_unreachable(self: &Arc<Self>, table: u32, slot: u32, addr: &str) {
        self.hold(table, &[slot]);
        let first = {
            let mut unreachable = self.unreachable.lock();
            let slots = unreachable.entry(addr.to_string()).or_default();
            let first = slots.is_empty();
            slots.insert((table, slot));
            first
        };
        if first {
            tracing::warn!(%addr, "node unreachable (or none routed): holding its slots until they are served");
            tokio::spawn(self.clone().watch_unreachable(addr.to_string()));
        }
    }

    /// [`Self::hold_unreachable`] and parks the request there (None: released meanwhile).
    fn park_unreachable(
        self: &Arc<Self>,
        table: u32,
        slot: u32,
        client: u64,
        args: &[Bytes],
        started: Instant,
        addr: &str,
    ) -> Option<Pending> {
        self.hold_unreachable(table, slot, addr);
        self.try_park(table, &[slot], client, args.to_vec(), started).ok()
    }

    /// Releases `addr`'s held slots once they are routed to another node, or all of them once
    /// it answers. (`addr` "" stands for "routed nowhere": released once routed anywhere.)
    async fn watch_unreachable(self: Arc<Self>, addr: String) {
        let mut back = false;
        while !back {
            tokio::time::sleep(Duration::from_millis(100)).await;
            back = !addr.is_empty() && common::client::alive(&addr).await;
            if !back {
                if let Err(e) = self.refresh().await {
                    tracing::debug!(error = %e, "refresh failed");
                }
            }
            let routes = self.routes();
            let (moved, done) = {
                let mut unreachable = self.unreachable.lock();
                let slots = unreachable.entry(addr.clone()).or_default();
                // Released by someone else (PXRELEASE, a route push): no longer ours.
                slots.retain(|&(t, s)| self.holds.lock().is_held(t, s));
                let moved: Vec<(u32, u32)> = slots
                    .iter()
                    .copied()
                    .filter(|&(t, s)| {
                        // Routed to another node. (A rebuilt table may route it nowhere for a
                        // while: the dead master does not report it, its successor not yet.)
                        let routed = routes.table(t).and_then(|r| r.addr(s));
                        back || routed.is_some_and(|other| other != addr)
                    })
                    .collect();
                slots.retain(|k| !moved.contains(k));
                let done = slots.is_empty();
                if done {
                    unreachable.remove(&addr);
                }
                (moved, done)
            };
            for (table, slot) in moved {
                self.release(table, Some(&[slot]));
            }
            if done {
                tracing::info!(%addr, answers = back, "slots held for an unreachable node released");
                return;
            }
        }
    }

    fn update_hold_gauges(&self) {
        let holds = self.holds.lock();
        self.metrics.held_slots.set(holds.held_slots() as i64);
        self.metrics.held_requests.set(holds.parked_count() as i64);
    }

    /// Parks a request if any of its slots is held; returns it back otherwise.
    fn try_park(
        &self,
        table: u32,
        slots: &[u32],
        client: u64,
        args: Vec<Bytes>,
        arrival: Instant,
    ) -> Result<Pending, Vec<Bytes>> {
        let mut holds = self.holds.lock();
        if !holds.any_held() {
            return Err(args);
        }
        let Some(&slot) = slots.iter().find(|&&s| holds.is_held(table, s)) else { return Err(args) };
        let (tx, rx) = oneshot::channel();
        let parked = Parked::new(args, client, arrival, Instant::now() + self.config.hold_timeout, tx);
        let pending = match holds.park(table, slot, parked) {
            Ok(()) => {
                Pending::Later(Box::pin(async move { rx.await.unwrap_or_else(|_| error("ERR proxy shutting down")) }))
            }
            Err(_) => {
                Pending::Ready(error(&format!("TRYAGAIN slot {slot} is held (a cutover or failover); hold queue full")))
            }
        };
        drop(holds);
        self.update_hold_gauges();
        Ok(pending)
    }

    // ---- requests ----

    /// Starts a keyed, split or fan-out request. Its first send happens before this returns,
    /// so requests of one client reach each node in the order they arrived.
    pub fn dispatch(self: &Arc<Self>, table: u32, client: u64, args: Vec<Bytes>) -> Pending {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        match commands::classify(&name) {
            Some(Kind::Keyed(keys)) => self.keyed(table, client, keys, args),
            Some(Kind::Split(merge)) => self.split(table, client, merge, args),
            Some(Kind::FanOut(how)) => self.fan_out(table, client, how, args),
            Some(Kind::Refused(text)) => Pending::Ready(error(text)),
            Some(Kind::Local(_) | Kind::Admin) => Pending::Ready(error("ERR internal: local command dispatched")),
            None => Pending::Ready(error(&format!("ERR unknown or unsupported command '{name}'"))),
        }
    }

    fn keyed(self: &Arc<Self>, table: u32, client: u64, keys: Keys, args: Vec<Bytes>) -> Pending {
        let numkeys = |at: usize| args.get(at).and_then(|a| std::str::from_utf8(a).ok()?.parse().ok());
        let Some(indices) = commands::key_indices(keys, args.len(), numkeys) else {
            let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
            return Pending::Ready(error(&format!("ERR wrong number of arguments for '{name}' command")));
        };
        // One snapshot of the routes for the whole request: a concurrent rebuild may drop a table.
        let routes = self.routes();
        let Some(route) = routes.table(table) else { return Pending::Ready(error("ERR Table not found")) };
        let slots: Vec<u32> = indices.iter().map(|&i| common::slot::key_slot(&args[i], route.slot_count)).collect();
        let first = route.addr(slots[0]);
        if slots.iter().any(|&s| route.addr(s) != first) {
            return Pending::Ready(error("CROSSSLOT Keys in request don't hash to the same group"));
        }
        let args = match self.try_park(table, &slots, client, args, Instant::now()) {
            Ok(parked) => return parked,
            Err(args) => args,
        };
        if commands::blocks(&String::from_utf8_lossy(&args[0]).to_ascii_lowercase()) {
            return self.blocking(table, first.map(str::to_string), args);
        }
        let request = encode_args(&args);
        let arrival = Instant::now();
        let first_try = first.map(|addr| self.pool.send(addr, table, client, request.clone()));
        let proxy = self.clone();
        let slot = slots[0];
        Pending::Later(Box::pin(
            async move { proxy.call(table, slot, client, (args, request), first_try, arrival).await },
        ))
    }

    /// A blocking pop on a connection of its own: on a shared pipelined connection it would
    /// stall every request queued behind it (the push that would wake it included).
    fn blocking(self: &Arc<Self>, table: u32, addr: Option<String>, args: Vec<Bytes>) -> Pending {
        let Some(addr) = addr else { return Pending::Ready(error("ERR no node serves this slot")) };
        let credential = data_credential(&self.auth.load());
        let proxy = self.clone();
        Pending::Later(Box::pin(async move {
            match common::client::request_raw(&addr, table, credential.as_ref(), &args, None).await {
                Ok(frame) => frame,
                Err(e) => {
                    proxy.metrics.backend_errors.inc();
                    error(&format!("ERR backend {addr} unavailable: {e}"))
                }
            }
        }))
    }

    /// One request to the owner of `slot`, retried while nodes refuse it (see module doc).
    async fn call(
        self: Arc<Self>,
        table: u32,
        slot: u32,
        client: u64,
        (args, request): (Vec<Bytes>, Bytes),
        mut attempt: Option<oneshot::Receiver<backend::BackendReply>>,
        started: Instant,
    ) -> Bytes {
        let mut backoff = Duration::from_millis(20);
        // Counted from the first refusal, not from the request's arrival: one that waited on a
        // stopped node, refused once it resumes (its lease ran out), still gets its retries.
        let mut refused_since: Option<Instant> = None;
        let retry_for = RETRY_FOR.max(self.config.hold_timeout);
        loop {
            let reply = match attempt.take() {
                Some(rx) => match rx.await {
                    Ok(Ok(frame)) => Some(frame),
                    Ok(Err(e)) if !e.sent => {
                        // Nothing reached the node: wait on its slot for a failover or its return.
                        self.metrics.backend_errors.inc();
                        if let Some(parked) = self.park_unreachable(table, slot, client, &args, started, &e.addr) {
                            return resolve(parked).await;
                        }
                        None // released meanwhile: route again
                    }
                    Ok(Err(e)) => {
                        self.metrics.backend_errors.inc();
                        return error(&format!("ERR {e}"));
                    }
                    Err(_) => return error("ERR proxy shutting down"),
                },
                // Routed nowhere (a rebuilt table while a failed master's successor is not
                // promoted yet): wait for a route as for an unreachable node.
                None => match self.park_unreachable(table, slot, client, &args, started, "") {
                    Some(parked) => return resolve(parked).await,
                    None => None,
                },
            };
            match reply {
                Some(frame) if !refused(&frame) => return frame,
                last if refused_since.get_or_insert_with(Instant::now).elapsed() >= retry_for => {
                    return last.unwrap_or_else(|| error(&format!("ERR no node serves slot {slot}")));
                }
                _ => {}
            }
            self.metrics.retries.inc();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
            if let Err(e) = self.refresh().await {
                tracing::debug!(error = %e, "refresh failed");
            }
            // A slot held meanwhile: wait for its release like any other request.
            if self.holds.lock().is_held(table, slot) {
                if let Ok(Pending::Later(parked)) = self.try_park(table, &[slot], client, args.clone(), started) {
                    return parked.await;
                }
            }
            let routes = self.routes();
            attempt = routes
                .table(table)
                .and_then(|t| t.addr(slot))
                .map(|addr| self.pool.send(addr, table, client, request.clone()));
        }
    }

    /// DEL/EXISTS/UNLINK/TOUCH, MGET, MSET: one sub-request per group, merged in key order.
    fn split(self: &Arc<Self>, table: u32, client: u64, merge: Merge, args: Vec<Bytes>) -> Pending {
        let step = if merge == Merge::Pairs { 2 } else { 1 };
        if args.len() < 2 || !(args.len() - 1).is_multiple_of(step) {
            let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
            return Pending::Ready(error(&format!("ERR wrong number of arguments for '{name}' command")));
        }
        let routes = self.routes();
        let Some(route) = routes.table(table) else { return Pending::Ready(error("ERR Table not found")) };
        let slots: Vec<u32> =
            args[1..].chunks(step).map(|kv| common::slot::key_slot(&kv[0], route.slot_count)).collect();
        let args = match self.try_park(table, &slots, client, args, Instant::now()) {
            Ok(parked) => return parked,
            Err(args) => args,
        };
        // Group the keys (by index) by the slot of their group's first key, so each part can be
        // retried on its own through `call`.
        let mut parts: Vec<(u32, Vec<usize>)> = Vec::new();
        for (i, &slot) in slots.iter().enumerate() {
            let addr = route.addr(slot);
            match parts.iter_mut().find(|(s, _)| route.addr(*s) == addr) {
                Some((_, keys)) => keys.push(i),
                None => parts.push((slot, vec![i])),
            }
        }
        if parts.len() == 1 {
            let request = encode_args(&args);
            let arrival = Instant::now();
            let first = route.addr(slots[0]).map(|a| self.pool.send(a, table, client, request.clone()));
            let proxy = self.clone();
            let slot = slots[0];
            return Pending::Later(Box::pin(async move {
                proxy.call(table, slot, client, (args, request), first, arrival).await
            }));
        }
        let mut calls = Vec::new();
        for (slot, keys) in &parts {
            let mut sub = vec![args[0].clone()];
            for &i in keys {
                sub.extend_from_slice(&args[1 + i * step..1 + (i + 1) * step]);
            }
            let request = encode_args(&sub);
            let first = route.addr(*slot).map(|a| self.pool.send(a, table, client, request.clone()));
            calls.push(self.clone().call(table, *slot, client, (sub, request), first, Instant::now()));
        }
        let total = slots.len();
        Pending::Later(Box::pin(async move {
            let mut replies = Vec::with_capacity(calls.len());
            for call in calls {
                replies.push(call.await);
            }
            merge_parts(merge, total, &parts, replies)
        }))
    }

    /// DBSIZE, FLUSHDB/FLUSHALL, TIME: sent to every group of the current table. FLUSHDB and
    /// FLUSHALL are admin commands on the nodes too: sent on connections of their own with the
    /// admin credential (the pool's speak for the data user), once the client proved to be admin.
    fn fan_out(self: &Arc<Self>, table: u32, client: u64, how: FanOut, args: Vec<Bytes>) -> Pending {
        let addrs = self.routes().table(table).map(|t| t.addrs()).unwrap_or_default();
        if addrs.is_empty() {
            return Pending::Ready(error("ERR no node is routed for this table"));
        }
        let request = encode_args(&args);
        type Call = Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send>>;
        let calls: Vec<Call> = match how {
            FanOut::AllOk => {
                let credential = admin_credential(&self.auth.load());
                addrs
                    .iter()
                    .map(|a| {
                        let (addr, credential, args) = (a.to_string(), credential.clone(), args.clone());
                        Box::pin(async move {
                            common::client::request_raw(&addr, table, credential.as_ref(), &args, None).await
                        }) as Call
                    })
                    .collect()
            }
            _ => addrs
                .iter()
                .map(|a| {
                    let rx = self.pool.send(a, table, client, request.clone());
                    Box::pin(async move {
                        match rx.await {
                            Ok(Ok(frame)) => Ok(frame),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err("proxy shutting down".into()),
                        }
                    }) as Call
                })
                .collect(),
        };
        Pending::Later(Box::pin(async move {
            let mut frames = Vec::new();
            for call in calls {
                match call.await {
                    Ok(frame) => frames.push(frame),
                    Err(e) => return error(&format!("ERR {e}")),
                }
            }
            if let Some(err) = frames.iter().find(|f| f.starts_with(b"-")) {
                return err.clone();
            }
            match how {
                FanOut::Any => frames.swap_remove(0),
                FanOut::AllOk => encode(&Frame::Simple("OK".into())),
                FanOut::Sum => encode(&Frame::Integer(frames.iter().map(integer).sum())),
            }
        }))
    }
}

fn integer(frame: &Bytes) -> i64 {
    match resp::decode_reply(frame) {
        Frame::Integer(n) => n,
        _ => 0,
    }
}

/// Merges the parts of a split command. The first error reply wins (as a node would answer).
fn merge_parts(merge: Merge, total: usize, parts: &[(u32, Vec<usize>)], replies: Vec<Bytes>) -> Bytes {
    if let Some(err) = replies.iter().find(|r| r.starts_with(b"-")) {
        return err.clone();
    }
    match merge {
        Merge::Sum => encode(&Frame::Integer(replies.iter().map(integer).sum())),
        Merge::Pairs => encode(&Frame::Simple("OK".into())),
        Merge::PerKey => {
            let mut values = vec![Frame::Null; total];
            for ((_, keys), reply) in parts.iter().zip(&replies) {
                let Frame::Array(items) = resp::decode_reply(reply) else {
                    return error("ERR unexpected MGET reply from a node");
                };
                for (&i, item) in keys.iter().zip(items) {
                    values[i] = item;
                }
            }
            encode(&Frame::Array(values))
        }
    }
}

/// Awaits a request's answer.
pub async fn resolve(pending: Pending) -> Bytes {
    match pending {
        Pending::Ready(b) => b,
        Pending::Later(f) => f.await,
    }
}

/// Asks a node which slots it accepts writes for (`pkcluster writable`).
async fn node_report(addr: &str, credential: Option<&Credential>) -> Result<NodeReport, String> {
    let frame =
        common::client::request_within(addr, credential, &["pkcluster", "writable"], common::client::PROBE_TIMEOUT)
            .await?;
    let Frame::Array(tables) = frame else { return Err(format!("unexpected reply {frame:?}")) };
    let mut out = Vec::new();
    for t in tables {
        let Frame::Array(fields) = t else { return Err("unexpected table entry".into()) };
        match fields.as_slice() {
            [Frame::Integer(id), Frame::Integer(count), Frame::Bulk(slots)] => {
                let slots = common::slotset::parse_slots(&String::from_utf8_lossy(slots)).map_err(|e| e.to_string())?;
                out.push((*id as u32, *count as u32, slots));
            }
            _ => return Err("unexpected table entry".into()),
        }
    }
    Ok(NodeReport { addr: addr.to_string(), tables: out })
}
