//! The custom resources users write: `PikaCluster` (a sharded cluster) and `SlotMigration` (move
//! slots between groups). The CRD YAML in `crds/` is generated from these types by `crdgen`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "pika.sharding.io";

/// A sharded Pika cluster: `groups` shards, each a master and `replicasPerGroup` replicas of
/// pika-node, splitting `slots` slots, behind `proxy.replicas` pika-proxies.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "pika.sharding.io",
    version = "v1alpha1",
    kind = "PikaCluster",
    namespaced,
    shortname = "pkc",
    status = "PikaClusterStatus",
    printcolumn = r#"{"name":"Groups","type":"string","description":"Groups ready of total","jsonPath":".status.readyGroups"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Balanced","type":"boolean","description":"Slots spread evenly (max-min <= 1)","jsonPath":".status.slotsBalanced"}"#,
    printcolumn = r#"{"name":"Migrations","type":"integer","description":"SlotMigrations in flight","jsonPath":".status.migrationsInFlight"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","priority":1,"jsonPath":".spec.replicasPerGroup"}"#,
    printcolumn = r#"{"name":"Slots","type":"integer","priority":1,"jsonPath":".spec.slots"}"#,
    printcolumn = r#"{"name":"Lag","type":"integer","priority":1,"description":"Largest replication lag (bytes)","jsonPath":".status.maxLag"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.durability) || !has(self.durability.mode) || self.durability.mode == 'async' || \
     (has(self.durability.minReplicaAcks) ? self.durability.minReplicaAcks : 1) <= \
     (has(self.replicasPerGroup) ? self.replicasPerGroup : 1)"
).message("durability.minReplicaAcks cannot exceed replicasPerGroup: no write could be acknowledged"))]
pub struct PikaClusterSpec {
    /// Number of shards (groups). Raising it adds groups and moves slots to them; lowering it
    /// drains the leaving groups first.
    #[schemars(range(min = 1, max = 1024))]
    pub groups: u32,
    /// Replicas per group, besides its master.
    #[serde(default = "default_replicas")]
    #[schemars(range(max = 8))]
    pub replicas_per_group: u32,
    /// Number of slots (Pika's `default-slot-num`). Fixed at creation: the key -> slot mapping
    /// depends on it.
    #[serde(default = "default_slots")]
    #[schemars(range(min = 1, max = 65536))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("slots is immutable"))]
    pub slots: u32,
    /// pika-node image.
    #[serde(default = "default_image")]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default)]
    pub storage: StorageSpec,
    /// The cluster password (`requirepass` of every node, `masterauth` between them, the
    /// proxies' client password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// pika.conf overrides for every node (`key: value`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub proxy: ProxySpec,
    /// Seconds a master may be silent before a replica replaces it. Its lease is shorter
    /// ((this - 0.5 s) / 1.1, at least 1 s), so it has stopped acknowledging writes by then.
    #[serde(default = "default_failover_after")]
    #[schemars(range(min = 1))]
    pub failover_after_seconds: u32,
    /// When a write is acknowledged: once on its master's disk (`async`, the default), or also
    /// on `minReplicaAcks` of its replicas (`replicated`); a failover then loses nothing.
    #[serde(default, skip_serializing_if = "DurabilitySpec::is_default")]
    pub durability: DurabilitySpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<SchedulingSpec>,
    #[serde(default, skip_serializing_if = "MonitoringSpec::is_off")]
    pub monitoring: MonitoringSpec,
    /// Who may reach the nodes: a NetworkPolicy `<name>-nodes` lets in only the cluster's
    /// proxies, its nodes and the operator (the metrics port stays open). On by default; it
    /// takes effect where the network plugin enforces NetworkPolicies.
    #[serde(default, skip_serializing_if = "NetworkPolicySpec::is_default")]
    pub network_policy: NetworkPolicySpec,
    /// Stop reconciling (nothing is created, changed or moved) until set back to false.
    #[serde(default)]
    pub paused: bool,
}

fn default_replicas() -> u32 {
    1
}
fn default_slots() -> u32 {
    1024
}
fn default_image() -> String {
    "pika-node:latest".into()
}
fn default_failover_after() -> u32 {
    10
}
fn default_proxy_replicas() -> u32 {
    2
}
fn default_storage_size() -> String {
    "10Gi".into()
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of each node's volume.
    #[serde(default = "default_storage_size")]
    pub size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Delete a removed group's volumes (kept by default).
    #[serde(default)]
    pub delete_on_scale_in: bool,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec { size: default_storage_size(), storage_class_name: None, delete_on_scale_in: false }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub name: String,
    #[serde(default = "default_secret_key")]
    pub key: String,
    /// After the Secret's value changes (a password rotation): how long the previous password
    /// is still accepted, so that clients can move to the new one.
    #[serde(default = "default_rotation_grace")]
    pub rotation_grace_seconds: u32,
}

fn default_rotation_grace() -> u32 {
    300
}

fn default_secret_key() -> String {
    "password".into()
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxySpec {
    #[serde(default = "default_proxy_replicas")]
    pub replicas: u32,
    /// pika-proxy image (default: the node image's repository with `pika-proxy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Type of the client Service (ClusterIP, NodePort, LoadBalancer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
}

impl Default for ProxySpec {
    fn default() -> Self {
        ProxySpec { replicas: default_proxy_replicas(), image: None, service_type: None }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingSpec {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// Replicated acknowledgement (docs/operator.md, "Durability").
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DurabilitySpec {
    #[serde(default)]
    pub mode: DurabilityMode,
    /// In `replicated` mode: replicas of a slot that must have a write durable before its
    /// master answers it.
    #[serde(default = "default_min_replica_acks")]
    #[schemars(range(min = 1, max = 8))]
    pub min_replica_acks: u32,
    /// In `replicated` mode: how long a write waits for them; then the client gets an error
    /// (the write may or may not survive a failover), never a silent downgrade.
    #[serde(default = "default_ack_timeout_ms")]
    #[schemars(range(min = 1, max = 600000))]
    pub ack_timeout_ms: u32,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// Acknowledged once on the master's disk; replicas follow asynchronously (a failover may
    /// lose what they had not received).
    #[default]
    Async,
    /// Acknowledged once also on `minReplicaAcks` replicas.
    Replicated,
}

fn default_min_replica_acks() -> u32 {
    1
}
fn default_ack_timeout_ms() -> u32 {
    2000
}

impl Default for DurabilitySpec {
    fn default() -> Self {
        DurabilitySpec {
            mode: DurabilityMode::Async,
            min_replica_acks: default_min_replica_acks(),
            ack_timeout_ms: default_ack_timeout_ms(),
        }
    }
}

impl DurabilitySpec {
    pub fn is_default(&self) -> bool {
        *self == DurabilitySpec::default()
    }

    /// Replica acknowledgements a write needs (0: asynchronous).
    pub fn min_acks(&self) -> u32 {
        match self.mode {
            DurabilityMode::Async => 0,
            DurabilityMode::Replicated => self.min_replica_acks,
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create the NetworkPolicy (false: none; one made before is deleted).
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        NetworkPolicySpec { enabled: true }
    }
}

impl NetworkPolicySpec {
    pub fn is_default(&self) -> bool {
        *self == NetworkPolicySpec::default()
    }
}

/// Scraping by the Prometheus Operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Create a PodMonitor `<name>` that scrapes every node and proxy pod's `/metrics` (needs
    /// the Prometheus Operator's CRDs; without them the cluster reports it and runs on).
    #[serde(default)]
    pub pod_monitor: bool,
    /// Labels of the PodMonitor, for the Prometheus's `podMonitorSelector` (e.g. `release:
    /// kube-prometheus-stack`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Scrape interval (Prometheus duration, e.g. `30s`); the Prometheus's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
    ))]
    pub interval: Option<String>,
}

impl MonitoringSpec {
    pub fn is_off(&self) -> bool {
        *self == MonitoringSpec::default()
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PikaClusterStatus {
    /// Creating, Running, Scaling, Migrating, Degraded, Paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing, Degraded, ReconciliationPaused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupStatus>,
    /// SlotMigrations in flight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrations: Vec<String>,
    /// Groups whose every member runs and whose master is known, of all groups: `2/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_groups: Option<String>,
    /// Every slot served, by the spec's groups only, max-min <= 1 slots per group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots_balanced: Option<bool>,
    /// SlotMigrations of this cluster not finished yet.
    #[serde(default)]
    pub migrations_in_flight: u32,
    /// Largest replication lag (bytes) over the groups.
    #[serde(default)]
    pub max_lag: u64,
    /// The last switchover asked for with the `pika.sharding.io/switchover` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover: Option<SwitchoverStatus>,
    /// The rolling update: pods restarted on their group's current template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// The checksum of the live options (`spec.config`'s, or their defaults) last set on every
    /// node with CONFIG SET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_config: Option<String>,
    /// Where the cluster's passwords stand (with `passwordSecretRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordStatus>,
}

/// The passwords the nodes and proxies accept are those of the operator's Secret
/// `<name>-auth` (`password`, and during a rotation `previous`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordStatus {
    /// The resourceVersion of `<name>-auth` whose passwords every node and proxy has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_version: Option<String>,
    /// Since when the previous password is accepted next to the new one (a rotation). Written
    /// as null once it is retired (the status is a merge patch: an absent field would stay).
    #[serde(default)]
    pub previous_since: Option<Time>,
}

/// Where the rolling update stands (pods restart one at a time: replicas first, then the
/// master after a switchover).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Node pods running their group's current template.
    pub updated_pods: u32,
    /// Node pods in all.
    pub pods: u32,
    /// The group being updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
    /// What the update waits for, or what it did last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl PikaClusterStatus {
    /// Each group's recorded master pod, where known.
    pub fn masters(&self) -> std::collections::BTreeMap<u32, String> {
        self.groups.iter().filter_map(|g| Some((g.index, g.master.clone()?))).collect()
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
    /// Owned slots in Pika's range syntax.
    #[serde(default)]
    pub slots: String,
    /// Largest replication lag (bytes) of the group's replicas.
    #[serde(default)]
    pub max_lag: u64,
    /// Former masters replaced by a failover: when they answer again they are made replicas
    /// with a full re-sync before they serve anything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub demoted: Vec<String>,
}

/// Moves `slots` of `cluster` to group `targetGroup`, without losing a write: replicate, catch
/// up, hold at the proxies, fence, promote, route, release, clean up.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "pika.sharding.io",
    version = "v1alpha1",
    kind = "SlotMigration",
    namespaced,
    shortname = "slotmig",
    status = "SlotMigrationStatus",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.cluster"}"#,
    printcolumn = r#"{"name":"Slots","type":"string","jsonPath":".spec.slots"}"#,
    printcolumn = r#"{"name":"Target","type":"integer","jsonPath":".spec.targetGroup"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Progress","type":"string","description":"Slots moved of the slots to move","jsonPath":".status.progress"}"#,
    printcolumn = r#"{"name":"Pause(ms)","type":"integer","description":"Longest cutover pause","jsonPath":".status.cutoverPauseMs"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SlotMigrationSpec {
    /// The PikaCluster (same namespace).
    pub cluster: String,
    /// Slots to move, in Pika's range syntax (`0-99,512`).
    #[schemars(regex(pattern = r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*,?$"))]
    pub slots: String,
    /// Index of the group that receives them.
    pub target_group: u32,
    /// Lag (bytes) under which the cutover may start.
    #[serde(default = "default_lag_threshold")]
    pub lag_threshold_bytes: u64,
    /// How long the writes of a batch may be held before the cutover is rolled back.
    #[serde(default = "default_cutover_timeout")]
    pub cutover_timeout_ms: u64,
    /// Slots cut over together (one hold/fence/promote round each).
    #[serde(default = "default_batch")]
    #[schemars(range(min = 1))]
    pub batch_size: u32,
}

fn default_lag_threshold() -> u64 {
    // Under it the remaining lag drains in a few milliseconds once writes are held.
    256 << 10
}
fn default_cutover_timeout() -> u64 {
    5000
}
fn default_batch() -> u32 {
    // Measured (bench/operator.sh, 1 GB, under load): 16 slots keep the pause p99 at 75 ms,
    // 64 took it to 182 ms.
    16
}

/// The annotation on a PikaCluster asking for a planned switchover of a group's master to one of
/// its replicas: `g0` (the most caught-up replica) or `g0=<member>`. Done once per value: to ask
/// again for the same, change the value (a suffix after `#` is ignored: `g0#2`).
pub const SWITCHOVER_ANNOTATION: &str = "pika.sharding.io/switchover";

/// Where the switchover a `pika.sharding.io/switchover` value asked for stands.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchoverStatus {
    /// The annotation's value.
    pub request: String,
    /// The member chosen to become master, recorded before anything is done, so that an
    /// operator restarted midway goes on with the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub phase: SwitchoverPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SwitchoverPhase {
    Running,
    Succeeded,
    Failed,
}

/// Where a migration is. Each step is recorded before it acts, so a restarted operator resumes.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum MigrationPhase {
    #[default]
    Pending,
    Syncing,
    CatchingUp,
    CuttingOver,
    Cleanup,
    Succeeded,
    Failed,
}

/// The steps of one cutover, in the order a move runs them (`Rollback` only when an attempt is
/// undone). Recorded in `status.step` before each acts; a restarted operator resumes from it.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CutoverStep {
    Addslots,
    Sync,
    Replicas,
    CatchUp,
    Hold,
    Fence,
    Drain,
    Rollback,
    Promote,
    Route,
    Cleanup,
}

impl CutoverStep {
    pub const ALL: [CutoverStep; 11] = {
        use CutoverStep::*;
        [Addslots, Sync, Replicas, CatchUp, Hold, Fence, Drain, Rollback, Promote, Route, Cleanup]
    };

    /// The name in status, logs and `PIKA_OPERATOR_CRASH_AT`.
    pub fn as_str(self) -> &'static str {
        use CutoverStep::*;
        match self {
            Addslots => "addslots",
            Sync => "sync",
            Replicas => "replicas",
            CatchUp => "catch-up",
            Hold => "hold",
            Fence => "fence",
            Drain => "drain",
            Rollback => "rollback",
            Promote => "promote",
            Route => "route",
            Cleanup => "cleanup",
        }
    }

    /// The migration's phase while this step runs.
    pub fn phase(self) -> MigrationPhase {
        use CutoverStep::*;
        match self {
            Addslots | Sync | Replicas => MigrationPhase::Syncing,
            CatchUp => MigrationPhase::CatchingUp,
            Hold | Fence | Drain | Rollback | Promote | Route => MigrationPhase::CuttingOver,
            Cleanup => MigrationPhase::Cleanup,
        }
    }

    /// Promotion began: the target may already be the slots' master, so the move can only go
    /// forward (before it, the source still has every write and the attempt is rolled back).
    pub fn past_promotion(self) -> bool {
        matches!(self, CutoverStep::Promote | CutoverStep::Route | CutoverStep::Cleanup)
    }
}

impl std::fmt::Display for CutoverStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlotMigrationStatus {
    #[serde(default)]
    pub phase: MigrationPhase,
    /// The cutover step in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<CutoverStep>,
    /// Slots already moved.
    #[serde(default)]
    pub slots_done: String,
    /// Slots moved of the slots to move: `48/128`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// The batch being cut over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_batch: Option<String>,
    /// The group the current batch comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_group: Option<u32>,
    /// Largest lag seen for the batch (bytes).
    #[serde(default)]
    pub lag: u64,
    #[serde(default)]
    pub attempts: u32,
    /// Longest time writes were held in one cutover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutover_pause_ms: Option<u64>,
    /// How long writes were held, per batch cut over (in order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batch_pauses_ms: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Every CRD of the operator, in a stable order (crdgen prints them; the operator applies them).
pub fn crds() -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![PikaCluster::crd(), SlotMigration::crd()]
}

/// The CRDs as YAML documents, exactly what `crds/` holds.
pub fn crds_yaml() -> String {
    crds().iter().map(|crd| format!("---\n{}", serde_yaml::to_string(crd).expect("a CRD serialises"))).collect()
}
