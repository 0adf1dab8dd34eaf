//! [`HuffmanCodes`]: a Huffman table turned into a (code, length) per
//! symbol, and the coding of one quantized block with a DC and an AC table.

use super::bits::BitWriter;
use super::tables::HuffmanSpec;

/// The code and its length in bits for each of the 256 symbols (a length
/// of 0 for a symbol the table lacks), as `code << 8 | length`: one load
/// per symbol.
pub(super) struct HuffmanCodes {
    packed: [u32; 256],
}

impl HuffmanCodes {
    /// Assigns canonical codes (Annex C): shorter codes first, each length's
    /// codes consecutive.
    pub(super) fn new(spec: &HuffmanSpec) -> HuffmanCodes {
        let mut codes = [0u16; 256];
        let mut lengths = [0u8; 256];
        let mut code = 0u32;
        let mut symbols = spec.symbols.iter();
        for (len, &count) in (1u8..=16).zip(&spec.counts) {
            for _ in 0..count {
                if let Some(&s) = symbols.next() {
                    codes[usize::from(s)] = code as u16;
                    lengths[usize::from(s)] = len;
                }
                code += 1;
            }
            code <<= 1;
        }
        let mut packed = [0u32; 256];
        for ((p, &c), &l) in packed.iter_mut().zip(&codes).zip(&lengths) {
            *p = u32::from(c) << 8 | u32::from(l);
        }
        HuffmanCodes { packed }
    }

    /// The symbol's code followed by the low `extra_len` bits of `extra`,
    /// as one value and its length.
    #[inline(always)]
    fn with_extra(&self, symbol: u32, extra: u32, extra_len: u32) -> (u32, u32) {
        let packed = self.packed[symbol as usize & 0xff];
        let value = ((packed >> 8) << extra_len) | (extra & ((1 << extra_len) - 1));
        (value, (packed & 0xff) + extra_len)
    }
}

/// The number of bits of |v| (JPEG's "size category") and the bits that
/// stand for `v` (one's complement for negatives).
#[inline(always)]
fn category(v: i32) -> (u32, u32) {
    let size = 32 - v.unsigned_abs().leading_zeros();
    let bits = if v < 0 { v - 1 } else { v } as u32;
    (size, bits)
}

/// Writes one block: `zz` in zigzag order, `nonzero` the mask of its
/// nonzero AC coefficients, `dc_pred` the component's previous DC (updated).
#[inline(always)]
pub(super) fn encode_block(
    out: &mut BitWriter<'_>,
    zz: &[i32; 64],
    mut nonzero: u64,
    dc_pred: &mut i32,
    dc: &HuffmanCodes,
    ac: &HuffmanCodes,
) {
    let (size, bits) = category(zz[0] - *dc_pred);
    *dc_pred = zz[0];
    let (v, n) = dc.with_extra(size, bits, size);
    out.put(v, n);

    let mut last = 0u32;
    while nonzero != 0 {
        let k = nonzero.trailing_zeros();
        nonzero &= nonzero - 1;
        let mut run = k - last - 1;
        while run > 15 {
            // ZRL: sixteen zeros.
            let (v, n) = ac.with_extra(0xf0, 0, 0);
            out.put(v, n);
            run -= 16;
        }
        let (size, bits) = category(zz[k as usize]);
        let (v, n) = ac.with_extra(run << 4 | size, bits, size);
        out.put(v, n);
        last = k;
    }
    if last != 63 {
        // EOB: the rest is zero.
        let (v, n) = ac.with_extra(0x00, 0, 0);
        out.put(v, n);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tables::LUMA_DC;
    use super::*;

    #[test]
    fn canonical_codes_and_categories() {
        let dc = HuffmanCodes::new(&LUMA_DC);
        // Annex K.3: category 0 is "00", 1 is "010", 11 is "111111110".
        assert_eq!(dc.with_extra(0, 0, 0), (0b00, 2));
        assert_eq!(dc.with_extra(1, 1, 1), (0b0101, 4));
        assert_eq!(dc.with_extra(11, 0, 0), (0b1_1111_1110, 9));
        assert_eq!(category(0), (0, 0));
        assert_eq!(category(-1), (1, 0xffff_fffe));
        assert_eq!(category(5), (3, 5));
        assert_eq!(category(-1023).0, 10);
    }
}
