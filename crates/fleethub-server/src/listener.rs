//! The one TLS accept loop both listeners (MQTT/TLS and HTTPS) run, in the shape of
//! mini-redis: a semaphore per listener bounds its open connections (so that one listener's
//! clients cannot lock the other's out), every connection runs in its own task, and shutdown
//! is a broadcast every task listens to.
//!
//! On shutdown ([`Drain::shutdown`]) the accept loops stop and drop their sockets (new
//! connections are refused), every connection task is told to finish (HTTPS completes the
//! requests in flight and closes; MQTT closes its session), and the caller waits until all
//! tasks are gone or the grace period ends, whichever comes first.
//!
//! Every accepted connection counts until it ends, also when it outlives its task: a WebSocket
//! upgraded from an HTTPS connection keeps a clone of the connection's [`Shutdown`], which holds
//! the connection's permit and its share of the drain.

use anyhow::Result;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Bound on the TLS handshake of one connection.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for open connections before the process exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Tells a task that the server is shutting down. A connection's `Shutdown` also keeps the
/// connection counted: while any clone of it lives, the connection holds its permit of the
/// listener's limit and the drain waits for it (clone it into work that outlives the
/// connection's task, such as an upgraded WebSocket).
#[derive(Debug, Clone)]
pub struct Shutdown {
    notify: watch::Receiver<bool>,
    _counted: Option<Arc<Counted>>,
}

/// What an accepted connection holds until its last [`Shutdown`] clone is gone.
#[derive(Debug)]
struct Counted {
    _permit: OwnedSemaphorePermit,
    _complete: mpsc::Sender<()>,
}

impl Shutdown {
    pub fn is_shutdown(&self) -> bool {
        *self.notify.borrow()
    }

    /// Waits for the shutdown notice (returns at once if it already came).
    pub async fn recv(&mut self) {
        // A closed channel means the drain is gone: shut down too.
        let _ = self.notify.wait_for(|down| *down).await;
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
    notify_shutdown: watch::Sender<bool>,
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
        let notify_shutdown = watch::Sender::new(false);
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
            complete_tx: self.complete_tx.clone(),
        }
    }

    fn subscribe(&self) -> Shutdown {
        Shutdown {
            notify: self.notify_shutdown.subscribe(),
            _counted: None,
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
        notify_shutdown.send_replace(true);
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
    /// Open connections of this listener; a permit is taken before accepting.
    limit: Arc<Semaphore>,
    handler: H,
    notify_shutdown: watch::Sender<bool>,
    shutdown: Shutdown,
    complete_tx: mpsc::Sender<()>,
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
                notify: self.notify_shutdown.subscribe(),
                _counted: Some(Arc::new(Counted {
                    _permit: permit,
                    _complete: self.complete_tx.clone(),
                })),
            };
            tokio::spawn(async move {
                // Boxed as well: the handshake's state (a whole TLS connection) is freed once
                // it is done, instead of sizing the task every connection keeps while it lives.
                let handshake =
                    Box::pin(tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(tcp)));
                let stream = tokio::select! {
                    r = handshake => match r {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => return tracing::debug!(%peer, "{name} TLS handshake failed: {e}"),
                        Err(_) => return tracing::debug!(%peer, "{name} TLS handshake timed out"),
                    },
                    () = shutdown.recv() => return,
                };
                // Boxed: the connection's future is large (kilobytes), and tokio copies a task's
                // future when it spawns it and again when it stores its output.
                Box::pin(handler.serve(stream, peer, shutdown)).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A TLS acceptor for `localhost` and a client trusting its CA.
    fn pki(dir: &std::path::Path) -> (TlsAcceptor, fleethub_device::ClientTlsConfig) {
        let files = crate::certs::ensure_dev_pki(dir, &["localhost".to_string()]).unwrap();
        let acceptor =
            TlsAcceptor::from(crate::tls::server_config(&files.cert_chain, &files.key).unwrap());
        let client =
            fleethub_device::ClientTlsConfig::with_ca_file(files.ca_cert.unwrap()).unwrap();
        (acceptor, client)
    }

    /// Echoes one line; when shutdown comes first, answers "bye" after `linger` (a request in
    /// flight finishing), or never when `ignore_shutdown`.
    #[derive(Clone)]
    struct Lingering {
        linger: Duration,
        ignore_shutdown: bool,
        started: Arc<AtomicUsize>,
    }

    impl Handler for Lingering {
        async fn serve(
            &self,
            mut stream: TlsStream<TcpStream>,
            _peer: SocketAddr,
            mut shutdown: Shutdown,
        ) {
            self.started.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4];
            tokio::select! {
                r = stream.read_exact(&mut buf) => {
                    if r.is_ok() {
                        let _ = stream.write_all(&buf).await;
                    }
                }
                () = shutdown.recv() => {
                    if self.ignore_shutdown {
                        std::future::pending::<()>().await;
                    }
                    tokio::time::sleep(self.linger).await;
                    let _ = stream.write_all(b"bye!").await;
                    let _ = stream.shutdown().await;
                }
            }
        }
    }

    async fn start(
        limit: usize,
        handler: Lingering,
    ) -> (
        Drain,
        u16,
        fleethub_device::ClientTlsConfig,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (acceptor, client) = pki(dir.path());
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let drain = Drain::new();
        let listener = drain.listener(
            "TEST",
            tcp,
            acceptor,
            Arc::new(Semaphore::new(limit)),
            handler,
        );
        tokio::spawn(listener.run());
        (drain, port, client, dir)
    }

    async fn wait_for(counter: &AtomicUsize, n: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while counter.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn shutdown_lets_connections_finish_and_refuses_new_ones() {
        let started = Arc::new(AtomicUsize::new(0));
        let handler = Lingering {
            linger: Duration::from_millis(300),
            ignore_shutdown: false,
            started: started.clone(),
        };
        let (drain, port, client, _dir) = start(10, handler).await;
        let mut s = client.connect("localhost", port).await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        let mut in_flight = client.connect("localhost", port).await.unwrap();
        wait_for(&started, 2).await;

        let t = std::time::Instant::now();
        let drained = tokio::spawn(drain.shutdown(Duration::from_secs(5)));
        // The in-flight connection gets its answer after the linger.
        in_flight.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"bye!");
        assert!(drained.await.unwrap(), "drain did not complete");
        assert!(t.elapsed() >= Duration::from_millis(300));
        // The listening socket is gone.
        let e = TcpStream::connect(("127.0.0.1", port)).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[tokio::test]
    async fn shutdown_gives_up_after_the_grace_period() {
        let started = Arc::new(AtomicUsize::new(0));
        let handler = Lingering {
            linger: Duration::ZERO,
            ignore_shutdown: true,
            started: started.clone(),
        };
        let (drain, port, client, _dir) = start(10, handler).await;
        let _stuck = client.connect("localhost", port).await.unwrap();
        wait_for(&started, 1).await;
        let t = std::time::Instant::now();
        assert!(!drain.shutdown(Duration::from_millis(200)).await);
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }

    /// Hands the connection to a task of its own with a clone of its `Shutdown` and returns at
    /// once, as an HTTPS connection does when it is upgraded to a WebSocket.
    #[derive(Clone)]
    struct Detaching {
        started: Arc<AtomicUsize>,
        linger: Duration,
    }

    impl Handler for Detaching {
        async fn serve(
            &self,
            mut stream: TlsStream<TcpStream>,
            _peer: SocketAddr,
            shutdown: Shutdown,
        ) {
            self.started.fetch_add(1, Ordering::SeqCst);
            let (mut upgraded, linger) = (shutdown.clone(), self.linger);
            tokio::spawn(async move {
                upgraded.recv().await;
                tokio::time::sleep(linger).await;
                let _ = stream.write_all(b"bye!").await;
                let _ = stream.shutdown().await;
                drop(upgraded);
            });
        }
    }

    #[tokio::test]
    async fn a_connection_that_outlives_its_task_still_counts() {
        let started = Arc::new(AtomicUsize::new(0));
        let handler = Detaching {
            started: started.clone(),
            linger: Duration::from_millis(400),
        };
        let dir = tempfile::tempdir().unwrap();
        let (acceptor, client) = pki(dir.path());
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let drain = Drain::new();
        let limit = Arc::new(Semaphore::new(1));
        tokio::spawn(
            drain
                .listener("TEST", tcp, acceptor, limit.clone(), handler)
                .run(),
        );
        let mut first = client.connect("localhost", port).await.unwrap();
        wait_for(&started, 1).await;
        // The handler has returned, but the detached session holds the only permit.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(limit.available_permits(), 0);
        let second = tokio::spawn({
            let client = client.clone();
            async move { client.connect("localhost", port).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(started.load(Ordering::SeqCst), 1, "second served early");
        // The drain waits for the detached session, which finishes its answer.
        let t = std::time::Instant::now();
        let drained = tokio::spawn(drain.shutdown(Duration::from_secs(5)));
        let mut buf = [0u8; 4];
        first.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"bye!");
        assert!(drained.await.unwrap(), "drain did not complete");
        assert!(
            t.elapsed() >= Duration::from_millis(400),
            "{:?}",
            t.elapsed()
        );
        second.abort();
    }

    #[tokio::test]
    async fn the_connection_limit_holds_back_accepting() {
        let started = Arc::new(AtomicUsize::new(0));
        let handler = Lingering {
            linger: Duration::ZERO,
            ignore_shutdown: false,
            started: started.clone(),
        };
        let (drain, port, client, _dir) = start(1, handler).await;
        let mut first = client.connect("localhost", port).await.unwrap();
        wait_for(&started, 1).await;
        // The kernel queues the second connection, but it is not served while the first holds
        // the only permit.
        let second = tokio::spawn({
            let client = client.clone();
            async move { client.connect("localhost", port).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(started.load(Ordering::SeqCst), 1);
        // The first connection finishes its exchange; the second is served.
        first.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        first.read_exact(&mut buf).await.unwrap();
        drop(first);
        let _second = second.await.unwrap().unwrap();
        wait_for(&started, 2).await;
        assert!(drain.shutdown(Duration::from_secs(5)).await);
    }
}
