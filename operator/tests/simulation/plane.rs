//! The simulated cluster behind the operator's [`DataPlane`] seam. Every call is a scheduling
//! point: the world moves on (clients write, replicas stream, faults strike), the operator may
//! crash right there, and after the call the invariants are checked.

use std::future::Future;
use std::sync::{Arc, Mutex};

use common::pkinfo::SlotInfo;
use pika_operator::admin::{AdminResult, DataPlane, RouteTable, Routes};
use rand::Rng;
use tokio::sync::Notify;

use crate::world::World;

#[derive(Clone)]
pub struct SimPlane {
    pub world: Arc<Mutex<World>>,
    /// Notified when the operator crashes (the driver drops it and starts a fresh one).
    pub crashed: Arc<Notify>,
    pub start: tokio::time::Instant,
}

impl SimPlane {
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let mut w = self.world.lock().expect("world");
        w.now_ms = self.now_ms();
        f(&mut w)
    }

    /// A point where the operator may crash (before the action named `what`).
    pub async fn crash_point(&self, what: &str) {
        let crash = self.with(|w| {
            let crash = w.chaos && w.enabled.contains("crash") && w.rng.random_bool(w.crash_rate);
            if crash {
                w.crash_requested = true;
                *w.faults.entry("operator crash").or_default() += 1;
                w.log(format!("OPERATOR CRASH before {what}"));
            }
            crash
        });
        if crash {
            self.crashed.notify_one();
            std::future::pending::<()>().await;
        }
    }

    async fn call<T: std::fmt::Debug>(&self, what: String, f: impl FnOnce(&mut World) -> T) -> T {
        tokio::task::yield_now().await;
        self.with(|w| {
            w.calls += 1;
            crate::chaos::between_calls(w);
        });
        self.crash_point(&what).await;
        self.with(|w| {
            let r = f(w);
            w.log(format!("{what} -> {r:?}"));
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
