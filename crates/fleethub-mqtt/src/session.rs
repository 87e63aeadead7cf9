//! The shape shared by the IO-free session state machines ([`crate::dps_session`],
//! [`crate::hub_session`]) and the step of the connection loop that carries out what they ask.
//!
//! A session is fed packets (`on_packet`), hub events, timeouts and the replies of the service
//! calls it asked for (`on_reply`); each returns [`Action`]s in order. The loop queues
//! [`Action::Send`] packets on the writer (written once per burst), performs
//! [`Action::Call`]s one at a time and feeds each reply back at once, so the actions a reply
//! produces come before the rest of the list, and stops at [`Action::Close`].

use crate::connection::ConnectionError;
use fleethub_mqtt_codec::{FramedWrite, Packet, QoS};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::time::Instant;

/// Keep-alive cap: Azure's maximum keep-alive (1177 s) times 1.5.
const MAX_IDLE_SECS: u64 = 1767;

/// What a session asks its connection loop to do.
#[derive(Debug)]
pub(crate) enum Action<C> {
    /// Queue a packet for the client.
    Send(Packet),
    /// Perform a service call and hand the reply to the session.
    Call(C),
    /// End the connection (after writing what is queued).
    Close(Close),
}

/// Why a session ends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Close {
    /// The client sent DISCONNECT.
    Disconnect,
    /// The client broke a rule, or the hub ended the session; the text says which.
    Violation(String),
    /// No packet within the keep-alive limit (seconds).
    KeepAlive(u64),
}

impl Close {
    pub(crate) fn into_result(self) -> Result<(), ConnectionError> {
        match self {
            Close::Disconnect => Ok(()),
            Close::Violation(m) => Err(ConnectionError::Protocol(m)),
            Close::KeepAlive(secs) => Err(ConnectionError::KeepAlive(secs)),
        }
    }
}

/// A session state machine as the loop drives it.
pub(crate) trait Session {
    type Call;
    type Reply;
    /// The reply to a [`Action::Call`] this session asked for.
    fn on_reply(&mut self, reply: Self::Reply, now: Instant) -> Vec<Action<Self::Call>>;
}

/// Performs a session's service calls (the only part of a session that waits).
pub(crate) trait Services<S: Session> {
    fn perform(&mut self, call: S::Call) -> impl Future<Output = S::Reply> + Send;
}

/// Carries out `actions` (see the module docs); `Some(close)` when the session asked to close.
pub(crate) async fn execute<S, P, W>(
    session: &mut S,
    services: &mut P,
    writer: &mut FramedWrite<W>,
    actions: Vec<Action<S::Call>>,
) -> Result<Option<Close>, ConnectionError>
where
    S: Session,
    P: Services<S>,
    W: AsyncWrite + Unpin,
{
    if actions.is_empty() {
        // Most packets of a telemetry burst ask for nothing until the burst ends.
        return Ok(None);
    }
    let mut stack = vec![actions.into_iter()];
    while let Some(top) = stack.last_mut() {
        let Some(action) = top.next() else {
            stack.pop();
            continue;
        };
        match action {
            Action::Send(p) => writer.push(&p)?,
            Action::Call(call) => {
                // Boxed: a call's future (store calls) would otherwise size every connection's
                // future for its whole life. Below 1 KB it is one of malloc's fast sizes.
                let reply = Box::pin(services.perform(call)).await;
                stack.push(session.on_reply(reply, Instant::now()).into_iter());
            }
            Action::Close(close) => return Ok(Some(close)),
        }
    }
    Ok(None)
}

/// How long a connection may stay silent: 1.5 times the CONNECT keep-alive (capped), or
/// `default_secs` when the client asked for none.
pub(crate) fn idle_limit(keep_alive_secs: u16, default_secs: u64) -> Duration {
    let keep_alive = u64::from(keep_alive_secs);
    Duration::from_secs(if keep_alive == 0 {
        default_secs
    } else {
        (keep_alive * 3).div_ceil(2).min(MAX_IDLE_SECS)
    })
}

/// When the client last sent a packet, against its idle limit.
#[derive(Debug, Clone)]
pub(crate) struct KeepAlive {
    idle: Duration,
    last_packet: Instant,
}

impl KeepAlive {
    pub(crate) fn new(idle: Duration, now: Instant) -> Self {
        KeepAlive {
            idle,
            last_packet: now,
        }
    }

    pub(crate) fn packet_seen(&mut self, now: Instant) {
        self.last_packet = now;
    }

    pub(crate) fn deadline(&self) -> Instant {
        later(self.last_packet, self.idle)
    }

    /// `Some(Close::KeepAlive)` once the deadline has passed.
    pub(crate) fn check(&self, now: Instant) -> Option<Close> {
        (now >= self.deadline()).then_some(Close::KeepAlive(self.idle.as_secs()))
    }
}

/// `at + d`, saturating far in the future.
pub(crate) fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .unwrap_or_else(|| at + Duration::from_hours(876000))
}

/// The QoS a server that speaks QoS 0 and 1 grants for a requested one.
pub(crate) fn granted_qos(requested: QoS) -> QoS {
    if requested == QoS::AtMostOnce {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_limit_is_one_and_a_half_keep_alives_capped() {
        assert_eq!(idle_limit(60, 300), Duration::from_secs(90));
        assert_eq!(idle_limit(1, 300), Duration::from_secs(2), "rounded up");
        assert_eq!(idle_limit(0, 300), Duration::from_mins(5));
        assert_eq!(idle_limit(u16::MAX, 300), Duration::from_secs(1767));
    }

    #[test]
    fn keep_alive_deadline_moves_with_each_packet() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(Duration::from_secs(90), t0);
        assert_eq!(k.check(t0 + Duration::from_secs(89)), None);
        k.packet_seen(t0 + Duration::from_mins(1));
        assert_eq!(k.deadline(), t0 + Duration::from_secs(150));
        assert_eq!(k.check(t0 + Duration::from_secs(149)), None);
        assert_eq!(
            k.check(t0 + Duration::from_secs(150)),
            Some(Close::KeepAlive(90))
        );
    }

    #[test]
    fn granted_qos_caps_at_one() {
        assert_eq!(granted_qos(QoS::AtMostOnce), QoS::AtMostOnce);
        assert_eq!(granted_qos(QoS::AtLeastOnce), QoS::AtLeastOnce);
        assert_eq!(granted_qos(QoS::ExactlyOnce), QoS::AtLeastOnce);
    }
}
