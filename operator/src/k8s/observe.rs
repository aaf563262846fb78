//! Where a PikaCluster's pods are: members per group (by StatefulSet ordinal) and proxies,
//! addressed by pod IP once running (the operator talks to them directly; replicas re-point
//! when a master's IP changes, as the data plane re-applies `slotsslaveof` every pass).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::ResourceExt;

use crate::crd::PikaCluster;
use crate::dataplane::Topology;
use crate::resources::{CLIENT_PORT, GROUP_LABEL};

pub use crate::control::Member;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Members per group, indexed by ordinal (a missing pod is a member without address).
    pub groups: BTreeMap<u32, Vec<Member>>,
    /// Running proxies' addresses.
    pub proxies: Vec<String>,
    /// Groups whose StatefulSet controller has not yet seen their latest template: whether
    /// their pods are outdated is not known.
    pub revision_unknown: Vec<u32>,
}

fn running_addr(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    Some(format!("{}:{CLIENT_PORT}", status.pod_ip.as_deref().filter(|ip| !ip.is_empty())?))
}

/// The label the StatefulSet controller puts on each pod: the revision of the template it was
/// made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// Sorts pods into groups and proxies. `sizes`: the members each group should have;
/// `revisions`: each group's current template revision (its StatefulSet's `updateRevision`),
/// None until its controller has seen the latest template: a pod made from another revision
/// is outdated.
pub fn classify(
    pods: &[Pod],
    sizes: &BTreeMap<u32, u32>,
    revisions: &BTreeMap<u32, Option<String>>,
    cluster: &str,
) -> Observed {
    let mut observed = Observed {
        revision_unknown: revisions.iter().filter(|(_, r)| r.is_none()).map(|(&g, _)| g).collect(),
        ..Observed::default()
    };
    for (&g, &n) in sizes {
        let name = crate::resources::group_name(cluster, g);
        observed
            .groups
            .insert(g, (0..n).map(|m| Member { name: format!("{name}-{m}"), ..Member::default() }).collect());
    }
    for pod in pods {
        let labels = pod.labels();
        match labels.get("app.kubernetes.io/component").map(String::as_str) {
            Some("proxy") => observed.proxies.extend(running_addr(pod)),
            Some("node") => {
                let Some(g) = labels.get(GROUP_LABEL).and_then(|g| g.parse::<u32>().ok()) else { continue };
                let name = pod.name_any();
                let Some(members) = observed.groups.get_mut(&g) else { continue };
                if let Some(m) = members.iter_mut().find(|m| m.name == name) {
                    m.addr = running_addr(pod);
                    let revision = labels.get(REVISION_LABEL);
                    m.outdated =
                        revisions.get(&g).and_then(Option::as_ref).is_some_and(|r| revision.is_some_and(|p| p != r));
                }
            }
            _ => {}
        }
    }
    observed.proxies.sort();
    observed
}

/// Lists the cluster's pods.
pub async fn pods(client: &kube::Client, cluster: &PikaCluster) -> Result<Vec<Pod>, kube::Error> {
    let ns = cluster.namespace().unwrap_or_else(|| "default".into());
    let selector: Vec<String> =
        crate::resources::pod_selector(&cluster.name_any()).iter().map(|(k, v)| format!("{k}={v}")).collect();
    let selector = selector.join(",");
    Ok(Api::<Pod>::namespaced(client.clone(), &ns).list(&ListParams::default().labels(&selector)).await?.items)
}

impl Observed {
    /// The data plane's view, given each group's master pod: None while a master has no
    /// address. Replicas without an address are left out (they are attached once they run).
    pub fn topology(&self, masters: &BTreeMap<u32, String>, slots: u32) -> Option<Topology> {
        crate::control::topology_of(&self.groups, masters, slots)
    }

    /// `ready/total` for `kubectl get`: groups whose every member runs and whose master is
    /// known (`masters`: group -> master pod), of all groups observed.
    pub fn ready_groups(&self, masters: &BTreeMap<u32, String>) -> String {
        let ready = self
            .groups
            .iter()
            .filter(|(g, members)| masters.contains_key(g) && members.iter().all(|m| m.addr.is_some()))
            .count();
        format!("{ready}/{}", self.groups.len())
    }

    pub fn addr_of(&self, pod: &str) -> Option<String> {
        self.groups.values().flatten().find(|m| m.name == pod).and_then(|m| m.addr.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, component: &str, group: Option<u32>, ip: Option<&str>) -> Pod {
        let mut labels = BTreeMap::from([("app.kubernetes.io/component".to_string(), component.to_string())]);
        if let Some(g) = group {
            labels.insert(GROUP_LABEL.into(), g.to_string());
        }
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": labels },
            "status": { "phase": if ip.is_some() { "Running" } else { "Pending" }, "podIP": ip },
        }))
        .unwrap()
    }

    #[test]
    fn pods_become_members_by_ordinal_and_topology_needs_every_master() {
        let pods = vec![
            pod("c-g0-1", "node", Some(0), Some("10.0.0.2")),
            pod("c-g0-0", "node", Some(0), Some("10.0.0.1")),
            pod("c-g1-0", "node", Some(1), None),
            pod("c-proxy-x", "proxy", None, Some("10.0.1.1")),
            pod("c-proxy-y", "proxy", None, None),
        ];
        let observed = classify(&pods, &BTreeMap::from([(0, 2), (1, 2)]), &BTreeMap::new(), "c");
        assert_eq!(observed.groups[&0][0].addr.as_deref(), Some("10.0.0.1:9221"));
        assert_eq!(observed.groups[&1][1], Member { name: "c-g1-1".into(), ..Member::default() });
        assert_eq!(observed.proxies, vec!["10.0.1.1:9221".to_string()]);
        let masters = BTreeMap::from([(0, "c-g0-1".to_string()), (1, "c-g1-0".to_string())]);
        assert!(observed.topology(&masters, 16).is_none(), "g1's master has no address");
        let only_g0 =
            Observed { groups: observed.groups.range(0..1).map(|(k, v)| (*k, v.clone())).collect(), ..observed };
        let t = only_g0.topology(&masters, 16).unwrap();
        assert_eq!(
            t.groups[&0],
            crate::cutover::GroupNodes {
                master: "10.0.0.2:9221".into(),
                replicas: vec!["10.0.0.1:9221".into()],
                size: 2
            }
        );
    }

    #[test]
    fn a_group_is_ready_when_every_member_runs_and_its_master_is_known() {
        let pods = vec![
            pod("c-g0-0", "node", Some(0), Some("10.0.0.1")),
            pod("c-g0-1", "node", Some(0), Some("10.0.0.2")),
            pod("c-g1-0", "node", Some(1), Some("10.0.1.1")),
            pod("c-g1-1", "node", Some(1), None),
            pod("c-g2-0", "node", Some(2), Some("10.0.2.1")),
        ];
        let observed = classify(&pods, &BTreeMap::from([(0, 2), (1, 2), (2, 1)]), &BTreeMap::new(), "c");
        let masters = BTreeMap::from([(0, "c-g0-0".to_string()), (1, "c-g1-0".to_string())]);
        // g0 ready; g1 has a replica down; g2 runs but its master is not known yet.
        assert_eq!(observed.ready_groups(&masters), "1/3");
        let all = BTreeMap::from([(0, "c-g0-0".into()), (1, "c-g1-0".into()), (2, "c-g2-0".into())]);
        assert_eq!(observed.ready_groups(&all), "2/3");
    }
}
