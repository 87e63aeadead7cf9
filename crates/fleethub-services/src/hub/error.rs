//! Errors of the hub service. They name what failed (which device, module, configuration, ...)
//! and carry no transport codes: each transport maps them in one place (HTTP status and Azure
//! error body; MQTT twin status). `Display` texts are safe to show to clients.

use fleethub_storage::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// The client failed authentication; the real reason went to the auth-failure log.
    #[error("Unauthorized")]
    Unauthorized,
    #[error("device '{id}' not found")]
    DeviceNotFound { id: String },
    #[error("module '{module}' of device '{device}' not found")]
    ModuleNotFound { device: String, module: String },
    #[error("configuration '{id}' not found")]
    ConfigurationNotFound { id: String },
    #[error("device '{id}' already exists: send If-Match (\"*\" or its etag) to update it")]
    DeviceAlreadyExists { id: String },
    #[error(
        "module '{module}' of device '{device}' already exists: send If-Match (\"*\" or its etag) to update it"
    )]
    ModuleAlreadyExists { device: String, module: String },
    #[error("configuration '{id}' already exists: send If-Match (its etag or \"*\") to update it")]
    ConfigurationAlreadyExists { id: String },
    /// A twin kept changing under a read-modify-write (`target` is `device` or
    /// `device/module`).
    #[error("the twin of '{target}' is being changed concurrently; retry")]
    TwinConflict { target: String },
    /// An `If-Match` etag does not match the current one.
    #[error("{0}")]
    PreconditionFailed(String),
    /// A cloud-to-device lock token is unknown, expired, already used or of another device.
    #[error(
        "lock token '{lock_token}' of device '{device}' is unknown, expired or already used: receive the message again"
    )]
    LockLost { device: String, lock_token: String },
    /// The device's cloud-to-device queue holds its maximum.
    #[error(
        "the cloud-to-device queue of '{device}' is full ({max} messages): the device must receive or the queue be purged first"
    )]
    QueueFull { device: String, max: usize },
    /// An Event Hubs partition that the hub does not have.
    #[error("partition '{partition}' does not exist: the hub has partitions 0 to {}", count.saturating_sub(1))]
    PartitionOutOfRange { partition: u32, count: u32 },
    #[error("consumer group '{0}' not found")]
    ConsumerGroupNotFound(String),
    #[error("consumer group '{0}' already exists")]
    ConsumerGroupExists(String),
    #[error(
        "consumer group name '{0}' is invalid: 1-50 characters of letters, digits, '.', '_' and '-'"
    )]
    InvalidConsumerGroupName(String),
    #[error("the hub already has the most consumer groups it can have ({max})")]
    TooManyConsumerGroups { max: usize },
    /// The request is malformed or not allowed as asked.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
    /// A throttle refused the operation (docs/protocol-notes.md, "Throttling").
    #[error("{what} are throttled: too many requests; retry after {retry_after_secs} s")]
    Throttled {
        /// The operation class, in words (`twin reads`, `device registrations`, ...).
        what: &'static str,
        retry_after_secs: u64,
    },
    /// The store cannot be reached right now; nothing was changed (docs/scale-out.md).
    #[error("the service is temporarily unavailable; retry after {retry_after_secs} s")]
    Unavailable { retry_after_secs: u64 },
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    pub(crate) fn device_not_found(id: &str) -> Self {
        Error::DeviceNotFound { id: id.to_string() }
    }

    pub(crate) fn module_not_found(device: &str, module: &str) -> Self {
        Error::ModuleNotFound {
            device: device.to_string(),
            module: module.to_string(),
        }
    }
}

impl From<crate::throttle::Throttled> for Error {
    fn from(t: crate::throttle::Throttled) -> Self {
        Error::Throttled {
            what: t.op.describe(),
            retry_after_secs: t.retry_after_secs(),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind: "device", id } => Error::DeviceNotFound { id },
            StoreError::NotFound { kind: "module", id } => match id.split_once('/') {
                Some((device, module)) => Error::module_not_found(device, module),
                None => Error::module_not_found(&id, ""),
            },
            StoreError::NotFound {
                kind: "configuration",
                id,
            } => Error::ConfigurationNotFound { id },
            StoreError::AlreadyExists { kind: "device", id } => Error::DeviceAlreadyExists { id },
            StoreError::AlreadyExists { kind: "module", id } => match id.split_once('/') {
                Some((device, module)) => Error::ModuleAlreadyExists {
                    device: device.into(),
                    module: module.into(),
                },
                None => Error::ModuleAlreadyExists {
                    device: id,
                    module: String::new(),
                },
            },
            StoreError::AlreadyExists {
                kind: "configuration",
                id,
            } => Error::ConfigurationAlreadyExists { id },
            StoreError::EtagMismatch { .. } => Error::PreconditionFailed(e.to_string()),
            StoreError::QueueFull { device_id, max } => Error::QueueFull {
                device: device_id,
                max,
            },
            StoreError::InvalidArgument(m) => Error::Invalid(m),
            StoreError::Unavailable(reason) => {
                tracing::warn!(%reason, "store unavailable");
                Error::Unavailable {
                    retry_after_secs: crate::STORE_RETRY_AFTER_SECS,
                }
            }
            StoreError::LimitReached {
                kind: "consumer group",
                max,
            } => Error::TooManyConsumerGroups { max },
            StoreError::NotFound { .. }
            | StoreError::AlreadyExists { .. }
            | StoreError::LimitReached { .. }
            | StoreError::Backend(_)
            | StoreError::Corrupt { .. } => {
                tracing::error!(error = %e, "store error");
                Error::Internal("storage failure".into())
            }
        }
    }
}
