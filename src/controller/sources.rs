//! Resolving the spec's sources (Secrets, ConfigMaps, inline PEM) into named PEM texts for the
//! bundle engine, and the pure test of which resources an object change concerns.
//!
//! Only objects in the resource's own namespace are read. Errors name objects and keys, never
//! their data.

pub mod selector;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::ListParams;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::crd::{ObjectSource, Source, WebhookCaCertificate};
use crate::reason::ConditionReason;
pub use selector::SelectorError;

/// What every PEM block begins with; keys without it are not read when no key is named.
const PEM_MARKER: &[u8] = b"-----BEGIN";
/// The Secret type whose keys include the private key.
const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
/// The key of a TLS Secret that holds the private key.
const TLS_PRIVATE_KEY: &str = "tls.key";

/// One PEM text and where it came from. `name` is shown in status, Events and errors, so it
/// identifies the origin ("secret internal-ca key ca.crt", "inline #2") and never holds data.
#[derive(Clone, PartialEq, Eq)]
pub struct ResolvedSource {
    pub name: String,
    pub pem: String,
}

// Written by hand: the text is not checked yet and may hold a private key the bundle engine
// refuses later, so Debug shows its size only.
impl fmt::Debug for ResolvedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedSource")
            .field("name", &self.name)
            .field("pem", &format_args!("{} bytes", self.pem.len()))
            .finish()
    }
}

/// The two kinds of objects sources and credentials are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Secret,
    ConfigMap,
}

impl ObjectKind {
    /// The spelling of the spec's field, used in source names.
    fn field(self) -> &'static str {
        match self {
            ObjectKind::Secret => "secret",
            ObjectKind::ConfigMap => "configMap",
        }
    }

    /// The resource name RBAC rules use.
    fn plural(self) -> &'static str {
        match self {
            ObjectKind::Secret => "secrets",
            ObjectKind::ConfigMap => "configmaps",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Secret => "Secret",
            ObjectKind::ConfigMap => "ConfigMap",
        })
    }
}

/// Why the sources could not be read; [`ConditionReason`] gives the condition reason.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{kind} {name:?} not found in namespace {namespace}")]
    NotFound {
        kind: ObjectKind,
        namespace: String,
        name: String,
    },
    #[error("no {kind} in namespace {namespace} matches the selector {selector:?}")]
    NothingSelected {
        kind: ObjectKind,
        namespace: String,
        selector: String,
    },
    #[error("{kind} {name:?} has no key {key:?}")]
    KeyNotFound {
        kind: ObjectKind,
        name: String,
        key: String,
    },
    #[error("{kind} {name:?} has no key holding PEM (text with -----BEGIN)")]
    NoPem { kind: ObjectKind, name: String },
    #[error("{kind} {name:?} key {key:?} holds no PEM (text with -----BEGIN)")]
    NotPem {
        kind: ObjectKind,
        name: String,
        key: String,
    },
    /// A key the resource names holds no certificate: emptied, or overwritten with prose in a
    /// botched rotation. Building without it would upload a partial bundle.
    #[error(
        "{kind} {name:?} key {key:?} holds no certificate (no -----BEGIN CERTIFICATE----- block); \
         a key named in spec.sources must hold one, or the source must say `optional: true`"
    )]
    NoCertificate {
        kind: ObjectKind,
        name: String,
        key: String,
    },
    #[error("source #{position} (inline) holds no certificate")]
    InlineWithoutCertificate { position: usize },
    #[error("{kind} {name:?} key {key:?} is not UTF-8 text")]
    NotUtf8 {
        kind: ObjectKind,
        name: String,
        key: String,
    },
    #[error(
        "Secret {name:?} holds a private key (type kubernetes.io/tls or a tls.key key), so its \
         keys are never read all at once: name `key: ca.crt` or `key: tls.crt`"
    )]
    AllKeysOfTlsSecret { name: String },
    #[error(
        "Secret {name:?} key \"tls.key\" is a private key and is never read: name `key: ca.crt` \
         or `key: tls.crt`"
    )]
    PrivateKeyNamed { name: String },
    #[error("source #{position}: {problem}")]
    InvalidSpec {
        position: usize,
        problem: &'static str,
    },
    #[error("spec.api.credentials must set exactly one of loginSecret or tokenSecret")]
    InvalidCredentialsSpec,
    #[error("source #{position}: invalid selector: {error}")]
    InvalidSelector {
        position: usize,
        error: SelectorError,
    },
    #[error(
        "the operator may not read {what} in namespace {namespace}: {message}; grant it get and \
         list on {plural} in that namespace"
    )]
    Forbidden {
        what: String,
        namespace: String,
        plural: &'static str,
        message: String,
    },
    #[error("reading {what} in namespace {namespace} failed: {message}")]
    Unavailable {
        what: String,
        namespace: String,
        message: String,
        // Boxed: kube's error is large and every Result here would carry its size.
        #[source]
        source: Box<kube::Error>,
    },
}

impl ConditionReason for SourceError {
    fn reason(&self) -> &'static str {
        match self {
            SourceError::NotFound { .. } | SourceError::NothingSelected { .. } => "SourceNotFound",
            SourceError::KeyNotFound { .. } | SourceError::NoPem { .. } => "SourceKeyNotFound",
            SourceError::NotUtf8 { .. }
            | SourceError::NotPem { .. }
            | SourceError::NoCertificate { .. }
            | SourceError::InlineWithoutCertificate { .. }
            | SourceError::AllKeysOfTlsSecret { .. }
            | SourceError::PrivateKeyNamed { .. }
            | SourceError::InvalidSpec { .. }
            | SourceError::InvalidCredentialsSpec
            | SourceError::InvalidSelector { .. } => "SourceInvalid",
            SourceError::Forbidden { .. } => "SourceForbidden",
            SourceError::Unavailable { .. } => "SourceUnavailable",
        }
    }

    /// A missing or invalid source is cured by an edit of the resource or of a Secret or
    /// ConfigMap, which the watches see. An unreadable one may pass by itself, and RBAC
    /// grants are not watched: those are retried.
    fn awaits_change(&self) -> bool {
        !matches!(
            self,
            SourceError::Unavailable { .. } | SourceError::Forbidden { .. }
        )
    }
}

impl SourceError {
    /// Classifies a failed read of `what` (e.g. `Secret "ca"`). A missing object never gets
    /// here: `get_opt` answers it with `None`.
    fn from_kube(kind: ObjectKind, namespace: &str, what: String, error: kube::Error) -> Self {
        match &error {
            kube::Error::Api(status) if status.is_forbidden() => SourceError::Forbidden {
                what,
                namespace: namespace.to_owned(),
                plural: kind.plural(),
                message: status.message.clone(),
            },
            kube::Error::Api(status) => SourceError::Unavailable {
                what,
                namespace: namespace.to_owned(),
                message: format!("{} ({})", status.message, status.code),
                source: Box::new(error),
            },
            other => SourceError::Unavailable {
                what,
                namespace: namespace.to_owned(),
                message: other.to_string(),
                source: Box::new(error),
            },
        }
    }
}

/// Reads every source in order. Selector matches are read in name order; without `key`, every
/// key whose value contains `-----BEGIN` is read, in key order; `optional` skips a missing
/// object, a missing key, a named key without a certificate and a selector that matches nothing.
///
/// A named key (and an inline text) must hold at least one certificate: only the all-keys form
/// may pass over keys without one. Otherwise an emptied key would quietly shrink the bundle.
pub async fn resolve_sources(
    client: &Client,
    namespace: &str,
    sources: &[Source],
) -> Result<Vec<ResolvedSource>, SourceError> {
    let mut resolved = Vec::new();
    for (index, source) in sources.iter().enumerate() {
        // 1-based, as people count list entries.
        let position = index + 1;
        match (&source.secret, &source.config_map, &source.inline) {
            (Some(os), None, None) => {
                resolved.extend(read::<Secret>(client, namespace, position, os).await?);
            }
            (None, Some(os), None) => {
                resolved.extend(read::<ConfigMap>(client, namespace, position, os).await?);
            }
            (None, None, Some(pem)) => {
                if !holds_certificate(pem) {
                    return Err(SourceError::InlineWithoutCertificate { position });
                }
                resolved.push(ResolvedSource {
                    name: format!("inline #{position}"),
                    pem: pem.clone(),
                });
            }
            _ => {
                return Err(SourceError::InvalidSpec {
                    position,
                    problem: "exactly one of secret, configMap or inline must be set",
                });
            }
        }
    }
    Ok(resolved)
}

/// A Secret by name, for the operator's own credentials and CA: missing is an error.
pub(crate) async fn read_secret(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<DataObject, SourceError> {
    get::<Secret>(client, namespace, name)
        .await?
        .ok_or_else(|| not_found(ObjectKind::Secret, namespace, name))
}

/// One object by name, `None` when it does not exist.
async fn get<K: DataResource>(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<DataObject>, SourceError> {
    let kind = K::KIND;
    Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map(|found| found.map(Into::into))
        .map_err(|e| SourceError::from_kube(kind, namespace, format!("{kind} {name:?}"), e))
}

fn not_found(kind: ObjectKind, namespace: &str, name: &str) -> SourceError {
    SourceError::NotFound {
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

/// The two resource types sources are read from, with what reading them needs.
trait DataResource:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + fmt::Debug
    + Into<DataObject>
{
    const KIND: ObjectKind;
}

impl DataResource for Secret {
    const KIND: ObjectKind = ObjectKind::Secret;
}

impl DataResource for ConfigMap {
    const KIND: ObjectKind = ObjectKind::ConfigMap;
}

/// The PEM texts of one Secret or ConfigMap source.
async fn read<K: DataResource>(
    client: &Client,
    namespace: &str,
    position: usize,
    source: &ObjectSource,
) -> Result<Vec<ResolvedSource>, SourceError> {
    let mut resolved = Vec::new();
    for object in fetch::<K>(client, namespace, position, source).await? {
        resolved.extend(object.extract(source)?);
    }
    Ok(resolved)
}

/// The objects one source names: the named one, or every match of the selector in name order.
async fn fetch<K: DataResource>(
    client: &Client,
    namespace: &str,
    position: usize,
    source: &ObjectSource,
) -> Result<Vec<DataObject>, SourceError> {
    let kind = K::KIND;
    match (&source.name, &source.selector) {
        (Some(name), None) => match get::<K>(client, namespace, name).await? {
            Some(object) => Ok(vec![object]),
            None if source.optional => Ok(Vec::new()),
            None => Err(not_found(kind, namespace, name)),
        },
        (None, Some(selector)) => {
            let api: Api<K> = Api::namespaced(client.clone(), namespace);
            let query = selector::to_query(selector)
                .map_err(|error| SourceError::InvalidSelector { position, error })?;
            let listed = api
                .list(&ListParams::default().labels(&query))
                .await
                .map_err(|e| {
                    let what = format!("{kind}s matching {query:?}");
                    SourceError::from_kube(kind, namespace, what, e)
                })?;
            if listed.items.is_empty() && !source.optional {
                return Err(SourceError::NothingSelected {
                    kind,
                    namespace: namespace.to_owned(),
                    selector: query,
                });
            }
            let mut objects: Vec<DataObject> = listed.items.into_iter().map(Into::into).collect();
            objects.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(objects)
        }
        _ => Err(SourceError::InvalidSpec {
            position,
            problem: "exactly one of name or selector must be set",
        }),
    }
}

/// A Secret or ConfigMap reduced to what reading it needs.
#[derive(Debug)]
pub(crate) struct DataObject {
    kind: ObjectKind,
    name: String,
    /// A `kubernetes.io/tls` Secret or one with a `tls.key` key.
    holds_private_key: bool,
    data: BTreeMap<String, Vec<u8>>,
}

impl From<Secret> for DataObject {
    fn from(secret: Secret) -> Self {
        let data: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        DataObject {
            kind: ObjectKind::Secret,
            name: secret.metadata.name.unwrap_or_default(),
            holds_private_key: secret.type_.as_deref() == Some(TLS_SECRET_TYPE)
                || data.contains_key(TLS_PRIVATE_KEY),
            data,
        }
    }
}

impl From<ConfigMap> for DataObject {
    fn from(map: ConfigMap) -> Self {
        // The API server keeps data and binaryData keys disjoint, so merging loses nothing.
        let text = map
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()));
        let binary = map
            .binary_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0));
        DataObject {
            kind: ObjectKind::ConfigMap,
            name: map.metadata.name.unwrap_or_default(),
            holds_private_key: false,
            data: text.chain(binary).collect(),
        }
    }
}

impl DataObject {
    /// The value of `key`, which must hold PEM.
    pub(crate) fn require_pem(&self, key: &str) -> Result<String, SourceError> {
        let text = self.require_text(key)?;
        if !holds_pem(text.as_bytes()) {
            return Err(SourceError::NotPem {
                kind: self.kind,
                name: self.name.clone(),
                key: key.to_owned(),
            });
        }
        Ok(text)
    }

    fn source_name(&self, key: &str) -> String {
        format!("{}{key}", source_prefix(self.kind, &self.name))
    }

    /// The value of `key` as text, `None` when the key is absent.
    fn text(&self, key: &str) -> Result<Option<String>, SourceError> {
        let Some(bytes) = self.data.get(key) else {
            return Ok(None);
        };
        String::from_utf8(bytes.clone())
            .map(Some)
            .map_err(|_| SourceError::NotUtf8 {
                kind: self.kind,
                name: self.name.clone(),
                key: key.to_owned(),
            })
    }

    /// The value of `key` as text; an absent key is an error.
    pub(crate) fn require_text(&self, key: &str) -> Result<String, SourceError> {
        self.text(key)?.ok_or_else(|| SourceError::KeyNotFound {
            kind: self.kind,
            name: self.name.clone(),
            key: key.to_owned(),
        })
    }

    /// The PEM texts this object contributes to `source`.
    fn extract(&self, source: &ObjectSource) -> Result<Vec<ResolvedSource>, SourceError> {
        match source.key.as_deref() {
            Some(key) => self.extract_key(key, source.optional),
            None => self.extract_all(source.optional),
        }
    }

    fn extract_key(&self, key: &str, optional: bool) -> Result<Vec<ResolvedSource>, SourceError> {
        if self.kind == ObjectKind::Secret && key == TLS_PRIVATE_KEY {
            return Err(SourceError::PrivateKeyNamed {
                name: self.name.clone(),
            });
        }
        if optional && !self.data.contains_key(key) {
            return Ok(Vec::new());
        }
        let pem = self.require_text(key)?;
        if !holds_certificate(&pem) {
            if optional {
                return Ok(Vec::new());
            }
            return Err(SourceError::NoCertificate {
                kind: self.kind,
                name: self.name.clone(),
                key: key.to_owned(),
            });
        }
        Ok(vec![ResolvedSource {
            name: self.source_name(key),
            pem,
        }])
    }

    fn extract_all(&self, optional: bool) -> Result<Vec<ResolvedSource>, SourceError> {
        if self.holds_private_key {
            return Err(SourceError::AllKeysOfTlsSecret {
                name: self.name.clone(),
            });
        }
        let mut resolved = Vec::new();
        // BTreeMap iteration is key order.
        for (key, bytes) in &self.data {
            if !holds_pem(bytes) {
                continue;
            }
            resolved.push(ResolvedSource {
                name: self.source_name(key),
                pem: self.require_text(key)?,
            });
        }
        if resolved.is_empty() && !optional {
            return Err(SourceError::NoPem {
                kind: self.kind,
                name: self.name.clone(),
            });
        }
        Ok(resolved)
    }
}

fn holds_pem(bytes: &[u8]) -> bool {
    bytes.windows(PEM_MARKER.len()).any(|w| w == PEM_MARKER)
}

/// Whether `text` has a certificate block. Text whose PEM is broken counts as holding one: the
/// bundle engine then refuses it with the block and the reason, which says more than "none".
fn holds_certificate(text: &str) -> bool {
    crate::bundle::canonicalize(text).map_or(true, |c| c.certificates > 0)
}

/// Whether `wcc` refers to the Secret or ConfigMap `name` with `labels`: as a source (by name or
/// selector), as its login or token Secret, or as its CA Secret. The caller checks that the
/// object lives in the resource's namespace; nothing here looks at namespaces.
pub fn refers_to(
    wcc: &WebhookCaCertificate,
    kind: ObjectKind,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let spec = &wcc.spec;
    let as_source = spec.sources.iter().any(|source| {
        let object_source = match kind {
            ObjectKind::Secret => source.secret.as_ref(),
            ObjectKind::ConfigMap => source.config_map.as_ref(),
        };
        object_source.is_some_and(|os| {
            os.name.as_deref() == Some(name)
                || os
                    .selector
                    .as_ref()
                    .is_some_and(|s| selector::matches(s, labels))
        })
    });
    if as_source || kind != ObjectKind::Secret {
        return as_source;
    }
    let credentials = &spec.api.credentials;
    let secrets = [
        credentials.login_secret.as_ref().map(|s| s.name.as_str()),
        credentials.token_secret.as_ref().map(|s| s.name.as_str()),
        spec.api.tls.ca_secret.as_ref().map(|s| s.name.as_str()),
    ];
    secrets.contains(&Some(name))
}

/// What every source name read from this object begins with.
fn source_prefix(kind: ObjectKind, name: &str) -> String {
    format!("{} {name} key ", kind.field())
}

/// Whether `wcc`'s current bundle holds a certificate read from this object, by the source
/// names status records ("secret ca key ca.crt").
pub fn read_last_time(wcc: &WebhookCaCertificate, kind: ObjectKind, name: &str) -> bool {
    let prefix = source_prefix(kind, name);
    wcc.status
        .as_ref()
        .and_then(|s| s.bundle.as_ref())
        .is_some_and(|b| b.certificates.iter().any(|c| c.source.starts_with(&prefix)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
    use serde_json::json;

    const PEM_A: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    const PEM_B: &str = "prose\n-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";

    fn secret(name: &str, type_: Option<&str>, data: &[(&str, &[u8])]) -> DataObject {
        DataObject::from(Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            type_: type_.map(str::to_owned),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        })
    }

    fn by_key(key: Option<&str>, optional: bool) -> ObjectSource {
        ObjectSource {
            name: Some("x".into()),
            key: key.map(str::to_owned),
            optional,
            ..ObjectSource::default()
        }
    }

    fn names(resolved: &[ResolvedSource]) -> Vec<&str> {
        resolved.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn debug_shows_the_name_and_size_only() {
        let r = ResolvedSource {
            name: "inline #1".into(),
            pem: PEM_A.into(),
        };
        assert_eq!(
            format!("{r:?}"),
            format!(
                r#"ResolvedSource {{ name: "inline #1", pem: {} bytes }}"#,
                PEM_A.len()
            )
        );
    }

    #[test]
    fn a_named_key_is_read_and_named_without_its_data() {
        let obj = secret("internal-ca", None, &[("ca.crt", PEM_A.as_bytes())]);
        let got = obj.extract(&by_key(Some("ca.crt"), false)).unwrap();
        assert_eq!(
            got,
            vec![ResolvedSource {
                name: "secret internal-ca key ca.crt".into(),
                pem: PEM_A.into()
            }]
        );
    }

    #[test]
    fn all_keys_reads_pem_keys_in_key_order_and_skips_the_rest() {
        let map = DataObject::from(ConfigMap {
            metadata: ObjectMeta {
                name: Some("partner-cas".into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([
                ("z.pem".to_owned(), PEM_A.to_owned()),
                ("README".to_owned(), "not a certificate".to_owned()),
            ])),
            binary_data: Some(BTreeMap::from([
                ("a.pem".to_owned(), ByteString(PEM_B.as_bytes().to_vec())),
                ("keystore".to_owned(), ByteString(vec![0xff, 0xfe, 0x00])),
            ])),
            ..ConfigMap::default()
        });
        let got = map.extract(&by_key(None, false)).unwrap();
        assert_eq!(
            names(&got),
            [
                "configMap partner-cas key a.pem",
                "configMap partner-cas key z.pem"
            ]
        );
        assert_eq!(got[0].pem, PEM_B);
    }

    #[test]
    fn missing_keys_fail_unless_optional() {
        let obj = secret("s", None, &[("other", b"x")]);
        let err = obj.extract(&by_key(Some("ca.crt"), false)).unwrap_err();
        assert_eq!(err.reason(), "SourceKeyNotFound");
        assert_eq!(err.to_string(), r#"Secret "s" has no key "ca.crt""#);
        assert!(
            obj.extract(&by_key(Some("ca.crt"), true))
                .unwrap()
                .is_empty()
        );

        let err = obj.extract(&by_key(None, false)).unwrap_err();
        assert_eq!(err.reason(), "SourceKeyNotFound");
        assert!(obj.extract(&by_key(None, true)).unwrap().is_empty());
    }

    #[test]
    fn a_named_key_without_a_certificate_is_invalid_unless_optional() {
        let crl = "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n";
        for value in ["", "rotated, see ticket 42", crl] {
            let obj = secret("second-ca", None, &[("ca.crt", value.as_bytes())]);
            let err = obj.extract(&by_key(Some("ca.crt"), false)).unwrap_err();
            assert_eq!(err.reason(), "SourceInvalid");
            let msg = err.to_string();
            assert!(
                msg.starts_with(r#"Secret "second-ca" key "ca.crt" holds no certificate"#),
                "{msg}"
            );
            assert!(msg.contains("optional: true"), "{msg}");
            assert!(
                obj.extract(&by_key(Some("ca.crt"), true))
                    .unwrap()
                    .is_empty()
            );
            // The all-keys form passes over it, as it passes over any key without PEM.
            let both = secret(
                "s",
                None,
                &[("a.crt", PEM_A.as_bytes()), ("b.crt", value.as_bytes())],
            );
            let read = both.extract(&by_key(None, false)).unwrap();
            assert_eq!(names(&read)[0], "secret s key a.crt");
        }
        // Broken PEM is left to the bundle engine, which names the block and the fault.
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n";
        let obj = secret("s", None, &[("ca.crt", broken.as_bytes())]);
        assert_eq!(
            obj.extract(&by_key(Some("ca.crt"), false)).unwrap().len(),
            1
        );
    }

    #[test]
    fn values_that_are_not_utf8_are_refused_by_name() {
        let mut bytes = PEM_A.as_bytes().to_vec();
        bytes.push(0xff);
        let obj = secret("s", None, &[("ca.crt", &bytes)]);
        for source in [by_key(Some("ca.crt"), true), by_key(None, true)] {
            let err = obj.extract(&source).unwrap_err();
            assert_eq!(err.reason(), "SourceInvalid");
            assert_eq!(
                err.to_string(),
                r#"Secret "s" key "ca.crt" is not UTF-8 text"#
            );
        }
    }

    #[test]
    fn tls_secrets_are_never_read_whole_and_tls_key_never_at_all() {
        let key_pem = "-----BEGIN PRIVATE KEY-----\nSECRETSECRET\n-----END PRIVATE KEY-----\n";
        let data: &[(&str, &[u8])] = &[
            ("ca.crt", PEM_A.as_bytes()),
            ("tls.crt", PEM_B.as_bytes()),
            ("tls.key", key_pem.as_bytes()),
        ];
        let opaque_with_key = secret("opaque", Some("Opaque"), data);
        let tls = secret("tls", Some(TLS_SECRET_TYPE), &data[..2]);
        for obj in [&opaque_with_key, &tls] {
            let err = obj.extract(&by_key(None, true)).unwrap_err();
            assert_eq!(err.reason(), "SourceInvalid");
            let msg = err.to_string();
            assert!(
                msg.contains("key: ca.crt") && msg.contains("key: tls.crt"),
                "{msg}"
            );
            let got = obj.extract(&by_key(Some("tls.crt"), false)).unwrap();
            assert_eq!(got[0].pem, PEM_B);
        }
        let err = opaque_with_key
            .extract(&by_key(Some("tls.key"), false))
            .unwrap_err();
        assert_eq!(err.reason(), "SourceInvalid");
        assert!(!format!("{err} {err:?}").contains("SECRETSECRET"));
    }

    fn wcc(spec: serde_json::Value) -> WebhookCaCertificate {
        serde_json::from_value(json!({
            "apiVersion": "webhookca.io/v1alpha1",
            "kind": "WebhookCaCertificate",
            "metadata": { "name": "wa", "namespace": "wa" },
            "spec": spec,
        }))
        .expect("a literal resource")
    }

    fn api(credentials: serde_json::Value, tls: serde_json::Value) -> serde_json::Value {
        json!({ "url": "https://webapp", "credentials": credentials, "tls": tls })
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn refers_to_sources_by_name_and_kind() {
        let r = wcc(json!({
            "sources": [
                { "secret": { "name": "internal-ca", "key": "ca.crt" } },
                { "configMap": { "name": "partner-cas" } },
                { "inline": PEM_A },
            ],
            "api": api(json!({ "tokenSecret": { "name": "wa-token" } }), json!({})),
        }));
        let none = BTreeMap::new();
        assert!(refers_to(&r, ObjectKind::Secret, "internal-ca", &none));
        assert!(refers_to(&r, ObjectKind::ConfigMap, "partner-cas", &none));
        // Same name, other kind: not a source.
        assert!(!refers_to(&r, ObjectKind::ConfigMap, "internal-ca", &none));
        assert!(!refers_to(&r, ObjectKind::Secret, "partner-cas", &none));
        assert!(!refers_to(&r, ObjectKind::Secret, "unrelated", &none));
    }

    #[test]
    fn refers_to_sources_by_selector() {
        let r = wcc(json!({
            "sources": [{ "configMap": { "selector": {
                "matchLabels": { "webhookca.io/bundle": "wa" },
                "matchExpressions": [{ "key": "retired", "operator": "DoesNotExist" }],
            } } }],
            "api": api(json!({ "tokenSecret": { "name": "t" } }), json!({})),
        }));
        let matching = labels(&[("webhookca.io/bundle", "wa")]);
        assert!(refers_to(&r, ObjectKind::ConfigMap, "any", &matching));
        assert!(!refers_to(&r, ObjectKind::Secret, "any", &matching));
        let retired = labels(&[("webhookca.io/bundle", "wa"), ("retired", "yes")]);
        assert!(!refers_to(&r, ObjectKind::ConfigMap, "any", &retired));
        let other = labels(&[("webhookca.io/bundle", "other")]);
        assert!(!refers_to(&r, ObjectKind::ConfigMap, "any", &other));
    }

    #[test]
    fn refers_to_its_credential_and_ca_secrets() {
        let sources = json!([{ "inline": PEM_A }]);
        let login = wcc(json!({
            "sources": sources,
            "api": api(
                json!({ "loginSecret": { "name": "wa-admin" } }),
                json!({ "caSecret": { "name": "webapp-ca" } }),
            ),
        }));
        let token = wcc(json!({
            "sources": sources,
            "api": api(json!({ "tokenSecret": { "name": "wa-token", "key": "t" } }), json!({})),
        }));
        let none = BTreeMap::new();
        assert!(refers_to(&login, ObjectKind::Secret, "wa-admin", &none));
        assert!(refers_to(&login, ObjectKind::Secret, "webapp-ca", &none));
        assert!(!refers_to(&login, ObjectKind::Secret, "wa-token", &none));
        assert!(refers_to(&token, ObjectKind::Secret, "wa-token", &none));
        assert!(!refers_to(&token, ObjectKind::Secret, "wa-admin", &none));
        // Credentials and CA are Secrets only.
        assert!(!refers_to(&login, ObjectKind::ConfigMap, "wa-admin", &none));
        assert!(!refers_to(
            &login,
            ObjectKind::ConfigMap,
            "webapp-ca",
            &none
        ));
    }

    #[test]
    fn selector_errors_name_the_source() {
        let err = SourceError::InvalidSelector {
            position: 3,
            error: selector::to_query(&LabelSelector {
                match_labels: Some(BTreeMap::from([("k".into(), "a,b=c".into())])),
                ..LabelSelector::default()
            })
            .unwrap_err(),
        };
        assert_eq!(err.reason(), "SourceInvalid");
        assert!(
            err.to_string().starts_with("source #3: invalid selector"),
            "{err}"
        );
    }
}
