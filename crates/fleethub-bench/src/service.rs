//! The slice of the DPS service REST API the benchmark needs: create and delete one
//! symmetric-key enrollment group, authenticated with a service SAS token
//! (`sr = HostName`, `skn = SharedAccessKeyName`) from the service connection string.

use anyhow::{Context, bail};
use fleethub_api::{AttestationMechanism, EnrollmentGroup};
use fleethub_core::connection_string::ConnectionString;
use fleethub_device::{ClientTlsConfig, HttpsClient, HttpsRequest, HttpsResponse};
use http::Method;

/// api-version sent to the service API (what the Node service SDK sends).
pub const SERVICE_API_VERSION: &str = "2021-10-01";
const TOKEN_TTL_SECS: u64 = 3600;

/// DPS service API client for enrollment groups.
pub struct DpsService {
    http: HttpsClient,
    /// `host:port` dialled.
    authority: String,
    host_name: String,
    key_name: String,
    key: String,
}

impl DpsService {
    /// `dps_host:service_port` is dialled; the token is for the connection string's `HostName`.
    pub fn new(
        tls: ClientTlsConfig,
        dps_host: &str,
        service_port: u16,
        connection_string: &str,
    ) -> anyhow::Result<Self> {
        let cs = ConnectionString::parse(connection_string)
            .context("invalid DPS service connection string")?;
        let key_name = cs
            .shared_access_key_name
            .context("the DPS service connection string has no SharedAccessKeyName")?;
        let key = cs
            .shared_access_key
            .context("the DPS service connection string has no SharedAccessKey")?;
        Ok(DpsService {
            http: HttpsClient::new(tls),
            authority: format!("{dps_host}:{service_port}"),
            host_name: cs.host_name,
            key_name,
            key,
        })
    }

    fn token(&self) -> anyhow::Result<String> {
        let expiry = fleethub_core::time_util::now_unix() + TOKEN_TTL_SECS;
        fleethub_core::sas::build_token(&self.host_name, &self.key, expiry, Some(&self.key_name))
            .context("cannot sign a service SAS token with the connection string's key")
    }

    fn request(&self, method: Method, group_id: &str) -> anyhow::Result<HttpsRequest> {
        Ok(HttpsRequest::from_parts(
            method,
            self.authority.clone(),
            format!("/enrollmentGroups/{group_id}?api-version={SERVICE_API_VERSION}"),
        )
        .header("Authorization", self.token()?)
        .header("Accept", "application/json"))
    }

    /// `PUT /enrollmentGroups/{id}`: an enabled symmetric-key group with the given keys.
    pub async fn create_group(
        &self,
        group_id: &str,
        primary_key: &str,
        secondary_key: &str,
    ) -> anyhow::Result<()> {
        let group = EnrollmentGroup {
            enrollment_group_id: group_id.to_string(),
            attestation: AttestationMechanism::symmetric(
                primary_key.to_string(),
                secondary_key.to_string(),
            ),
            provisioning_status: Some("enabled".into()),
            ..Default::default()
        };
        let req = self.request(Method::PUT, group_id)?.json(&group)?;
        let resp = self
            .http
            .send(req)
            .await
            .with_context(|| format!("creating enrollment group {group_id}"))?;
        check(&resp, "create enrollment group")
    }

    /// `DELETE /enrollmentGroups/{id}`.
    pub async fn delete_group(&self, group_id: &str) -> anyhow::Result<()> {
        let resp = self
            .http
            .send(self.request(Method::DELETE, group_id)?)
            .await
            .with_context(|| format!("deleting enrollment group {group_id}"))?;
        check(&resp, "delete enrollment group")
    }
}

fn check(resp: &HttpsResponse, what: &str) -> anyhow::Result<()> {
    if resp.is_success() {
        return Ok(());
    }
    let body: String = resp.text().chars().take(300).collect();
    bail!(
        "{what}: the DPS service API answered {}: {body}",
        resp.status
    )
}
