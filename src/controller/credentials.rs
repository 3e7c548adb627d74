//! The operator's own access to the On-Premises API: the login or token Secret and the CA Secret
//! named in `spec.api`. Values are read at the moment they are needed and never logged; errors
//! name the Secret and key only.

use futures::future::BoxFuture;
use kube::Client;

use super::sources::{SourceError, read_secret};
use crate::crd::{ApiCredentials, ApiTls};
use crate::onprem::{CredentialError, CredentialSource, Credentials, TlsTrust};

/// Key of a token Secret when the spec names none.
pub const DEFAULT_TOKEN_KEY: &str = "token";
/// Key of a CA Secret when the spec names none.
pub const DEFAULT_CA_KEY: &str = "ca.crt";

/// Reads the login or token Secret at every call, so a rotated Secret is used by the next login.
pub struct SecretCredentials {
    client: Client,
    namespace: String,
    spec: ApiCredentials,
}

impl SecretCredentials {
    pub fn new(client: Client, namespace: String, spec: ApiCredentials) -> Self {
        Self {
            client,
            namespace,
            spec,
        }
    }

    async fn read(&self) -> Result<Credentials, SourceError> {
        match (&self.spec.login_secret, &self.spec.token_secret) {
            (Some(login), None) => {
                // One read for both keys, so a rotation never pairs an old username with a new
                // password.
                let secret = read_secret(&self.client, &self.namespace, &login.name).await?;
                let username = secret.require_text(&login.username_key)?;
                let password = secret.require_text(&login.password_key)?;
                Ok(Credentials::login(
                    username.trim(),
                    without_line_end(&password),
                ))
            }
            (None, Some(token)) => {
                let key = token.key.as_deref().unwrap_or(DEFAULT_TOKEN_KEY);
                let secret = read_secret(&self.client, &self.namespace, &token.name).await?;
                Ok(Credentials::token(secret.require_text(key)?.trim()))
            }
            _ => Err(SourceError::InvalidCredentialsSpec),
        }
    }
}

/// Drops one trailing line end, which `echo ... > file; kubectl create secret --from-file` adds.
/// Other whitespace may belong to a password and is kept.
fn without_line_end(password: &str) -> &str {
    password
        .strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(password)
}

impl CredentialSource for SecretCredentials {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialError>> {
        Box::pin(async move {
            // SourceError messages name Secrets and keys, never values.
            self.read()
                .await
                .map_err(|e| CredentialError::new(e.to_string()))
        })
    }

    fn location(&self) -> Option<String> {
        let name = match (&self.spec.login_secret, &self.spec.token_secret) {
            (Some(login), _) => &login.name,
            (None, Some(token)) => &token.name,
            (None, None) => return None,
        };
        Some(format!("Secret {}/{name}", self.namespace))
    }
}

/// The TLS trust the spec asks for: caSecret (key default `ca.crt`) -> [`TlsTrust::CaPem`],
/// insecureSkipVerify -> [`TlsTrust::InsecureSkipVerify`], neither -> [`TlsTrust::SystemRoots`].
pub async fn tls_trust(
    client: &Client,
    namespace: &str,
    tls: &ApiTls,
) -> Result<TlsTrust, SourceError> {
    // The schema forbids setting both; if both arrive anyway, verifying is the safe reading.
    if let Some(ca) = &tls.ca_secret {
        let key = ca.key.as_deref().unwrap_or(DEFAULT_CA_KEY);
        let secret = read_secret(client, namespace, &ca.name).await?;
        return Ok(TlsTrust::CaPem(secret.require_pem(key)?));
    }
    Ok(if tls.insecure_skip_verify {
        TlsTrust::InsecureSkipVerify
    } else {
        TlsTrust::SystemRoots
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_line_end_is_dropped_from_a_password() {
        assert_eq!(without_line_end("pw\n"), "pw");
        assert_eq!(without_line_end("pw\r\n"), "pw");
        assert_eq!(without_line_end("pw \n\n"), "pw \n");
        assert_eq!(without_line_end(" pw "), " pw ");
        assert_eq!(without_line_end("pw\r"), "pw\r");
    }
}
