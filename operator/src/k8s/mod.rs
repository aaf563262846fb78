//! The in-cluster operator (`pika-operator run`): the PikaCluster and SlotMigration
//! controllers, behind a leader Lease, with metrics and graceful shutdown.
//!
//! - [`cluster`]: children by server-side apply, finalizer, status; the data plane (bootstrap,
//!   replicas, routes, failover, rebalancing by creating SlotMigrations, retiring groups).
//! - [`migration`]: runs one SlotMigration at a time per cluster, batch by batch, recording
//!   each cutover step in its status before acting.
//! - [`observe`]: where a cluster's pods are, as the data plane needs them.
//! - [`lease`], [`conditions`]: leader election and status conditions.

pub mod cluster;
pub mod conditions;
pub mod lease;
pub mod migration;
pub mod observe;
pub mod password;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use tokio::sync::Mutex;

use crate::admin::{Admin, AdminError};
use crate::authority::Authority;
use crate::control::{Epochs, PassError, Record};
use crate::crd::{PikaCluster, SlotMigration};
use crate::cutover::{CutoverError, Limits};
use crate::metrics::{labels, Metrics};

impl From<PassError> for Error {
    fn from(e: PassError) -> Error {
        match e {
            PassError::Admin(e) => Error::Node(e),
            PassError::Cutover(e) => Error::Cutover(e),
            PassError::Journal(e) => Error::Record(e),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("node: {0}")]
    Node(#[from] AdminError),
    #[error("cutover: {0}")]
    Cutover(#[from] CutoverError),
    #[error("{0}")]
    Invalid(String),
    /// A status write the data plane waits on (a failover is recorded before it acts).
    #[error("recording status: {0}")]
    Record(String),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// The error's kind, as a metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Node(_) => "node",
            Error::Cutover(_) => "cutover",
            Error::Invalid(_) => "invalid",
            Error::Record(_) => "kube",
            Error::Finalizer(_) => "finalizer",
        }
    }
}

/// What both controllers share.
pub struct Context {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub limits: Limits,
    /// Per cluster (`ns/name`), what the data-plane pass keeps between passes (the groups part
    /// is written to the status and read back from it).
    pub records: Mutex<HashMap<String, Record>>,
    pub epochs: Epochs,
    /// Whether this instance still leads: checked before every data-plane request and every
    /// write that acts on a decision (see [`crate::authority`]).
    pub authority: Arc<Authority>,
    /// Where the operator's pods run: the clusters' NetworkPolicies let them reach the nodes.
    pub operator_namespace: String,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, reporter: Reporter, authority: Arc<Authority>) -> Context {
        Context {
            authority,
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            limits: Limits::default(),
            records: Mutex::default(),
            epochs: Epochs::default(),
            operator_namespace: "default".into(),
        }
    }

    /// The operator's namespace (its pod's, `POD_NAMESPACE`).
    pub fn in_namespace(mut self, namespace: &str) -> Context {
        self.operator_namespace = namespace.into();
        self
    }

    /// Publishes an Event about `obj` (failures are logged: events are informational). The
    /// note is cut to the API server's limit (1 kB), which otherwise refuses the whole Event.
    pub async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, warning: bool, reason: &str, note: String) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(truncated(note, EVENT_NOTE_MAX)),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "event not published");
        }
    }

    /// The admin client for a cluster's nodes and proxies (`password`).
    pub async fn admin(&self, cluster: &PikaCluster) -> Result<Admin, Error> {
        let admin_password = password::admin_password(self, cluster).await?;
        Ok(self.admin_with(admin_password, password::passwords(self, cluster).await?.as_ref()))
    }

    /// The admin client: the admin user, and the data passwords (None: the cluster has none)
    /// for members started before the admin user was apart.
    pub fn admin_with(&self, admin_password: String, passwords: Option<&password::Passwords>) -> Admin {
        let fallbacks = passwords
            .into_iter()
            .flat_map(|p| std::iter::once(&p.current).chain(p.previous.as_ref()))
            .map(common::auth::Credential::password)
            .collect();
        Admin {
            credential: Some(common::auth::Credential::admin(admin_password)),
            fallbacks,
            authority: self.authority.clone(),
        }
    }

    fn record_error(&self, controller: &str, err: &Error) {
        self.metrics.errors.get_or_create(&labels(&[("controller", controller), ("kind", err.kind())])).inc();
    }
}

/// The longest Event note the API server accepts (`events.k8s.io/v1`), in bytes.
const EVENT_NOTE_MAX: usize = 1024;

/// `text` cut to at most `max` bytes, at a character boundary, marked with `...` when cut.
fn truncated(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max - 3;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// What an error says: for the API server's, its message's first line (without the Status
/// object, or the diff some validation errors append).
pub fn brief(err: &Error) -> String {
    match err {
        Error::Kube(kube::Error::Api(e)) => e.message.lines().next().unwrap_or_default().to_string(),
        other => other.to_string(),
    }
}

/// Options of `pika-operator run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Watch one namespace (default: all).
    pub namespace: Option<String>,
    /// `/metrics` and `/health`.
    pub http_listen: String,
    /// Namespace and name of the leader Lease.
    pub lease_namespace: String,
    pub lease_name: String,
    pub lease_duration: Duration,
    /// This instance's identity in the Lease (default: the pod name).
    pub identity: String,
}

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs until SIGINT/SIGTERM (or until the Lease is lost): waits to be leader, then runs both
/// controllers. In-flight reconciles finish before it returns; the Lease is released.
pub async fn run(opts: RunOptions) -> Result<(), String> {
    use futures::StreamExt;

    let client = Client::try_default().await.map_err(|e| format!("no Kubernetes client config: {e}"))?;
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            common::process::shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        });
    }
    let listener = tokio::net::TcpListener::bind(&opts.http_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", opts.http_listen))?;
    let m = metrics.clone();
    tokio::spawn(common::http::serve(
        listener,
        stopped(),
        Arc::new(move |_: &str, path: &str| match path {
            "/metrics" => common::http::Response::metrics(m.render()),
            "/health" => common::http::Response::text("200 OK", "ok\n"),
            _ => common::http::Response::not_found(),
        }),
    ));

    let lock = lease::LeaseLock::new(
        Api::<Lease>::namespaced(client.clone(), &opts.lease_namespace),
        &opts.lease_name,
        &opts.identity,
        opts.lease_duration,
    );
    let renew_every = opts.lease_duration / 3;
    // As client-go's leader election: renewals every third of the Lease, and a deadline well
    // before the Lease runs out, by which a leader that could not renew has stopped acting.
    let authority = Arc::new(Authority::leased(opts.lease_duration * 2 / 3));
    tracing::info!(identity = %opts.identity, lease = %opts.lease_name, "waiting to become leader");
    loop {
        let began = tokio::time::Instant::now();
        match lock.try_acquire().await {
            Ok(true) => {
                authority.renewed(began);
                break;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "lease not acquired"),
        }
        tokio::select! {
            _ = tokio::time::sleep(renew_every) => {}
            _ = stopped() => return Ok(()),
        }
    }
    tracing::info!(identity = %opts.identity, "leader: reconciling");
    metrics.leader.set(1);
    let lock = Arc::new(lock);
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Renewal, until the controllers have stopped (a graceful shutdown lets in-flight cutovers
    // finish, which needs the authority): a leader that finds the Lease taken, or cannot renew
    // it before its deadline, stops acting at once (its authority is revoked or runs out, so its
    // in-flight work sends nothing more) and the process stops.
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let renewal = {
        let (lock, lost, stop_tx, authority) = (lock.clone(), lost.clone(), stop_tx.clone(), authority.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(renew_every) => {}
                    _ = done_rx.wait_for(|d| *d) => return,
                }
                let began = tokio::time::Instant::now();
                match lock.try_acquire().await {
                    Ok(true) => authority.renewed(began),
                    Ok(false) => {
                        tracing::error!("the leader Lease was taken over; stopping");
                        break;
                    }
                    Err(e) if authority.valid() => tracing::warn!(error = %e, "lease renewal failed"),
                    Err(e) => {
                        tracing::error!(error = %e, "lease not renewed before the renew deadline; stopping");
                        break;
                    }
                }
            }
            authority.revoke();
            lost.store(true, Ordering::SeqCst);
            let _ = stop_tx.send(true);
        })
    };

    let reporter = Reporter { controller: "pika-operator".into(), instance: Some(opts.identity.clone()) };
    let ctx = Arc::new(
        Context::new(client.clone(), metrics.clone(), reporter, authority.clone()).in_namespace(&opts.lease_namespace),
    );
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=pika-operator");
    let clusters = Controller::new(api::<PikaCluster>(&client, &opts.namespace), watcher::Config::default())
        .owns(api::<StatefulSet>(&client, &opts.namespace), owned.clone())
        .owns(api::<Deployment>(&client, &opts.namespace), owned)
        .graceful_shutdown_on(stopped())
        .run(cluster::reconcile, cluster::error_policy, ctx.clone())
        .for_each(|_| std::future::ready(()));
    let migrations = Controller::new(api::<SlotMigration>(&client, &opts.namespace), watcher::Config::default())
        .graceful_shutdown_on(stopped())
        .run(migration::reconcile, migration::error_policy, ctx.clone())
        .for_each(|_| std::future::ready(()));
    // In-flight reconciles finish (a cutover completes or rolls back); a controller stuck
    // behind an API it cannot reach (e.g. the CRDs were never installed) gets 30 s.
    let deadline = async {
        stopped().await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    };
    tokio::select! {
        _ = async { tokio::join!(clusters, migrations) } => {}
        _ = deadline => tracing::warn!("controllers did not stop within 30 s"),
    }
    metrics.leader.set(0);
    let _ = done_tx.send(true);
    let _ = renewal.await;
    if lost.load(Ordering::SeqCst) {
        return Err("lost the leader Lease".into());
    }
    // Released only once this instance can send nothing more.
    authority.revoke();
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "lease not released");
    }
    Ok(())
}

/// Writes `status` (a merge patch) only if the object is still at `version`, the
/// resourceVersion this instance read or last wrote, and advances `version`. Another writer in
/// between (a second operator instance that took the Lease over, while this one was stopped or
/// cut off) makes it fail with 409 Conflict: a status is this operator's record of where a
/// cutover or a failover is, and an instance that no longer leads must not overwrite the new
/// leader's record with its own older one. It also refuses once this instance's authority
/// lapsed.
pub async fn patch_status_at<K>(
    ctx: &Context,
    api: &Api<K>,
    name: &str,
    version: &mut Option<String>,
    status: serde_json::Value,
) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if !ctx.authority.valid() {
        return Err(Error::Record(Authority::LAPSED.into()));
    }
    let mut patch = serde_json::json!({ "status": status });
    if let Some(v) = version {
        patch["metadata"] = serde_json::json!({ "resourceVersion": v });
    }
    let object = api.patch_status(name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(patch)).await?;
    *version = object.meta().resource_version.clone();
    Ok(())
}

/// How long until the next pass when nothing changes: the data plane is polled (failures are
/// not announced by any watch), as often as the masters' leases need renewing, and when a
/// silent master's failover wait ends (`control::next_pass`).
pub fn poll(has_pods: bool, failover_after: Duration, recheck_after: Option<Duration>) -> Action {
    Action::requeue(if has_pods {
        crate::control::next_pass(failover_after, recheck_after)
    } else {
        Duration::from_secs(30)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_notes_are_cut_to_the_limit_at_a_character_boundary() {
        assert_eq!(truncated("short".into(), 10), "short");
        let cut = truncated("é".repeat(600), EVENT_NOTE_MAX);
        assert!(cut.len() <= EVENT_NOTE_MAX && cut.ends_with("..."), "{}", cut.len());
        assert!(cut.trim_end_matches("...").chars().all(|c| c == 'é'));
    }
}
