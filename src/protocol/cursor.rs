//! Bounds-checked reading from the front of a byte slice, shared by the FLV tag and file
//! parsers and the codec records. Every read that runs past the end fails with the error the
//! caller chose: `Incomplete` for a stream that may still grow, a codec's "truncated" for a
//! record that is all there is.

/// A byte slice read front to back; `rest` is what has not been read yet.
pub(crate) struct Cursor<'a, E> {
    pub(crate) rest: &'a [u8],
    short_error: E,
}

impl<'a, E: Copy> Cursor<'a, E> {
    pub(crate) fn new(rest: &'a [u8], short_error: E) -> Self {
        Cursor { rest, short_error }
    }

    /// The error every short read returns, for callers that check a length themselves.
    pub(crate) fn short_error(&self) -> E {
        self.short_error
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], E> {
        let (head, tail) = self.rest.split_at_checked(len).ok_or(self.short_error)?;
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], E> {
        let bytes = self.take(N)?;
        bytes.try_into().map_err(|_| self.short_error)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, E> {
        let [byte] = self.array()?;
        Ok(byte)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, E> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u24(&mut self) -> Result<u32, E> {
        let [a, b, c] = self.array()?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, E> {
        self.array().map(u32::from_be_bytes)
    }

    /// SI24, as used for the composition time offset.
    pub(crate) fn i24(&mut self) -> Result<i32, E> {
        let [a, b, c] = self.array()?;
        // Place the 24 bits at the top, then shift back arithmetically to extend the sign.
        Ok(i32::from_be_bytes([a, b, c, 0]) >> 8)
    }
}
