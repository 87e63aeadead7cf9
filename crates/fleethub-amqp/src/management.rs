//! `$management` requests (Event Hubs' READ of the event hub and of a partition).
// Filled in with the event hub service API.

use crate::connection::ConnCtx;
use crate::request::{self, AmqpMessage};
use fe2o3_amqp_types::messaging::Body;

pub(crate) async fn handle(_ctx: &ConnCtx, req: &AmqpMessage) -> AmqpMessage {
    request::reply(req, 501, "not implemented", Body::Empty)
}
