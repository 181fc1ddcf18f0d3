//! Bit-level writer and reader for the chunk codec. The reader never panics: running past the
//! end is an error, so a corrupt chunk read from disk is reported, not a crash.

#[derive(Debug, Default)]
pub(crate) struct BitWriter {
    buf: Vec<u8>,
    /// Bits used in the last byte (0 = the last byte is full or there is none).
    used: u32,
}

impl BitWriter {
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        BitWriter {
            buf: Vec::with_capacity(bytes),
            used: 0,
        }
    }

    /// Writes the low `n` bits of `value`, most significant first. `n` <= 64.
    pub(crate) fn write(&mut self, value: u64, n: u32) {
        let mut left = n;
        while left > 0 {
            if self.used == 0 {
                self.buf.push(0);
            }
            let room = 8 - self.used;
            let take = room.min(left);
            let shift = left - take;
            let bits = ((value >> shift) & ((1u64 << take) - 1)) as u8;
            let last = self.buf.len() - 1;
            self.buf[last] |= bits << (room - take);
            self.used = (self.used + take) % 8;
            left -= take;
        }
    }

    pub(crate) fn bit(&mut self, b: bool) {
        self.write(u64::from(b), 1);
    }

    /// Pads to the next byte boundary.
    pub(crate) fn align(&mut self) {
        self.used = 0;
    }

    /// Appends whole bytes (after [`BitWriter::align`]).
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        debug_assert_eq!(self.used, 0);
        self.buf.extend_from_slice(b);
    }

    /// Appends `v` as a LEB128 varint (after [`BitWriter::align`]).
    pub(crate) fn varint(&mut self, mut v: u64) {
        debug_assert_eq!(self.used, 0);
        while v >= 0x80 {
            self.buf.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[derive(Debug)]
pub(crate) struct BitReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// The input ended inside a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Truncated;

impl<'a> BitReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        BitReader { buf, pos: 0 }
    }

    pub(crate) fn read(&mut self, n: u32) -> Result<u64, Truncated> {
        if n == 0 {
            return Ok(0);
        }
        if n > 64 || self.pos + n as usize > self.buf.len() * 8 {
            return Err(Truncated);
        }
        let mut out = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = self.buf[self.pos / 8];
            let off = (self.pos % 8) as u32;
            let avail = 8 - off;
            let take = avail.min(left);
            let bits = (byte >> (avail - take)) & (((1u16 << take) - 1) as u8);
            out = (out << take) | u64::from(bits);
            self.pos += take as usize;
            left -= take;
        }
        Ok(out)
    }

    pub(crate) fn bit(&mut self) -> Result<bool, Truncated> {
        Ok(self.read(1)? == 1)
    }

    /// Skips to the next byte boundary.
    pub(crate) fn align(&mut self) {
        self.pos = self.pos.div_ceil(8) * 8;
    }

    /// Reads a LEB128 varint (after [`BitReader::align`]); more than ten bytes is an error.
    pub(crate) fn varint(&mut self) -> Result<u64, Truncated> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.bytes(1)?[0];
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Truncated)
    }

    /// Takes `n` whole bytes (after [`BitReader::align`]).
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        let start = self.pos / 8;
        let b = self
            .buf
            .get(start..start.checked_add(n).ok_or(Truncated)?)
            .ok_or(Truncated)?;
        self.pos += n * 8;
        Ok(b)
    }
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(items in proptest::collection::vec((any::<u64>(), 1u32..=64), 0..50)) {
            let mut w = BitWriter::default();
            for &(v, n) in &items {
                w.write(v, n);
            }
            let bytes = w.finish();
            let mut r = BitReader::new(&bytes);
            for &(v, n) in &items {
                let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
                prop_assert_eq!(r.read(n), Ok(v & mask));
            }
        }

        #[test]
        fn zigzag_round_trip(v in any::<i64>()) {
            prop_assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    #[test]
    fn reading_past_the_end_is_an_error() {
        let mut r = BitReader::new(&[0xff]);
        assert_eq!(r.read(6), Ok(0x3f));
        assert_eq!(r.read(3), Err(Truncated));
    }
}
