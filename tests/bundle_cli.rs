//! `webhook-ca-operator bundle build|inspect`, run as a user would: the built binary on files.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest as _, Sha256};
use test_support::certs::{Cert, CertSpec, key_pem};

const BIN: &str = env!("CARGO_BIN_EXE_webhook-ca-operator");

/// A self-signed certificate (rcgen writes the canonical PEM), subject `CN=<name>`.
fn cert(name: &str, is_ca: bool, from: (i32, u8, u8), until: (i32, u8, u8)) -> Cert {
    CertSpec::new(name, is_ca)
        .valid((from, until))
        .self_signed()
}

/// Valid from 2020 to 2090: valid whenever these tests run.
fn ca(name: &str) -> Cert {
    cert(name, true, (2020, 1, 1), (2090, 1, 1))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write fixture");
    path
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("feed stdin");
    drop(input);
    child.wait_with_output().expect("binary ends")
}

fn bundle(args: &[&str]) -> Output {
    run(&[&["bundle"], args].concat(), None)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

#[test]
fn build_prints_the_canonical_bundle_and_its_hash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = ca("Internal CA");
    let b = ca("Partner CA");
    let messy = format!(
        "subject=/CN=Internal CA\r\n{}# partner\r\n{}",
        a.pem.replace('\n', "\r\n"),
        b.pem
    );
    let first = write(dir.path(), "cas.pem", &messy);
    let again = write(dir.path(), "again.pem", &a.pem);

    let out = bundle(&["build", p(&first), p(&again)]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout = text(&out.stdout);
    assert_eq!(stdout, format!("{}{}", a.pem, b.pem));
    let sha = hex::encode(Sha256::digest(stdout.as_bytes()));
    assert!(stderr.contains(&format!("sha256 {sha}")), "{stderr}");
    assert!(stderr.contains("1 duplicate(s) removed"), "{stderr}");
    for line in stderr.lines() {
        assert!(line.starts_with("webhook-ca-operator: "), "{line}");
    }
}

#[test]
fn sorted_order_ignores_the_order_of_the_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = [ca("One"), ca("Two"), ca("Three")];
    let files: Vec<PathBuf> = certs
        .iter()
        .enumerate()
        .map(|(i, c)| write(dir.path(), &format!("{i}.pem"), &c.pem))
        .collect();
    let names: Vec<&str> = files.iter().map(|f| p(f)).collect();
    let reversed: Vec<&str> = names.iter().rev().copied().collect();

    let forward = bundle(&[&["build", "--order", "sorted"], &names[..]].concat());
    let backward = bundle(&[&["build", "--order", "sorted"], &reversed[..]].concat());
    assert_eq!(forward.status.code(), Some(0));
    assert_eq!(forward.stdout, backward.stdout);

    let mut by_fingerprint: Vec<&Cert> = certs.iter().collect();
    by_fingerprint.sort_by(|x, y| x.sha256.cmp(&y.sha256));
    let expected: String = by_fingerprint.iter().map(|c| c.pem.as_str()).collect();
    assert_eq!(text(&forward.stdout), expected);
}

#[test]
fn inspect_json_describes_every_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = ca("Internal CA");
    let leaf = cert("webhook", false, (2020, 1, 1), (2090, 1, 1));
    let file = write(
        dir.path(),
        "chain.pem",
        &format!("{}{}", leaf.pem, root.pem),
    );

    let out = bundle(&["inspect", "--output", "json", p(&file)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["accepted"], true);
    let certs = report["certificates"].as_array().expect("certificates");
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[0]["subject"], "CN=webhook");
    assert_eq!(certs[0]["isCa"], false);
    assert_eq!(certs[0]["sha256"], leaf.sha256.as_str());
    assert_eq!(certs[1]["sha256"], root.sha256.as_str());
    assert_eq!(certs[1]["notAfter"], "2090-01-01T00:00:00Z");
    assert_eq!(certs[1]["source"], p(&file));
    let findings = report["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0]["kind"], "nonCa");
    assert_eq!(findings[0]["action"], "Warn");

    // The same bundle `build` would write.
    let built = bundle(&["build", p(&file)]);
    let sha = hex::encode(Sha256::digest(&built.stdout));
    assert_eq!(report["sha256"], sha.as_str());
}

#[test]
fn inspect_table_shows_subject_expiry_ca_fingerprint_and_source() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = ca("Internal CA");
    let file = write(dir.path(), "ca.pem", &root.pem);
    let out = bundle(&["inspect", "--now", "2089-12-21T00:00:00Z", p(&file)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("CN=Internal CA"))
        .expect("a row for the certificate");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "CN=Internal",
            "CA",
            "2090-01-01T00:00:00Z",
            "11",
            "yes",
            &root.sha256[..16],
            p(&file)
        ]
    );
}

#[test]
fn stdin_is_read_for_dash() {
    let root = ca("Piped CA");
    let out = run(&["bundle", "build", "-"], Some(&root.pem));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), root.pem);
}

#[test]
fn a_key_file_is_refused_by_name_without_echoing_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = ca("Internal CA");
    let key = key_pem();
    let ok = write(dir.path(), "ca.pem", &root.pem);
    let tls = write(dir.path(), "tls.pem", &format!("{}{key}", root.pem));

    for command in ["build", "inspect"] {
        let out = bundle(&[command, p(&ok), p(&tls)]);
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stdout.is_empty(), "{command} printed a bundle");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(p(&tls)), "{stderr}");
        assert!(stderr.contains("private key"), "{stderr}");
        let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
        for window in body.as_bytes().windows(12) {
            let window = String::from_utf8_lossy(window);
            assert!(!stderr.contains(&*window), "stderr holds key material");
        }
    }
}

#[test]
fn an_unreadable_file_is_exit_1_with_the_path_and_the_io_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.pem");
    let out = bundle(&["build", p(&missing)]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!("webhook-ca-operator: {}: ", p(&missing))),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn policy_flags_map_to_refusals_and_warnings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let expired = write(
        dir.path(),
        "old.pem",
        &cert("Old CA", true, (2015, 1, 1), (2020, 1, 1)).pem,
    );
    let leaf = write(
        dir.path(),
        "leaf.pem",
        &cert("leaf", false, (2020, 1, 1), (2090, 1, 1)).pem,
    );

    let refused = bundle(&["build", p(&expired)]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("refused"));
    assert!(refused.stdout.is_empty());

    let allowed = bundle(&["build", "--allow-expired", p(&expired)]);
    assert_eq!(allowed.status.code(), Some(0));
    assert!(text(&allowed.stderr).contains("warning"));
    assert!(!allowed.stdout.is_empty());

    // --now moves the judgement: in 2019 the certificate was valid.
    let then = bundle(&["build", "--now", "2019-06-01T00:00:00Z", p(&expired)]);
    assert_eq!(then.status.code(), Some(0), "{}", text(&then.stderr));

    assert_eq!(bundle(&["build", p(&leaf)]).status.code(), Some(0));
    assert_eq!(
        bundle(&["build", "--require-ca", p(&leaf)]).status.code(),
        Some(1)
    );
    assert_eq!(
        bundle(&["build", "--non-ca", "refuse", p(&leaf)])
            .status
            .code(),
        Some(1)
    );

    // inspect lists what build would refuse, then exits 1.
    let inspected = bundle(&["inspect", p(&expired)]);
    assert_eq!(inspected.status.code(), Some(1));
    assert!(text(&inspected.stdout).contains("CN=Old CA"));
}

#[test]
fn an_empty_file_is_refused_not_turned_into_an_empty_bundle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = write(dir.path(), "empty.pem", "");
    let out = bundle(&["build", p(&empty)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("no certificate"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(bundle(&["build"]).status.code(), Some(2));
    assert_eq!(
        bundle(&["build", "--order", "random", "x"]).status.code(),
        Some(2)
    );
    assert_eq!(bundle(&["build", "-", "-"]).status.code(), Some(2));
    assert_eq!(
        bundle(&["build", "--allow-expired", "--expired", "refuse", "x"])
            .status
            .code(),
        Some(2)
    );
}
