//! A hub linked to the DPS instance: Azure's `IotHubDefinitionDescription` (the `iotHubs` of a
//! provisioning service resource, `az iot dps linked-hub`; docs/protocol-notes.md, "Linked hubs").

use serde::{Deserialize, Serialize};

/// One linked hub. `name` is the hub's host name, taken from the connection string.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LinkedHub {
    /// The hub's host name (read-only in Azure: the connection string's `HostName`).
    #[serde(default)]
    pub name: String,
    /// A shared access policy connection string with registry write rights.
    #[serde(default)]
    pub connection_string: String,
    /// Weight in `hashed` allocation (0 = never chosen by hashing); absent = 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_weight: Option<i64>,
    /// Whether allocation policies may choose this hub; absent = true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_allocation_policy: Option<bool>,
    /// Azure region; kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// fleethub: `host:port` where the DPS reaches the hub's service API when that is not
    /// `name:443` (the TLS name checked stays `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_endpoint: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_shape_round_trips() {
        let text = r#"{"name":"hub2.fleethub.test","connectionString":"HostName=hub2.fleethub.test;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5","allocationWeight":2,"applyAllocationPolicy":true,"location":"westeurope"}"#;
        let hub: LinkedHub = serde_json::from_str(text).unwrap();
        assert_eq!(hub.allocation_weight, Some(2));
        assert_eq!(serde_json::to_string(&hub).unwrap(), text);
    }
}
