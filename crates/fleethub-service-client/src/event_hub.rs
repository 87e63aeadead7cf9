//! Typed operations on the hub's Event Hub-compatible endpoint: consumer groups and partition
//! properties (fleethub's routes under `/messages/events`).

use crate::client::{Condition, ServiceClient, seg};
use crate::error::Error;
use crate::transport::Transport;
use fleethub_api::{ConsumerGroupInfo, EventHubInfo, PartitionInfo};
use serde_json::json;

const GROUPS: &str = "/messages/events/consumerGroups";

impl<T: Transport> ServiceClient<T> {
    /// `GET /messages/events/consumerGroups`: every consumer group, `$Default` first.
    pub async fn list_consumer_groups(&self) -> Result<Vec<ConsumerGroupInfo>, Error> {
        self.get_as(GROUPS).await
    }

    /// `GET /messages/events/consumerGroups/{name}`.
    pub async fn get_consumer_group(&self, name: &str) -> Result<ConsumerGroupInfo, Error> {
        self.get_as(&format!("{GROUPS}/{}", seg(name))).await
    }

    /// `PUT /messages/events/consumerGroups/{name}`: creates the group.
    pub async fn create_consumer_group(&self, name: &str) -> Result<ConsumerGroupInfo, Error> {
        self.put_as(
            &format!("{GROUPS}/{}", seg(name)),
            &json!({}),
            Condition::None,
        )
        .await
    }

    /// `DELETE /messages/events/consumerGroups/{name}`.
    pub async fn delete_consumer_group(&self, name: &str) -> Result<(), Error> {
        self.delete(&format!("{GROUPS}/{}", seg(name)), None).await
    }

    /// `GET /messages/events/partitions`: the endpoint's name, partitions and their
    /// properties.
    pub async fn event_hub_info(&self) -> Result<EventHubInfo, Error> {
        self.get_as("/messages/events/partitions").await
    }

    /// `GET /messages/events/partitions/{id}`.
    pub async fn partition_info(&self, partition: u32) -> Result<PartitionInfo, Error> {
        self.get_as(&format!("/messages/events/partitions/{partition}"))
            .await
    }
}
