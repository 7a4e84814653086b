//! A bounds-checked big-endian reader over a `Bytes`. Every read returns `None` when the bytes
//! run out instead of panicking; callers turn that into the error that names what was missing.

use bytes::Bytes;

pub(crate) struct Cursor<'a> {
    bytes: &'a Bytes,
    position: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a Bytes) -> Cursor<'a> {
        Cursor { bytes, position: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let rest = self.bytes.get(self.position..)?;
        let (head, _) = rest.split_first_chunk::<N>()?;
        self.position += N;
        Some(*head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[byte]| byte)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    pub(crate) fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_be_bytes)
    }

    /// The next `len` bytes as a zero-copy slice of the underlying buffer.
    pub(crate) fn slice(&mut self, len: usize) -> Option<Bytes> {
        if len > self.remaining() {
            return None;
        }
        let start = self.position;
        self.position += len;
        Some(self.bytes.slice(start..self.position))
    }

    /// Everything not read yet, as a zero-copy slice.
    pub(crate) fn rest(&mut self) -> Bytes {
        let start = self.position;
        self.position = self.bytes.len();
        self.bytes.slice(start..)
    }
}
