//! The API client of a resource: TLS trust from its CA Secret, credentials from its login or
//! token Secret, kept across passes so that its login token is reused.

use std::sync::Arc;

use super::credentials::{SecretCredentials, tls_trust};
use super::status::{INSECURE_TLS, UPLOADED, Verdict};
use super::step::{Pass, StepFailure};
use crate::crd::ApiTarget;
use crate::onprem::{ClientConfig, OnPremClient, RequestObserver, TlsTrust};

/// The client for `wcc`'s API, and the `InsecureTls` condition its TLS settings earn.
pub async fn connect(pass: &Pass<'_>) -> Result<(OnPremClient, Verdict), StepFailure> {
    let Pass {
        ctx,
        namespace,
        key,
        ..
    } = pass;
    let target = &pass.wcc.spec.api;
    let trust = tls_trust(&ctx.client, namespace, &target.tls)
        .await
        .map_err(StepFailure::mapper(UPLOADED))?;
    let insecure = if matches!(trust, TlsTrust::InsecureSkipVerify) {
        Verdict::new(
            INSECURE_TLS,
            true,
            "InsecureSkipVerify",
            "TLS verification of the API is disabled: anyone on the path can read the credentials",
        )
    } else {
        Verdict::new(
            INSECURE_TLS,
            false,
            "Verified",
            "the API's certificate is verified",
        )
    };
    let settings_key = client_settings_key(target, &trust);
    let client = ctx
        .api_client(key, &settings_key, || {
            let mut config = ClientConfig::new(target.url.clone(), trust.clone());
            config.allow_plain_http = target.allow_plain_http;
            config.request_timeout = target.timeout();
            config.retry = ctx.settings.api_retry.clone();
            config.limiter = Some(Arc::clone(&ctx.limiter));
            config.transports = Some(Arc::clone(&ctx.transports));
            let observer: Arc<dyn RequestObserver> = ctx.metrics.clone();
            config.observer = Some(observer);
            let credentials = SecretCredentials::new(
                ctx.client.clone(),
                (*namespace).to_owned(),
                target.credentials.clone(),
            );
            OnPremClient::new(config, Arc::new(credentials))
        })
        .map_err(StepFailure::mapper(UPLOADED))?;
    Ok((client, insecure))
}

/// Everything that, when changed, needs a new client (and a new login).
fn client_settings_key(target: &ApiTarget, trust: &TlsTrust) -> String {
    let trust = match trust {
        TlsTrust::SystemRoots => "system".to_owned(),
        TlsTrust::InsecureSkipVerify => "insecure".to_owned(),
        TlsTrust::CaPem(pem) => crate::bundle::canonicalize(pem)
            .map(|c| c.sha256)
            .unwrap_or_else(|_| format!("raw:{}", pem.len())),
    };
    let credentials = serde_json::to_string(&target.credentials).unwrap_or_default();
    format!(
        "{}|{}|{:?}|{trust}|{credentials}",
        target.url, target.allow_plain_http, target.timeout
    )
}
