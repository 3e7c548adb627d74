//! A tolerant PEM scanner for text as people really keep it: CRLF or CR line ends, prose before,
//! between and after blocks, indented or re-wrapped base64, a whole block on one line.
//!
//! A block is `-----BEGIN <label>-----`, a body, `-----END <label>-----`, found anywhere in the
//! text; what lies outside blocks is ignored. Nothing here echoes the text it reads: errors carry
//! block positions and (sanitized) labels only.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const BEGIN: &str = "-----BEGIN";
const END: &str = "-----END";
const DASHES: &str = "-----";

/// RFC 7468 §5.1: generators write `CERTIFICATE`, parsers may also accept the two legacy labels.
const CERTIFICATE_LABELS: [&str; 3] = ["CERTIFICATE", "X509 CERTIFICATE", "X.509 CERTIFICATE"];

/// Missing or extra `=` padding is a copy-and-paste accident, not a different certificate.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How far after `-----BEGIN` or `-----END` a private key label is looked for.
const MAX_LABEL_SCAN: usize = 200;

/// Longest label shown in an error; anything longer is not a label a person wrote.
const MAX_SHOWN_LABEL: usize = 40;

/// Why a text is not usable PEM. Positions are 1-based block numbers within one text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("block {index}: the BEGIN line does not end with -----")]
    MalformedBegin { index: usize },
    #[error("block {index} ({label}): no END line before the text ends or the next block begins")]
    Unterminated { index: usize, label: String },
    #[error("block {index} ({label}): the END line does not end with -----")]
    MalformedEnd { index: usize, label: String },
    #[error("block {index} ({label}): the END line names another label ({found})")]
    MismatchedEnd {
        index: usize,
        label: String,
        found: String,
    },
    #[error("block {index} ({label}): invalid base64 on line {line} of the block")]
    InvalidBase64Character {
        index: usize,
        label: String,
        line: usize,
    },
    #[error("block {index} ({label}): base64 is truncated or badly padded")]
    InvalidBase64Length { index: usize, label: String },
    #[error("block {index} ({label}): the block is empty")]
    EmptyBlock { index: usize, label: String },
}

/// One `BEGIN`/`END` block of a text, not yet decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Block<'a> {
    /// 1-based position among all blocks of the text.
    pub index: usize,
    pub label: &'a str,
    body: &'a str,
}

impl Block<'_> {
    pub fn is_certificate(&self) -> bool {
        CERTIFICATE_LABELS.contains(&self.label)
    }

    /// The label as it may appear in a message.
    pub fn shown_label(&self) -> String {
        shown_label(self.label)
    }

    /// The DER bytes of the body. Whitespace anywhere in the body is skipped.
    pub fn decode(&self) -> Result<Vec<u8>, PemError> {
        let label = || self.shown_label();
        let mut compact = String::with_capacity(self.body.len());
        // Lines count from the BEGIN line, which is line 0; CRLF, LF and a lone CR each end one.
        let mut line = 0;
        let mut chars = self.body.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\n' || (c == '\r' && chars.peek() != Some(&'\n')) {
                line += 1;
            } else if c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=') {
                compact.push(c);
            } else if !c.is_whitespace() {
                return Err(PemError::InvalidBase64Character {
                    index: self.index,
                    label: label(),
                    line,
                });
            }
        }
        if compact.is_empty() {
            return Err(PemError::EmptyBlock {
                index: self.index,
                label: label(),
            });
        }
        LENIENT_BASE64
            .decode(compact.as_bytes())
            .map_err(|_| PemError::InvalidBase64Length {
                index: self.index,
                label: label(),
            })
    }
}

/// Every block of `text`, in order. Text outside blocks is ignored; a block that starts but is
/// not closed properly is an error, since it usually means a truncated or mangled copy.
pub(crate) fn scan(text: &str) -> Result<Vec<Block<'_>>, PemError> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(begin) = rest.find(BEGIN) {
        let index = blocks.len() + 1;
        let after_begin = &rest[begin + BEGIN.len()..];
        let label_len = line_label_len(after_begin).ok_or(PemError::MalformedBegin { index })?;
        let label = after_begin[..label_len].trim();
        let after_label = &after_begin[label_len + DASHES.len()..];

        let unterminated = || PemError::Unterminated {
            index,
            label: shown_label(label),
        };
        let end = after_label.find(END).ok_or_else(unterminated)?;
        let body = &after_label[..end];
        if body.contains(BEGIN) {
            return Err(unterminated());
        }

        let after_end = &after_label[end + END.len()..];
        let end_label_len = line_label_len(after_end).ok_or_else(|| PemError::MalformedEnd {
            index,
            label: shown_label(label),
        })?;
        let end_label = after_end[..end_label_len].trim();
        if end_label != label {
            return Err(PemError::MismatchedEnd {
                index,
                label: shown_label(label),
                found: shown_label(end_label),
            });
        }

        blocks.push(Block { index, label, body });
        rest = &after_end[end_label_len + DASHES.len()..];
    }
    Ok(blocks)
}

/// Whether `text` holds anything that looks like a private key block, even a malformed or
/// truncated one, in any letter case. Checked before anything else so that a key is refused as a
/// key, never reported as "bad PEM" with details about it.
pub(crate) fn mentions_private_key(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    [BEGIN, END].iter().any(|marker| {
        upper.match_indices(marker).any(|(at, _)| {
            // Bounded so that a long line full of markers costs linear time, not quadratic.
            let after = &upper.as_bytes()[at + marker.len()..];
            let window = &after[..after.len().min(MAX_LABEL_SCAN)];
            let line = window
                .split(|&b| b == b'\n' || b == b'\r')
                .next()
                .unwrap_or_default();
            let line = String::from_utf8_lossy(line);
            let label = line.find(DASHES).map_or(&*line, |end| &line[..end]);
            is_private_key_label(label)
        })
    })
}

/// Whether a block label names a private key of any kind (`PRIVATE KEY`, `RSA PRIVATE KEY`,
/// `ENCRYPTED PRIVATE KEY`, `OPENSSH PRIVATE KEY`, ...), whatever its case and spacing.
pub(crate) fn is_private_key_label(label: &str) -> bool {
    let words: Vec<String> = label
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect();
    words.join(" ").contains("PRIVATE KEY")
}

/// Appends `der` to `out` in the canonical form: RFC 7468 strict, 64-column base64, LF only.
pub(crate) fn push_certificate(out: &mut String, der: &[u8]) {
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for (i, c) in STANDARD.encode(der).chars().enumerate() {
        if i > 0 && i % 64 == 0 {
            out.push('\n');
        }
        out.push(c);
    }
    out.push_str("\n-----END CERTIFICATE-----\n");
}

/// Length of the label that starts `after` (the text right after `-----BEGIN` or `-----END`):
/// up to the closing dashes, which must be on the same line.
fn line_label_len(after: &str) -> Option<usize> {
    let len = after.find(DASHES)?;
    (!after[..len].contains(['\n', '\r'])).then_some(len)
}

/// A label is shown only when it looks like one (short, printable ASCII), so that an error can
/// never carry a line of whatever text happened to follow a stray `-----BEGIN`.
fn shown_label(label: &str) -> String {
    let looks_like_label = label.len() <= MAX_SHOWN_LABEL
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '-' | '_'));
    if looks_like_label {
        label.to_owned()
    } else {
        "unreadable label".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(text: &str) -> Vec<String> {
        scan(text)
            .expect("scans")
            .iter()
            .map(|b| b.label.to_owned())
            .collect()
    }

    #[test]
    fn finds_blocks_between_prose_with_any_line_ends() {
        let text = "Subject: x\r\n-----BEGIN CERTIFICATE-----\r\nAAEC\r\n-----END CERTIFICATE-----\r\n\
                    # comment\r-----BEGIN X509 CRL-----\rAAEC\r-----END X509 CRL-----\rtrailing";
        assert_eq!(labels(text), ["CERTIFICATE", "X509 CRL"]);
    }

    #[test]
    fn decodes_indented_rewrapped_and_one_line_blocks() {
        let indented = "  -----BEGIN CERTIFICATE-----\n    AA\n    EC\n  -----END CERTIFICATE-----";
        let one_line = "-----BEGIN CERTIFICATE----- AAEC -----END CERTIFICATE-----";
        let unpadded = "-----BEGIN CERTIFICATE-----\nAAE\n-----END CERTIFICATE-----";
        for text in [indented, one_line] {
            let blocks = scan(text).expect("scans");
            assert_eq!(blocks[0].decode().expect("decodes"), [0, 1, 2]);
        }
        assert_eq!(
            scan(unpadded).expect("scans")[0].decode().expect("decodes"),
            [0, 1]
        );
    }

    #[test]
    fn legacy_certificate_labels_count_as_certificates_and_trusted_does_not() {
        let text = "-----BEGIN X509 CERTIFICATE-----\nAA==\n-----END X509 CERTIFICATE-----\n\
                    -----BEGIN TRUSTED CERTIFICATE-----\nAA==\n-----END TRUSTED CERTIFICATE-----\n";
        let kinds: Vec<bool> = scan(text)
            .expect("scans")
            .iter()
            .map(Block::is_certificate)
            .collect();
        assert_eq!(kinds, [true, false]);
    }

    #[test]
    fn reports_truncated_and_mismatched_blocks_by_position() {
        let ok = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
        let truncated = format!("{ok}-----BEGIN CERTIFICATE-----\nAAAA\n");
        assert_eq!(
            scan(&truncated),
            Err(PemError::Unterminated {
                index: 2,
                label: "CERTIFICATE".into()
            })
        );
        let begins_again = format!("-----BEGIN CERTIFICATE-----\nAAAA\n{ok}");
        assert!(matches!(
            scan(&begins_again),
            Err(PemError::Unterminated { index: 1, .. })
        ));
        let mismatched = "-----BEGIN CERTIFICATE-----\nAA==\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            scan(mismatched),
            Err(PemError::MismatchedEnd { index: 1, ref found, .. }) if found == "PUBLIC KEY"
        ));
        assert_eq!(
            scan("text\n-----BEGIN CERTIF"),
            Err(PemError::MalformedBegin { index: 1 })
        );
    }

    #[test]
    fn bad_base64_names_the_line_not_the_character() {
        for text in [
            "-----BEGIN CERTIFICATE-----\nAAAA\nAA*A\n-----END CERTIFICATE-----",
            "-----BEGIN CERTIFICATE-----\r\nAAAA\r\nAA*A\r\n-----END CERTIFICATE-----",
            "-----BEGIN CERTIFICATE-----\rAAAA\rAA*A\r-----END CERTIFICATE-----",
        ] {
            let err = scan(text).expect("scans")[0]
                .decode()
                .expect_err("bad base64");
            let expected = PemError::InvalidBase64Character {
                index: 1,
                label: "CERTIFICATE".into(),
                line: 2,
            };
            assert_eq!(err, expected, "{text:?}");
        }
        let short = "-----BEGIN CERTIFICATE-----\nAAAAA\n-----END CERTIFICATE-----";
        assert!(matches!(
            scan(short).expect("scans")[0].decode(),
            Err(PemError::InvalidBase64Length { .. })
        ));
        let empty = "-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----";
        assert!(matches!(
            scan(empty).expect("scans")[0].decode(),
            Err(PemError::EmptyBlock { .. })
        ));
    }

    #[test]
    fn private_keys_are_spotted_in_any_shape() {
        for text in [
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            "x -----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n",
            "-----begin encrypted private key-----",
            "-----BEGIN  OPENSSH   PRIVATE KEY-----",
            "AAAA\n-----END EC PRIVATE KEY-----\n",
        ] {
            assert!(mentions_private_key(text), "{text:?}");
        }
        for text in [
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
            "keep the PRIVATE KEY out of here\n-----BEGIN CERTIFICATE-----\n",
        ] {
            assert!(!mentions_private_key(text), "{text:?}");
        }
    }

    #[test]
    fn odd_labels_are_not_shown() {
        let text = format!("-----BEGIN {}-----\nAA\n-----END X-----", "Z".repeat(80));
        assert!(matches!(
            scan(&text),
            Err(PemError::MismatchedEnd { ref label, .. }) if label == "unreadable label"
        ));
    }

    #[test]
    fn canonical_lines_are_64_columns() {
        let mut out = String::new();
        push_certificate(&mut out, &[7; 100]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.first(), Some(&"-----BEGIN CERTIFICATE-----"));
        assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
        let widths: Vec<usize> = lines[1..lines.len() - 1].iter().map(|l| l.len()).collect();
        // 100 bytes are 136 base64 characters.
        assert_eq!(widths, [64, 64, 8]);
        assert!(out.ends_with('\n') && !out.contains('\r'));
    }
}
