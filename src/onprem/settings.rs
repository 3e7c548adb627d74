//! `GET /v1/settings/application`: where the installation's webhook URL is configured.

use reqwest::Method;
use serde_json::Value;

use super::client::{Call, OnPremClient};
use super::error::ApiError;

pub const APPLICATION_SETTINGS_PATH: &str = "/v1/settings/application";

/// The webhook URL in an application settings answer: `settings.application.webhooks.url`, or
/// `webhooks.url` at the top (older versions answer the application object unwrapped). `None`
/// when no webhook is configured (the key absent, null or empty). The error names what was
/// wrong, never quotes the body.
pub fn parse_webhook_url(body: &[u8]) -> Result<Option<String>, &'static str> {
    let value: Value =
        serde_json::from_slice(body).map_err(|_| "application settings are not JSON")?;
    let application = value
        .get("settings")
        .and_then(|s| s.get("application"))
        .or_else(|| value.get("application"))
        .unwrap_or(&value);
    if !application.is_object() {
        return Err("application settings are not a JSON object");
    }
    let url = match application.get("webhooks").and_then(|w| w.get("url")) {
        None | Some(Value::Null) => None,
        Some(Value::String(url)) => Some(url.trim()),
        Some(_) => return Err("webhooks.url is not a string"),
    };
    Ok(url.filter(|u| !u.is_empty()).map(str::to_owned))
}

impl OnPremClient {
    /// The webhook URL configured in the application settings (admin only: a regular user gets
    /// 403), `None` when none is.
    pub async fn webhook_url(&self) -> Result<Option<String>, ApiError> {
        let call = Call {
            method: Method::GET,
            path: APPLICATION_SETTINGS_PATH,
            body: None,
            accept_not_found: false,
        };
        let answer = self.call(&call).await?;
        match parse_webhook_url(&answer.body) {
            Ok(url) => Ok(url),
            Err(message) => Err(answer.invalid(&call, message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_form_of_the_webhook_url() {
        let wrapped = br#"{"settings":{"application":{"webhooks":{"url":"https://hooks.example:8443/wa","max_concurrent_requests":12},"callback_persist":true}},"meta":{"version":"v2"}}"#;
        assert_eq!(
            parse_webhook_url(wrapped).unwrap().as_deref(),
            Some("https://hooks.example:8443/wa")
        );
        let bare = br#"{"webhooks":{"url":"https://hooks.example/"},"callback_persist":true}"#;
        assert_eq!(
            parse_webhook_url(bare).unwrap().as_deref(),
            Some("https://hooks.example/")
        );
        let plain = br#"{"application":{"webhooks":{"url":"http://hooks.example/"}}}"#;
        assert_eq!(
            parse_webhook_url(plain).unwrap().as_deref(),
            Some("http://hooks.example/")
        );
        for none in [
            &br#"{"settings":{"application":{"webhooks":{"url":""}}}}"#[..],
            br#"{"settings":{"application":{"webhooks":{"url":null}}}}"#,
            br#"{"settings":{"application":{"webhooks":{}}}}"#,
            br#"{"settings":{"application":{"callback_persist":true}}}"#,
            br#"{"callback_persist":true}"#,
        ] {
            assert_eq!(parse_webhook_url(none).unwrap(), None);
        }
    }

    #[test]
    fn garbage_is_an_error_that_does_not_quote_the_body() {
        let err = parse_webhook_url(b"<html>secret-token</html>").unwrap_err();
        assert!(!err.contains("secret"));
        assert!(parse_webhook_url(br#"{"webhooks":{"url":42}}"#).is_err());
        assert!(parse_webhook_url(br#"[1,2]"#).is_err());
    }
}
