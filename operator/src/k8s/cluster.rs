//! The PikaCluster controller. Each pass:
//!
//! 1. finalizer (on delete: the cluster's SlotMigrations go; owned objects follow by owner
//!    reference);
//! 2. paused: only the ReconciliationPaused condition is written;
//! 3. children by server-side apply (`resources`);
//! 4. the data plane, once pods run: masters, failover, demotion of returning old masters,
//!    bootstrap, repair, replicas, routes, rebalancing (by creating SlotMigrations) and
//!    retiring drained groups;
//! 5. status: groups, conditions, phase, observedGeneration.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::conditions::{self, APPLIED, CONFIG_VALID, DEGRADED, MONITORING, PAUSED, PROGRESSING, READY};
use super::observe;
use super::password;
use super::{poll, Context, Error};
use crate::admin::Admin;
use crate::control::{self, Happened};
use crate::crd::{
    GroupStatus, PikaCluster, PikaClusterStatus, RolloutStatus, SlotMigration, SlotMigrationSpec, SwitchoverStatus,
    SWITCHOVER_ANNOTATION,
};
use crate::metrics::cluster_labels;
use crate::metrics::labels;
use crate::node_config::{self, NodeConfig};
use crate::planner;
use crate::resources::{self, GROUP_LABEL, MANAGER};
use crate::rollout;
use crate::switchover;
use common::slotset::{format_slots, parse_slots};

pub const FINALIZER: &str = "pika.sharding.io/cleanup";
/// Label on the SlotMigrations the operator creates.
pub const CLUSTER_LABEL: &str = "pika.sharding.io/cluster";

pub async fn reconcile(cluster: Arc<PikaCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciles.get_or_create(&labels(&[("controller", "cluster")])).inc();
    let ns = cluster.namespace().ok_or_else(|| Error::Invalid("a PikaCluster is namespaced".into()))?;
    let api: Api<PikaCluster> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, cluster, |event| async {
        match event {
            Finalizer::Apply(c) => apply(c, &ctx).await,
            Finalizer::Cleanup(c) => cleanup(c, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

pub fn error_policy(cluster: Arc<PikaCluster>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %cluster.name_any(), error = %err, "reconcile failed");
    ctx.record_error("cluster", err);
    Action::requeue(Duration::from_secs(5))
}

/// What the data plane pass found, for the conditions.
#[derive(Debug, Default)]
struct Health {
    node_pods: usize,
    running: usize,
    served: usize,
    migrations: usize,
    /// Every slot served and no move needed (known once the nodes answered).
    balanced: Option<bool>,
    degraded: Option<String>,
    waiting: Option<String>,
    /// A silent master's failover wait ends this soon.
    recheck_after: Option<Duration>,
}

async fn apply(cluster: Arc<PikaCluster>, ctx: &Context) -> Result<Action, Error> {
    // The status records masters and demoted pods: read it fresh, not from the watch cache,
    // which may not have seen the last pass's write yet (a failover would be repeated).
    let api: Api<PikaCluster> = Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    let Some(cluster) = api.get_opt(&cluster.name_any()).await? else { return Ok(Action::await_change()) };
    let cluster = Arc::new(cluster);
    // Every status write of this pass is at this version, or the one it wrote last.
    let mut version = cluster.metadata.resource_version.clone();
    let generation = cluster.metadata.generation;
    let mut status = cluster.status.clone().unwrap_or_default();
    let was_paused = conditions::is_true(&status.conditions, PAUSED);
    status.observed_generation = generation;
    if cluster.spec.paused {
        let note = "spec.paused is true: nothing is created, changed or moved";
        conditions::set(&mut status.conditions, PAUSED, true, "Paused", note, generation, conditions::now());
        status.phase = Some("Paused".into());
        patch_status(ctx, &cluster, &mut version, &status).await?;
        if !was_paused {
            ctx.event(&*cluster, false, "Paused", note.into()).await;
        }
        return Ok(Action::await_change());
    }
    conditions::set(&mut status.conditions, PAUSED, false, "Reconciling", "", generation, conditions::now());
    if was_paused {
        ctx.event(&*cluster, false, "Resumed", "reconciliation resumed".into()).await;
    }
    let admin_password = password::admin_password(ctx, &cluster).await?;
    let passwords = password::follow_user_secret(ctx, &cluster, &mut status).await?;
    let failed = apply_children(ctx, &cluster, &status).await;
    report_applied(ctx, &cluster, &mut status, &failed).await;
    report_config(ctx, &cluster, &mut status).await;
    apply_monitor(ctx, &cluster, &mut status).await;
    let admin = ctx.admin_with(admin_password, passwords.as_ref());
    let health = match data_plane(ctx, &cluster, &mut version, &mut status, &admin, passwords.as_ref()).await {
        Ok(h) => h,
        Err(e @ (Error::Node(_) | Error::Cutover(_))) => {
            // The nodes' trouble is the cluster's status, not only a log line.
            Health { degraded: Some(e.to_string()), ..Health::default() }
        }
        Err(e) => return Err(e),
    };
    set_conditions(&mut status, &health, cluster.spec.slots as usize, generation);
    patch_status(ctx, &cluster, &mut version, &status).await?;
    let failover_after = Duration::from_secs(cluster.spec.failover_after_seconds.max(1) as u64);
    Ok(poll(health.running > 0 || health.degraded.is_some(), failover_after, health.recheck_after))
}

fn set_conditions(status: &mut PikaClusterStatus, h: &Health, slots: usize, generation: Option<i64>) {
    let now = conditions::now;
    let c = &mut status.conditions;
    match &h.degraded {
        Some(why) => conditions::set(c, DEGRADED, true, "MemberDown", why, generation, now()),
        None => conditions::set(c, DEGRADED, false, "Healthy", "", generation, now()),
    }
    let progressing = if h.migrations > 0 {
        Some(("Migrating", format!("{} SlotMigration(s) in flight", h.migrations)))
    } else {
        h.waiting.as_ref().map(|w| ("Creating", w.clone()))
    };
    match &progressing {
        Some((reason, why)) => conditions::set(c, PROGRESSING, true, reason, why, generation, now()),
        None => conditions::set(c, PROGRESSING, false, "Settled", "", generation, now()),
    }
    let ready = h.degraded.is_none() && h.running == h.node_pods && h.node_pods > 0 && h.served == slots;
    let why = format!("{} of {} node pods running; {} of {slots} slots served", h.running, h.node_pods, h.served);
    conditions::set(c, READY, ready, if ready { "Running" } else { "NotReady" }, &why, generation, now());
    status.phase = Some(
        match (h.degraded.is_some(), h.migrations > 0, ready) {
            (true, _, _) => "Degraded",
            (_, true, _) => "Migrating",
            (_, _, true) => "Running",
            _ => "Creating",
        }
        .into(),
    );
}

/// The status, at `version` (see [`super::patch_status_at`]).
async fn patch_status(
    ctx: &Context,
    cluster: &PikaCluster,
    version: &mut Option<String>,
    status: &PikaClusterStatus,
) -> Result<(), Error> {
    let api: Api<PikaCluster> = Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    let status = serde_json::to_value(status).expect("a status serialises");
    super::patch_status_at(ctx, &api, &cluster.name_any(), version, status).await
}

/// Server-side apply of one object, owned by the operator's field manager.
async fn ssa<K>(ctx: &Context, ns: &str, obj: &K) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    api.patch(&obj.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(obj)).await?;
    Ok(())
}

/// Applies the cluster's objects. One that the API server refuses is reported (the `Applied`
/// condition and an Event), not fatal: failover, migrations and status must not wait on an
/// edit that cannot be applied (a changed `storage.size` stopped every reconcile before).
/// Returns what failed, as `<object>: <error>`.
async fn apply_children(ctx: &Context, cluster: &PikaCluster, status: &PikaClusterStatus) -> Vec<String> {
    let ns = cluster.namespace().unwrap_or_default();
    let mut failed = Vec::new();
    let mut note = |what: String, r: Result<(), Error>| {
        if let Err(e) = r {
            failed.push(format!("{what}: {}", super::brief(&e)));
        }
    };
    note("ConfigMap".into(), ssa(ctx, &ns, &resources::config_map(cluster)).await);
    note("Service".into(), ssa(ctx, &ns, &resources::headless_service(cluster)).await);
    note("Service".into(), ssa(ctx, &ns, &resources::client_service(cluster)).await);
    for g in 0..cluster.spec.groups {
        let mut sts = resources::stateful_set(cluster, g);
        // Fewer replicas remove the highest ordinals: never the master's (after a failover it
        // may be one); its group keeps one member more until the user raises the count again.
        let master_ordinal = status
            .groups
            .iter()
            .find(|s| s.index == g)
            .and_then(|s| s.master.as_deref()?.rsplit('-').next()?.parse::<i32>().ok());
        if let (Some(spec), Some(m)) = (sts.spec.as_mut(), master_ordinal) {
            spec.replicas = spec.replicas.max(Some(m + 1));
        }
        let name = sts.name_any();
        note(format!("StatefulSet {name}"), apply_stateful_set(ctx, cluster, &ns, &sts).await);
        note(format!("volumes of group {g}"), expand_volumes(ctx, cluster, &ns, g).await);
        note(format!("PodDisruptionBudget {name}"), ssa(ctx, &ns, &resources::disruption_budget(cluster, g)).await);
    }
    note("proxy Deployment".into(), ssa(ctx, &ns, &resources::proxy_deployment(cluster)).await);
    let policy = match resources::network_policy(cluster, &ctx.operator_namespace) {
        Some(policy) => ssa(ctx, &ns, &policy).await,
        // Turned off: one made before goes (nothing to do when there is none).
        None => ignore_missing(
            Api::<NetworkPolicy>::namespaced(ctx.client.clone(), &ns)
                .delete(&resources::network_policy_name(&cluster.name_any()), &DeleteParams::default())
                .await
                .map(|_| ()),
        ),
    };
    note("NetworkPolicy".into(), policy);
    failed
}

/// Applies a StatefulSet. A change to a field the API server keeps immutable (the volume claim
/// templates: `storage.size`, `storageClassName`) is applied by deleting the StatefulSet with
/// its pods orphaned and creating it again: the pods keep running and the new StatefulSet
/// adopts them (their labels match its selector).
async fn apply_stateful_set(ctx: &Context, cluster: &PikaCluster, ns: &str, sts: &StatefulSet) -> Result<(), Error> {
    match ssa(ctx, ns, sts).await {
        Err(Error::Kube(kube::Error::Api(e))) if e.code == 422 && e.message.contains("Forbidden") => {
            let name = sts.name_any();
            tracing::warn!(statefulset = %name, reason = %e.message, "recreating the StatefulSet, its pods orphaned");
            let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
            let orphan = DeleteParams {
                propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
                ..DeleteParams::default()
            };
            ignore_missing(api.delete(&name, &orphan).await.map(|_| ()))?;
            // Gone once its finalizer-less deletion completed; applied again right away.
            for _ in 0..50 {
                if api.get_opt(&name).await?.is_none() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            ssa(ctx, ns, sts).await?;
            let note = format!("StatefulSet {name} recreated (its pods kept running) to apply: {}", e.message);
            ctx.event(cluster, false, "StatefulSetRecreated", note).await;
            Ok(())
        }
        other => other,
    }
}

/// Raises the storage request of group `g`'s volume claims to `storage.size` (the claims a
/// StatefulSet made keep the size they were created with). The API server refuses it when the
/// StorageClass does not allow expansion, or for a claim not bound yet: the error names it.
async fn expand_volumes(ctx: &Context, cluster: &PikaCluster, ns: &str, g: u32) -> Result<(), Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!("app.kubernetes.io/instance={},{GROUP_LABEL}={g}", cluster.name_any());
    let wanted = &cluster.spec.storage.size;
    let mut refused = Vec::new();
    for pvc in api.list(&ListParams::default().labels(&selector)).await? {
        let requested =
            pvc.spec.as_ref().and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("storage").cloned());
        if requested.is_some_and(|q| &q.0 == wanted) || pvc.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let patch = json!({ "spec": { "resources": { "requests": { "storage": wanted } } } });
        if let Err(e) = api.patch(&pvc.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            refused.push(format!("{}: {}", pvc.name_any(), super::brief(&e.into())));
        }
    }
    match refused.is_empty() {
        true => Ok(()),
        false => Err(Error::Invalid(format!("not resized to {wanted}: {}", refused.join("; ")))),
    }
}

/// The `Applied` condition: whether every object of the cluster is as its spec says; a
/// warning Event when that stops being so (or its reason changes).
async fn report_applied(ctx: &Context, cluster: &PikaCluster, status: &mut PikaClusterStatus, failed: &[String]) {
    let generation = cluster.metadata.generation;
    let (ok, reason, message) = match failed {
        [] => (true, "Applied", String::new()),
        _ => (false, "ApplyFailed", failed.join("\n")),
    };
    let before = status.conditions.iter().find(|c| c.type_ == APPLIED).map(|c| (c.status.clone(), c.message.clone()));
    if !ok && before.as_ref().is_none_or(|(s, m)| s != "False" || m != &message) {
        tracing::warn!(cluster = %cluster.name_any(), %message, "objects not applied");
        ctx.event(cluster, true, reason, message.clone()).await;
    }
    conditions::set(&mut status.conditions, APPLIED, ok, reason, &message, generation, conditions::now());
}

/// The `ConfigValid` condition: entries of `spec.config` the nodes would not take (left out of
/// pika.conf) are named, with a warning Event when they change.
async fn report_config(ctx: &Context, cluster: &PikaCluster, status: &mut PikaClusterStatus) {
    let problems = NodeConfig::of(&cluster.spec).problems;
    let (ok, reason, message) = match problems.as_slice() {
        [] => (true, "Valid", String::new()),
        _ => (false, "InvalidConfig", format!("left out of pika.conf: {}", problems.join("; "))),
    };
    let before = status.conditions.iter().find(|c| c.type_ == CONFIG_VALID).map(|c| c.message.clone());
    if !ok && before.as_ref() != Some(&message) {
        ctx.event(cluster, true, reason, message.clone()).await;
    }
    let generation = cluster.metadata.generation;
    conditions::set(&mut status.conditions, CONFIG_VALID, ok, reason, &message, generation, conditions::now());
}

/// The PodMonitor of `spec.monitoring`. Never fails the pass (failover and migrations must not
/// wait on monitoring): without the Prometheus Operator's CRD the `Monitoring` condition says so.
/// Turned off, the monitor created before (known by the condition) is deleted.
async fn apply_monitor(ctx: &Context, cluster: &PikaCluster, status: &mut PikaClusterStatus) {
    let ns = cluster.namespace().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &resources::pod_monitor_resource());
    let generation = cluster.metadata.generation;
    let Some(monitor) = resources::pod_monitor(cluster) else {
        if status.conditions.iter().any(|c| c.type_ == MONITORING) {
            match ignore_missing(api.delete(&cluster.name_any(), &DeleteParams::default()).await.map(|_| ())) {
                Ok(()) => status.conditions.retain(|c| c.type_ != MONITORING),
                Err(e) => tracing::warn!(error = %e, "PodMonitor not deleted"),
            }
        }
        return;
    };
    let applied = api.patch(&cluster.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&monitor)).await;
    let (ok, reason, message) = match applied {
        Ok(_) => (true, "PodMonitorApplied", format!("PodMonitor {} scrapes every node and proxy", cluster.name_any())),
        Err(kube::Error::Api(e)) if e.code == 404 => (
            false,
            "PrometheusOperatorMissing",
            "spec.monitoring.podMonitor is set but the PodMonitor CRD (monitoring.coreos.com/v1) is not installed"
                .to_string(),
        ),
        Err(e) => (false, "PodMonitorFailed", format!("PodMonitor not applied: {e}")),
    };
    if !ok && !status.conditions.iter().any(|c| c.type_ == MONITORING && c.reason == reason) {
        ctx.event(cluster, true, reason, message.clone()).await;
    }
    conditions::set(&mut status.conditions, MONITORING, ok, reason, &message, generation, conditions::now());
}

async fn cleanup(cluster: Arc<PikaCluster>, ctx: &Context) -> Result<Action, Error> {
    let ns = cluster.namespace().unwrap_or_default();
    let api: Api<SlotMigration> = Api::namespaced(ctx.client.clone(), &ns);
    for m in migrations_of(ctx, &ns, &cluster.name_any()).await? {
        api.delete(&m.name_any(), &DeleteParams::default()).await?;
    }
    ctx.event(&*cluster, false, "Deleting", "the cluster's objects are deleted with it; volumes are kept".into()).await;
    Ok(Action::await_change())
}

/// The SlotMigrations of a cluster (by `spec.cluster`: those created by hand carry no label).
async fn migrations_of(ctx: &Context, ns: &str, cluster: &str) -> Result<Vec<SlotMigration>, Error> {
    let api: Api<SlotMigration> = Api::namespaced(ctx.client.clone(), ns);
    Ok(api.list(&ListParams::default()).await?.items.into_iter().filter(|m| m.spec.cluster == cluster).collect())
}

/// The cluster's SlotMigrations that have not finished, oldest first.
pub async fn migrations_in_flight(ctx: &Context, ns: &str, cluster: &str) -> Result<Vec<SlotMigration>, Error> {
    use crate::crd::MigrationPhase::{Failed, Succeeded};
    let mut list = migrations_of(ctx, ns, cluster).await?;
    list.retain(|m| !matches!(m.status.as_ref().map(|s| s.phase), Some(Succeeded | Failed)));
    list.sort_by(|a, b| {
        (a.metadata.creation_timestamp.as_ref().map(|t| t.0), a.name_any())
            .cmp(&(b.metadata.creation_timestamp.as_ref().map(|t| t.0), b.name_any()))
    });
    Ok(list)
}

/// Members per group (the spec's groups, plus groups still running beyond it, draining) and
/// each group's current template revision, once its StatefulSet controller has seen the
/// latest template (None before).
async fn group_sizes(
    ctx: &Context,
    cluster: &PikaCluster,
) -> Result<(BTreeMap<u32, u32>, BTreeMap<u32, Option<String>>), Error> {
    let ns = cluster.namespace().unwrap_or_default();
    let mut sizes: BTreeMap<u32, u32> =
        (0..cluster.spec.groups).map(|g| (g, 1 + cluster.spec.replicas_per_group)).collect();
    let mut revisions = BTreeMap::new();
    let selector = format!("app.kubernetes.io/instance={},app.kubernetes.io/component=node", cluster.name_any());
    let sets =
        Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns).list(&ListParams::default().labels(&selector)).await?;
    for sts in sets.items {
        let Some(g) = sts.labels().get(GROUP_LABEL).and_then(|g| g.parse::<u32>().ok()) else { continue };
        let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(1) as u32;
        sizes.entry(g).and_modify(|n| *n = (*n).max(replicas)).or_insert(replicas);
        let seen = sts.status.as_ref().filter(|s| s.observed_generation == sts.metadata.generation);
        revisions.insert(g, seen.and_then(|s| s.update_revision.clone()));
    }
    Ok((sizes, revisions))
}

async fn data_plane(
    ctx: &Context,
    cluster: &PikaCluster,
    version: &mut Option<String>,
    status: &mut PikaClusterStatus,
    admin: &Admin,
    passwords: Option<&password::Passwords>,
) -> Result<Health, Error> {
    let (name, ns) = (cluster.name_any(), cluster.namespace().unwrap_or_default());
    let key = format!("{ns}/{name}");
    let (sizes, revisions) = group_sizes(ctx, cluster).await?;
    let pods = observe::pods(&ctx.client, cluster).await?;
    let observed = observe::classify(&pods, &sizes, &revisions, &name);
    let in_flight = migrations_in_flight(ctx, &ns, &name).await?;
    let mut health = Health {
        node_pods: sizes.values().sum::<u32>() as usize,
        running: observed.groups.values().flatten().filter(|m| m.addr.is_some()).count(),
        migrations: in_flight.len(),
        ..Health::default()
    };
    let input = control::Cluster {
        slots: cluster.spec.slots,
        groups: cluster.spec.groups,
        failover_after: Duration::from_secs(cluster.spec.failover_after_seconds.max(1) as u64),
        min_replica_acks: cluster.spec.durability.min_acks(),
        members: observed.groups.clone(),
        proxies: observed.proxies.clone(),
        in_flight: in_flight.iter().map(super::migration::in_flight).collect(),
    };
    // The record: groups from the status (it survives a restart), the rest from memory.
    let mut record = ctx.records.lock().await.remove(&key).unwrap_or_default();
    record.groups = std::mem::take(&mut status.groups)
        .into_iter()
        .filter(|s| sizes.contains_key(&s.index))
        .map(|s| (s.index, group_record(s)))
        .collect();
    let result = {
        let mut journal = StatusJournal { ctx, cluster, observed: &observed, version };
        control::pass(admin, &input, &mut record, &mut journal, &|| ctx.epochs.next()).await
    };
    // A switchover the annotation asks for, once the pass found the cluster healthy.
    let asked = cluster.annotations().get(SWITCHOVER_ANNOTATION).map(String::as_str);
    let healthy = result.as_ref().is_ok_and(|out| out.degraded.is_none() && out.waiting.is_none());
    if asked.is_some() && healthy && input.in_flight.is_empty() && ctx.authority.valid() {
        let last = status.switchover.clone();
        let mut journal = SwitchoverJournal {
            inner: StatusJournal { ctx, cluster, observed: &observed, version },
            status: &mut status.switchover,
        };
        let (epoch, limits) = (ctx.epochs.next(), ctx.limits);
        let driven =
            switchover::drive(admin, &input, &mut record, &mut journal, asked, last.as_ref(), epoch, limits).await;
        report_switchover(ctx, cluster, driven).await;
    }
    // Live options: set on every node once they change (every member must run for it).
    let node_config = NodeConfig::of(&cluster.spec);
    let live = node_config.live_checksum();
    let all_nodes: Option<Vec<String>> = input.members.values().flatten().map(|m| m.addr.clone()).collect();
    if let Some(nodes) =
        all_nodes.clone().filter(|_| status.live_config.as_ref() != Some(&live) && ctx.authority.valid())
    {
        match node_config::apply_live(admin, &nodes, &node_config).await {
            Ok(()) => {
                if status.live_config.is_some() {
                    let note = format!("live options set on {} nodes without a restart", nodes.len());
                    ctx.event(cluster, false, "ConfigApplied", note).await;
                }
                status.live_config = Some(live);
            }
            Err(e) => tracing::warn!(cluster = %name, error = %e, "live options not applied yet"),
        }
    }
    // A new password (or the previous one retired): every node and proxy gets it.
    if let Some(p) = passwords.filter(|_| ctx.authority.valid()) {
        match password::apply(admin, all_nodes.clone(), &input.proxies, p, status).await {
            Ok(true) => {
                let note = match &p.previous {
                    Some(_) => "every node and proxy accepts the new and the previous password",
                    None => "every node and proxy accepts the current password only",
                };
                ctx.event(cluster, false, "PasswordApplied", note.into()).await;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(cluster = %name, error = %e, "passwords not applied yet"),
        }
    }
    // The rolling update: one step per pass, after a healthy pass, with nothing else moving.
    let (updated_pods, pods) = rollout::progress(&input);
    let unknown = observed.revision_unknown.iter().filter_map(|g| input.members.get(g)).map(Vec::len).sum::<usize>();
    let mut rolling = RolloutStatus {
        updated_pods: updated_pods.saturating_sub(unknown as u32),
        pods,
        group: rollout::current_group(&input).or(observed.revision_unknown.first().copied()),
        message: None,
    };
    if rolling.group.is_some() {
        let switching = switchover::pending(asked, status.switchover.as_ref());
        rolling.message = Some(if unknown > 0 {
            "waiting for the StatefulSet controller to see the new template".into()
        } else if !rollout::may_step(result.as_ref().ok(), &input, switching) {
            "waiting for the cluster to settle (no member down, no migration or switchover)".into()
        } else if ctx.authority.valid() {
            let mut journal = StatusJournal { ctx, cluster, observed: &observed, version };
            let rolled = rollout::drive(admin, &input, &mut record, &mut journal, ctx.epochs.next(), ctx.limits).await;
            act_on_rollout(ctx, cluster, rolled).await
        } else {
            crate::authority::Authority::LAPSED.into()
        });
    }
    status.rollout = (pods > 0).then_some(rolling.clone());
    let masters = record.masters();
    status.groups = group_statuses(&observed, &record.groups);
    ctx.records.lock().await.insert(key, record);
    // What `kubectl get pikaclusters` shows first.
    status.ready_groups = Some(observed.ready_groups(&masters));
    status.migrations = in_flight.iter().map(|m| m.name_any()).collect();
    status.max_lag = status.groups.iter().map(|g| g.max_lag).max().unwrap_or(0);
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            status.migrations_in_flight = health.migrations as u32;
            return Err(e.into());
        }
    };
    for happened in &out.happened {
        report(ctx, cluster, happened).await;
    }
    health.waiting = out.waiting;
    health.degraded = out.degraded;
    health.recheck_after = out.recheck_after;
    health.balanced = out.balanced;
    health.served = out.owned.values().map(Vec::len).sum();
    // What the pass decided is acted on only while this instance leads.
    if !ctx.authority.valid() {
        return Err(Error::Record(crate::authority::Authority::LAPSED.into()));
    }
    // No slot moves while pods restart: a migration needs every member of both groups.
    if !out.moves.is_empty() && rolling.group.is_none() {
        create_migrations(ctx, cluster, &out.moves).await?;
        health.migrations = out.moves.len();
    }
    for g in out.retire {
        retire(ctx, cluster, g).await?;
        status.groups.retain(|s| s.index != g);
    }
    status.slots_balanced = health.balanced;
    status.migrations_in_flight = health.migrations as u32;
    Ok(health)
}

/// The status of each observed group from the pass's record.
fn group_statuses(observed: &observe::Observed, record: &BTreeMap<u32, control::GroupRecord>) -> Vec<GroupStatus> {
    observed
        .groups
        .iter()
        .map(|(&g, members)| {
            let rec = record.get(&g).cloned().unwrap_or_default();
            GroupStatus {
                index: g,
                master: rec.master,
                pods: members.iter().map(|m| m.name.clone()).collect(),
                slots: format_slots(&rec.slots),
                max_lag: rec.max_lag,
                demoted: rec.demoted,
            }
        })
        .collect()
}

/// Writes the groups to the cluster's status at once (a failover is recorded before it acts),
/// at the pass's version: a failover another instance recorded meanwhile is not overwritten.
struct StatusJournal<'a> {
    ctx: &'a Context,
    cluster: &'a PikaCluster,
    observed: &'a observe::Observed,
    version: &'a mut Option<String>,
}

impl control::Journal for StatusJournal<'_> {
    fn save(
        &mut self,
        groups: &BTreeMap<u32, control::GroupRecord>,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send {
        let status = json!({ "groups": group_statuses(self.observed, groups) });
        let api: Api<PikaCluster> =
            Api::namespaced(self.ctx.client.clone(), &self.cluster.namespace().unwrap_or_default());
        let (ctx, name, version) = (self.ctx, self.cluster.name_any(), &mut *self.version);
        async move { super::patch_status_at(ctx, &api, &name, version, status).await.map_err(|e| e.to_string()) }
    }
}

/// The status journal that also records where the switchover stands (and keeps the status
/// this reconcile writes at its end up to date with it).
struct SwitchoverJournal<'a> {
    inner: StatusJournal<'a>,
    status: &'a mut Option<SwitchoverStatus>,
}

impl control::Journal for SwitchoverJournal<'_> {
    fn save(
        &mut self,
        groups: &BTreeMap<u32, control::GroupRecord>,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send {
        self.inner.save(groups)
    }
}

impl switchover::Progress for SwitchoverJournal<'_> {
    fn save(&mut self, status: &SwitchoverStatus) -> impl std::future::Future<Output = Result<(), String>> + Send {
        let patch = json!({ "switchover": status });
        let api: Api<PikaCluster> =
            Api::namespaced(self.inner.ctx.client.clone(), &self.inner.cluster.namespace().unwrap_or_default());
        let (ctx, name, version) = (self.inner.ctx, self.inner.cluster.name_any(), &mut *self.inner.version);
        let memory = &mut *self.status;
        let status = status.clone();
        async move {
            super::patch_status_at(ctx, &api, &name, version, patch).await.map_err(|e| e.to_string())?;
            *memory = Some(status);
            Ok(())
        }
    }
}

/// The event for what a switchover did (waiting is only logged: it is retried every pass).
async fn report_switchover(ctx: &Context, cluster: &PikaCluster, driven: switchover::Driven) {
    match driven {
        switchover::Driven::Idle => {}
        switchover::Driven::Done { group, from, to } => {
            let note = format!("group {group}: master {from} handed over to {to}");
            ctx.event(cluster, false, "Switchover", note).await;
        }
        switchover::Driven::Failed { request, why } => {
            ctx.event(cluster, true, "SwitchoverRefused", format!("{SWITCHOVER_ANNOTATION}={request}: {why}")).await;
        }
        switchover::Driven::Waiting(why) => {
            tracing::info!(cluster = %cluster.name_any(), %why, "switchover waits");
        }
    }
}

/// Does the rolling update's restart (deletes the pod: the StatefulSet makes it again from the
/// current template) and reports what the step did; returns the status message.
async fn act_on_rollout(ctx: &Context, cluster: &PikaCluster, rolled: rollout::Rolled) -> String {
    match rolled {
        rollout::Rolled::Done => "every pod runs its group's template".into(),
        rollout::Rolled::Waiting(why) => {
            tracing::info!(cluster = %cluster.name_any(), %why, "rolling update waits");
            why
        }
        rollout::Rolled::SwitchedOver { group, from, to } => {
            let note = format!("group {group}: master {from} handed over to {to} before it restarts");
            ctx.event(cluster, false, "Switchover", note.clone()).await;
            note
        }
        rollout::Rolled::Restart { group, member, master } => {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
            let role = if master { "master: its group has no replica" } else { "replica" };
            match ignore_missing(api.delete(&member, &DeleteParams::default()).await.map(|_| ())) {
                Ok(()) => {
                    let note = format!("group {group}: restarting {member} ({role}) on the new template");
                    ctx.event(cluster, master, "RollingUpdate", note.clone()).await;
                    note
                }
                Err(e) => format!("deleting {member}: {}", super::brief(&e)),
            }
        }
    }
}

fn group_record(s: GroupStatus) -> control::GroupRecord {
    control::GroupRecord {
        master: s.master,
        demoted: s.demoted,
        slots: parse_slots(&s.slots).unwrap_or_default(),
        max_lag: s.max_lag,
    }
}

/// The event (and the failover metric) for something a pass did.
async fn report(ctx: &Context, cluster: &PikaCluster, happened: &Happened) {
    if let Happened::Failover { .. } = happened {
        let ns = cluster.namespace().unwrap_or_default();
        ctx.metrics.failovers.get_or_create(&cluster_labels(&ns, &cluster.name_any(), &[])).inc();
        tracing::warn!(cluster = %cluster.name_any(), "{happened}");
    }
    ctx.event(cluster, happened.is_warning(), happened.reason(), happened.to_string()).await;
}

/// One SlotMigration per move of the rebalance plan (run in creation order).
async fn create_migrations(ctx: &Context, cluster: &PikaCluster, moves: &[planner::Move]) -> Result<(), Error> {
    let (name, ns) = (cluster.name_any(), cluster.namespace().unwrap_or_default());
    let api: Api<SlotMigration> = Api::namespaced(ctx.client.clone(), &ns);
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for (i, mv) in moves.iter().enumerate() {
        let spec: SlotMigrationSpec = serde_json::from_value(json!({
            "cluster": name,
            "slots": format_slots(&mv.slots),
            "targetGroup": mv.to,
        }))
        .expect("a valid spec");
        let mut m = SlotMigration::new(&format!("{name}-rebalance-{stamp}-{i}"), spec);
        m.metadata.namespace = Some(ns.clone());
        m.metadata.labels = Some([(CLUSTER_LABEL.to_string(), name.clone())].into());
        // Owned (not controlled) by the cluster: deleted with it.
        let mut owner = cluster.controller_owner_ref(&()).expect("a cluster has a uid");
        owner.controller = None;
        m.metadata.owner_references = Some(vec![owner]);
        match api.create(&PostParams::default(), &m).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        let note = format!("{} slots from group {} to group {} ({})", mv.slots.len(), mv.from, mv.to, m.name_any());
        ctx.event(cluster, false, "Rebalancing", note).await;
    }
    Ok(())
}

/// A group beyond `spec.groups` that holds no slot any more: its StatefulSet and budget go
/// (and its volumes, with `storage.deleteOnScaleIn`).
async fn retire(ctx: &Context, cluster: &PikaCluster, g: u32) -> Result<(), Error> {
    let (name, ns) = (cluster.name_any(), cluster.namespace().unwrap_or_default());
    let group = resources::group_name(&name, g);
    let dp = DeleteParams::default();
    ignore_missing(Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns).delete(&group, &dp).await.map(|_| ()))?;
    ignore_missing(
        Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), &ns).delete(&group, &dp).await.map(|_| ()),
    )?;
    if cluster.spec.storage.delete_on_scale_in {
        let selector = format!("app.kubernetes.io/instance={name},{GROUP_LABEL}={g}");
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
        pvcs.delete_collection(&dp, &ListParams::default().labels(&selector)).await?;
    }
    ctx.event(cluster, false, "GroupRetired", format!("group {g} owns no slot; its StatefulSet is deleted")).await;
    Ok(())
}

fn ignore_missing(r: Result<(), kube::Error>) -> Result<(), Error> {
    match r {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other.map_err(Error::from),
    }
}
