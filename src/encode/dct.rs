//! The forward DCT and quantization of one 8x8 block, in f32.
//!
//! The DCT is the AAN factorization (as libjpeg's float DCT): 5 multiplies
//! per 1-D transform, its output scaled by a per-coefficient factor that is
//! folded into the quantizer's reciprocals, so quantizing is one multiply.
//! Each 1-D pass works on whole rows of 8 samples at once (the same
//! arithmetic in every lane), which LLVM turns into SIMD; the block is
//! transposed between the two passes.

use super::tables::ZIGZAG;

/// A block of samples or coefficients, 8 rows of 8.
pub(super) type Block = [[f32; 8]; 8];

/// Quantizes DCT output with one table: reciprocals of the divisors in the
/// transposed layout [`forward_dct`] leaves coefficients in.
pub(super) struct Quantizer {
    reciprocals: [f32; 64],
}

impl Quantizer {
    /// For a quantization table in natural order.
    pub(super) fn new(table: &[u8; 64]) -> Quantizer {
        // AAN output scaling: cos(k*pi/16) * sqrt(2), 1 for k = 0.
        let scale = |k: usize| {
            if k == 0 {
                1.0
            } else {
                (k as f64 * std::f64::consts::PI / 16.0).cos() * std::f64::consts::SQRT_2
            }
        };
        let mut reciprocals = [0f32; 64];
        for (i, r) in reciprocals.iter_mut().enumerate() {
            // Transposed layout: index i holds the coefficient of
            // horizontal frequency i / 8 and vertical frequency i % 8.
            let (u, v) = (i % 8, i / 8);
            let divisor = f64::from(table[u * 8 + v]) * scale(u) * scale(v) * 8.0;
            *r = (1.0 / divisor) as f32;
        }
        Quantizer { reciprocals }
    }

    /// Quantizes `block` (as [`forward_dct`] left it) into `out` in zigzag
    /// order and returns the mask of nonzero AC coefficients (bit k for
    /// zigzag position k, bit 0 left clear).
    #[inline(always)]
    pub(super) fn quantize(&self, block: &Block, out: &mut [i32; 64]) -> u64 {
        let mut natural = [0i32; 64];
        for ((q, &c), &r) in natural
            .iter_mut()
            .zip(block.as_flattened())
            .zip(&self.reciprocals)
        {
            // Clamped to what baseline codes (at most 10 bits), then
            // rounded to nearest by adding 1.5 * 2^23: the sum's low
            // mantissa bits are then the integer itself. Unlike `as i32`
            // (which must saturate and catch NaN) this stays in SIMD lanes.
            let v = (c * r).clamp(-1023.0, 1023.0) + ROUNDING_BIAS;
            *q = v.to_bits() as i32 - ROUNDING_BIAS.to_bits() as i32;
        }
        // Gathered into zigzag order with a nonzero flag byte each: every
        // position independent of the others (no chain through one mask).
        let mut flags = [0u8; 64];
        for ((o, f), &n) in out.iter_mut().zip(&mut flags).zip(&TRANSPOSED_ZIGZAG) {
            *o = natural[n];
            *f = u8::from(*o != 0);
        }
        // Eight flag bytes (each 0 or 1) to eight bits: the multiply moves
        // byte i's bit to bit 56 + i without carries.
        let mut mask = 0u64;
        for (i, eight) in flags.chunks_exact(8).enumerate() {
            let word = u64::from_le_bytes(eight.try_into().unwrap_or_default());
            mask |= (word.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (i * 8);
        }
        mask & !1
    }
}

/// 1.5 * 2^23: adding it to a float of magnitude below 2^22 leaves the
/// float's integer rounded into the low mantissa bits.
const ROUNDING_BIAS: f32 = 12_582_912.0;

/// [`ZIGZAG`] into the transposed layout.
const TRANSPOSED_ZIGZAG: [usize; 64] = {
    let mut t = [0; 64];
    let mut k = 0;
    while k < 64 {
        t[k] = ZIGZAG[k] % 8 * 8 + ZIGZAG[k] / 8;
        k += 1;
    }
    t
};

/// Transforms `block` (samples minus 128) in place. The result is
/// transposed (row = horizontal frequency) and AAN-scaled; [`Quantizer`]
/// accounts for both.
#[inline(always)]
pub(super) fn forward_dct(block: &mut Block) {
    // Each pass writes a fresh block: no copy of its input first.
    *block = columns(&transpose(&columns(block)));
}

/// The 1-D DCT of each column, all 8 columns at once.
#[inline(always)]
fn columns(input: &Block) -> Block {
    let [r0, r1, r2, r3, r4, r5, r6, r7] = input;
    let mut b = [[0f32; 8]; 8];
    for i in 0..8 {
        let t0 = r0[i] + r7[i];
        let t7 = r0[i] - r7[i];
        let t1 = r1[i] + r6[i];
        let t6 = r1[i] - r6[i];
        let t2 = r2[i] + r5[i];
        let t5 = r2[i] - r5[i];
        let t3 = r3[i] + r4[i];
        let t4 = r3[i] - r4[i];

        // Even part.
        let t10 = t0 + t3;
        let t13 = t0 - t3;
        let t11 = t1 + t2;
        let t12 = t1 - t2;
        b[0][i] = t10 + t11;
        b[4][i] = t10 - t11;
        let z1 = (t12 + t13) * 0.707_106_77;
        b[2][i] = t13 + z1;
        b[6][i] = t13 - z1;

        // Odd part.
        let t10 = t4 + t5;
        let t11 = t5 + t6;
        let t12 = t6 + t7;
        let z5 = (t10 - t12) * 0.382_683_43;
        let z2 = 0.541_196_1 * t10 + z5;
        let z4 = 1.306_563 * t12 + z5;
        let z3 = t11 * 0.707_106_77;
        let z11 = t7 + z3;
        let z13 = t7 - z3;
        b[5][i] = z13 + z2;
        b[3][i] = z13 - z2;
        b[1][i] = z11 + z4;
        b[7][i] = z11 - z4;
    }
    b
}

#[inline(always)]
fn transpose(src: &Block) -> Block {
    let mut b = [[0f32; 8]; 8];
    for (r, row) in b.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = src[c][r];
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook DCT-II of a block, for comparison.
    fn reference(samples: &Block) -> [[f64; 8]; 8] {
        let c = |k: usize| if k == 0 { 1.0 / 2f64.sqrt() } else { 1.0 };
        let mut out = [[0.0; 8]; 8];
        for (u, row) in out.iter_mut().enumerate() {
            for (v, o) in row.iter_mut().enumerate() {
                let mut sum = 0.0;
                for (y, srow) in samples.iter().enumerate() {
                    for (x, &s) in srow.iter().enumerate() {
                        sum += f64::from(s)
                            * (((2 * y + 1) * u) as f64 * std::f64::consts::PI / 16.0).cos()
                            * (((2 * x + 1) * v) as f64 * std::f64::consts::PI / 16.0).cos();
                    }
                }
                *o = 0.25 * c(u) * c(v) * sum;
            }
        }
        out
    }

    #[test]
    fn matches_the_textbook_dct_after_quantization() {
        let mut block = [[0f32; 8]; 8];
        for (y, row) in block.iter_mut().enumerate() {
            for (x, v) in row.iter_mut().enumerate() {
                *v = ((x * 37 + y * 11 + x * y * 5) % 255) as f32 - 128.0;
            }
        }
        let expect = reference(&block);
        let ones = Quantizer::new(&[1; 64]);
        forward_dct(&mut block);
        let mut zz = [0i32; 64];
        let mask = ones.quantize(&block, &mut zz);
        for (k, &n) in ZIGZAG.iter().enumerate() {
            let want = expect[n / 8][n % 8].round().clamp(-1023.0, 1023.0) as i32;
            assert!(
                (zz[k] - want).abs() <= 1,
                "coefficient {n}: {} vs {want}",
                zz[k]
            );
            assert_eq!(mask >> k & 1 == 1, k > 0 && zz[k] != 0);
        }
    }
}
