//! The real transport: the device SDK's HTTPS client. It dials `Endpoint::dial` while TLS
//! server name, certificate check and Host header use `Endpoint::host_name`.

use crate::client::{Request, Response, Transport};
use crate::settings::Endpoint;
use anyhow::{Result, anyhow};
use fleethub_device::https::split_host_port;
use fleethub_device::{ClientTlsConfig, HttpsClient, HttpsRequest};
use std::time::Duration;

pub(crate) struct HttpsTransport {
    client: HttpsClient,
    /// `host_name[:port]`: what goes into the Host header and the certificate check.
    authority: String,
}

/// How to open a TLS connection to an endpoint: the TLS settings (dialing `Endpoint::dial`
/// for the host name), the host name and port to connect to, and the Host header value.
pub(crate) struct TlsTarget {
    pub tls: ClientTlsConfig,
    pub host_name: String,
    pub port: u16,
    /// `host_name:port`, brackets around IPv6 literals.
    pub authority: String,
}

impl TlsTarget {
    pub(crate) fn new(endpoint: &Endpoint) -> Result<Self> {
        let tls = match &endpoint.ca_cert {
            Some(path) => ClientTlsConfig::with_ca_file(path)
                .map_err(|e| anyhow!("{e}; pass --ca-cert PATH with the PEM of the CA that signed the server certificate"))?,
            None => ClientTlsConfig::with_system_roots()
                .map_err(|e| anyhow!("{e}; pass --ca-cert PATH (a local server's is DATA_DIR/certs/ca.pem)"))?,
        };
        let (dial_host, port) = split_host_port(&endpoint.dial)
            .map_err(|e| anyhow!("cannot dial '{}': {e}", endpoint.dial))?;
        let tls = if dial_host.eq_ignore_ascii_case(&endpoint.host_name) {
            tls
        } else {
            tls.with_address_override(endpoint.host_name.clone(), dial_host.to_string())
        };
        let host = if endpoint.host_name.contains(':') {
            format!("[{}]", endpoint.host_name)
        } else {
            endpoint.host_name.clone()
        };
        Ok(TlsTarget {
            tls,
            host_name: endpoint.host_name.clone(),
            port,
            authority: format!("{host}:{port}"),
        })
    }
}

impl HttpsTransport {
    pub(crate) fn new(endpoint: &Endpoint) -> Result<Self> {
        let target = TlsTarget::new(endpoint)?;
        Ok(HttpsTransport {
            client: HttpsClient::new(target.tls),
            authority: target.authority,
        })
    }

    /// Bounds each request (connect, send, whole response) by `timeout` instead of the
    /// SDK's default 30 s (a direct method may take longer).
    pub(crate) fn with_timeout(self, timeout: Duration) -> Self {
        HttpsTransport {
            client: self.client.with_timeout(timeout),
            authority: self.authority,
        }
    }
}

impl Transport for HttpsTransport {
    async fn send(&self, req: Request) -> Result<Response> {
        let url = format!("{}{}", self.authority, req.path_and_query);
        let mut r = match req.method {
            "GET" => HttpsRequest::get(&url),
            "PUT" => HttpsRequest::put(&url),
            "POST" => HttpsRequest::post(&url),
            "DELETE" => HttpsRequest::delete(&url),
            "PATCH" => HttpsRequest::new(http::Method::PATCH, &url),
            other => return Err(anyhow!("unsupported HTTP method {other}")),
        }?;
        r.headers = req.headers;
        r.body = req.body;
        let resp = self.client.send(r).await?;
        let headers = resp
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        Ok(Response {
            status: resp.status.as_u16(),
            headers,
            body: resp.body.to_vec(),
        })
    }
}
