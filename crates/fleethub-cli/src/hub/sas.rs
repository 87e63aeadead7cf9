//! `fleethub hub generate-sas-token`: a device/module token (signed with the identity's key,
//! which is read from the registry) or a shared access policy token (signed with the key of the
//! connection string).

use super::{KeyType, get_identity};
use crate::client::{ServiceClient, Transport};
use crate::output::Outcome;
use anyhow::{Result, anyhow, bail};

#[derive(clap::Args, Debug, Clone, PartialEq)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["device_id", "policy_name"])))]
pub struct SasArgs {
    /// Sign a token for this device (`sr={hub}/devices/{id}`, no policy name).
    #[arg(long, short = 'd')]
    pub device_id: Option<String>,
    /// Sign for a module of the device (`sr={hub}/devices/{id}/modules/{mid}`).
    #[arg(
        long,
        short = 'm',
        requires = "device_id",
        conflicts_with = "policy_name"
    )]
    pub module_id: Option<String>,
    /// Sign a service token for this shared access policy (`sr={hub}`, `skn=POLICY`); the
    /// connection string must be the policy's.
    #[arg(long, value_name = "POLICY")]
    pub policy_name: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: u64,
    /// Which of the device's keys signs the token.
    #[arg(long, value_enum, conflicts_with = "policy_name")]
    pub key_type: Option<KeyType>,
}

pub(crate) async fn run<T: Transport>(args: SasArgs, client: &ServiceClient<T>) -> Result<Outcome> {
    let endpoint = client.endpoint();
    let expiry = client.now() + args.duration;
    let token = match (&args.device_id, &args.policy_name) {
        (Some(device_id), _) => {
            let module_id = args.module_id.as_deref();
            let identity = get_identity(client, device_id, module_id).await?;
            let what = match module_id {
                Some(m) => format!("module '{m}' of device '{device_id}'"),
                None => format!("device '{device_id}'"),
            };
            let key = super::identity_key(&identity, args.key_type.unwrap_or_default(), &what)?;
            let resource = fleethub_iot_protocol::identity::hub_sas_resource(
                &endpoint.host_name,
                device_id,
                module_id,
            );
            fleethub_core::sas::build_token(&resource, &key, expiry, None)
                .map_err(|e| anyhow!("cannot sign with the key of {what}: {e}"))?
        }
        (None, Some(policy)) => {
            if !policy.eq_ignore_ascii_case(&endpoint.key_name) {
                bail!(
                    "the connection string from {} is for policy '{}', not '{policy}': pass --hub-connection-string with {policy}'s key (HostName=...;SharedAccessKeyName={policy};SharedAccessKey=...)",
                    endpoint.origin,
                    endpoint.key_name
                );
            }
            fleethub_core::sas::build_token(
                &endpoint.host_name,
                &endpoint.key,
                expiry,
                Some(&endpoint.key_name),
            )
            .map_err(|e| anyhow!("cannot sign with the key from {}: {e}", endpoint.origin))?
        }
        (None, None) => bail!("pass --device-id or --policy-name"),
    };
    Ok(Outcome::Field("sas", token))
}
