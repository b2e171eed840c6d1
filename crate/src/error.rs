//! One error type for the whole engine. Each variant is something a user can act on.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// The model file is malformed or is not a Gemma model we can run.
    #[error("bad model: {0}")]
    BadModel(String),
    /// Downloaded or stored bytes do not match their expected hash.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// Not enough storage for the model.
    #[error("storage quota exceeded: {0}")]
    Quota(String),
    /// The adapter or browser lacks a feature or limit we need, or the architecture is unknown.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// No WebGPU adapter at all.
    #[error("WebGPU is unavailable: {0}")]
    WebGpuUnavailable(String),
    /// The GPU device was lost (driver reset, tab backgrounded, ...).
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// The GPU or host ran out of memory.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// A network request failed.
    #[error("network error: {0}")]
    Network(String),
    /// The prompt (with the conversation so far) does not fit the context the model was loaded for.
    #[error("a prompt of {tokens} tokens does not fit the context of {context} tokens: shorten it or load the model with a longer context")]
    PromptTooLong { tokens: u64, context: u64 },
    /// The user or caller aborted the operation.
    #[error("aborted")]
    Aborted,
    /// A local I/O error (native file access).
    #[error("i/o error: {0}")]
    Io(String),
}

impl Error {
    /// Stable code for JS and JSON output.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadModel(_) => "BadModel",
            Error::Integrity(_) => "Integrity",
            Error::Quota(_) => "Quota",
            Error::Unsupported(_) => "Unsupported",
            Error::WebGpuUnavailable(_) => "WebGPUUnavailable",
            Error::DeviceLost(_) => "DeviceLost",
            Error::OutOfMemory(_) => "OutOfMemory",
            Error::Network(_) => "Network",
            Error::PromptTooLong { .. } => "PromptTooLong",
            Error::Aborted => "Aborted",
            Error::Io(_) => "Io",
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
