//! The simulated cluster behind the operator's [`DataPlane`] seam. Every call is a scheduling
//! point: the world moves on (clients write, replicas stream, faults strike), the operator may
//! crash right there, and after the call the invariants are checked.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pkinfo::SlotInfo;
use pika_operator::admin::{AdminError, AdminResult, DataPlane, RouteTable, Routes};
use pika_operator::authority::Authority;
use rand::Rng;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;

use crate::operator::{LEASE_MS, RENEW_DEADLINE_MS};
use crate::world::World;

impl Instance {
    fn new(id: u32) -> Arc<Instance> {
        let authority = Authority::leased(Duration::from_millis(RENEW_DEADLINE_MS));
        Arc::new(Instance { id, authority, killed: Notify::new() })
    }
}

/// What a call returns when the operator's authority lapsed before it was sent.
pub trait Lapsed {
    fn lapsed(what: &str) -> Self;
}

impl Lapsed for bool {
    fn lapsed(_: &str) -> bool {
        false
    }
}

impl<T> Lapsed for AdminResult<T> {
    fn lapsed(what: &str) -> Self {
        Err(AdminError::Unreachable { addr: what.into(), text: Authority::LAPSED.into() })
    }
}

/// One operator process of the simulation.
pub struct Instance {
    /// Its identity in the leader Lease.
    pub id: u32,
    /// What the production code checks before it sends anything (`Authority`).
    pub authority: Authority,
    /// Notified when this process dies (a crash).
    pub killed: Notify,
}

/// Asks the driver to start an operator process with identity `id` in `after_ms`.
pub struct Respawn {
    pub id: u32,
    pub after_ms: u64,
}

#[derive(Clone)]
pub struct SimPlane {
    pub world: Arc<Mutex<World>>,
    pub start: tokio::time::Instant,
    /// The operator process making the calls.
    pub op: Arc<Instance>,
    pub respawn: UnboundedSender<Respawn>,
}

impl SimPlane {
    pub fn new(world: World, respawn: UnboundedSender<Respawn>) -> SimPlane {
        let world = Arc::new(Mutex::new(world));
        SimPlane { world, start: tokio::time::Instant::now(), op: Instance::new(0), respawn }
    }

    /// The same world seen by another operator process.
    pub fn for_instance(&self, id: u32) -> SimPlane {
        SimPlane { op: Instance::new(id), ..self.clone() }
    }

    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let mut w = self.world.lock().expect("world");
        w.now_ms = self.now_ms();
        f(&mut w)
    }

    /// Until when this operator process is stopped (None: it runs).
    pub fn paused_for(&self) -> Option<Duration> {
        let now = self.now_ms();
        self.with(|w| w.paused.get(&self.op.id).copied()).filter(|&u| u > now).map(|u| Duration::from_millis(u - now))
    }

    /// A point where the operator may crash, or be stopped past its Lease (then a standby takes
    /// the Lease over), before the action named `what`. A stopped process resumes here.
    pub async fn crash_point(&self, what: &str) {
        if let Some(left) = self.paused_for() {
            tokio::time::sleep(left).await;
        }
        let id = self.op.id;
        let fault = self.with(|w| {
            if !w.chaos {
                return None;
            }
            if w.enabled.contains("crash") && w.rng.random_bool(w.crash_rate) {
                *w.faults.entry("operator crash").or_default() += 1;
                w.log(format!("OPERATOR {id} CRASH before {what}"));
                return Some((true, w.rng.random_range(100..3_000)));
            }
            if w.enabled.contains("lose-lease") && w.rng.random_bool(w.crash_rate / 2.0) && w.paused.len() < 4 {
                let ms = w.rng.random_range(LEASE_MS / 2..3 * LEASE_MS);
                *w.faults.entry("operator stopped past its lease").or_default() += 1;
                w.next_instance += 1;
                w.log(format!("OPERATOR {id} STOPPED for {ms}ms before {what}; operator {} starts", w.next_instance));
                w.paused.insert(id, w.now_ms + ms);
                return Some((false, ms));
            }
            None
        });
        match fault {
            None => {}
            Some((true, restart_after)) => {
                // The same pod restarts: the same identity, which takes its Lease back at once.
                let _ = self.respawn.send(Respawn { id, after_ms: restart_after });
                self.op.killed.notify_one();
                std::future::pending::<()>().await;
            }
            Some((false, stopped)) => {
                // A standby (another replica of the Deployment) waits for the Lease meanwhile.
                let standby = self.with(|w| w.next_instance);
                let _ = self.respawn.send(Respawn { id: standby, after_ms: 0 });
                tokio::time::sleep(Duration::from_millis(stopped)).await;
            }
        }
    }

    async fn call<T: std::fmt::Debug + Lapsed>(&self, what: String, f: impl FnOnce(&mut World) -> T) -> T {
        tokio::task::yield_now().await;
        self.with(|w| {
            w.calls += 1;
            crate::chaos::between_calls(w);
        });
        self.crash_point(&what).await;
        self.with(|w| {
            // Checked right before the request goes out, as `Admin` does.
            if std::env::var("SIM_NO_AUTH").is_err() && !self.op.authority.valid() {
                w.log(format!("{what}: not sent, operator {} lapsed", self.op.id));
                return T::lapsed(&what);
            }
            let r = f(w);
            w.log(format!("{what} -> {r:?}"));
            if let Some((_, addr)) = w.cut_after_call.take_if(|(call, _)| what.starts_with(call.as_str())) {
                w.log(format!("{addr} cut off from the operator"));
                w.cut_off(&addr, u64::MAX);
            }
            w.check_one_writer(&what);
            r
        })
    }
}

impl DataPlane for SimPlane {
    fn answers(&self, addr: &str) -> impl Future<Output = bool> + Send {
        self.call(format!("ping {addr}"), move |w| w.answers(addr))
    }

    fn add_slots_once(&self, node: &str, slots: &str) -> impl Future<Output = AdminResult<()>> + Send {
        self.call(format!("addslots {node} {slots}"), move |w| w.add_slots(node, slots))
    }

    fn del_slots_once(&self, node: &str, slots: &str) -> impl Future<Output = AdminResult<()>> + Send {
        self.call(format!("delslots {node} {slots}"), move |w| w.del_slots(node, slots))
    }

    fn slaveof(
        &self,
        node: &str,
        master: Option<&str>,
        slots: &str,
        force: bool,
    ) -> impl Future<Output = AdminResult<()>> + Send {
        let what =
            format!("slaveof {node} {} {slots}{}", master.unwrap_or("no one"), if force { " force" } else { "" });
        self.call(what, move |w| w.slaveof(node, master, slots, force))
    }

    fn follow_to_move(&self, node: &str, master: &str, slots: &str) -> impl Future<Output = AdminResult<()>> + Send {
        let what = format!("slaveof {node} {master} {slots} noack");
        self.call(what, move |w| w.follow_to_move(node, master, slots))
    }

    fn fence(&self, node: &str, slots: &str) -> impl Future<Output = AdminResult<()>> + Send {
        self.call(format!("fence {node} {slots}"), move |w| w.fence(node, slots, true))
    }

    fn unfence(&self, node: &str, slots: &str) -> impl Future<Output = AdminResult<()>> + Send {
        self.call(format!("unfence {node} {slots}"), move |w| w.fence(node, slots, false))
    }

    fn slot_info(&self, node: &str, slots: &str) -> impl Future<Output = AdminResult<Vec<SlotInfo>>> + Send {
        self.call(format!("info {node} {slots}"), move |w| w.slot_info(node, slots).map(Quiet)).map_quiet()
    }

    fn writable(&self, node: &str) -> impl Future<Output = AdminResult<Vec<u32>>> + Send {
        self.call(format!("writable {node}"), move |w| w.writable(node))
    }

    fn lease(&self, node: &str, ms: u64) -> impl Future<Output = AdminResult<()>> + Send {
        self.call(format!("lease {node} {ms}"), move |w| w.lease(node, ms))
    }

    fn hold(&self, proxy: &str, slots: &str) -> impl Future<Output = AdminResult<()>> + Send {
        self.call(format!("hold {proxy} {slots}"), move |w| w.hold(proxy, slots, true))
    }

    fn release(&self, proxy: &str, slots: &str) -> impl Future<Output = AdminResult<()>> + Send {
        self.call(format!("release {proxy} {slots}"), move |w| w.hold(proxy, slots, false))
    }

    fn set_route(
        &self,
        proxy: &str,
        epoch: u64,
        _slot_count: u32,
        routes: &Routes,
    ) -> impl Future<Output = AdminResult<()>> + Send {
        self.call(format!("route {proxy} {epoch} {routes:?}"), move |w| w.set_route(proxy, epoch, routes))
    }

    fn route_table(&self, proxy: &str) -> impl Future<Output = AdminResult<RouteTable>> + Send {
        self.call(format!("routes of {proxy}"), move |w| w.route_table(proxy))
    }
}

/// Slot info is long: the trace shows only how many slots came back.
pub struct Quiet(Vec<SlotInfo>);

impl std::fmt::Debug for Quiet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} slots", self.0.len())
    }
}

trait MapQuiet {
    fn map_quiet(self) -> impl Future<Output = AdminResult<Vec<SlotInfo>>> + Send;
}

impl<F: Future<Output = AdminResult<Quiet>> + Send> MapQuiet for F {
    fn map_quiet(self) -> impl Future<Output = AdminResult<Vec<SlotInfo>>> + Send {
        async move { self.await.map(|q| q.0) }
    }
}
