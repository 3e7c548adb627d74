//! File input and stdout output shared by the subcommands that read PEM files (`bundle`,
//! `api push`): `-` means standard input, every read error names its file.

use std::io::{self, Read as _, Write as _};
use std::path::PathBuf;

/// The file name that stands for standard input.
pub const STDIN: &str = "-";
/// How standard input is named in messages and as a bundle source.
pub const STDIN_SOURCE: &str = "<stdin>";

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: {source}")]
    Read { path: String, source: io::Error },
    /// A usage error: the second read would only see an empty stream.
    #[error("standard input (-) is named more than once")]
    StdinTwice,
}

/// Each named file as (source name, text). Bytes that are not UTF-8 (a DER file, a stray
/// binary) become U+FFFD, which the PEM scanner ignores like any other text outside blocks.
pub async fn read_sources(files: &[PathBuf]) -> Result<Vec<(String, String)>, InputError> {
    if files.iter().filter(|f| f.as_os_str() == STDIN).count() > 1 {
        return Err(InputError::StdinTwice);
    }
    let mut sources = Vec::with_capacity(files.len());
    for file in files {
        let (name, read) = if file.as_os_str() == STDIN {
            // Blocking is fine here: nothing else runs while a CLI reads its input, and the
            // crate's tokio has no io-std feature.
            let mut bytes = Vec::new();
            let read = io::stdin().lock().read_to_end(&mut bytes);
            (STDIN_SOURCE.to_owned(), read.map(|_| bytes))
        } else {
            (file.display().to_string(), tokio::fs::read(file).await)
        };
        let bytes = read.map_err(|source| InputError::Read {
            path: name.clone(),
            source,
        })?;
        sources.push((name, String::from_utf8_lossy(&bytes).into_owned()));
    }
    Ok(sources)
}

/// Writes all of `text` to stdout and flushes, so that a closed pipe is an error the caller
/// turns into an exit code rather than a panic in `print!`.
pub fn write_stdout(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}
