//! The committed CRD YAML is what the code generates, the examples are valid resources, and the
//! schema carries the validation users rely on.

mod support;

use pika_operator::crd::{crds_yaml, PikaCluster, SlotMigration};
use support::repo;

#[test]
fn committed_crds_match_the_code() {
    let committed = std::fs::read_to_string(repo("crds/crds.yaml")).expect("crds/crds.yaml exists");
    assert!(
        committed == crds_yaml(),
        "crds/crds.yaml is stale: run `cargo run -p pika-operator --bin crdgen > crds/crds.yaml`"
    );
}

#[test]
fn the_schema_validates_what_users_type() {
    let yaml = crds_yaml();
    let docs: Vec<serde_yaml::Value> =
        yaml.split("---\n").filter(|d| !d.trim().is_empty()).map(|d| serde_yaml::from_str(d).unwrap()).collect();
    assert_eq!(docs.len(), 2);
    let cluster = &docs[0];
    assert_eq!(cluster["spec"]["names"]["kind"], "PikaCluster");
    let version = &cluster["spec"]["versions"][0];
    assert!(version["subresources"]["status"].is_mapping(), "status subresource");
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["properties"]["groups"]["minimum"].as_f64(), Some(1.0), "groups >= 1");
    assert_eq!(
        spec["properties"]["slots"]["x-kubernetes-validations"][0]["rule"], "self == oldSelf",
        "slots immutable"
    );
    assert_eq!(spec["properties"]["slots"]["default"].as_u64(), Some(1024));
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(columns.contains(&"Groups") && columns.contains(&"Ready"), "{columns:?}");
    let migration = &docs[1]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert!(migration["properties"]["slots"]["pattern"].is_string(), "slot syntax checked by the schema");
}

#[test]
fn examples_are_valid_resources() {
    for name in ["cluster.yaml", "cluster-production.yaml"] {
        let text = std::fs::read_to_string(repo(&format!("examples/{name}"))).unwrap();
        let doc = text.split("---\n").find(|d| d.contains("kind: PikaCluster")).unwrap();
        let c: PikaCluster = serde_yaml::from_str(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(c.spec.groups >= 1);
        assert_eq!(c.spec.slots, 1024);
    }
    let text = std::fs::read_to_string(repo("examples/migration.yaml")).unwrap();
    let m: SlotMigration = serde_yaml::from_str(&text).unwrap();
    assert_eq!(common::slotset::parse_slots(&m.spec.slots).unwrap().len(), 101);
}
