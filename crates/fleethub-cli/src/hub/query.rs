//! `fleethub hub query -q "SELECT ..."`, as `az iot hub query`: an IoT hub query over device or
//! module twins, every page read by its continuation token (or until `--top`).

use crate::client::{ServiceClient, Transport};
use crate::output::{Column, Outcome, col};
use anyhow::Result;
use serde_json::{Value, json};

#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct QueryArgs {
    /// The query: SELECT * | items FROM devices | devices.modules [WHERE ...] [GROUP BY ...],
    /// e.g. "SELECT * FROM devices WHERE tags.environment = 'test'".
    #[arg(
        long = "query-command",
        short = 'q',
        visible_alias = "query",
        value_name = "QUERY"
    )]
    pub query: String,
    /// Stop after this many results (default: all of them, page after page).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub top: Option<u64>,
}

/// `-o table` of twins (`SELECT *`); projected and aggregated rows get a column per field.
pub(crate) const TWIN_COLUMNS: &[Column] = &[
    col("DEVICE ID", "/deviceId"),
    col("MODULE ID", "/moduleId"),
    col("STATUS", "/status"),
    col("CONNECTION", "/connectionState"),
    col("LAST ACTIVITY", "/lastActivityTime"),
    col("VERSION", "/version"),
];

pub(crate) async fn run<T: Transport>(a: QueryArgs, client: &ServiceClient<T>) -> Result<Outcome> {
    let limit = a.top.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let items = client
        .query_pages("/devices/query", &json!({ "query": a.query }), limit)
        .await?;
    let twins = !items.is_empty()
        && items.iter().all(|i| {
            i.get("deviceId").is_some() && i.get("properties").is_some_and(Value::is_object)
        });
    Ok(if twins {
        Outcome::List(items, TWIN_COLUMNS)
    } else {
        Outcome::Rows(items)
    })
}
