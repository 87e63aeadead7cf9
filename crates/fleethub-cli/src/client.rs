//! The CLI's view of the service client ([`fleethub_service_client`]): the same calls, with
//! errors turned into the CLI's messages (which address, which flag to try, where the key came
//! from).
//!
//! The wire is behind [`Transport`] so the command logic is tested without sockets; the real
//! transport (`transport.rs`) is the service client's HTTPS transport.

use crate::errors::explain_transport_error;
use crate::settings::Endpoint;
use anyhow::{Result, anyhow};
use fleethub_service_client as service;
use serde_json::Value;

#[cfg(test)]
pub(crate) use fleethub_service_client::Request;
pub(crate) use fleethub_service_client::{Condition, HUB_API_VERSION, Response, Transport, seg};

pub(crate) struct ServiceClient<T> {
    inner: service::ServiceClient<T>,
    endpoint: Endpoint,
}

impl<T: Transport> ServiceClient<T> {
    pub(crate) fn new(transport: T, endpoint: Endpoint) -> Self {
        let credentials = service::Credentials {
            host_name: endpoint.host_name.clone(),
            key_name: endpoint.key_name.clone(),
            key: endpoint.key.clone(),
        };
        ServiceClient {
            inner: service::ServiceClient::new(transport, credentials)
                .with_user_agent(concat!("fleethub-cli/", env!("CARGO_PKG_VERSION"))),
            endpoint,
        }
    }

    /// Sends `api-version=version` instead of the DPS one.
    pub(crate) fn with_api_version(self, version: &'static str) -> Self {
        ServiceClient {
            inner: self.inner.with_api_version(version),
            endpoint: self.endpoint,
        }
    }

    pub(crate) fn api_version(&self) -> &'static str {
        self.inner.api_version()
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Current time, unix seconds (fixed in tests).
    pub(crate) fn now(&self) -> u64 {
        self.inner.now()
    }

    #[cfg(test)]
    pub(crate) fn with_clock(self, clock: fn() -> u64) -> Self {
        ServiceClient {
            inner: self.inner.with_clock(clock),
            endpoint: self.endpoint,
        }
    }

    #[cfg(test)]
    pub(crate) fn transport(&self) -> &T {
        self.inner.transport()
    }

    /// A service SAS token for the connection string's policy, valid for an hour.
    pub(crate) fn token(&self) -> Result<String> {
        self.inner.token().map_err(|e| self.explain(e))
    }

    /// The typed service client underneath (its errors go through [`Self::explain`]).
    pub(crate) fn service(&self) -> &service::ServiceClient<T> {
        &self.inner
    }

    /// The CLI's message for a service-client error.
    pub(crate) fn explain(&self, e: service::Error) -> anyhow::Error {
        match e {
            service::Error::Transport(source) => {
                explain_transport_error(anyhow!(source), &self.endpoint)
            }
            service::Error::Sign(e) => anyhow!(
                "cannot sign a token with the key from {}: {e}",
                self.endpoint.origin
            ),
            service::Error::Service(e) => e.into(),
            other => other.into(),
        }
    }

    /// Sends and requires a 2xx status.
    pub(crate) async fn send_ok(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, String)],
        headers: Vec<(String, String)>,
        body: Option<&Value>,
    ) -> Result<Response> {
        self.inner
            .send_ok(method, path, query, headers, body)
            .await
            .map_err(|e| self.explain(e))
    }

    /// `GET path` -> JSON.
    pub(crate) async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        self.inner
            .get(path, query)
            .await
            .map_err(|e| self.explain(e))
    }

    /// `GET path` -> JSON, or `None` on 404.
    pub(crate) async fn get_opt(&self, path: &str) -> Result<Option<Value>> {
        self.inner.get_opt(path).await.map_err(|e| self.explain(e))
    }

    /// `PUT path` with a JSON body and optional `If-Match` / `If-None-Match: *`.
    pub(crate) async fn put(&self, path: &str, body: &Value, cond: Condition<'_>) -> Result<Value> {
        self.inner
            .put(path, body, cond)
            .await
            .map_err(|e| self.explain(e))
    }

    /// `PATCH path` with a JSON body and optional `If-Match`.
    pub(crate) async fn patch(
        &self,
        path: &str,
        body: &Value,
        cond: Condition<'_>,
    ) -> Result<Value> {
        self.inner
            .patch(path, body, cond)
            .await
            .map_err(|e| self.explain(e))
    }

    /// `POST path` with a JSON body -> JSON.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.inner
            .post(path, body)
            .await
            .map_err(|e| self.explain(e))
    }

    /// `DELETE path` with an optional `If-Match`.
    pub(crate) async fn delete(&self, path: &str, if_match: Option<&str>) -> Result<()> {
        self.inner
            .delete(path, if_match)
            .await
            .map_err(|e| self.explain(e))
    }

    /// A typed call of the service client (`|c| c.list_consumer_groups()`), its errors turned
    /// into the CLI's messages.
    pub(crate) async fn typed<'a, R, F>(
        &'a self,
        call: impl FnOnce(&'a service::ServiceClient<T>) -> F,
    ) -> Result<R>
    where
        F: std::future::Future<Output = Result<R, service::Error>> + 'a,
    {
        call(&self.inner).await.map_err(|e| self.explain(e))
    }

    /// `POST path` with `{"query":"*"}`, following `x-ms-continuation` until the last page.
    pub(crate) async fn query_all(&self, path: &str) -> Result<Vec<Value>> {
        self.inner
            .query_all(path)
            .await
            .map_err(|e| self.explain(e))
    }

    /// `POST path` with `body`, following `x-ms-continuation` until the last page or until
    /// `limit` items arrived.
    pub(crate) async fn query_pages(
        &self,
        path: &str,
        body: &Value,
        limit: Option<usize>,
    ) -> Result<Vec<Value>> {
        self.inner
            .query_pages_limit(path, body, limit)
            .await
            .map_err(|e| self.explain(e))
    }

    /// `GET path` page after page (`x-ms-continuation`) until the end or `limit` items.
    pub(crate) async fn get_pages(
        &self,
        path: &str,
        limit: Option<usize>,
        page_max: usize,
    ) -> Result<Vec<Value>> {
        self.inner
            .get_pages(path, limit, page_max)
            .await
            .map_err(|e| self.explain(e))
    }
}
