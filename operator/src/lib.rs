//! pika-operator: turns `PikaCluster` and `SlotMigration` resources into running groups of
//! pika-node and moves slots between them without losing a write.
//!
//! - [`crd`]: the resource types (the CRD YAML in `crds/` is generated from them).
//! - [`planner`]: pure decisions: the initial slot split, rebalancing plans, failover choice.
//! - [`cutover`]: moving a batch of slots between groups (the seven steps), over [`admin`].
//! - [`local`]: the local runtime (`pika-operator local -f cluster.yaml`).

pub mod admin;
pub mod crd;
pub mod cutover;
pub mod local;
pub mod planner;
