//! The controller's reads from the cluster: sources resolved from real Secrets and ConfigMaps,
//! the API credentials and the CA Secret, against the test cluster's API server.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use test_support::certs::{CertSpec, base64_lines};
use test_support::{TestNamespace, test_logs};
use webhook_ca_operator::bundle::{self, Policy, SourceInput};
use webhook_ca_operator::controller::credentials::{SecretCredentials, tls_trust};
use webhook_ca_operator::controller::sources::{ResolvedSource, SourceError, resolve_sources};
use webhook_ca_operator::crd::{ApiCredentials, ApiTls, Source};
use webhook_ca_operator::onprem::{CredentialSource, Credentials, TlsTrust};
use webhook_ca_operator::reason::ConditionReason;

fn ca(name: &str) -> String {
    test_support::certs::ca_pem(name)
}

fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..ObjectMeta::default()
    }
}

/// Creates Secret `name`; its credentials and private keys are recorded for the secret scan.
async fn create_secret(ns: &TestNamespace, name: &str, type_: &str, data: &[(&str, &[u8])]) {
    for (key, value) in data {
        test_logs::record_secret_entry(name, key, &String::from_utf8_lossy(value));
    }
    let secret = Secret {
        metadata: meta(name, &[]),
        type_: Some(type_.to_owned()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        ),
        ..Secret::default()
    };
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("create secret {name}: {e}"));
}

async fn create_config_map(
    ns: &TestNamespace,
    name: &str,
    labels: &[(&str, &str)],
    data: &[(&str, &str)],
) {
    let map = ConfigMap {
        metadata: meta(name, labels),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..ConfigMap::default()
    };
    ns.api::<ConfigMap>()
        .create(&PostParams::default(), &map)
        .await
        .unwrap_or_else(|e| panic!("create configmap {name}: {e}"));
}

fn sources(value: serde_json::Value) -> Vec<Source> {
    serde_json::from_value(value).expect("literal sources")
}

async fn resolve(
    ns: &TestNamespace,
    value: serde_json::Value,
) -> Result<Vec<ResolvedSource>, SourceError> {
    resolve_sources(&ns.client(), ns.name(), &sources(value)).await
}

fn named(resolved: &[ResolvedSource]) -> Vec<(&str, &str)> {
    resolved
        .iter()
        .map(|r| (r.name.as_str(), r.pem.as_str()))
        .collect()
}

#[tokio::test]
async fn a_secret_key_and_inline_pem_resolve_into_a_buildable_bundle() {
    let ns = TestNamespace::new("src-secret-key").await;
    let internal = ca("internal");
    let partner = ca("partner");
    create_secret(
        &ns,
        "internal-ca",
        "Opaque",
        &[("ca.crt", internal.as_bytes()), ("other", b"unrelated")],
    )
    .await;

    let resolved = resolve(
        &ns,
        json!([
            { "secret": { "name": "internal-ca", "key": "ca.crt" } },
            { "inline": partner },
        ]),
    )
    .await
    .expect("sources resolve");
    assert_eq!(
        named(&resolved),
        [
            ("secret internal-ca key ca.crt", internal.as_str()),
            ("inline #2", partner.as_str()),
        ]
    );

    let inputs: Vec<SourceInput> = resolved
        .iter()
        .map(|r| SourceInput {
            source: &r.name,
            pem: &r.pem,
        })
        .collect();
    let built = bundle::build(&inputs, &Policy::defaults_at(jiff::Timestamp::now()))
        .expect("the resolved PEM builds a bundle");
    assert_eq!(built.certificates.len(), 2);
}

#[tokio::test]
async fn a_config_map_without_key_yields_its_pem_keys_in_key_order() {
    let ns = TestNamespace::new("src-cm-all").await;
    let (a, b, c) = (ca("a"), ca("b"), ca("c"));
    let with_prose = format!("Partner root, renewed yearly.\n{c}");
    create_config_map(
        &ns,
        "partner-cas",
        &[],
        &[
            ("z.pem", &a),
            ("README", "certificates of our partners"),
            ("b.crt", &b),
            ("m.txt", &with_prose),
        ],
    )
    .await;

    let resolved = resolve(&ns, json!([{ "configMap": { "name": "partner-cas" } }]))
        .await
        .expect("sources resolve");
    assert_eq!(
        named(&resolved),
        [
            ("configMap partner-cas key b.crt", b.as_str()),
            ("configMap partner-cas key m.txt", with_prose.as_str()),
            ("configMap partner-cas key z.pem", a.as_str()),
        ]
    );
}

#[tokio::test]
async fn a_selector_reads_matching_config_maps_in_name_order() {
    let ns = TestNamespace::new("src-selector").await;
    let (zeta, alpha, other, retired) = (ca("zeta"), ca("alpha"), ca("other"), ca("retired"));
    let bundle_label = ("webhookca.io/bundle", "wa");
    // Created out of name order, so the result's order is not creation order.
    create_config_map(&ns, "zeta", &[bundle_label], &[("ca.crt", &zeta)]).await;
    create_config_map(&ns, "alpha", &[bundle_label], &[("ca.crt", &alpha)]).await;
    create_config_map(
        &ns,
        "beta",
        &[("webhookca.io/bundle", "other")],
        &[("ca.crt", &other)],
    )
    .await;
    create_config_map(
        &ns,
        "gamma",
        &[bundle_label, ("retired", "2024")],
        &[("ca.crt", &retired)],
    )
    .await;

    let resolved = resolve(
        &ns,
        json!([{ "configMap": {
            "selector": {
                "matchLabels": { "webhookca.io/bundle": "wa" },
                "matchExpressions": [{ "key": "retired", "operator": "DoesNotExist" }],
            },
            "key": "ca.crt",
        } }]),
    )
    .await
    .expect("sources resolve");
    assert_eq!(
        named(&resolved),
        [
            ("configMap alpha key ca.crt", alpha.as_str()),
            ("configMap zeta key ca.crt", zeta.as_str()),
        ]
    );
}

#[tokio::test]
async fn missing_objects_fail_unless_optional() {
    let ns = TestNamespace::new("src-missing").await;
    let inline = ca("inline");

    let err = resolve(
        &ns,
        json!([{ "secret": { "name": "absent", "key": "ca.crt" } }]),
    )
    .await
    .expect_err("a missing Secret fails");
    assert_eq!(err.reason(), "SourceNotFound");
    assert!(err.to_string().contains("\"absent\""), "{err}");

    let err = resolve(
        &ns,
        json!([{ "configMap": { "selector": { "matchLabels": { "nothing": "here" } } } }]),
    )
    .await
    .expect_err("a selector without match fails");
    assert_eq!(err.reason(), "SourceNotFound");
    assert!(err.to_string().contains("nothing=here"), "{err}");

    let resolved = resolve(
        &ns,
        json!([
            { "secret": { "name": "absent", "optional": true } },
            { "configMap": { "selector": { "matchLabels": { "nothing": "here" } }, "optional": true } },
            { "inline": inline },
        ]),
    )
    .await
    .expect("optional sources are skipped");
    assert_eq!(named(&resolved), [("inline #3", inline.as_str())]);
}

#[tokio::test]
async fn a_missing_key_fails_unless_optional() {
    let ns = TestNamespace::new("src-missing-key").await;
    let cert = ca("present");
    create_secret(&ns, "ca", "Opaque", &[("ca.crt", cert.as_bytes())]).await;

    let err = resolve(
        &ns,
        json!([{ "secret": { "name": "ca", "key": "root.pem" } }]),
    )
    .await
    .expect_err("a missing key fails");
    assert_eq!(err.reason(), "SourceKeyNotFound");
    assert_eq!(err.to_string(), r#"Secret "ca" has no key "root.pem""#);

    let resolved = resolve(
        &ns,
        json!([
            { "secret": { "name": "ca", "key": "root.pem", "optional": true } },
            { "secret": { "name": "ca", "key": "ca.crt" } },
        ]),
    )
    .await
    .expect("an optional missing key is skipped");
    assert_eq!(named(&resolved), [("secret ca key ca.crt", cert.as_str())]);
}

#[tokio::test]
async fn all_keys_of_a_tls_secret_are_refused_without_showing_the_key() {
    let ns = TestNamespace::new("src-tls").await;
    let root = ca("root");
    let leaf = CertSpec::leaf("webapp").self_signed();
    create_secret(
        &ns,
        "webapp-tls",
        "kubernetes.io/tls",
        &[
            ("ca.crt", root.as_bytes()),
            ("tls.crt", leaf.pem.as_bytes()),
            ("tls.key", leaf.key_pem.as_bytes()),
        ],
    )
    .await;

    let err = resolve(&ns, json!([{ "secret": { "name": "webapp-tls" } }]))
        .await
        .expect_err("all keys of a TLS Secret are refused");
    assert_eq!(err.reason(), "SourceInvalid");
    let shown = format!("{err} {err:?}");
    assert!(
        shown.contains("key: ca.crt") && shown.contains("key: tls.crt"),
        "{shown}"
    );
    assert_no_key_material(&shown, &leaf.key_pem);

    let err = resolve(
        &ns,
        json!([{ "secret": { "name": "webapp-tls", "key": "tls.key" } }]),
    )
    .await
    .expect_err("the private key is never read");
    assert_eq!(err.reason(), "SourceInvalid");
    assert_no_key_material(&format!("{err} {err:?}"), &leaf.key_pem);

    let resolved = resolve(
        &ns,
        json!([{ "secret": { "name": "webapp-tls", "key": "ca.crt" } }]),
    )
    .await
    .expect("a named key of a TLS Secret is read");
    assert_eq!(
        named(&resolved),
        [("secret webapp-tls key ca.crt", root.as_str())]
    );
}

fn assert_no_key_material(shown: &str, key_pem: &str) {
    let body = base64_lines(key_pem);
    assert!(!body.is_empty(), "the key PEM has a body");
    for line in body {
        assert!(
            !shown.contains(line),
            "the error shows key material: {shown}"
        );
    }
}

#[tokio::test]
async fn a_value_that_is_not_utf8_is_refused_by_secret_and_key() {
    let ns = TestNamespace::new("src-utf8").await;
    let mut latin1 = ca("latin").into_bytes();
    latin1.extend_from_slice(b"Zertifikat f\xfcr Partner\n");
    create_secret(&ns, "latin1", "Opaque", &[("ca.pem", &latin1)]).await;

    for source in [
        json!([{ "secret": { "name": "latin1", "key": "ca.pem" } }]),
        json!([{ "secret": { "name": "latin1" } }]),
    ] {
        let err = resolve(&ns, source)
            .await
            .expect_err("non-UTF-8 is refused");
        assert_eq!(err.reason(), "SourceInvalid");
        assert_eq!(
            err.to_string(),
            r#"Secret "latin1" key "ca.pem" is not UTF-8 text"#
        );
    }
}

/// A client acting as a fresh ServiceAccount that RBAC grants nothing.
async fn unprivileged_client(ns: &TestNamespace) -> kube::Client {
    let accounts = ns.api::<ServiceAccount>();
    let account = ServiceAccount {
        metadata: meta("nobody", &[]),
        ..ServiceAccount::default()
    };
    accounts
        .create(&PostParams::default(), &account)
        .await
        .expect("create service account");
    let token = test_support::token_for(&ns.client(), ns.name(), "nobody").await;
    ns.cluster().client_with_token(&token)
}

#[tokio::test]
async fn a_refused_read_says_the_operator_may_not_read_it() {
    let ns = TestNamespace::new("src-forbidden").await;
    create_secret(&ns, "ca", "Opaque", &[("ca.crt", ca("x").as_bytes())]).await;
    let client = unprivileged_client(&ns).await;

    let by_name =
        sources(json!([{ "secret": { "name": "ca", "key": "ca.crt", "optional": true } }]));
    let err = resolve_sources(&client, ns.name(), &by_name)
        .await
        .expect_err("an unprivileged read fails, optional or not");
    assert_eq!(err.reason(), "SourceForbidden");
    let msg = err.to_string();
    assert!(
        msg.starts_with("the operator may not read Secret \"ca\""),
        "{msg}"
    );
    assert!(msg.contains("get and list on secrets"), "{msg}");

    let by_selector =
        sources(json!([{ "configMap": { "selector": { "matchLabels": { "a": "b" } } } }]));
    let err = resolve_sources(&client, ns.name(), &by_selector)
        .await
        .expect_err("an unprivileged list fails");
    assert_eq!(err.reason(), "SourceForbidden");
    assert!(err.to_string().contains("configmaps"), "{err}");
}

fn credentials_spec(value: serde_json::Value) -> ApiCredentials {
    serde_json::from_value(value).expect("literal credentials")
}

async fn login_of(source: &SecretCredentials) -> (String, String) {
    match source.credentials().await.expect("credentials") {
        Credentials::Login { username, password } => (username, password.expose().to_owned()),
        Credentials::Token(_) => panic!("expected a login"),
    }
}

#[tokio::test]
async fn login_credentials_follow_a_rotated_secret() {
    let ns = TestNamespace::new("src-login").await;
    create_secret(
        &ns,
        "wa-admin",
        "Opaque",
        &[("user", b"admin"), ("pass", b"Secret-One-1!\n")],
    )
    .await;
    let source = SecretCredentials::new(
        ns.client(),
        ns.name().to_owned(),
        credentials_spec(json!({ "loginSecret": {
            "name": "wa-admin", "usernameKey": "user", "passwordKey": "pass",
        } })),
    );
    assert_eq!(
        login_of(&source).await,
        ("admin".to_owned(), "Secret-One-1!".to_owned())
    );

    let secrets = ns.api::<Secret>();
    test_logs::record_secret_entry("wa-admin", "pass", "Secret-Two-2!");
    secrets
        .patch(
            "wa-admin",
            &PatchParams::default(),
            &Patch::Merge(json!({ "stringData": { "pass": "Secret-Two-2!" } })),
        )
        .await
        .expect("rotate the password");
    assert_eq!(
        login_of(&source).await,
        ("admin".to_owned(), "Secret-Two-2!".to_owned())
    );

    let mut secret = secrets.get("wa-admin").await.expect("get the Secret");
    secret.data.get_or_insert_default().remove("user");
    secrets
        .replace("wa-admin", &PostParams::default(), &secret)
        .await
        .expect("remove the username");
    let msg = source
        .credentials()
        .await
        .expect_err("a missing key fails")
        .to_string();
    assert_eq!(msg, r#"Secret "wa-admin" has no key "user""#);
}

#[tokio::test]
async fn token_credentials_use_the_token_key_by_default() {
    let ns = TestNamespace::new("src-token").await;
    create_secret(
        &ns,
        "wa-token",
        "Opaque",
        &[
            ("token", b"eyJ.default.sig\n"),
            ("bearer", b"eyJ.custom.sig"),
        ],
    )
    .await;
    for (spec, want) in [
        (
            json!({ "tokenSecret": { "name": "wa-token" } }),
            "eyJ.default.sig",
        ),
        (
            json!({ "tokenSecret": { "name": "wa-token", "key": "bearer" } }),
            "eyJ.custom.sig",
        ),
    ] {
        let source =
            SecretCredentials::new(ns.client(), ns.name().to_owned(), credentials_spec(spec));
        match source.credentials().await.expect("credentials") {
            Credentials::Token(token) => assert_eq!(token.expose(), want),
            Credentials::Login { .. } => panic!("expected a token"),
        }
    }

    let absent = SecretCredentials::new(
        ns.client(),
        ns.name().to_owned(),
        credentials_spec(json!({ "tokenSecret": { "name": "gone" } })),
    );
    let msg = absent
        .credentials()
        .await
        .expect_err("missing Secret")
        .to_string();
    assert!(msg.contains("Secret \"gone\" not found"), "{msg}");
}

#[tokio::test]
async fn tls_trust_reads_the_ca_secret() {
    let ns = TestNamespace::new("src-tls-trust").await;
    let webapp_ca = ca("webapp-ca");
    let other = ca("other-ca");
    create_secret(
        &ns,
        "webapp-ca",
        "Opaque",
        &[
            ("ca.crt", webapp_ca.as_bytes()),
            ("alt.pem", other.as_bytes()),
            ("empty", b""),
        ],
    )
    .await;
    let client = ns.client();
    let trust = |value: serde_json::Value| {
        let tls: ApiTls = serde_json::from_value(value).expect("literal tls");
        let client = client.clone();
        let namespace = ns.name().to_owned();
        async move { tls_trust(&client, &namespace, &tls).await }
    };

    let got = trust(json!({ "caSecret": { "name": "webapp-ca" } })).await;
    assert!(
        matches!(&got, Ok(TlsTrust::CaPem(pem)) if *pem == webapp_ca),
        "{got:?}"
    );
    let got = trust(json!({ "caSecret": { "name": "webapp-ca", "key": "alt.pem" } })).await;
    assert!(
        matches!(&got, Ok(TlsTrust::CaPem(pem)) if *pem == other),
        "{got:?}"
    );
    let got = trust(json!({ "insecureSkipVerify": true })).await;
    assert!(matches!(got, Ok(TlsTrust::InsecureSkipVerify)), "{got:?}");
    let got = trust(json!({})).await;
    assert!(matches!(got, Ok(TlsTrust::SystemRoots)), "{got:?}");

    let err = trust(json!({ "caSecret": { "name": "webapp-ca", "key": "empty" } }))
        .await
        .expect_err("a key without PEM");
    assert_eq!(err.reason(), "SourceInvalid");
    let err = trust(json!({ "caSecret": { "name": "missing" } }))
        .await
        .expect_err("a missing CA Secret");
    assert_eq!(err.reason(), "SourceNotFound");
}
