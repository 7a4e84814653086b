use shoal_model::Offset;

/// Why a batch could not be indexed or cleaned. The storage caller takes its log offline with
/// this reason (a stored batch that does not parse is damage, not something to skip).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("batch at offset {base}: {why}")]
    Malformed { base: Offset, why: String },
    #[error("batch at offset {base}: compression codec {codec} is not one Kafka defines")]
    UnknownCodec { base: Offset, codec: i16 },
    #[error("batch at offset {base}: {codec} {what} failed: {why}")]
    Codec {
        base: Offset,
        codec: &'static str,
        what: &'static str,
        why: String,
    },
}

pub type Result<T> = std::result::Result<T, Error>;
