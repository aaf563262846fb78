//! pika-operator: turns `PikaCluster` and `SlotMigration` resources into running groups of
//! pika-node and moves slots between them without losing a write.
//!
//! - [`crd`]: the resource types (the CRD YAML in `crds/` is generated from them).
//! - [`planner`]: pure decisions: the initial slot split, rebalancing plans, failover choice.

pub mod crd;
pub mod planner;
