//! The secret scan after the tests (issue 12): every password, token and private key the tests
//! recorded is looked for in every log and namespace dump they left in `$WCO_TEST_LOGS`
//! (default `target/test-logs`; see `test_support::test_logs`). Prints what it read and each
//! finding (the secret's name and the place, never the value); exits 1 on a finding, 2 when
//! the files cannot be read or there is nothing to scan (`--allow-empty`: a run of a few tests,
//! such as `hack/test.sh --test api`, may leave nothing).

use std::process::ExitCode;

use test_support::test_logs::{dir, scan_dir};

fn main() -> ExitCode {
    let allow_empty = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => false,
        [flag] if flag == "--allow-empty" => true,
        _ => {
            eprintln!("usage: scan-test-logs [--allow-empty]");
            return ExitCode::from(2);
        }
    };
    let dir = dir();
    let report = match scan_dir(&dir) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("scan-test-logs: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!("scan-test-logs: {}: {report}", dir.display());
    // A scan of nothing would pass whatever the tests showed: the tests must have run first.
    if !allow_empty && (report.secrets == 0 || report.log_files + report.dumps == 0) {
        eprintln!(
            "scan-test-logs: nothing to scan in {}: run the tests first",
            dir.display()
        );
        return ExitCode::from(2);
    }
    if report.findings.is_empty() {
        return ExitCode::SUCCESS;
    }
    for finding in &report.findings {
        eprintln!("scan-test-logs: secret shown: {finding}");
    }
    ExitCode::FAILURE
}
