//! End-to-end: the typed service client (`fleethub-service-client`) against the real
//! `fleethub` binary: every DPS and hub service operation it offers, the typed errors
//! (status + Azure code + message) and the SAS policy check.

mod common;

use common::ServerProcess;
use fleethub_api::{AttestationMechanism, Device, EnrollmentGroup, IndividualEnrollment, Module};
use fleethub_service_client::dps::BulkMode;
use fleethub_service_client::hub::{MethodInvocation, bulk_create_items, bulk_delete_items};
use fleethub_service_client::{
    CaTrust, Condition, Credentials, HttpsTransport, ServiceClient, TlsTarget,
};
use serde_json::json;

fn client(s: &ServerProcess, connection_string: &str) -> ServiceClient<HttpsTransport> {
    let credentials = Credentials::from_connection_string(connection_string).unwrap();
    let target = TlsTarget::new(
        &CaTrust::File(s.ca_pem()),
        &credentials.host_name,
        &format!("127.0.0.1:{}", s.https_port),
    )
    .unwrap();
    ServiceClient::new(HttpsTransport::new(target), credentials)
}

fn dps(s: &ServerProcess) -> ServiceClient<HttpsTransport> {
    client(s, &s.info.dps_service_connection_string)
}

fn hub(s: &ServerProcess) -> ServiceClient<HttpsTransport> {
    client(s, &s.info.hub_service_connection_string)
        .with_api_version(fleethub_service_client::HUB_API_VERSION)
}

fn symmetric() -> AttestationMechanism {
    AttestationMechanism::symmetric(
        fleethub_core::keys::generate_key(),
        fleethub_core::keys::generate_key(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dps_service_operations() {
    let s = ServerProcess::start();
    let dps = dps(&s);

    // Individual enrollments: create, update with a stale etag, read, query, delete with etag.
    let e = IndividualEnrollment {
        registration_id: "sc-dev-1".into(),
        attestation: symmetric(),
        ..Default::default()
    };
    let created = dps.put_enrollment(&e, Condition::None).await.unwrap();
    assert_eq!(created.registration_id, "sc-dev-1");
    let etag = created.etag.clone().unwrap();
    let again = dps
        .put_enrollment(&e, Condition::IfMatch("\"stale\""))
        .await
        .unwrap_err();
    assert_eq!(again.status(), Some(412), "{again}");
    let shown = dps.get_enrollment("sc-dev-1").await.unwrap();
    assert_eq!(shown.attestation.keys(), e.attestation.keys());
    let all = dps.query_enrollments().await.unwrap();
    assert!(all.iter().any(|x| x.registration_id == "sc-dev-1"));
    let stale = dps
        .delete_enrollment("sc-dev-1", Some("\"stale\""))
        .await
        .unwrap_err();
    assert_eq!(stale.status(), Some(412), "{stale}");
    dps.delete_enrollment("sc-dev-1", Some(&etag))
        .await
        .unwrap();
    let gone = dps.get_enrollment("sc-dev-1").await.unwrap_err();
    let se = gone.service().unwrap();
    assert_eq!(se.status, 404, "{gone}");
    assert!(se.code.is_some(), "{gone}");
    assert_eq!(se.operation, "GET /enrollments/sc-dev-1");

    // Bulk enrollments.
    let bulk = dps
        .bulk_enrollments(
            BulkMode::Create,
            ["sc-b1", "sc-b2"]
                .into_iter()
                .map(|id| IndividualEnrollment {
                    registration_id: id.into(),
                    attestation: symmetric(),
                    ..Default::default()
                })
                .collect(),
        )
        .await
        .unwrap();
    assert!(bulk.is_successful, "{bulk:?}");
    assert!(dps.get_enrollment("sc-b2").await.is_ok());

    // Enrollment groups and their (empty) registration records.
    let g = EnrollmentGroup {
        enrollment_group_id: "sc-group".into(),
        attestation: symmetric(),
        ..Default::default()
    };
    dps.put_enrollment_group(&g, Condition::None).await.unwrap();
    assert_eq!(
        dps.get_enrollment_group("sc-group")
            .await
            .unwrap()
            .enrollment_group_id,
        "sc-group"
    );
    assert_eq!(dps.query_enrollment_groups().await.unwrap().len(), 1);
    assert!(
        dps.query_group_registrations("sc-group")
            .await
            .unwrap()
            .is_empty()
    );
    let missing = dps.get_registration("nobody").await.unwrap_err();
    assert_eq!(missing.status(), Some(404), "{missing}");
    dps.delete_enrollment_group("sc-group", None).await.unwrap();

    // The policy key is checked: a wrong key is a typed 401.
    let bad = client(
        &s,
        &format!(
            "HostName={};SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={}",
            dps.credentials().host_name,
            fleethub_core::keys::generate_key()
        ),
    );
    let e = bad.get_enrollment("sc-b1").await.unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    assert!(e.to_string().contains("401 Unauthorized"), "{e}");
    let failures = dps.auth_failures(10).await.unwrap();
    assert!(!failures.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_service_operations() {
    let s = ServerProcess::start();
    let hub = hub(&s);

    // Devices.
    let d = Device {
        device_id: "sc-d1".into(),
        ..Default::default()
    };
    let created = hub.put_device(&d, Condition::MustNotExist).await.unwrap();
    assert_eq!(created.device_id, "sc-d1");
    assert!(created.authentication.is_some());
    let dup = hub
        .put_device(&d, Condition::MustNotExist)
        .await
        .unwrap_err();
    assert_eq!(dup.status(), Some(409), "{dup}");
    assert_eq!(
        dup.service().unwrap().code.as_deref(),
        Some("DeviceAlreadyExists")
    );
    assert_eq!(hub.get_device("sc-d1").await.unwrap().device_id, "sc-d1");
    assert!(hub.find_device("nobody").await.unwrap().is_none());
    let missing = hub.get_device("nobody").await.unwrap_err();
    assert_eq!(
        missing.service().unwrap().code.as_deref(),
        Some("DeviceNotFound"),
        "{missing}"
    );
    assert!(
        hub.list_devices(None)
            .await
            .unwrap()
            .iter()
            .any(|x| x.device_id == "sc-d1")
    );

    // Twins: merge patch, precondition, query.
    let twin = hub
        .update_twin(
            "sc-d1",
            None,
            &json!({"tags": {"env": "prod"}, "properties": {"desired": {"fw": "1.0"}}}),
            Condition::IfMatch("*"),
        )
        .await
        .unwrap();
    assert_eq!(twin.tags.as_ref().unwrap()["env"], "prod");
    let stale = hub
        .update_twin(
            "sc-d1",
            None,
            &json!({"tags": {"env": "dev"}}),
            Condition::IfMatch("\"stale\""),
        )
        .await
        .unwrap_err();
    assert_eq!(stale.status(), Some(412), "{stale}");
    let found = hub
        .query_devices("SELECT * FROM devices WHERE tags.env = 'prod'")
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["deviceId"], "sc-d1");

    // Modules and module twins.
    let m = Module {
        device_id: "sc-d1".into(),
        module_id: "m1".into(),
        ..Default::default()
    };
    hub.put_module(&m, Condition::None).await.unwrap();
    assert_eq!(hub.list_modules("sc-d1").await.unwrap().len(), 1);
    assert_eq!(hub.get_module("sc-d1", "m1").await.unwrap().module_id, "m1");
    hub.get_twin("sc-d1", Some("m1")).await.unwrap();
    let no_module = hub.get_module("sc-d1", "m2").await.unwrap_err();
    assert_eq!(no_module.status(), Some(404), "{no_module}");
    hub.delete_module("sc-d1", "m1", None).await.unwrap();

    // Direct method to an offline device: a typed 404.
    let mut call = MethodInvocation::new("reboot", json!({}));
    call.connect_timeout_in_seconds = Some(0);
    call.response_timeout_in_seconds = Some(5);
    let offline = hub.invoke_method("sc-d1", None, &call).await.unwrap_err();
    assert_eq!(offline.status(), Some(404), "{offline}");

    // Cloud-to-device: send, then purge.
    let queued = hub
        .send_c2d("sc-d1", &json!({"body": "hello", "messageId": "c1"}))
        .await
        .unwrap();
    assert_eq!(queued["messageId"], "c1", "{queued}");
    let purged = hub.purge_c2d("sc-d1").await.unwrap();
    assert_eq!(purged["totalMessagesPurged"], 1, "{purged}");

    // Statistics, telemetry read, diagnostics.
    assert!(
        hub.device_statistics().await.unwrap()["totalDeviceCount"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(hub.service_statistics().await.unwrap()["connectedDeviceCount"].is_u64());
    let events = hub.read_events(&[]).await.unwrap();
    assert!(events["messages"].is_array(), "{events}");
    hub.auth_failures(5).await.unwrap();

    // Configurations.
    let cfg: fleethub_api::Configuration = serde_json::from_value(json!({
        "id": "sc-cfg",
        "targetCondition": "tags.env='prod'",
        "priority": 1,
        "content": {"deviceContent": {"properties.desired.x": 1}}
    }))
    .unwrap();
    hub.put_configuration(&cfg, Condition::None).await.unwrap();
    assert_eq!(hub.get_configuration("sc-cfg").await.unwrap().priority, 1);
    assert!(
        hub.list_configurations()
            .await
            .unwrap()
            .iter()
            .any(|c| c.id == "sc-cfg")
    );
    hub.delete_configuration("sc-cfg", None).await.unwrap();

    // Bulk registry: item errors come back as a result.
    let ids: Vec<String> = (0..150).map(|i| format!("sc-bulk-{i}")).collect();
    let key = fleethub_core::keys::generate_key();
    for chunk in ids.chunks(100) {
        let r = hub
            .bulk_devices(&bulk_create_items(chunk, &key, &key))
            .await
            .unwrap();
        assert!(r.is_successful, "{r:?}");
    }
    let r = hub
        .bulk_devices(&bulk_create_items(&ids[..2], &key, &key))
        .await
        .unwrap();
    assert!(!r.is_successful);
    assert_eq!(r.errors.len(), 2, "{r:?}");
    assert_eq!(r.errors[0].error_code, "DeviceAlreadyExists");
    let r = hub
        .bulk_devices(&bulk_delete_items(&ids[..100]))
        .await
        .unwrap();
    assert!(r.is_successful, "{r:?}");
    hub.delete_device("sc-d1", None).await.unwrap();
}
