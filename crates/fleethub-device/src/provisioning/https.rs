//! DPS over HTTPS (docs/protocol-notes.md, "DPS HTTPS API"): PUT register -> 202 + Retry-After -> GET operation
//! status until done, on one keep-alive connection, the same SAS token on every request. The
//! connection is driven by this task ([`InTaskConnection`]): no connection task, no hand-offs.

use std::time::Duration;

use http::Method;

use super::{Next, ProvisioningClient, ProvisioningError, RegistrationResult, interpret};
use crate::https::{HttpsRequest, InTaskConnection};
use fleethub_iot_protocol::dps;

/// Bound on closing the connection at the end (TLS `close_notify`).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) async fn register(
    client: &ProvisioningClient,
) -> Result<RegistrationResult, ProvisioningError> {
    // The overall timeout bounds the whole flow; no separate per-request bound.
    let mut http = InTaskConnection::new(client.tls.clone(), &client.host, client.port);
    let result = flow(client, &mut http).await;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, http.close()).await;
    result
}

async fn flow(
    client: &ProvisioningClient,
    http: &mut InTaskConnection,
) -> Result<RegistrationResult, ProvisioningError> {
    let authority = if client.host.contains(':') && !client.host.starts_with('[') {
        format!("[{}]:{}", client.host, client.port)
    } else {
        format!("{}:{}", client.host, client.port)
    };
    let token = client.sas_token()?;
    let register_body = client.registration_body(false);
    let mut operation: Option<String> = None;
    loop {
        let request = match &operation {
            None => HttpsRequest::from_parts(
                Method::PUT,
                authority.clone(),
                dps::register_path(&client.id_scope, &client.registration_id),
            )
            .json(&register_body)?,
            Some(op) => HttpsRequest::from_parts(
                Method::GET,
                authority.clone(),
                dps::operation_status_path(&client.id_scope, &client.registration_id, op),
            ),
        }
        .header("Authorization", token.clone())
        .header("Accept", "application/json");
        let response = http.send(&request).await?;
        let retry_after = response
            .header("retry-after")
            .and_then(dps::parse_retry_after);
        match interpret(
            response.status.as_u16(),
            &response.body,
            retry_after,
            &client.poll,
        )? {
            Next::Done(result) => return Ok(*result),
            Next::Poll {
                operation_id,
                after,
            } => {
                tokio::time::sleep(after).await;
                operation = Some(operation_id);
            }
            Next::Retry { after } => {
                tracing::debug!(status = %response.status, ?after, "DPS asked to retry");
                tokio::time::sleep(after).await;
            }
        }
    }
}
