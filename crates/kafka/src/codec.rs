//! Kafka framing: a request frame is a big-endian i32 size followed by the request header and
//! body; a response frame is a size, the response header and the body.
//!
//! Decoding never panics on bad input: every failure is a [`DecodeError`] that says whether the
//! broker can still answer (an ApiVersions request of an unknown version gets a v0 answer, as
//! the protocol prescribes for client fallback) or must close the connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::versions;

/// Bytes of the size prefix of every frame.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// A decoded request, ready for its handler.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("frame of {0} bytes is shorter than a request header")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// The API exists but this broker does not serve this version of it.
    #[error("unsupported version {version} of {api_key:?}")]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
}

/// Reads the size prefix: `Some(n)` when at least four bytes are buffered.
pub fn frame_size(prefix: &[u8]) -> Option<i32> {
    let bytes: [u8; 4] = prefix.get(..FRAME_PREFIX_BYTES)?.try_into().ok()?;
    Some(i32::from_be_bytes(bytes))
}

/// Decodes one request frame (without its size prefix).
pub fn decode_request(mut frame: Bytes) -> Result<Request, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| DecodeError::UnknownApiKey(raw_key))?;
    if !versions::supports(api_key, version) {
        return Err(DecodeError::UnsupportedVersion {
            api_key,
            version,
            correlation_id,
        });
    }
    let malformed = |reason: String| DecodeError::Malformed {
        api_key,
        version,
        reason,
    };
    let header_version = api_key.request_header_version(version);
    let header =
        RequestHeader::decode(&mut frame, header_version).map_err(|e| malformed(e.to_string()))?;
    let body =
        RequestKind::decode(api_key, &mut frame, version).map_err(|e| malformed(e.to_string()))?;
    if frame.has_remaining() {
        // Apache Kafka ignores bytes after the last field, and some clients send them
        // (librdkafka 2.16 adds three to Metadata v12), so do we.
        tracing::debug!(
            ?api_key,
            version,
            trailing = frame.remaining(),
            "ignoring bytes after the request body"
        );
    }
    Ok(Request {
        api_key,
        version,
        header,
        body,
    })
}

/// Encodes a response frame, size prefix included.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<BytesMut, String> {
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0); // Size, patched below.
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    // ApiVersions answers always use header v0, so a client that guessed a too-new version can
    // still read the answer (KIP-511).
    let header_version = if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(version)
    };
    header
        .encode(&mut out, header_version)
        .map_err(|e| e.to_string())?;
    body.encode(&mut out, version).map_err(|e| e.to_string())?;
    let size = i32::try_from(out.len() - FRAME_PREFIX_BYTES)
        .map_err(|_| "response over 2 GiB".to_string())?;
    out[..FRAME_PREFIX_BYTES].copy_from_slice(&size.to_be_bytes());
    Ok(out)
}
