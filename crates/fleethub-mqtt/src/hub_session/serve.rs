//! The hub side of a connection: the CONNECT handshake (identity checks, authentication,
//! takeover of an older connection, persistent-session restore), then the loop that drives
//! [`HubSession`] and performs its calls on [`fleethub_services::Hub`].

use super::{HubCall, HubReply, HubSession, HubSessionConfig, Subscriptions, check_connect};
use crate::Gateway;
use crate::connection::{Client, ConnectionError};
use crate::on_wake::OnWake;
use crate::session::{Close, Services, execute, idle_limit};
use fleethub_mqtt_codec::{Packet, QoS};
use fleethub_services::hub::twin::device_view;
use fleethub_services::hub::{EventReceiver, Revocation};
use fleethub_services::hub::{SessionSubscriptions, TwinTarget};
use fleethub_services::{AuthContext, HubEvent, HubPrincipal, Operation};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Authenticates a hub CONNECT (user name `{host}/{deviceId}[/{moduleId}]/?api-version=..`)
/// and serves the session until it ends.
pub(crate) async fn serve<R, W>(
    gw: &Gateway,
    mut client: Client<'_, R, W>,
    host: &str,
    device_id: String,
    module_id: Option<String>,
) -> Result<(), ConnectionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (peer, transport) = (client.peer, client.transport);
    let identity = match &module_id {
        Some(m) => format!("{device_id}/{m}"),
        None => device_id.clone(),
    };
    if let Err(r) = check_connect(
        &gw.hub.config().host,
        host,
        &identity,
        &client.connect.client_id,
    ) {
        let failures = gw.hub.auth_failures();
        failures.record(
            "hub",
            transport,
            &identity,
            Some(peer.to_string()),
            &r.reason,
        );
        return client.refuse(r.code).await;
    }
    let ctx = AuthContext {
        transport,
        peer: Some(peer),
    };
    let password = client.password();
    // Boxed, as the rare calls in `perform`: the connection's future need not keep room for it.
    let authenticated =
        Box::pin(
            gw.hub
                .authenticate_device(&device_id, module_id.as_deref(), &password, ctx),
        )
        .await;
    // The token and the user name are not needed any more: the session does not keep them.
    drop(password);
    (client.connect.password, client.connect.username) = (None, None);
    let principal = match authenticated {
        Ok(p) => p,
        Err(e) => return client.refuse(crate::errors::hub_connect_refusal(&e)).await,
    };
    let mut live = gw.live.register(&identity);
    let conn = live.id;
    let clean = client.connect.clean_session;
    // Boxed, as every call below that the idle connection does not wait in: a future keeps
    // room for the largest call it may await for as long as it lives.
    let (session_present, subs) = Box::pin(restore_session(gw, &identity, clean)).await;
    let attachment = gw.hub.attach_principal(&principal, conn);
    let (mut events, mut revocation) = (attachment.events, attachment.revocation);
    // Unregisters the connection however this task ends (also when it is cancelled).
    let _attached = Attached {
        hub: &gw.hub,
        device_id: &device_id,
        module_id: module_id.as_deref(),
        conn,
    };
    let cfg = HubSessionConfig {
        device_id: device_id.clone(),
        module_id: module_id.clone(),
        persistent: !clean,
        idle: idle_limit(client.connect.keep_alive, gw.cfg.idle_timeout_secs),
        token_valid_for: gw
            .hub
            .token_lifetime(&principal)
            .min(Duration::from_secs(gw.cfg.max_token_lifetime_secs)),
    };
    let mut session = HubSession::new(cfg, subs, Instant::now());
    let mut services = HubServices {
        gw,
        principal: &principal,
        conn,
        revocation: revocation.clone(),
    };
    let signals = Signals {
        events: &mut events,
        taken_over: &mut live.taken_over,
        revocation: &mut revocation,
        shutdown: OnWake::new(Box::pin(gw.shutting_down())),
        write_stall: Duration::from_secs(gw.cfg.write_stall_timeout_secs),
    };
    let result = drive(
        &mut session,
        &mut services,
        &mut client,
        signals,
        session_present,
    )
    .await;
    tracing::info!(identity, "device disconnected");
    result
}

/// Persistent session (CleanSession=0): subscriptions are kept per client identity in the
/// store, so they survive reconnects and server restarts. Returns CONNACK's session-present
/// flag and the subscriptions to resume.
async fn restore_session(gw: &Gateway, identity: &str, clean: bool) -> (bool, Subscriptions) {
    if clean {
        if let Err(e) = gw.hub.clear_session(identity).await {
            tracing::warn!(identity, "cannot clear the MQTT session: {e}");
        }
        return (false, Subscriptions::new());
    }
    match gw.hub.load_session(identity).await {
        Ok(Some(subs)) => (true, from_stored(subs)),
        Ok(None) => (false, Subscriptions::new()),
        Err(e) => {
            tracing::warn!(identity, "cannot load the MQTT session: {e}");
            (false, Subscriptions::new())
        }
    }
}

/// What a session waits for besides its client's packets.
struct Signals<'a> {
    events: &'a mut EventReceiver,
    taken_over: &'a mut oneshot::Receiver<()>,
    /// Out of band: the identity was disabled or deleted, or its key regenerated.
    revocation: &'a mut Revocation,
    /// The server shuts down (polled only once it woke: [`OnWake`]).
    shutdown: OnWake<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Longest a write may make no progress.
    write_stall: Duration,
}

/// Accepts the CONNECT, then runs the session until it closes: packets (a burst at a time),
/// hub events, revocation, takeover by a newer connection of the same identity, server
/// shutdown, keep-alive and token expiry.
///
/// Revocation is checked before anything else and ends the connection at once, without
/// writing what is queued (nothing after it is acknowledged), also while a write is stalled.
/// At shutdown the burst in progress has been stored and acknowledged (the loop only waits
/// between bursts); the session then writes what is queued and closes the stream.
async fn drive<R, W>(
    session: &mut HubSession,
    services: &mut HubServices<'_>,
    client: &mut Client<'_, R, W>,
    mut signals: Signals<'_>,
    session_present: bool,
) -> Result<(), ConnectionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let actions = session.on_connected(session_present);
    let mut close = Box::pin(execute(session, services, &mut client.writer, actions)).await?;
    let (peer, transport, identity) = (client.peer, client.transport, session.identity());
    tracing::info!(
        peer,
        transport,
        identity,
        session_present,
        "device connected"
    );
    // Both waits live as long as the loop (registering them anew for every packet showed in
    // profiles). The timer fires at the earliest deadline it was armed for; as packets move the
    // keep-alive deadline later, `on_timeout` then finds nothing due and the timer is re-armed.
    let revoked = signals.revocation.revoked();
    tokio::pin!(revoked);
    let timer = tokio::time::sleep_until(session.deadline());
    tokio::pin!(timer);
    loop {
        if let Some(reason) = services.revocation.reason() {
            return revoked_now(session, &reason);
        }
        if let Some(close) = close {
            let _ = tokio::time::timeout(signals.write_stall, client.writer.flush()).await;
            return close.into_result();
        }
        if session.deadline() < timer.deadline() {
            timer.as_mut().reset(session.deadline());
        }
        let stall = signals.write_stall;
        tokio::select! {
            biased;
            reason = &mut revoked => return revoked_now(session, &reason),
            r = tokio::time::timeout(stall, client.writer.flush()) => match r {
                Ok(r) => r?,
                Err(_) => return Err(ConnectionError::WriteStalled(stall.as_secs())),
            },
        }
        // Not biased: packets and hub events take turns as before; revocation is also checked
        // at the top of the loop, before each packet of a burst and before storing telemetry.
        close = tokio::select! {
            reason = &mut revoked => return revoked_now(session, &reason),
            () = &mut signals.shutdown => {
                let _ = tokio::time::timeout(stall, client.writer.shutdown()).await;
                return Err(ConnectionError::Protocol(format!(
                    "{}: the server is shutting down",
                    session.identity()
                )));
            }
            p = client.reader.next() => match p? {
                // Boxed: the connection waits here, idle, with only this `select!`. A burst's
                // future is kept under 1 KB (each call in it is boxed on its own), a size
                // malloc serves from its per-thread cache: larger ones cost thousands of
                // instructions each (docs/benchmarks.md).
                Some(p) => Box::pin(burst(session, services, client, p)).await?,
                None => return Ok(()),
            },
            Some(ev) = signals.events.recv() => {
                let actions = session.on_event(ev);
                Box::pin(execute(session, services, &mut client.writer, actions)).await?
            }
            _ = &mut *signals.taken_over => Some(Close::Violation(format!(
                "{}: another connection with the same identity took over",
                session.identity()
            ))),
            () = &mut timer => {
                let actions = session.on_timeout(Instant::now());
                timer.as_mut().reset(session.deadline());
                Box::pin(execute(session, services, &mut client.writer, actions)).await?
            }
        };
    }
}

/// Ends a revoked connection at once; what is queued for the client is dropped.
fn revoked_now(session: &mut HubSession, reason: &str) -> Result<(), ConnectionError> {
    let close = session
        .on_event(HubEvent::Revoked(reason.to_string()))
        .into_iter()
        .find_map(|a| match a {
            crate::session::Action::Close(c) => Some(c),
            _ => None,
        })
        .unwrap_or_else(|| Close::Violation(format!("{}: {reason}", session.identity())));
    close.into_result()
}

/// Handles `first` and every packet that has already arrived behind it, so that a run of
/// telemetry publishes is stored with one write (and acknowledged in order once durable).
async fn burst<R, W>(
    session: &mut HubSession,
    services: &mut HubServices<'_>,
    client: &mut Client<'_, R, W>,
    first: Packet,
) -> Result<Option<Close>, ConnectionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut next = Some(first);
    while let Some(p) = next {
        if services.revocation.reason().is_some() {
            // `drive` ends the connection; nothing more is handled.
            return Ok(None);
        }
        let actions = session.on_packet(p, Instant::now());
        if let Some(close) = execute(session, services, &mut client.writer, actions).await? {
            return Ok(Some(close));
        }
        next = client.reader.try_next()?;
    }
    let actions = session.on_burst_end();
    execute(session, services, &mut client.writer, actions).await
}

struct HubServices<'a> {
    gw: &'a Gateway,
    principal: &'a HubPrincipal,
    conn: u64,
    /// A revoked connection stores nothing more.
    revocation: Revocation,
}

impl Services<HubSession> for HubServices<'_> {
    async fn perform(&mut self, call: HubCall) -> HubReply {
        let hub = &self.gw.hub;
        let device = self.principal.device_id.as_str();
        let module = self.principal.module_id.as_deref();
        match call {
            HubCall::SetFeatures(f) => hub.set_features(device, module, self.conn, f),
            // `execute` boxes this future for every call, so it must stay small (under 1 KB:
            // malloc's per-thread cache): the rare calls' futures are boxed on their own (a
            // twin read or update holds kilobytes), the telemetry call's is not (one
            // allocation per message less).
            HubCall::SaveSubscriptions(subs) => {
                let identity = identity(device, module);
                let stored = to_stored(&subs);
                if let Err(e) = Box::pin(hub.save_session(&identity, &stored)).await {
                    tracing::warn!(identity, "cannot save the MQTT session: {e}");
                }
            }
            HubCall::PendingC2d => {
                return HubReply::PendingC2d(Box::pin(hub.pending_c2d(device)).await);
            }
            HubCall::MarkC2dDelivered(m) => {
                let _ = Box::pin(hub.mark_c2d_delivered(&m)).await;
            }
            HubCall::CompleteC2d(seq) => {
                if let Err(e) = Box::pin(hub.complete_c2d(seq)).await {
                    let identity = identity(device, module);
                    tracing::warn!(identity, "cannot complete a cloud-to-device message: {e}");
                }
            }
            HubCall::StoreTelemetry { messages, acks } => {
                // Over a throttle the PUBACKs wait (and this connection reads nothing more
                // meanwhile); nothing is dropped. Revocation and shutdown cut the wait short.
                if let Some(wait) = hub.pace_telemetry(self.principal, messages.len()) {
                    let mut revocation = self.revocation.clone();
                    let shutdown = self.gw.shutting_down();
                    Box::pin(async move {
                        tokio::select! {
                            () = wait => {}
                            _ = revocation.revoked() => {}
                            () = shutdown => {}
                        }
                    })
                    .await;
                }
                if self.revocation.reason().is_some() {
                    let result = Err(fleethub_services::hub::Error::Unauthorized);
                    return HubReply::TelemetryStored { acks, result };
                }
                let result = hub.send_telemetry_batch(self.principal, messages).await;
                return HubReply::TelemetryStored {
                    acks,
                    result: result.map(drop),
                };
            }
            HubCall::GetTwin { rid } => {
                let result = match hub.admit_for(Operation::TwinRead, device, module) {
                    Ok(()) => Box::pin(hub.get_twin(TwinTarget::new(device, module))).await,
                    Err(e) => Err(e),
                };
                let result =
                    result.map(|t| serde_json::to_vec(&device_view(&t)).unwrap_or_default());
                return HubReply::Twin { rid, result };
            }
            HubCall::PatchReported { rid, patch } => {
                let result = match hub.admit_for(Operation::TwinUpdate, device, module) {
                    Ok(()) => {
                        Box::pin(hub.patch_reported(TwinTarget::new(device, module), &patch)).await
                    }
                    Err(e) => Err(e),
                };
                return HubReply::ReportedPatched { rid, result };
            }
            HubCall::MethodResponse {
                rid,
                status,
                payload,
            } => hub.method_response(&rid, status, &payload),
        }
        HubReply::Done
    }
}

fn identity(device: &str, module: Option<&str>) -> String {
    match module {
        Some(m) => format!("{device}/{m}"),
        None => device.to_string(),
    }
}

/// Keeps a hub connection registered as live for as long as it exists.
struct Attached<'a> {
    hub: &'a fleethub_services::Hub,
    device_id: &'a str,
    module_id: Option<&'a str>,
    conn: u64,
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        self.hub.detach(self.device_id, self.module_id, self.conn);
    }
}

/// The stored form of subscriptions (the service keeps them): QoS as 0 or 1.
pub(super) fn to_stored(s: &Subscriptions) -> SessionSubscriptions {
    s.iter().map(|(k, q)| (k.clone(), *q as u8)).collect()
}

pub(super) fn from_stored(s: SessionSubscriptions) -> Subscriptions {
    s.into_iter()
        .map(|(k, q)| {
            let qos = if q == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            };
            (k, qos)
        })
        .collect()
}

#[cfg(test)]
mod sizes {
    use super::*;
    use crate::session::Services;

    use crate::future_size;

    /// A burst and each call it performs are boxed for every telemetry publish: both stay
    /// below 1 KB, the sizes glibc's malloc serves from its per-thread cache (a larger box
    /// cost about 4k instructions per message in callgrind).
    #[test]
    fn the_futures_boxed_per_message_stay_below_one_kilobyte() {
        type S = tokio::io::DuplexStream;
        type R = tokio::io::ReadHalf<S>;
        type W = tokio::io::WriteHalf<S>;
        type Args<'a> = (
            &'a mut HubSession,
            &'a mut HubServices<'a>,
            &'a mut Client<'a, R, W>,
            Packet,
        );
        let burst = future_size(|(s, p, c, first): Args<'_>| burst(s, p, c, first));
        let perform = future_size(|(s, c): (&mut HubServices<'_>, HubCall)| s.perform(c));
        assert!(burst < 1000, "a burst's future is {burst} bytes");
        assert!(perform < 1000, "a call's future is {perform} bytes");
    }
}
