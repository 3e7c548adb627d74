//! Acting as a ServiceAccount: a token from the TokenRequest API.

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

/// A token of ServiceAccount `sa` in `ns`, from the TokenRequest API.
/// Recorded for the secret scan.
pub async fn token_for(client: &Client, ns: &str, sa: &str) -> String {
    let request: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": { "expirationSeconds": 600 }
    }))
    .expect("a literal TokenRequest");
    let token = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {ns}/{sa}: {e}"))
        .status
        .and_then(|s| s.token)
        .expect("token in TokenRequest status");
    crate::test_logs::record_value(&format!("the token of ServiceAccount {ns}/{sa}"), &token);
    token
}
