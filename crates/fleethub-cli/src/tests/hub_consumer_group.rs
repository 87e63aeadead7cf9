//! `fleethub hub consumer-group ...`: parsing and the wire, against the scripted transport.

use super::fake::{empty, hub_client, json, path};
use super::parse::{Top, parse};
use crate::client::Request;
use crate::hub;
use crate::output::{Outcome, OutputFormat};
use crate::{ConsumerGroupCommand, HubCommand};
use serde_json::json;

fn cmd(args: &[&str]) -> HubCommand {
    let mut v = vec!["hub", "consumer-group"];
    v.extend_from_slice(args);
    match parse(&v).unwrap_or_else(|e| panic!("{args:?}: {e}")) {
        (_, Top::Hub { cmd, .. }) => cmd,
        (_, other) => panic!("not hub: {other:?}"),
    }
}

fn run(
    handler: impl Fn(&Request) -> anyhow::Result<crate::client::Response> + Send + Sync + 'static,
    c: HubCommand,
) -> (anyhow::Result<Outcome>, Vec<Request>) {
    let client = hub_client(handler);
    let out = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(hub::dispatch(c, &client));
    let reqs = client.transport().requests.lock().unwrap().clone();
    (out, reqs)
}

#[test]
fn parses_like_az() {
    assert_eq!(
        cmd(&["create", "--name", "reports"]),
        HubCommand::ConsumerGroup(ConsumerGroupCommand::Create {
            name: "reports".into()
        })
    );
    assert_eq!(
        cmd(&["show", "-n", "$Default"]),
        HubCommand::ConsumerGroup(ConsumerGroupCommand::Show {
            name: "$Default".into()
        })
    );
    assert_eq!(
        cmd(&["list"]),
        HubCommand::ConsumerGroup(ConsumerGroupCommand::List)
    );
    assert!(parse(&["hub", "consumer-group", "delete"]).is_err());
}

#[test]
fn create_show_list_delete_on_the_wire() {
    let group = json!({"name": "reports", "createdTimeUtc": "2026-01-01T00:00:00.0000000Z"});
    let g = group.clone();
    let (out, reqs) = run(
        move |_| json(200, g.clone()),
        cmd(&["create", "--name", "reports"]),
    );
    assert_eq!(out.unwrap(), Outcome::Object(group.clone()));
    assert_eq!(reqs[0].method, "PUT");
    assert_eq!(path(&reqs[0]), "/messages/events/consumerGroups/reports");
    assert!(reqs[0].path_and_query.contains("api-version=2021-04-12"));

    let g = group.clone();
    let (out, reqs) = run(
        move |_| json(200, g.clone()),
        cmd(&["show", "-n", "$Default"]),
    );
    assert!(out.is_ok());
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(path(&reqs[0]), "/messages/events/consumerGroups/%24Default");

    let list = json!([
        {"name": "$Default", "createdTimeUtc": "2026-01-01T00:00:00.0000000Z"},
        group.clone()
    ]);
    let (out, reqs) = run(move |_| json(200, list.clone()), cmd(&["list"]));
    let out = out.unwrap();
    assert_eq!(path(&reqs[0]), "/messages/events/consumerGroups");
    let table = out.render(OutputFormat::Table);
    assert!(table.contains("NAME") && table.contains("$Default") && table.contains("reports"));

    let (out, reqs) = run(|_| empty(204), cmd(&["delete", "-n", "reports"]));
    assert_eq!(
        out.unwrap(),
        Outcome::Done("deleted consumer group 'reports'".into())
    );
    assert_eq!(reqs[0].method, "DELETE");
}

#[test]
fn service_errors_reach_the_user() {
    let (out, _) = run(
        |_| {
            json(
                409,
                json!({
                    "Message": "ErrorCode:ConsumerGroupAlreadyExists;consumer group 'reports' already exists",
                    "errorCode": 409001,
                }),
            )
        },
        cmd(&["create", "-n", "reports"]),
    );
    let e = format!("{:#}", out.unwrap_err());
    assert!(e.contains("already exists"), "{e}");
}
