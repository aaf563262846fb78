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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::conditions::{self, DEGRADED, MONITORING, PAUSED, PROGRESSING, READY};
use super::observe::{self, Observed};
use super::{poll, Context, Error};
use crate::admin::Admin;
use crate::crd::{GroupStatus, PikaCluster, PikaClusterStatus, SlotMigration, SlotMigrationSpec};
use crate::dataplane::{self, Ownership};
use crate::metrics::cluster_labels;
use crate::metrics::labels;
use crate::planner;
use crate::resources::{self, GROUP_LABEL, MANAGER};
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
}

async fn apply(cluster: Arc<PikaCluster>, ctx: &Context) -> Result<Action, Error> {
    // The status records masters and demoted pods: read it fresh, not from the watch cache,
    // which may not have seen the last pass's write yet (a failover would be repeated).
    let api: Api<PikaCluster> = Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    let Some(cluster) = api.get_opt(&cluster.name_any()).await? else { return Ok(Action::await_change()) };
    let cluster = Arc::new(cluster);
    let generation = cluster.metadata.generation;
    let mut status = cluster.status.clone().unwrap_or_default();
    let was_paused = conditions::is_true(&status.conditions, PAUSED);
    status.observed_generation = generation;
    if cluster.spec.paused {
        let note = "spec.paused is true: nothing is created, changed or moved";
        conditions::set(&mut status.conditions, PAUSED, true, "Paused", note, generation, conditions::now());
        status.phase = Some("Paused".into());
        patch_status(ctx, &cluster, &status).await?;
        if !was_paused {
            ctx.event(&*cluster, false, "Paused", note.into()).await;
        }
        return Ok(Action::await_change());
    }
    conditions::set(&mut status.conditions, PAUSED, false, "Reconciling", "", generation, conditions::now());
    if was_paused {
        ctx.event(&*cluster, false, "Resumed", "reconciliation resumed".into()).await;
    }
    apply_children(ctx, &cluster, &status).await?;
    apply_monitor(ctx, &cluster, &mut status).await;
    let health = match data_plane(ctx, &cluster, &mut status).await {
        Ok(h) => h,
        Err(e @ (Error::Node(_) | Error::Cutover(_))) => {
            // The nodes' trouble is the cluster's status, not only a log line.
            Health { degraded: Some(e.to_string()), ..Health::default() }
        }
        Err(e) => return Err(e),
    };
    set_conditions(&mut status, &health, cluster.spec.slots as usize, generation);
    patch_status(ctx, &cluster, &status).await?;
    Ok(poll(health.running > 0 || health.degraded.is_some()))
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

async fn patch_status(ctx: &Context, cluster: &PikaCluster, status: &PikaClusterStatus) -> Result<(), Error> {
    let api: Api<PikaCluster> = Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    api.patch_status(&cluster.name_any(), &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await?;
    Ok(())
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

async fn apply_children(ctx: &Context, cluster: &PikaCluster, status: &PikaClusterStatus) -> Result<(), Error> {
    let ns = cluster.namespace().unwrap_or_default();
    ssa(ctx, &ns, &resources::config_map(cluster)).await?;
    ssa(ctx, &ns, &resources::headless_service(cluster)).await?;
    ssa(ctx, &ns, &resources::client_service(cluster)).await?;
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
        ssa(ctx, &ns, &sts).await?;
        ssa(ctx, &ns, &resources::disruption_budget(cluster, g)).await?;
    }
    ssa(ctx, &ns, &resources::proxy_deployment(cluster)).await?;
    Ok(())
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

/// Members per group: the spec's groups, plus groups still running beyond it (draining).
async fn group_sizes(ctx: &Context, cluster: &PikaCluster) -> Result<BTreeMap<u32, u32>, Error> {
    let ns = cluster.namespace().unwrap_or_default();
    let mut sizes: BTreeMap<u32, u32> =
        (0..cluster.spec.groups).map(|g| (g, 1 + cluster.spec.replicas_per_group)).collect();
    let selector = format!("app.kubernetes.io/instance={},app.kubernetes.io/component=node", cluster.name_any());
    let sets =
        Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns).list(&ListParams::default().labels(&selector)).await?;
    for sts in sets.items {
        let Some(g) = sts.labels().get(GROUP_LABEL).and_then(|g| g.parse::<u32>().ok()) else { continue };
        let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(1) as u32;
        sizes.entry(g).and_modify(|n| *n = (*n).max(replicas)).or_insert(replicas);
    }
    Ok(sizes)
}

async fn data_plane(ctx: &Context, cluster: &PikaCluster, status: &mut PikaClusterStatus) -> Result<Health, Error> {
    let (name, ns) = (cluster.name_any(), cluster.namespace().unwrap_or_default());
    let sizes = group_sizes(ctx, cluster).await?;
    let pods = observe::pods(&ctx.client, cluster).await?;
    let observed = observe::classify(&pods, &sizes, &name);
    let in_flight = migrations_in_flight(ctx, &ns, &name).await?;
    let mut health = Health {
        node_pods: sizes.values().sum::<u32>() as usize,
        running: observed.groups.values().flatten().filter(|m| m.addr.is_some()).count(),
        migrations: in_flight.len(),
        ..Health::default()
    };
    let mut groups: BTreeMap<u32, GroupStatus> = std::mem::take(&mut status.groups)
        .into_iter()
        .filter(|s| sizes.contains_key(&s.index))
        .map(|s| (s.index, s))
        .collect();
    let result = data_plane_pass(ctx, cluster, &observed, &in_flight, &mut groups, &mut health).await;
    // What `kubectl get pikaclusters` shows first.
    let masters = masters(&groups);
    status.ready_groups = Some(observed.ready_groups(&masters));
    status.slots_balanced = health.balanced;
    status.migrations = in_flight.iter().map(|m| m.name_any()).collect();
    status.migrations_in_flight = health.migrations as u32;
    status.max_lag = groups.values().map(|g| g.max_lag).max().unwrap_or(0);
    status.groups = groups.into_values().collect();
    result.map(|()| health)
}

async fn data_plane_pass(
    ctx: &Context,
    cluster: &PikaCluster,
    observed: &Observed,
    in_flight: &[SlotMigration],
    groups: &mut BTreeMap<u32, GroupStatus>,
    health: &mut Health,
) -> Result<(), Error> {
    if health.running == 0 {
        health.waiting = Some("waiting for node pods to run".into());
        return Ok(());
    }
    let admin = ctx.admin(cluster).await?;
    let slot_count = cluster.spec.slots;
    // Masters: recorded in status; found on the nodes the first time.
    for (&g, members) in &observed.groups {
        let gs = groups.entry(g).or_insert_with(|| GroupStatus { index: g, ..GroupStatus::default() });
        gs.pods = members.iter().map(|m| m.pod.clone()).collect();
        if gs.master.is_none() {
            let addrs: Option<Vec<String>> = members.iter().map(|m| m.addr.clone()).collect();
            match addrs {
                Some(addrs) => {
                    gs.master = Some(members[dataplane::find_master(&admin, &addrs, slot_count).await].pod.clone())
                }
                None => health.waiting = Some(format!("waiting for the pods of group {g}")),
            }
        }
    }
    if health.waiting.is_some() {
        return Ok(());
    }
    watch_masters(ctx, cluster, &admin, observed, groups, health).await?;
    if health.degraded.is_some() {
        return Ok(()); // no slot moves while a group has no master
    }
    let masters = masters(groups);
    let Some(topology) = observed.topology(&masters, slot_count) else {
        health.waiting = Some("waiting for every group's master".into());
        return Ok(());
    };
    let mut owned = topology.ownership(&admin).await?;
    if owned.is_empty() && !topology.any_slot_owned(&admin).await? {
        topology.bootstrap(&admin, cluster.spec.groups).await?;
        ctx.event(
            cluster,
            false,
            "Bootstrapped",
            format!("{slot_count} slots split over {} groups", cluster.spec.groups),
        )
        .await;
    }
    let busy: BTreeSet<u32> = in_flight.iter().flat_map(|m| parse_slots(&m.spec.slots).unwrap_or_default()).collect();
    topology.repair(&admin, &owned, &busy).await?;
    owned = topology.ownership(&admin).await?;
    let down = topology.attach_replicas(&admin, &owned).await?;
    if !down.is_empty() {
        health.degraded = Some(format!("replicas not answering: {}", down.join(", ")));
    }
    for (g, gs) in groups.iter_mut() {
        let mine = owned.get(g).map_or(&[][..], Vec::as_slice);
        gs.slots = format_slots(mine);
        gs.max_lag = max_lag(&admin, &topology.groups[g].master, &gs.slots).await;
    }
    health.served = owned.values().map(Vec::len).sum();
    let moves = planner::rebalance(&owned, cluster.spec.groups);
    health.balanced = Some(health.served == slot_count as usize && moves.is_empty());
    if !in_flight.is_empty() {
        return Ok(()); // migrations route and move; nothing else changes meanwhile
    }
    push_routes(ctx, cluster, &admin, &observed.proxies, topology.routes(&owned)).await?;
    if moves.is_empty() {
        retire_drained(ctx, cluster, &admin, &topology, &owned, groups).await?;
    } else {
        create_migrations(ctx, cluster, &moves).await?;
        health.migrations = moves.len();
    }
    Ok(())
}

/// Each group's recorded master pod.
fn masters(groups: &BTreeMap<u32, GroupStatus>) -> BTreeMap<u32, String> {
    groups.iter().filter_map(|(g, s)| Some((*g, s.master.clone()?))).collect()
}

async fn max_lag(admin: &Admin, master: &str, slots: &str) -> u64 {
    if slots.is_empty() {
        return 0;
    }
    let info = admin.slot_info(master, slots).await.unwrap_or_default();
    info.iter().filter_map(|s| s.master.as_ref()).flat_map(|m| &m.replicas).filter_map(|r| r.lag).max().unwrap_or(0)
}

/// Masters that stopped answering: after `failoverAfterSeconds`, the best replica takes over.
/// Former masters that answer again are demoted (full re-sync from the new master).
async fn watch_masters(
    ctx: &Context,
    cluster: &PikaCluster,
    admin: &Admin,
    observed: &Observed,
    groups: &mut BTreeMap<u32, GroupStatus>,
    health: &mut Health,
) -> Result<(), Error> {
    let failover_after = Duration::from_secs(cluster.spec.failover_after_seconds.max(1) as u64);
    for (&g, gs) in groups.iter_mut() {
        let Some(master) = gs.master.clone() else { continue };
        let addr = observed.addr_of(&master);
        let up = match &addr {
            Some(a) => admin.answers(a).await,
            None => false,
        };
        let key = format!("{}/{master}", cluster.namespace().unwrap_or_default());
        if up {
            ctx.down_since.lock().await.remove(&key);
        } else {
            let since = *ctx.down_since.lock().await.entry(key.clone()).or_insert_with(Instant::now);
            let down = since.elapsed();
            if down < failover_after {
                health.degraded = Some(format!("group {g}: master {master} unreachable for {}s", down.as_secs()));
                continue;
            }
            let members = &observed.groups[&g];
            let survivors: Vec<(usize, String)> = members
                .iter()
                .enumerate()
                .filter(|(_, m)| m.pod != master)
                .filter_map(|(i, m)| Some((i, m.addr.clone()?)))
                .collect();
            let Some(new) = dataplane::choose_successor(admin, &survivors, cluster.spec.slots).await else {
                health.degraded = Some(format!("group {g}: master {master} down and no replica can safely replace it"));
                continue;
            };
            let new_addr = members[new].addr.clone().expect("a survivor has an address");
            let followers: Vec<String> = survivors.iter().filter(|(i, _)| *i != new).map(|(_, a)| a.clone()).collect();
            dataplane::take_over(admin, &new_addr, &followers, &gs.slots).await?;
            ctx.down_since.lock().await.remove(&key);
            let ns = cluster.namespace().unwrap_or_default();
            ctx.metrics.failovers.get_or_create(&cluster_labels(&ns, &cluster.name_any(), &[])).inc();
            let note = format!(
                "group {g}: master {master} unreachable for {}s; {} promoted for slots {}",
                down.as_secs(),
                members[new].pod,
                gs.slots
            );
            tracing::warn!(cluster = %cluster.name_any(), "{note}");
            ctx.event(cluster, true, "Failover", note).await;
            gs.demoted.push(master);
            gs.master = Some(members[new].pod.clone());
            continue;
        }
        let Some(master_addr) = addr else { continue };
        for old in gs.demoted.clone() {
            let Some(old_addr) = observed.addr_of(&old) else { continue };
            if !admin.answers(&old_addr).await {
                continue;
            }
            admin.follow_force(&old_addr, &master_addr, "all").await?;
            gs.demoted.retain(|p| p != &old);
            ctx.event(cluster, false, "Demoted", format!("group {g}: former master {old} re-syncs from {master}"))
                .await;
        }
    }
    Ok(())
}

/// Pushes the routes to every proxy that lacks them (all of them when they changed).
async fn push_routes(
    ctx: &Context,
    cluster: &PikaCluster,
    admin: &Admin,
    proxies: &[String],
    routes: crate::cutover::Routes,
) -> Result<(), Error> {
    let key = format!("{}/{}", cluster.namespace().unwrap_or_default(), cluster.name_any());
    let mut pushed = ctx.routes.lock().await;
    let epoch = match pushed.get(&key) {
        Some((epoch, r)) if *r == routes => *epoch,
        _ => ctx.next_epoch(),
    };
    for p in proxies {
        if admin.route_epoch(p).await? < epoch {
            admin.set_route(p, epoch, cluster.spec.slots, &routes).await?;
        }
    }
    pushed.insert(key, (epoch, routes));
    Ok(())
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

/// Groups beyond `spec.groups` that own no slot any more: their StatefulSet and budget go (and
/// their volumes, with `storage.deleteOnScaleIn`).
async fn retire_drained(
    ctx: &Context,
    cluster: &PikaCluster,
    admin: &Admin,
    topology: &dataplane::Topology,
    owned: &Ownership,
    groups: &mut BTreeMap<u32, GroupStatus>,
) -> Result<(), Error> {
    let (name, ns) = (cluster.name_any(), cluster.namespace().unwrap_or_default());
    let leaving: Vec<u32> =
        topology.groups.keys().copied().filter(|&g| g >= cluster.spec.groups && !owned.contains_key(&g)).collect();
    for g in leaving {
        if !admin.slot_info(&topology.groups[&g].master, &topology.all_slots()).await?.is_empty() {
            continue; // still holds slots (fenced, or a cleanup in progress)
        }
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
        groups.remove(&g);
        ctx.event(cluster, false, "GroupRetired", format!("group {g} owns no slot; its StatefulSet is deleted")).await;
    }
    Ok(())
}

fn ignore_missing(r: Result<(), kube::Error>) -> Result<(), Error> {
    match r {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other.map_err(Error::from),
    }
}
