use thiserror::Error;

/// Why a quota entity, filter or value was refused. The server maps each to a Kafka code.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// Malformed or out of range (INVALID_REQUEST).
    #[error("invalid: {0}")]
    Invalid(String),
    /// Well-formed, but a quota this broker does not enforce (INVALID_REQUEST, named).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A named limit of this broker (POLICY_VIOLATION... see the server's mapping).
    #[error("limit reached: {0}")]
    Limit(String),
}

pub type Result<T> = std::result::Result<T, Error>;
