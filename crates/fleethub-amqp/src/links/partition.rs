//! Event Hubs receivers on `{eventHub}/ConsumerGroups/{group}/Partitions/{n}`: the start
//! position of the selector filter, then the partition's events in order, read from the store
//! in pages of at most [`PAGE`] events and sent as the client grants credit (a client that
//! grants none holds at most one page in memory), then live events as the partition's watch
//! reports them. Epochs (`com.microsoft:epoch`) decide who owns the partition
//! (`epochs`); the runtime metric is added when the client desires it.

use super::LinkCtx;
use super::epochs::{Refusal, Registration};
use crate::claims::Claims;
use crate::errors;
use crate::events;
use crate::filters;
use fe2o3_amqp::Sender;
use fe2o3_amqp_types::definitions::Error as AmqpError;
use fe2o3_amqp_types::messaging::{DeliveryAnnotations, annotations::OwnedKey};
use fe2o3_amqp_types::performatives::Attach;
use fe2o3_amqp_types::primitives::{Symbol, Timestamp, Value};
use fleethub_services::Clock;
use fleethub_services::hub::PartitionProperties;
use std::collections::HashMap;
use tokio::sync::Notify;

/// Most events read from the store at once per receiver.
pub const PAGE: usize = 256;
/// The link property naming the receiver's epoch (owner level).
pub const EPOCH_PROPERTY: &str = "com.microsoft:epoch";
/// The capability that asks for the receiver runtime metric.
pub const RUNTIME_METRIC: &str = "com.microsoft:enable-receiver-runtime-metric";
/// Device generation ids remembered per receiver.
const GENERATION_CACHE: usize = 4096;

/// A receiver checked and registered, ready to be accepted.
pub(crate) struct Prepared {
    partition: u32,
    start: i64,
    registration: Registration,
    pub runtime_metric: bool,
    resource: String,
}

fn epoch_of(attach: &Attach) -> Result<Option<i64>, AmqpError> {
    let Some(v) = attach
        .properties
        .as_ref()
        .and_then(|p| p.get(&Symbol::from(EPOCH_PROPERTY)))
    else {
        return Ok(None);
    };
    match v {
        Value::Long(n) => Ok(Some(*n)),
        Value::Int(n) => Ok(Some(i64::from(*n))),
        Value::Ulong(n) => Ok(Some(*n as i64)),
        Value::Uint(n) => Ok(Some(i64::from(*n))),
        other => Err(errors::argument(format!(
            "{EPOCH_PROPERTY} must be a long, not {other:?}"
        ))),
    }
}

/// Checks a receiver's partition, consumer group, start position and epoch.
pub(crate) async fn prepare(
    link: &LinkCtx,
    attach: &Attach,
    event_hub: &str,
    group: &str,
    partition: &str,
    resource: String,
) -> Result<Prepared, AmqpError> {
    let service = &link.conn.service;
    let hub = &service.hub;
    if !event_hub.eq_ignore_ascii_case(hub.event_hub_name()) {
        return Err(errors::not_found(format!(
            "the event hub '{event_hub}' does not exist here: its name is '{}'",
            hub.event_hub_name()
        )));
    }
    let Ok(partition) = partition.parse::<u32>() else {
        return Err(errors::out_of_range(format!(
            "partition '{partition}' does not exist: the partition ids are 0 to {}",
            hub.partition_count().saturating_sub(1)
        )));
    };
    hub.consumer_group(group)
        .await
        .map_err(|e| errors::hub_error(&e))?;
    let position = filters::start_position(attach.source.as_ref().and_then(|s| s.filter.as_ref()))
        .map_err(|e| errors::argument(e.to_string()))?;
    let start = hub
        .resolve_event_position(partition, &position)
        .await
        .map_err(|e| errors::hub_error(&e))?;
    let epoch = epoch_of(attach)?;
    let registration = service
        .epochs
        .register(group, partition, epoch)
        .map_err(|r| match r {
            Refusal::Owned { owner_epoch } => errors::stolen(format!(
                "a receiver with epoch {owner_epoch} owns partition {partition} of consumer group '{group}'"
            )),
            Refusal::TooMany => errors::limit(format!(
                "at most {} receivers without an epoch may read partition {partition} of consumer group '{group}'",
                super::epochs::MAX_NON_EPOCH_RECEIVERS
            )),
        })?;
    let runtime_metric = attach
        .desired_capabilities
        .as_ref()
        .is_some_and(|c| c.0.iter().any(|s| s.as_str() == RUNTIME_METRIC));
    tracing::debug!(peer = %link.conn.peer, partition, group, start, ?epoch, "amqp: partition receiver attached");
    Ok(Prepared {
        partition,
        start,
        registration,
        runtime_metric,
        resource,
    })
}

fn runtime_info(p: &PartitionProperties, now_ms: i64) -> DeliveryAnnotations {
    let mut a = DeliveryAnnotations::default();
    let mut put = |k: &str, v: Value| {
        a.0.insert(OwnedKey::Symbol(Symbol::from(k)), v);
    };
    put(
        "last_enqueued_sequence_number",
        Value::Long(p.last_enqueued_sequence_number),
    );
    put(
        "last_enqueued_offset",
        Value::String(p.last_enqueued_offset.clone()),
    );
    put(
        "last_enqueued_time_utc",
        Value::Timestamp(Timestamp::from_milliseconds(p.last_enqueued_time_utc_ms)),
    );
    put(
        "runtime_info_retrieval_time_utc",
        Value::Timestamp(Timestamp::from_milliseconds(now_ms)),
    );
    a
}

/// Why a receiver stops.
enum End {
    /// The client detached or the connection went away.
    Gone,
    /// We close the link with this error.
    Close(AmqpError),
}

/// Resolves when the receiver must be closed by us: a higher epoch took the partition, or the
/// token that covers it expired. Created once per link and polled beside every wait (a new
/// timer per event would cost more than the event).
async fn closed_by_us(stolen: &Notify, claims: &Claims, resource: &str, clock: &Clock) -> End {
    tokio::select! {
        () = stolen.notified() => End::Close(errors::stolen("a receiver with a higher epoch took the partition")),
        () = claims.wait_expired(resource, clock) => End::Close(errors::unauthorized("the token expired and was not renewed")),
    }
}

/// Sends the partition's events until the link ends.
pub(crate) async fn serve(link: LinkCtx, mut sender: Sender, p: Prepared) {
    let ctx = link.conn.clone();
    let service = ctx.service.clone();
    let hub = service.hub.clone();
    let mut generations: HashMap<String, Option<String>> = HashMap::new();
    let mut watch = match hub.watch_partition(p.partition) {
        Ok(w) => w,
        Err(e) => {
            let _ = tokio::time::timeout(
                crate::connection::CLOSE_TIMEOUT,
                sender.close_with_error(errors::hub_error(&e)),
            )
            .await;
            return;
        }
    };
    let stolen = p.registration.stolen.clone();
    let closing = closed_by_us(&stolen, &ctx.claims, &p.resource, &service.clock);
    tokio::pin!(closing);
    let mut next = p.start;
    let end = 'link: loop {
        watch.borrow_and_update();
        let page = match hub.read_partition(p.partition, next, PAGE).await {
            Ok(page) => page,
            Err(e) => break 'link End::Close(errors::hub_error(&e)),
        };
        if page.is_empty() {
            tokio::select! {
                r = watch.changed() => if r.is_err() { break 'link End::Gone },
                _ = sender.on_detach() => break 'link End::Gone,
                end = &mut closing => break 'link end,
            }
            continue;
        }
        let metric = if p.runtime_metric {
            hub.partition_properties(p.partition).await.ok()
        } else {
            None
        };
        for ev in page {
            let generation = if let Some(g) = generations.get(&ev.message.device_id) {
                g.clone()
            } else {
                if generations.len() >= GENERATION_CACHE {
                    generations.clear();
                }
                let g = hub
                    .get_device(&ev.message.device_id)
                    .await
                    .ok()
                    .and_then(|d| d.generation_id);
                generations.insert(ev.message.device_id.clone(), g.clone());
                g
            };
            let sequence_number = ev.sequence_number;
            let mut message = events::event_message(ev, generation);
            if let Some(m) = &metric {
                message.delivery_annotations = Some(runtime_info(m, service.clock.unix_ms()));
            }
            tokio::select! {
                r = sender.send_batchable(message) => match r {
                    Ok(_settlement) => next = sequence_number + 1,
                    Err(e) => {
                        tracing::debug!(peer = %ctx.peer, partition = p.partition, "amqp: receiver ended: {e}");
                        break 'link End::Gone;
                    }
                },
                end = &mut closing => break 'link end,
            }
        }
    };
    match end {
        End::Gone => {
            let _ = tokio::time::timeout(crate::connection::CLOSE_TIMEOUT, sender.close()).await;
        }
        End::Close(error) => {
            tracing::info!(peer = %ctx.peer, partition = p.partition, error = ?error.condition, "amqp: partition receiver closed");
            let _ = tokio::time::timeout(
                crate::connection::CLOSE_TIMEOUT,
                sender.close_with_error(error),
            )
            .await;
        }
    }
    drop(p.registration);
}
