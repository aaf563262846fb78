//! Moving a batch of slots from group A to group B without losing a write (docs/operator.md,
//! "SlotMigration and the cutover"):
//!
//! 1. `addslots S` on every member of B;
//! 2. B's master follows A's master for S; wait until A streams S to it incrementally;
//! 3. B's replicas follow B's master for S;
//! 4. wait until A's lag for B's master is under the threshold;
//! 5. proxies hold S; A's master fences S; wait for lag 0 (on timeout: unfence, release, back to 4);
//! 6. B's master promotes and unfences S; proxies get the new routes (which releases the held
//!    requests);
//! 7. A's replicas stop following S, then every member of A deletes S.
//!
//! Each step is safe to run again (a restarted operator repeats the step it recorded): addslots
//! and delslots accept "already done", following an already-followed master is skipped by the
//! node, promotion and fencing are idempotent, routes carry epochs.

use std::time::Duration;

use tokio::time::Instant;

use crate::admin::{AdminError, DataPlane};
pub use crate::crd::CutoverStep;
use common::pkinfo::SlotInfo;
use common::protocol::SyncStatus;

/// The addresses of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupNodes {
    pub master: String,
    /// The replicas that run (have an address) now.
    pub replicas: Vec<String>,
    /// Members the group should have, running or not: `1 + replicasPerGroup`.
    pub size: usize,
}

impl GroupNodes {
    pub fn all(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.master).chain(&self.replicas)
    }
}

/// Tuning of one cutover.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Lag (bytes) under which writes are held and the source fenced.
    pub lag_threshold: u64,
    /// How long writes may stay held waiting for lag 0 before the attempt is rolled back.
    pub cutover_timeout: Duration,
    /// How long the sync and catch-up may take.
    pub sync_timeout: Duration,
    /// How long the cleanup waits for the target group's replicas to stream the moved slots
    /// before it gives up for now (the repair deletes the old copies once they do).
    pub cleanup_wait: Duration,
    pub attempts: u32,
    /// Replicas of the target group that must hold the batch before it is promoted: the
    /// cluster's `minReplicaAcks` in replicated mode (0 in async mode). A failover of the
    /// target group counts on that many copies of everything it acknowledged; the moved data
    /// was acknowledged by the source group, and without this its only copy there could be
    /// the target master (simulation, seed 487 in replicated mode: the target died right after
    /// its promotion, its replica was promoted empty, and the move then deleted the source).
    pub target_copies: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            lag_threshold: 256 << 10,
            cutover_timeout: Duration::from_secs(5),
            sync_timeout: Duration::from_secs(300),
            cleanup_wait: Duration::from_secs(300),
            attempts: 5,
            target_copies: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CutoverError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("timed out: {0}")]
    Timeout(String),
    /// The step could not be recorded (the status update failed): nothing was done for it.
    #[error("recording step {step}: {text}")]
    Record { step: CutoverStep, text: String },
    /// A group's master changed since the move started (a failover): the move starts again
    /// from where it was recorded, with the new masters.
    #[error("{0}")]
    Stale(String),
}

/// The masters a move was planned with, checked before each step against the recorded ones
/// (`current`: group -> master), so that a failover of either group during a move stops it
/// instead of letting it promote, fence or clean up the wrong node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub from: (u32, String),
    pub to: (u32, String),
}

impl Planned {
    /// The masters of groups `from` and `to` in `masters` (group -> master) as the move starts.
    pub fn new(masters: &std::collections::BTreeMap<u32, String>, from: u32, to: u32) -> Planned {
        let master = |g: u32| (g, masters.get(&g).cloned().unwrap_or_default());
        Planned { from: master(from), to: master(to) }
    }

    pub fn check(&self, current: &std::collections::BTreeMap<u32, String>) -> Result<(), CutoverError> {
        for (g, master) in [&self.from, &self.to] {
            if current.get(g) != Some(master) {
                return Err(CutoverError::Stale(format!(
                    "group {g}'s master is now {:?}, not {master}: the move restarts with the new masters",
                    current.get(g)
                )));
            }
        }
        Ok(())
    }
}

/// What happened, for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// How long writes to the batch were held (None: held by an earlier run).
    pub pause: Option<Duration>,
    pub attempts: u32,
}

pub use crate::admin::Routes;

/// Where a move (re)starts. A fresh move starts at the beginning; an operator that stopped
/// mid-move resumes where [`resume_point`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Beginning,
    /// The source was fenced and drained: promote (again), route, clean up.
    Promote,
}

/// Told each step before it acts (the Kubernetes controller records it in the migration's
/// status first, so a restarted operator knows where it was). An error stops the move.
pub trait Steps {
    fn step(&mut self, step: CutoverStep) -> impl std::future::Future<Output = Result<(), CutoverError>> + Send;
}

/// Steps that are only logged (the local runtime; its restart repair needs no record).
pub struct Logged<F>(pub F);

impl<F: FnMut(CutoverStep) + Send> Steps for Logged<F> {
    fn step(&mut self, step: CutoverStep) -> impl std::future::Future<Output = Result<(), CutoverError>> + Send {
        (self.0)(step);
        std::future::ready(Ok(()))
    }
}

/// Fault injection for the crash-recovery tests: with `PIKA_OPERATOR_CRASH_AT=<step>` the
/// operator aborts as that step begins (after recording it); with `PIKA_OPERATOR_PAUSE_AT=<step>`
/// it stops there for 3 s, the first time only, so that a test can strike at a known point.
pub fn crash_point(step: CutoverStep) {
    if std::env::var("PIKA_OPERATOR_CRASH_AT").is_ok_and(|at| at == step.as_str()) {
        tracing::error!(%step, "PIKA_OPERATOR_CRASH_AT: aborting");
        std::process::abort();
    }
    static PAUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if std::env::var("PIKA_OPERATOR_PAUSE_AT").is_ok_and(|at| at == step.as_str())
        && !PAUSED.swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        tracing::warn!(%step, "PIKA_OPERATOR_PAUSE_AT: pausing 3 s");
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// Runs the seven steps for `slots` (range syntax) from `start`. The pause is None when the
/// writes were held by an earlier run (its start is unknown).
#[allow(clippy::too_many_arguments)]
pub async fn move_slots(
    admin: &impl DataPlane,
    slots: &str,
    from: &GroupNodes,
    to: &GroupNodes,
    proxies: &[String],
    (epoch, slot_count, routes): (u64, u32, &Routes),
    limits: Limits,
    start: Start,
    steps: &mut impl Steps,
) -> Result<Outcome, CutoverError> {
    let count = common::slotset::parse_slots(slots).map(|v| v.len()).unwrap_or(0);
    let mut attempts = 0;
    let mut held = None;
    if start == Start::Beginning {
        steps.step(CutoverStep::Addslots).await?;
        for node in to.all() {
            admin.add_slots(node, slots).await?;
        }
        steps.step(CutoverStep::Sync).await?;
        admin.follow_to_move(&to.master, &from.master, slots).await?;
        wait_lag(admin, from, &to.master, slots, count, u64::MAX, limits.sync_timeout).await?;
        steps.step(CutoverStep::Replicas).await?;
        for r in &to.replicas {
            admin.follow(r, &to.master, slots).await?;
        }
        loop {
            attempts += 1;
            steps.step(CutoverStep::CatchUp).await?;
            wait_lag(admin, from, &to.master, slots, count, limits.lag_threshold, limits.sync_timeout).await?;
            let copies = (limits.target_copies, limits.lag_threshold);
            wait_copies(admin, to, slots, count, copies, limits.sync_timeout).await?;
            steps.step(CutoverStep::Hold).await?;
            let started = Instant::now();
            let fenced_and_drained = async {
                for p in proxies {
                    admin.hold(p, slots).await?;
                }
                steps.step(CutoverStep::Fence).await?;
                admin.fence(&from.master, slots).await?;
                steps.step(CutoverStep::Drain).await?;
                wait_lag(admin, from, &to.master, slots, count, 0, limits.cutover_timeout).await?;
                // The source is fenced: the target's replicas get the last of its data too.
                let left = limits.cutover_timeout.saturating_sub(started.elapsed());
                wait_copies(admin, to, slots, count, (limits.target_copies, 0), left).await
            };
            match fenced_and_drained.await {
                Ok(()) => {
                    held = Some(started);
                    break;
                }
                // Not promoted: the source still has every write. Undo the fence and the holds
                // (best effort: a later pass repairs what a failed call leaves), then retry or fail.
                Err(err) => {
                    steps.step(CutoverStep::Rollback).await?;
                    tracing::warn!(slots, error = %err, attempts, "cutover rolled back");
                    roll_back(admin, from, proxies, slots).await;
                    if !matches!(err, CutoverError::Timeout(_)) || attempts >= limits.attempts {
                        return Err(err);
                    }
                }
            }
        }
    }
    steps.step(CutoverStep::Promote).await?;
    admin.promote(&to.master, slots).await?;
    // Created fenced by addslots (start-fenced): writable from here on.
    admin.unfence(&to.master, slots).await?;
    steps.step(CutoverStep::Route).await?;
    for p in proxies {
        admin.set_route(p, epoch, slot_count, routes).await?;
    }
    let pause = held.map(|h| h.elapsed());
    steps.step(CutoverStep::Cleanup).await?;
    clean_up_source(admin, from, to, slots, limits.cleanup_wait).await?;
    Ok(Outcome { pause, attempts })
}

/// Undoes a cutover that did not promote: the source takes writes again, the proxies let the
/// held requests through (to the source). Best effort: a later repair pass settles the rest.
pub(crate) async fn roll_back(admin: &impl DataPlane, from: &GroupNodes, proxies: &[String], slots: &str) {
    let _ = admin.unfence(&from.master, slots).await;
    for p in proxies {
        let _ = admin.release(p, slots).await;
    }
}

/// Gives up a batch that was not promoted: its holds and fence are undone (as a resumed move
/// does) and the target group's copies dropped. Until this succeeds the batch stays its
/// migration's, which keeps a failover of the target group off it: a copy left at the target
/// (a replica of the source) was promoted by such a failover once the target master died
/// (simulation, seed 264 in replicated mode: a stale copy promoted, acknowledged writes lost).
pub async fn abandon(
    admin: &impl DataPlane,
    recorded: Option<CutoverStep>,
    (from, to): (&GroupNodes, &GroupNodes),
    proxies: &[String],
    slots: &str,
    timeout: Duration,
) -> Result<(), CutoverError> {
    // Every member of the target group must run: one that is down keeps its copy, and follows
    // the source again once back, a replica of it that never lets go (simulation, seed 484 in
    // replicated mode: a later move's cleanup of the source waited for it forever).
    if to.replicas.len() + 1 < to.size {
        return Err(CutoverError::Timeout(format!(
            "{} of the {} members of {}'s group run: the others may hold copies of {slots}",
            to.replicas.len() + 1,
            to.size,
            to.master
        )));
    }
    resume_point(admin, recorded, from, proxies, slots).await;
    drop_copies(admin, to, slots, timeout).await
}

/// Where a move whose last recorded step was `recorded` resumes. Before promotion there is
/// nothing to keep: an attempt that held or fenced is rolled back and the move starts over
/// (every early step is idempotent). Once promotion began, the source is fenced and drained, so
/// the move goes forward.
pub async fn resume_point(
    admin: &impl DataPlane,
    recorded: Option<CutoverStep>,
    from: &GroupNodes,
    proxies: &[String],
    slots: &str,
) -> Start {
    use CutoverStep::*;
    match recorded {
        // Promotion and unfencing are idempotent: done again, they also settle a target master
        // replaced by a failover or restarted (fenced) after the promotion.
        Some(Promote | Route | Cleanup) => Start::Promote,
        Some(step @ (Hold | Fence | Drain | Rollback)) => {
            tracing::warn!(slots, %step, "rolling back a cutover an earlier run left unfinished");
            roll_back(admin, from, proxies, slots).await;
            Start::Beginning
        }
        None | Some(Addslots | Sync | Replicas | CatchUp) => Start::Beginning,
    }
}

/// Step 7: the source group lets go of `slots`: its replicas first, then its master, which after
/// a failover may still replicate them from its former master (a batch promoted out of the
/// group is not taken over).
/// The old copies go only once `serving` (the group that serves the slots now) has its own:
/// its master streams them to as many replicas as the group should have. Until then they wait,
/// up to `timeout` (a cleanup retried later; the repair skips them for a pass): deleted while a
/// replica of the new group was down, the new master held the only copy, and its failure lost
/// the slots (the simulation, seed 1193 with every fault).
pub async fn clean_up_source(
    admin: &impl DataPlane,
    from: &GroupNodes,
    serving: &GroupNodes,
    slots: &str,
    timeout: Duration,
) -> Result<(), CutoverError> {
    let deadline = Instant::now() + timeout;
    while let Some(short) = short_of_copies(admin, serving, slots).await? {
        if Instant::now() >= deadline {
            return Err(CutoverError::Timeout(format!(
                "the old copies of {slots} stay until {} has its replicas: {short}",
                serving.master
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop_copies(admin, from, slots, timeout).await
}

/// Every member of `group` lets go of `slots`, its replicas first (see [`let_go`]); for callers
/// that have checked [`short_of_copies`] themselves.
pub async fn drop_copies(
    admin: &impl DataPlane,
    group: &GroupNodes,
    slots: &str,
    timeout: Duration,
) -> Result<(), CutoverError> {
    let_go(admin, group.replicas.iter().chain([&group.master]), slots, timeout).await
}

/// Which of `slots` the group's master streams to fewer replicas than the group should have
/// (None: every slot has them all).
pub async fn short_of_copies(
    admin: &impl DataPlane,
    group: &GroupNodes,
    slots: &str,
) -> Result<Option<String>, AdminError> {
    let wanted = group.size.saturating_sub(1);
    if wanted == 0 {
        return Ok(None);
    }
    let info = admin.slot_info(&group.master, slots).await?;
    let expected = common::slotset::parse_slots(slots).map_or(0, |s| s.len());
    let short: Vec<u32> = info.iter().filter(|s| s.streaming_replicas() < wanted).map(|s| s.slot).collect();
    Ok(match (short.is_empty(), info.len() < expected) {
        (true, false) => None,
        (true, true) => Some(format!("it does not hold every slot yet ({} of {expected})", info.len())),
        (false, _) => {
            Some(format!("slots {} have fewer than {wanted} replicas streaming", common::slotset::format_slots(&short)))
        }
    })
}

/// `members` delete their copies of `slots`. Each member holding some is fenced and promoted
/// first (promoted unfenced, a copy would briefly report the slots as writable, and a proxy
/// rebuilding its table then could route them to a copy about to be deleted; a copy waiting
/// for a full sync cannot be promoted and is deleted as it is). Once nothing replicates them,
/// every member deletes them. Members that already let go of some (an interrupted cleanup) are
/// skipped.
pub async fn let_go<'m>(
    admin: &impl DataPlane,
    members: impl Iterator<Item = &'m String>,
    slots: &str,
    timeout: Duration,
) -> Result<(), CutoverError> {
    let mut holding = Vec::new();
    for member in members {
        let info = admin.slot_info(member, slots).await?;
        if info.is_empty() {
            continue;
        }
        let ranges = common::slotset::format_slots(&info.iter().map(|s| s.slot).collect::<Vec<_>>());
        admin.fence(member, &ranges).await?;
        // A copy in a full sync cannot be promoted (the node refuses the whole command) and is
        // deleted as it is: only the others are promoted.
        let live: Vec<u32> =
            info.iter().filter(|s| !s.slave.as_ref().is_some_and(|r| r.state.in_full_sync())).map(|s| s.slot).collect();
        if !live.is_empty() {
            let live = common::slotset::format_slots(&live);
            if let Err(e) = admin.promote(member, &live).await {
                tracing::warn!(%member, slots = %live, error = %e, "not promoted before deletion");
            }
        }
        holding.push((member, ranges));
    }
    for (member, ranges) in &holding {
        wait_no_replicas(admin, member, ranges, timeout).await?;
    }
    for (member, ranges) in &holding {
        admin.del_slots(member, ranges).await?;
    }
    Ok(())
}

/// Waits until at least `copies` of `group`'s replicas are streamed every slot of `slots` by
/// its master (chained: the target of a move streams to its replicas while it follows the
/// source) incrementally with lag at most `max_lag`.
async fn wait_copies(
    admin: &impl DataPlane,
    group: &GroupNodes,
    slots: &str,
    count: usize,
    (copies, max_lag): (usize, u64),
    timeout: Duration,
) -> Result<(), CutoverError> {
    if copies == 0 {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    loop {
        let info = admin.slot_info(&group.master, slots).await?;
        let ready = group.replicas.iter().filter(|r| caught_up(&lags_of(&info, r), count, max_lag)).count();
        if ready >= copies {
            return Ok(());
        }
        // Too few even connected: dead replicas do not make the move wait out its timeout
        // (the local runtime restarts them only after the move; pika-chaos, seed 7 with scale
        // and master kills in replicated mode waited 300 s for a killed one).
        let mut possible = 0;
        for r in &group.replicas {
            if listed(&info, r) || admin.answers(r).await {
                possible += 1;
            }
        }
        if possible < copies {
            return Err(CutoverError::Admin(AdminError::Unreachable {
                addr: group.master.clone(),
                text: format!("{possible} of its replicas can hold {slots}, {copies} needed"),
            }));
        }
        if Instant::now() >= deadline {
            return Err(CutoverError::Timeout(format!(
                "{ready} of the {copies} replicas of {} needed hold {slots} with lag at most {max_lag}",
                group.master
            )));
        }
        tokio::time::sleep(poll_pause(max_lag)).await;
    }
}

/// The lag of `replica` on each slot of `info` (a master's `pkcluster info slot`): None where
/// it is not listed or not streaming incrementally (a full sync).
fn lags_of(info: &[SlotInfo], replica: &str) -> Vec<Option<u64>> {
    info.iter()
        .map(|s| {
            let r = s.master.as_ref()?.replicas.iter().find(|r| r.addr == replica)?;
            (r.status == SyncStatus::BinlogSync).then_some(r.lag.unwrap_or(0))
        })
        .collect()
}

/// Whether `lags` cover all `count` slots, each streamed with lag at most `max_lag`.
fn caught_up(lags: &[Option<u64>], count: usize, max_lag: u64) -> bool {
    lags.len() == count && lags.iter().all(|l| l.is_some_and(|l| l <= max_lag))
}

/// Whether `replica` is connected for any slot of `info`, in whatever state.
fn listed(info: &[SlotInfo], replica: &str) -> bool {
    info.iter().any(|s| s.master.as_ref().is_some_and(|m| m.replicas.iter().any(|r| r.addr == replica)))
}

/// Between two polls of a lag: while writes are held (max lag 0) every millisecond counts;
/// before, a slower poll spares the source.
fn poll_pause(max_lag: u64) -> Duration {
    Duration::from_millis(if max_lag == 0 { 2 } else { 20 })
}

/// Waits until `master` streams every slot of `slots` to `replica` incrementally with lag at
/// most `max_lag`.
pub(crate) async fn wait_lag(
    admin: &impl DataPlane,
    from: &GroupNodes,
    replica: &str,
    slots: &str,
    count: usize,
    max_lag: u64,
    timeout: Duration,
) -> Result<(), CutoverError> {
    let deadline = Instant::now() + timeout;
    loop {
        let info = admin.slot_info(&from.master, slots).await?;
        let lags = lags_of(&info, replica);
        if caught_up(&lags, count, max_lag) {
            return Ok(());
        }
        // Not even connected: a replica that died does not make the move wait out its timeout
        // (the local runtime runs no pass meanwhile, so nothing would replace or restart it).
        if !listed(&info, replica) && !admin.answers(replica).await {
            return Err(CutoverError::Admin(AdminError::Unreachable {
                addr: replica.into(),
                text: "does not answer while it should catch up".into(),
            }));
        }
        if Instant::now() >= deadline {
            let streaming = lags.iter().flatten().count();
            let max = lags.iter().flatten().max();
            return Err(CutoverError::Timeout(format!(
                "{replica} catching up with {}: {streaming} of {count} slots streaming, max lag {max:?}",
                from.master
            )));
        }
        tokio::time::sleep(poll_pause(max_lag)).await;
    }
}

/// Waits until nothing replicates `slots` from `master` any more (its replicas let go).
pub async fn wait_no_replicas(
    admin: &impl DataPlane,
    master: &str,
    slots: &str,
    timeout: Duration,
) -> Result<(), CutoverError> {
    let deadline = Instant::now() + timeout;
    loop {
        let info = admin.slot_info(master, slots).await?;
        if info.iter().all(|s| s.master.as_ref().is_none_or(|m| m.replicas.is_empty())) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CutoverError::Timeout(format!("replicas of {master} to let go of {slots}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
