use super::*;
use crate::uds;
use std::time::Duration;

fn identity() -> ModuleIdentity {
    ModuleIdentity {
        module_id: "$edgeHub".into(),
        generation_id: "gen-1".into(),
        primary_key: fleethub_core::keys::generate_key(),
        secondary_key: fleethub_core::keys::generate_key(),
    }
}

fn workload(id: ModuleIdentity) -> Workload {
    Workload {
        module: id.module_id.clone(),
        trust_bundle_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        identities: Arc::new(move |m| (m == id.module_id).then(|| id.clone())),
    }
}

async fn call(
    sock: &std::path::Path,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let (s, b) = uds::request(sock, method, path, body, Duration::from_secs(5))
        .await
        .unwrap();
    (s, serde_json::from_slice(&b).unwrap())
}

#[tokio::test]
async fn trust_bundle_and_signing_over_the_socket() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("workload.sock");
    let id = identity();
    let listener = uds::bind(&sock, 0o660).unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(uds::serve(
        listener,
        workload(id.clone()).handler(),
        MAX_CONCURRENT,
        rx,
    ));
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o660
    );

    let (s, b) = call(
        &sock,
        Method::GET,
        "/trust-bundle?api-version=2019-01-30",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        b["certificate"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );

    let data = "hub%2Fdevices%2Fd%2Fmodules%2F%24edgeHub\n1800000000";
    let (s, b) = call(
        &sock,
        Method::POST,
        "/modules/%24edgeHub/genid/gen-1/sign?api-version=2019-01-30",
        Some(json!({"keyId": "primary", "algo": "HMACSHA256", "data": STANDARD.encode(data)})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let expected = fleethub_core::sas::sign(
        &id.primary_key,
        "hub%2Fdevices%2Fd%2Fmodules%2F%24edgeHub",
        1800000000,
    )
    .unwrap();
    assert_eq!(b["digest"], expected);

    // wrong generation, another module, bad body, bad algo, missing api-version
    let cases = [
        (
            "/modules/%24edgeHub/genid/gen-0/sign?api-version=1",
            json!({"keyId":"primary","algo":"HMACSHA256","data":"AA=="}),
            404,
            "generation",
        ),
        (
            "/modules/other/genid/gen-1/sign?api-version=1",
            json!({"keyId":"primary","algo":"HMACSHA256","data":"AA=="}),
            403,
            "does not sign for module 'other'",
        ),
        (
            "/modules/%24edgeHub/genid/gen-1/sign?api-version=1",
            json!({"keyId":"primary"}),
            400,
            "body",
        ),
        (
            "/modules/%24edgeHub/genid/gen-1/sign?api-version=1",
            json!({"keyId":"primary","algo":"SHA1","data":"AA=="}),
            400,
            "HMACSHA256",
        ),
        (
            "/modules/%24edgeHub/genid/gen-1/sign?api-version=1",
            json!({"keyId":"primary","algo":"HMACSHA256","data":"***"}),
            400,
            "base64",
        ),
        (
            "/modules/%24edgeHub/genid/gen-1/sign",
            json!({}),
            400,
            "api-version",
        ),
    ];
    for (path, body, status, fragment) in cases {
        let (s, b) = call(&sock, Method::POST, path, Some(body)).await;
        assert_eq!(s.as_u16(), status, "{path}: {b}");
        assert!(b["message"].as_str().unwrap().contains(fragment), "{b}");
    }
    let (s, _) = call(&sock, Method::GET, "/nothing?api-version=1", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[test]
fn socket_of_a_module_without_identity_answers_404() {
    let w = Workload {
        module: "removed".into(),
        trust_bundle_pem: String::new(),
        identities: Arc::new(|_| None),
    };
    let r = w.handle(&uds::ApiRequest {
        method: Method::POST,
        path: "/modules/removed/genid/g/sign".into(),
        query: Some("api-version=1".into()),
        body: bytes::Bytes::from_static(b"{}"),
    });
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("not a module of this edge device")
    );
}

#[tokio::test]
async fn at_most_ten_concurrent_connections() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("w.sock");
    let listener = uds::bind(&sock, 0o600).unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(uds::serve(
        listener,
        workload(identity()).handler(),
        MAX_CONCURRENT,
        rx,
    ));
    // ten idle connections hold every permit
    let mut held = Vec::new();
    for _ in 0..MAX_CONCURRENT {
        held.push(tokio::net::UnixStream::connect(&sock).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let eleventh = uds::request(
        &sock,
        Method::GET,
        "/trust-bundle?api-version=1",
        None,
        Duration::from_secs(5),
    )
    .await;
    assert!(
        eleventh.is_err(),
        "the 11th connection is closed without a reply"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (s, _) = call(&sock, Method::GET, "/trust-bundle?api-version=1", None).await;
    assert_eq!(s, StatusCode::OK);
}
