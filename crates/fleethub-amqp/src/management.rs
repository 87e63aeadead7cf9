//! `$management` requests: Event Hubs' `READ` of `com.microsoft:eventhub` (name, created_at,
//! partition_count, partition_ids) and `com.microsoft:partition` (begin/last sequence number,
//! last offset and enqueued time, emptiness), answered with `status-code` /
//! `status-description` (see `docs/protocol-notes.md`, "Event Hubs management requests").
//! A request needs a grant covering the event hub: from `$cbs`, SASL PLAIN, or the request's
//! own `security_token` application property.

use crate::connection::ConnCtx;
use crate::errors;
use crate::request::{self, AmqpMessage};
use fe2o3_amqp_types::messaging::{AmqpValue, Body};
use fe2o3_amqp_types::primitives::{Array, OrderedMap, Timestamp, Value};
use fleethub_services::Right;
use fleethub_services::hub::{EventHubProperties, PartitionProperties};

pub const EVENTHUB_TYPE: &str = "com.microsoft:eventhub";
pub const PARTITION_TYPE: &str = "com.microsoft:partition";

fn map(entries: Vec<(&str, Value)>) -> Body<Value> {
    let mut m = OrderedMap::new();
    for (k, v) in entries {
        m.insert(Value::String(k.to_string()), v);
    }
    Body::Value(AmqpValue(Value::Map(m)))
}

/// The reply body of an event hub READ.
pub fn eventhub_body(p: &EventHubProperties) -> Body<Value> {
    map(vec![
        ("name", Value::String(p.name.clone())),
        ("type", Value::String(EVENTHUB_TYPE.into())),
        (
            "created_at",
            Value::Timestamp(Timestamp::from_milliseconds(p.created_at_ms)),
        ),
        ("partition_count", Value::Int(p.partition_ids.len() as i32)),
        (
            "partition_ids",
            Value::Array(Array::from(
                p.partition_ids
                    .iter()
                    .cloned()
                    .map(Value::String)
                    .collect::<Vec<_>>(),
            )),
        ),
    ])
}

/// The reply body of a partition READ.
pub fn partition_body(p: &PartitionProperties) -> Body<Value> {
    map(vec![
        ("name", Value::String(p.event_hub_name.clone())),
        ("type", Value::String(PARTITION_TYPE.into())),
        ("partition", Value::String(p.partition_id.clone())),
        (
            "begin_sequence_number",
            Value::Long(p.begin_sequence_number),
        ),
        (
            "last_enqueued_sequence_number",
            Value::Long(p.last_enqueued_sequence_number),
        ),
        (
            "last_enqueued_offset",
            Value::String(p.last_enqueued_offset.clone()),
        ),
        (
            "last_enqueued_time_utc",
            Value::Timestamp(Timestamp::from_milliseconds(p.last_enqueued_time_utc_ms)),
        ),
        ("is_partition_empty", Value::Bool(p.is_empty)),
    ])
}

/// An error reply (`status-code`, `status-description` and Azure's `error-condition`).
fn refuse(req: &AmqpMessage, status: i32, condition: &str, description: &str) -> AmqpMessage {
    let mut reply = request::reply(req, status, description, Body::Empty);
    if let Some(app) = reply.application_properties.as_mut() {
        app.0.insert(
            "error-condition".into(),
            fe2o3_amqp_types::primitives::SimpleValue::Symbol(condition.into()),
        );
    }
    reply
}

/// Answers one `$management` request.
pub(crate) async fn handle(ctx: &ConnCtx, req: &AmqpMessage) -> AmqpMessage {
    let service = &ctx.service;
    let hub = &service.hub;
    if request::app_prop(req, "operation") != Some("READ") {
        let op = request::app_prop(req, "operation").unwrap_or("-");
        return refuse(
            req,
            400,
            "amqp:not-implemented",
            &format!("operation '{op}' is not supported: use READ"),
        );
    }
    let name = request::app_prop(req, "name").unwrap_or_default();
    if !name.eq_ignore_ascii_case(hub.event_hub_name()) {
        return refuse(
            req,
            404,
            "amqp:not-found",
            &format!(
                "the event hub '{name}' does not exist here: its name is '{}'",
                hub.event_hub_name()
            ),
        );
    }
    let resource = format!(
        "{}/{}",
        service.host().to_ascii_lowercase(),
        name.to_ascii_lowercase()
    );
    if ctx
        .claims
        .expiry_for(&resource, service.clock.unix())
        .is_none()
    {
        match request::app_prop(req, "security_token") {
            Some(token) => match service.auth.authorize_token(
                token,
                Right::ServiceConnect,
                "amqp",
                Some(&ctx.peer),
            ) {
                Ok(grant) => ctx.claims.add(grant),
                Err(e) => {
                    let (status, description) = errors::service_auth_status(&e);
                    return refuse(req, status, "com.microsoft:auth-failed", &description);
                }
            },
            None => {
                return refuse(
                    req,
                    401,
                    "com.microsoft:auth-failed",
                    "no valid token covers the event hub: put a SAS token on $cbs first",
                );
            }
        }
        if ctx
            .claims
            .expiry_for(&resource, service.clock.unix())
            .is_none()
        {
            return refuse(
                req,
                401,
                "com.microsoft:auth-failed",
                "the token does not cover the event hub",
            );
        }
    }
    match request::app_prop(req, "type") {
        Some(EVENTHUB_TYPE) => {
            request::reply(req, 200, "OK", eventhub_body(&hub.event_hub_properties()))
        }
        Some(PARTITION_TYPE) => {
            let partition = request::app_prop(req, "partition").unwrap_or_default();
            let Ok(n) = partition.parse::<u32>() else {
                return refuse(
                    req,
                    400,
                    errors::ARGUMENT_OUT_OF_RANGE,
                    &format!(
                        "partition '{partition}' does not exist: the partition ids are 0 to {}",
                        hub.partition_count().saturating_sub(1)
                    ),
                );
            };
            match hub.partition_properties(n).await {
                Ok(p) => request::reply(req, 200, "OK", partition_body(&p)),
                Err(e) => {
                    let err = errors::hub_error(&e);
                    let condition = match &err.condition {
                        fe2o3_amqp_types::definitions::ErrorCondition::Custom(s) => {
                            s.as_str().to_string()
                        }
                        _ => "amqp:internal-error".to_string(),
                    };
                    let status = if condition == errors::ARGUMENT_OUT_OF_RANGE {
                        400
                    } else {
                        500
                    };
                    refuse(req, status, &condition, &e.to_string())
                }
            }
        }
        other => refuse(
            req,
            400,
            "amqp:not-implemented",
            &format!(
                "type '{}' is not supported: use com.microsoft:eventhub or com.microsoft:partition",
                other.unwrap_or("-")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(b: &Body<Value>, key: &str) -> Value {
        match b {
            Body::Value(AmqpValue(Value::Map(m))) => {
                m.get(&Value::String(key.into())).cloned().unwrap()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn read_bodies() {
        let eh = eventhub_body(&EventHubProperties {
            name: "hub".into(),
            created_at_ms: 1000,
            partition_ids: vec!["0".into(), "1".into()],
        });
        assert_eq!(get(&eh, "partition_count"), Value::Int(2));
        assert_eq!(
            get(&eh, "created_at"),
            Value::Timestamp(Timestamp::from_milliseconds(1000))
        );
        assert_eq!(
            get(&eh, "partition_ids"),
            Value::Array(Array::from(vec![
                Value::String("0".into()),
                Value::String("1".into())
            ]))
        );
        let p = partition_body(&PartitionProperties {
            event_hub_name: "hub".into(),
            partition_id: "1".into(),
            begin_sequence_number: 0,
            last_enqueued_sequence_number: 9,
            last_enqueued_offset: "42".into(),
            last_enqueued_time_utc_ms: 5,
            is_empty: false,
        });
        assert_eq!(get(&p, "last_enqueued_sequence_number"), Value::Long(9));
        assert_eq!(get(&p, "last_enqueued_offset"), Value::String("42".into()));
        assert_eq!(get(&p, "is_partition_empty"), Value::Bool(false));
        assert_eq!(get(&p, "type"), Value::String(PARTITION_TYPE.into()));
    }
}
