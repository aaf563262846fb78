//! The operator's pass over a cluster's data plane, written once for both runtimes (the
//! Kubernetes controller and `pika-operator local`) and for the simulation: find each group's
//! master, fail over a master that stopped answering, demote an old master that came back,
//! bootstrap a new cluster, repair what a stopped cutover left, attach replicas, push routes,
//! plan the rebalancing and name the groups that can be retired. A runtime says where the
//! members are ([`Cluster`]), keeps the [`Record`] between passes (the Kubernetes runtime in the
//! PikaCluster's status) and acts on the [`Outcome`]: starting and stopping processes or pods,
//! running or creating the moves, events and metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::admin::{AdminError, DataPlane, RouteTable, Routes};
use crate::cutover::CutoverError;
use crate::dataplane::{self, Ownership, Topology};
use crate::planner;
use common::slotset::format_slots;

/// A member of a group: a node process or pod, by name, with its address while it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// `ip:port` while it runs (None: not started, no IP yet, or being deleted).
    pub addr: Option<String>,
    /// It runs an older spec than its group's (an image or an option that needs a restart):
    /// the rolling update restarts it (`rollout`).
    pub outdated: bool,
}

/// A batch a migration is moving, as its record says (the Kubernetes runtime: a SlotMigration's
/// status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// Every slot the migration moves.
    pub slots: Vec<u32>,
    pub to: u32,
    /// The batch being moved now (empty between batches) and its source group.
    pub batch: Vec<u32>,
    pub from: Option<u32>,
    /// The batch's record is past promotion: the target group owns it.
    pub promoted: bool,
    /// Slots already moved to the target (the cluster's record may not have seen them there).
    pub done: Vec<u32>,
}

impl InFlight {
    /// Whether a migration's record puts its batch past promotion (the target owns it): a batch
    /// in flight and a step past promotion recorded for it.
    pub fn is_promoted(batch: &[u32], step: Option<crate::cutover::CutoverStep>) -> bool {
        !batch.is_empty() && step.is_some_and(crate::cutover::CutoverStep::past_promotion)
    }
}

/// Failed attempts of one batch before its migration is given up (only before promotion:
/// after it, a batch can only go forward and is retried until it does).
pub const BATCH_ATTEMPTS: u32 = 5;

/// Why a migration is given up (see [`give_up`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// Its target group is beyond `spec.groups` (a scale-in since).
    TargetGone,
    /// Its batch failed [`BATCH_ATTEMPTS`] times.
    TooManyAttempts,
}

/// Whether a migration into group `target` of a `groups`-group cluster, whose batch failed
/// `attempts` times, is given up, and why; never while its batch is `promoted`: that batch is
/// the target's, and its cutover finishes first (simulation, seed 633 in replicated mode: a
/// promoted batch given up was forgotten, and a failover of its source took it back from a
/// copy that lacked what the target had acknowledged). Every runtime abandons an unpromoted
/// batch (`cutover::abandon`) before the migration ends.
pub fn give_up(target: u32, groups: u32, attempts: u32, promoted: bool) -> Option<GiveUp> {
    if promoted {
        None
    } else if target >= groups {
        Some(GiveUp::TargetGone)
    } else if attempts >= BATCH_ATTEMPTS {
        Some(GiveUp::TooManyAttempts)
    } else {
        None
    }
}

/// What a runtime observed of a cluster for one pass.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// `spec.slots`.
    pub slots: u32,
    /// `spec.groups`: groups beyond it are drained and retired.
    pub groups: u32,
    pub failover_after: Duration,
    /// `spec.durability`: replicas that acknowledge each write (0: asynchronous). A failover
    /// then promotes only a replica shown to hold every acknowledged write.
    pub min_replica_acks: u32,
    /// Members per group, by index (groups still running beyond `groups` included).
    pub members: BTreeMap<u32, Vec<Member>>,
    /// Running proxies' addresses.
    pub proxies: Vec<String>,
    /// Migrations not finished (their slots are theirs to settle; nothing else moves meanwhile).
    pub in_flight: Vec<InFlight>,
}

impl Cluster {
    /// This view with the members at `addrs` taken as not running.
    fn without(&self, addrs: &BTreeSet<String>) -> Cluster {
        let mut view = self.clone();
        for m in view.members.values_mut().flatten() {
            if m.addr.as_ref().is_some_and(|a| addrs.contains(a)) {
                m.addr = None;
            }
        }
        view
    }
}

/// What the operator keeps of one group between passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupRecord {
    /// The member that is master (None: not known yet, found on the nodes).
    pub master: Option<String>,
    /// Former masters replaced by a failover, to be re-synced in full when they answer again.
    pub demoted: Vec<String>,
    /// The slots its master accepted writes for when last observed: what a failover promotes.
    pub slots: Vec<u32>,
    /// The largest replication lag of its master's replicas when last observed (bytes).
    pub max_lag: u64,
}

/// What the operator keeps of a cluster between passes. `groups` must survive an operator
/// restart (a repeated failover would promote twice); the rest may be lost.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub groups: BTreeMap<u32, GroupRecord>,
    /// Members not answering, since when.
    pub down_since: BTreeMap<String, Instant>,
    /// When each master was last asked to renew its lease (the request's end): it may hold one
    /// until a lease after that.
    pub lease_asked: BTreeMap<String, Instant>,
    /// The routes last pushed to the proxies and their epoch.
    pub routes: Option<(u64, Routes)>,
}

impl Record {
    /// Each group's master, where known.
    pub fn masters(&self) -> BTreeMap<u32, String> {
        masters_of(&self.groups)
    }
}

/// Each group's master, where known.
pub fn masters_of(groups: &BTreeMap<u32, GroupRecord>) -> BTreeMap<u32, String> {
    groups.iter().filter_map(|(g, r)| Some((*g, r.master.clone()?))).collect()
}

/// Something worth an event (and, for failovers, a metric).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Happened {
    Bootstrapped { slots: u32, groups: u32 },
    Failover { group: u32, old: String, new: String, slots: String, down_for: Duration },
    Demoted { group: u32, old: String, master: String },
}

impl Happened {
    /// The Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Happened::Bootstrapped { .. } => "Bootstrapped",
            Happened::Failover { .. } => "Failover",
            Happened::Demoted { .. } => "Demoted",
        }
    }

    /// Failovers are warnings.
    pub fn is_warning(&self) -> bool {
        matches!(self, Happened::Failover { .. })
    }
}

/// The Event note.
impl std::fmt::Display for Happened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Happened::Bootstrapped { slots, groups } => write!(f, "{slots} slots split over {groups} groups"),
            Happened::Failover { group, old, new, slots, down_for } => write!(
                f,
                "group {group}: master {old} unreachable for {}s; {new} promoted for slots {slots}",
                down_for.as_secs()
            ),
            Happened::Demoted { group, old, master } => {
                write!(f, "group {group}: former master {old} re-syncs from {master}")
            }
        }
    }
}

/// The result of a pass.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The pass stopped early, waiting for this.
    pub waiting: Option<String>,
    /// Something is not as it should be (a master down, a replica not answering).
    pub degraded: Option<String>,
    pub happened: Vec<Happened>,
    /// Slots each group's master accepts writes for (empty before the nodes were asked).
    pub owned: Ownership,
    /// The moves that rebalance the cluster (empty while migrations are in flight or a group
    /// has no master). The runtime runs them (local) or creates SlotMigrations (Kubernetes).
    pub moves: Vec<planner::Move>,
    /// Groups beyond `spec.groups` that hold no slot at all any more: stop and delete them.
    pub retire: Vec<u32>,
    /// Every slot served and no move needed (None: not known, the nodes were not asked).
    pub balanced: Option<bool>,
    /// Masters down past the failover wait that no member can safely replace: their data is
    /// the group's, so a runtime starts them again (Kubernetes does by itself).
    pub unreplaceable: Vec<String>,
    /// A master is silent and its failover wait ends this soon: the next pass is due then,
    /// not a whole interval later ([`next_pass`]).
    pub recheck_after: Option<Duration>,
}

/// When the next pass runs: every [`pass_interval`], sooner when a silent master's failover
/// wait ends before that (a pass with a stopped master takes a second of probing, so a fixed
/// interval put the failover up to two seconds past the wait).
pub fn next_pass(failover_after: Duration, recheck_after: Option<Duration>) -> Duration {
    let interval = pass_interval(failover_after);
    recheck_after.map_or(interval, |r| r.min(interval))
}

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Cutover(#[from] CutoverError),
    #[error("recording the cluster's groups: {0}")]
    Journal(String),
}

/// Where the pass writes the groups' record before it acts on a decision that must survive an
/// operator crash: a failover is recorded (new master, demoted old one) before the successor
/// is promoted, so that a restarted operator never takes the old master back.
pub trait Journal {
    fn save(
        &mut self,
        groups: &BTreeMap<u32, GroupRecord>,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

/// The local runtime's journal: nothing is written (after a restart it finds each group's
/// master on the nodes, the one accepting writes).
pub struct Unrecorded;

impl Journal for Unrecorded {
    fn save(&mut self, _: &BTreeMap<u32, GroupRecord>) -> impl std::future::Future<Output = Result<(), String>> + Send {
        std::future::ready(Ok(()))
    }
}

/// How long a master's lease lasts (`pkcluster lease`): short enough that, with a tenth more
/// for clocks that run at slightly different rates and half a second for the renewal's own
/// trip, it has run out when a master silent for `failoverAfterSeconds` is replaced; at least a
/// second. Renewed on every pass, four times per lease ([`pass_interval`]).
pub fn lease_for(failover_after: Duration) -> Duration {
    (failover_after.saturating_sub(Duration::from_millis(500)) * 10 / 11).max(Duration::from_secs(1))
}

/// How long a master must not answer (since its last lease renewal was asked, too) before a
/// replica replaces it: `failoverAfterSeconds`, and at least its lease plus a tenth and half a
/// second, so the old master has stopped acknowledging writes before another node starts.
pub fn failover_wait(failover_after: Duration) -> Duration {
    let lease = lease_for(failover_after);
    (lease + lease / 10 + Duration::from_millis(500)).max(failover_after)
}

/// How long a proxy holds requests for a slot (`hold-timeout-ms`): a cutover's pause, or a
/// failover's wait and the pass that carries it out (a proxy holds the slots of a master it
/// cannot reach until they are routed to its successor).
pub fn proxy_hold_timeout(failover_after: Duration) -> Duration {
    (failover_wait(failover_after) + Duration::from_secs(5)).max(Duration::from_secs(10))
}

/// How often the runtimes run a pass (and so renew the leases): four times per lease, so one
/// or two slow passes do not let a healthy master's lease run out; at most every 2 s.
pub fn pass_interval(failover_after: Duration) -> Duration {
    (lease_for(failover_after) / 4).clamp(Duration::from_millis(250), Duration::from_secs(2))
}

/// One pass over the data plane. `next_epoch` gives a route epoch newer than every earlier one.
pub async fn pass(
    dp: &impl DataPlane,
    cluster: &Cluster,
    record: &mut Record,
    journal: &mut impl Journal,
    next_epoch: &(dyn Fn() -> u64 + Sync),
) -> Result<Outcome, PassError> {
    let mut out = Outcome::default();
    record.groups.retain(|g, _| cluster.members.contains_key(g));
    if cluster.members.values().flatten().all(|m| m.addr.is_none()) {
        out.waiting = Some("waiting for the nodes to run".into());
        return Ok(out);
    }
    // Masters: recorded; found on the nodes the first time (and recorded at once).
    let mut found_any = false;
    for (&g, members) in &cluster.members {
        let rec = record.groups.entry(g).or_default();
        if rec.master.is_some() {
            continue;
        }
        let found = match members.iter().map(|m| m.addr.clone()).collect::<Option<Vec<String>>>() {
            Some(addrs) => dataplane::find_master(dp, &addrs, cluster.slots).await,
            None => None,
        };
        match found {
            Some(i) => {
                rec.master = Some(members[i].name.clone());
                found_any = true;
            }
            None => out.waiting = Some(format!("waiting for every member of group {g} to answer")),
        }
    }
    if found_any {
        journal.save(&record.groups).await.map_err(PassError::Journal)?;
    }
    if out.waiting.is_some() {
        return Ok(out);
    }
    // Leases first: a master whose lease ran out (the operator was down longer than a lease,
    // or the master was cut off and is back) reports none of its slots writable until renewed,
    // and a failover must not take them from it meanwhile.
    let renewals = renew_leases(dp, cluster, record).await;
    let renewed = Instant::now();
    renewals.note(record);
    watch_masters(dp, cluster, record, journal, &renewals, &mut out).await?;
    if out.degraded.is_some() {
        return Ok(out); // no slot moves while a group has no master
    }
    // A former master that did not answer this pass (just replaced) counts as not running for
    // the rest of it: every request to a stopped process waits out its timeout, and the
    // proxies would get the new routes seconds late.
    let cluster = &cluster.without(&renewals.down.keys().cloned().collect());
    // What follows reads ownership from the masters' writable slots: a lease that ran out
    // while this pass waited (a slow node) would make a healthy master look as if it owned
    // nothing, and the slots as if they needed repair or rebalancing.
    if renewed.elapsed() > lease_for(cluster.failover_after) / 4 {
        renew_leases(dp, cluster, record).await.note(record);
    }
    let Some(topology) = topology(cluster, &record.masters()) else {
        out.waiting = Some("waiting for every group's master".into());
        return Ok(out);
    };
    let mut owned = topology.ownership(dp).await?;
    let everyone_up = cluster.members.values().flatten().all(|m| m.addr.is_some());
    if everyone_up && owned.values().map(Vec::len).sum::<usize>() < cluster.slots as usize {
        let created = topology.create_missing(dp, cluster.groups).await?;
        if created.len() == cluster.slots as usize {
            out.happened.push(Happened::Bootstrapped { slots: cluster.slots, groups: cluster.groups });
        } else if !created.is_empty() {
            tracing::warn!(slots = %format_slots(&created), "created slots an interrupted bootstrap left out");
        }
        owned = topology.ownership(dp).await?;
    }
    // The slots a migration still has to move are its own: the repair, which runs concurrently
    // with the migration controller, leaves them alone (a batch chosen after this pass listed
    // the migrations would otherwise be "repaired" mid-cutover). The migration moves them as
    // they are, fenced or not. Slots it has moved are settled and the repair's again.
    let busy: BTreeSet<u32> = cluster
        .in_flight
        .iter()
        .flat_map(|m| m.slots.iter().filter(|s| !m.done.contains(s)).chain(&m.batch))
        .copied()
        .collect();
    topology.repair(dp, &owned, &busy, cluster.in_flight.is_empty()).await?;
    owned = topology.ownership(dp).await?;
    let down = topology.attach_replicas(dp, &owned, &busy).await?;
    if !down.is_empty() {
        out.degraded = Some(format!("replicas not answering: {}", down.join(", ")));
    }
    for (g, rec) in record.groups.iter_mut() {
        rec.slots = owned.get(g).cloned().unwrap_or_default();
        rec.max_lag = max_lag(dp, &topology.groups[g].master, &format_slots(&rec.slots)).await;
    }
    let served: usize = owned.values().map(Vec::len).sum();
    let moves = planner::rebalance(&owned, cluster.groups);
    out.balanced = Some(served == cluster.slots as usize && moves.is_empty());
    out.owned = owned;
    if !cluster.in_flight.is_empty() {
        // Migrations route and move; nothing else changes meanwhile. But after a failover the
        // proxies get the new master now, not once the migrations end (they would hold the
        // failed group's requests until then): each batch in flight routed where it is
        // writable or about to be (its target once promoted, else its source).
        if out.happened.iter().any(|h| matches!(h, Happened::Failover { .. })) {
            let routed =
                cluster.in_flight.iter().filter(|m| !m.batch.is_empty()).fold(out.owned.clone(), |o, m| {
                    match (m.from, m.promoted) {
                        (Some(from), true) => dataplane::after_move(&o, from, m.to, &m.batch),
                        (Some(from), false) => dataplane::after_move(&o, m.to, from, &m.batch),
                        (None, _) => o,
                    }
                });
            push_routes(dp, &cluster.proxies, cluster.slots, record, topology.routes(&routed), next_epoch).await?;
        }
        return Ok(out);
    }
    push_routes(dp, &cluster.proxies, cluster.slots, record, topology.routes(&out.owned), next_epoch).await?;
    if moves.is_empty() {
        for &g in topology.groups.keys().filter(|&&g| g >= cluster.groups && !out.owned.contains_key(&g)) {
            // Still holding slots (fenced, or a cleanup in progress): not yet.
            if dp.slot_info(&topology.groups[&g].master, &topology.all_slots()).await?.is_empty() {
                out.retire.push(g);
            }
        }
    } else {
        out.moves = moves;
    }
    Ok(out)
}

/// What [`renew_leases`] found.
#[derive(Debug, Default)]
pub struct Renewals {
    /// Masters (addresses) that did not answer at all, with when they were asked: not asked to
    /// renew. (A renewal sent to a stopped process would keep it leased, as far as the
    /// operator can tell, for as long as it keeps being sent.)
    pub down: BTreeMap<String, Instant>,
    /// Masters that answered but were not renewed.
    pub unrenewed: BTreeSet<String>,
    /// Masters (names) asked to renew, and when the request ended: whatever its outcome, such a
    /// master may hold a lease until then plus a lease.
    pub asked: Vec<(String, Instant)>,
}

impl Renewals {
    /// Records when each master was last asked: [`watch_masters`] waits from there.
    pub fn note(&self, record: &mut Record) {
        for (master, at) in &self.asked {
            let last = record.lease_asked.entry(master.clone()).or_insert(*at);
            *last = (*last).max(*at);
        }
    }
}

/// Renews the lease of every group's master that answers (one that does not is being watched
/// by `watch_masters`). Runtimes that act between passes for long (the local runtime's moves)
/// call it meanwhile, and [`Renewals::note`] what it asked.
pub async fn renew_leases(dp: &impl DataPlane, cluster: &Cluster, record: &Record) -> Renewals {
    let ms = lease_for(cluster.failover_after).as_millis() as u64;
    let mut out = Renewals::default();
    for rec in record.groups.values() {
        let Some(master) = rec.master.as_deref() else { continue };
        let Some(addr) = member_addr(cluster, master) else { continue };
        let asked = Instant::now();
        if !dp.answers(&addr).await {
            out.down.insert(addr.clone(), asked);
            out.unrenewed.insert(addr);
            continue;
        }
        let renewed = dp.lease(&addr, ms).await;
        out.asked.push((master.to_string(), Instant::now()));
        if let Err(e) = renewed {
            tracing::debug!(master = %addr, error = %e, "lease not renewed");
            out.unrenewed.insert(addr);
        }
    }
    out
}

/// The data plane's view, given each group's master: None while a master has no address.
/// Replicas without an address are left out (they are attached once they run).
pub fn topology(cluster: &Cluster, masters: &BTreeMap<u32, String>) -> Option<Topology> {
    topology_of(&cluster.members, masters, cluster.slots)
}

/// [`topology`] of `members` (group -> members) in a `slots`-slot cluster.
pub fn topology_of(
    members: &BTreeMap<u32, Vec<Member>>,
    masters: &BTreeMap<u32, String>,
    slots: u32,
) -> Option<Topology> {
    let mut groups = BTreeMap::new();
    for (&g, members) in members {
        let master = masters.get(&g)?;
        let addr = members.iter().find(|m| &m.name == master)?.addr.clone()?;
        let replicas = members.iter().filter(|m| &m.name != master).filter_map(|m| m.addr.clone()).collect();
        groups.insert(g, crate::cutover::GroupNodes { master: addr, replicas, size: members.len() });
    }
    Some(Topology { slots, groups })
}

async fn max_lag(dp: &impl DataPlane, master: &str, slots: &str) -> u64 {
    if slots.is_empty() {
        return 0;
    }
    let info = dp.slot_info(master, slots).await.unwrap_or_default();
    info.iter().filter_map(|s| s.master.as_ref()).flat_map(|m| &m.replicas).filter_map(|r| r.lag).max().unwrap_or(0)
}

/// Masters that stopped answering: after [`failover_wait`] (their lease has run out), the best
/// replica takes over. Former masters that answer again re-sync in full from the new one.
async fn watch_masters(
    dp: &impl DataPlane,
    cluster: &Cluster,
    record: &mut Record,
    journal: &mut impl Journal,
    renewals: &Renewals,
    out: &mut Outcome,
) -> Result<(), PassError> {
    let addr_of = |name: &str| member_addr(cluster, name);
    let groups: Vec<u32> = record.groups.keys().copied().collect();
    for g in groups {
        let Some(master) = record.groups[&g].master.clone() else { continue };
        let addr = addr_of(&master);
        // A lease renewed this pass restarts the wait, whatever follows: the master may take
        // writes for a whole lease from now (seed 1177 with every fault: a master back from a
        // cut-off only for its renewal was failed over 2 s later, counted from its first
        // silence, and accepted writes next to its successor).
        if addr.as_ref().is_some_and(|a| !renewals.unrenewed.contains(a)) {
            record.down_since.remove(&master);
        }
        // Any reply proves life (an error too): asked once per pass, by `renew_leases`.
        let up = addr.as_ref().is_some_and(|a| !renewals.down.contains_key(a));
        if !up {
            // Silent since the first question it did not answer (every lease it was granted
            // before that ends a lease later at the latest: no pass grants one to a master that
            // did not answer), and since its last renewal request ended, answered or not (it
            // may have taken it).
            let asked = addr.as_ref().and_then(|a| renewals.down.get(a)).copied().unwrap_or_else(Instant::now);
            let since = *record.down_since.entry(master.clone()).or_insert(asked);
            let quiet_since = record.lease_asked.get(&master).map_or(since, |&renewal| renewal.max(since));
            let down_for = quiet_since.elapsed();
            let wait = failover_wait(cluster.failover_after);
            if down_for < wait {
                out.degraded = Some(format!("group {g}: master {master} unreachable for {}s", down_for.as_secs()));
                // The pass that replaces it starts one probe early: its probe of the silent
                // master takes that long before the decision (at least 100 ms apart, for a
                // dead one that refuses at once).
                let left =
                    (wait - down_for).saturating_sub(common::client::ALIVE_TIMEOUT).max(Duration::from_millis(100));
                out.recheck_after = Some(out.recheck_after.map_or(left, |r| r.min(left)));
                continue;
            }
            let members = &cluster.members[&g];
            // A former master not yet re-synced is no candidate: it lacks what its successor
            // acknowledged since, and may hold writes nobody else has.
            let demoted = &record.groups[&g].demoted;
            let survivors: Vec<(usize, String)> = members
                .iter()
                .enumerate()
                .filter(|(_, m)| m.name != master && !demoted.contains(&m.name))
                .filter_map(|(i, m)| Some((i, m.addr.clone()?)))
                .collect();
            let slots = failover_slots(dp, cluster, record, g, &survivors).await;
            // Nothing known to take over while the survivors hold slots: the group's slots are
            // unknown (never observed on the master), so no survivor can be shown to have them.
            if slots.is_empty() && holds_any(dp, &survivors, cluster.slots).await {
                out.degraded = Some(format!("group {g}: master {master} down and its slots are not known"));
                out.unreplaceable.push(master.clone());
                continue;
            }
            // Members that may hold acknowledged writes: every one but the master, reachable or
            // not, former masters not yet re-synced included. Those acknowledged before the
            // last promotion may be on a former master and the promoted one alone until the
            // others catch up; leaving former masters out promoted a replica that lacked them
            // when the promoted one died soon after (simulation, seed 804 in replicated mode).
            let ackers = members.iter().filter(|m| m.name != master).count();
            let acks = dataplane::Acks { min_acks: cluster.min_replica_acks, ackers };
            let new = match dataplane::choose_successor(dp, &survivors, &slots, cluster.slots, acks).await {
                Ok(new) => new,
                Err(why) => {
                    out.degraded = Some(format!("group {g}: master {master} down and not replaced: {why}"));
                    out.unreplaceable.push(master.clone());
                    continue;
                }
            };
            let new_addr = members[new].addr.clone().expect("a survivor has an address");
            // An old master that is alive but unreachable from here must not keep taking writes:
            // fence it if it can be reached at all (best effort; the runtime also stops it).
            if let Some(old) = &addr {
                let _ = dp.fence_unanswered(old).await;
            }
            let slots = format_slots(&slots);
            let rec = record.groups.get_mut(&g).expect("recorded");
            rec.demoted.push(master.clone());
            rec.master = Some(members[new].name.clone());
            journal.save(&record.groups).await.map_err(PassError::Journal)?;
            dataplane::take_over(dp, &new_addr, &slots, lease_for(cluster.failover_after), &moving_out(cluster, g))
                .await?;
            record.down_since.remove(&master);
            out.happened.push(Happened::Failover {
                group: g,
                old: master.clone(),
                new: members[new].name.clone(),
                slots,
                down_for,
            });
            continue;
        }
        record.down_since.remove(&master);
        let Some(master_addr) = addr else { continue };
        // A failover interrupted after it was recorded: the master still replicates slots from
        // a node that is no other group's master (its former master, whatever its address now).
        // They are taken over now (a batch moving in is left to its migration).
        let other_masters: Vec<String> =
            record.groups.iter().filter(|(o, _)| **o != g).filter_map(|(_, r)| addr_of(r.master.as_deref()?)).collect();
        let info = dp.slot_info(&master_addr, &dataplane::all_slots(cluster.slots)).await?;
        let unfinished: Vec<u32> = info
            .iter()
            .filter(|s| s.slave.as_ref().is_some_and(|r| !other_masters.contains(&r.master)))
            .map(|s| s.slot)
            .collect();
        if !unfinished.is_empty() {
            let survivors = [(0, master_addr.clone())];
            let take: Vec<u32> = failover_slots(dp, cluster, record, g, &survivors)
                .await
                .into_iter()
                .filter(|s| unfinished.contains(s))
                .collect();
            tracing::warn!(group = g, slots = %format_slots(&take), "finishing an interrupted failover");
            let lease = lease_for(cluster.failover_after);
            dataplane::take_over(dp, &master_addr, &format_slots(&take), lease, &moving_out(cluster, g)).await?;
        }
        // What a renewed master accepts writes for is recorded on every pass, one that stops
        // early included: a failover of another group while this master cannot be asked keeps
        // its hands off these (seed 2853 with every fault: slots moved here while no pass
        // finished, promoted again on a replica that had missed their cleanup at the source).
        // Its fenced slots are left out, as in a whole pass: the source side of a promoted
        // batch is not this group's any more (seed 375 with master kills).
        if !renewals.unrenewed.contains(&master_addr) {
            if let Ok(writable) = dp.writable(&master_addr).await {
                record.groups.get_mut(&g).expect("recorded").slots = writable;
            }
        }
        for old in record.groups[&g].demoted.clone() {
            let Some(old_addr) = addr_of(&old) else { continue };
            if !dp.answers(&old_addr).await {
                continue;
            }
            // It re-syncs the slots the new master holds as master. Not the others: a copy the
            // new master itself still replicates (the source side of a move whose cleanup is
            // pending) would have each follow the other, both waiting for a full sync forever,
            // and the cleanup could never delete them (simulation, seed 9 with master kills).
            // One holding nothing has nothing to re-sync (the node refuses an empty slot set).
            let mastered = dataplane::held_as_master(dp, &master_addr, cluster.slots).await?;
            let held = dp.slot_info(&old_addr, &dataplane::all_slots(cluster.slots)).await?;
            let resync: Vec<u32> = held.iter().map(|s| s.slot).filter(|s| mastered.contains(s)).collect();
            if !resync.is_empty() {
                dp.follow_force(&old_addr, &master_addr, &format_slots(&resync)).await?;
            }
            record.groups.get_mut(&g).expect("recorded").demoted.retain(|p| p != &old);
            out.happened.push(Happened::Demoted { group: g, old, master: master.clone() });
        }
    }
    Ok(())
}

/// The slots a failover of group `g` promotes: those its master served when last observed, those
/// migrations in flight have moved into it since (and not those they moved out), and those its
/// surviving members replicate (from the failed master: a group's replicas follow
/// only their master), except a batch of an unfinished cutover into the group that is not
/// promoted yet (the source still owns it), a batch promoted out of it (the target owns it),
/// and slots another group's master holds as master (fenced or not). The record alone is stale right after
/// a cutover (promoting from it makes moved slots writable in two groups or in none); the
/// replicas alone miss a slot only the master held (a replica was down when it arrived), and
/// a failover without it would leave it to be wiped when the old master re-syncs: such a slot
/// keeps the failover from happening.
async fn failover_slots(
    dp: &impl DataPlane,
    cluster: &Cluster,
    record: &Record,
    g: u32,
    survivors: &[(usize, String)],
) -> Vec<u32> {
    let all = dataplane::all_slots(cluster.slots);
    let mut slots: BTreeSet<u32> = record.groups.get(&g).map(|r| r.slots.iter().copied().collect()).unwrap_or_default();
    for (_, addr) in survivors {
        if let Ok(info) = dp.slot_info(addr, &all).await {
            slots.extend(info.iter().filter(|s| s.slave.is_some()).map(|s| s.slot));
        }
    }
    for m in &cluster.in_flight {
        if m.to == g {
            slots.extend(&m.done);
            // Promoted here and not yet cleaned up: the group's own (left out, the successor
            // was not asked to hold them and they went without a master: seed 67).
            if m.promoted {
                slots.extend(&m.batch);
            }
        } else {
            slots.retain(|s| !m.done.contains(s));
        }
        if (m.to == g && !m.promoted) || (m.from == Some(g) && m.promoted) {
            slots.retain(|s| !m.batch.contains(s));
        }
    }
    // What migrations in flight say this group owns (moved here, or promoted here and not yet
    // cleaned up at the source, which still holds them fenced) stays this group's.
    let moved_here: BTreeSet<u32> = cluster
        .in_flight
        .iter()
        .filter(|m| m.to == g)
        .flat_map(|m| m.done.iter().chain(if m.promoted { &m.batch[..] } else { &[] }))
        .copied()
        .collect();
    for (other, rec) in record.groups.iter().filter(|(o, _)| **o != g) {
        let addr = rec.master.as_deref().and_then(|m| member_addr(cluster, m));
        // Another group's master keeps the slots it holds as master, writable or fenced: one
        // restarted (hence fenced) or whose lease ran out accepts writes for them again once
        // the repair unfences them or its lease is renewed (seed 8304 with every fault: a
        // restarted master's fenced slots, moved to it just before, were taken over by the
        // group they had left; seed 587: a master whose lease ran out).
        let held = match addr {
            Some(addr) => dataplane::held_as_master(dp, &addr, cluster.slots).await.ok(),
            None => None,
        };
        let theirs: BTreeSet<u32> = match held {
            Some(slots) => slots.into_iter().collect(),
            // That master cannot be asked: the slots recorded as its group's may still be
            // writable there, and are not taken (the target side of an abandoned move, still
            // replicating from a former master, was taken for an interrupted failover and
            // unfenced next to a master cut off from the operator: seed 1105 with every fault).
            None => rec.slots.iter().copied().collect(),
        };
        if slots.iter().any(|s| theirs.contains(s) && !moved_here.contains(s)) {
            tracing::warn!(group = g, other, "slots another group's master holds are not taken over");
        }
        slots.retain(|s| !theirs.contains(s) || moved_here.contains(s));
    }
    slots.into_iter().collect()
}

/// Slots a migration in flight is moving out of group `g` and has not promoted at its target:
/// a failover of `g` takes them over fenced, and leaves them to the migration.
fn moving_out(cluster: &Cluster, g: u32) -> Vec<u32> {
    cluster
        .in_flight
        .iter()
        .filter(|m| m.from == Some(g) && !m.promoted)
        .flat_map(|m| m.batch.iter().copied())
        .collect()
}

/// Whether any of `members` holds any slot (an unreachable one counts as holding some).
async fn holds_any(dp: &impl DataPlane, members: &[(usize, String)], slot_count: u32) -> bool {
    for (_, addr) in members {
        match dp.slot_info(addr, &dataplane::all_slots(slot_count)).await {
            Ok(info) if info.is_empty() => {}
            _ => return true,
        }
    }
    false
}

fn member_addr(cluster: &Cluster, name: &str) -> Option<String> {
    cluster.members.values().flatten().find(|m| m.name == name).and_then(|m| m.addr.clone())
}

/// Pushes the routes to every proxy that lacks them (all of them when they changed).
async fn push_routes(
    dp: &impl DataPlane,
    proxies: &[String],
    slot_count: u32,
    record: &mut Record,
    routes: Routes,
    next_epoch: &(dyn Fn() -> u64 + Sync),
) -> Result<(), AdminError> {
    let mut epoch = match &record.routes {
        Some((epoch, r)) if *r == routes => *epoch,
        _ => next_epoch(),
    };
    let wanted = RouteTable::of(&routes);
    for p in proxies {
        let table = dp.route_table(p).await?;
        if table.epoch < epoch {
            dp.set_route(p, epoch, slot_count, &routes).await?;
        } else if table.slots != wanted {
            // Rebuilt from the nodes (mid-cutover, say) at the current epoch, or ahead of this
            // operator: only a newer epoch replaces it.
            epoch = next_epoch().max(table.epoch + 1);
            tracing::info!(proxy = %p, epoch, "the proxy's routes differ from the cluster's: pushed again");
            dp.set_route(p, epoch, slot_count, &routes).await?;
        }
    }
    record.routes = Some((epoch, routes));
    Ok(())
}

/// What a migration does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextBatch {
    /// Every wanted slot is in the target group.
    Done,
    /// This slot is served by no group (a failover or repair is due): wait.
    Unserved(u32),
    /// Move these slots (at most the batch size) from group `from`.
    Move { slots: Vec<u32>, from: u32 },
}

/// The next batch of a migration of `wanted` to group `target`: the next slots not yet there,
/// from the group owning the first of them.
pub fn next_batch(owned: &Ownership, wanted: &[u32], target: u32, batch_size: usize) -> NextBatch {
    let remaining: Vec<u32> =
        wanted.iter().copied().filter(|s| !owned.get(&target).is_some_and(|t| t.contains(s))).collect();
    let Some(&first) = remaining.first() else { return NextBatch::Done };
    let Some((&from, mine)) = owned.iter().find(|(_, s)| s.contains(&first)) else {
        return NextBatch::Unserved(first);
    };
    let slots = remaining.into_iter().filter(|s| mine.contains(s)).take(batch_size.max(1)).collect();
    NextBatch::Move { slots, from }
}

/// Route epochs newer than every earlier one, also across operator restarts: wall-clock
/// milliseconds, bumped when the clock did not move.
#[derive(Debug, Default)]
pub struct Epochs(std::sync::atomic::AtomicU64);

impl Epochs {
    pub fn next(&self) -> u64 {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        self.after(now)
    }

    /// The next epoch when the clock says `now` (ms).
    pub fn after(&self, now: u64) -> u64 {
        use std::sync::atomic::Ordering::SeqCst;
        let mut current = self.0.load(SeqCst);
        loop {
            let next = now.max(current + 1);
            match self.0.compare_exchange(current, next, SeqCst, SeqCst) {
                Ok(_) => return next,
                Err(seen) => current = seen,
            }
        }
    }
}
