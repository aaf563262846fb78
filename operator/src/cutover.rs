//! Moving a batch of slots from group A to group B without losing a write (DESIGN.md section 5):
//!
//! 1. `addslots S` on every member of B;
//! 2. B's master follows A's master for S; wait until A streams S to it incrementally;
//! 3. B's replicas follow B's master for S;
//! 4. wait until A's lag for B's master is under the threshold;
//! 5. proxies hold S; A's master fences S; wait for lag 0 (on timeout: unfence, release, back to 4);
//! 6. B's master promotes S; proxies get the new routes (which releases the held requests);
//! 7. A's replicas stop following S, then every member of A deletes S.
//!
//! Each step is safe to run again (a restarted operator repeats the step it recorded): addslots
//! and delslots accept "already done", following an already-followed master is skipped by the
//! node, promotion and fencing are idempotent, routes carry epochs.

use std::time::{Duration, Instant};

use crate::admin::{Admin, AdminError};

/// The addresses of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupNodes {
    pub master: String,
    pub replicas: Vec<String>,
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
    pub attempts: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            lag_threshold: 1 << 20,
            cutover_timeout: Duration::from_secs(5),
            sync_timeout: Duration::from_secs(300),
            attempts: 5,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CutoverError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("timed out: {0}")]
    Timeout(String),
}

/// What happened, for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// How long writes to the batch were held.
    pub pause: Duration,
    pub attempts: u32,
}

/// The routes every proxy gets once B owns the batch: `(group, master address, slots)`.
pub type Routes = Vec<(String, String, String)>;

/// Runs the seven steps for `slots` (range syntax). `step` is told each step before it acts.
#[allow(clippy::too_many_arguments)]
pub async fn move_slots(
    admin: &Admin,
    slots: &str,
    from: &GroupNodes,
    to: &GroupNodes,
    proxies: &[String],
    (epoch, slot_count, routes): (u64, u32, &Routes),
    limits: Limits,
    mut step: impl FnMut(&str),
) -> Result<Outcome, CutoverError> {
    let count = common::slotset::parse_slots(slots).map(|v| v.len()).unwrap_or(0);
    step("addslots");
    for node in to.all() {
        admin.add_slots(node, slots).await?;
    }
    step("sync");
    admin.follow(&to.master, &from.master, slots).await?;
    wait_lag(admin, from, &to.master, slots, count, u64::MAX, limits.sync_timeout).await?;
    step("replicas");
    for r in &to.replicas {
        admin.follow(r, &to.master, slots).await?;
    }
    let mut attempts = 0;
    let pause = loop {
        attempts += 1;
        step("catch-up");
        wait_lag(admin, from, &to.master, slots, count, limits.lag_threshold, limits.sync_timeout).await?;
        step("hold");
        let held = Instant::now();
        let fenced_and_drained = async {
            for p in proxies {
                admin.hold(p, slots).await?;
            }
            step("fence");
            admin.fence(&from.master, slots).await?;
            step("drain");
            wait_lag(admin, from, &to.master, slots, count, 0, limits.cutover_timeout).await?;
            step("promote");
            admin.promote(&to.master, slots).await?;
            Ok::<(), CutoverError>(())
        };
        match fenced_and_drained.await {
            Ok(()) => break held,
            // Not promoted: the source still has every write. Undo the fence and the holds
            // (best effort: a later pass repairs what a failed call leaves), then retry or fail.
            Err(err) => {
                step("rollback");
                tracing::warn!(slots, error = %err, attempts, "cutover rolled back");
                let _ = admin.unfence(&from.master, slots).await;
                for p in proxies {
                    let _ = admin.release(p, slots).await;
                }
                if !matches!(err, CutoverError::Timeout(_)) || attempts >= limits.attempts {
                    return Err(err);
                }
            }
        }
    };
    step("route");
    for p in proxies {
        admin.set_route(p, epoch, slot_count, routes).await?;
    }
    let pause = pause.elapsed();
    step("cleanup");
    for r in &from.replicas {
        // Fenced first: promoted, they would briefly report S as writable, and a proxy
        // rebuilding its table then could route S to a copy about to be deleted.
        admin.fence(r, slots).await?;
        admin.promote(r, slots).await?;
    }
    wait_no_replicas(admin, &from.master, slots, limits.sync_timeout).await?;
    for r in &from.replicas {
        admin.del_slots(r, slots).await?;
    }
    admin.del_slots(&from.master, slots).await?;
    Ok(Outcome { pause, attempts })
}

/// Waits until `master` streams every slot of `slots` to `replica` incrementally with lag at
/// most `max_lag`.
async fn wait_lag(
    admin: &Admin,
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
        let lags: Vec<Option<u64>> = info
            .iter()
            .map(|s| {
                let r = s.master.as_ref()?.replicas.iter().find(|r| r.addr == replica)?;
                (r.status == "SlaveBinlogSync").then_some(r.lag.unwrap_or(0))
            })
            .collect();
        if lags.len() == count && lags.iter().all(|l| l.is_some_and(|l| l <= max_lag)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let streaming = lags.iter().flatten().count();
            let max = lags.iter().flatten().max();
            return Err(CutoverError::Timeout(format!(
                "{replica} catching up with {}: {streaming} of {count} slots streaming, max lag {max:?}",
                from.master
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until nothing replicates `slots` from `master` any more (its replicas let go).
pub async fn wait_no_replicas(admin: &Admin, master: &str, slots: &str, timeout: Duration) -> Result<(), CutoverError> {
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
