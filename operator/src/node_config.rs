//! A cluster's `spec.config` as its nodes get it, the same for both runtimes: each entry is
//! checked against the node's options (`common::options`); an unknown option, a bad value or
//! one the operator sets itself is left out of pika.conf and reported (a node must never fail
//! to start on it: that would be a crash loop). The valid entries split in two:
//!
//! - options a running node can change (`CONFIG SET`) are set on every member when they
//!   change, without a restart;
//! - the others take effect at the next start: their checksum is part of the pod template
//!   (the local runtime's revision), so a change rolls the members (`rollout`).

use std::collections::BTreeMap;

use common::options::{self, Kind};

use crate::admin::Admin;
use crate::crd::PikaClusterSpec;

/// Options the operator sets itself (the layout, the paths; `spec.durability`'s,
/// which it sets like live `spec.config` entries): `spec.config` cannot change them.
pub const MANAGED: &[&str] = &[
    "port",
    "bind",
    "http-port",
    "instance-mode",
    "default-slot-num",
    "databases",
    "db-path",
    "log-path",
    "start-fenced",
    "min-replica-acks",
    "replica-ack-timeout-ms",
];

/// `spec.config`, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeConfig {
    /// Valid entries a running node takes with `CONFIG SET`.
    pub live: BTreeMap<String, String>,
    /// Valid entries that need a restart.
    pub restart: BTreeMap<String, String>,
    /// What was left out, and why (one line each).
    pub problems: Vec<String>,
}

impl NodeConfig {
    /// What every node of the cluster gets: `spec.config`, checked, and the options
    /// `spec.durability` stands for (live ones: a change reaches running nodes at once).
    pub fn of(spec: &PikaClusterSpec) -> NodeConfig {
        let mut checked = NodeConfig::check(&spec.config);
        let durability = &spec.durability;
        if durability.min_acks() > spec.replicas_per_group {
            checked.problems.push(format!(
                "durability.minReplicaAcks {} exceeds replicasPerGroup {}: no write can be acknowledged",
                durability.min_replica_acks, spec.replicas_per_group
            ));
        }
        checked.live.insert("min-replica-acks".into(), durability.min_acks().to_string());
        checked.live.insert("replica-ack-timeout-ms".into(), durability.ack_timeout_ms.to_string());
        checked
    }

    pub fn check(config: &BTreeMap<String, String>) -> NodeConfig {
        let mut checked = NodeConfig::default();
        for (key, value) in config {
            let name = key.trim().to_ascii_lowercase();
            if MANAGED.contains(&name.as_str()) {
                checked.problems.push(format!("{key}: set by the operator, not by spec.config"));
                continue;
            }
            // TLS needs its certificate Secret mounted and every member, proxy and the
            // operator to agree on ports: the node's options alone would crash-loop a member
            // (a missing file) or break its replication (TLS against a plain port).
            if name.starts_with("tls-") {
                checked.problems.push(format!("{key}: TLS is not configurable through spec.config"));
                continue;
            }
            // A password in a manifest is in Git and in every reader of the object.
            if options::find(&name).is_some_and(|o| o.kind == Kind::Secret) {
                checked.problems.push(format!(
                    "{key}: a password, never in spec.config (the data password comes from passwordSecretRef, \
                     the admin password from the operator's Secret)"
                ));
                continue;
            }
            match options::parse(&name, value) {
                Err(why) => checked.problems.push(format!("{key}: {value:?}: {why}")),
                Ok((opt, _)) if opt.kind == Kind::Ignored => {}
                Ok((opt, _)) if opt.live => {
                    checked.live.insert(opt.name.to_string(), value.trim().to_string());
                }
                Ok((opt, _)) => {
                    checked.restart.insert(opt.name.to_string(), value.trim().to_string());
                }
            }
        }
        checked
    }

    /// The entries pika.conf carries, in name order.
    pub fn entries(&self) -> BTreeMap<&str, &str> {
        self.live.iter().chain(&self.restart).map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// A checksum of the entries that need a restart (a change of it rolls the members).
    pub fn restart_checksum(&self) -> String {
        checksum(&self.restart)
    }

    /// What `CONFIG SET` makes of the live options: every one the operator does not manage,
    /// with the spec's value or else the node's default (an entry removed from the spec goes
    /// back to the default). Never a password: those are the pods' and `k8s::password`'s.
    pub fn live_settings(&self) -> Vec<(&'static str, String)> {
        options::OPTIONS
            .iter()
            .filter(|o| o.live && o.kind != Kind::Secret)
            .filter(|o| !MANAGED.contains(&o.name) || self.live.contains_key(o.name))
            .map(|o| (o.name, self.live.get(o.name).cloned().unwrap_or_else(|| o.default.to_string())))
            .collect()
    }

    /// A checksum of [`Self::live_settings`]: the runtime records the one it applied.
    pub fn live_checksum(&self) -> String {
        checksum(&self.live_settings().into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }
}

fn checksum(entries: &BTreeMap<String, String>) -> String {
    let mut hash = crc32fast::Hasher::new();
    for (k, v) in entries {
        hash.update(k.as_bytes());
        hash.update(b"\0");
        hash.update(v.as_bytes());
        hash.update(b"\n");
    }
    format!("{:08x}", hash.finalize())
}

/// Sets the live options on every node of `nodes`; the first that refuses (or does not answer)
/// ends it with the reason.
pub async fn apply_live(admin: &Admin, nodes: &[String], config: &NodeConfig) -> Result<(), String> {
    for node in nodes {
        for (name, value) in config.live_settings() {
            admin.call(node, &["config", "set", name, &value]).await.map_err(|e| format!("CONFIG SET {name}: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn entries_split_into_live_and_restart_and_bad_ones_are_reported() {
        let c = NodeConfig::check(&config(&[
            ("slowlog-max-len", "500"),
            ("Block-Cache", "256mb"),
            ("port", "1"),
            ("no-such-option", "x"),
            ("sync-writes", "sometimes"),
            ("daemonize", "yes"),
            ("userpass", "hunter2"),
            ("tls-port", "6380"),
        ]));
        assert_eq!(c.live, BTreeMap::from([("slowlog-max-len".to_string(), "500".to_string())]));
        assert_eq!(c.restart, BTreeMap::from([("block-cache".to_string(), "256mb".to_string())]));
        assert_eq!(c.problems.len(), 5, "{:?}", c.problems);
        assert!(c.problems.iter().any(|p| p.starts_with("tls-port: TLS is not configurable")));
        assert!(c.problems.iter().any(|p| p.starts_with("userpass: a password, never in spec.config")));
        assert!(c.problems.iter().any(|p| p.contains("no-such-option") && p.contains("unknown option")));
        assert!(c.problems.iter().any(|p| p.starts_with("port: set by the operator")));
        // A live change does not change the restart checksum, and the other way round.
        let live2 = NodeConfig::check(&config(&[("slowlog-max-len", "600"), ("block-cache", "256mb")]));
        assert_eq!(live2.restart_checksum(), c.restart_checksum());
        assert_ne!(live2.live_checksum(), c.live_checksum());
        // A removed live entry goes back to the node's default.
        let none = NodeConfig::check(&BTreeMap::new());
        assert!(none.live_settings().contains(&("slowlog-max-len", "128".to_string())));
        for secret in ["requirepass", "userpass", "masterauth", "requirepass-previous"] {
            assert!(!none.live_settings().iter().any(|(k, _)| *k == secret), "{secret} reset by CONFIG SET");
        }
    }
}
