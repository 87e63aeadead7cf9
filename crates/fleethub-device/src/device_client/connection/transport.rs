//! The TLS connector: one fresh TCP + TLS stream per connection attempt.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use super::super::{DeviceError, Ids};
use super::DeviceClientOptions;
use crate::tls::ClientTlsConfig;

/// A byte stream the MQTT client can run on.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

pub(crate) type BoxTransport = Box<dyn Transport>;
pub(crate) type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<BoxTransport, DeviceError>> + Send>>;
/// Makes a new transport stream per connection attempt.
pub(crate) type Connector = Arc<dyn Fn() -> ConnectFuture + Send + Sync>;

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`.
pub(super) fn split_address(
    address: &str,
    default_port: u16,
) -> Result<(String, u16), DeviceError> {
    let bad = || DeviceError::Config(format!("invalid connect_address '{address}'"));
    if let Some(rest) = address.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((h.to_string(), p.parse().map_err(|_| bad())?)),
            None if after.is_empty() => Ok((h.to_string(), default_port)),
            None => Err(bad()),
        };
    }
    match address.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && !h.is_empty() => {
            Ok((h.to_string(), p.parse().map_err(|_| bad())?))
        }
        _ if address.is_empty() => Err(bad()),
        _ => Ok((address.to_string(), default_port)),
    }
}

/// TCP + TLS to the gateway or hub (or `connect_address`), verifying the gateway or hub
/// host name.
pub(crate) fn tls_connector(
    ids: &Ids,
    options: &DeviceClientOptions,
) -> Result<Connector, DeviceError> {
    let tls = match (&options.tls, &options.ca_pem_file) {
        (Some(tls), _) => tls.clone(),
        (None, Some(path)) => ClientTlsConfig::with_ca_file(path)?,
        (None, None) => ClientTlsConfig::with_system_roots()?,
    };
    let server_name = ids.gateway.clone().unwrap_or_else(|| ids.host.clone());
    let dial = options
        .connect_address
        .as_deref()
        .map(|a| split_address(a, options.port))
        .transpose()?;
    let port = options.port;
    Ok(Arc::new(move || {
        let tls = tls.clone();
        let server_name = server_name.clone();
        let dial = dial.clone();
        Box::pin(async move {
            let stream = match dial {
                Some((host, port)) => crate::tls::connect(&tls, &host, port, &server_name).await?,
                None => tls.connect(&server_name, port).await?,
            };
            Ok(Box::new(stream) as BoxTransport)
        })
    }))
}
