//! A scaled JPEG decoder for the frames cameras and folders give: baseline
//! Huffman, 8-bit, one or three components, any sampling factors, restart
//! intervals. It decodes straight into Y', Cb and Cr planes (no RGB) at 1/8,
//! 1/4, 1/2 or full scale, with an inverse DCT of the matching size: DC only
//! for 1/8, 2x2 for 1/4, 4x4 for 1/2, 8x8 for full.
//!
//! Anything else (progressive, arithmetic coding, 12-bit, CMYK, one scan
//! per component) is [`DecodeError::Unsupported`], for the caller to hand
//! to a general decoder. Corrupt data never panics: a bad table, a short
//! scan or a wrong marker is a [`DecodeError::Corrupt`] or decodes to grey.
//!
//! Why it is fast: the entropy decoder reads a 64-bit bit buffer refilled
//! eight bytes at a time when no `0xFF` is near, and decodes codes up to 9
//! bits with one table look-up; most AC coefficients (a short code and a
//! small value, 10 bits in all) come whole from one look-up; only the
//! coefficients a reduced IDCT reads are stored (the others go to a slot
//! nobody reads, without a branch) and cleared again; the IDCT works on
//! whole rows (vector code), and a block with only its DC is filled flat.
//! Against the decoder without these: about a quarter fewer instructions
//! per 1280x720 frame decoded at half size (`cargo bench --bench rendition
//! -- decode_planes` under valgrind's cachegrind), and 6% less server CPU
//! per variant frame with a 640 and a 320 variant live (`bench/RESULTS.md`,
//! renditions run 5).

use std::fmt;

/// One decoded component at the decode's scale.
pub struct Plane {
    /// Rows of `stride` samples (blocks are whole, so `stride >= width`).
    pub data: Vec<u8>,
    pub stride: usize,
    /// The picture's samples in this plane.
    pub width: usize,
    pub height: usize,
}

/// A decoded picture: one plane (grey) or three (Y', Cb, Cr, each at its
/// own resolution).
pub struct DecodedPlanes {
    pub planes: Vec<Plane>,
    /// The picture size at the decode's scale.
    pub width: usize,
    pub height: usize,
}

/// Why a frame was not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A valid JPEG of a kind this decoder leaves to others.
    Unsupported(&'static str),
    /// Not a JPEG this or any decoder can read.
    Corrupt(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Unsupported(why) => write!(f, "unsupported JPEG: {why}"),
            DecodeError::Corrupt(why) => write!(f, "corrupt JPEG: {why}"),
        }
    }
}

/// Natural (row-major) index of the n-th coefficient in zig-zag order; 16
/// extra entries send a corrupt run past 63 to a harmless slot.
const ZIGZAG: [usize; 80] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63,
];

/// The coefficient slot past the 64 that a reduced IDCT leaves unread.
const TRASH: usize = 64;

/// Bits looked up at once in a Huffman table.
const LOOKUP_BITS: u32 = 9;

/// Bits looked up at once for a whole AC coefficient (code and value).
const FAST_AC_BITS: u32 = 10;

/// A Huffman table ready for decoding.
pub(crate) struct Huffman {
    /// By the next `LOOKUP_BITS` bits: `length << 8 | symbol`, 0 when the
    /// code is longer.
    lookup: Box<[u16; 1 << LOOKUP_BITS]>,
    /// Per code length (1..=16), the largest code of that length, -1 if none.
    max_code: [i32; 18],
    /// Per code length, the index in `symbols` minus the first code.
    offset: [i32; 17],
    symbols: Vec<u8>,
    /// By the next `FAST_AC_BITS` bits, when they hold an AC code and all
    /// of its value: `value << 8 | run << 4 | bits used`, else 0. Most of
    /// a frame's coefficients are short codes with small values, so one
    /// look-up replaces the symbol, the value and its sign extension.
    fast_ac: Box<[i32; 1 << FAST_AC_BITS]>,
}

impl Huffman {
    fn new(counts: &[u8; 16], symbols: &[u8]) -> Result<Huffman, DecodeError> {
        let mut lookup = Box::new([0u16; 1 << LOOKUP_BITS]);
        let mut max_code = [-1i32; 18];
        let mut offset = [0i32; 17];
        let (mut code, mut k) = (0i32, 0usize);
        for len in 1..=16usize {
            let n = usize::from(counts[len - 1]);
            offset[len] = k as i32 - code;
            for _ in 0..n {
                let symbol = *symbols
                    .get(k)
                    .ok_or(DecodeError::Corrupt("Huffman table"))?;
                if code >= 1 << len {
                    return Err(DecodeError::Corrupt("Huffman table"));
                }
                if len as u32 <= LOOKUP_BITS {
                    let shift = LOOKUP_BITS - len as u32;
                    let first = (code as usize) << shift;
                    for slot in &mut lookup[first..first + (1 << shift)] {
                        *slot = (len as u16) << 8 | u16::from(symbol);
                    }
                }
                code += 1;
                k += 1;
            }
            if n > 0 {
                max_code[len] = code - 1;
            }
            code <<= 1;
        }
        // Stops the slow path's search.
        max_code[17] = i32::MAX;
        Ok(Huffman {
            fast_ac: fast_ac(&lookup[..]),
            lookup,
            max_code,
            offset,
            symbols: symbols[..k].to_vec(),
        })
    }
}

/// The whole-coefficient table of [`Huffman::fast_ac`], from the symbol
/// look-up: a code of `len` bits whose symbol is `run << 4 | size` (size
/// not 0: EOB and ZRL stay on the symbol path) fits when `len + size` does.
fn fast_ac(lookup: &[u16]) -> Box<[i32; 1 << FAST_AC_BITS]> {
    let mut fast = Box::new([0i32; 1 << FAST_AC_BITS]);
    for (bits, slot) in fast.iter_mut().enumerate() {
        let entry = lookup[bits >> (FAST_AC_BITS - LOOKUP_BITS)];
        let (len, symbol) = (u32::from(entry >> 8), entry as u8);
        let (run, size) = (i32::from(symbol >> 4), u32::from(symbol & 15));
        if entry == 0 || size == 0 || len + size > FAST_AC_BITS {
            continue;
        }
        let raw = (bits as i32 >> (FAST_AC_BITS - len - size)) & ((1 << size) - 1);
        let value = if raw < 1 << (size - 1) {
            raw - (1 << size) + 1
        } else {
            raw
        };
        *slot = value << 8 | run << 4 | (len + size) as i32;
    }
    fast
}

/// The entropy-coded bits of a scan, most significant first.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Bits not yet used, left-aligned.
    acc: u64,
    pub(crate) count: u32,
    /// Zero bytes fed at a marker or the end, in place of data.
    padded: u32,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> BitReader<'a> {
        BitReader {
            data,
            pos: 0,
            acc: 0,
            count: 0,
            padded: 0,
        }
    }

    /// Fills the buffer to at least 57 bits. Stuffed `FF 00` is one `FF`;
    /// at a marker (or the end) zeros are fed and `pos` stays on it.
    #[inline]
    pub(crate) fn refill(&mut self) {
        // Whole bytes at once while none of the next eight is 0xFF.
        if let Some(chunk) = self.data.get(self.pos..self.pos + 8) {
            let word = u64::from_be_bytes(chunk.try_into().unwrap_or([0xff; 8]));
            let inverted = !word;
            let has_ff =
                (inverted.wrapping_sub(0x0101_0101_0101_0101) & !inverted & 0x8080_8080_8080_8080)
                    != 0;
            if !has_ff {
                let take = (63 - self.count) / 8;
                self.acc |= (word >> (64 - 8 * take)) << (64 - 8 * take - self.count);
                self.count += 8 * take;
                self.pos += take as usize;
                return;
            }
        }
        while self.count <= 56 {
            let byte = match self.data.get(self.pos) {
                Some(&0xff) if self.data.get(self.pos + 1) == Some(&0) => {
                    self.pos += 2;
                    0xff
                }
                Some(&b) if b != 0xff => {
                    self.pos += 1;
                    b
                }
                _ => {
                    self.padded = self.padded.saturating_add(1);
                    0
                }
            };
            self.acc |= u64::from(byte) << (56 - self.count);
            self.count += 8;
        }
    }

    #[inline]
    fn consume(&mut self, n: u32) {
        self.acc <<= n;
        self.count -= n;
    }

    /// One Huffman symbol; needs at least 16 bits in the buffer.
    #[inline(always)]
    pub(crate) fn symbol(&mut self, table: &Huffman) -> u8 {
        let entry = table.lookup[(self.acc >> (64 - LOOKUP_BITS)) as usize];
        if entry != 0 {
            self.consume(u32::from(entry >> 8));
            return entry as u8;
        }
        let mut len = LOOKUP_BITS as usize + 1;
        let mut code = (self.acc >> (64 - len)) as i32;
        while code > table.max_code[len] {
            len += 1;
            code = (self.acc >> (64 - len.min(16))) as i32;
        }
        if len > 16 {
            // No such code: corrupt data. Take a bit so decoding moves on.
            self.consume(1);
            return 0;
        }
        self.consume(len as u32);
        let index = (code + table.offset[len]) as usize;
        table.symbols.get(index).copied().unwrap_or(0)
    }

    /// A coefficient of `size` bits (JPEG's EXTEND); needs `size` bits.
    #[inline]
    fn value(&mut self, size: u32) -> i32 {
        if size == 0 {
            return 0;
        }
        let size = size.min(16);
        let v = (self.acc >> (64 - size)) as i32;
        self.consume(size);
        if v < 1 << (size - 1) {
            v - (1 << size) + 1
        } else {
            v
        }
    }

    /// The next `size` bits as they are (a coefficient's bits before
    /// EXTEND); needs `size` bits, at most 16.
    #[inline]
    pub(crate) fn raw(&mut self, size: u32) -> u32 {
        if size == 0 {
            return 0;
        }
        let size = size.min(16);
        let v = (self.acc >> (64 - size)) as u32;
        self.consume(size);
        v
    }

    /// Whether decoding used bits that were not in the data (fed at a
    /// marker or the end): the scan was shorter than its blocks.
    pub(crate) fn overran(&self) -> bool {
        u64::from(self.count) < 8 * u64::from(self.padded)
    }

    /// Past the restart marker that should come next: the buffered bits
    /// (padding) are dropped.
    fn restart(&mut self) {
        self.acc = 0;
        self.count = 0;
        let rest = &self.data[self.pos.min(self.data.len())..];
        // Normally the marker is right here; after a corrupt interval,
        // resynchronise on the next one.
        let mut at = 0;
        while let Some(i) = memchr::memchr(0xff, &rest[at..]) {
            let next = rest.get(at + i + 1).copied();
            if matches!(next, Some(0xd0..=0xd7)) {
                self.pos += at + i + 2;
                return;
            }
            if next.is_none() || matches!(next, Some(0xd9)) {
                break;
            }
            at += i + 1;
        }
    }
}

/// One component of the frame: its sampling factors, and the tables the
/// scan codes it with.
#[derive(Clone, Copy, Default)]
pub(crate) struct Component {
    pub(crate) id: u8,
    pub(crate) h: usize,
    pub(crate) v: usize,
    pub(crate) quant: usize,
    pub(crate) dc: usize,
    pub(crate) ac: usize,
}

/// The headers up to the scan.
pub(crate) struct Header {
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) components: Vec<Component>,
    /// Quantization tables in natural order.
    pub(crate) quant: [[i32; 64]; 4],
    pub(crate) dc: [Option<Huffman>; 4],
    pub(crate) ac: [Option<Huffman>; 4],
    pub(crate) restart_interval: usize,
    /// Adobe APP14 colour transform, when present.
    pub(crate) adobe_transform: Option<u8>,
}

impl Header {
    /// The scan's MCUs across and down. A single component's scan is not
    /// interleaved: its MCU is one block.
    pub(crate) fn mcus(&self) -> (usize, usize) {
        let (hmax, vmax) = self.max_sampling();
        if self.components.len() == 1 {
            (self.width.div_ceil(8), self.height.div_ceil(8))
        } else {
            (
                self.width.div_ceil(8 * hmax),
                self.height.div_ceil(8 * vmax),
            )
        }
    }

    /// The largest horizontal and vertical sampling factors.
    fn max_sampling(&self) -> (usize, usize) {
        let hmax = self.components.iter().map(|c| c.h).max().unwrap_or(1);
        let vmax = self.components.iter().map(|c| c.v).max().unwrap_or(1);
        (hmax, vmax)
    }

    /// Blocks across and down that `c` has in one MCU.
    pub(crate) fn blocks_in_mcu(&self, c: &Component) -> (usize, usize) {
        if self.components.len() == 1 {
            (1, 1)
        } else {
            (c.h, c.v)
        }
    }
}

pub(crate) fn u16_at(d: &[u8], i: usize) -> Result<usize, DecodeError> {
    match d.get(i..i + 2) {
        Some(b) => Ok(usize::from(u16::from_be_bytes([b[0], b[1]]))),
        None => Err(DecodeError::Corrupt("truncated header")),
    }
}

/// Reads the headers; returns them and the offset of the scan's data.
pub(crate) fn parse(jpeg: &[u8]) -> Result<(Header, usize), DecodeError> {
    if !jpeg.starts_with(&[0xff, 0xd8]) {
        return Err(DecodeError::Corrupt("no start of image"));
    }
    let mut h = Header {
        width: 0,
        height: 0,
        components: Vec::new(),
        quant: [[0; 64]; 4],
        dc: [None, None, None, None],
        ac: [None, None, None, None],
        restart_interval: 0,
        adobe_transform: None,
    };
    let mut have_quant = [false; 4];
    let mut pos = 2;
    loop {
        // Fill bytes may precede a marker.
        while jpeg.get(pos) == Some(&0xff) && jpeg.get(pos + 1) == Some(&0xff) {
            pos += 1;
        }
        if jpeg.get(pos) != Some(&0xff) {
            return Err(DecodeError::Corrupt("marker expected"));
        }
        let marker = *jpeg.get(pos + 1).ok_or(DecodeError::Corrupt("truncated"))?;
        let len = u16_at(jpeg, pos + 2)?;
        let seg = jpeg
            .get(pos + 4..pos + 2 + len)
            .filter(|_| len >= 2)
            .ok_or(DecodeError::Corrupt("truncated segment"))?;
        match marker {
            0xc0 | 0xc1 => {
                if h.width != 0 {
                    return Err(DecodeError::Corrupt("two frame headers"));
                }
                if seg.len() < 6 || seg[0] != 8 {
                    return Err(DecodeError::Unsupported("not 8-bit"));
                }
                h.height = u16_at(seg, 1)?;
                h.width = u16_at(seg, 3)?;
                let n = usize::from(seg[5]);
                if n != 1 && n != 3 {
                    return Err(DecodeError::Unsupported("not 1 or 3 components"));
                }
                if h.width == 0 || h.height == 0 {
                    return Err(DecodeError::Unsupported("height given later (DNL)"));
                }
                for c in 0..n {
                    let b = seg
                        .get(6 + c * 3..9 + c * 3)
                        .ok_or(DecodeError::Corrupt("frame header"))?;
                    let (hs, vs) = (usize::from(b[1] >> 4), usize::from(b[1] & 15));
                    if !(1..=4).contains(&hs) || !(1..=4).contains(&vs) || b[2] > 3 {
                        return Err(DecodeError::Corrupt("frame header"));
                    }
                    h.components.push(Component {
                        id: b[0],
                        h: hs,
                        v: vs,
                        quant: usize::from(b[2]),
                        ..Component::default()
                    });
                }
            }
            0xc2 | 0xc3 | 0xc5..=0xc7 | 0xc9..=0xcb | 0xcd..=0xcf => {
                return Err(DecodeError::Unsupported("not baseline Huffman"));
            }
            0xc4 => {
                let mut s = seg;
                while !s.is_empty() {
                    let class_id = s[0];
                    let counts: [u8; 16] = s
                        .get(1..17)
                        .and_then(|c| c.try_into().ok())
                        .ok_or(DecodeError::Corrupt("Huffman table"))?;
                    let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
                    let symbols = s
                        .get(17..17 + total)
                        .ok_or(DecodeError::Corrupt("Huffman table"))?;
                    let (class, id) = (class_id >> 4, usize::from(class_id & 15));
                    if class > 1 || id > 3 {
                        return Err(DecodeError::Corrupt("Huffman table id"));
                    }
                    let table = Some(Huffman::new(&counts, symbols)?);
                    if class == 0 {
                        h.dc[id] = table;
                    } else {
                        h.ac[id] = table;
                    }
                    s = &s[17 + total..];
                }
            }
            0xdb => {
                let mut s = seg;
                while !s.is_empty() {
                    let (precision, id) = (s[0] >> 4, usize::from(s[0] & 15));
                    if id > 3 {
                        return Err(DecodeError::Corrupt("quantization table id"));
                    }
                    let size = if precision == 0 { 64 } else { 128 };
                    let values = s
                        .get(1..1 + size)
                        .ok_or(DecodeError::Corrupt("quantization table"))?;
                    for (k, &natural) in ZIGZAG[..64].iter().enumerate() {
                        h.quant[id][natural] = if precision == 0 {
                            i32::from(values[k])
                        } else {
                            i32::from(u16::from_be_bytes([values[2 * k], values[2 * k + 1]]))
                        };
                    }
                    have_quant[id] = true;
                    s = &s[1 + size..];
                }
            }
            0xdd => h.restart_interval = u16_at(seg, 0)?,
            0xee if seg.starts_with(b"Adobe") && seg.len() >= 12 => {
                h.adobe_transform = Some(seg[11]);
            }
            0xda => {
                if h.components.is_empty() {
                    return Err(DecodeError::Corrupt("scan before frame header"));
                }
                let n = usize::from(*seg.first().ok_or(DecodeError::Corrupt("scan header"))?);
                if n != h.components.len() {
                    return Err(DecodeError::Unsupported("one scan per component"));
                }
                for i in 0..n {
                    let b = seg
                        .get(1 + i * 2..3 + i * 2)
                        .ok_or(DecodeError::Corrupt("scan header"))?;
                    let c = h
                        .components
                        .iter_mut()
                        .find(|c| c.id == b[0])
                        .ok_or(DecodeError::Corrupt("scan component"))?;
                    (c.dc, c.ac) = (usize::from(b[1] >> 4), usize::from(b[1] & 15));
                    if c.dc > 3 || c.ac > 3 || h.dc[c.dc].is_none() || h.ac[c.ac].is_none() {
                        return Err(DecodeError::Corrupt("scan without Huffman table"));
                    }
                    if !have_quant[c.quant] {
                        return Err(DecodeError::Corrupt("no quantization table"));
                    }
                }
                return Ok((h, pos + 2 + len));
            }
            0xd9 => return Err(DecodeError::Corrupt("no scan")),
            // APPn, COM and anything else with a length: skipped.
            _ => {}
        }
        pos += 2 + len;
    }
}

/// The inverse DCT for `n`x`n` output from the top-left `n`x`n`
/// coefficients: `basis[x][u]`, with the 1/8 of the 2-D transform folded in.
fn basis(n: usize) -> [[f32; 8]; 8] {
    let mut m = [[0f32; 8]; 8];
    for (x, row) in m.iter_mut().enumerate().take(n) {
        for (u, cell) in row.iter_mut().enumerate().take(n) {
            let a = if u == 0 {
                1.0
            } else {
                std::f64::consts::SQRT_2
            };
            let angle = (2 * x + 1) as f64 * u as f64 * std::f64::consts::PI / (2 * n) as f64;
            *cell = (a * angle.cos() / 8f64.sqrt()) as f32;
        }
    }
    m
}

/// Writes one block's `N`x`N` pixels at `out` (rows `stride` apart) and
/// zeroes the coefficients it read, for the next block. `ac`: whether any
/// of them but the DC is set (else the block is flat).
#[inline]
fn put_block<const N: usize>(
    coef: &mut [i32; TRASH + 1],
    ac: bool,
    m: &[[f32; 8]; 8],
    mt: &[[f32; 8]; 8],
    out: &mut [u8],
    stride: usize,
) {
    if ac {
        idct::<N>(coef, m, mt, out, stride);
    } else {
        let value = to_sample(coef[0] as f32 * m[0][0] * m[0][0] + 128.0);
        for row in out.chunks_mut(stride).take(N) {
            row[..N].fill(value);
        }
    }
    for row in coef[..N * 8].chunks_exact_mut(8) {
        row[..N].fill(0);
    }
}

/// Writes one block's `N`x`N` pixels at `out` (rows `stride` apart).
///
/// Both passes add whole rows of `N` lanes (a coefficient times a row of
/// the transposed basis, a basis weight times a row of the first pass),
/// which the compiler turns into vector multiply-adds.
#[inline]
fn idct<const N: usize>(
    coef: &[i32; TRASH + 1],
    m: &[[f32; 8]; 8],
    mt: &[[f32; 8]; 8],
    out: &mut [u8],
    stride: usize,
) {
    // Each row of coefficients (v) across x: sum over u of c[v][u] m[x][u].
    let mut tmp = [[0f32; N]; N];
    for (v, t) in tmp.iter_mut().enumerate() {
        let c = &coef[v * 8..v * 8 + N];
        if c.iter().all(|&x| x == 0) {
            continue;
        }
        for (&cu, basis) in c.iter().zip(mt) {
            let cu = cu as f32;
            for (tx, &b) in t.iter_mut().zip(basis) {
                *tx += cu * b;
            }
        }
    }
    // Then down the columns: row y is the sum over v of m[y][v] tmp[v].
    for y in 0..N {
        let mut acc = [128f32; N];
        for (v, t) in tmp.iter().enumerate() {
            let w = m[y][v];
            for (a, &tx) in acc.iter_mut().zip(t) {
                *a += w * tx;
            }
        }
        let row = &mut out[y * stride..y * stride + N];
        for (px, a) in row.iter_mut().zip(acc) {
            *px = to_sample(a);
        }
    }
}

/// `value` rounded to the nearest sample, 0 to 255. Adding 1.5 * 2^23
/// leaves the rounded integer in the low bits of the sum's mantissa: a
/// bit cast rather than a float-to-integer conversion, then an integer
/// clamp, so a row of samples converts in a few vector instructions.
/// (Exact for |value| < 2^22; anything larger comes only from a corrupt
/// frame and still lands in 0 to 255.)
#[inline]
fn to_sample(value: f32) -> u8 {
    let rounded = ((value + 12_582_912.0).to_bits() as i32).wrapping_sub(0x4b40_0000);
    rounded.clamp(0, 255) as u8
}

/// The smallest scale shift (3 = 1/8 ... 0 = 1) whose picture is at least
/// `min_width`x`min_height`.
fn scale_shift(width: usize, height: usize, min_width: usize, min_height: usize) -> u32 {
    (0..=3u32)
        .rev()
        .find(|&s| width.div_ceil(1 << s) >= min_width && height.div_ceil(1 << s) >= min_height)
        .unwrap_or(0)
}

/// Decodes `jpeg` at the smallest of 1/8, 1/4, 1/2 and 1 that is at least
/// `min_width`x`min_height` (or full size when the picture is smaller).
pub fn decode(
    jpeg: &[u8],
    min_width: usize,
    min_height: usize,
) -> Result<DecodedPlanes, DecodeError> {
    let (header, scan) = parse(jpeg)?;
    if header.components.len() == 3 {
        let ids: Vec<u8> = header.components.iter().map(|c| c.id).collect();
        if header.adobe_transform == Some(0) || ids == b"RGB" {
            return Err(DecodeError::Unsupported("RGB components"));
        }
    }
    let shift = scale_shift(header.width, header.height, min_width, min_height);
    let n = 8usize >> shift;
    let m = basis(n);
    // The basis transposed: mt[u][x] = m[x][u], a row per coefficient.
    let mut mt = [[0f32; 8]; 8];
    for (x, row) in m.iter().enumerate() {
        for (u, &b) in row.iter().enumerate() {
            mt[u][x] = b;
        }
    }
    let comps = &header.components;
    let (hmax, vmax) = header.max_sampling();
    let (mcus_x, mcus_y) = header.mcus();
    let mut planes: Vec<Plane> = comps
        .iter()
        .map(|c| {
            let (bh, bv) = header.blocks_in_mcu(c);
            let stride = mcus_x * bh * n;
            let rows = mcus_y * bv * n;
            let full_w = (header.width * c.h).div_ceil(hmax);
            let full_h = (header.height * c.v).div_ceil(vmax);
            Plane {
                data: vec![128; stride * rows],
                stride,
                width: full_w.div_ceil(1 << shift),
                height: full_h.div_ceil(1 << shift),
            }
        })
        .collect();
    let tables: Vec<(&Huffman, &Huffman, [i32; 65])> = comps
        .iter()
        .map(|c| match (&header.dc[c.dc], &header.ac[c.ac]) {
            (Some(dc), Some(ac)) => {
                let mut quant = [0; 65];
                quant[..64].copy_from_slice(&header.quant[c.quant]);
                Ok((dc, ac, quant))
            }
            _ => Err(DecodeError::Corrupt("scan without Huffman table")),
        })
        .collect::<Result<_, _>>()?;
    // Where the k-th coefficient in zig-zag order goes: its natural index
    // when the reduced IDCT reads it, else TRASH (a slot nobody reads), so
    // that storing a coefficient never branches on whether it is needed.
    let mut dest = [TRASH as u8; 80];
    for (d, &natural) in dest.iter_mut().zip(&ZIGZAG) {
        if natural % 8 < n && natural / 8 < n {
            *d = natural as u8;
        }
    }
    let mut bits = BitReader::new(jpeg.get(scan..).unwrap_or_default());
    let mut pred = [0i32; 3];
    let mut coef = [0i32; TRASH + 1];
    let total = mcus_x * mcus_y;
    let interval = header.restart_interval;
    for mcu in 0..total {
        if interval > 0 && mcu > 0 && mcu % interval == 0 {
            bits.restart();
            pred = [0; 3];
        }
        let (mx, my) = (mcu % mcus_x, mcu / mcus_x);
        for (ci, c) in comps.iter().enumerate() {
            let (dc_table, ac_table, quant) = &tables[ci];
            let (bh, bv) = header.blocks_in_mcu(c);
            for by in 0..bv {
                for bx in 0..bh {
                    // Entropy decoding: every coefficient is read, the
                    // ones the reduced IDCT needs are kept.
                    if bits.count < 32 {
                        bits.refill();
                    }
                    let size = u32::from(bits.symbol(dc_table));
                    let diff = bits.value(size);
                    pred[ci] = pred[ci].wrapping_add(diff);
                    coef[0] = pred[ci].wrapping_mul(quant[0]);
                    // Whether an AC coefficient the IDCT reads was stored.
                    let mut ac = false;
                    let mut k = 1usize;
                    while k < 64 {
                        if bits.count < 32 {
                            bits.refill();
                        }
                        let fast = ac_table.fast_ac[(bits.acc >> (64 - FAST_AC_BITS)) as usize];
                        if fast != 0 {
                            bits.consume((fast & 15) as u32);
                            k += ((fast >> 4) & 15) as usize;
                            let d = usize::from(dest[k.min(79)]);
                            coef[d] = (fast >> 8).wrapping_mul(quant[d]);
                            ac |= d != TRASH;
                            k += 1;
                            continue;
                        }
                        let rs = bits.symbol(ac_table);
                        let (run, size) = (usize::from(rs >> 4), u32::from(rs & 15));
                        if size == 0 {
                            if run != 15 {
                                break;
                            }
                            k += 16;
                            continue;
                        }
                        k += run;
                        let v = bits.value(size);
                        let d = usize::from(dest[k.min(79)]);
                        coef[d] = v.wrapping_mul(quant[d]);
                        ac |= d != TRASH;
                        k += 1;
                    }
                    let plane = &mut planes[ci];
                    let x0 = (mx * bh + bx) * n;
                    let y0 = (my * bv + by) * n;
                    let out = &mut plane.data[y0 * plane.stride + x0..];
                    let stride = plane.stride;
                    match n {
                        8 => put_block::<8>(&mut coef, ac, &m, &mt, out, stride),
                        4 => put_block::<4>(&mut coef, ac, &m, &mt, out, stride),
                        2 => put_block::<2>(&mut coef, ac, &m, &mt, out, stride),
                        _ => put_block::<1>(&mut coef, ac, &m, &mt, out, stride),
                    }
                }
            }
        }
    }
    Ok(DecodedPlanes {
        planes,
        width: header.width.div_ceil(1 << shift),
        height: header.height.div_ceil(1 << shift),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
    use proptest::prelude::*;

    /// Gradients, an edge and a noisy patch: every frequency has work.
    fn picture(w: usize, h: usize) -> Vec<u8> {
        let mut rgb = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let noise = ((x * 7919 + y * 104_729) % 97) as u8;
                let px = if x < w / 2 {
                    [(x * 255 / w) as u8, (y * 255 / h) as u8, 90]
                } else if y < h / 2 {
                    [200, 40 + noise, 60]
                } else {
                    [noise * 2, 250 - noise, 128]
                };
                rgb.extend_from_slice(&px);
            }
        }
        rgb
    }

    #[derive(Clone, Copy)]
    struct Sample {
        sampling: SamplingFactor,
        restart: u16,
        optimized: bool,
        grey: bool,
    }

    fn jpeg(w: usize, h: usize, s: &Sample) -> Vec<u8> {
        let rgb = picture(w, h);
        let mut out = Vec::new();
        let mut e = Encoder::new(&mut out, 85);
        e.set_sampling_factor(s.sampling);
        e.set_restart_interval(s.restart);
        e.set_optimized_huffman_tables(s.optimized);
        let (w, h) = (w as u16, h as u16);
        if s.grey {
            let luma: Vec<u8> = rgb.chunks_exact(3).map(|p| p[1]).collect();
            e.encode(&luma, w, h, ColorType::Luma).expect("encodes");
        } else {
            e.encode(&rgb, w, h, ColorType::Rgb).expect("encodes");
        }
        out
    }

    /// Our planes as RGB (chroma by nearest sample), JFIF's conversion.
    fn to_rgb(d: &DecodedPlanes) -> Vec<u8> {
        let mut out = Vec::with_capacity(d.width * d.height * 3);
        for y in 0..d.height {
            for x in 0..d.width {
                let at = |p: &Plane| {
                    let px = (x * p.width / d.width).min(p.width - 1);
                    let py = (y * p.height / d.height).min(p.height - 1);
                    f32::from(p.data[py * p.stride + px])
                };
                let l = at(&d.planes[0]);
                if d.planes.len() == 1 {
                    out.extend_from_slice(&[l as u8; 3]);
                    continue;
                }
                let (cb, cr) = (at(&d.planes[1]) - 128.0, at(&d.planes[2]) - 128.0);
                let c = |v: f32| v.round().clamp(0.0, 255.0) as u8;
                out.extend_from_slice(&[
                    c(l + 1.402 * cr),
                    c(l - 0.344_136 * cb - 0.714_136 * cr),
                    c(l + 1.772 * cb),
                ]);
            }
        }
        out
    }

    fn psnr(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        let mse = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum::<f64>()
            / a.len() as f64;
        10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10()
    }

    /// `jpeg-decoder`'s own scaled decode of the same frame, in RGB.
    fn reference(jpeg: &[u8], w: usize, h: usize) -> (Vec<u8>, usize, usize) {
        let mut d = jpeg_decoder::Decoder::new(jpeg);
        d.scale(w as u16, h as u16).expect("scales");
        let px = d.decode().expect("decodes");
        let info = d.info().expect("info");
        let px = match info.pixel_format {
            jpeg_decoder::PixelFormat::L8 => px.iter().flat_map(|&l| [l; 3]).collect(),
            _ => px,
        };
        (px, usize::from(info.width), usize::from(info.height))
    }

    #[test]
    fn matches_jpeg_decoder_at_every_scale_sampling_and_size() {
        let samplings = [
            SamplingFactor::R_4_4_4,
            SamplingFactor::R_4_2_2,
            SamplingFactor::R_4_2_0,
            SamplingFactor::R_4_4_0,
        ];
        let mut cases = Vec::new();
        for &sampling in &samplings {
            for restart in [0, 3, 1] {
                cases.push(Sample {
                    sampling,
                    restart,
                    optimized: false,
                    grey: false,
                });
            }
        }
        for restart in [0, 5] {
            cases.push(Sample {
                sampling: SamplingFactor::R_4_4_4,
                restart,
                optimized: false,
                grey: true,
            });
        }
        for s in &cases {
            for (w, h) in [(64, 48), (97, 61), (33, 17), (8, 8), (1, 1), (250, 3)] {
                let mut jpeg = jpeg(w, h, s);
                // Other Huffman tables: swap the standard ones for those of
                // an optimized encode (a 1-component scan either way).
                if s.grey && s.restart == 0 {
                    jpeg = super::tests::jpeg(
                        w,
                        h,
                        &Sample {
                            optimized: true,
                            ..*s
                        },
                    );
                }
                for (tw, th) in [
                    (w, h),
                    (w.div_ceil(2), h.div_ceil(2)),
                    (w / 3, h / 3),
                    (1, 1),
                ] {
                    let ours = decode(&jpeg, tw, th).unwrap_or_else(|e| {
                        panic!("{e} {} {} {w}x{h}", s.sampling as u8, s.restart)
                    });
                    // jpeg-decoder may round a scale down; ask it for ours.
                    assert!(ours.width >= tw.min(w) && ours.height >= th.min(h));
                    let (theirs, rw, rh) = reference(&jpeg, ours.width, ours.height);
                    let what = format!(
                        "{:?} restart {} grey {} {w}x{h} -> {tw}x{th}",
                        s.sampling as u8, s.restart, s.grey
                    );
                    assert_eq!((ours.width, ours.height), (rw, rh), "{what}");
                    // Luma alone: the same samples up to IDCT rounding.
                    let luma = &ours.planes[0];
                    let ours_y: Vec<u8> = (0..rh)
                        .flat_map(|y| luma.data[y * luma.stride..][..rw].to_vec())
                        .collect();
                    let theirs_y: Vec<u8> = theirs
                        .chunks_exact(3)
                        .map(|p| {
                            let (r, g, b) = (f32::from(p[0]), f32::from(p[1]), f32::from(p[2]));
                            (0.299 * r + 0.587 * g + 0.114 * b).round() as u8
                        })
                        .collect();
                    let py = psnr(&ours_y, &theirs_y);
                    assert!(py > 36.0, "{what}: luma PSNR {py:.1} dB");
                    // Colour: chroma is placed by nearest sample here,
                    // interpolated by jpeg-decoder, which differs on the
                    // picture's pixel-sized colour noise.
                    let p = psnr(&to_rgb(&ours), &theirs);
                    assert!(p > 22.0, "{what}: PSNR {p:.1} dB");
                    if s.grey || s.sampling == SamplingFactor::R_4_4_4 {
                        assert!(p > 36.0, "{what}: PSNR {p:.1} dB");
                    }
                }
            }
        }
    }

    #[test]
    fn scales_are_the_smallest_that_fit() {
        let s = Sample {
            sampling: SamplingFactor::R_4_2_0,
            restart: 0,
            optimized: false,
            grey: false,
        };
        let jpeg = jpeg(160, 96, &s);
        let size = |w, h| {
            let d = decode(&jpeg, w, h).expect("decodes");
            let sizes: Vec<_> = d.planes.iter().map(|p| (p.width, p.height)).collect();
            (d.width, d.height, sizes)
        };
        assert_eq!(size(20, 12), (20, 12, vec![(20, 12), (10, 6), (10, 6)]));
        assert_eq!(size(21, 12), (40, 24, vec![(40, 24), (20, 12), (20, 12)]));
        assert_eq!(size(80, 1), (80, 48, vec![(80, 48), (40, 24), (40, 24)]));
        assert_eq!(size(81, 1).0, 160);
        assert_eq!(size(500, 500).0, 160);
    }

    #[test]
    fn other_kinds_are_left_to_the_general_decoder() {
        let rgb = picture(32, 32);
        let mut progressive = Vec::new();
        let mut e = Encoder::new(&mut progressive, 80);
        e.set_progressive(true);
        e.encode(&rgb, 32, 32, ColorType::Rgb).expect("encodes");
        assert!(matches!(
            decode(&progressive, 16, 16),
            Err(DecodeError::Unsupported(_))
        ));
        let mut cmyk = Vec::new();
        let px: Vec<u8> = rgb
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 0])
            .collect();
        Encoder::new(&mut cmyk, 80)
            .encode(&px, 32, 32, ColorType::Cmyk)
            .expect("encodes");
        assert!(matches!(
            decode(&cmyk, 16, 16),
            Err(DecodeError::Unsupported(_))
        ));
        assert!(matches!(
            decode(b"\xff\xd8\xff\xd9", 1, 1),
            Err(DecodeError::Corrupt(_))
        ));
        assert!(decode(b"", 1, 1).is_err());
        // jpeg-encoder writes optimized colour frames as one scan per
        // component, which cameras do not send.
        let mut one_scan_each = Vec::new();
        let mut e = Encoder::new(&mut one_scan_each, 80);
        e.set_optimized_huffman_tables(true);
        e.encode(&rgb, 32, 32, ColorType::Rgb).expect("encodes");
        assert!(matches!(
            decode(&one_scan_each, 16, 16),
            Err(DecodeError::Unsupported(_))
        ));
    }

    #[test]
    fn a_cut_scan_decodes_without_panic() {
        let s = Sample {
            sampling: SamplingFactor::R_4_2_0,
            restart: 2,
            optimized: false,
            grey: false,
        };
        let jpeg = jpeg(97, 61, &s);
        for cut in (0..jpeg.len()).step_by(7) {
            let _ = decode(&jpeg[..cut], 40, 30);
        }
    }

    fn fuzz_base() -> Vec<u8> {
        jpeg(
            37,
            29,
            &Sample {
                sampling: SamplingFactor::R_4_2_0,
                restart: 2,
                optimized: false,
                grey: false,
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600),
                                 w in 0usize..100, h in 0usize..100) {
            let mut data = b"\xff\xd8".to_vec();
            data.extend(bytes);
            let _ = decode(&data, w, h);
        }

        #[test]
        fn damaged_frames_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
                                      w in 0usize..60, h in 0usize..60) {
            let mut data = fuzz_base();
            let len = data.len();
            for (at, byte) in edits {
                data[at % len] = byte;
            }
            let _ = decode(&data, w, h);
        }
    }
}
