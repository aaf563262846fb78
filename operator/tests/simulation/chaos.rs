//! What happens in the world while the operator works: clients write all the time, replicas
//! stream, and (while chaos is on) faults strike at random scheduling points.

use std::time::Duration;

use rand::Rng;

use crate::plane::SimPlane;
use crate::world::{Link, Role, World};

/// Work done at every scheduling point.
pub fn between_calls(w: &mut World) {
    clients(w);
    if w.rng.random_bool(0.3) {
        w.tick();
    }
    if w.chaos && w.fault_rate > 0.0 && w.rng.random_bool(w.fault_rate) {
        inject(w);
    }
}

fn clients(w: &mut World) {
    for _ in 0..w.rng.random_range(0..3) {
        let p = w.rng.random_range(0..w.proxies.len());
        w.client_write(p);
    }
}

/// The world's own clock: every 100 ms of virtual time, whatever the operator does.
pub async fn run(plane: SimPlane, until_ms: u64) {
    while plane.now_ms() < until_ms {
        tokio::time::sleep(Duration::from_millis(100)).await;
        plane.with(|w| {
            w.tick();
            clients(w);
            if w.chaos && w.rng.random_bool((w.fault_rate * 5.0).min(1.0)) {
                inject(w);
            }
            w.check_one_writer("world tick");
        });
    }
}

/// The kinds of fault, by the names `SIM_FAULTS` takes.
pub const FAULTS: [&str; 7] =
    ["kill-master", "kill-master", "kill-replica", "cut-off", "miss-update", "proxy-restart", "full-sync"];

/// One fault, chosen by the seed.
pub fn inject(w: &mut World) {
    let dead = w.nodes.values().filter(|n| !n.alive).count();
    let kind = w.rng.random_range(0..7);
    if !w.enabled.contains(FAULTS[kind]) {
        return;
    }
    match kind {
        0..=2 if dead < 2 => {
            // Kill a master (0, 1) or a replica (2); it comes back after 1-15 s, fenced.
            let want_master = kind < 2;
            let candidates: Vec<String> = w
                .nodes
                .values()
                .filter(|n| n.alive && n.slots.values().any(|s| (s.role == Role::Master) == want_master))
                .map(|n| n.addr.clone())
                .collect();
            if candidates.is_empty() {
                return;
            }
            let addr = candidates[w.rng.random_range(0..candidates.len())].clone();
            let down = w.rng.random_range(1_000..15_000);
            w.log(format!("FAULT kill {addr} for {down}ms"));
            *w.faults.entry(if want_master { "kill master" } else { "kill replica" }).or_default() += 1;
            w.kill(&addr, down);
        }
        3 => {
            let alive: Vec<String> =
                w.nodes.values().filter(|n| n.alive && !n.cut_off).map(|n| n.addr.clone()).collect();
            if alive.is_empty() {
                return;
            }
            let addr = alive[w.rng.random_range(0..alive.len())].clone();
            let until = w.now_ms + w.rng.random_range(2_000..12_000);
            w.log(format!("FAULT {addr} cut off from the operator until {until}ms"));
            *w.faults.entry("node cut off").or_default() += 1;
            w.cut_off(&addr, until);
        }
        4 => {
            let p = w.rng.random_range(0..w.proxies.len());
            w.log(format!("FAULT proxy {p} misses its next route update"));
            *w.faults.entry("proxy misses update").or_default() += 1;
            w.proxies[p].miss_next_update = true;
        }
        5 => {
            let p = w.rng.random_range(0..w.proxies.len());
            w.log(format!("FAULT proxy {p} restarts"));
            *w.faults.entry("proxy restart").or_default() += 1;
            w.restart_proxy(p);
        }
        _ => {
            // A replica slot loses its place and needs a full sync.
            let streaming = w.replica_slots(|l| *l == Link::Streaming);
            if streaming.is_empty() {
                return;
            }
            let (addr, id) = streaming[w.rng.random_range(0..streaming.len())].clone();
            w.log(format!("FAULT replica {addr} slot {id} falls back to a full sync"));
            *w.faults.entry("replica full sync").or_default() += 1;
            let slot = w.nodes.get_mut(&addr).and_then(|n| n.slots.get_mut(&id)).expect("slot");
            if let Role::Replica { link, .. } = &mut slot.role {
                *link = Link::Connecting { force_full: true };
            }
        }
    }
}
