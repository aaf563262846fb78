//! The SlotMigration controller: moves `spec.slots` to group `spec.targetGroup`, one batch of
//! at most `batchSize` slots per pass (one hold/fence/promote round each, so one pause stays
//! short). Before every step of a batch the step is written to the status; an operator
//! restarted at any point resumes the batch from there (`cutover::resume_point`). One
//! migration runs at a time per cluster, oldest first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::ResourceExt;
use serde_json::json;

use super::cluster::migrations_in_flight;
use super::{observe, Context, Error};
use crate::control::{self, NextBatch};
use crate::crd::{CutoverStep, MigrationPhase, PikaCluster, SlotMigration, SlotMigrationStatus};
use crate::cutover::{self, CutoverError, Limits, Start, Steps};
use crate::dataplane;
use crate::metrics::{cluster_labels, labels};
use common::slotset::{format_slots, parse_slots};

pub fn error_policy(m: Arc<SlotMigration>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(migration = %m.name_any(), error = %err, "reconcile failed");
    ctx.record_error("migration", err);
    Action::requeue(Duration::from_secs(5))
}

/// This pass's writes of the migration's status, each at the resourceVersion it read or last
/// wrote ([`super::patch_status_at`]): an instance that lost its Lease cannot overwrite the
/// new leader's record of the cutover.
struct Record<'a> {
    ctx: &'a Context,
    api: Api<SlotMigration>,
    name: String,
    version: Option<String>,
}

impl Record<'_> {
    /// Writes the whole status. A merge patch leaves out what is not in it, and `None` fields
    /// are not serialised: the optional ones are written as null so that clearing them clears
    /// them.
    async fn patch(&mut self, status: &SlotMigrationStatus) -> Result<(), Error> {
        let mut value = serde_json::to_value(status).expect("a status serialises");
        for key in ["step", "currentBatch", "sourceGroup", "message"] {
            value.as_object_mut().expect("an object").entry(key).or_insert(serde_json::Value::Null);
        }
        super::patch_status_at(self.ctx, &self.api, &self.name, &mut self.version, value).await
    }
}

/// Records each step in the migration's status before it acts, after checking that neither
/// group's master changed since the move was planned (the cluster's status records failovers).
struct StatusSteps<'r, 'a> {
    record: &'r mut Record<'a>,
    last: Option<CutoverStep>,
    clusters: Api<PikaCluster>,
    cluster: String,
    planned: cutover::Planned,
}

impl Steps for StatusSteps<'_, '_> {
    fn step(&mut self, step: CutoverStep) -> impl std::future::Future<Output = Result<(), CutoverError>> + Send {
        let patch = json!({ "step": step, "phase": step.phase() });
        let (clusters, cluster, planned) = (self.clusters.clone(), self.cluster.clone(), self.planned.clone());
        let (record, last) = (&mut *self.record, &mut self.last);
        async move {
            let failed = |text: String| CutoverError::Record { step, text };
            let status = clusters.get(&cluster).await.map_err(|e| failed(e.to_string()))?.status.unwrap_or_default();
            planned.check(&status.masters())?;
            *last = Some(step);
            super::patch_status_at(record.ctx, &record.api, &record.name, &mut record.version, patch)
                .await
                .map_err(|e| failed(e.to_string()))?;
            cutover::crash_point(step);
            Ok(())
        }
    }
}

async fn fail(
    record: &mut Record<'_>,
    m: &SlotMigration,
    mut status: SlotMigrationStatus,
    why: String,
) -> Result<Action, Error> {
    status.phase = MigrationPhase::Failed;
    status.message = Some(why.clone());
    status.finished_at = Some(super::conditions::now());
    record.patch(&status).await?;
    record.ctx.metrics.migrations.get_or_create(&migration_labels(m, "failed")).inc();
    record.ctx.event(m, true, "Failed", why).await;
    Ok(Action::await_change())
}

/// Waits with a message in the status (no phase change).
async fn wait(record: &mut Record<'_>, mut status: SlotMigrationStatus, why: String) -> Result<Action, Error> {
    if status.message.as_deref() != Some(why.as_str()) {
        status.message = Some(why);
        record.patch(&status).await?;
    }
    Ok(Action::requeue(Duration::from_secs(3)))
}

pub async fn reconcile(m: Arc<SlotMigration>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciles.get_or_create(&labels(&[("controller", "migration")])).inc();
    let ns = m.namespace().ok_or_else(|| Error::Invalid("a SlotMigration is namespaced".into()))?;
    let name = m.name_any();
    let api: Api<SlotMigration> = Api::namespaced(ctx.client.clone(), &ns);
    // The status is this controller's record of where the move is: read it fresh, not from the
    // watch cache, which may not have seen the last step written yet.
    let Some(m) = api.get_opt(&name).await? else { return Ok(Action::await_change()) };
    let m = Arc::new(m);
    let mut record =
        Record { ctx: &ctx, api: api.clone(), name: name.clone(), version: m.metadata.resource_version.clone() };
    let mut status = m.status.clone().unwrap_or_default();
    if matches!(status.phase, MigrationPhase::Succeeded | MigrationPhase::Failed) {
        return Ok(Action::await_change());
    }
    let Some(cluster) = Api::<PikaCluster>::namespaced(ctx.client.clone(), &ns).get_opt(&m.spec.cluster).await? else {
        return wait(&mut record, status, format!("PikaCluster {} not found", m.spec.cluster)).await;
    };
    let wanted = match parse_slots(&m.spec.slots) {
        Ok(s) if s.iter().all(|&s| s < cluster.spec.slots) && !s.is_empty() => s,
        _ => {
            return fail(
                &mut record,
                &m,
                status,
                format!("slots {:?}: not slots of a {}-slot cluster", m.spec.slots, cluster.spec.slots),
            )
            .await
        }
    };
    // A scale-in since, or a batch that failed too often, gives the move up (`control::give_up`);
    // an unpromoted batch is abandoned first (below).
    let promoted = in_flight(&m).promoted;
    let give_up =
        control::give_up(m.spec.target_group, cluster.spec.groups, status.attempts, promoted).map(|why| match why {
            control::GiveUp::TargetGone => format!(
                "targetGroup {} does not exist (the cluster has {} groups)",
                m.spec.target_group, cluster.spec.groups
            ),
            control::GiveUp::TooManyAttempts => format!(
                "batch {} failed {} times",
                status.current_batch.clone().unwrap_or_default(),
                control::BATCH_ATTEMPTS
            ),
        });
    if let Some(why) = give_up.clone().filter(|_| status.current_batch.is_none()) {
        return fail(&mut record, &m, status, why).await;
    }
    if cluster.spec.paused {
        return wait(&mut record, status, "the cluster is paused".into()).await;
    }
    let queue = migrations_in_flight(&ctx, &ns, &m.spec.cluster).await?;
    if let Some(first) = queue.first().filter(|f| f.name_any() != name) {
        return wait(&mut record, status, format!("waiting for {} to finish", first.name_any())).await;
    }
    let cluster_status = cluster.status.clone().unwrap_or_default();
    let masters = cluster_status.masters();
    let sizes = cluster_status.groups.iter().map(|g| (g.index, g.pods.len().max(1) as u32)).collect();
    let observed =
        observe::classify(&observe::pods(&ctx.client, &cluster).await?, &sizes, &BTreeMap::new(), &cluster.name_any());
    let Some(topology) = observed.topology(&masters, cluster.spec.slots) else {
        return wait(&mut record, status, "waiting for every group's master to run".into()).await;
    };
    let target = m.spec.target_group;
    if !topology.groups.contains_key(&target) {
        return wait(&mut record, status, format!("waiting for group {target}")).await;
    }
    let admin = ctx.admin(&cluster).await?;
    // Held, not only writable: a source master restarted fenced still owns what it has not
    // moved, and the repair leaves a migration's slots to it.
    let owned = topology.held(&admin).await?;

    // The batch: the one recorded (resume), else the next slots not yet at the target, from
    // the group owning the first of them.
    let (batch, from) = match (&status.current_batch, status.source_group) {
        (Some(b), Some(from)) => (parse_slots(b).unwrap_or_default(), from),
        _ => {
            let (batch, from) = match control::next_batch(&owned, &wanted, target, m.spec.batch_size as usize) {
                NextBatch::Done => return finish(&mut record, &m, status).await,
                NextBatch::Unserved(first) => {
                    let why = format!("slot {first} is served by no group (a failover or repair is due)");
                    return wait(&mut record, status, why).await;
                }
                NextBatch::Move { slots, from } => (slots, from),
            };
            status.current_batch = Some(format_slots(&batch));
            status.progress = Some(progress(&status.slots_done, wanted.len()));
            status.source_group = Some(from);
            status.step = None;
            status.started_at.get_or_insert_with(super::conditions::now);
            status.message = None;
            record.patch(&status).await?;
            (batch, from)
        }
    };
    let (Some(from_nodes), Some(to_nodes)) = (topology.groups.get(&from), topology.groups.get(&target)) else {
        return wait(&mut record, status, format!("waiting for groups {from} and {target}")).await;
    };
    let ranges = format_slots(&batch);
    if let Some(why) = give_up {
        let timeout = ctx.limits.cleanup_wait;
        let abandoned =
            cutover::abandon(&admin, status.step, (from_nodes, to_nodes), &observed.proxies, &ranges, timeout).await;
        if let Err(e) = abandoned {
            return wait(&mut record, status, format!("giving up batch {ranges}: {e}")).await;
        }
        status.current_batch = None;
        status.source_group = None;
        return fail(&mut record, &m, status, why).await;
    }
    let start = cutover::resume_point(&admin, status.step, from_nodes, &observed.proxies, &ranges).await;
    if start != Start::Beginning {
        tracing::info!(migration = %name, step = ?status.step, ?start, "resuming a batch");
    }
    let after = dataplane::after_move(&owned, from, target, &batch);
    let routes = topology.routes(&after);
    let limits = Limits {
        lag_threshold: m.spec.lag_threshold_bytes,
        cutover_timeout: Duration::from_millis(m.spec.cutover_timeout_ms),
        target_copies: cluster.spec.durability.min_acks() as usize,
        ..ctx.limits
    };
    let planned = cutover::Planned::new(&masters, from, target);
    let mut steps = StatusSteps {
        record: &mut record,
        last: status.step,
        clusters: Api::namespaced(ctx.client.clone(), &ns),
        cluster: m.spec.cluster.clone(),
        planned,
    };
    let result = cutover::move_slots(
        &admin,
        &ranges,
        from_nodes,
        to_nodes,
        &observed.proxies,
        (ctx.epochs.next(), cluster.spec.slots, &routes),
        limits,
        start,
        &mut steps,
    )
    .await;
    let last_step = steps.last;
    match result {
        Ok(outcome) => {
            let mut done = parse_slots(&status.slots_done).unwrap_or_default();
            done.extend(&batch);
            done.sort_unstable();
            done.dedup();
            status.slots_done = format_slots(&done);
            status.progress = Some(progress(&status.slots_done, wanted.len()));
            status.current_batch = None;
            status.source_group = None;
            status.step = None;
            status.attempts = 0;
            if let Some(pause) = outcome.pause {
                let ms = pause.as_millis() as u64;
                status.batch_pauses_ms.push(ms);
                status.cutover_pause_ms = Some(status.cutover_pause_ms.unwrap_or(0).max(ms));
                let l = cluster_labels(&m.namespace().unwrap_or_default(), &m.spec.cluster, &[]);
                ctx.metrics.cutover_pause.get_or_create(&l).observe(pause.as_secs_f64());
            }
            record.patch(&status).await?;
            tracing::info!(migration = %name, slots = %ranges, from, to = target, pause_ms = ?outcome.pause.map(|p| p.as_millis()), "batch moved");
            Ok(Action::requeue(Duration::ZERO))
        }
        Err(e) => {
            status.step = last_step;
            status.attempts += 1;
            status.message = Some(format!("batch {ranges}: {e}"));
            // After control::BATCH_ATTEMPTS an unpromoted batch is given up by the next pass.
            record.patch(&status).await?;
            // The status write above triggers the next pass at once; wait here instead, so a
            // failing batch is retried at the error policy's pace, not in a hot loop.
            tokio::time::sleep(Duration::from_secs(2)).await;
            Err(e.into())
        }
    }
}

/// The batch a migration is moving, as its status records it (for the cluster's pass).
pub fn in_flight(m: &SlotMigration) -> crate::control::InFlight {
    let status = m.status.clone().unwrap_or_default();
    let batch = status.current_batch.as_deref().and_then(|b| parse_slots(b).ok()).unwrap_or_default();
    crate::control::InFlight {
        slots: parse_slots(&m.spec.slots).unwrap_or_default(),
        to: m.spec.target_group,
        promoted: crate::control::InFlight::is_promoted(&batch, status.step),
        batch,
        from: status.source_group,
        done: parse_slots(&status.slots_done).unwrap_or_default(),
    }
}

fn migration_labels(m: &SlotMigration, result: &str) -> Vec<(String, String)> {
    cluster_labels(&m.namespace().unwrap_or_default(), &m.spec.cluster, &[("result", result)])
}

/// `moved/total` for the printer column.
fn progress(slots_done: &str, total: usize) -> String {
    format!("{}/{total}", parse_slots(slots_done).map_or(0, |d| d.len()))
}

async fn finish(record: &mut Record<'_>, m: &SlotMigration, mut status: SlotMigrationStatus) -> Result<Action, Error> {
    status.phase = MigrationPhase::Succeeded;
    let total = parse_slots(&m.spec.slots).map_or(0, |s| s.len());
    status.progress = Some(format!("{total}/{total}"));
    status.step = None;
    status.message = None;
    status.finished_at = Some(super::conditions::now());
    record.patch(&status).await?;
    let ctx = record.ctx;
    ctx.metrics.migrations.get_or_create(&migration_labels(m, "succeeded")).inc();
    let note = format!(
        "slots {} now in group {}; longest pause {} ms",
        m.spec.slots,
        m.spec.target_group,
        status.cutover_pause_ms.unwrap_or(0)
    );
    ctx.event(m, false, "Succeeded", note).await;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_keep_their_recorded_names_and_phases() {
        for step in CutoverStep::ALL {
            let recorded = serde_json::to_value(step).unwrap();
            assert_eq!(recorded, step.as_str(), "status.step is the name logs and crash points use");
            assert_eq!(serde_json::from_value::<CutoverStep>(recorded).unwrap(), step);
        }
        assert_eq!(CutoverStep::Drain.phase(), MigrationPhase::CuttingOver);
        assert_eq!(CutoverStep::CatchUp.as_str(), "catch-up");
        let past: Vec<&str> = CutoverStep::ALL.iter().filter(|s| s.past_promotion()).map(|s| s.as_str()).collect();
        assert_eq!(past, ["promote", "route", "cleanup"]);
        assert!(serde_json::from_value::<CutoverStep>(serde_json::json!("bogus")).is_err());
    }
}
