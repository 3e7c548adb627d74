//! Running the cluster's command-line tools and reporting their failures readably.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `cmd` and returns its output, or a message with the command line, status and output.
pub fn run(cmd: &mut Command) -> Result<Output, String> {
    let line = command_line(cmd);
    let out = cmd
        .output()
        .map_err(|e| format!("could not run `{line}`: {e}"))?;
    checked(&line, out)
}

/// Like [`run`], with `input` written to the command's stdin.
pub fn run_with_input(cmd: &mut Command, input: &str) -> Result<Output, String> {
    let line = command_line(cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run `{line}`: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // Dropping `stdin` afterwards closes it, which tells the tool the input is complete.
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("writing the input of `{line}`: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for `{line}`: {e}"))?;
    checked(&line, out)
}

/// Runs `cmd`, panics with its output when it fails, and returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    match run(cmd) {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(msg) => panic!("{msg}"),
    }
}

fn checked(line: &str, out: Output) -> Result<Output, String> {
    if out.status.success() {
        return Ok(out);
    }
    Err(format!(
        "`{line}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
