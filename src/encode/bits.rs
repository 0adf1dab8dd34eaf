//! [`BitWriter`]: the entropy-coded segment's bit sink. Bits gather in a
//! 64-bit buffer and leave it 32 at a time; a word without an 0xFF byte
//! (nearly all of them) is copied out whole, only the rare one with 0xFF
//! goes byte by byte to get its stuffed zero byte.

/// Appends Huffman codes and coefficient bits to a JPEG being written.
pub(super) struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    /// The pending bits are the low `count` bits (older bits higher up);
    /// anything above them is stale and shifted out or masked away.
    bits: u64,
    count: u32,
}

impl<'a> BitWriter<'a> {
    pub(super) fn new(out: &'a mut Vec<u8>) -> BitWriter<'a> {
        BitWriter {
            out,
            bits: 0,
            count: 0,
        }
    }

    /// Appends the low `len` bits of `value` (`len` at most 32).
    #[inline(always)]
    pub(super) fn put(&mut self, value: u32, len: u32) {
        // count < 32 between calls, so count + len < 64 and nothing spills.
        self.bits = (self.bits << len) | u64::from(value);
        self.count += len;
        if self.count >= 32 {
            self.count -= 32;
            let word = (self.bits >> self.count) as u32;
            if has_ff_byte(word) {
                for byte in word.to_be_bytes() {
                    self.out.push(byte);
                    if byte == 0xff {
                        self.out.push(0);
                    }
                }
            } else {
                self.out.extend_from_slice(&word.to_be_bytes());
            }
        }
    }

    /// Pads the last byte with one bits (as the standard asks) and writes
    /// what is left.
    pub(super) fn finish(mut self) {
        let pad = (8 - self.count % 8) % 8;
        self.put((1 << pad) - 1, pad);
        let bytes = self.count / 8;
        for i in (0..bytes).rev() {
            let byte = (self.bits >> (i * 8)) as u8;
            self.out.push(byte);
            if byte == 0xff {
                self.out.push(0);
            }
        }
    }
}

/// Whether any byte of `word` is 0xFF (the "has a zero byte" bit trick on
/// its complement).
#[inline(always)]
fn has_ff_byte(word: u32) -> bool {
    let inv = !word;
    inv.wrapping_sub(0x0101_0101) & !inv & 0x8080_8080 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffs_ff_and_pads_with_ones() {
        let mut out = Vec::new();
        let mut w = BitWriter::new(&mut out);
        w.put(0xff, 8);
        w.put(0x12, 8);
        w.put(0x3, 2);
        w.finish();
        assert_eq!(out, [0xff, 0x00, 0x12, 0xff, 0x00]);
        let mut out = Vec::new();
        let mut w = BitWriter::new(&mut out);
        for _ in 0..5 {
            w.put(0xab_cdef, 24);
        }
        w.put(0, 1);
        w.finish();
        let mut expect = [0xab, 0xcd, 0xef].repeat(5);
        expect.push(0x7f);
        assert_eq!(out, expect);
        assert!(has_ff_byte(0x00ff_0000) && !has_ff_byte(0xfe7f_80fe));
    }
}
