//! pika-operator: turns `PikaCluster` and `SlotMigration` resources into running groups of
//! pika-node and moves slots between them without losing a write.
//!
//! - [`crd`]: the resource types (the CRD YAML in `crds/` is generated from them).
//! - [`planner`]: pure decisions: the initial slot split, rebalancing plans, failover choice.
//! - [`authority`]: whether this instance may still act (its leader Lease).
//! - [`cutover`]: moving a batch of slots between groups (the seven steps), over [`admin`].
//! - [`switchover`]: a planned move of a group's master to one of its replicas.
//! - [`rollout`]: the rolling update (replicas first, a switchover, the old master last).
//! - [`dataplane`]: what is done to a running cluster's nodes, shared by both runtimes.
//! - [`node_config`]: `spec.config` checked, split into live options and ones needing a restart.
//! - [`resources`]: the Kubernetes objects of a PikaCluster (pure builders).
//! - [`k8s`]: the Kubernetes controllers (`pika-operator run`).
//! - [`local`]: the local runtime (`pika-operator local -f cluster.yaml`).

pub mod admin;
pub mod authority;
pub mod control;
pub mod crd;
pub mod cutover;
pub mod dataplane;
pub mod k8s;
pub mod local;
pub mod metrics;
pub mod node_config;
pub mod planner;
pub mod resources;
pub mod rollout;
pub mod switchover;
