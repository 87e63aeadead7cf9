//! HTTP/1.1 over unix sockets: the server loop shared by the workload and management APIs,
//! and the small client the CLI (and tests) use.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};

/// Largest request body a socket API accepts.
pub const MAX_BODY: usize = 1024 * 1024;

/// A request as handlers see it.
#[derive(Debug)]
pub struct ApiRequest {
    pub method: Method,
    /// Path without the query, not yet percent-decoded.
    pub path: String,
    pub query: Option<String>,
    pub body: Bytes,
}

impl ApiRequest {
    /// The value of `name` in the query string (percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| {
                percent_encoding::percent_decode_str(&v.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    }
}

/// A JSON response.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

impl ApiResponse {
    pub fn ok(body: serde_json::Value) -> Self {
        ApiResponse {
            status: StatusCode::OK,
            body,
        }
    }

    /// An error with `{"message": ...}` (the workload API's error shape).
    pub fn error(status: StatusCode, message: impl Into<String>) -> Self {
        ApiResponse {
            status,
            body: serde_json::json!({ "message": message.into() }),
        }
    }
}

pub type BoxFuture = Pin<Box<dyn Future<Output = ApiResponse> + Send>>;
pub type Handler = Arc<dyn Fn(ApiRequest) -> BoxFuture + Send + Sync>;

/// Binds `path` (replacing a stale socket) with `mode` permissions.
pub fn bind(path: &Path, mode: u32) -> std::io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(l)
}

/// Serves `handler` on `listener` until `shutdown` turns true. At most `max_concurrent`
/// connections are served at once; further connections are closed without a reply (as
/// aziot-edged's workload sockets do).
pub async fn serve(
    listener: UnixListener,
    handler: Handler,
    max_concurrent: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(max_concurrent));
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "unix socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let handler = handler.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, handler).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            drop(permit);
        });
    }
}

async fn handle(req: Request<Incoming>, handler: Handler) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return render(&ApiResponse::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body exceeds {MAX_BODY} bytes"),
            ));
        }
    };
    let api = ApiRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        body,
    };
    render(&handler(api).await)
}

fn render(r: &ApiResponse) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(&r.body).unwrap_or_default(),
    )));
    *resp.status_mut() = r.status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HTTP error on {path}: {reason}")]
    Http { path: PathBuf, reason: String },
    #[error("no answer from {path} within {after:?}")]
    Timeout { path: PathBuf, after: Duration },
}

/// One request over the unix socket at `socket`; returns the status and the body.
pub async fn request(
    socket: &Path,
    method: Method,
    path_and_query: &str,
    body: Option<serde_json::Value>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), ClientError> {
    let fut = async {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|source| ClientError::Connect {
                path: socket.to_path_buf(),
                source,
            })?;
        let http_err = |e: hyper::Error| ClientError::Http {
            path: socket.to_path_buf(),
            reason: e.to_string(),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http_err)?;
        tokio::spawn(conn);
        let bytes = body
            .map(|b| Bytes::from(serde_json::to_vec(&b).unwrap_or_default()))
            .unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(http::header::HOST, "localhost")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes))
            .map_err(|e| ClientError::Http {
                path: socket.to_path_buf(),
                reason: e.to_string(),
            })?;
        let resp = sender.send_request(req).await.map_err(http_err)?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(http_err)?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| ClientError::Timeout {
            path: socket.to_path_buf(),
            after: timeout,
        })?
}
