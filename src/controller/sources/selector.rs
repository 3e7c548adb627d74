//! Label selectors of the spec, as the API server's `labelSelector` query and as a local match.
//!
//! Keys and values are checked against the label syntax before they are joined into a query: a
//! value such as `a,b=c` would otherwise smuggle a second requirement into the selector.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Longest label name, and longest label value (Kubernetes' limits).
const MAX_NAME: usize = 63;
/// Longest label key prefix (a DNS subdomain).
const MAX_PREFIX: usize = 253;

/// Why a selector of the spec cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("{key:?} is not a valid label key")]
    InvalidKey { key: String },
    #[error("{value:?} (label {key}) is not a valid label value")]
    InvalidValue { key: String, value: String },
    #[error("operator {operator:?} (label {key}) is not one of In, NotIn, Exists, DoesNotExist")]
    UnknownOperator { key: String, operator: String },
    #[error("operator {operator} (label {key}) needs at least one value")]
    MissingValues { key: String, operator: Operator },
    #[error("operator {operator} (label {key}) takes no values")]
    UnexpectedValues { key: String, operator: Operator },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operator::Equals => "matchLabels",
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
        })
    }
}

/// One checked requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement<'a> {
    key: &'a str,
    operator: Operator,
    values: Vec<&'a str>,
}

impl Requirement<'_> {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(self.key).map(String::as_str);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(|v| self.values.contains(&v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(&v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }

    fn render(&self) -> String {
        let key = self.key;
        let values = self.values.join(",");
        match self.operator {
            Operator::Equals => format!("{key}={values}"),
            Operator::In => format!("{key} in ({values})"),
            Operator::NotIn => format!("{key} notin ({values})"),
            Operator::Exists => key.to_owned(),
            Operator::DoesNotExist => format!("!{key}"),
        }
    }
}

fn requirements(selector: &LabelSelector) -> Result<Vec<Requirement<'_>>, SelectorError> {
    let mut out = Vec::new();
    for (key, value) in selector.match_labels.iter().flatten() {
        out.push(checked(key, Operator::Equals, std::slice::from_ref(value))?);
    }
    for expr in selector.match_expressions.iter().flatten() {
        let operator = match expr.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => {
                return Err(SelectorError::UnknownOperator {
                    key: expr.key.clone(),
                    operator: other.to_owned(),
                });
            }
        };
        let values = expr.values.as_deref().unwrap_or_default();
        out.push(checked(&expr.key, operator, values)?);
    }
    Ok(out)
}

fn checked<'a>(
    key: &'a str,
    operator: Operator,
    values: &'a [String],
) -> Result<Requirement<'a>, SelectorError> {
    if !is_label_key(key) {
        return Err(SelectorError::InvalidKey {
            key: key.to_owned(),
        });
    }
    let takes_values = matches!(operator, Operator::Equals | Operator::In | Operator::NotIn);
    if takes_values && values.is_empty() {
        return Err(SelectorError::MissingValues {
            key: key.to_owned(),
            operator,
        });
    }
    if !takes_values && !values.is_empty() {
        return Err(SelectorError::UnexpectedValues {
            key: key.to_owned(),
            operator,
        });
    }
    if let Some(bad) = values.iter().find(|v| !is_label_value(v)) {
        return Err(SelectorError::InvalidValue {
            key: key.to_owned(),
            value: bad.clone(),
        });
    }
    Ok(Requirement {
        key,
        operator,
        values: values.iter().map(String::as_str).collect(),
    })
}

/// The selector in the syntax of the `labelSelector` query parameter. An empty selector is the
/// empty string, which matches every object, as an empty LabelSelector does in Kubernetes.
pub fn to_query(selector: &LabelSelector) -> Result<String, SelectorError> {
    Ok(requirements(selector)?
        .iter()
        .map(Requirement::render)
        .collect::<Vec<_>>()
        .join(","))
}

/// Whether `labels` satisfy the selector. An unusable selector matches nothing: listing with it
/// fails the same way.
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    requirements(selector).is_ok_and(|reqs| reqs.iter().all(|r| r.matches(labels)))
}

/// `[prefix/]name`: prefix a DNS subdomain, name a label name.
fn is_label_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(key),
    }
}

/// At most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends, not empty.
fn is_label_name(name: &str) -> bool {
    !name.is_empty() && is_label_value(name)
}

/// Empty, or a label name.
fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    let inner_ok = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let ends_ok = match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric(),
        _ => true,
    };
    bytes.len() <= MAX_NAME && inner_ok && ends_ok
}

/// A DNS subdomain (what label key prefixes and most object names are).
pub(crate) fn is_dns_subdomain(prefix: &str) -> bool {
    prefix.len() <= MAX_PREFIX
        && prefix.split('.').all(|label| {
            let b = label.as_bytes();
            let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
            match (b.first(), b.last()) {
                (Some(first), Some(last)) => {
                    alnum(first) && alnum(last) && b.iter().all(|c| alnum(c) || *c == b'-')
                }
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn expr(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_owned(),
            operator: operator.to_owned(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn selector(labels: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector {
            match_labels: (!labels.is_empty()).then(|| labels_of(labels)),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        }
    }

    fn labels_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_operator_renders_in_query_syntax() {
        let sel = selector(
            &[("team", "payments"), ("app.kubernetes.io/part-of", "wa")],
            vec![
                expr("tier", "In", &["ca", "root"]),
                expr("env", "NotIn", &["dev"]),
                expr("webhookca.io/source", "Exists", &[]),
                expr("retired", "DoesNotExist", &[]),
            ],
        );
        assert_eq!(
            to_query(&sel).unwrap(),
            "app.kubernetes.io/part-of=wa,team=payments,tier in (ca,root),env notin (dev),\
             webhookca.io/source,!retired"
        );
    }

    #[test]
    fn an_empty_selector_is_the_empty_query() {
        assert_eq!(to_query(&LabelSelector::default()).unwrap(), "");
        assert!(matches(&LabelSelector::default(), &BTreeMap::new()));
    }

    #[test]
    fn values_that_would_add_requirements_are_refused() {
        for bad in ["a,b=c", "a b", "x)", "-a", "a-", &"a".repeat(64)] {
            let err = to_query(&selector(&[("k", bad)], vec![])).unwrap_err();
            assert!(
                matches!(&err, SelectorError::InvalidValue { value, .. } if value == bad),
                "{bad}: {err:?}"
            );
            let err = to_query(&selector(&[], vec![expr("k", "In", &["ok", bad])])).unwrap_err();
            assert!(matches!(err, SelectorError::InvalidValue { .. }), "{bad}");
        }
        // An empty value is a valid label value ("k=" selects objects with k set to "").
        assert_eq!(to_query(&selector(&[("k", "")], vec![])).unwrap(), "k=");
    }

    #[test]
    fn invalid_keys_are_refused() {
        for bad in [
            "",
            "a=b",
            "/name",
            "Upper.Case/name",
            "pre/",
            "a/b/c",
            "!k",
            "k,j",
        ] {
            let err = to_query(&selector(&[(bad, "v")], vec![])).unwrap_err();
            assert_eq!(err, SelectorError::InvalidKey { key: bad.into() }, "{bad}");
        }
        assert!(to_query(&selector(&[("example.com/Name_1.x", "v")], vec![])).is_ok());
    }

    #[test]
    fn operator_arity_and_spelling_are_checked() {
        let cases = [
            (expr("k", "In", &[]), "needs at least one value"),
            (expr("k", "NotIn", &[]), "needs at least one value"),
            (expr("k", "Exists", &["v"]), "takes no values"),
            (expr("k", "DoesNotExist", &["v"]), "takes no values"),
            (expr("k", "in", &["v"]), "is not one of"),
            (expr("k", "Gt", &["1"]), "is not one of"),
        ];
        for (e, want) in cases {
            let sel = selector(&[], vec![e]);
            let err = to_query(&sel).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
            assert!(!matches(&sel, &labels_of(&[("k", "v")])));
        }
    }

    #[test]
    fn local_matching_follows_kubernetes_semantics() {
        let sel = selector(
            &[("team", "payments")],
            vec![
                expr("tier", "In", &["ca", "root"]),
                expr("env", "NotIn", &["dev"]),
                expr("source", "Exists", &[]),
                expr("retired", "DoesNotExist", &[]),
            ],
        );
        let base = [
            ("team", "payments"),
            ("tier", "ca"),
            ("source", ""),
            ("other", "x"),
        ];
        assert!(matches(&sel, &labels_of(&base)));
        // NotIn is satisfied by an absent label and by another value.
        let mut prod = labels_of(&base);
        prod.insert("env".into(), "prod".into());
        assert!(matches(&sel, &prod));

        let mutations: [(&str, Option<&str>); 6] = [
            ("team", Some("search")),
            ("team", None),
            ("tier", Some("leaf")),
            ("env", Some("dev")),
            ("source", None),
            ("retired", Some("yes")),
        ];
        for (key, value) in mutations {
            let mut labels = labels_of(&base);
            match value {
                Some(v) => labels.insert(key.into(), v.into()),
                None => labels.remove(key),
            };
            assert!(!matches(&sel, &labels), "{key}={value:?} should not match");
        }
    }
}
