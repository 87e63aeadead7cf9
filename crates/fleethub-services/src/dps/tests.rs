use super::*;
use crate::dps::Error;
use crate::{AuthContext, Shared};
use fleethub_api::{
    AttestationMechanism, DeviceCapabilities, DeviceRegistration, InitialTwin,
    InitialTwinProperties,
};
use fleethub_core::{keys, sas};
use fleethub_store::sqlite::SqliteStore;
use serde_json::json;

pub(super) const SCOPE: &str = "0ne0000ABCD";
const HUB: &str = "hub.fleethub.test";
pub(super) const CTX: AuthContext<'static> = AuthContext {
    transport: "test",
    peer: None,
};

pub(super) fn dps(dir: &tempfile::TempDir) -> Dps {
    dps_in(dir)
}

/// A DPS on the store in `dir` (a second one on the same directory: a restarted service).
pub(super) fn dps_in(dir: &tempfile::TempDir) -> Dps {
    let store = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
    Dps::new(
        &Shared::new(store),
        DpsConfig {
            id_scope: SCOPE.into(),
            linked_hubs: vec![HUB.into()],
            token_skew_secs: 30,
            retry_after_secs: 1,
        },
    )
}

pub(super) fn token(reg: &str, key: &str) -> String {
    sas::build_token(
        &format!("{SCOPE}/registrations/{reg}"),
        key,
        crate::Clock::system().unix() + 3600,
        None,
    )
    .unwrap()
}

pub(super) fn enrollment(reg: &str, key: &str) -> IndividualEnrollment {
    IndividualEnrollment {
        registration_id: reg.into(),
        attestation: AttestationMechanism::symmetric(key.into(), keys::generate_key()),
        ..Default::default()
    }
}

pub(super) async fn register(
    d: &Dps,
    reg: &str,
    key: &str,
) -> Result<fleethub_api::RegistrationOperationStatus, Error> {
    let p = d.authenticate(SCOPE, reg, &token(reg, key), CTX).await?;
    let op = d.register(&p, DeviceRegistration::default()).await?;
    assert_eq!(op.status, "assigning");
    d.operation_status(&p, &op.operation_id).await
}

#[tokio::test]
async fn individual_enrollment_assigns_device_with_initial_twin() {
    let dir = tempfile::tempdir().unwrap();
    let d = dps(&dir);
    let key = keys::generate_key();
    let mut e = enrollment("Dev-01", &key);
    e.device_id = Some("device-one".into());
    e.capabilities = Some(DeviceCapabilities { iot_edge: true });
    e.initial_twin = Some(InitialTwin {
        tags: Some(json!({"environment": "test"})),
        properties: Some(InitialTwinProperties {
            desired: Some(json!({"fw": "1.0"})),
        }),
    });
    d.put_enrollment("Dev-01", e, None).await.unwrap();

    let st = register(&d, "dev-01", &key).await.unwrap();
    assert_eq!(st.status, "assigned");
    let rs = st.registration_state.unwrap();
    assert_eq!(rs.assigned_hub.as_deref(), Some(HUB));
    assert_eq!(rs.device_id.as_deref(), Some("device-one"));
    assert_eq!(rs.substatus.as_deref(), Some("initialAssignment"));

    let dev = d.store.get_device("device-one").await.unwrap().unwrap();
    assert!(dev.device.is_edge());
    assert_eq!(dev.device.authentication.as_ref().unwrap().keys()[0], key);
    assert_eq!(dev.twin.tags.as_ref().unwrap()["environment"], "test");
    assert_eq!(dev.twin.properties.desired["fw"], "1.0");
    assert_eq!(dev.twin.properties.desired["$version"], 1);

    // re-registration is idempotent and says so
    let again = register(&d, "DEV-01", &key)
        .await
        .unwrap()
        .registration_state
        .unwrap();
    assert_eq!(again.device_id.as_deref(), Some("device-one"));
    // Azure: a device registering again onto the hub it has is `reprovisionedToInitialAssignment`.
    assert_eq!(
        again.substatus.as_deref(),
        Some("reprovisionedToInitialAssignment")
    );
    assert_eq!(again.created_date_time_utc, rs.created_date_time_utc);
}

#[tokio::test]
async fn secondary_key_works_and_wrong_key_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dps(&dir);
    let key = keys::generate_key();
    let e = d
        .put_enrollment("dev-02", enrollment("dev-02", &key), None)
        .await
        .unwrap();
    let secondary = e.attestation.keys().unwrap().1.to_string();
    assert_eq!(
        register(&d, "dev-02", &secondary).await.unwrap().status,
        "assigned"
    );
    let err = register(&d, "dev-02", &keys::generate_key())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized));
    let logged = d.auth_failures().recent(1);
    assert!(
        logged[0]
            .reason
            .contains("signature mismatch for registration dev-02"),
        "{:?}",
        logged[0]
    );
    assert!(!logged[0].reason.contains(&key));
}

#[tokio::test]
async fn group_enrollment_with_derived_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dps(&dir);
    let gkey = keys::generate_key();
    let g = EnrollmentGroup {
        enrollment_group_id: "grp-1".into(),
        attestation: AttestationMechanism::symmetric(gkey.clone(), keys::generate_key()),
        initial_twin: Some(InitialTwin {
            tags: Some(json!({"environment": "test"})),
            properties: None,
        }),
        ..Default::default()
    };
    d.put_group("grp-1", g, None).await.unwrap();
    let dk = keys::derive_device_key(&gkey, "sensor-7").unwrap();
    let st = register(&d, "sensor-7", &dk).await.unwrap();
    assert_eq!(st.status, "assigned");
    let rs = st.registration_state.unwrap();
    assert_eq!(rs.device_id.as_deref(), Some("sensor-7"));
    assert_eq!(
        rs.symmetric_key.unwrap().enrollment_group_id.as_deref(),
        Some("grp-1")
    );
    let dev = d.store.get_device("sensor-7").await.unwrap().unwrap();
    assert_eq!(dev.device.authentication.unwrap().keys()[0], dk);

    // the group key itself is refused, with a reason that says so
    assert!(register(&d, "sensor-8", &gkey).await.is_err());
    assert!(d.auth_failures().recent(1)[0].reason.contains("group key"));

    // records listed per group, and kept when the group is deleted
    let page = d
        .query_registrations(Some("GRP-1"), fleethub_storage::PageRequest::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    d.delete_group("grp-1", None).await.unwrap();
    assert!(d.get_registration("sensor-7").await.is_ok());
    // and the group no longer authenticates anyone
    assert!(
        register(
            &d,
            "sensor-9",
            &keys::derive_device_key(&gkey, "sensor-9").unwrap()
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn individual_enrollment_wins_over_group() {
    let dir = tempfile::tempdir().unwrap();
    let d = dps(&dir);
    let gkey = keys::generate_key();
    d.put_group(
        "grp",
        EnrollmentGroup {
            enrollment_group_id: "grp".into(),
            attestation: AttestationMechanism::symmetric(gkey.clone(), keys::generate_key()),
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    let own = keys::generate_key();
    d.put_enrollment("dev-x", enrollment("dev-x", &own), None)
        .await
        .unwrap();
    // the derived group key does not work for a device with its own enrollment
    let dk = keys::derive_device_key(&gkey, "dev-x").unwrap();
    assert!(register(&d, "dev-x", &dk).await.is_err());
    assert_eq!(
        register(&d, "dev-x", &own).await.unwrap().status,
        "assigned"
    );
}

#[tokio::test]
async fn disabled_enrollment_is_not_assigned() {
    let dir = tempfile::tempdir().unwrap();
    let d = dps(&dir);
    let key = keys::generate_key();
    let mut e = enrollment("dev-off", &key);
    e.provisioning_status = Some("disabled".into());
    d.put_enrollment("dev-off", e, None).await.unwrap();
    let st = register(&d, "dev-off", &key).await.unwrap();
    assert_eq!(st.status, "disabled");
    assert!(d.store.get_device("dev-off").await.unwrap().is_none());
    // the refusal is in the auth-failure log, with where it came from
    let logged = &d.auth_failures().recent(1)[0];
    assert_eq!(logged.identity, "dev-off");
    assert_eq!(logged.transport, "test");
    assert!(
        logged
            .reason
            .contains("individual enrollment 'dev-off' is disabled"),
        "{}",
        logged.reason
    );

    // and for a disabled group
    let gkey = keys::generate_key();
    let g = EnrollmentGroup {
        enrollment_group_id: "grp-off".into(),
        attestation: AttestationMechanism::symmetric(gkey.clone(), keys::generate_key()),
        provisioning_status: Some("disabled".into()),
        ..Default::default()
    };
    d.put_group("grp-off", g, None).await.unwrap();
    let dk = keys::derive_device_key(&gkey, "member-1").unwrap();
    assert_eq!(
        register(&d, "member-1", &dk).await.unwrap().status,
        "disabled"
    );
    let logged = &d.auth_failures().recent(1)[0];
    assert_eq!(logged.identity, "member-1");
    assert!(
        logged
            .reason
            .contains("enrollment group 'grp-off' is disabled")
    );
}

/// The auth-failure window is kept in the store: a restart (a new `Shared` over the same
/// database) shows the newest entries again, older than any recorded since.
#[tokio::test]
async fn auth_failures_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let d = dps(&dir);
        for n in 0..3 {
            let reg = format!("ghost-{n}");
            let _ = d
                .authenticate(SCOPE, &reg, &token(&reg, &keys::generate_key()), CTX)
                .await;
        }
        assert_eq!(d.auth_failures().recent(10).len(), 3);
        d.auth_failures().flush().await;
    }
    let d = dps(&dir);
    let _ = d.authenticate(SCOPE, "new-one", "garbage", CTX).await;
    d.auth_failures().flush().await;
    let ids: Vec<String> = d
        .auth_failures()
        .recent(10)
        .into_iter()
        .map(|f| f.identity)
        .collect();
    assert_eq!(ids, ["new-one", "ghost-2", "ghost-1", "ghost-0"]);
    assert!(
        d.auth_failures().recent(10)[1]
            .reason
            .contains("no individual enrollment")
    );
}

#[tokio::test]
async fn bad_ids_scopes_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let d = dps(&dir);
    let key = keys::generate_key();
    d.put_enrollment("dev-03", enrollment("dev-03", &key), None)
        .await
        .unwrap();
    let e = d
        .authenticate(SCOPE, "bad!id~x", "x", CTX)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e:?}");
    let e = d
        .authenticate("0ne00BADBAD", "dev-03", &token("dev-03", &key), CTX)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized), "{e:?}");
    assert!(
        d.auth_failures().recent(1)[0]
            .reason
            .contains("unknown ID scope")
    );
    let expired = sas::build_token(
        &format!("{SCOPE}/registrations/dev-03"),
        &key,
        crate::Clock::system().unix() - 100,
        None,
    )
    .unwrap();
    assert!(
        d.authenticate(SCOPE, "dev-03", &expired, CTX)
            .await
            .is_err()
    );
    assert!(d.auth_failures().recent(1)[0].reason.contains("expired"));
    let other = sas::build_token(
        &format!("{SCOPE}/registrations/dev-04"),
        &key,
        crate::Clock::system().unix() + 60,
        None,
    )
    .unwrap();
    assert!(d.authenticate(SCOPE, "dev-03", &other, CTX).await.is_err());
    assert!(d.auth_failures().recent(1)[0].reason.contains("dev-04"));
    assert!(
        d.authenticate(SCOPE, "dev-03", "garbage", CTX)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn enrollment_validation_errors_are_specific() {
    let dir = tempfile::tempdir().unwrap();
    let d = dps(&dir);
    let mut e = enrollment("dev-05", "not base64!");
    let err = d
        .put_enrollment("dev-05", e.clone(), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("primaryKey"), "{err}");
    e.attestation = AttestationMechanism {
        kind: "tpm".into(),
        ..Default::default()
    };
    assert!(
        d.put_enrollment("dev-05", e.clone(), None)
            .await
            .unwrap_err()
            .to_string()
            .contains("tpm")
    );
    // empty keys are generated
    e.attestation = AttestationMechanism {
        kind: "symmetricKey".into(),
        ..Default::default()
    };
    let saved = d.put_enrollment("dev-05", e.clone(), None).await.unwrap();
    let (p, s) = saved.attestation.keys().unwrap();
    assert!(keys::decode_key(p).is_ok() && keys::decode_key(s).is_ok() && p != s);
    assert_eq!(saved.provisioning_status.as_deref(), Some("enabled"));
    // body/path mismatch
    assert!(matches!(
        d.put_enrollment("other", e, None).await.unwrap_err(),
        Error::Invalid(_)
    ));
    // etag
    let stale = Some("\"stale\"");
    assert!(matches!(
        d.put_enrollment("dev-05", saved.clone(), stale)
            .await
            .unwrap_err(),
        Error::PreconditionFailed(_)
    ));
}

/// Azure's twin limits apply to initial twins of enrollments and groups (400 ArgumentInvalid).
#[tokio::test]
async fn initial_twin_depth_and_size_limits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dps(&dir);
    let nest = |levels: usize| {
        let mut v = json!({"leaf": 1});
        for i in 0..levels {
            v = json!({ format!("l{i}"): v });
        }
        v
    };
    let big = |n: usize| json!({ "k": "x".repeat(n) });
    let with = |tags: Option<serde_json::Value>, desired: Option<serde_json::Value>| {
        Some(InitialTwin {
            tags,
            properties: Some(InitialTwinProperties { desired }),
        })
    };
    let key = keys::generate_key();
    let cases = [
        (
            with(Some(nest(11)), None),
            "initialTwin.tags: objects are nested",
        ),
        (
            with(None, Some(nest(11))),
            "initialTwin.properties.desired: objects",
        ),
        (with(Some(big(8 * 1024)), None), "initialTwin.tags would be"),
        (
            with(None, Some(big(32 * 1024))),
            "initialTwin.properties.desired would be",
        ),
    ];
    for (twin, expected) in cases {
        let mut e = enrollment("dev-tw", &key);
        e.initial_twin = twin.clone();
        let err = d.put_enrollment("dev-tw", e, None).await.unwrap_err();
        assert!(
            matches!(&err, Error::Invalid(m) if m.contains(expected)),
            "{err:?}"
        );
        let g = EnrollmentGroup {
            enrollment_group_id: "grp-tw".into(),
            attestation: AttestationMechanism::symmetric(key.clone(), keys::generate_key()),
            initial_twin: twin,
            ..Default::default()
        };
        let err = d.put_group("grp-tw", g, None).await.unwrap_err();
        assert!(
            matches!(&err, Error::Invalid(m) if m.contains(expected)),
            "{err:?}"
        );
    }
    // at the limits
    let mut e = enrollment("dev-tw", &key);
    e.initial_twin = with(Some(nest(10)), Some(big(32 * 1024 - 1)));
    d.put_enrollment("dev-tw", e, None).await.unwrap();
}

#[tokio::test]
async fn enrollments_show_their_registration_state() {
    let dir = tempfile::tempdir().unwrap();
    let d = dps(&dir);
    let key = keys::generate_key();
    d.put_enrollment("dev-r", enrollment("dev-r", &key), None)
        .await
        .unwrap();
    d.put_enrollment("dev-idle", enrollment("dev-idle", &key), None)
        .await
        .unwrap();
    // A group device whose registration ID matches no individual enrollment's record.
    let gkey = keys::generate_key();
    d.put_group(
        "grp",
        EnrollmentGroup {
            enrollment_group_id: "grp".into(),
            attestation: AttestationMechanism::symmetric(gkey.clone(), keys::generate_key()),
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    assert!(
        d.get_enrollment("dev-r")
            .await
            .unwrap()
            .registration_state
            .is_none()
    );

    register(&d, "dev-r", &key).await.unwrap();
    let dk = keys::derive_device_key(&gkey, "grp-dev").unwrap();
    register(&d, "grp-dev", &dk).await.unwrap();

    let shown = d.get_enrollment("DEV-R").await.unwrap();
    let rs = shown.registration_state.expect("registrationState");
    assert_eq!(rs.status.as_deref(), Some("assigned"));
    assert_eq!(rs.assigned_hub.as_deref(), Some(HUB));
    assert_eq!(rs.device_id.as_deref(), Some("dev-r"));

    let listed = d
        .query_enrollments(fleethub_storage::PageRequest::default())
        .await
        .unwrap();
    let by_id = |id: &str| {
        listed
            .items
            .iter()
            .find(|e| e.registration_id == id)
            .unwrap()
            .registration_state
            .clone()
    };
    assert_eq!(by_id("dev-r").unwrap().status.as_deref(), Some("assigned"));
    assert!(by_id("dev-idle").is_none());

    // The record of a group registration is not an individual enrollment's state.
    d.put_enrollment("grp-dev", enrollment("grp-dev", &key), None)
        .await
        .unwrap();
    assert!(
        d.get_enrollment("grp-dev")
            .await
            .unwrap()
            .registration_state
            .is_none()
    );
}

#[tokio::test]
async fn simulate_names_enrollment_key_hub_and_twin_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dps(&dir);
    let key = keys::generate_key();
    let mut e = enrollment("dev-s", &key);
    e.device_id = Some("device-s".into());
    e.capabilities = Some(DeviceCapabilities { iot_edge: true });
    e.initial_twin = Some(InitialTwin {
        tags: Some(json!({"site": "north"})),
        properties: None,
    });
    d.put_enrollment("dev-s", e, None).await.unwrap();
    let gkey = keys::generate_key();
    d.put_group(
        "grp",
        EnrollmentGroup {
            enrollment_group_id: "grp".into(),
            attestation: AttestationMechanism::symmetric(keys::generate_key(), gkey.clone()),
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();

    let s = d.simulate("dev-s", Some(&key)).await.unwrap();
    assert_eq!(s.result, "assigned", "{s:?}");
    assert_eq!(s.key.as_deref(), Some("primary"));
    assert_eq!(s.enrollment.as_ref().unwrap().kind, "individual");
    assert_eq!(s.assigned_hub.as_deref(), Some(HUB));
    assert_eq!(s.device_id.as_deref(), Some("device-s"));
    assert_eq!(s.iot_edge, Some(true));
    assert_eq!(s.substatus.as_deref(), Some("initialAssignment"));
    assert_eq!(s.device_exists, Some(false));
    assert_eq!(s.initial_twin.unwrap().tags.unwrap()["site"], "north");
    let s = d.simulate("dev-s", None).await.unwrap();
    assert_eq!(
        (s.result.as_str(), s.key.as_deref()),
        ("assigned", Some("notChecked"))
    );
    let s = d.simulate("dev-s", Some(&gkey)).await.unwrap();
    assert_eq!(
        (s.result.as_str(), s.key.as_deref()),
        ("unauthorized", Some("wrong"))
    );

    // Group devices: the derived key names the group; the group key itself is refused.
    let derived = keys::derive_device_key(&gkey, "sensor-1").unwrap();
    let s = d.simulate("sensor-1", Some(&derived)).await.unwrap();
    assert_eq!(s.result, "assigned", "{s:?}");
    assert_eq!(s.key.as_deref(), Some("derivedFromSecondary"));
    assert_eq!(s.enrollment.as_ref().unwrap().id, "grp");
    assert_eq!(s.device_id.as_deref(), Some("sensor-1"));
    let s = d.simulate("sensor-1", Some(&gkey)).await.unwrap();
    assert_eq!(
        (s.result.as_str(), s.key.as_deref()),
        ("unauthorized", Some("groupKey"))
    );
    assert!(s.message.contains("compute-device-key"), "{}", s.message);
    let s = d.simulate("sensor-1", None).await.unwrap();
    assert_eq!(s.result, "keyNeeded");
    assert_eq!(s.candidate_groups.unwrap(), ["grp"]);

    // Nothing was written, nothing logged as a failure.
    assert!(d.store.get_device("device-s").await.unwrap().is_none());
    assert!(d.store.get_registration("dev-s").await.unwrap().is_none());
    assert!(d.auth_failures().recent(10).is_empty());

    // After a real registration: the record is shown and the device exists.
    register(&d, "dev-s", &key).await.unwrap();
    let s = d.simulate("dev-s", Some(&key)).await.unwrap();
    assert_eq!(s.device_exists, Some(true));
    assert_eq!(
        s.registration_state.unwrap().status.as_deref(),
        Some("assigned")
    );
    assert_eq!(
        s.substatus.as_deref(),
        Some("reprovisionedToInitialAssignment")
    );

    // A disabled enrollment and an unknown registration.
    let mut e = d.get_enrollment("dev-s").await.unwrap();
    e.provisioning_status = Some("disabled".into());
    d.put_enrollment("dev-s", e, None).await.unwrap();
    assert_eq!(
        d.simulate("dev-s", Some(&key)).await.unwrap().result,
        "disabled"
    );
    d.delete_group("grp", None).await.unwrap();
    assert_eq!(
        d.simulate("nobody", None).await.unwrap().result,
        "noEnrollment"
    );
    assert!(d.simulate("bad id!", None).await.is_err());
}

#[tokio::test]
async fn registrations_over_the_throttle_are_refused_with_a_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
    let t = crate::clock::TestClock::new(chrono::Utc::now());
    // Two registrations per device per 10 s.
    let limits = crate::ThrottleConfig {
        dps_registrations: crate::throttle::Limit::new(0.2, 1000.0, 10.0),
        ..Default::default()
    };
    let shared =
        Shared::with_clock(store, crate::Clock::from_source(t.clone())).with_throttle(limits);
    let d = Dps::new(
        &shared,
        DpsConfig {
            id_scope: SCOPE.into(),
            linked_hubs: vec![HUB.into()],
            token_skew_secs: 30,
            retry_after_secs: 1,
        },
    );
    let key = keys::generate_key();
    d.put_enrollment("dev-t", enrollment("dev-t", &key), None)
        .await
        .unwrap();
    register(&d, "dev-t", &key).await.unwrap();
    // The registration ID is case-insensitive, and so is its bucket.
    register(&d, "DEV-T", &key).await.unwrap();
    let p = d
        .authenticate(SCOPE, "dev-t", &token("dev-t", &key), CTX)
        .await
        .unwrap();
    match d.register(&p, DeviceRegistration::default()).await {
        Err(Error::Throttled {
            retry_after_secs, ..
        }) => assert_eq!(retry_after_secs, 5),
        other => panic!("{other:?}"),
    }
    t.advance(chrono::Duration::seconds(5));
    let op = d.register(&p, DeviceRegistration::default()).await.unwrap();
    assert_eq!(op.status, "assigning");
}

#[tokio::test]
async fn only_devices_the_deployment_engine_may_plan_are_handed_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dps(&dir);
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let hook_seen = seen.clone();
    d.on_device_assigned(Box::new(move |id| {
        hook_seen.lock().unwrap().push(id.to_string());
    }));
    let key = keys::generate_key();
    d.put_enrollment("plain-01", enrollment("plain-01", &key), None)
        .await
        .unwrap();
    let mut edge = enrollment("edge-01", &key);
    edge.capabilities = Some(DeviceCapabilities { iot_edge: true });
    d.put_enrollment("edge-01", edge, None).await.unwrap();

    assert_eq!(
        register(&d, "plain-01", &key).await.unwrap().status,
        "assigned"
    );
    assert_eq!(
        register(&d, "edge-01", &key).await.unwrap().status,
        "assigned"
    );
    // A device whose twin lists configurations statuses may lose them: it is handed over too.
    let mut rec = d.store.get_device("plain-01").await.unwrap().unwrap();
    rec.twin.configurations = Some(json!({"deploy-1": {"status": "targeted"}}));
    d.store
        .put_device(rec, fleethub_storage::Precondition::Any)
        .await
        .unwrap();
    assert_eq!(
        register(&d, "plain-01", &key).await.unwrap().status,
        "assigned"
    );
    assert_eq!(*seen.lock().unwrap(), vec!["edge-01", "plain-01"]);
}
