//! `monitor-events`: SSE parsing, the streaming HTTP/1.1 reader, output shaping, and the
//! history/live loop against a scripted live stream and a scripted history API.

use super::fake::{Fake, hub_client, json};
use crate::client::{Request, ServiceClient};
use crate::hub::{
    BodyReader, Cursor, Follow, LiveConnector, LiveEvents, Sink, SseEvent, SseParser, SseStream,
    live_request, parse_page, payload, read_head, render, shape,
};
use crate::output::OutputFormat;
use anyhow::{Result, anyhow};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::BufReader;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn ev(event: &str, data: &str) -> SseEvent {
    SseEvent {
        event: event.into(),
        data: data.into(),
        id: None,
    }
}

#[test]
fn sse_lines_split_anywhere() {
    let stream = b"\xEF\xBB\xBF: keep-alive\n\ndata: {\"a\":1}\n\nevent: lagged\ndata: 7\r\n\r\ndata:x\ndata: y\nid: 9\n\n";
    let want = vec![
        ev("message", "{\"a\":1}"),
        ev("lagged", "7"),
        SseEvent {
            event: "message".into(),
            data: "x\ny".into(),
            id: Some("9".into()),
        },
    ];
    // Whole, and one byte at a time.
    assert_eq!(SseParser::default().push(stream).unwrap(), want);
    let mut p = SseParser::default();
    let mut got = Vec::new();
    for b in stream {
        got.extend(p.push(std::slice::from_ref(b)).unwrap());
    }
    assert_eq!(got, want);
}

#[test]
fn sse_ignores_comments_and_events_without_data() {
    let mut p = SseParser::default();
    assert!(
        p.push(b":keep-alive\n\nevent: x\n\nretry: 10\n\n")
            .unwrap()
            .is_empty()
    );
    // An empty `data:` still dispatches; an unfinished event waits for its blank line.
    assert_eq!(
        p.push(b"data:\n\ndata: tail").unwrap(),
        vec![ev("message", "")]
    );
    assert_eq!(p.push(b"\n\n").unwrap(), vec![ev("message", "tail")]);
}

#[test]
fn sse_lines_are_bounded() {
    let mut p = SseParser::default();
    let big = vec![b'a'; crate::hub::MAX_EVENT_BYTES + 1];
    let e = p.push(&big).unwrap_err().to_string();
    assert!(e.contains("longer than"), "{e}");
}

const CHUNKED_SSE: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
    transfer-encoding: chunked\r\n\r\n\
    e\r\n: keep-alive\n\n\r\n\
    1c\r\ndata: {\"sequenceNumber\":1}\n\n\r\n\
    6\r\ndata: \r\n\
    16\r\n{\"sequenceNumber\":2}\n\n\r\n\
    0\r\n\r\n";

#[test]
fn chunked_event_stream_is_read_as_it_comes() {
    for capacity in [1, 3, 7, 4096] {
        let got = block_on(async {
            let reader = BufReader::with_capacity(capacity, CHUNKED_SSE.as_bytes());
            let mut s = SseStream::start(reader, "GET /live".into()).await.unwrap();
            let mut got = Vec::new();
            while let Some(e) = s.next_event().await.unwrap() {
                got.push(e.data);
            }
            got
        });
        assert_eq!(
            got,
            ["{\"sequenceNumber\":1}", "{\"sequenceNumber\":2}"],
            "capacity {capacity}"
        );
    }
}

#[test]
fn error_answers_become_service_errors() {
    let resp = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 401 Unauthorized\r\ncontent-length: 70\r\n\r\n\
        {\"Message\":\"ErrorCode:IotHubUnauthorizedAccess;Unauthorized\",\"x\":\"12\"}";
    let e = block_on(SseStream::start(
        resp.as_bytes(),
        "GET /messages/events/live".into(),
    ))
    .err()
    .unwrap();
    let se = e.downcast_ref::<crate::errors::ServiceError>().unwrap();
    assert_eq!(se.status, 401);
    assert_eq!(se.code.as_deref(), Some("IotHubUnauthorizedAccess"));
}

#[test]
fn http_reader_rejects_garbage_and_truncation() {
    let err = |s: &'static str| {
        block_on(async {
            let mut r = s.as_bytes();
            let head = read_head(&mut r).await?;
            let mut body = BodyReader::new(r, &head)?;
            body.read_to_end(1 << 20).await
        })
        .unwrap_err()
        .to_string()
    };
    assert!(err("SSH-2.0-OpenSSH\r\n\r\n").contains("did not answer with HTTP/1.x"));
    assert!(err("").contains("without answering"));
    assert!(
        err("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc").contains("7 bytes before the end")
    );
    assert!(
        err("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n").contains("chunk size")
    );
    assert!(
        err("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nabcdeXX\r\n")
            .contains("no CRLF")
    );
    let long =
        Box::leak(format!("HTTP/1.1 200 OK\r\nx: {}\r\n\r\n", "a".repeat(9000)).into_boxed_str());
    assert!(err(long).contains("longer than"));
    // Without a length the body runs to the end of the stream.
    let ok = block_on(async {
        let mut r = "HTTP/1.0 200 OK\r\n\r\nall of it".as_bytes();
        let head = read_head(&mut r).await.unwrap();
        BodyReader::new(r, &head)
            .unwrap()
            .read_to_end(100)
            .await
            .unwrap()
    });
    assert_eq!(ok, b"all of it");
}

#[test]
fn live_request_names_the_device_and_the_token() {
    let r = live_request(
        "hub.local:8443",
        "2021-04-12",
        Some("dev 1"),
        "SharedAccessSignature sr=x",
    );
    assert!(r.starts_with(
        "GET /messages/events/live?api-version=2021-04-12&deviceId=dev%201 HTTP/1.1\r\nHost: hub.local:8443\r\n"
    ), "{r}");
    assert!(r.contains("\r\nAuthorization: SharedAccessSignature sr=x\r\n"));
    assert!(r.contains("\r\nAccept: text/event-stream\r\n") && r.ends_with("\r\n\r\n"));
    assert!(!live_request("h", "v", None, "t").contains("deviceId"));
}

fn message(seq: u64, device: &str, body: &str) -> Value {
    json!({
        "sequenceNumber": seq, "deviceId": device, "enqueuedTimeUtc": "2024-01-01T00:00:00Z",
        "systemProperties": {"iothub-connection-device-id": device, "content-type": "application/json"},
        "properties": {"color": "red"}, "body": body
    })
}

#[test]
fn events_are_shaped_like_az() {
    let m = message(7, "dev-01", "{\"t\": 21.5}");
    let line = render(&shape(&m, false), OutputFormat::Json);
    assert_eq!(
        line,
        "{\"event\":{\"origin\":\"dev-01\",\"module\":\"\",\"payload\":{\"t\":21.5},\"sequenceNumber\":7}}\n"
    );
    let with_props = serde_json::to_value(shape(&m, true)).unwrap();
    assert_eq!(
        with_props["event"]["properties"],
        json!({
            "system": {"iothub-connection-device-id": "dev-01", "content-type": "application/json",
                       "iothub-enqueuedtime": "2024-01-01T00:00:00Z"},
            "application": {"color": "red"}
        })
    );
    let mut module = message(8, "edge", "not json");
    module["moduleId"] = json!("filter");
    let v = serde_json::to_value(shape(&module, false)).unwrap();
    assert_eq!(v["event"]["module"], "filter");
    assert_eq!(v["event"]["payload"], "not json");
    let mut binary = message(9, "d", "/wA=");
    binary["bodyEncoding"] = json!("base64");
    let v = serde_json::to_value(shape(&binary, false)).unwrap();
    assert_eq!(
        (
            v["event"]["payload"].clone(),
            v["event"]["payloadEncoding"].clone()
        ),
        (json!("/wA="), json!("base64"))
    );
    let pretty = render(&shape(&m, false), OutputFormat::Table);
    assert!(
        pretty.starts_with("{\n  \"event\": {\n    \"origin\": \"dev-01\""),
        "{pretty}"
    );
}

#[test]
fn payloads_parse_as_json_or_stay_text() {
    assert_eq!(payload("{\"a\":[1]}"), json!({"a": [1]}));
    assert_eq!(payload("42"), json!(42));
    assert_eq!(payload("hello"), json!("hello"));
    assert_eq!(payload(""), json!(""));
    assert_eq!(payload("{broken"), json!("{broken"));
}

#[test]
fn cursor_prints_each_sequence_number_once() {
    let mut c = Cursor::default();
    assert!(c.take_live(5));
    assert!(!c.take_live(5));
    assert_eq!(c.covered(), Some(4));
    assert!(c.take_live(7));
    // History after a gap: 5 and 7 were printed live, 6 was not.
    assert!(!c.take_history(5) && c.take_history(6) && !c.take_history(7) && c.take_history(8));
    c.covered_to(8);
    assert!(!c.take_live(8) && !c.take_live(3) && c.take_live(9));
    let mut from = Cursor::after(10);
    assert!(!from.take_history(10) && from.take_history(11));
    // What is remembered stays bounded.
    let mut c = Cursor::default();
    for s in 1..=5000 {
        assert!(c.take_live(s));
    }
    assert!(c.covered().unwrap() >= 3999);
}

#[test]
fn pages_must_have_messages_and_next() {
    let page = json!({"messages": [message(1, "d", "x")], "next": 1});
    assert_eq!(parse_page(&page).unwrap().1, 1);
    assert!(parse_page(&json!({"next": 1})).is_err());
    assert!(parse_page(&json!({"messages": []})).is_err());
}

// --- the loop -------------------------------------------------------------------------------

enum Item {
    Msg(u64, &'static str),
    Lagged(u64),
    Broken,
}

struct Script(VecDeque<Item>);

impl LiveEvents for Script {
    async fn next_event(&mut self) -> Result<Option<SseEvent>> {
        match self.0.pop_front() {
            None => Ok(None),
            Some(Item::Msg(seq, d)) => Ok(Some(ev("message", &message(seq, d, "{}").to_string()))),
            Some(Item::Lagged(n)) => Ok(Some(ev("lagged", &n.to_string()))),
            Some(Item::Broken) => Err(anyhow!("connection reset")),
        }
    }
}

enum Open {
    Stream(Vec<Item>),
    Refused,
    Unauthorized,
}

#[derive(Default)]
struct Live {
    opens: Mutex<VecDeque<Open>>,
    opened: Mutex<Vec<Option<String>>>,
}

impl Live {
    fn new(opens: Vec<Open>) -> Self {
        Live {
            opens: Mutex::new(opens.into()),
            opened: Mutex::new(Vec::new()),
        }
    }
}

impl LiveConnector for Live {
    type Stream = Script;
    async fn open(&self, device: Option<&str>, token: String) -> Result<Script> {
        assert!(token.starts_with("SharedAccessSignature sr=hub.fleethub.test"));
        self.opened.lock().unwrap().push(device.map(String::from));
        match self.opens.lock().unwrap().pop_front() {
            Some(Open::Stream(items)) => Ok(Script(items.into())),
            Some(Open::Refused) => Err(anyhow!("cannot connect: connection refused")),
            Some(Open::Unauthorized) | None => Err(crate::errors::ServiceError::from_response(
                "GET /messages/events/live".into(),
                401,
                b"{\"Message\":\"ErrorCode:IotHubUnauthorizedAccess;Unauthorized\"}",
            )
            .into()),
        }
    }
}

#[derive(Default)]
struct Collect {
    seqs: Vec<u64>,
    notes: Vec<String>,
    limit: usize,
}

impl Sink for Collect {
    fn event(&mut self, m: &Value) -> Result<bool> {
        self.seqs.push(m["sequenceNumber"].as_u64().unwrap());
        Ok(self.seqs.len() < self.limit)
    }
    fn note(&mut self, note: &str) {
        self.notes.push(note.to_string());
    }
}

/// The history API over `stored` (messages in sequence order).
fn history(stored: Vec<Value>) -> ServiceClient<Fake> {
    hub_client(move |req: &Request| {
        assert!(
            req.path_and_query.starts_with(
                "/messages/events?api-version=2021-04-12&consumerGroup=%24Default&from="
            )
        );
        let q = |k: &str| {
            req.path_and_query
                .split(['?', '&'])
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        let (from, limit) = (q("from"), q("limit") as usize);
        let page: Vec<Value> = stored
            .iter()
            .filter(|m| m["sequenceNumber"].as_u64().unwrap() > from)
            .take(limit)
            .cloned()
            .collect();
        let next = page
            .last()
            .map_or(from, |m| m["sequenceNumber"].as_u64().unwrap());
        json(200, json!({"messages": page, "next": next}))
    })
}

fn stored(n: u64) -> Vec<Value> {
    (1..=n)
        .map(|s| message(s, if s % 2 == 1 { "a" } else { "b" }, "{}"))
        .collect()
}

fn follow(
    client: &ServiceClient<Fake>,
    live: &Live,
    device: Option<&str>,
    limit: usize,
    start: Option<u64>,
    follow_live: bool,
) -> (Result<()>, Collect) {
    let mut sink = Collect {
        limit,
        ..Default::default()
    };
    let mut f = Follow {
        client,
        live,
        device,
        consumer_group: "$Default",
        sink: &mut sink,
        cursor: Cursor::default(),
        backoff: Duration::from_millis(1),
    };
    let r = block_on(f.run(start, follow_live));
    (r, sink)
}

#[test]
fn history_then_live_without_doubles() {
    let c = history(stored(5));
    let live = Live::new(vec![Open::Stream(vec![
        Item::Msg(4, "b"),
        Item::Msg(5, "a"),
        Item::Msg(6, "b"),
        Item::Msg(7, "a"),
    ])]);
    let (r, sink) = follow(&c, &live, None, 5, Some(2), true);
    r.unwrap();
    assert_eq!(sink.seqs, [3, 4, 5, 6, 7]);
    assert_eq!(*live.opened.lock().unwrap(), [None]);
}

#[test]
fn lagging_is_filled_from_history() {
    let c = history(stored(10));
    let live = Live::new(vec![Open::Stream(vec![
        Item::Msg(1, "a"),
        Item::Lagged(3),
        Item::Msg(7, "a"),
        Item::Msg(9, "a"),
        Item::Msg(11, "a"),
    ])]);
    let (r, sink) = follow(&c, &live, Some("a"), 6, None, true);
    r.unwrap();
    assert_eq!(sink.seqs, [1, 3, 5, 7, 9, 11]);
    assert!(
        sink.notes[0].contains("fell behind by 3 messages"),
        "{:?}",
        sink.notes
    );
    assert_eq!(*live.opened.lock().unwrap(), [Some("a".to_string())]);
}

#[test]
fn reconnects_and_fills_the_gap() {
    let c = history(stored(5));
    let live = Live::new(vec![
        Open::Stream(vec![Item::Msg(1, "a"), Item::Msg(2, "b"), Item::Broken]),
        Open::Refused,
        Open::Stream(vec![
            Item::Msg(4, "b"),
            Item::Msg(5, "a"),
            Item::Msg(6, "b"),
        ]),
    ]);
    let (r, sink) = follow(&c, &live, None, 6, None, true);
    r.unwrap();
    assert_eq!(sink.seqs, [1, 2, 3, 4, 5, 6]);
    let notes = sink.notes.join("\n");
    assert!(
        notes.contains("live stream broke (connection reset); reconnecting"),
        "{notes}"
    );
    assert!(notes.contains("cannot reconnect yet"), "{notes}");
    assert!(notes.contains("reconnected"), "{notes}");
    assert_eq!(live.opened.lock().unwrap().len(), 3);
}

#[test]
fn refused_credentials_stop_reconnecting() {
    let c = history(stored(1));
    let live = Live::new(vec![
        Open::Stream(vec![Item::Msg(1, "a")]),
        Open::Unauthorized,
    ]);
    let (r, sink) = follow(&c, &live, None, 100, None, true);
    let e = r.unwrap_err().to_string();
    assert!(e.contains("401"), "{e}");
    assert_eq!(sink.seqs, [1]);
    assert!(
        sink.notes[0].contains("the server ended the live stream"),
        "{:?}",
        sink.notes
    );
}

#[test]
fn history_only_reads_every_page_and_never_opens_live() {
    let c = history(stored(1200));
    let live = Live::new(vec![]);
    let (r, sink) = follow(&c, &live, Some("b"), usize::MAX, Some(0), false);
    r.unwrap();
    assert_eq!(sink.seqs.len(), 600);
    assert!(sink.seqs.iter().all(|s| s % 2 == 0));
    assert!(live.opened.lock().unwrap().is_empty());
    // 500 + 500 + 200 messages.
    assert_eq!(c.transport().requests.lock().unwrap().len(), 3);
}
