//! The request decoder on arbitrary frames: it must return an error, never panic; and what it
//! decodes must encode again (the body at the decoded version) without panicking.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = shoal_kafka::codec::decode_request(Bytes::copy_from_slice(data)) {
        let mut out = BytesMut::new();
        // Encoding may refuse (e.g. a value the version cannot carry); it must not panic.
        let _ = request.body.encode(&mut out, request.version);
    }
});
