//! A scan for secrets in what the operator shows: its logs, Events and statuses. Each secret a
//! test used (a password, a token, a private key) is looked for in every form in which it would
//! give itself away; a finding names the secret and the place, never the value.
//!
//! ```
//! use test_support::secret_scan::{Secret, scan};
//!
//! let secrets = [Secret::value("admin password", "Very-Secret-1")];
//! let found = scan([("logs", "login as admin with Very-Secret-1")], &secrets);
//! assert_eq!(found[0].to_string(), "admin password (as is) in logs at byte 20");
//! ```

use std::fmt;
use std::sync::{Arc, Mutex};

use base64::Engine as _;

/// A tracing writer into a shared buffer: what a test's subscriber writes, to scan afterwards.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// What was written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

/// Forms shorter than this would match by chance (and a scan for them proves nothing).
pub const MIN_FORM_LEN: usize = 8;

/// One secret and the forms of it that must not appear.
#[derive(Clone)]
pub struct Secret {
    name: String,
    forms: Vec<(&'static str, String)>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let forms: Vec<&str> = self.forms.iter().map(|(kind, _)| *kind).collect();
        f.debug_struct("Secret")
            .field("name", &self.name)
            .field("forms", &forms)
            .finish()
    }
}

impl Secret {
    /// A password or token: the value as is, JSON-escaped (a JSON log line or an object's
    /// serialization escapes `"` and `\`), and in base64 (a Secret's `data`, a Basic header).
    pub fn value(name: &str, value: &str) -> Self {
        let json = serde_json::to_string(value).expect("a string serializes");
        let json = json[1..json.len() - 1].to_owned();
        let secret = Self {
            name: name.to_owned(),
            forms: Vec::new(),
        }
        .with_form("as is", value);
        let secret = if json == value {
            secret
        } else {
            secret.with_form("JSON-escaped", &json)
        };
        secret.with_form(
            "base64",
            &base64::engine::general_purpose::STANDARD.encode(value),
        )
    }

    /// A PEM private key: every line of its base64 body (any one is key material) and the body
    /// joined into one line.
    pub fn pem_key(name: &str, pem: &str) -> Self {
        let lines: Vec<&str> = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("-----"))
            .collect();
        assert!(!lines.is_empty(), "{name}: a PEM block has a body");
        let mut secret = Self {
            name: name.to_owned(),
            forms: Vec::new(),
        };
        for line in &lines {
            // The last line of a body can be short; the other lines cover the key.
            if line.len() >= MIN_FORM_LEN {
                secret = secret.with_form("a line of the PEM body", line);
            }
        }
        secret.with_form("the PEM body joined", &lines.concat())
    }

    /// Another form to look for, e.g. `base64("user:password")` for a Basic header.
    pub fn with_form(mut self, kind: &'static str, form: &str) -> Self {
        assert!(
            form.len() >= MIN_FORM_LEN,
            "{}: a form of {} bytes would match by chance",
            self.name,
            form.len()
        );
        if !self.forms.iter().any(|(_, f)| f == form) {
            self.forms.push((kind, form.to_owned()));
        }
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Where a secret was found. Its `Display` names the secret and the place, not the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub secret: String,
    pub form: &'static str,
    pub place: String,
    pub offset: usize,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) in {} at byte {}",
            self.secret, self.form, self.place, self.offset
        )
    }
}

/// Every occurrence (first per secret, form and place) of any secret's forms in the texts,
/// given as `(place, text)`.
pub fn scan<'a>(
    texts: impl IntoIterator<Item = (&'a str, &'a str)>,
    secrets: &[Secret],
) -> Vec<Finding> {
    let scanner = Scanner::new(secrets);
    texts
        .into_iter()
        .flat_map(|(place, text)| scanner.scan(place, text))
        .collect()
}

/// The forms of many secrets, looked for in one pass over each text (Aho-Corasick): the scan
/// after the tests runs hundreds of secrets over megabytes of logs, where one search per form
/// would read each log hundreds of times.
pub struct Scanner {
    automaton: aho_corasick::AhoCorasick,
    /// For each pattern of the automaton: its secret's name and its kind of form.
    patterns: Vec<(String, &'static str)>,
}

impl Scanner {
    pub fn new(secrets: &[Secret]) -> Self {
        let mut forms = Vec::new();
        let mut patterns = Vec::new();
        for secret in secrets {
            for (kind, form) in &secret.forms {
                forms.push(form.as_str());
                patterns.push((secret.name.clone(), *kind));
            }
        }
        let automaton = aho_corasick::AhoCorasick::new(forms)
            .expect("an automaton of the tests' secrets fits the default limits");
        Self {
            automaton,
            patterns,
        }
    }

    /// The first occurrence of each form in `text`, in the order of the secrets and their
    /// forms.
    pub fn scan(&self, place: &str, text: &str) -> Vec<Finding> {
        let mut first: Vec<Option<usize>> = vec![None; self.patterns.len()];
        // Overlapping: one form may be part of another (a PEM line of the joined body). The
        // matches of one pattern come in order, so the first one seen is the first in the text.
        for found in self.automaton.find_overlapping_iter(text) {
            first[found.pattern().as_usize()].get_or_insert(found.start());
        }
        first
            .into_iter()
            .zip(&self.patterns)
            .filter_map(|(offset, (secret, form))| {
                Some(Finding {
                    secret: secret.clone(),
                    form,
                    place: place.to_owned(),
                    offset: offset?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::key_pem;

    #[test]
    fn finds_a_value_as_is_escaped_and_in_base64() {
        let secrets = [Secret::value("password", r#"Pa"ss\w0rd!"#)];
        let raw = scan([("log", r#"user=admin password=Pa"ss\w0rd! ok"#)], &secrets);
        assert_eq!(raw.len(), 1, "{raw:?}");
        assert_eq!(
            (raw[0].form, raw[0].place.as_str(), raw[0].offset),
            ("as is", "log", 20)
        );
        let json = scan(
            [("event", r#"{"note":"bad password Pa\"ss\\w0rd!"}"#)],
            &secrets,
        );
        assert_eq!(json.len(), 1, "{json:?}");
        assert_eq!(json[0].form, "JSON-escaped");
        let encoded = base64::engine::general_purpose::STANDARD.encode(r#"Pa"ss\w0rd!"#);
        let b64 = scan([("secret data", encoded.as_str())], &secrets);
        assert_eq!(b64.len(), 1, "{b64:?}");
        assert_eq!(b64[0].form, "base64");
    }

    #[test]
    fn finds_any_line_of_a_private_key_and_names_the_place_not_the_value() {
        let key = key_pem();
        let secrets = [Secret::pem_key("the source's private key", &key)];
        let line = key.lines().nth(2).expect("a body line");
        let text = format!("status: refused\nsomething {line} else");
        let found = scan(
            [("clean", "nothing here"), ("status", text.as_str())],
            &secrets,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        let shown = found[0].to_string();
        assert!(shown.contains("the source's private key"), "{shown}");
        assert!(shown.contains("status"), "{shown}");
        assert!(!shown.contains(line), "a finding must not show the secret");
        assert!(!format!("{:?}", secrets[0]).contains(line));
    }

    #[test]
    fn clean_texts_give_no_finding() {
        let secrets = [
            Secret::value("token", "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.sig"),
            Secret::pem_key("key", &key_pem()),
        ];
        let found = scan(
            [
                (
                    "logs",
                    "reconciled prod: uploaded 1 certificate(s), sha256 0b4d9c1e",
                ),
                (
                    "events",
                    "Secret \"internal-ca\" key \"ca.crt\" holds a private key",
                ),
            ],
            &secrets,
        );
        assert_eq!(found, []);
    }

    #[test]
    #[should_panic(expected = "would match by chance")]
    fn a_secret_too_short_to_scan_for_is_refused() {
        let _ = Secret::value("pin", "1234");
    }
}
