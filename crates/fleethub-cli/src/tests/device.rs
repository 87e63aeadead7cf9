//! `fleethub device c2d-message`: the HTTPS device API requests, signed with the device's own
//! SAS token, and what is printed.

use super::fake::{self, client, empty, header, path};
use crate::client::Response;
use crate::device::c2d::{DeviceC2dCommand, run};
use crate::device::identity::Identity;
use crate::output::Outcome;
use serde_json::json;

fn identity() -> Identity {
    Identity {
        host: "hub.fleethub.test".into(),
        device_id: "dev 1".into(),
        key: fake::KEY.into(),
    }
}

fn go(c: &crate::client::ServiceClient<fake::Fake>, cmd: DeviceC2dCommand) -> Outcome {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(run(cmd, c.transport(), &identity(), 1_700_000_000))
        .unwrap()
}

#[test]
fn receive_prints_data_lock_and_properties_then_rejects() {
    let c = client(|req| {
        let auth = header(req, "authorization").unwrap();
        assert!(
            auth.contains("sr=hub.fleethub.test%2Fdevices%2Fdev%201"),
            "{auth}"
        );
        assert!(!auth.contains("skn="), "a device token has no policy name");
        match (req.method, path(req)) {
            ("GET", "/devices/dev%201/messages/deviceBound") => Ok(Response {
                status: 200,
                headers: vec![
                    ("ETag".into(), "\"lock-1\"".into()),
                    ("iothub-messageid".into(), "m1".into()),
                    ("iothub-app-color".into(), "blue".into()),
                    ("content-type".into(), "text/plain".into()),
                ],
                body: b"hello".to_vec(),
            }),
            ("DELETE", "/devices/dev%201/messages/deviceBound/lock-1") => {
                assert!(req.path_and_query.contains("reject=true"));
                empty(204)
            }
            other => panic!("unexpected {other:?}"),
        }
    });
    let out = go(
        &c,
        DeviceC2dCommand::Receive {
            complete: false,
            reject: true,
            abandon: false,
        },
    );
    assert_eq!(
        out,
        Outcome::Object(json!({
            "data": "hello",
            "etag": "lock-1",
            "properties": {"system": {"iothub-messageid": "m1"}, "app": {"color": "blue"}},
        }))
    );
    assert_eq!(c.transport().requests.lock().unwrap().len(), 2);
}

#[test]
fn nothing_queued_and_settling_by_lock_token() {
    let c = client(|req| match (req.method, path(req)) {
        ("GET", _) | ("POST", "/devices/dev%201/messages/deviceBound/lock-9/abandon") => empty(204),
        ("DELETE", "/devices/dev%201/messages/deviceBound/lock-9") => {
            assert!(!req.path_and_query.contains("reject"));
            empty(204)
        }
        other => panic!("unexpected {other:?}"),
    });
    let none = go(
        &c,
        DeviceC2dCommand::Receive {
            complete: true,
            reject: false,
            abandon: false,
        },
    );
    assert!(matches!(none, Outcome::Done(ref n) if n.contains("no cloud-to-device message")));
    let done = go(
        &c,
        DeviceC2dCommand::Abandon {
            etag: "\"lock-9\"".into(),
        },
    );
    assert_eq!(done, Outcome::Done("abandoned message lock-9".into()));
    let done = go(
        &c,
        DeviceC2dCommand::Complete {
            etag: "lock-9".into(),
        },
    );
    assert_eq!(done, Outcome::Done("completed message lock-9".into()));
}
