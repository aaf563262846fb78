//! The faults, and a seeded schedule of them. Each fault is injected into a whole cluster (the
//! runner waits for every member, master and replica link to be back before the next), so a
//! loss is the system's doing, not two faults beyond what one replica per group can survive.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use pika_operator::crd::CutoverStep;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

use super::check::MasterFault;
use super::cluster::{signal, LocalCluster, FAILOVER_AFTER_SECONDS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// `kill -9` of a group's master.
    KillMaster,
    /// `kill -9` of a group's master while writes are in flight and its replica is behind: the
    /// replica is throttled for a while, and the master killed while the replica is stopped.
    KillMasterLagging,
    /// `kill -9` of a replica.
    KillReplica,
    /// `kill -9` of the proxy (the operator starts a new one).
    KillProxy,
    /// `kill -9` of the operator, started again at once (as a Deployment would).
    KillOperator,
    /// The operator aborts at a chosen cutover step of a move this fault starts.
    CrashAtStep,
    /// SIGSTOP of a master for longer than the failover wait, then SIGCONT: alive but silent,
    /// then back with requests still queued to it.
    StopMaster,
    /// A replica stopped and continued many times a second for a while.
    ThrottleReplica,
    /// The manifest's group count raised or lowered by one: slots move.
    Scale,
}

impl Fault {
    pub const ALL: [Fault; 9] = [
        Fault::KillMaster,
        Fault::KillMasterLagging,
        Fault::KillReplica,
        Fault::KillProxy,
        Fault::KillOperator,
        Fault::CrashAtStep,
        Fault::StopMaster,
        Fault::ThrottleReplica,
        Fault::Scale,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillMaster => "kill-master",
            Fault::KillMasterLagging => "kill-master-lagging",
            Fault::KillReplica => "kill-replica",
            Fault::KillProxy => "kill-proxy",
            Fault::KillOperator => "kill-operator",
            Fault::CrashAtStep => "crash-at-step",
            Fault::StopMaster => "stop-master",
            Fault::ThrottleReplica => "throttle-replica",
            Fault::Scale => "scale",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Fault, String> {
        Fault::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
            format!("unknown fault {s:?} (one of: {})", names.join(", "))
        })
    }
}

/// Slots per cutover for an operator start: single slots or ranges.
const BATCHES: [usize; 3] = [1, 4, 16];

/// Injects faults on one cluster and keeps the account.
pub struct Injector {
    rng: StdRng,
    pub enabled: Vec<Fault>,
    /// The group count the cluster starts with; scaling moves between it and one more.
    groups: u32,
    pub done: BTreeMap<Fault, u32>,
    /// Faults chosen but not possible at that moment (no master to kill during a handover...).
    pub skipped: u32,
    pub master_faults: Vec<MasterFault>,
}

impl Injector {
    pub fn new(rng: StdRng, enabled: Vec<Fault>, groups: u32) -> Injector {
        Injector { rng, enabled, groups, done: BTreeMap::new(), skipped: 0, master_faults: Vec::new() }
    }

    pub fn total(&self) -> u32 {
        self.done.values().sum()
    }

    /// A pause before the next fault.
    pub fn gap(&mut self) -> Duration {
        Duration::from_millis(self.rng.random_range(500..4000))
    }

    /// Starts the operator again, moving a random batch size of slots per cutover.
    pub fn restart_operator(&mut self, cluster: &mut LocalCluster, crash_at: Option<&str>) -> Result<(), String> {
        let batch = *BATCHES.choose(&mut self.rng).expect("batches");
        cluster.start_operator(crash_at, batch)
    }

    /// Injects one fault; returns what was done (None: skipped).
    pub fn inject(&mut self, cluster: &mut LocalCluster) -> Result<Option<String>, String> {
        let fault = *self.enabled.choose(&mut self.rng).expect("at least one fault");
        let group = self.rng.random_range(0..cluster.groups);
        let what = match fault {
            Fault::KillMaster | Fault::StopMaster => {
                let Some((port, slots)) = cluster.master(group) else { return Ok(self.skip()) };
                let Some(pid) = cluster.pid(port) else { return Ok(self.skip()) };
                let slots: HashSet<u32> = slots.into_iter().collect();
                if fault == Fault::KillMaster {
                    signal(pid, "-9");
                    self.master_faults.push(MasterFault { at: Instant::now(), slots });
                    format!("killed the master of g{group} (port {port})")
                } else {
                    cluster.stop(pid);
                    self.master_faults.push(MasterFault { at: Instant::now(), slots });
                    // Well past the operator's wait before it promotes (failoverAfterSeconds, its
                    // lease having run out by then, noticed within a pass or two).
                    let silent = Duration::from_secs(FAILOVER_AFTER_SECONDS.max(6) * 2 + 3);
                    std::thread::sleep(silent);
                    cluster.resume(pid);
                    format!("stopped the master of g{group} (port {port}) for {}s", silent.as_secs())
                }
            }
            Fault::KillMasterLagging => {
                let Some((port, slots)) = cluster.master(group) else { return Ok(self.skip()) };
                let Some(pid) = cluster.pid(port) else { return Ok(self.skip()) };
                let replicas = cluster.replicas_of(group);
                let Some(&replica) = replicas.choose(&mut self.rng) else { return Ok(self.skip()) };
                let Some(replica_pid) = cluster.pid(replica) else { return Ok(self.skip()) };
                // Big writes to the group while its replica is throttled: what the replica has
                // not received is more than the sockets between them buffer.
                let ballast = Ballast::start(&cluster.proxy_addr(), &slots, cluster.slots);
                throttle(cluster, replica_pid, Duration::from_secs(2));
                // Stopped, hence behind, when its master dies.
                cluster.stop(replica_pid);
                std::thread::sleep(Duration::from_millis(300));
                signal(pid, "-9");
                ballast.stop();
                self.master_faults.push(MasterFault { at: Instant::now(), slots: slots.into_iter().collect() });
                std::thread::sleep(Duration::from_millis(700));
                cluster.resume(replica_pid);
                // Its host stays down until the operator has replaced it: the runtime's restart
                // of the process is killed too (otherwise it comes back, with every write, before
                // the failover wait ends, and nothing is at stake).
                keep_down(cluster, port, Duration::from_secs(FAILOVER_AFTER_SECONDS + 3));
                format!("killed the master of g{group} (port {port}) with its replica (port {replica}) behind")
            }
            Fault::KillReplica | Fault::ThrottleReplica => {
                let replicas = cluster.replicas_of(group);
                let Some(&port) = replicas.choose(&mut self.rng) else { return Ok(self.skip()) };
                let Some(pid) = cluster.pid(port) else { return Ok(self.skip()) };
                if fault == Fault::KillReplica {
                    signal(pid, "-9");
                    format!("killed a replica of g{group} (port {port})")
                } else {
                    throttle(cluster, pid, Duration::from_secs(5));
                    format!("throttled a replica of g{group} (port {port}) for 5s")
                }
            }
            Fault::KillProxy => {
                let Some(pid) = cluster.pid(cluster.proxy) else { return Ok(self.skip()) };
                signal(pid, "-9");
                "killed the proxy".to_string()
            }
            Fault::KillOperator => {
                cluster.kill_operator();
                self.restart_operator(cluster, None)?;
                "killed the operator (started again)".to_string()
            }
            Fault::CrashAtStep => {
                let steps: Vec<CutoverStep> =
                    CutoverStep::ALL.into_iter().filter(|s| *s != CutoverStep::Rollback).collect();
                let step = *steps.choose(&mut self.rng).expect("steps");
                cluster.kill_operator();
                self.restart_operator(cluster, Some(step.as_str()))?;
                let groups = self.other_group_count(cluster);
                cluster.set_groups(groups)?;
                format!("operator set to abort at `{step}`; groups -> {groups}")
            }
            Fault::Scale => {
                let groups = self.other_group_count(cluster);
                cluster.set_groups(groups)?;
                format!("groups -> {groups}")
            }
        };
        *self.done.entry(fault).or_default() += 1;
        Ok(Some(format!("{fault}: {what}")))
    }

    fn other_group_count(&self, cluster: &LocalCluster) -> u32 {
        if cluster.groups > self.groups {
            self.groups
        } else {
            self.groups + 1
        }
    }

    fn skip(&mut self) -> Option<String> {
        self.skipped += 1;
        None
    }
}

/// Stops and continues a process four times a second for `how_long`: it falls behind.
fn throttle(cluster: &mut LocalCluster, pid: u32, how_long: Duration) {
    let until = Instant::now() + how_long;
    while Instant::now() < until {
        cluster.stop(pid);
        std::thread::sleep(Duration::from_millis(150));
        cluster.resume(pid);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills whatever process answers on `port` for `how_long` (a host that stays down).
fn keep_down(cluster: &LocalCluster, port: u16, how_long: Duration) {
    let until = Instant::now() + how_long;
    while Instant::now() < until {
        if let Some(pid) = cluster.pid(port) {
            signal(pid, "-9");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A writer of 256 KiB values to keys of some slots (not part of the checked history): it keeps
/// a master's replication stream full.
struct Ballast {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Ballast {
    fn start(proxy: &str, slots: &[u32], slot_count: u32) -> Ballast {
        let keys: Vec<String> = (0..)
            .map(|i| format!("chaos:ballast:{i}"))
            .filter(|k| slots.contains(&common::slot::key_slot(k.as_bytes(), slot_count)))
            .take(8)
            .collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let url = format!("redis://{proxy}/");
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let value = vec![b'b'; 256 << 10];
                let Ok(mut conn) = redis::Client::open(url).and_then(|c| c.get_connection()) else { return };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                for key in keys.iter().cycle() {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    if redis::cmd("SET").arg(key).arg(&value).query::<()>(&mut conn).is_err() {
                        return;
                    }
                }
            })
        };
        Ballast { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.thread.join();
    }
}
