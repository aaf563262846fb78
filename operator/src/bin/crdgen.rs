//! Prints every CRD of the operator as YAML documents (what `crds/` holds):
//! `cargo run -p pika-operator --bin crdgen > crds/crds.yaml`.

fn main() {
    print!("{}", pika_operator::crd::crds_yaml());
}
