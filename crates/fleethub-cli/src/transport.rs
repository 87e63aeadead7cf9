//! The real transport: the service client's HTTPS transport. It dials `Endpoint::dial` while
//! TLS server name, certificate check and Host header use `Endpoint::host_name`; failures to
//! set it up say which flag to pass.

use crate::settings::Endpoint;
use anyhow::{Result, anyhow};
use fleethub_service_client::{CaTrust, Error, HttpsTransport, TlsTarget};

/// How to open a TLS connection to `endpoint` (also used by the live telemetry tail).
pub(crate) fn tls_target(endpoint: &Endpoint) -> Result<TlsTarget> {
    let ca = match &endpoint.ca_cert {
        Some(path) => CaTrust::File(path.clone()),
        None => CaTrust::System,
    };
    let tls = ca.client_tls().map_err(|e| match (e, &endpoint.ca_cert) {
        (Error::Tls(e), Some(_)) => anyhow!(
            "{e}; pass --ca-cert PATH with the PEM of the CA that signed the server certificate"
        ),
        (Error::Tls(e), None) => {
            anyhow!("{e}; pass --ca-cert PATH (a local server's is DATA_DIR/certs/ca.pem)")
        }
        (e, _) => e.into(),
    })?;
    TlsTarget::with_tls(tls, &endpoint.host_name, &endpoint.dial).map_err(|e| match e {
        Error::Dial { dial, reason } => anyhow!("cannot dial '{dial}': {reason}"),
        e => e.into(),
    })
}

/// The HTTPS transport to `endpoint`.
pub(crate) fn connect(endpoint: &Endpoint) -> Result<HttpsTransport> {
    Ok(HttpsTransport::new(tls_target(endpoint)?))
}
