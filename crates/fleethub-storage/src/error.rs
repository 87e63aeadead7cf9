use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{kind} '{id}' not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} '{id}' already exists")]
    AlreadyExists { kind: &'static str, id: String },
    #[error("{kind} '{id}': the If-Match etag does not match the current etag")]
    EtagMismatch { kind: &'static str, id: String },
    /// A device's cloud-to-device queue already holds `max` messages.
    #[error(
        "the cloud-to-device queue of '{device_id}' is full ({max} messages): the device must receive or the queue be purged first"
    )]
    QueueFull { device_id: String, max: usize },
    /// Creating one more `kind` would exceed the limit of `max`.
    #[error("at most {max} {kind}s can exist")]
    LimitReached { kind: &'static str, max: usize },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("storage backend error: {0}")]
    Backend(String),
    /// The backend cannot be reached right now (a database server down or restarting); the
    /// same call may succeed later. Nothing was written.
    #[error("the store cannot be reached: {0}")]
    Unavailable(String),
    #[error("stored {kind} '{id}' cannot be read: {reason}")]
    Corrupt {
        kind: &'static str,
        id: String,
        reason: String,
    },
}

#[cfg(feature = "rusqlite")]
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}
