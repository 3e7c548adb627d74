//! What every test showed, kept on disk for the secret scan after the tests (issue 12), in
//! `$WCO_TEST_LOGS` (default `target/test-logs` of the workspace):
//!
//! - `logs/<binary>-<pid>.jsonl`: the log of the test process at debug level, in the format of
//!   `run --log-format json --log-level debug` (the in-process controllers, the operator code the
//!   tests call, the simulators, the clients); installed by [`init`], which [`TestNamespace`] and
//!   the in-process [`Operator`] call;
//! - `logs/<binary>-<pid>-<instance>.jsonl`: the stderr of each operator process
//!   ([`OperatorProcess`] runs them at `--log-level debug`);
//! - `cluster/<namespace>.json`: the Events and `WebhookCaCertificate`s (statuses) of each test
//!   namespace, dumped just before the namespace is deleted;
//! - `secrets/<binary>-<pid>.jsonl`: the passwords, tokens and private keys the tests used, one
//!   JSON object a line: `{"name", "value"}` (with `"user"` for a password sent in a Basic
//!   header) or `{"name", "private_key"}`.
//!
//! `cargo run -p test-support --bin scan-test-logs` ([`scan_dir`]) looks for every recorded
//! secret, in every form [`Secret`] knows, in every log and dump. A test that writes a secret
//! where the operator's output goes on purpose keeps its process out with [`keep_out`].
//!
//! [`TestNamespace`]: crate::TestNamespace
//! [`Operator`]: crate::controller::Operator
//! [`OperatorProcess`]: crate::operator_process::OperatorProcess

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::cluster::{Cluster, binary_name, repo};
use crate::process::run;
use crate::secret_scan::{Finding, MIN_FORM_LEN, Scanner, Secret};

/// Directory of the files, instead of `target/test-logs`.
const DIR_ENV: &str = "WCO_TEST_LOGS";

/// How often the in-process log is written out. A test binary ends with `process::exit`, which
/// runs no destructor: what is still buffered then is lost, so the buffer must not wait long.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

static KEPT_OUT: AtomicBool = AtomicBool::new(false);

/// The directory the tests write into and the scan reads.
pub fn dir() -> PathBuf {
    std::env::var_os(DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/test-logs"))
}

/// `<test binary>-<pid>`: unique among the processes of one run.
fn process_tag() -> String {
    format!("{}-{}", binary_name().to_string_lossy(), std::process::id())
}

/// Keeps this test process out of the shared scan: no log, no secret, no namespace dump of it
/// goes to [`dir`]. For a test that writes secrets into logs, Events or statuses on purpose
/// (`tests/secret_scan.rs` plants them to prove its own scan fails); call it before anything else.
pub fn keep_out(why: &str) {
    KEPT_OUT.store(true, Ordering::SeqCst);
    eprintln!("test logs: this process is kept out of the shared secret scan: {why}");
}

fn kept_out() -> bool {
    KEPT_OUT.load(Ordering::SeqCst)
}

/// Once per process: logs everything at debug level into `logs/<binary>-<pid>.jsonl` (unless a
/// test installed its own subscriber first) and records every token the simulators issue.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if kept_out() {
            return;
        }
        onprem_sim::observe_issued_tokens(|token| {
            record_value("a bearer token a simulator issued", token);
        });
        install_subscriber();
    });
}

/// The in-process log file, opened at the first line written (no empty file from a process
/// whose subscriber was already taken).
static LOG: Mutex<LogFile> = Mutex::new(LogFile::Unopened);

enum LogFile {
    Unopened,
    Open(BufWriter<File>),
    /// It could not be opened (printed once): the lines are dropped rather than the open tried
    /// again for each.
    Failed,
}

/// A writer into [`LOG`]: the subscriber formats each event into one buffer and writes it at
/// once, so a line is never split between two writers.
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut log = LOG.lock().unwrap_or_else(PoisonError::into_inner);
        if let LogFile::Unopened = *log {
            let path = dir().join("logs").join(format!("{}.jsonl", process_tag()));
            *log = match append(&path) {
                Ok(file) => LogFile::Open(BufWriter::with_capacity(1 << 16, file)),
                Err(e) => {
                    eprintln!("test logs: cannot write {}: {e}", path.display());
                    LogFile::Failed
                }
            };
        }
        match &mut *log {
            LogFile::Open(out) => out.write(buf),
            LogFile::Unopened | LogFile::Failed => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        flush_log()
    }
}

fn flush_log() -> std::io::Result<()> {
    match &mut *LOG.lock().unwrap_or_else(PoisonError::into_inner) {
        LogFile::Open(out) => out.flush(),
        LogFile::Unopened | LogFile::Failed => Ok(()),
    }
}

fn install_subscriber() {
    let subscriber = webhook_ca_operator::telemetry::json_subscriber(
        tracing_subscriber::EnvFilter::new("debug"),
        || LogWriter,
    );
    // Err: the test installed its own subscriber (it captures its log itself).
    if subscriber.try_init().is_err() {
        return;
    }
    // Writes the buffer out in the background: the test's threads only copy into it.
    let flusher = std::thread::Builder::new()
        .name("test-log-flush".to_owned())
        .spawn(|| {
            loop {
                std::thread::sleep(FLUSH_EVERY);
                if let Err(e) = flush_log() {
                    eprintln!("test logs: writing the log failed: {e}");
                }
            }
        });
    if let Err(e) = flusher {
        eprintln!("test logs: no flusher thread ({e}); the log is written when a namespace goes");
    }
}

/// Opens `path` for appending, creating it and its directory.
fn append(path: &Path) -> std::io::Result<File> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// Prints one figure of a test (a count, a delay, what a condition said) and keeps it in
/// `figures/<binary>-<pid>.txt`, which `hack/test.sh` prints after the tests: cargo test shows
/// what a passing test printed only under `--nocapture`, and the fault matrix's counts are
/// its result. Use it through [`crate::figure!`].
pub fn figure(text: fmt::Arguments<'_>) {
    eprintln!("{text}");
    let path = dir().join("figures").join(format!("{}.txt", process_tag()));
    let line = format!("{}: {text}", binary_name().to_string_lossy());
    if let Err(e) = append(&path).and_then(|mut f| writeln!(f, "{line}")) {
        eprintln!("test logs: cannot keep a figure in {}: {e}", path.display());
    }
}

/// `figure!("{n} uploads")`: [`test_logs::figure`](crate::test_logs::figure) with `format!`'s
/// arguments.
#[macro_export]
macro_rules! figure {
    ($($arg:tt)*) => {
        $crate::test_logs::figure(::std::format_args!($($arg)*))
    };
}

/// An append-only log file of an operator process: `logs/<binary>-<pid>-<instance>.jsonl`, or
/// `None` when this process is kept out (or the file cannot be opened, which is printed).
pub(crate) fn process_log(instance: &str) -> Option<BufWriter<File>> {
    if kept_out() {
        return None;
    }
    let path = dir()
        .join("logs")
        .join(format!("{}-{instance}.jsonl", process_tag()));
    match append(&path) {
        Ok(file) => Some(BufWriter::new(file)),
        Err(e) => {
            eprintln!("test logs: cannot write {}: {e}", path.display());
            None
        }
    }
}

/// Appends one record to `secrets/<binary>-<pid>.jsonl`, once per process.
fn record(line: Value) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    if kept_out() {
        return;
    }
    let line = line.to_string();
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    if !seen.get_or_insert_default().insert(line.clone()) {
        return;
    }
    let path = dir()
        .join("secrets")
        .join(format!("{}.jsonl", process_tag()));
    // Held under SEEN's lock: one line at a time.
    if let Err(e) = append(&path).and_then(|mut f| writeln!(f, "{line}")) {
        eprintln!(
            "test logs: cannot record a secret in {}: {e}",
            path.display()
        );
    }
}

/// Records a password or token the tests used.
pub fn record_value(name: &str, value: &str) {
    record(json!({"name": name, "value": value}));
}

/// Records a password that `user` logs in with (also looked for as a Basic header).
pub fn record_login(name: &str, user: &str, password: &str) {
    record(json!({"name": name, "value": password, "user": user}));
}

/// Records a PEM private key the tests used.
pub fn record_key(name: &str, pem: &str) {
    record(json!({"name": name, "private_key": pem}));
}

/// Records what a test writes into key `key` of Secret `secret` that is secret: the value of a
/// key named like a password or token, and every PEM private key in any value.
pub fn record_secret_entry(secret: &str, key: &str, value: &str) {
    let lower = key.to_ascii_lowercase();
    if ["pass", "token", "secret", "apikey", "api-key"]
        .iter()
        .any(|word| lower.contains(word))
    {
        record_value(&format!("Secret {secret} key {key}"), value.trim_end());
    }
    for pem in private_keys(value) {
        record_key(&format!("a private key in Secret {secret} key {key}"), pem);
    }
}

/// The PEM blocks of private keys in `text` (`-----BEGIN ... PRIVATE KEY-----` to its END).
fn private_keys(text: &str) -> Vec<&str> {
    let mut keys = Vec::new();
    let mut rest = text;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let block = &rest[begin..];
        let Some(label_end) = block[11..].find("-----").map(|i| i + 11) else {
            break;
        };
        let label = &block[11..label_end];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = block.find(&end_marker).map(|i| i + end_marker.len()) else {
            break;
        };
        if label.ends_with("PRIVATE KEY") {
            keys.push(&block[..end]);
        }
        rest = &block[end..];
    }
    keys
}

/// Writes the Events and `WebhookCaCertificate`s of `namespace` to `cluster/<namespace>.json`,
/// before the namespace and everything in it is deleted. A failure is printed, never fatal: the
/// test has passed or failed already.
pub(crate) fn dump_namespace(cluster: &Cluster, namespace: &str) {
    if kept_out() {
        return;
    }
    // The in-process log up to the end of the test goes out too.
    if let Err(e) = flush_log() {
        eprintln!("test logs: writing the log failed: {e}");
    }
    let get = |kinds: &str| {
        run(cluster
            .kubectl()
            .args(["get", kinds, "--namespace", namespace, "--output", "json"]))
    };
    // A namespace of a test without the CRD has no WebhookCaCertificates to dump.
    let out = get("events.events.k8s.io,events,webhookcacertificates").or_else(|e| {
        if e.contains("the server doesn't have a resource type") {
            get("events.events.k8s.io,events")
        } else {
            Err(e)
        }
    });
    let path = dir().join("cluster").join(format!("{namespace}.json"));
    let written = out.and_then(|out| {
        fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
            .and_then(|()| fs::write(&path, &out.stdout))
            .map_err(|e| e.to_string())
    });
    if let Err(e) = written {
        eprintln!(
            "test logs: no dump of namespace {namespace} for the secret scan: {}",
            e.lines().next().unwrap_or_default()
        );
    }
}

/// What [`scan_dir`] read and found.
#[derive(Debug, Default)]
pub struct Report {
    pub secret_files: usize,
    /// Distinct secrets scanned for.
    pub secrets: usize,
    /// Recorded values shorter than [`MIN_FORM_LEN`]: they would match by chance.
    pub too_short: usize,
    pub log_files: usize,
    pub log_bytes: u64,
    pub dumps: usize,
    pub dump_bytes: u64,
    /// Events and resources in the dumps.
    pub objects: usize,
    pub findings: Vec<Finding>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} secrets from {} files ({} too short to scan); {} log files, {} bytes; \
             {} namespace dumps, {} bytes, {} objects; {} findings",
            self.secrets,
            self.secret_files,
            self.too_short,
            self.log_files,
            self.log_bytes,
            self.dumps,
            self.dump_bytes,
            self.objects,
            self.findings.len()
        )
    }
}

/// Reads every secret recorded under `dir` and looks for them in every log and namespace dump
/// there. Err: the directory cannot be read, or a line of `secrets/` is not a record the
/// `record_*` functions write.
pub fn scan_dir(dir: &Path) -> Result<Report, String> {
    let mut report = Report::default();
    let mut secrets: Vec<Secret> = Vec::new();
    // The index of each secret by its value: the same password recorded by many tests (and
    // once with its user, for the Basic form) is one secret.
    let mut known: HashMap<String, usize> = HashMap::new();
    for path in files(&dir.join("secrets"))? {
        report.secret_files += 1;
        let text = read(&path)?;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let at = || format!("{} line {}", path.display(), i + 1);
            let record: Value = serde_json::from_str(line).map_err(|e| format!("{}: {e}", at()))?;
            let (value, secret, basic) = match parse_record(&record) {
                Some(Parsed::TooShort) => {
                    report.too_short += 1;
                    continue;
                }
                Some(Parsed::Secret {
                    value,
                    secret,
                    basic,
                }) => (value, secret, basic),
                None => return Err(format!("{}: not a secret record", at())),
            };
            let index = *known.entry(value).or_insert_with(|| {
                secrets.push(secret);
                secrets.len() - 1
            });
            if let Some(basic) = basic {
                secrets[index] = secrets[index]
                    .clone()
                    .with_form("Basic credentials", &basic);
            }
        }
    }
    report.secrets = secrets.len();
    let scanner = Scanner::new(&secrets);
    for path in files(&dir.join("logs"))? {
        let text = read(&path)?;
        report.log_files += 1;
        report.log_bytes += text.len() as u64;
        let place = relative(dir, &path);
        report.findings.extend(
            scanner
                .scan(&place, &text)
                .into_iter()
                .map(|f| at_line(f, &text)),
        );
    }
    for path in files(&dir.join("cluster"))? {
        let text = read(&path)?;
        report.dumps += 1;
        report.dump_bytes += text.len() as u64;
        let place = relative(dir, &path);
        match serde_json::from_str::<Value>(&text) {
            // Each object on its own, named, and serialized as the secrets' JSON-escaped forms
            // are (kubectl escapes `<`, `>` and `&` as \u003c..., which those forms would miss).
            Ok(Value::Object(list)) if list.get("items").is_some_and(Value::is_array) => {
                for item in list["items"].as_array().into_iter().flatten() {
                    report.objects += 1;
                    let name = format!(
                        "{place}: {} {}",
                        item["kind"].as_str().unwrap_or("object"),
                        item["metadata"]["name"].as_str().unwrap_or("?")
                    );
                    report
                        .findings
                        .extend(scanner.scan(&name, &item.to_string()));
                }
            }
            _ => report.findings.extend(
                scanner
                    .scan(&place, &text)
                    .into_iter()
                    .map(|f| at_line(f, &text)),
            ),
        }
    }
    Ok(report)
}

enum Parsed {
    Secret {
        /// What tells it apart from another secret: its value or PEM.
        value: String,
        secret: Secret,
        /// `base64(user:password)` for a password sent in a Basic header.
        basic: Option<String>,
    },
    TooShort,
}

fn parse_record(record: &Value) -> Option<Parsed> {
    let name = record["name"].as_str()?;
    if let Some(pem) = record["private_key"].as_str() {
        return Some(Parsed::Secret {
            // Trimmed: the key found in a Secret's value and the same key as made are one.
            value: pem.trim().to_owned(),
            secret: Secret::pem_key(name, pem),
            basic: None,
        });
    }
    let value = record["value"].as_str()?;
    if value.len() < MIN_FORM_LEN {
        return Some(Parsed::TooShort);
    }
    let basic = record["user"].as_str().map(|user| {
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{user}:{value}"),
        )
    });
    Some(Parsed::Secret {
        value: value.to_owned(),
        secret: Secret::value(name, value),
        basic,
    })
}

/// The files of `dir`, sorted; none when it does not exist (nothing of that kind was written).
fn files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

fn read(path: &Path) -> Result<String, String> {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

/// The finding placed at its line of `text`, for a reader to open the file there.
fn at_line(mut finding: Finding, text: &str) -> Finding {
    let line = text.as_bytes()[..finding.offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1;
    finding.place = format!("{} line {line}", finding.place);
    finding
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::key_pem;

    const PASSWORD: &str = "Planted-Passw0rd!";

    /// A directory as a run leaves it: recorded secrets, a log, a namespace dump, all clean.
    fn clean_run(dir: &Path, key: &str) {
        let secrets = [
            json!({"name": "the login Secret's password", "value": PASSWORD, "user": "admin"}),
            json!({"name": "a bearer token a simulator issued", "value": "eyJhbGciOi.c2Nhbg.sig"}),
            json!({"name": "a private key from certs::key_pem", "private_key": key}),
            json!({"name": "the factory password", "value": "secret"}),
        ];
        let lines: Vec<String> = secrets.iter().map(Value::to_string).collect();
        fs::create_dir_all(dir.join("secrets")).expect("mkdir");
        fs::write(dir.join("secrets/t-1.jsonl"), lines.join("\n") + "\n").expect("write");
        fs::create_dir_all(dir.join("logs")).expect("mkdir");
        fs::write(
            dir.join("logs/t-1.jsonl"),
            "{\"level\":\"DEBUG\",\"message\":\"On-Premises API call\",\"path\":\"/v1/users/login\"}\n\
             {\"level\":\"INFO\",\"message\":\"uploaded\",\"sha256\":\"0b4d9c1e\"}\n",
        )
        .expect("write");
        fs::create_dir_all(dir.join("cluster")).expect("mkdir");
        fs::write(
            dir.join("cluster/wco-a-1.json"),
            dump("Synced", "uploaded 1 certificate"),
        )
        .expect("write");
    }

    fn dump(reason: &str, message: &str) -> String {
        serde_json::to_string_pretty(&json!({"apiVersion": "v1", "kind": "List", "items": [
            {"kind": "Event", "metadata": {"name": "prod.1"}, "reason": reason, "note": message},
            {"kind": "WebhookCaCertificate", "metadata": {"name": "prod"},
             "status": {"conditions": [{"type": "Ready", "reason": reason, "message": message}]}},
        ]}))
        .expect("json")
    }

    #[test]
    fn a_clean_run_passes_and_is_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        clean_run(dir.path(), &key_pem());
        let report = scan_dir(dir.path()).expect("scan");
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!(
            (
                report.secrets,
                report.too_short,
                report.log_files,
                report.dumps,
                report.objects
            ),
            (3, 1, 1, 1, 2),
            "{report}"
        );
    }

    #[test]
    fn a_password_planted_in_a_log_is_found_at_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        clean_run(dir.path(), &key_pem());
        let mut log = append(&dir.path().join("logs/t-1-a.jsonl")).expect("open");
        writeln!(log, "{{\"message\":\"starting\"}}").expect("write");
        writeln!(log, "{{\"message\":\"login\",\"password\":\"{PASSWORD}\"}}").expect("write");
        let report = scan_dir(dir.path()).expect("scan");
        let found: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            ["the login Secret's password (as is) in logs/t-1-a.jsonl line 2 at byte 54"]
        );
        assert!(
            !found[0].contains(PASSWORD),
            "a finding must not show the secret"
        );
    }

    #[test]
    fn a_key_line_planted_in_a_status_and_a_basic_header_in_an_event_are_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = key_pem();
        clean_run(dir.path(), &key);
        let line = key.lines().nth(1).expect("a body line");
        fs::write(
            dir.path().join("cluster/wco-b-2.json"),
            dump("Refused", &format!("refused {line}")),
        )
        .expect("write");
        let basic = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("admin:{PASSWORD}"),
        );
        fs::write(
            dir.path().join("cluster/wco-c-3.json"),
            dump("Unauthorized", &format!("sent Basic {basic}")),
        )
        .expect("write");
        let report = scan_dir(dir.path()).expect("scan");
        let mut found: Vec<(String, String)> = report
            .findings
            .iter()
            .map(|f| (f.secret.clone(), f.place.clone()))
            .collect();
        found.dedup();
        assert_eq!(
            found,
            [
                (
                    "a private key from certs::key_pem".to_owned(),
                    "cluster/wco-b-2.json: Event prod.1".to_owned()
                ),
                (
                    "a private key from certs::key_pem".to_owned(),
                    "cluster/wco-b-2.json: WebhookCaCertificate prod".to_owned()
                ),
                (
                    "the login Secret's password".to_owned(),
                    "cluster/wco-c-3.json: Event prod.1".to_owned()
                ),
                (
                    "the login Secret's password".to_owned(),
                    "cluster/wco-c-3.json: WebhookCaCertificate prod".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn the_private_keys_in_a_secret_value_are_found() {
        let key = key_pem();
        let value = format!("{}{key}", crate::certs::ca_pem("Root"));
        assert_eq!(private_keys(&value), [key.trim_end()]);
        assert_eq!(
            private_keys(&crate::certs::ca_pem("Root")),
            Vec::<&str>::new()
        );
    }
}
