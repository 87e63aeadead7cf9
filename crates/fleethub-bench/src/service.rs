//! The slice of the DPS service REST API the benchmark needs: create and delete one
//! symmetric-key enrollment group, through the shared service client
//! ([`fleethub_service_client`], signed with the service connection string's policy).

use anyhow::Context;
use fleethub_api::{AttestationMechanism, EnrollmentGroup};
use fleethub_device::ClientTlsConfig;
use fleethub_service_client::{Condition, Credentials, HttpsTransport, ServiceClient, TlsTarget};

/// api-version sent to the service API (what the Node service SDK sends).
pub const SERVICE_API_VERSION: &str = fleethub_service_client::DPS_API_VERSION;

/// DPS service API client for enrollment groups.
pub struct DpsService {
    client: ServiceClient<HttpsTransport>,
}

impl DpsService {
    /// `dps_host:service_port` is dialled; the token is for the connection string's `HostName`.
    pub fn new(
        tls: ClientTlsConfig,
        dps_host: &str,
        service_port: u16,
        connection_string: &str,
    ) -> anyhow::Result<Self> {
        let credentials = Credentials::from_connection_string(connection_string)
            .context("invalid DPS service connection string")?;
        let target = TlsTarget::with_tls(tls, dps_host, &format!("{dps_host}:{service_port}"))?;
        Ok(DpsService {
            client: ServiceClient::dps(HttpsTransport::new(target), credentials),
        })
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
        self.client
            .put_enrollment_group(&group, Condition::None)
            .await
            .with_context(|| format!("create enrollment group {group_id}"))?;
        Ok(())
    }

    /// `DELETE /enrollmentGroups/{id}`.
    pub async fn delete_group(&self, group_id: &str) -> anyhow::Result<()> {
        self.client
            .delete_enrollment_group(group_id, None)
            .await
            .with_context(|| format!("delete enrollment group {group_id}"))
    }
}
