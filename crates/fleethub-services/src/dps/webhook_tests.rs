//! The custom allocation webhook: Azure's request and answer shapes, how answers end a
//! registration, and that nothing is created when the webhook fails. The webhook here is an
//! in-process [`AllocationWebhooks`] (the HTTP client is the server's and tested there).

use super::tests::{CTX, SCOPE, dps, enrollment, token};
use super::webhook::{Custom, check_definition, classify, request_body};
use super::*;
use fleethub_api::{DeviceRegistration, DeviceRegistrationState, RegistrationOperationStatus};
use fleethub_core::keys;
use serde_json::{Value, json};
use std::sync::Mutex;
use std::time::Duration;

const HUB: &str = "hub.fleethub.test";
const CS2: &str = "HostName=hub2.fleethub.test;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U=";

/// Answers by registration ID and keeps the requests it got.
struct Scripted {
    seen: Mutex<Vec<Value>>,
}

impl AllocationWebhooks for Scripted {
    fn post<'a>(&'a self, url: &'a str, body: &'a [u8]) -> WebhookFuture<'a> {
        Box::pin(async move {
            assert_eq!(url, "https://alloc.example.com/api/alloc?code=k");
            let req: Value = serde_json::from_slice(body).unwrap();
            self.seen.lock().unwrap().push(req.clone());
            let reg = req["deviceRuntimeContext"]["registrationId"]
                .as_str()
                .unwrap()
                .to_string();
            let reply = |status: u16, body: Value| WebhookReply {
                status,
                body: serde_json::to_vec(&body).unwrap(),
            };
            Ok(match reg.as_str() {
                "wh-ok" => reply(
                    200,
                    json!({
                        "iotHubHostName": HUB,
                        "initialTwin": {"tags": {"chosen": "by-webhook"}, "properties": {"desired": {"mode": req["deviceRuntimeContext"]["payload"]["mode"]}}},
                        "payload": {"welcome": reg},
                    }),
                ),
                "wh-401" => reply(401, json!({})),
                "wh-404" => reply(404, json!({})),
                "wh-500" => reply(500, json!({})),
                "wh-unlinked" => reply(200, json!({"iotHubHostName": "nowhere.test"})),
                "wh-slow" => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    reply(200, json!({"iotHubHostName": HUB}))
                }
                other => Err(WebhookError(format!("unexpected {other}")))?,
            })
        })
    }
}

fn custom_dps(dir: &tempfile::TempDir) -> (Dps, std::sync::Arc<Scripted>) {
    let d = dps(dir);
    let hook = std::sync::Arc::new(Scripted {
        seen: Mutex::default(),
    });
    d.set_allocation_webhooks(hook.clone(), Duration::from_millis(300));
    (d, hook)
}

async fn enroll_custom(d: &Dps, reg: &str) -> String {
    let key = keys::generate_key();
    let mut e = enrollment(reg, &key);
    e.allocation_policy = Some("custom".into());
    e.custom_allocation_definition = Some(json!({
        "webhookUrl": "https://alloc.example.com/api/alloc?code=k",
        "apiVersion": "2021-10-01",
    }));
    d.put_enrollment(reg, e, None).await.unwrap();
    key
}

async fn register_with(
    d: &Dps,
    reg: &str,
    key: &str,
    payload: Option<Value>,
) -> Result<RegistrationOperationStatus, Error> {
    let p = d.authenticate(SCOPE, reg, &token(reg, key), CTX).await?;
    let body = DeviceRegistration {
        payload,
        ..Default::default()
    };
    let op = d.register(&p, body).await?;
    d.operation_status(&p, &op.operation_id).await
}

#[tokio::test]
async fn the_webhook_chooses_the_hub_twin_and_payload() {
    let dir = tempfile::tempdir().unwrap();
    let (d, hook) = custom_dps(&dir);
    let key = enroll_custom(&d, "wh-ok").await;
    let st = register_with(&d, "wh-ok", &key, Some(json!({"mode": "eco"})))
        .await
        .unwrap();
    assert_eq!(st.status, "assigned");
    let rs = st.registration_state.unwrap();
    assert_eq!(rs.assigned_hub.as_deref(), Some(HUB));
    assert_eq!(
        rs.payload,
        Some(json!({"welcome": "wh-ok"})),
        "the webhook's payload, not the device's"
    );
    let dev = d.store.get_device("wh-ok").await.unwrap().unwrap();
    assert_eq!(dev.twin.tags.unwrap()["chosen"], "by-webhook");
    assert_eq!(dev.twin.properties.desired["mode"], "eco");

    // A dry run does not call the webhook.
    let sim = d.simulate("wh-ok", Some(&key)).await.unwrap();
    assert_eq!(sim.assigned_hub, None, "{sim:?}");
    assert!(sim.message.contains("webhook"), "{}", sim.message);
    assert_eq!(hook.seen.lock().unwrap().len(), 1);

    let req = hook.seen.lock().unwrap()[0].clone();
    let ctx = &req["deviceRuntimeContext"];
    assert_eq!(ctx["payload"], json!({"mode": "eco"}));
    assert!(
        ctx.get("currentIotHubHostName").is_none(),
        "first registration: {ctx}"
    );
    assert_eq!(req["linkedHubs"], json!([HUB]));
    let e = &req["individualEnrollment"];
    assert_eq!(e["registrationId"], "wh-ok");
    assert_eq!(e["allocationPolicy"], "custom");
    assert_eq!(
        e["attestation"],
        json!({"type": "symmetricKey"}),
        "no keys sent"
    );
    assert!(!req.to_string().contains(&key));

    // Registering again: the webhook learns the current hub and device.
    register_with(&d, "wh-ok", &key, None).await.unwrap();
    let again = hook.seen.lock().unwrap()[1].clone();
    assert_eq!(again["deviceRuntimeContext"]["currentIotHubHostName"], HUB);
    assert_eq!(again["deviceRuntimeContext"]["currentDeviceId"], "wh-ok");
    assert!(again["deviceRuntimeContext"].get("payload").is_none());
}

#[tokio::test]
async fn webhook_failures_fail_the_registration_as_azure_does_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _hook) = custom_dps(&dir);
    for (reg, code) in [
        ("wh-401", 400_209),
        ("wh-404", 400_207),
        ("wh-unlinked", 400_208),
    ] {
        let key = enroll_custom(&d, reg).await;
        let st = register_with(&d, reg, &key, None).await.unwrap();
        assert_eq!(st.status, "failed", "{reg}");
        let rs = st.registration_state.unwrap();
        assert_eq!(rs.error_code, Some(code), "{reg}: {rs:?}");
        assert!(d.store.get_device(reg).await.unwrap().is_none(), "{reg}");
    }
    // 5xx and timeouts: retryable for the device, the reason in the record and the log.
    for (reg, why) in [
        ("wh-500", "answered 500"),
        ("wh-slow", "did not answer within"),
    ] {
        let key = enroll_custom(&d, reg).await;
        let err = register_with(&d, reg, &key, None).await.unwrap_err();
        assert!(matches!(err, Error::WebhookUnavailable), "{reg}: {err}");
        let rec = d.store.get_registration(reg).await.unwrap().unwrap();
        assert_eq!(rec.state.status.as_deref(), Some("failed"));
        assert!(
            rec.state
                .error_message
                .as_deref()
                .unwrap_or_default()
                .contains(why),
            "{reg}: {:?}",
            rec.state
        );
        assert!(d.auth_failures().recent(1)[0].reason.contains(why));
        assert!(d.store.get_device(reg).await.unwrap().is_none(), "{reg}");
    }
}

#[tokio::test]
async fn the_device_payload_is_not_echoed_without_a_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let d = dps(&dir);
    let key = keys::generate_key();
    d.put_enrollment("plain", enrollment("plain", &key), None)
        .await
        .unwrap();
    let st = register_with(&d, "plain", &key, Some(json!({"modelId": "dtmi:x;1"})))
        .await
        .unwrap();
    assert_eq!(st.registration_state.unwrap().payload, None);
}

#[tokio::test]
async fn custom_enrollments_need_a_usable_definition() {
    for (def, want) in [
        (None, "needs customAllocationDefinition"),
        (
            Some(json!({"apiVersion": "2021-10-01"})),
            "webhookUrl is required",
        ),
        (
            Some(json!({"webhookUrl": "http://alloc.example.com/x", "apiVersion": "2021-10-01"})),
            "loopback",
        ),
        (
            Some(json!({"webhookUrl": "ftp://alloc.example.com/x", "apiVersion": "2021-10-01"})),
            "scheme",
        ),
        (
            Some(json!({"webhookUrl": "https://a.example.com/x"})),
            "apiVersion",
        ),
    ] {
        let err = check_definition(def.as_ref(), "enrollment 'x'").unwrap_err();
        assert!(
            matches!(&err, Error::Invalid(m) if m.contains(want)),
            "{want}: {err}"
        );
    }
    for url in [
        "https://a.example.com/api/x?code=1",
        "http://127.0.0.1:8080/x",
        "http://localhost/x",
        "http://[::1]:9/x",
    ] {
        check_definition(
            Some(&json!({"webhookUrl": url, "apiVersion": "2021-10-01"})),
            "e",
        )
        .unwrap();
    }
    // iotHubs of a custom enrollment name linked hubs only, like any other.
    let dir = tempfile::tempdir().unwrap();
    let d = dps(&dir);
    d.put_linked_hub(fleethub_api::LinkedHub {
        connection_string: CS2.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut e = enrollment("c", &keys::generate_key());
    e.allocation_policy = Some("Custom".into());
    e.custom_allocation_definition =
        Some(json!({"webhookUrl": "https://a.example.com/x", "apiVersion": "2021-10-01"}));
    e.iot_hubs = Some(vec!["hub9.fleethub.test".into()]);
    assert!(d.put_enrollment("c", e.clone(), None).await.is_err());
    e.iot_hubs = Some(vec!["hub2.fleethub.test".into()]);
    let saved = d.put_enrollment("c", e, None).await.unwrap();
    assert_eq!(saved.allocation_policy.as_deref(), Some("custom"));
}

#[test]
fn answers_are_read_as_azure_reads_them() {
    let hubs = vec!["a.test".to_string(), "b.test".to_string()];
    let reply = |status, body: &str| WebhookReply {
        status,
        body: body.as_bytes().to_vec(),
    };
    assert_eq!(
        classify(
            &reply(200, r#"{"iotHubHostName":"B.test","payload":{"k":1}}"#),
            &hubs
        ),
        Custom::Allocated {
            hub: "b.test".into(),
            initial_twin: None,
            payload: Some(json!({"k": 1})),
        }
    );
    for (status, body, code) in [
        (200, "not json", 400_207),
        (200, "{}", 400_208),
        (200, r#"{"iotHubHostName":"c.test"}"#, 400_208),
        (200, r#"{"iotHubHostName":"a.test","payload":[1]}"#, 400_207),
        (401, "", 400_209),
        (400, "", 400_207),
        (404, "", 400_207),
    ] {
        assert!(
            matches!(classify(&reply(status, body), &hubs), Custom::Failed { code: c, .. } if c == code),
            "{status} {body}"
        );
    }
    for status in [429, 500, 503] {
        assert!(matches!(
            classify(&reply(status, ""), &hubs),
            Custom::Unavailable(_)
        ));
    }
}

#[test]
fn group_requests_carry_the_group_without_keys() {
    let g = fleethub_api::EnrollmentGroup {
        enrollment_group_id: "line-4".into(),
        attestation: fleethub_api::AttestationMechanism::symmetric("p".into(), "s".into()),
        ..Default::default()
    };
    let source = EnrollmentSource::Group {
        group: Box::new(g),
        derived_primary: "dp".into(),
        derived_secondary: "ds".into(),
    };
    let prev = DeviceRegistrationState {
        registration_id: "s-1".into(),
        status: Some("failed".into()),
        ..Default::default()
    };
    let req = request_body(&source, "s-1", Some(&prev), None, &["a.test".into()]);
    assert_eq!(req["enrollmentGroup"]["enrollmentGroupId"], "line-4");
    assert_eq!(
        req["enrollmentGroup"]["attestation"],
        json!({"type": "symmetricKey"})
    );
    assert!(req.get("individualEnrollment").is_none());
    assert!(
        req["deviceRuntimeContext"]
            .get("currentIotHubHostName")
            .is_none(),
        "a device never assigned has no current hub"
    );
    assert_eq!(req["linkedHubs"], json!(["a.test"]));
}
