//! The operator as the Kubernetes runtime runs it, over the simulated cluster: the cluster pass
//! (`control::pass`, every second) and the migration controller (one batch at a time, each
//! cutover step recorded before it acts, resumed from the record after a crash), running
//! concurrently. What survives an operator crash is what Kubernetes would keep: the cluster's
//! status (groups, masters, demoted) and the migrations' status.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;

use common::slotset::format_slots;
use pika_operator::control::{self, Cluster, GroupRecord, InFlight, Member, NextBatch, Record};
use pika_operator::crd::SwitchoverStatus;
use pika_operator::cutover::{self, CutoverError, CutoverStep, Limits, Steps};
use pika_operator::dataplane;
use pika_operator::rollout::{self, Rolled};
use pika_operator::switchover::{self, Driven};

use crate::plane::SimPlane;
use crate::world::World;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Succeeded,
    Failed,
}

/// A SlotMigration: its spec and its status.
#[derive(Debug, Clone)]
pub struct Migration {
    pub name: String,
    pub slots: Vec<u32>,
    pub target: u32,
    pub phase: Phase,
    pub batch: Vec<u32>,
    pub from: Option<u32>,
    pub step: Option<CutoverStep>,
    pub attempts: u32,
    /// Slots moved so far (`status.slotsDone`).
    pub done: Vec<u32>,
    /// Its resourceVersion: every status write checks it (and bumps it).
    pub version: u64,
}

/// What the API server keeps.
#[derive(Debug, Default)]
pub struct Stored {
    pub spec_groups: u32,
    /// `spec.replicas`: replicas per group.
    pub spec_replicas: u32,
    pub groups: BTreeMap<u32, GroupRecord>,
    pub migrations: Vec<Migration>,
    pub created: u32,
    /// The last pass's verdict (for the final check).
    pub balanced: Option<bool>,
    pub degraded: Option<String>,
    pub lease: SimLease,
    /// The cluster status's resourceVersion.
    pub status_version: u64,
    /// The switchover annotation, and the status of the last switchover.
    pub switchover: Option<String>,
    pub switchover_status: Option<SwitchoverStatus>,
    /// `spec.image`: the template every group's pods should run.
    pub spec_image: u32,
}

pub type Api = Arc<Mutex<Stored>>;

/// The leader Lease, scaled to the simulation (production: 15 s, renewed every 5 s, a renewal
/// deadline of 10 s).
pub const LEASE_MS: u64 = 6_000;
pub const RENEW_EVERY_MS: u64 = 2_000;
pub const RENEW_DEADLINE_MS: u64 = 4_000;

/// The Lease object as the API server keeps it.
#[derive(Debug, Default)]
pub struct SimLease {
    pub holder: Option<u32>,
    pub renewed_ms: u64,
}

impl SimLease {
    /// As `k8s::lease::LeaseLock::try_acquire`: renewed by its holder, taken once expired.
    fn try_acquire(&mut self, id: u32, now: u64) -> bool {
        let free = self.holder.is_none_or(|h| h == id) || now.saturating_sub(self.renewed_ms) > LEASE_MS;
        if free {
            self.holder = Some(id);
            self.renewed_ms = now;
        }
        free
    }
}

/// One operator process as `k8s::run` runs it: it waits for the leader Lease, then runs both
/// controllers while it renews the Lease; it stops once a renewal finds the Lease taken. Its
/// authority (checked before every data-plane call) runs out `RENEW_DEADLINE_MS` after its last
/// renewal began.
pub async fn instance(plane: SimPlane, api: Api, until_ms: u64) {
    let op = plane.op.clone();
    loop {
        if plane.now_ms() >= until_ms {
            return;
        }
        let began = tokio::time::Instant::now();
        if api.lock().expect("api").lease.try_acquire(op.id, plane.now_ms()) {
            op.authority.renewed(began);
            break;
        }
        tokio::time::sleep(Duration::from_millis(RENEW_EVERY_MS)).await;
    }
    plane.with(|w| w.log(format!("operator {} leads", op.id)));
    tokio::select! {
        biased;
        _ = op.killed.notified() => {}
        _ = renew(&plane, &api) => plane.with(|w| w.log(format!("operator {} finds its Lease taken: stops", op.id))),
        _ = run(plane.clone(), api.clone(), until_ms) => {}
    }
}

async fn renew(plane: &SimPlane, api: &Api) {
    let op = &plane.op;
    loop {
        tokio::time::sleep(Duration::from_millis(RENEW_EVERY_MS)).await;
        if let Some(left) = plane.paused_for() {
            // Stopped: it renews once it runs again, on its timer's next tick; its in-flight work
            // runs meanwhile.
            let tick = plane.with(|w| w.rng.random_range(0..RENEW_EVERY_MS));
            tokio::time::sleep(left + Duration::from_millis(tick)).await;
        }
        let began = tokio::time::Instant::now();
        if !api.lock().expect("api").lease.try_acquire(op.id, plane.now_ms()) {
            op.authority.revoke();
            return;
        }
        op.authority.renewed(began);
    }
}

/// Starts the nodes of groups `0..groups` that have none (as applying their StatefulSets), on
/// the spec's image.
pub fn apply_groups(w: &mut World, groups: u32, replicas: u32, image: u32) {
    for g in 0..groups {
        if !w.nodes.values().any(|n| n.group == g) {
            for m in 0..=replicas {
                w.add_node(g, m);
                w.nodes.get_mut(&crate::world::node_addr(g, m)).expect("added").image = image;
            }
        }
    }
}

/// The members of each group that runs (the sim's StatefulSets): a node that is down has no
/// address, as a pod that is not running has no IP.
fn observe(plane: &SimPlane, api: &Api) -> Cluster {
    let stored = api.lock().expect("api");
    plane.with(|w| {
        let mut members: BTreeMap<u32, Vec<Member>> = BTreeMap::new();
        for n in w.nodes.values() {
            let addr = n.alive.then(|| n.addr.clone());
            let outdated = n.image != stored.spec_image;
            members.entry(n.group).or_default().push(Member { name: n.addr.clone(), addr, outdated });
        }
        let in_flight = stored
            .migrations
            .iter()
            .filter(|m| m.phase == Phase::Pending)
            .map(|m| InFlight {
                slots: m.slots.clone(),
                to: m.target,
                batch: m.batch.clone(),
                from: m.from,
                promoted: InFlight::is_promoted(&m.batch, m.step),
                done: m.done.clone(),
            })
            .collect();
        Cluster {
            slots: w.slot_count,
            groups: stored.spec_groups,
            failover_after: FAILOVER_AFTER,
            min_replica_acks: w.min_acks as u32,
            members,
            proxies: w.proxies.iter().filter(|p| p.alive).map(|p| p.addr.clone()).collect(),
            in_flight,
        }
    })
}

/// The simulated cluster's `failoverAfterSeconds`.
pub const FAILOVER_AFTER: Duration = Duration::from_secs(3);

/// One operator process: both controllers until `until_ms`.
pub async fn run(plane: SimPlane, api: Api, until_ms: u64) {
    let epochs = Arc::new(control::Epochs::default());
    tokio::join!(
        cluster_loop(plane.clone(), api.clone(), epochs.clone(), until_ms),
        migration_loop(plane, api, epochs, until_ms)
    );
}

async fn cluster_loop(plane: SimPlane, api: Api, epochs: Arc<control::Epochs>, until_ms: u64) {
    // The part of the record that is not in the status is lost with the process.
    let mut record = Record::default();
    while plane.now_ms() < until_ms {
        let version = {
            let stored = api.lock().expect("api");
            // Each reconcile applies the groups' StatefulSets: one retired by an instance that
            // read an older spec comes back (seed 2940 with every fault).
            plane.with(|w| apply_groups(w, stored.spec_groups, stored.spec_replicas, stored.spec_image));
            record.groups = stored.groups.clone();
            stored.status_version
        };
        let cluster = observe(&plane, &api);
        let now = plane.now_ms();
        let mut journal = StatusJournal { plane: plane.clone(), api: api.clone(), version };
        let result = control::pass(&plane, &cluster, &mut record, &mut journal, &|| epochs.after(now)).await;
        let recheck_after = result.as_ref().ok().and_then(|out| out.recheck_after);
        let (asked, last) = {
            let stored = api.lock().expect("api");
            (stored.switchover.clone(), stored.switchover_status.clone())
        };
        if let Ok(out) = &result {
            if out.degraded.is_none() && asked.is_some() {
                let epoch = epochs.after(now);
                let driven = switchover::drive(
                    &plane,
                    &cluster,
                    &mut record,
                    &mut journal,
                    asked.as_deref(),
                    last.as_ref(),
                    epoch,
                    limits(),
                )
                .await;
                if driven != Driven::Idle {
                    plane.with(|w| w.log(format!("switchover {asked:?}: {driven:?}")));
                }
            }
        }
        // The rolling update, as `k8s::cluster` drives it: after a healthy pass, with no
        // migration or switchover going on; a restart deletes the pod (its node comes back on
        // the spec's image after a while).
        let rolling = rollout::current_group(&cluster).is_some();
        let switching = switchover::pending(asked.as_deref(), last.as_ref());
        if rolling && rollout::may_step(result.as_ref().ok(), &cluster, switching) && plane.op.authority.valid() {
            let rolled = rollout::drive(&plane, &cluster, &mut record, &mut journal, epochs.after(now), limits()).await;
            plane.with(|w| w.log(format!("rolling update: {rolled:?}")));
            if let Rolled::Restart { member, .. } = &rolled {
                let image = api.lock().expect("api").spec_image;
                if plane.op.authority.valid() {
                    plane.with(|w| {
                        let down = w.rng.random_range(300..3_000);
                        w.replace(member, image, down)
                    });
                }
            }
        }
        // The status write carries the resourceVersion read: another instance's write since
        // makes it fail (and this pass's decisions are dropped with it).
        let mut stored = api.lock().expect("api");
        if stored.status_version != journal.version || !plane.op.authority.valid() {
            drop(stored);
            plane.with(|w| w.log(format!("operator {}: status not written (conflict or lapsed)", plane.op.id)));
            tokio::time::sleep(control::next_pass(FAILOVER_AFTER, recheck_after)).await;
            continue;
        }
        stored.status_version += 1;
        stored.groups = record.groups.clone();
        match result {
            Ok(out) => {
                stored.balanced = out.balanced;
                stored.degraded = out.degraded.clone();
                for h in &out.happened {
                    plane.with(|w| w.log(format!("EVENT {h}")));
                }
                // No new migration while pods restart (as `k8s::cluster`).
                for mv in out.moves.into_iter().filter(|_| !rolling) {
                    stored.created += 1;
                    let name = format!("rebalance-{}", stored.created);
                    plane.with(|w| w.log(format!("create {name}: {:?} from g{} to g{}", mv.slots, mv.from, mv.to)));
                    stored.migrations.push(Migration {
                        name,
                        slots: mv.slots,
                        target: mv.to,
                        phase: Phase::Pending,
                        batch: Vec::new(),
                        from: None,
                        step: None,
                        attempts: 0,
                        done: Vec::new(),
                        version: 0,
                    });
                }
                for g in out.retire {
                    plane.with(|w| {
                        w.log(format!("retire group {g}"));
                        w.nodes.retain(|_, n| n.group != g);
                    });
                    stored.groups.remove(&g);
                }
            }
            Err(e) => {
                stored.balanced = None;
                plane.with(|w| w.log(format!("pass failed: {e}")));
            }
        }
        drop(stored);
        tokio::time::sleep(control::next_pass(FAILOVER_AFTER, recheck_after)).await;
    }
}

/// The cluster's status as the journal the pass writes a failover to before acting, guarded by
/// the resourceVersion as `k8s::cluster`'s is.
struct StatusJournal {
    plane: SimPlane,
    api: Api,
    version: u64,
}

impl StatusJournal {
    /// One status write: refused once another instance wrote since this one read or wrote
    /// (the resourceVersion), or once this instance's authority lapsed.
    fn write(&mut self, f: impl FnOnce(&mut Stored)) -> std::future::Ready<Result<(), String>> {
        let mut stored = self.api.lock().expect("api");
        let result = if stored.status_version != self.version {
            Err("conflict: the status changed since it was read".to_string())
        } else if !self.plane.op.authority.valid() {
            Err(pika_operator::authority::Authority::LAPSED.to_string())
        } else {
            f(&mut stored);
            stored.status_version += 1;
            self.version = stored.status_version;
            Ok(())
        };
        std::future::ready(result)
    }
}

impl control::Journal for StatusJournal {
    fn save(
        &mut self,
        groups: &BTreeMap<u32, GroupRecord>,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send {
        self.write(|stored| stored.groups = groups.clone())
    }
}

impl switchover::Progress for StatusJournal {
    fn save(&mut self, status: &SwitchoverStatus) -> impl std::future::Future<Output = Result<(), String>> + Send {
        self.write(|stored| stored.switchover_status = Some(status.clone()))
    }
}

/// A migration's status writes, each carrying the resourceVersion last read or written, as
/// `k8s::migration` writes them: one fails once another instance wrote since.
struct MigrationRecord {
    plane: SimPlane,
    api: Api,
    index: usize,
    version: u64,
}

impl MigrationRecord {
    fn write(&mut self, f: impl FnOnce(&mut Migration)) -> Result<(), String> {
        let mut stored = self.api.lock().expect("api");
        let m = &mut stored.migrations[self.index];
        if m.version != self.version {
            return Err(format!("{}: conflict: the status changed since it was read", m.name));
        }
        if !self.plane.op.authority.valid() {
            return Err(pika_operator::authority::Authority::LAPSED.into());
        }
        f(m);
        m.version += 1;
        self.version = m.version;
        Ok(())
    }
}

/// Records each step in the migration's status before it acts (and may crash right after).
struct StatusSteps {
    record: MigrationRecord,
    last: Option<CutoverStep>,
    planned: cutover::Planned,
}

impl Steps for StatusSteps {
    fn step(&mut self, step: CutoverStep) -> impl std::future::Future<Output = Result<(), CutoverError>> + Send {
        let masters = control::masters_of(&self.record.api.lock().expect("api").groups);
        if let Err(e) = self.planned.check(&masters) {
            return futures_ready(Err(e));
        }
        if let Err(text) = self.record.write(|m| m.step = Some(step)) {
            return futures_ready(Err(CutoverError::Record { step, text }));
        }
        self.last = Some(step);
        let plane = self.record.plane.clone();
        plane.with(|w| w.log(format!("step {step}")));
        futures_boxed(async move {
            plane.crash_point(&format!("step {step}")).await;
            Ok(())
        })
    }
}

type StepFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), CutoverError>> + Send>>;

fn futures_ready(r: Result<(), CutoverError>) -> StepFuture {
    Box::pin(std::future::ready(r))
}

fn futures_boxed(f: impl std::future::Future<Output = Result<(), CutoverError>> + Send + 'static) -> StepFuture {
    Box::pin(f)
}

pub fn limits() -> Limits {
    Limits {
        lag_threshold: 256 << 10,
        cutover_timeout: Duration::from_secs(2),
        sync_timeout: Duration::from_secs(15),
        cleanup_wait: Duration::from_secs(15),
        attempts: 5,
        target_copies: 0,
    }
}

async fn migration_loop(plane: SimPlane, api: Api, epochs: Arc<control::Epochs>, until_ms: u64) {
    while plane.now_ms() < until_ms {
        if let Err(why) = migration_pass(&plane, &api, &epochs).await {
            plane.with(|w| w.log(format!("migration waits: {why}")));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// One pass of the migration controller (as `k8s::migration::reconcile`): the oldest
/// unfinished migration moves one batch.
async fn migration_pass(plane: &SimPlane, api: &Api, epochs: &control::Epochs) -> Result<(), String> {
    let (index, m, spec_groups, masters) = {
        let stored = api.lock().expect("api");
        let Some(index) = stored.migrations.iter().position(|m| m.phase == Phase::Pending) else { return Ok(()) };
        let masters = control::masters_of(&stored.groups);
        (index, stored.migrations[index].clone(), stored.spec_groups, masters)
    };
    let mut record = MigrationRecord { plane: plane.clone(), api: api.clone(), index, version: m.version };
    // A scale-in since, or a batch that failed too often, gives the move up
    // (`control::give_up`); an unpromoted batch is abandoned first (below).
    let promoted = control::InFlight::is_promoted(&m.batch, m.step);
    let give_up = control::give_up(m.target, spec_groups, m.attempts, promoted).is_some();
    if give_up && m.batch.is_empty() {
        record.write(|m| m.phase = Phase::Failed)?;
        return Err(format!("{}: given up", m.name));
    }
    let cluster = observe(plane, api);
    let topology = control::topology(&cluster, &masters).ok_or("a master has no address")?;
    if !topology.groups.contains_key(&m.target) {
        return Err("waiting for the target group".into());
    }
    let owned = topology.held(plane).await.map_err(|e| e.to_string())?;
    let (batch, from, step) = match (m.batch.is_empty(), m.from) {
        (false, Some(from)) => (m.batch.clone(), from, m.step),
        _ => match control::next_batch(&owned, &m.slots, m.target, 4) {
            NextBatch::Done => {
                record.write(|m| m.phase = Phase::Succeeded)?;
                plane.with(|w| w.log(format!("{} succeeded", m.name)));
                return Ok(());
            }
            NextBatch::Unserved(s) => return Err(format!("slot {s} is served by no group")),
            NextBatch::Move { slots, from } => {
                record.write(|m| {
                    m.batch = slots.clone();
                    m.from = Some(from);
                    m.step = None;
                })?;
                (slots, from, None)
            }
        },
    };
    let (Some(from_nodes), Some(to_nodes)) = (topology.groups.get(&from), topology.groups.get(&m.target)) else {
        return Err("waiting for the groups".into());
    };
    let ranges = format_slots(&batch);
    if give_up {
        let timeout = limits().cleanup_wait;
        cutover::abandon(plane, step, (from_nodes, to_nodes), &cluster.proxies, &ranges, timeout)
            .await
            .map_err(|e| format!("{}: giving up batch {ranges}: {e}", m.name))?;
        record.write(|m| {
            m.batch.clear();
            m.from = None;
            m.phase = Phase::Failed;
        })?;
        return Err(format!("{}: given up", m.name));
    }
    let start = cutover::resume_point(plane, step, from_nodes, &cluster.proxies, &ranges).await;
    let after = dataplane::after_move(&owned, from, m.target, &batch);
    let routes = topology.routes(&after);
    let planned = cutover::Planned::new(&masters, from, m.target);
    let mut steps = StatusSteps { record, last: step, planned };
    let epoch = epochs.after(plane.now_ms());
    let result = cutover::move_slots(
        plane,
        &ranges,
        from_nodes,
        to_nodes,
        &cluster.proxies,
        (epoch, cluster.slots, &routes),
        Limits { target_copies: plane.with(|w| w.min_acks), ..limits() },
        start,
        &mut steps,
    )
    .await;
    let (last, mut record) = (steps.last, steps.record);
    match result {
        Ok(_) => {
            record.write(|m| {
                let batch = std::mem::take(&mut m.batch);
                m.done.extend(batch);
                m.from = None;
                m.step = None;
                m.attempts = 0;
            })?;
            plane.with(|w| w.log(format!("{}: batch {ranges} moved", m.name)));
            Ok(())
        }
        Err(e) => {
            // After control::BATCH_ATTEMPTS an unpromoted batch is given up by the next pass.
            record.write(|m| {
                m.step = last;
                m.attempts += 1;
            })?;
            Err(format!("{}: batch {ranges}: {e}", m.name))
        }
    }
}
