//! The node-to-node frame decoder on arbitrary bytes: it must return an error, never panic or
//! allocate past the frame bound; and what it decodes must encode again to the same bytes.
//!
//! Raw bytes almost never pass the magic and CRC, so each input is also tried "sealed": a
//! valid magic and version, then the input as the header fields and envelopes, with the CRC
//! computed over it. That lets the fuzzer explore the envelope structure and the bodies.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shoal_rpc::{decode_frame, encode_frame, frame_length, FRAME_MAGIC, PROTOCOL_VERSION_MAX};

fuzz_target!(|data: &[u8]| {
    if let Some(prefix) = data.first_chunk::<4>() {
        if let Ok(len) = frame_length(*prefix) {
            assert!((shoal_rpc::FRAME_HEADER_BYTES..=shoal_rpc::FRAME_BYTES_MAX).contains(&len));
        }
    }
    check(&Bytes::copy_from_slice(data));

    let mut sealed = Vec::with_capacity(10 + data.len());
    sealed.extend_from_slice(&FRAME_MAGIC.to_be_bytes());
    sealed.extend_from_slice(&PROTOCOL_VERSION_MAX.to_be_bytes());
    sealed.extend_from_slice(&crc32c::crc32c(data).to_be_bytes());
    sealed.extend_from_slice(data);
    check(&Bytes::from(sealed));
});

fn check(frame: &Bytes) {
    let Ok((header, envelopes)) = decode_frame(frame) else {
        return;
    };
    let mut again = Vec::new();
    encode_frame(&header, &envelopes, &mut again).expect("a decoded frame encodes");
    assert_eq!(
        &again[4..],
        &frame[..],
        "decode then encode gives the same frame"
    );
    for envelope in &envelopes {
        if let Ok(message) = envelope.message() {
            let mut body = Vec::new();
            message
                .encode_body(&mut body)
                .expect("a decoded body encodes");
            assert_eq!(
                &body[..],
                &envelope.body[..],
                "decode then encode gives the same body"
            );
        }
    }
}
