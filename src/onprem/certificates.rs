//! `GET/POST/DELETE /v1/certificates/webhooks/ca`: the stored webhook CA bundle.

use reqwest::Method;

use super::client::{Call, OnPremClient};
use super::error::{ApiError, CallKind, ErrorBody, parse_error_body};

pub const WEBHOOK_CA_PATH: &str = "/v1/certificates/webhooks/ca";
/// Exactly this, no `charset` parameter: the webapp compares the string and answers 400/1009
/// to `text/plain; charset=utf-8`.
pub const UPLOAD_CONTENT_TYPE: &str = "text/plain";
/// The code of the API's JSON "not found" answer.
const CODE_NOT_FOUND: i64 = 1006;

/// What a DELETE found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// 2xx: a bundle was stored (or the API does not say) and is gone now.
    Deleted,
    /// 404: nothing was stored.
    NothingStored,
}

/// Whether a 404 body is the API's "no bundle stored": empty (as documented) or a JSON envelope
/// with code 1006 (as the webapp code does). Anything else, an HTML page from an ingress say,
/// means the URL does not reach the endpoint, which must not pass for "nothing stored".
pub fn is_nothing_stored(body: &[u8]) -> bool {
    match parse_error_body(body) {
        ErrorBody::Empty => true,
        ErrorBody::Envelope(errors) => errors
            .first()
            .is_none_or(|e| e.code == Some(CODE_NOT_FOUND)),
        ErrorBody::Other(_) => false,
    }
}

/// Reads a successful GET body as the stored PEM text. An empty 200 is read as "nothing stored".
pub fn stored_bundle(body: &[u8]) -> Result<Option<String>, &'static str> {
    let text = std::str::from_utf8(body).map_err(|_| "the stored bundle is not UTF-8 text")?;
    if text.trim().is_empty() {
        Ok(None)
    } else {
        Ok(Some(text.to_owned()))
    }
}

impl OnPremClient {
    /// The stored webhook CA bundle as the API returns it, or `None` when none is stored.
    pub async fn get_webhook_ca(&self) -> Result<Option<String>, ApiError> {
        let call = Call {
            method: Method::GET,
            path: WEBHOOK_CA_PATH,
            body: None,
            accept_not_found: true,
        };
        let answer = self.call(&call).await?;
        if answer.status == 404 {
            return if is_nothing_stored(&answer.body) {
                Ok(None)
            } else {
                Err(answer.into_error(CallKind::Api, &call))
            };
        }
        match stored_bundle(&answer.body) {
            Ok(stored) => Ok(stored),
            Err(message) => Err(answer.invalid(&call, message)),
        }
    }

    /// Stores `pem` as the webhook CA bundle, replacing any stored one. The coreapp nodes must be
    /// restarted afterwards for it to take effect. An empty bundle is refused without a request:
    /// removing the bundle is [`OnPremClient::delete_webhook_ca`].
    pub async fn upload_webhook_ca(&self, pem: &str) -> Result<(), ApiError> {
        if pem.trim().is_empty() {
            return Err(ApiError::Config(
                "refusing to upload an empty bundle; delete it instead".into(),
            ));
        }
        let call = Call {
            method: Method::POST,
            path: WEBHOOK_CA_PATH,
            body: Some((UPLOAD_CONTENT_TYPE, pem.as_bytes().to_vec())),
            accept_not_found: false,
        };
        // Any 2xx body (`null`, `{}`, `{"meta":...}`, empty) means stored.
        self.call(&call).await.map(drop)
    }

    /// Deletes the stored bundle. 404 counts as success: the goal state is reached either way.
    pub async fn delete_webhook_ca(&self) -> Result<DeleteOutcome, ApiError> {
        let call = Call {
            method: Method::DELETE,
            path: WEBHOOK_CA_PATH,
            body: None,
            accept_not_found: true,
        };
        let answer = self.call(&call).await?;
        Ok(if answer.status == 404 {
            DeleteOutcome::NothingStored
        } else {
            DeleteOutcome::Deleted
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_documented_not_found_answers_mean_nothing_stored() {
        assert!(is_nothing_stored(b""));
        assert!(is_nothing_stored(b"null"));
        assert!(is_nothing_stored(
            br#"{"meta":{"version":"v2"},"errors":[{"code":1006,"title":"Resource not found"}]}"#
        ));
        assert!(is_nothing_stored(br#"{"meta":{"version":"v2"}}"#));
    }

    #[test]
    fn foreign_not_found_answers_do_not_pass_for_nothing_stored() {
        assert!(!is_nothing_stored(
            b"<html><body>404 Not Found</body></html>"
        ));
        assert!(!is_nothing_stored(
            br#"{"errors":[{"code":1005,"title":"Access denied"}]}"#
        ));
    }

    #[test]
    fn stored_bundle_is_returned_verbatim_and_empty_means_none() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert_eq!(stored_bundle(pem.as_bytes()), Ok(Some(pem.to_owned())));
        assert_eq!(stored_bundle(b""), Ok(None));
        assert_eq!(stored_bundle(b" \n"), Ok(None));
        assert!(stored_bundle(&[0xff, 0xfe]).is_err());
    }
}
