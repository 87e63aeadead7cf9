//! End-to-end: Event Hubs receivers over a backlog, with the fe2o3-amqp client against the real
//! `fleethub` binary:
//! - a receiver detached while the server's partition sender waits for credit (a backlog
//!   left) closes at once; the session stays usable; a new receiver from the last checkpoint
//!   gets every later event exactly once, in order;
//! - a receiver that asks for sender-settled deliveries (`snd-settle-mode` settled) reads past
//!   its first credit window: every event, once.

mod common;

use common::ServerProcess;
use common::device::{connect, put_device, service};
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::{Connection, Receiver, Session};
use fe2o3_amqp_types::definitions::SenderSettleMode;
use fe2o3_amqp_types::messaging::{Body, Source, annotations::OwnedKey};
use fe2o3_amqp_types::primitives::{Symbol, Value};
use fleethub_mqtt_codec::{Packet, Publish, QoS};
use serde_json::json;
use std::time::{Duration, Instant};

/// Events the device sends: a backlog of several credit windows.
const EVENTS: u16 = 120;
/// Credit granted at a time.
const WINDOW: u32 = 10;

/// SASL PLAIN with the hub's service policy (`{policy}@sas.root.{hubName}` + a SAS token).
async fn amqp_connection(s: &ServerProcess) -> ConnectionHandle<()> {
    let cs = &s.info.hub_service_connection_string;
    let get = |k: &str| {
        cs.split(';')
            .find_map(|p| p.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let (policy, key) = (get("SharedAccessKeyName"), get("SharedAccessKey"));
    let host = s.info.hub_host.clone();
    let hub_name = host.split('.').next().unwrap().to_string();
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = fleethub_core::sas::build_token(&host, &key, expiry, Some(&policy)).unwrap();
    let tls = fleethub_device::ClientTlsConfig::with_ca_file(s.ca_pem())
        .unwrap()
        .connect("localhost", s.amqp_port)
        .await
        .unwrap();
    Connection::builder()
        .container_id("e2e-amqp-backlog")
        .hostname("localhost")
        .sasl_profile(SaslProfile::Plain {
            username: format!("{policy}@sas.root.{hub_name}"),
            password: token,
        })
        .open_with_stream(tls)
        .await
        .unwrap()
}

/// The device sends `EVENTS` events (one device: one partition).
async fn backlog(server: &ServerProcess) {
    let hub = service(server);
    let key = put_device(&hub, "backlog-d1", json!({"deviceId": "backlog-d1"})).await;
    let mut dev = connect(server, "backlog-d1", &key, 600).await;
    for i in 0..EVENTS {
        let publish = Publish::new(
            "devices/backlog-d1/messages/events/",
            QoS::AtLeastOnce,
            i + 1,
            format!("{{\"i\":{i}}}").into_bytes(),
        );
        dev.writer.send(&Packet::Publish(publish)).await.unwrap();
        assert!(matches!(
            dev.reader.next().await.unwrap(),
            Some(Packet::PubAck(_))
        ));
    }
}

/// The partition holding the backlog: the one whose receiver gets an event.
async fn backlog_partition(server: &ServerProcess, session: &mut SessionHandle<()>) -> String {
    for partition in 0..4 {
        let address = address(server, partition);
        let mut rx = receiver(session, &address, -1, SenderSettleMode::Unsettled).await;
        rx.set_credit(1).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(1), rx.recv::<Body<Value>>()).await;
        let found = got.is_ok();
        if let Ok(d) = got {
            rx.accept(&d.unwrap()).await.unwrap();
        }
        rx.close().await.unwrap();
        if found {
            return address;
        }
    }
    panic!("no partition holds the backlog");
}

fn address(server: &ServerProcess, partition: u32) -> String {
    let hub_name = server.info.hub_host.split('.').next().unwrap().to_string();
    format!("{hub_name}/ConsumerGroups/$Default/Partitions/{partition}")
}

/// A receiver from after sequence number `after` (`-1`: from the start), credit set by hand.
async fn receiver(
    session: &mut SessionHandle<()>,
    address: &str,
    after: i64,
    settle: SenderSettleMode,
) -> Receiver {
    let mut filter = fe2o3_amqp_types::messaging::FilterSet::new();
    filter.insert(
        Symbol::from("apache.org:selector-filter:string"),
        Value::Described(Box::new(serde_amqp::described::Described {
            descriptor: serde_amqp::descriptor::Descriptor::Name(Symbol::from(
                "apache.org:selector-filter:string",
            )),
            value: Value::String(format!("amqp.annotation.x-opt-sequence-number > '{after}'")),
        })),
    );
    let source = Source::builder().address(address).filter(filter).build();
    Receiver::builder()
        .name(format!("rx-{after}-{}", rand::random::<u32>()))
        .source(source)
        .target("e2e")
        .sender_settle_mode(settle)
        .credit_mode(CreditMode::Manual)
        .attach(session)
        .await
        .unwrap()
}

/// Receives until `want` events came or nothing more comes for 2 s, granting `WINDOW` credit
/// whenever the last window is used up; returns the sequence numbers.
async fn read(rx: &mut Receiver, want: usize, accept: bool) -> Vec<i64> {
    let mut seqs = Vec::new();
    while seqs.len() < want {
        if seqs.len() % WINDOW as usize == 0 {
            rx.set_credit(WINDOW).await.unwrap();
        }
        let Ok(d) = tokio::time::timeout(Duration::from_secs(2), rx.recv::<Body<Value>>()).await
        else {
            break;
        };
        let d = d.unwrap();
        let seq = d
            .message()
            .message_annotations
            .as_ref()
            .and_then(|a| {
                a.0.get(&OwnedKey::Symbol(Symbol::from("x-opt-sequence-number")))
            })
            .cloned();
        let Some(Value::Long(seq)) = seq else {
            panic!("no x-opt-sequence-number: {seq:?}");
        };
        if accept {
            rx.accept(&d).await.unwrap();
        }
        seqs.push(seq);
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_detached_with_a_backlog_closes_at_once_and_a_new_one_resumes() {
    let server = ServerProcess::start();
    backlog(&server).await;
    let mut conn = amqp_connection(&server).await;
    let mut session = Session::begin(&mut conn).await.unwrap();
    let address = backlog_partition(&server, &mut session).await;

    // One window, processed; the server's sender then waits for credit with the backlog left.
    let mut rx = receiver(&mut session, &address, -1, SenderSettleMode::Unsettled).await;
    let first = read(&mut rx, WINDOW as usize, true).await;
    assert_eq!(first, (0..i64::from(WINDOW)).collect::<Vec<_>>());
    let checkpoint = *first.last().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), rx.close())
        .await
        .expect("the detach of a receiver with a backlog is answered at once")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // The same session: a new receiver from the checkpoint gets the rest, each event once.
    let mut rx = receiver(
        &mut session,
        &address,
        checkpoint,
        SenderSettleMode::Unsettled,
    )
    .await;
    let rest = read(&mut rx, usize::from(EVENTS), true).await;
    assert_eq!(
        rest,
        (checkpoint + 1..i64::from(EVENTS)).collect::<Vec<_>>(),
        "every event after the checkpoint, once, in order"
    );
    rx.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_settled_receiver_reads_past_its_first_credit_window() {
    let server = ServerProcess::start();
    backlog(&server).await;
    let mut conn = amqp_connection(&server).await;
    let mut session = Session::begin(&mut conn).await.unwrap();
    let address = backlog_partition(&server, &mut session).await;
    let mut rx = receiver(&mut session, &address, -1, SenderSettleMode::Settled).await;
    let got = read(&mut rx, usize::from(EVENTS), false).await;
    assert_eq!(
        got,
        (0..i64::from(EVENTS)).collect::<Vec<_>>(),
        "every event, once, in order, over {} credit windows",
        u32::from(EVENTS) / WINDOW
    );
    rx.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
}
