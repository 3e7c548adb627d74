//! The `--selector` flag: a label selector in the syntax of kubectl's `-l` and the apiserver's
//! `labelSelector` parameter (`shard=eu`, `shard!=us`, `tier in (a,b)`, `env notin (dev)`,
//! `managed`, `!legacy`, comma-separated and all required), parsed into a `LabelSelector` so
//! that the checks of the spec's selectors ([`to_query`]) apply, and a mistake stops the
//! operator at startup with a message instead of a watch that fails or selects nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::controller::sources::selector::{SelectorError, to_query};

/// Why a `--selector` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorParseError {
    #[error("requirement #{position} is empty")]
    EmptyRequirement { position: usize },
    #[error("requirement {requirement:?} names no label key")]
    MissingKey { requirement: String },
    #[error(
        "requirement {requirement:?}: expected =, ==, !=, in (...) or notin (...) after the key"
    )]
    UnknownOperator { requirement: String },
    #[error("requirement {requirement:?}: the numeric comparisons > and < are not supported here")]
    Comparison { requirement: String },
    #[error(
        "requirement {requirement:?}: the values of in/notin go in parentheses, e.g. k in (a,b)"
    )]
    MissingParentheses { requirement: String },
    #[error("unbalanced parentheses")]
    Unbalanced,
    #[error(transparent)]
    Invalid(#[from] SelectorError),
}

/// The selector in canonical `labelSelector` syntax, after checking every key and value.
pub fn canonical(input: &str) -> Result<String, SelectorParseError> {
    Ok(to_query(&parse(input)?)?)
}

/// Parses `input` into the equivalent `LabelSelector`. Keys and values are checked by
/// [`to_query`], not here.
pub fn parse(input: &str) -> Result<LabelSelector, SelectorParseError> {
    let mut selector = LabelSelector::default();
    for (index, requirement) in split_requirements(input)?.into_iter().enumerate() {
        let requirement = requirement.trim();
        if requirement.is_empty() {
            return Err(SelectorParseError::EmptyRequirement {
                position: index + 1,
            });
        }
        add(&mut selector, requirement)?;
    }
    Ok(selector)
}

/// Splits at the commas outside parentheses (those inside separate values).
fn split_requirements(input: &str) -> Result<Vec<&str>, SelectorParseError> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (at, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1).ok_or(SelectorParseError::Unbalanced)?,
            ',' if depth == 0 => {
                parts.push(&input[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(SelectorParseError::Unbalanced);
    }
    parts.push(&input[start..]);
    Ok(parts)
}

/// Characters a label key may hold (the key's own checks come later): the key ends at the
/// first other character, where the operator begins.
fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

fn add(selector: &mut LabelSelector, requirement: &str) -> Result<(), SelectorParseError> {
    let owned = || requirement.to_owned();
    if let Some(key) = requirement.strip_prefix('!') {
        let key = key.trim();
        if key.is_empty() || !key.chars().all(is_key_char) {
            return Err(SelectorParseError::MissingKey {
                requirement: owned(),
            });
        }
        push(selector, key, "DoesNotExist", Vec::new());
        return Ok(());
    }
    let key_len = requirement
        .find(|c: char| !is_key_char(c))
        .unwrap_or(requirement.len());
    let (key, rest) = requirement.split_at(key_len);
    if key.is_empty() {
        return Err(SelectorParseError::MissingKey {
            requirement: owned(),
        });
    }
    let rest = rest.trim_start();
    if rest.is_empty() {
        push(selector, key, "Exists", Vec::new());
    } else if let Some(value) = rest.strip_prefix("!=") {
        push(selector, key, "NotIn", vec![value.trim().to_owned()]);
    } else if let Some(value) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
        equal(selector, key, value.trim());
    } else if let Some(values) = rest.strip_prefix("notin") {
        let values = parenthesized(values, requirement)?;
        push(selector, key, "NotIn", values);
    } else if let Some(values) = rest.strip_prefix("in") {
        let values = parenthesized(values, requirement)?;
        push(selector, key, "In", values);
    } else if rest.starts_with('>') || rest.starts_with('<') {
        return Err(SelectorParseError::Comparison {
            requirement: owned(),
        });
    } else {
        return Err(SelectorParseError::UnknownOperator {
            requirement: owned(),
        });
    }
    Ok(())
}

/// `k=v` as `matchLabels` (rendered back as `k=v`), unless the key is there already (`a=1,a=2`
/// selects nothing, and must stay that way).
fn equal(selector: &mut LabelSelector, key: &str, value: &str) {
    let labels = selector.match_labels.get_or_insert_with(Default::default);
    if labels.contains_key(key) {
        push(selector, key, "In", vec![value.to_owned()]);
    } else {
        labels.insert(key.to_owned(), value.to_owned());
    }
}

fn push(selector: &mut LabelSelector, key: &str, operator: &str, values: Vec<String>) {
    selector
        .match_expressions
        .get_or_insert_with(Vec::new)
        .push(LabelSelectorRequirement {
            key: key.to_owned(),
            operator: operator.to_owned(),
            values: (!values.is_empty()).then_some(values),
        });
}

/// The values of `(a, b)`; what follows `in`/`notin` must be exactly that.
fn parenthesized(rest: &str, requirement: &str) -> Result<Vec<String>, SelectorParseError> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| SelectorParseError::MissingParentheses {
            requirement: requirement.to_owned(),
        })?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_kubectl_l_parses_to_its_canonical_query() {
        let cases = [
            ("shard=eu", "shard=eu"),
            ("shard==eu", "shard=eu"),
            (" shard = eu ", "shard=eu"),
            ("shard!=us", "shard notin (us)"),
            ("tier in (a, b)", "tier in (a,b)"),
            ("tier in(a)", "tier in (a)"),
            ("env notin (dev,test)", "env notin (dev,test)"),
            ("managed", "managed"),
            ("!legacy", "!legacy"),
            ("! legacy", "!legacy"),
            ("example.com/shard=eu", "example.com/shard=eu"),
            (
                "shard=eu,tier in (a,b),!legacy",
                "shard=eu,tier in (a,b),!legacy",
            ),
            // Two values for one key select nothing; both stay.
            ("a=1,a=2", "a=1,a in (2)"),
            // An empty value selects objects whose label is set to "".
            ("k=", "k="),
        ];
        for (input, want) in cases {
            assert_eq!(canonical(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn mistakes_are_refused_with_a_reason() {
        let cases: [(&str, &str); 11] = [
            ("shard in eu", "go in parentheses"),
            ("tier in (a", "unbalanced"),
            ("tier in a)", "unbalanced"),
            ("shard=eu,", "requirement #2 is empty"),
            (",shard=eu", "requirement #1 is empty"),
            ("=eu", "names no label key"),
            ("!", "names no label key"),
            ("shard ~ eu", "expected =, ==, !="),
            ("replicas > 2", "not supported"),
            ("shard=eu us", "not a valid label value"),
            ("Shard_/x=eu", "not a valid label key"),
        ];
        for (input, want) in cases {
            let err = canonical(input).expect_err(input).to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
        let err = canonical("tier in ()").expect_err("no values").to_string();
        assert!(err.contains("needs at least one value"), "{err}");
        // A value cannot smuggle in a second requirement.
        let err = canonical("a in (b=c)").expect_err("b=c").to_string();
        assert!(err.contains("not a valid label value"), "{err}");
    }
}
