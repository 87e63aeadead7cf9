//! `fleethub serve --demo`: makes sure a demo enrollment exists and provisions a demo device
//! through the running server with the Rust device SDK, so a newcomer sees the whole flow.

use crate::info::ServerInfo;
use anyhow::{Context, Result};
use fleethub_api::{AttestationMechanism, IndividualEnrollment, InitialTwin};
use fleethub_device::provisioning::{ProvisioningClient, Transport};
use fleethub_services::Dps;
use std::time::Duration;

pub const DEMO_REGISTRATION_ID: &str = "demo-device";

/// Prints the demo device's connection string; its key only when `show_keys`.
pub async fn run(
    dps: &Dps,
    info: &ServerInfo,
    data_dir: &std::path::Path,
    show_keys: bool,
) -> Result<()> {
    let enrollment = match dps.get_enrollment(DEMO_REGISTRATION_ID).await {
        Ok(e) => e,
        Err(_) => dps
            .put_enrollment(
                DEMO_REGISTRATION_ID,
                IndividualEnrollment {
                    registration_id: DEMO_REGISTRATION_ID.into(),
                    attestation: AttestationMechanism {
                        kind: "symmetricKey".into(),
                        ..Default::default()
                    },
                    initial_twin: Some(InitialTwin {
                        tags: Some(serde_json::json!({"environment": "demo"})),
                        properties: None,
                    }),
                    ..Default::default()
                },
                None,
            )
            .await
            .context("creating the demo enrollment")?,
    };
    let key = enrollment
        .attestation
        .keys()
        .map(|(p, _)| p.to_string())
        .unwrap_or_default();
    let client = ProvisioningClient::builder()
        .global_endpoint("localhost")
        .port(info.mqtt_port)
        .id_scope(&info.id_scope)
        .registration_id(DEMO_REGISTRATION_ID)
        .symmetric_key(&key)
        .transport(Transport::Mqtt)
        .ca_pem_file(&info.ca_cert_path)
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the demo provisioning client")?;
    let r = client
        .register()
        .await
        .context("provisioning the demo device")?;
    let shown_key = if show_keys {
        key.as_str()
    } else {
        "<not shown: `fleethub dps enrollment show --registration-id demo-device` has it>"
    };
    println!(
        "demo device provisioned over MQTT: registration '{}' -> device '{}' on hub '{}' ({}, {})\n\
         \x20 device connection string: HostName={};DeviceId={};SharedAccessKey={}\n\
         \x20 try: fleethub dps registration show --registration-id {} --data-dir {}\n",
        DEMO_REGISTRATION_ID,
        r.device_id,
        r.assigned_hub,
        r.status,
        r.substatus.as_deref().unwrap_or("-"),
        r.assigned_hub,
        r.device_id,
        shown_key,
        DEMO_REGISTRATION_ID,
        data_dir.display(),
    );
    Ok(())
}
