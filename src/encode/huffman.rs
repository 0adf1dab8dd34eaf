//! Huffman coding of quantized blocks: [`HuffmanTable`] (a table as DHT
//! carries it, built for a picture's symbol counts by JPEG Annex K.2),
//! [`CodeBook`] (the four tables of a scan as a (code, length) per symbol)
//! and [`encode_block`], which turns one block into symbols for a
//! [`SymbolSink`].
//!
//! Symbols of all four tables share one index space, `table << 8 | symbol`
//! with the tables numbered luma DC, luma AC, chroma DC, chroma AC (0..=3),
//! so a code look-up or a count is one array access.

use super::bits::BitWriter;
#[cfg(test)]
use super::tables::HuffmanSpec;

/// Index of the luma DC table in a [`CodeBook`] or [`SymbolCounts`] (its
/// AC table is the next).
pub(super) const LUMA_DC: usize = 0;
/// Index of the chroma DC table (its AC table is the next).
pub(super) const CHROMA_DC: usize = 2;

/// How often each symbol of the four tables was coded, indexed
/// `table << 8 | symbol`.
pub(super) type SymbolCounts = [u32; 1024];

/// A Huffman table as a DHT segment carries it: how many codes there are
/// of each length 1..=16, and the symbols in code order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct HuffmanTable {
    pub counts: [u8; 16],
    pub symbols: Vec<u8>,
}

impl HuffmanTable {
    /// A table of Annex K.3, as the yardstick tests measure against.
    #[cfg(test)]
    pub(super) fn standard(spec: &HuffmanSpec) -> HuffmanTable {
        HuffmanTable {
            counts: spec.counts,
            symbols: spec.symbols.to_vec(),
        }
    }

    /// The table Annex K.2 builds for symbol frequencies `freq` (as
    /// libjpeg's `jpeg_gen_optimal_table`): Huffman code lengths, lengths
    /// over 16 folded back (K.3's Adjust_BITS), and one code of the longest
    /// length left unused so that no code is all ones. Symbols with a zero
    /// count get no code.
    pub(super) fn optimal(freq: &[u32; 256]) -> HuffmanTable {
        // One node per symbol that occurs, plus a reserved pseudo-symbol
        // (256) of the least weight: it becomes a deepest leaf, and
        // dropping its code leaves the all-ones code unused.
        let mut leaves: Vec<(u64, u16)> = (0u16..256)
            .filter(|&s| freq[usize::from(s)] > 0)
            .map(|s| (u64::from(freq[usize::from(s)]), s))
            .collect();
        leaves.push((0, 256));
        // Least weight first; the pseudo-symbol (weight 0) before all.
        leaves.sort_unstable();
        let n = leaves.len();

        // Huffman's algorithm with two queues (Van Leeuwen): leaves in
        // weight order, and merged nodes, which are made in weight order.
        // Nodes 0..n are the leaves, n.. the merged ones.
        let mut weight: Vec<u64> = leaves.iter().map(|&(w, _)| w).collect();
        let mut parent = vec![0usize; 2 * n - 1];
        let (mut next_leaf, mut next_merged) = (0, n);
        for node in n..2 * n - 1 {
            let mut take = || {
                let leaf_first = next_leaf < n
                    && (next_merged >= node || weight[next_leaf] <= weight[next_merged]);
                if leaf_first {
                    next_leaf += 1;
                    next_leaf - 1
                } else {
                    next_merged += 1;
                    next_merged - 1
                }
            };
            let (a, b) = (take(), take());
            parent[a] = node;
            parent[b] = node;
            weight.push(weight[a] + weight[b]);
        }
        // Depths from the root (the last node) down; a leaf's depth is its
        // code length. Parents always come after their children.
        let mut depth = vec![0usize; 2 * n - 1];
        for node in (0..2 * n - 2).rev() {
            depth[node] = depth[parent[node]] + 1;
        }
        // The pseudo-symbol (leaf 0) must be a deepest leaf; should a tie
        // have put another leaf deeper, they trade places, which costs
        // nothing (the pseudo-symbol weighs nothing).
        if let Some(deepest) = (0..n).max_by_key(|&l| depth[l]) {
            depth.swap(0, deepest);
        }

        // How many codes of each length; at most n - 1 <= 256 bits.
        let mut bits = [0u32; 258];
        for &d in &depth[..n] {
            bits[d] += 1;
        }
        // Adjust_BITS: while a code is longer than 16 bits, two codes of
        // the longest length i become one of length i - 1 (their prefix),
        // and a code of some shorter length j becomes two of length j + 1
        // (one of them the pair's other half). The Kraft sum stays 1.
        for i in (17..bits.len()).rev() {
            while bits[i] > 0 {
                let mut j = i - 2;
                while bits[j] == 0 {
                    j -= 1;
                }
                bits[i] -= 2;
                bits[i - 1] += 1;
                bits[j + 1] += 2;
                bits[j] -= 1;
            }
        }
        // Drop the pseudo-symbol's code: one of the longest.
        if let Some(longest) = (1..=16).rev().find(|&i| bits[i] > 0) {
            bits[longest] -= 1;
        }

        // Symbols in code order: shortest Huffman code first (ties by
        // symbol), the pseudo-symbol (deepest, highest) last and left out.
        let mut order: Vec<(usize, u16)> = leaves
            .iter()
            .zip(&depth)
            .map(|(&(_, s), &d)| (d, s))
            .collect();
        order.sort_unstable();
        let symbols = order
            .iter()
            .filter(|&&(_, s)| s < 256)
            .map(|&(_, s)| s as u8)
            .collect();
        let mut counts = [0u8; 16];
        for (c, &b) in counts.iter_mut().zip(&bits[1..=16]) {
            // At most 256 symbols in all, and a full table of 256 would
            // need the pseudo-symbol's place too: every count fits a byte.
            *c = b as u8;
        }
        HuffmanTable { counts, symbols }
    }
}

/// The four tables of a scan as `code << 8 | length` per symbol (a length
/// of 0 for a symbol the table lacks), indexed `table << 8 | symbol`: one
/// load per symbol.
pub(super) struct CodeBook {
    packed: Box<[u32; 1024]>,
}

impl CodeBook {
    /// Assigns canonical codes (Annex C) to each table in turn: shorter
    /// codes first, each length's codes consecutive.
    pub(super) fn new(tables: [&HuffmanTable; 4]) -> CodeBook {
        let mut packed = Box::new([0u32; 1024]);
        for (t, table) in tables.iter().enumerate() {
            let mut code = 0u32;
            let mut symbols = table.symbols.iter();
            for (len, &count) in (1u32..=16).zip(&table.counts) {
                for _ in 0..count {
                    if let Some(&s) = symbols.next() {
                        packed[t << 8 | usize::from(s)] = code << 8 | len;
                    }
                    code += 1;
                }
                code <<= 1;
            }
        }
        CodeBook { packed }
    }

    /// How many bits these counts of symbols take to code: each symbol's
    /// code and the coefficient bits that follow it (as many as its size
    /// category: the symbol itself for DC, its low four bits for AC).
    pub(super) fn coded_bits(&self, counts: &SymbolCounts) -> u64 {
        let mut bits = 0u64;
        for (index, (&count, &packed)) in counts.iter().zip(self.packed.iter()).enumerate() {
            let (table, symbol) = (index >> 8, index as u32 & 0xff);
            let extra = if table % 2 == 0 { symbol } else { symbol & 15 };
            bits += u64::from(count) * u64::from((packed & 0xff) + extra);
        }
        bits
    }

    /// Symbol `index` (`table << 8 | symbol`)'s code followed by the low
    /// `extra_len` bits of `extra`, as one value and its length.
    #[inline(always)]
    pub(super) fn with_extra(&self, index: u32, extra: u32, extra_len: u32) -> (u32, u32) {
        let packed = self.packed[index as usize & 1023];
        let value = ((packed >> 8) << extra_len) | (extra & ((1 << extra_len) - 1));
        (value, (packed & 0xff) + extra_len)
    }
}

/// The symbols of a picture waiting for their tables, and how often each
/// occurs: kept from picture to picture so the buffer is allocated once.
/// Filled through [`SymbolSink`] (a block's symbols, then `end_block`).
pub(crate) struct SymbolBuffer {
    /// Each as `extra << 16 | extra_len << 10 | index` (see the module
    /// doc for the index): 4 bytes a symbol, 0.5-1 MB for a 720p frame.
    pub(super) symbols: Vec<u32>,
    counts: Box<SymbolCounts>,
    /// The current block's symbols (at most 64: the DC, and per nonzero
    /// AC coefficient one, plus a ZRL per 16 zeros or the EOB), appended
    /// to `symbols` at once when the block ends.
    block: [u32; 64],
    in_block: usize,
}

impl Default for SymbolBuffer {
    fn default() -> SymbolBuffer {
        SymbolBuffer {
            symbols: Vec::new(),
            counts: Box::new([0; 1024]),
            block: [0; 64],
            in_block: 0,
        }
    }
}

impl SymbolSink for SymbolBuffer {
    #[inline(always)]
    fn symbol(&mut self, index: u32, extra: u32, extra_len: u32) {
        // No picture baseline can describe has 2^32 symbols of one kind;
        // wrapping keeps even that from panicking.
        let c = &mut self.counts[index as usize & 1023];
        *c = c.wrapping_add(1);
        let extra = extra & ((1 << extra_len) - 1);
        self.block[self.in_block & 63] = extra << 16 | extra_len << 10 | index;
        self.in_block += 1;
    }

    #[inline(always)]
    fn end_block(&mut self) {
        self.symbols
            .extend_from_slice(&self.block[..self.in_block.min(64)]);
        self.in_block = 0;
    }
}

impl SymbolBuffer {
    /// Empties the buffer for the next picture (the memory stays).
    pub(super) fn clear(&mut self) {
        self.symbols.clear();
        self.counts.fill(0);
        self.in_block = 0;
    }

    /// How often each symbol occurs in the buffer.
    pub(super) fn counts(&self) -> &SymbolCounts {
        &self.counts
    }

    /// Codes the buffered symbols with `book` onto `out`: the scan's
    /// entropy-coded data, zero bytes stuffed, the last byte padded.
    pub(super) fn write_coded(&self, book: &CodeBook, out: &mut Vec<u8>) {
        let mut bits = BitWriter::new(out);
        for &s in &self.symbols {
            let (v, n) = book.with_extra(s & 0x3ff, s >> 16, s >> 10 & 15);
            bits.put(v, n);
        }
        bits.finish();
    }
}

/// The four Huffman tables of a picture and their codes.
pub(super) struct Tables {
    tables: [HuffmanTable; 4],
    pub(super) book: CodeBook,
}

impl Tables {
    pub(super) fn new(tables: [HuffmanTable; 4]) -> Tables {
        let [a, b, c, d] = &tables;
        let book = CodeBook::new([a, b, c, d]);
        Tables { tables, book }
    }

    pub(super) fn tables(&self) -> [&HuffmanTable; 4] {
        let [a, b, c, d] = &self.tables;
        [a, b, c, d]
    }

    /// Tables for exactly these counts.
    pub(super) fn optimal(counts: &SymbolCounts) -> Tables {
        Tables::new(std::array::from_fn(|t| {
            let freq: &[u32; 256] = counts[t << 8..][..256].try_into().unwrap_or(&[0; 256]);
            HuffmanTable::optimal(freq)
        }))
    }

    /// Room for the entropy-coded data of these counts with these tables:
    /// its exact size, plus as much again for the zero byte stuffed after
    /// each 0xFF byte (about 1 in 256), so that the JPEG (kept whole by
    /// the frame hub) needs neither a reallocation nor a shrinking copy.
    pub(super) fn coded_room(&self, counts: &SymbolCounts) -> usize {
        let coded =
            usize::try_from(self.book.coded_bits(counts).div_ceil(8)).unwrap_or(usize::MAX / 2);
        coded + coded / 128 + 8
    }
}

/// Writes a DHT segment carrying `table` as class and id `class_id`
/// (`0x00` luma DC, `0x10` luma AC, `0x01` chroma DC, `0x11` chroma AC).
pub(super) fn write_huffman_table(out: &mut Vec<u8>, class_id: u8, table: &HuffmanTable) {
    let len = (2 + 1 + 16 + table.symbols.len()) as u16;
    out.extend_from_slice(&[0xff, 0xc4]);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(class_id);
    out.extend_from_slice(&table.counts);
    out.extend_from_slice(&table.symbols);
}

/// Where [`encode_block`] sends a block's symbols.
pub(super) trait SymbolSink {
    /// Symbol `index` (`table << 8 | symbol`), then the low `extra_len`
    /// bits of `extra` (the coefficient's bits, 0..=11 of them).
    fn symbol(&mut self, index: u32, extra: u32, extra_len: u32);

    /// The block's last symbol came.
    fn end_block(&mut self) {}
}

/// The number of bits of |v| (JPEG's "size category") and the bits that
/// stand for `v` (one's complement for negatives).
#[cfg(any(test, not(feature = "turbojpeg")))]
#[inline(always)]
fn category(v: i32) -> (u32, u32) {
    let size = 32 - v.unsigned_abs().leading_zeros();
    let bits = if v < 0 { v - 1 } else { v } as u32;
    (size, bits)
}

/// Turns one block into symbols: `zz` in zigzag order, `nonzero` the mask
/// of its nonzero AC coefficients, `dc_pred` the component's previous DC
/// (updated), `dc_table` the DC table's index (the AC table follows it).
#[cfg(not(feature = "turbojpeg"))]
#[inline(always)]
pub(super) fn encode_block(
    out: &mut impl SymbolSink,
    zz: &[i32; 64],
    mut nonzero: u64,
    dc_pred: &mut i32,
    dc_table: usize,
) {
    let dc = (dc_table as u32) << 8;
    let ac = dc + 256;
    let (size, bits) = category(zz[0] - *dc_pred);
    *dc_pred = zz[0];
    out.symbol(dc | size, bits, size);

    let mut last = 0u32;
    while nonzero != 0 {
        let k = nonzero.trailing_zeros();
        nonzero &= nonzero - 1;
        let mut run = k - last - 1;
        while run > 15 {
            // ZRL: sixteen zeros.
            out.symbol(ac | 0xf0, 0, 0);
            run -= 16;
        }
        let (size, bits) = category(zz[k as usize]);
        out.symbol(ac | run << 4 | size, bits, size);
        last = k;
    }
    if last != 63 {
        // EOB: the rest is zero.
        out.symbol(ac, 0, 0);
    }
    out.end_block();
}

#[cfg(test)]
mod tests {
    use super::super::tables;
    use super::*;

    fn standard_book() -> CodeBook {
        let t = [
            &tables::LUMA_DC,
            &tables::LUMA_AC,
            &tables::CHROMA_DC,
            &tables::CHROMA_AC,
        ]
        .map(HuffmanTable::standard);
        CodeBook::new([&t[0], &t[1], &t[2], &t[3]])
    }

    #[test]
    fn canonical_codes_and_categories() {
        let book = standard_book();
        // Annex K.3: category 0 is "00", 1 is "010", 11 is "111111110".
        assert_eq!(book.with_extra(0, 0, 0), (0b00, 2));
        assert_eq!(book.with_extra(1, 1, 1), (0b0101, 4));
        assert_eq!(book.with_extra(11, 0, 0), (0b1_1111_1110, 9));
        // Luma AC EOB is "1010", chroma AC EOB "00".
        assert_eq!(book.with_extra(1 << 8, 0, 0), (0b1010, 4));
        assert_eq!(book.with_extra(3 << 8, 0, 0), (0b00, 2));
        assert_eq!(category(0), (0, 0));
        assert_eq!(category(-1), (1, 0xffff_fffe));
        assert_eq!(category(5), (3, 5));
        assert_eq!(category(-1023).0, 10);
    }

    /// The code lengths of `table`'s symbols, by symbol.
    fn lengths(table: &HuffmanTable) -> Vec<(u8, u32)> {
        let mut out = Vec::new();
        let mut symbols = table.symbols.iter();
        for (len, &count) in (1u32..=16).zip(&table.counts) {
            for _ in 0..count {
                out.push((*symbols.next().expect("a symbol per code"), len));
            }
        }
        assert!(symbols.next().is_none(), "more symbols than codes");
        out
    }

    /// Checks that `table` is a valid baseline table: lengths 1..=16, its
    /// canonical codes a prefix code with room left (Kraft sum below 1, so
    /// no code is all ones), each symbol once. Returns the Kraft sum.
    fn check_valid(table: &HuffmanTable) -> f64 {
        let lens = lengths(table);
        let mut seen = [false; 256];
        for &(s, _) in &lens {
            assert!(!seen[usize::from(s)], "symbol {s} twice");
            seen[usize::from(s)] = true;
        }
        let kraft: f64 = lens.iter().map(|&(_, l)| 0.5f64.powi(l as i32)).sum();
        assert!(kraft < 1.0, "Kraft sum {kraft}");
        // Canonical codes: none is a prefix of another, none all ones.
        let mut codes = Vec::new();
        let mut code = 0u32;
        for (len, &count) in (1u32..=16).zip(&table.counts) {
            for _ in 0..count {
                assert!(code < (1 << len) - 1, "all-ones code of length {len}");
                codes.push((code, len));
                code += 1;
            }
            code <<= 1;
        }
        for (i, &(a, la)) in codes.iter().enumerate() {
            for &(b, lb) in &codes[i + 1..] {
                assert!(lb >= la && b >> (lb - la) != a, "{a:b} prefixes {b:b}");
            }
        }
        kraft
    }

    #[test]
    fn pathological_counts_are_limited_to_16_bits() {
        // Fibonacci counts make a maximally skewed tree: unlimited, 40
        // symbols would need codes of up to 39 bits.
        let mut freq = [0u32; 256];
        let (mut a, mut b) = (1u32, 1u32);
        for f in freq.iter_mut().take(40) {
            *f = a;
            (a, b) = (b, a + b);
        }
        let table = HuffmanTable::optimal(&freq);
        assert_eq!(table.symbols.len(), 40);
        check_valid(&table);
        let lens = lengths(&table);
        assert!(lens.iter().all(|&(_, l)| (1..=16).contains(&l)));
        // The most frequent symbol still gets the shortest code.
        assert_eq!(lens[0], (39, 1));

        // All 256 symbols, skewed by powers of two (capped at u32).
        let freq: [u32; 256] = std::array::from_fn(|i| 1u32 << (i % 32));
        let table = HuffmanTable::optimal(&freq);
        assert_eq!(table.symbols.len(), 256);
        check_valid(&table);
    }

    #[test]
    fn optimal_tables_are_valid_and_follow_the_counts() {
        // A single symbol, two, and a flat spread.
        let mut freq = [0u32; 256];
        freq[7] = 1000;
        let one = HuffmanTable::optimal(&freq);
        assert_eq!((one.symbols.as_slice(), one.counts[0]), (&[7u8][..], 1));
        check_valid(&one);
        freq[9] = 1;
        check_valid(&HuffmanTable::optimal(&freq));
        let flat = HuffmanTable::optimal(&[5; 256]);
        assert_eq!(flat.symbols.len(), 256);
        check_valid(&flat);
        // Lengths never grow as counts grow.
        let freq: [u32; 256] = std::array::from_fn(|i| (i as u32 * 37) % 1000);
        let table = HuffmanTable::optimal(&freq);
        check_valid(&table);
        let by_symbol: std::collections::HashMap<u8, u32> = lengths(&table).into_iter().collect();
        for (&s, &l) in &by_symbol {
            for (&t, &m) in &by_symbol {
                if freq[usize::from(s)] > freq[usize::from(t)] {
                    assert!(l <= m, "{s} ({l} bits) vs {t} ({m} bits)");
                }
            }
        }
    }
}
