//! The one TLS accept loop both listeners (MQTT/TLS and HTTPS) run, in the shape of
//! mini-redis: a semaphore bounds the open connections (shared by both listeners), every
//! connection runs in its own task, and shutdown is a broadcast every task listens to.
//!
//! On shutdown ([`Drain::shutdown`]) the accept loops stop and drop their sockets (new
//! connections are refused), every connection task is told to finish (HTTPS completes the
//! requests in flight and closes; MQTT closes its session), and the caller waits until all
//! tasks are gone or the grace period ends, whichever comes first.

use anyhow::Result;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Bound on the TLS handshake of one connection.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for open connections before the process exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Tells a task that the server is shutting down (a `broadcast` receiver, once).
#[derive(Debug)]
pub struct Shutdown {
    is_shutdown: bool,
    notify: broadcast::Receiver<()>,
}

impl Shutdown {
    pub fn is_shutdown(&self) -> bool {
        self.is_shutdown
    }

    /// Waits for the shutdown notice (returns at once if it already came).
    pub async fn recv(&mut self) {
        if self.is_shutdown {
            return;
        }
        // Closed or lagged both mean the sender is gone or has sent: shut down.
        let _ = self.notify.recv().await;
        self.is_shutdown = true;
    }
}

/// What a listener does with one accepted TLS stream. The future should end soon after
/// `shutdown` fires.
pub trait Handler: Clone + Send + Sync + 'static {
    fn serve(
        &self,
        stream: TlsStream<TcpStream>,
        peer: SocketAddr,
        shutdown: Shutdown,
    ) -> impl Future<Output = ()> + Send;
}

/// The shutdown broadcast and the drain bookkeeping shared by all listeners: every listener
/// and connection task holds a clone of `complete_tx`; when the last one is dropped,
/// `complete_rx` yields `None` and the drain is complete.
pub struct Drain {
    notify_shutdown: broadcast::Sender<()>,
    complete_tx: mpsc::Sender<()>,
    complete_rx: mpsc::Receiver<()>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    pub fn new() -> Self {
        let (notify_shutdown, _) = broadcast::channel(1);
        let (complete_tx, complete_rx) = mpsc::channel(1);
        Drain {
            notify_shutdown,
            complete_tx,
            complete_rx,
        }
    }

    /// A listener taking part in this drain.
    pub fn listener<H: Handler>(
        &self,
        name: &'static str,
        tcp: TcpListener,
        tls: TlsAcceptor,
        limit: Arc<Semaphore>,
        handler: H,
    ) -> Listener<H> {
        Listener {
            name,
            tcp,
            tls,
            limit,
            handler,
            notify_shutdown: self.notify_shutdown.clone(),
            shutdown: self.subscribe(),
            _complete: self.complete_tx.clone(),
        }
    }

    fn subscribe(&self) -> Shutdown {
        Shutdown {
            is_shutdown: false,
            notify: self.notify_shutdown.subscribe(),
        }
    }

    /// Broadcasts the shutdown and waits until every listener and connection task has
    /// finished, at most `grace`. Returns false when tasks were still running at the end.
    pub async fn shutdown(self, grace: Duration) -> bool {
        let Drain {
            notify_shutdown,
            complete_tx,
            mut complete_rx,
        } = self;
        let _ = notify_shutdown.send(());
        drop(complete_tx);
        tokio::time::timeout(grace, complete_rx.recv())
            .await
            .is_ok()
    }
}

/// One TLS listener: the accept loop of [`Listener::run`].
pub struct Listener<H> {
    /// `MQTT` or `HTTPS`, for logs.
    name: &'static str,
    tcp: TcpListener,
    tls: TlsAcceptor,
    /// Open connections over all listeners; a permit is taken before accepting.
    limit: Arc<Semaphore>,
    handler: H,
    notify_shutdown: broadcast::Sender<()>,
    shutdown: Shutdown,
    _complete: mpsc::Sender<()>,
}

impl<H: Handler> Listener<H> {
    /// Accepts until shutdown; each connection gets a task that does the TLS handshake
    /// (bounded by [`TLS_HANDSHAKE_TIMEOUT`]) and hands the stream to the handler. Returns
    /// (dropping the socket) when the shutdown notice comes.
    pub async fn run(mut self) -> Result<()> {
        loop {
            let permit = tokio::select! {
                p = self.limit.clone().acquire_owned() => p?,
                () = self.shutdown.recv() => return Ok(()),
            };
            let accepted = tokio::select! {
                a = self.tcp.accept() => a,
                () = self.shutdown.recv() => return Ok(()),
            };
            let (tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (tls, handler, name) = (self.tls.clone(), self.handler.clone(), self.name);
            let mut shutdown = Shutdown {
                is_shutdown: false,
                notify: self.notify_shutdown.subscribe(),
            };
            let complete = self._complete.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let _complete = complete;
                let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(tcp));
                let stream = tokio::select! {
                    r = handshake => match r {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => return tracing::debug!(%peer, "{name} TLS handshake failed: {e}"),
                        Err(_) => return tracing::debug!(%peer, "{name} TLS handshake timed out"),
                    },
                    () = shutdown.recv() => return,
                };
                handler.serve(stream, peer, shutdown).await;
            });
        }
    }
}
