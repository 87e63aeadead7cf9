//! The DPS's client of custom allocation webhooks (docs/protocol-notes.md, "Custom allocation
//! webhook"): one JSON POST per registration, over HTTPS (trusting the system's CAs plus this
//! server's CA and `linked_hub_ca_file`), or plain HTTP to a loopback address. The bound on a
//! call is the services' (`Dps::set_allocation_webhooks`). Error texts never carry the URL: its
//! query often holds a function key.

use bytes::Bytes;
use fleethub_device::{ClientTlsConfig, HttpsClient, HttpsRequest};
use fleethub_services::dps::{AllocationWebhooks, WebhookError, WebhookFuture, WebhookReply};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// POSTs allocation requests to webhooks.
pub struct WebhookClient {
    https: HttpsClient,
}

impl WebhookClient {
    pub fn new(tls: ClientTlsConfig) -> Self {
        WebhookClient {
            https: HttpsClient::new(tls),
        }
    }

    async fn post_now(&self, url: &str, body: &[u8]) -> Result<WebhookReply, WebhookError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| WebhookError("the webhook URL is not absolute".into()))?;
        if scheme.eq_ignore_ascii_case("http") {
            return post_plain(rest, body).await;
        }
        let req = HttpsRequest::post(url)
            .map_err(|e| WebhookError(format!("bad webhook URL: {e}")))?
            .header("content-type", "application/json")
            .body(body.to_vec());
        let resp = self
            .https
            .send(req)
            .await
            .map_err(|e| WebhookError(e.to_string()))?;
        Ok(WebhookReply {
            status: resp.status.as_u16(),
            body: resp.body.to_vec(),
        })
    }
}

/// `host[:port]/path?query` over plain HTTP/1.1 (loopback only; checked when the enrollment was
/// written and again here).
async fn post_plain(rest: &str, body: &[u8]) -> Result<WebhookReply, WebhookError> {
    let (authority, path) = rest
        .find(['/', '?'])
        .map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']'),
            p.parse::<u16>()
                .map_err(|_| WebhookError(format!("bad port in '{authority}'")))?,
        ),
        _ => (authority.trim_start_matches('[').trim_end_matches(']'), 80),
    };
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| WebhookError(format!("cannot resolve '{host}': {e}")))?
        .collect();
    let Some(addr) = addrs.into_iter().find(|a| a.ip().is_loopback()) else {
        return Err(WebhookError(format!(
            "plain http is only used to a loopback address; '{host}' is not one"
        )));
    };
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| WebhookError(format!("cannot connect to {addr}: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| WebhookError(e.to_string()))?;
    let driver = tokio::spawn(conn);
    let req = hyper::Request::post(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| WebhookError(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| WebhookError(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| WebhookError(e.to_string()))?
        .to_bytes()
        .to_vec();
    driver.abort();
    Ok(WebhookReply { status, body })
}

impl AllocationWebhooks for WebhookClient {
    fn post<'a>(&'a self, url: &'a str, body: &'a [u8]) -> WebhookFuture<'a> {
        Box::pin(self.post_now(url, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP server on loopback answering `status` with `answer`; returns the URL
    /// and what it received.
    async fn serve_once(
        status: u16,
        answer: &'static str,
    ) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/api/alloc?code=secret",
            listener.local_addr().unwrap()
        );
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if got.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
            s.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8(got).unwrap()
        });
        (url, task)
    }

    fn client() -> WebhookClient {
        let roots = rustls::RootCertStore::empty();
        WebhookClient::new(ClientTlsConfig::from_rustls(std::sync::Arc::new(
            fleethub_device::tls::client_config(roots).unwrap(),
        )))
    }

    #[tokio::test]
    async fn posts_json_over_loopback_http_and_returns_the_whole_answer() {
        let (url, server) = serve_once(200, r#"{"iotHubHostName":"hub2.test"}"#).await;
        let reply = client().post(&url, br#"{"a":1}"#).await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, br#"{"iotHubHostName":"hub2.test"}"#);
        let got = server.await.unwrap();
        assert!(
            got.starts_with("POST /api/alloc?code=secret HTTP/1.1\r\n"),
            "{got}"
        );
        assert!(
            got.to_ascii_lowercase()
                .contains("content-type: application/json")
        );
        assert!(got.ends_with(r#"{"a":1}"#), "{got}");

        let (url, _server) = serve_once(500, "oops").await;
        assert_eq!(client().post(&url, b"{}").await.unwrap().status, 500);
    }

    #[tokio::test]
    async fn plain_http_goes_to_loopback_only_and_errors_hide_the_url() {
        let err = client()
            .post("http://192.0.2.1:9/x?code=secret", b"{}")
            .await
            .unwrap_err();
        assert!(err.0.contains("loopback"), "{err}");
        // Nothing listens there: the error names the address, not the key.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = client()
            .post(&format!("http://127.0.0.1:{port}/x?code=secret"), b"{}")
            .await
            .unwrap_err();
        assert!(!err.0.contains("secret"), "{err}");
    }
}
