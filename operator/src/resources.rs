//! The Kubernetes objects a PikaCluster is made of, built from its spec (pure; the cluster
//! controller applies them with server-side apply):
//!
//! - `<name>-config` ConfigMap: the nodes' pika.conf;
//! - `<name>-g<g>` StatefulSet per group (member 0 is the first master), with a volume claim
//!   template, anti-affinity within the group, probes on the node's health endpoint;
//! - `<name>-nodes` headless Service (stable pod names for replication and the proxies' seeds);
//! - `<name>-g<g>` PodDisruptionBudget per group (one member down at a time);
//! - `<name>-proxy` Deployment and `<name>` Service: where clients connect;
//! - `<name>` PodMonitor (with `spec.monitoring.podMonitor`): Prometheus Operator scraping of
//!   every node's and proxy's `/metrics`, labelled with the cluster, group and component.
//!
//! Every node starts fenced (`start-fenced : yes`): a restarted pod never takes writes before the
//! operator has checked it is still the master of its slots (after a failover it is not).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};

use crate::crd::PikaCluster;
use crate::node_config::NodeConfig;

pub const CLIENT_PORT: u16 = 9221;
pub const NODE_HTTP_PORT: u16 = 9231;
pub const PROXY_HTTP_PORT: u16 = 9220;
pub const GROUP_LABEL: &str = "pika.sharding.io/group";
/// The container port of `/metrics` and `/health`, on nodes and proxies alike.
pub const HTTP_PORT_NAME: &str = "http";
pub const MANAGER: &str = "pika-operator";

/// On the node pods' template: the checksum of the options that need a restart.
pub const CONFIG_CHECKSUM_ANNOTATION: &str = "pika.sharding.io/config-checksum";

pub fn config_map_name(cluster: &str) -> String {
    format!("{cluster}-config")
}
pub fn group_name(cluster: &str, group: u32) -> String {
    format!("{cluster}-g{group}")
}
pub fn headless_name(cluster: &str) -> String {
    format!("{cluster}-nodes")
}
pub fn proxy_name(cluster: &str) -> String {
    format!("{cluster}-proxy")
}

/// Labels of every object of the cluster; `component` is `node` or `proxy`.
pub fn labels(cluster: &str, component: &str) -> BTreeMap<String, String> {
    let mut l = pod_selector(cluster);
    l.insert("app.kubernetes.io/component".into(), component.into());
    l.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    l
}

/// The labels every pod of the cluster has, nodes and proxies alike: what selects them all.
pub fn pod_selector(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "pika".into()),
        ("app.kubernetes.io/instance".into(), cluster.into()),
    ])
}

fn group_labels(cluster: &str, group: u32) -> BTreeMap<String, String> {
    let mut l = labels(cluster, "node");
    l.insert(GROUP_LABEL.into(), group.to_string());
    l
}

/// The selector labels (a subset that never changes, as selectors are immutable).
fn selector(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(k, _)| k.as_str() != "app.kubernetes.io/managed-by")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Kubernetes' default for an image (Always for `:latest` or no tag, else IfNotPresent), set
/// explicitly: the API server fills it in only when an object is created, so a StatefulSet
/// recreated after an image change (`storage.size`) got a template that differed from its
/// pods' and rolled them all for nothing.
fn pull_policy(image: &str) -> &'static str {
    let name = image.rsplit('/').next().unwrap_or(image);
    let tag = name.split_once('@').map_or(name, |(n, _)| n).split_once(':').map(|(_, t)| t);
    match (image.contains('@'), tag) {
        (true, _) => "IfNotPresent",
        (false, None | Some("latest")) => "Always",
        _ => "IfNotPresent",
    }
}

/// The proxy image: `spec.proxy.image`, or the node image with `pika-node` replaced by
/// `pika-proxy` (both are built from one Dockerfile with one tag).
pub fn proxy_image(cluster: &PikaCluster) -> String {
    cluster.spec.proxy.image.clone().unwrap_or_else(|| cluster.spec.image.replace("pika-node", "pika-proxy"))
}

/// Metadata every object gets: name, namespace, labels, and the cluster as controlling owner
/// (deleting the cluster deletes them).
fn meta(cluster: &PikaCluster, name: &str, labels: &BTreeMap<String, String>) -> Value {
    let owner = cluster.controller_owner_ref(&()).map(|o| serde_json::to_value(o).expect("owner ref"));
    json!({
        "name": name,
        "namespace": cluster.namespace(),
        "labels": labels,
        "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
    })
}

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("built objects match their types")
}

/// pika.conf of every node: the valid entries of `spec.config` (`node_config`: those left out
/// are reported in the `ConfigValid` condition), then the options the layout depends on (port,
/// mode, slots, paths).
pub fn pika_conf(cluster: &PikaCluster) -> String {
    let mut conf = String::new();
    conf.push_str("# Written by pika-operator from the PikaCluster spec.\n");
    for (k, v) in NodeConfig::of(&cluster.spec).entries() {
        conf.push_str(&format!("{k} : {v}\n"));
    }
    let fixed = [
        ("port", CLIENT_PORT.to_string()),
        ("bind", "0.0.0.0".into()),
        ("http-port", NODE_HTTP_PORT.to_string()),
        ("instance-mode", "sharding".into()),
        ("default-slot-num", cluster.spec.slots.to_string()),
        ("db-path", "/data/db".into()),
        ("log-path", "/data/log".into()),
        ("start-fenced", "yes".into()),
    ];
    for (k, v) in fixed {
        conf.push_str(&format!("{k} : {v}\n"));
    }
    conf
}

pub fn config_map(cluster: &PikaCluster) -> ConfigMap {
    let name = cluster.name_any();
    typed(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(cluster, &config_map_name(&name), &labels(&name, "node")),
        "data": { "pika.conf": pika_conf(cluster) },
    }))
}

/// The operator's Secret of a cluster with a password: `password` (what every node and proxy
/// uses) and `previous` (also accepted during a rotation; empty otherwise). It follows the
/// user's Secret (`passwordSecretRef`) one step at a time (`k8s::password`).
pub fn auth_secret_name(cluster: &str) -> String {
    format!("{cluster}-auth")
}

/// The operator's Secret of a cluster's admin password (key `password`): generated by the
/// operator when the cluster is created, never shown to applications (common/src/auth.rs).
pub fn admin_secret_name(cluster: &str) -> String {
    format!("{cluster}-admin")
}

/// The key of the admin password in [`admin_secret_name`].
pub const ADMIN_SECRET_KEY: &str = "password";

/// Which process the passwords are for: each reads them from its own variables
/// (`common::auth::env_name` of its options).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Process {
    Node,
    Proxy,
}

/// The passwords as environment variables from the operator's Secrets, never as arguments
/// (a command line is readable by every process on the machine): the admin password always,
/// the data password (and during a rotation the previous one) when the cluster has one.
fn password_env(cluster: &PikaCluster, process: Process) -> Vec<Value> {
    let name = cluster.name_any();
    let var = |option: &str, secret: &str, key: &str| json!({"name": common::auth::env_name(option), "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}});
    let admin = admin_secret_name(&name);
    let data = auth_secret_name(&name);
    let mut env = match process {
        // Replication is admin's: a node gives its masters their `requirepass`.
        Process::Node => {
            vec![var("requirepass", &admin, ADMIN_SECRET_KEY), var("masterauth", &admin, ADMIN_SECRET_KEY)]
        }
        Process::Proxy => vec![var("admin-password", &admin, ADMIN_SECRET_KEY)],
    };
    if cluster.spec.password_secret_ref.is_some() {
        let (current, previous) = match process {
            Process::Node => ("userpass", "userpass-previous"),
            Process::Proxy => ("password", "password-previous"),
        };
        env.extend([var(current, &data, "password"), var(previous, &data, "previous")]);
    }
    env
}

fn scheduling(cluster: &PikaCluster) -> (Value, Value) {
    match &cluster.spec.scheduling {
        Some(s) => (json!(s.node_selector), serde_json::to_value(&s.tolerations).expect("tolerations")),
        None => (json!({}), json!([])),
    }
}

pub fn stateful_set(cluster: &PikaCluster, group: u32) -> StatefulSet {
    let name = cluster.name_any();
    let labels = group_labels(&name, group);
    let env = password_env(cluster, Process::Node);
    let args = vec!["-c".to_string(), "/etc/pika/pika.conf".into()];
    let (node_selector, tolerations) = scheduling(cluster);
    let mut claim = json!({
        "metadata": { "name": "data", "labels": labels },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": { "requests": { "storage": cluster.spec.storage.size } },
        },
    });
    if let Some(class) = &cluster.spec.storage.storage_class_name {
        claim["spec"]["storageClassName"] = json!(class);
    }
    let probe = |delay: u32| {
        json!({
            "httpGet": { "path": "/health", "port": "http" },
            "initialDelaySeconds": delay, "periodSeconds": 5, "failureThreshold": 3,
        })
    };
    typed(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(cluster, &group_name(&name, group), &labels),
        "spec": {
            "serviceName": headless_name(&name),
            "replicas": 1 + cluster.spec.replicas_per_group,
            // Members are independent (roles are set by the operator, not by start order).
            "podManagementPolicy": "Parallel",
            // The operator restarts pods itself, replicas first and the master after a
            // switchover (`rollout`); the StatefulSet controller would take the highest
            // ordinal first, master or not.
            "updateStrategy": { "type": "OnDelete" },
            "selector": { "matchLabels": selector(&labels) },
            "template": {
                "metadata": {
                    "labels": labels,
                    // Options that need a restart: a change makes a new revision, which the
                    // rolling update rolls out (live options are set with CONFIG SET).
                    "annotations": { CONFIG_CHECKSUM_ANNOTATION: NodeConfig::of(&cluster.spec).restart_checksum() },
                },
                "spec": {
                    "affinity": { "podAntiAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": { "matchLabels": selector(&labels) },
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }]}},
                    "nodeSelector": node_selector,
                    "tolerations": tolerations,
                    "securityContext": { "runAsUser": 10001, "runAsNonRoot": true, "fsGroup": 10001 },
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{
                        "name": "pika-node",
                        "image": cluster.spec.image,
                        "imagePullPolicy": pull_policy(&cluster.spec.image),
                        "args": args,
                        "env": env,
                        "ports": [
                            { "name": "client", "containerPort": CLIENT_PORT },
                            { "name": HTTP_PORT_NAME, "containerPort": NODE_HTTP_PORT },
                        ],
                        "readinessProbe": probe(2),
                        "livenessProbe": probe(10),
                        "resources": cluster.spec.resources.clone().unwrap_or_default(),
                        "volumeMounts": [
                            { "name": "data", "mountPath": "/data" },
                            { "name": "config", "mountPath": "/etc/pika" },
                        ],
                    }],
                    "volumes": [{ "name": "config", "configMap": { "name": config_map_name(&name) } }],
                },
            },
            "volumeClaimTemplates": [claim],
            // Volumes outlive their pods unless the user asked scale-in to free them (a retired
            // group's claims are deleted by the operator then, as the StatefulSet goes).
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Retain",
                "whenScaled": if cluster.spec.storage.delete_on_scale_in { "Delete" } else { "Retain" },
            },
        },
    }))
}

/// Headless: every node pod gets a stable DNS name, ready or not (a replica in a full sync is
/// not ready but must be reachable by its master and by the operator).
pub fn headless_service(cluster: &PikaCluster) -> Service {
    let name = cluster.name_any();
    let labels = labels(&name, "node");
    typed(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(cluster, &headless_name(&name), &labels),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": true,
            "selector": selector(&labels),
            "ports": [
                { "name": "client", "port": CLIENT_PORT, "targetPort": "client" },
                { "name": "metrics", "port": NODE_HTTP_PORT, "targetPort": HTTP_PORT_NAME },
            ],
        },
    }))
}

pub fn disruption_budget(cluster: &PikaCluster, group: u32) -> PodDisruptionBudget {
    let name = cluster.name_any();
    let labels = group_labels(&name, group);
    typed(json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(cluster, &group_name(&name, group), &labels),
        "spec": { "maxUnavailable": 1, "selector": { "matchLabels": selector(&labels) } },
    }))
}

/// The proxies' `hold-timeout-ms` for this cluster (`control::proxy_hold_timeout`).
pub fn hold_timeout_ms(cluster: &PikaCluster) -> u128 {
    let failover_after = std::time::Duration::from_secs(cluster.spec.failover_after_seconds.max(1) as u64);
    crate::control::proxy_hold_timeout(failover_after).as_millis()
}

pub fn proxy_deployment(cluster: &PikaCluster) -> Deployment {
    let name = cluster.name_any();
    let namespace = cluster.namespace().unwrap_or_else(|| "default".into());
    let labels = labels(&name, "proxy");
    // The headless Service's name resolves to every node pod: the seeds (hence the pod
    // template) stay the same when groups are added or removed, so the proxies are not rolled.
    let seeds = [format!("{}.{namespace}.svc:{CLIENT_PORT}", headless_name(&name))];
    let env = password_env(cluster, Process::Proxy);
    let args = vec![
        "--listen".to_string(),
        format!("0.0.0.0:{CLIENT_PORT}"),
        "--http-listen".into(),
        format!("0.0.0.0:{PROXY_HTTP_PORT}"),
        "--seed-nodes".into(),
        seeds.join(","),
        "--hold-timeout-ms".into(),
        hold_timeout_ms(cluster).to_string(),
        "--log-json".into(),
    ];
    let (node_selector, tolerations) = scheduling(cluster);
    typed(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(cluster, &proxy_name(&name), &labels),
        "spec": {
            "replicas": cluster.spec.proxy.replicas,
            "selector": { "matchLabels": selector(&labels) },
            // A new proxy is ready before an old one stops; the old one drains (answers what
            // its clients sent, then closes their connections) within its grace period.
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 0 } },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "nodeSelector": node_selector,
                    "tolerations": tolerations,
                    "securityContext": { "runAsUser": 10001, "runAsNonRoot": true },
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{
                        "name": "pika-proxy",
                        "image": proxy_image(cluster),
                        "imagePullPolicy": pull_policy(&proxy_image(cluster)),
                        "args": args,
                        "env": env,
                        "ports": [
                            { "name": "client", "containerPort": CLIENT_PORT },
                            { "name": HTTP_PORT_NAME, "containerPort": PROXY_HTTP_PORT },
                        ],
                        "readinessProbe": { "httpGet": { "path": "/ready", "port": "http" }, "periodSeconds": 5 },
                        "livenessProbe": { "httpGet": { "path": "/health", "port": "http" }, "initialDelaySeconds": 5, "periodSeconds": 10 },
                    }],
                },
            },
        },
    }))
}

/// Where clients connect: the proxies. Their metrics port is on it too while the Service stays
/// inside the cluster (ClusterIP); a NodePort or LoadBalancer Service carries the client port
/// only, so `/metrics` is not published outside (the PodMonitor scrapes the pods directly).
pub fn client_service(cluster: &PikaCluster) -> Service {
    let name = cluster.name_any();
    let labels = labels(&name, "proxy");
    let kind = cluster.spec.proxy.service_type.clone().unwrap_or_else(|| "ClusterIP".into());
    let mut ports = vec![json!({ "name": "client", "port": CLIENT_PORT, "targetPort": "client" })];
    if kind == "ClusterIP" {
        ports.push(json!({ "name": "metrics", "port": PROXY_HTTP_PORT, "targetPort": HTTP_PORT_NAME }));
    }
    typed(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(cluster, &name, &labels),
        "spec": { "type": kind, "selector": selector(&labels), "ports": ports },
    }))
}

pub fn network_policy_name(cluster: &str) -> String {
    format!("{cluster}-nodes")
}

/// The labels of the operator's pods (the chart's selector labels, less the release name).
pub const OPERATOR_POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "pika-operator");

/// Who may reach the nodes' client port (data, replication, admin): the cluster's proxies,
/// its nodes (replication, slot moves) and the operator's pods in `operator_namespace`. The
/// metrics port stays open to every pod (Prometheus). `None` when `spec.networkPolicy` is off.
pub fn network_policy(cluster: &PikaCluster, operator_namespace: &str) -> Option<NetworkPolicy> {
    if !cluster.spec.network_policy.enabled {
        return None;
    }
    let name = cluster.name_any();
    let (operator_key, operator_value) = OPERATOR_POD_LABEL;
    Some(typed(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(cluster, &network_policy_name(&name), &labels(&name, "node")),
        "spec": {
            "podSelector": { "matchLabels": selector(&labels(&name, "node")) },
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        { "podSelector": { "matchLabels": selector(&labels(&name, "proxy")) } },
                        { "podSelector": { "matchLabels": selector(&labels(&name, "node")) } },
                        {
                            "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": operator_namespace } },
                            "podSelector": { "matchLabels": { operator_key: operator_value } },
                        },
                    ],
                    "ports": [{ "protocol": "TCP", "port": CLIENT_PORT }],
                },
                { "ports": [{ "protocol": "TCP", "port": NODE_HTTP_PORT }] },
            ],
        },
    })))
}

/// The Prometheus Operator's PodMonitor kind (its CRD may not be installed: the caller copes).
pub fn pod_monitor_resource() -> kube::discovery::ApiResource {
    kube::discovery::ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: "monitoring.coreos.com/v1".into(),
        kind: "PodMonitor".into(),
        plural: "podmonitors".into(),
    }
}

/// Labels the scraped series get (besides Prometheus's own `namespace`, `pod`, `container`):
/// the dashboard groups by them.
pub const SCRAPE_LABELS: [(&str, &str); 3] = [
    ("__meta_kubernetes_pod_label_app_kubernetes_io_instance", "pika_cluster"),
    ("__meta_kubernetes_pod_label_pika_sharding_io_group", "group"),
    ("__meta_kubernetes_pod_label_app_kubernetes_io_component", "component"),
];

/// One PodMonitor for every node and proxy pod of the cluster (both serve `/metrics` on the
/// container port named `http`), or `None` when `spec.monitoring.podMonitor` is off.
pub fn pod_monitor(cluster: &PikaCluster) -> Option<kube::api::DynamicObject> {
    let monitoring = &cluster.spec.monitoring;
    if !monitoring.pod_monitor {
        return None;
    }
    let name = cluster.name_any();
    let mut labels = labels(&name, "monitoring");
    labels.extend(monitoring.labels.clone());
    let relabelings: Vec<Value> = SCRAPE_LABELS
        .iter()
        .map(|(from, to)| json!({ "sourceLabels": [from], "targetLabel": to, "action": "replace" }))
        .collect();
    let mut endpoint = json!({ "port": HTTP_PORT_NAME, "path": "/metrics", "relabelings": relabelings });
    if let Some(interval) = &monitoring.interval {
        endpoint["interval"] = json!(interval);
    }
    Some(typed(json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": meta(cluster, &name, &labels),
        "spec": {
            "selector": { "matchLabels": pod_selector(&name) },
            "namespaceSelector": { "matchNames": [cluster.namespace()] },
            "podMetricsEndpoints": [endpoint],
        },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::PikaClusterSpec;

    fn cluster(yaml: &str) -> PikaCluster {
        let spec: PikaClusterSpec = serde_yaml::from_str(yaml).unwrap();
        let mut c = PikaCluster::new("orders", spec);
        c.metadata.namespace = Some("prod".into());
        c.metadata.uid = Some("uid-1".into());
        c
    }

    #[test]
    fn statefulset_has_members_claims_probes_and_owner() {
        let c = cluster(
            "groups: 3\nreplicasPerGroup: 2\nstorage: {size: 5Gi, storageClassName: fast}\nimage: r/pika-node:1",
        );
        let sts = stateful_set(&c, 2);
        assert_eq!(sts.metadata.name.as_deref(), Some("orders-g2"));
        assert_eq!(sts.metadata.namespace.as_deref(), Some("prod"));
        let owner = &sts.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("PikaCluster", "orders", Some(true)));
        let spec = sts.spec.unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("orders-nodes"));
        assert_eq!(spec.selector.match_labels.as_ref().unwrap()[GROUP_LABEL], "2");
        let claim = &spec.volume_claim_templates.unwrap()[0];
        assert_eq!(claim.spec.as_ref().unwrap().storage_class_name.as_deref(), Some("fast"));
        let pod = spec.template.spec.unwrap();
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("r/pika-node:1"));
        let probe = container.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(probe.path.as_deref(), Some("/health"));
        let anti = pod.affinity.unwrap().pod_anti_affinity.unwrap();
        let term = &anti.preferred_during_scheduling_ignored_during_execution.unwrap()[0].pod_affinity_term;
        assert_eq!(term.label_selector.as_ref().unwrap().match_labels.as_ref().unwrap()[GROUP_LABEL], "2");
        let env: Vec<&str> = container.env.as_ref().unwrap().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(env, ["PIKA_REQUIREPASS", "PIKA_MASTERAUTH"], "the admin password only: data needs none");
    }

    #[test]
    fn passwords_come_from_the_secrets_as_env_never_from_args_or_the_spec_text() {
        let c = cluster("groups: 1\npasswordSecretRef: {name: pw}");
        let env_of = |container: &k8s_openapi::api::core::v1::Container| -> Vec<(String, String, String)> {
            let env = container.env.as_ref().unwrap();
            env.iter()
                .map(|e| {
                    let from = e.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
                    (e.name.clone(), from.name.clone(), from.key.clone())
                })
                .collect()
        };
        let sts = stateful_set(&c, 0);
        let node = &sts.spec.unwrap().template.spec.unwrap().containers[0];
        let owned = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        // The data password from the operator's copy, which follows the user's Secret through a
        // rotation; the admin password from the operator's own Secret.
        assert_eq!(
            env_of(node),
            [
                owned("PIKA_REQUIREPASS", "orders-admin", "password"),
                owned("PIKA_MASTERAUTH", "orders-admin", "password"),
                owned("PIKA_USERPASS", "orders-auth", "password"),
                owned("PIKA_USERPASS_PREVIOUS", "orders-auth", "previous"),
            ]
        );
        let proxy = proxy_deployment(&c).spec.unwrap().template.spec.unwrap();
        assert_eq!(
            env_of(&proxy.containers[0]),
            [
                owned("PIKA_ADMIN_PASSWORD", "orders-admin", "password"),
                owned("PIKA_PASSWORD", "orders-auth", "password"),
                owned("PIKA_PASSWORD_PREVIOUS", "orders-auth", "previous"),
            ]
        );
        for args in [node.args.as_ref().unwrap(), proxy.containers[0].args.as_ref().unwrap()] {
            assert!(!args.iter().any(|a| a.contains("PIKA_") || a.contains("pass")), "{args:?}");
        }
    }

    #[test]
    fn the_network_policy_lets_in_proxies_nodes_and_the_operator_only() {
        let c = cluster("groups: 1");
        let policy = network_policy(&c, "pika-system").unwrap();
        assert_eq!(policy.metadata.name.as_deref(), Some("orders-nodes"));
        let spec = policy.spec.unwrap();
        assert_eq!(spec.pod_selector.unwrap().match_labels.unwrap()["app.kubernetes.io/component"], "node");
        let rules = spec.ingress.unwrap();
        let from = rules[0].from.as_ref().unwrap();
        let components: Vec<String> = from
            .iter()
            .filter_map(|p| p.pod_selector.as_ref()?.match_labels.as_ref()?.get("app.kubernetes.io/component").cloned())
            .collect();
        assert_eq!(components, ["proxy", "node"]);
        let operator = &from[2];
        let ns = operator.namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap();
        assert_eq!(ns["kubernetes.io/metadata.name"], "pika-system");
        assert_eq!(
            operator.pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["app.kubernetes.io/name"],
            "pika-operator"
        );
        let port = |rule: &k8s_openapi::api::networking::v1::NetworkPolicyIngressRule| {
            rule.ports.as_ref().unwrap()[0].port.clone()
        };
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        assert_eq!(port(&rules[0]), Some(IntOrString::Int(CLIENT_PORT.into())));
        assert!(rules[1].from.is_none() && port(&rules[1]) == Some(IntOrString::Int(NODE_HTTP_PORT.into())));
        assert!(network_policy(&cluster("groups: 1\nnetworkPolicy: {enabled: false}"), "x").is_none());
    }

    #[test]
    fn pull_policies_follow_the_kubernetes_default() {
        assert_eq!(pull_policy("r/pika-node"), "Always");
        assert_eq!(pull_policy("r/pika-node:latest"), "Always");
        assert_eq!(pull_policy("registry:5000/pika-node:1.2"), "IfNotPresent");
        assert_eq!(pull_policy("registry:5000/pika-node"), "Always");
        assert_eq!(pull_policy("r/pika-node@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn pika_conf_keeps_layout_options_over_user_config() {
        let c = cluster("groups: 1\nslots: 128\nconfig: {port: '1', block-cache: 1gb}");
        let conf = pika_conf(&c);
        assert!(conf.contains("block-cache : 1gb\n"));
        // A managed option in spec.config is left out (and reported by the ConfigValid condition).
        let ports: Vec<&str> = conf.lines().filter(|l| l.starts_with("port :")).collect();
        assert_eq!(ports, ["port : 9221"]);
        assert!(conf.contains("default-slot-num : 128\n") && conf.contains("start-fenced : yes\n"));
    }

    #[test]
    fn proxy_seeds_every_group_and_services_select_their_pods() {
        let c = cluster("groups: 2\nproxy: {replicas: 3, serviceType: LoadBalancer}\nimage: r/pika-node:7");
        let d = proxy_deployment(&c);
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(3));
        let container = &spec.template.spec.unwrap().containers[0];
        assert_eq!(container.image.as_deref(), Some("r/pika-proxy:7"));
        let args = container.args.as_ref().unwrap();
        let seeds = &args[args.iter().position(|a| a == "--seed-nodes").unwrap() + 1];
        assert_eq!(seeds, "orders-nodes.prod.svc:9221");
        let mut more = c.clone();
        more.spec.groups = 5;
        assert_eq!(
            proxy_deployment(&more).spec.unwrap().template,
            proxy_deployment(&c).spec.unwrap().template,
            "no proxy rollout on scaling"
        );
        let svc = client_service(&c).spec.unwrap();
        assert_eq!(svc.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(svc.selector.unwrap()["app.kubernetes.io/component"], "proxy");
        let headless = headless_service(&c).spec.unwrap();
        assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
        assert_eq!(headless.publish_not_ready_addresses, Some(true));
        let pdb = disruption_budget(&c, 1).spec.unwrap();
        assert_eq!(pdb.max_unavailable, Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1)));
    }
}
