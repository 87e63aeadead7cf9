//! `fleethub dps simulate`: the dry run of a registration (`POST
//! /registrations/{id}/simulate`): which enrollment would match, whether the key is right,
//! which hub, device ID and initial twin; nothing is created.

use crate::client::{ServiceClient, Transport, seg};
use crate::output::Outcome;
use anyhow::Result;
use serde_json::json;

#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct SimulateArgs {
    /// The registration ID the device would present.
    #[arg(long, visible_aliases = ["enrollment-id", "eid"])]
    pub registration_id: String,
    /// The device's symmetric key: its individual enrollment's, or the key derived from a
    /// group key. Without it the key is not checked (and group devices cannot be told apart).
    #[arg(
        long,
        env = "FLEETHUB_DEVICE_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub key: Option<String>,
}

pub(crate) async fn run<T: Transport>(
    a: SimulateArgs,
    client: &ServiceClient<T>,
) -> Result<Outcome> {
    let body = match &a.key {
        Some(k) => json!({ "key": k.trim() }),
        None => json!({}),
    };
    let path = format!("/registrations/{}/simulate", seg(&a.registration_id));
    Ok(Outcome::Object(client.post(&path, &body).await?))
}
