//! ApiVersions: the APIs and version ranges this broker serves (see `versions.rs`).
//!
//! A request of a version this broker does not know gets a version-0 response with
//! UNSUPPORTED_VERSION and the full table, so the client can retry with a version both know
//! (KIP-511); `codec::encode_response` always uses header v0 for this API.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;

use crate::versions::SUPPORTED;

pub fn handle() -> ApiVersionsResponse {
    let keys = SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(keys)
}

/// The answer to an ApiVersions request of an unknown version (encode it as version 0).
pub fn unsupported_version() -> ApiVersionsResponse {
    handle().with_error_code(ResponseError::UnsupportedVersion.code())
}
