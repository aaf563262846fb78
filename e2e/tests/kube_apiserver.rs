//! The operator against a real Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager; no kubelet, so pods are created but never run): the Helm chart
//! installs, the operator runs with the chart's RBAC (its ServiceAccount's token), a PikaCluster
//! applied with kubectl becomes StatefulSets/Services/PDBs/proxy Deployment owned by it,
//! with conditions and observedGeneration; invalid manifests are refused by the schema; pause
//! stops changes; scaling the group count creates the new group's StatefulSet; a larger
//! storage size recreates the StatefulSets with their pods orphaned and says which volume
//! claims could not be resized, without stopping the reconcile; the leader Lease
//! passes to a standby when the leader stops; deleting the cluster runs the finalizer and the
//! garbage collector removes its objects.
//!
//! Needs kube-apiserver & co. (scripts/build-kube.sh), etcd, kubectl and helm
//! (scripts/install-deps.sh installs them); skipped, saying so, when they are missing.

mod support;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use support::kube::*;

const CLUSTER: &str = "apiVersion: pika.sharding.io/v1alpha1
kind: PikaCluster
metadata:
  name: demo
  namespace: apps
spec:
  groups: 2
  replicasPerGroup: 1
  image: registry.example.com/pika-node:0.1.0
";

/// A merge patch of the `demo` cluster, as a user edits it with kubectl.
fn patch_demo(env: &Env, patch: &str) {
    env.kubectl(&["-n", "apps", "patch", "pikacluster", "demo", "--type", "merge", "-p", patch])
        .expect("kubectl patch");
}

#[test]
fn operator_on_a_real_apiserver() {
    let Some(mut env) = Env::start_or_skip() else { return };

    // The chart installs the CRDs, RBAC, and the operator Deployment (its pods never run here:
    // no kubelet; the test runs the operator binary with the chart's ServiceAccount instead).
    let chart = repo("charts/pika-operator").display().to_string();
    let helm = env.tools.helm.clone();
    env.run(&helm, &["install", "pika-operator", &chart, "-n", "pika-system", "--create-namespace"], None)
        .expect("helm install");
    env.kubectl(&["get", "crd", "pikaclusters.pika.sharding.io", "slotmigrations.pika.sharding.io"])
        .expect("CRDs installed");
    let deploy = env.json(&["-n", "pika-system", "get", "deployment", "pika-operator"]).expect("operator Deployment");
    assert_eq!(deploy["spec"]["template"]["spec"]["serviceAccountName"], "pika-operator");
    let token =
        env.kubectl(&["-n", "pika-system", "create", "token", "pika-operator"]).expect("a token").trim().to_string();
    // The ServiceAccount may not do what the chart did not grant.
    let denied =
        env.kubectl(&["auth", "can-i", "delete", "nodes", "--as", "system:serviceaccount:pika-system:pika-operator"]);
    assert!(denied.is_err() || denied.unwrap().trim() == "no");

    let http_a = free_port();
    env.operator("op-a", &token, http_a);
    let lease = wait_for(Duration::from_secs(30), "op-a to hold the Lease", || {
        let l = env.json(&["-n", "pika-system", "get", "lease", "pika-operator-leader"])?;
        (l["spec"]["holderIdentity"] == "op-a").then_some(l)
    });
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 6);

    // Invalid manifests are refused by the API server, with the schema's words.
    env.kubectl(&["create", "namespace", "apps"]).unwrap();
    let err = env.apply(&CLUSTER.replace("groups: 2", "groups: 0")).unwrap_err();
    assert!(err.contains("spec.groups"), "{err}");
    let err = env
        .apply("apiVersion: pika.sharding.io/v1alpha1\nkind: SlotMigration\nmetadata: {name: m, namespace: apps}\nspec: {cluster: demo, slots: '0-x', targetGroup: 1}\n")
        .unwrap_err();
    assert!(err.contains("spec.slots"), "{err}");
    let more_acks_than_replicas = format!("{CLUSTER}  durability:\n    mode: replicated\n    minReplicaAcks: 2\n");
    let err = env.apply(&more_acks_than_replicas).unwrap_err();
    assert!(err.contains("minReplicaAcks cannot exceed replicasPerGroup"), "{err}");

    // A cluster becomes its objects, all owned by it.
    env.apply(CLUSTER).expect("apply the cluster");
    for (kind, name) in [
        ("statefulset", "demo-g0"),
        ("statefulset", "demo-g1"),
        ("service", "demo"),
        ("service", "demo-nodes"),
        ("configmap", "demo-config"),
        ("poddisruptionbudget", "demo-g0"),
        ("poddisruptionbudget", "demo-g1"),
        ("deployment", "demo-proxy"),
    ] {
        let obj = wait_for(Duration::from_secs(30), &format!("{kind} {name}"), || {
            env.json(&["-n", "apps", "get", kind, name, "--show-managed-fields"])
        });
        let owner = &obj["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["name"].as_str()),
            (Some("PikaCluster"), Some("demo")),
            "{kind} {name}"
        );
        assert_eq!(obj["metadata"]["managedFields"][0]["manager"], "pika-operator", "server-side applied");
    }
    let sts = env.json(&["-n", "apps", "get", "statefulset", "demo-g1"]).unwrap();
    assert_eq!(sts["spec"]["replicas"], 2);
    assert_eq!(sts["spec"]["template"]["spec"]["containers"][0]["image"], "registry.example.com/pika-node:0.1.0");
    // The real StatefulSet controller accepts it and creates the pods (they stay Pending).
    wait_for(Duration::from_secs(30), "the StatefulSet controller's pods", || {
        env.json(&["-n", "apps", "get", "pod", "demo-g1-1"])
    });
    let proxy = env.json(&["-n", "apps", "get", "deployment", "demo-proxy"]).unwrap();
    assert_eq!(proxy["spec"]["template"]["spec"]["containers"][0]["image"], "registry.example.com/pika-proxy:0.1.0");
    let cluster = wait_for(Duration::from_secs(30), "status with conditions", || {
        let c = env.json(&["-n", "apps", "get", "pikacluster", "demo"])?;
        condition(&c, "Ready").is_some().then_some(c)
    });
    assert_eq!(cluster["metadata"]["finalizers"][0], "pika.sharding.io/cleanup");
    assert_eq!(cluster["status"]["observedGeneration"], 1);
    assert_eq!(condition(&cluster, "Ready").as_deref(), Some("False"), "no pod runs here");
    assert_eq!(condition(&cluster, "Progressing").as_deref(), Some("True"));
    assert_eq!(condition(&cluster, "ReconciliationPaused").as_deref(), Some("False"));
    assert_eq!(cluster["status"]["phase"], "Creating");
    // The operator writes every status at the resourceVersion it read (a status records where a
    // cutover or failover is): the API server refuses such a write once another was made since.
    let stale = r#"{"metadata":{"resourceVersion":"1"},"status":{"phase":"Stale"}}"#;
    let refused = env.kubectl(&[
        "-n",
        "apps",
        "patch",
        "pikacluster",
        "demo",
        "--subresource=status",
        "--type",
        "merge",
        "-p",
        stale,
    ]);
    assert!(refused.as_ref().is_err_and(|e| e.contains("Conflict") || e.contains("modified")), "{refused:?}");
    // What an on-call engineer sees first: groups ready of total, phase, balance, migrations.
    let printed = env.kubectl(&["-n", "apps", "get", "pikacluster", "demo"]).unwrap();
    let header: Vec<&str> = printed.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "GROUPS", "PHASE", "READY", "BALANCED", "MIGRATIONS", "AGE"], "{printed}");
    let row: Vec<&str> = printed.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["demo", "0/2", "Creating"], "{printed}");
    let wide = env.kubectl(&["-n", "apps", "get", "pikacluster", "demo", "-o", "wide"]).unwrap();
    assert!(wide.lines().next().unwrap().contains("REPLICAS   SLOTS   LAG"), "{wide}");

    // Monitoring: asked for before the Prometheus Operator's CRDs exist, the cluster says so
    // (and runs on); once they are installed the PodMonitor appears, checked by the API server
    // against the real CRD's schema.
    let monitoring_crds = monitoring_crds();
    if monitoring_crds.is_dir() {
        patch_demo(&env, r#"{"spec":{"monitoring":{"podMonitor":true,"interval":"30s","labels":{"release":"prom"}}}}"#);
        wait_for(Duration::from_secs(30), "the Monitoring condition (no CRD)", || {
            let c = env.json(&["-n", "apps", "get", "pikacluster", "demo"])?;
            let m = c["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Monitoring")?.clone();
            (m["status"] == "False" && m["reason"] == "PrometheusOperatorMissing").then_some(())
        });
        for crd in ["servicemonitors", "podmonitors"] {
            let file = monitoring_crds.join(format!("monitoring.coreos.com_{crd}.yaml"));
            env.kubectl(&["apply", "--server-side", "-f", &file.display().to_string()]).expect("monitoring CRD");
        }
        let monitor = wait_for(Duration::from_secs(60), "the PodMonitor", || {
            env.json(&["-n", "apps", "get", "podmonitors.monitoring.coreos.com", "demo"])
        });
        assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["port"], "http");
        assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["interval"], "30s");
        assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
        assert_eq!(monitor["metadata"]["ownerReferences"][0]["name"], "demo");
        wait_for(Duration::from_secs(30), "Monitoring True", || {
            let c = env.json(&["-n", "apps", "get", "pikacluster", "demo"])?;
            (condition(&c, "Monitoring").as_deref() == Some("True")).then_some(())
        });
        // The chart's ServiceMonitor and dashboard, accepted by the API server.
        env.run(
            &helm,
            &[
                "upgrade",
                "pika-operator",
                &chart,
                "-n",
                "pika-system",
                "--set",
                "metrics.serviceMonitor.enabled=true",
                "--set",
                "dashboard.enabled=true",
            ],
            None,
        )
        .expect("helm upgrade with monitoring");
        env.kubectl(&["-n", "pika-system", "get", "servicemonitors.monitoring.coreos.com", "pika-operator"])
            .expect("the operator's ServiceMonitor");
        let dashboard = env.json(&["-n", "pika-system", "get", "configmap", "pika-operator-dashboard"]).unwrap();
        assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    } else {
        eprintln!("skipped: monitoring on a real API server: the Prometheus Operator CRDs are missing (scripts/install-deps.sh)");
    }
    let err = env.apply(&CLUSTER.replace("groups: 2", "groups: 2\n  slots: 512")).unwrap_err();
    assert!(err.contains("slots is immutable"), "{err}");

    // Pause: nothing changes until unpaused, and the condition says so.
    patch_demo(&env, r#"{"spec":{"paused":true}}"#);
    wait_for(Duration::from_secs(30), "ReconciliationPaused", || {
        let c = env.json(&["-n", "apps", "get", "pikacluster", "demo"])?;
        (condition(&c, "ReconciliationPaused").as_deref() == Some("True")).then_some(())
    });
    patch_demo(&env, r#"{"spec":{"replicasPerGroup":2}}"#);
    thread::sleep(Duration::from_secs(4));
    let sts = env.json(&["-n", "apps", "get", "statefulset", "demo-g0"]).unwrap();
    assert_eq!(sts["spec"]["replicas"], 2, "paused: the replica change waits");
    patch_demo(&env, r#"{"spec":{"paused":false}}"#);
    wait_for(Duration::from_secs(30), "the replica change after unpausing", || {
        let s = env.json(&["-n", "apps", "get", "statefulset", "demo-g0"])?;
        (s["spec"]["replicas"] == 3).then_some(())
    });
    let events = env.kubectl(&["-n", "apps", "get", "events", "--field-selector", "involvedObject.name=demo"]).unwrap();
    assert!(events.contains("Paused") && events.contains("Resumed"), "{events}");

    // Scaling out creates the new group (its slots move once its pods run).
    patch_demo(&env, r#"{"spec":{"groups":3}}"#);
    wait_for(Duration::from_secs(30), "demo-g2", || env.json(&["-n", "apps", "get", "statefulset", "demo-g2"]));
    let cluster = wait_for(Duration::from_secs(30), "observedGeneration to catch up", || {
        let c = env.json(&["-n", "apps", "get", "pikacluster", "demo"])?;
        (c["status"]["observedGeneration"] == c["metadata"]["generation"]).then_some(c)
    });
    let monitoring = u64::from(monitoring_crds.is_dir());
    assert_eq!(
        cluster["metadata"]["generation"],
        5 + monitoring,
        "create, (monitoring), pause, replicas, unpause, groups"
    );
    assert_eq!(cluster["status"]["phase"], "Creating");

    // A larger storage size. Volume claim templates are immutable, so each StatefulSet is
    // recreated with its pods orphaned (the same pods go on); the claims' requests are raised
    // where the API server allows it. Here no claim is bound (no provisioner), so it refuses,
    // and the Applied condition names the claims while the reconcile goes on.
    let pod_uid = || env.json(&["-n", "apps", "get", "pod", "demo-g0-0"]).map(|p| p["metadata"]["uid"].clone());
    let uid = pod_uid().expect("pod demo-g0-0");
    patch_demo(&env, r#"{"spec":{"storage":{"size":"20Gi"}}}"#);
    for g in 0..3 {
        wait_for(Duration::from_secs(60), &format!("demo-g{g} with 20Gi claims"), || {
            let s = env.json(&["-n", "apps", "get", "statefulset", &format!("demo-g{g}")])?;
            (s["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "20Gi").then_some(())
        });
    }
    let cluster = wait_for(Duration::from_secs(30), "Applied False, naming the claims", || {
        let c = env.json(&["-n", "apps", "get", "pikacluster", "demo"])?;
        let applied = c["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Applied")?.clone();
        let named = applied["message"].as_str()?.contains("data-demo-g0-0");
        (applied["status"] == "False" && named && c["status"]["observedGeneration"] == c["metadata"]["generation"])
            .then_some(c)
    });
    eprintln!("Applied: {}", cluster["status"]["conditions"]);
    assert_eq!(pod_uid(), Some(uid), "the pods outlive their StatefulSet's recreation");
    let sts = env.json(&["-n", "apps", "get", "statefulset", "demo-g0"]).unwrap();
    assert_eq!(sts["metadata"]["ownerReferences"][0]["name"], "demo");
    let events = env.kubectl(&["-n", "apps", "get", "events", "--field-selector", "involvedObject.name=demo"]).unwrap();
    assert!(events.contains("StatefulSetRecreated") && events.contains("ApplyFailed"), "{events}");

    // Metrics of the leader.
    let metrics = http_get(http_a, "/metrics");
    assert!(metrics.contains("pika_operator_leader 1"), "{metrics}");
    assert!(metrics.contains("pika_operator_reconciles_total{controller=\"cluster\"}"), "{metrics}");

    // A standby waits; when the leader stops (SIGTERM: it releases the Lease), it takes over.
    let http_b = free_port();
    env.operator("op-b", &token, http_b);
    thread::sleep(Duration::from_secs(3));
    let l = env.json(&["-n", "pika-system", "get", "lease", "pika-operator-leader"]).unwrap();
    assert_eq!(l["spec"]["holderIdentity"], "op-a", "the standby must not take a held Lease");
    assert!(http_get(http_b, "/metrics").contains("pika_operator_leader 0"));
    let mut a = env.operators.remove(0);
    let _ = Command::new("kill").args(["-TERM", &a.id().to_string()]).status();
    let status = a.wait().unwrap();
    assert!(status.success(), "op-a exits cleanly on SIGTERM: {status:?}\n{}", env.log("op-a"));
    let started = Instant::now();
    wait_for(Duration::from_secs(15), "op-b to take over", || {
        let l = env.json(&["-n", "pika-system", "get", "lease", "pika-operator-leader"])?;
        (l["spec"]["holderIdentity"] == "op-b").then_some(())
    });
    assert!(started.elapsed() < Duration::from_secs(6), "a released Lease is taken at once, not after it expires");

    // A leader stopped past its Lease (SIGSTOP, as a long pause or a frozen VM would) finds
    // the Lease taken when it runs again: it stops acting at once and exits with an error.
    let http_c = free_port();
    env.operator("op-c", &token, http_c);
    let b = env.operators[0].id().to_string();
    let _ = Command::new("kill").args(["-STOP", &b]).status();
    wait_for(Duration::from_secs(20), "op-c to take the Lease from the stopped op-b", || {
        let l = env.json(&["-n", "pika-system", "get", "lease", "pika-operator-leader"])?;
        (l["spec"]["holderIdentity"] == "op-c").then_some(())
    });
    let _ = Command::new("kill").args(["-CONT", &b]).status();
    let mut b = env.operators.remove(0);
    let exited = wait_for(Duration::from_secs(15), "op-b to exit", || b.try_wait().ok().flatten());
    assert!(!exited.success(), "op-b exits with an error after losing the Lease\n{}", env.log("op-b"));
    assert!(env.log("op-b").contains("lost the leader Lease"), "{}", env.log("op-b"));

    // The new leader reconciles: deleting the cluster runs the finalizer, and the garbage
    // collector removes what it owned.
    env.kubectl(&["-n", "apps", "delete", "pikacluster", "demo", "--wait=false"]).unwrap();
    wait_for(Duration::from_secs(30), "the cluster to go", || {
        env.kubectl(&["-n", "apps", "get", "pikacluster", "demo"]).is_err().then_some(())
    });
    wait_for(Duration::from_secs(60), "owned objects to be collected", || {
        let left = env.json(&["-n", "apps", "get", "statefulsets,deployments,services,poddisruptionbudgets"])?;
        left["items"].as_array()?.is_empty().then_some(())
    });
    assert!(env.log("op-c").contains("leader: reconciling"), "{}", env.log("op-c"));
}
