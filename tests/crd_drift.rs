//! The committed CRD must be exactly what the Rust types generate, so that `kubectl apply -f crds/`
//! and Helm install the schema the operator was built with.

use webhook_ca_operator::crd::WebhookCaCertificate;

const COMMITTED: &str = include_str!("../crds/webhookcacertificates.yaml");

#[test]
fn committed_crd_matches_the_rust_types() {
    let generated = WebhookCaCertificate::crd_yaml().expect("CRD serializes");
    assert!(
        generated == COMMITTED,
        "crds/webhookcacertificates.yaml is stale: regenerate it with \
         `cargo run -- crd > crds/webhookcacertificates.yaml`"
    );
}
