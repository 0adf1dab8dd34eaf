//! [`recode`]: a finished baseline JPEG coded again with Huffman tables
//! built for its own symbols (JPEG Annex K.2), everything else kept.
//!
//! Encoders that code with the standard tables (libjpeg-turbo on its fast
//! path, `jpeg-encoder`) leave 6-20% of a frame's bytes on the table.
//! libjpeg-turbo can build tables for each picture itself, but its option
//! for it keeps every coefficient of the picture and runs a second,
//! slower pass over them, which roughly doubles its time per frame
//! (`bench/ENCODE.md`). Re-coding reads the scan once instead: each
//! Huffman code is decoded to its symbol and the coefficient bits that
//! follow it are carried over as they are; no coefficient is rebuilt and
//! nothing is transformed. The symbols then go through the same tables
//! and writer as mjpegd's own encoder's second pass. Huffman coding is
//! lossless, so the result decodes to exactly the same pixels.
//!
//! It handles what mjpegd's encoders write: baseline (or extended 8-bit)
//! Huffman, one interleaved scan, no restart intervals. Anything else, or
//! a scan that does not hold its blocks, is `None` and the caller keeps
//! the frame as it is.

use super::huffman::{CHROMA_DC, LUMA_DC, SymbolBuffer, SymbolSink, Tables, write_huffman_table};
use crate::rendition::decode::{BitReader, Huffman, parse, u16_at};

/// `jpeg` with its scan coded with tables built for it, or `None` when it
/// is not a JPEG this handles or would not come out smaller. `buffer`
/// holds the symbols meanwhile (kept by the caller from frame to frame).
pub(crate) fn recode(jpeg: &[u8], buffer: &mut SymbolBuffer) -> Option<Vec<u8>> {
    let (header, scan) = parse(jpeg).ok()?;
    if header.restart_interval != 0 {
        return None;
    }
    let comps = &header.components;
    let single = comps.len() == 1;
    // The first component's symbols go to the luma tables, the others'
    // to the chroma ones, whatever tables the scan used.
    let tables: Vec<(&Huffman, &Huffman, u32)> = comps
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let dc = header.dc.get(c.dc)?.as_ref()?;
            let ac = header.ac.get(c.ac)?.as_ref()?;
            let first = if i == 0 { LUMA_DC } else { CHROMA_DC };
            Some((dc, ac, (first as u32) << 8))
        })
        .collect::<Option<_>>()?;
    let (mcus_x, mcus_y) = header.mcus();
    let blocks: Vec<usize> = comps
        .iter()
        .map(|c| {
            let (h, v) = header.blocks_in_mcu(c);
            h * v
        })
        .collect();

    buffer.clear();
    let mut bits = BitReader::new(jpeg.get(scan..)?);
    for _ in 0..mcus_x * mcus_y {
        for (&(dc, ac, dc_index), &n) in tables.iter().zip(&blocks) {
            for _ in 0..n {
                if !read_block(&mut bits, dc, ac, dc_index, buffer) {
                    return None;
                }
            }
        }
    }
    if bits.overran() {
        return None;
    }

    let counts = buffer.counts();
    let fitted = Tables::optimal(counts);
    let mut out = Vec::with_capacity(scan + fitted.coded_room(counts) + 2);
    copy_headers(jpeg, &mut out)?;
    let [luma_dc, luma_ac, chroma_dc, chroma_ac] = fitted.tables();
    write_huffman_table(&mut out, 0x00, luma_dc);
    write_huffman_table(&mut out, 0x10, luma_ac);
    if !single {
        write_huffman_table(&mut out, 0x01, chroma_dc);
        write_huffman_table(&mut out, 0x11, chroma_ac);
    }
    // The scan header: the first component on tables 0, the others on 1.
    let n = comps.len() as u8;
    out.extend_from_slice(&[0xff, 0xda, 0, 6 + 2 * n, n]);
    for (i, c) in comps.iter().enumerate() {
        out.extend_from_slice(&[c.id, if i == 0 { 0x00 } else { 0x11 }]);
    }
    out.extend_from_slice(&[0, 63, 0]);
    buffer.write_coded(&fitted.book, &mut out);
    out.extend_from_slice(&[0xff, 0xd9]);
    (out.len() < jpeg.len()).then_some(out)
}

/// One block's symbols, each with its coefficient bits as they were.
/// False when the block cannot be (a size or a run out of range).
#[inline(always)]
fn read_block(
    bits: &mut BitReader<'_>,
    dc: &Huffman,
    ac: &Huffman,
    dc_index: u32,
    out: &mut SymbolBuffer,
) -> bool {
    // A refill leaves at least 57 bits; a code and its bits take <= 27.
    if bits.count < 32 {
        bits.refill();
    }
    let size = u32::from(bits.symbol(dc));
    if size > 11 {
        return false;
    }
    out.symbol(dc_index | size, bits.raw(size), size);
    let ac_index = dc_index + 256;
    let mut k = 1;
    while k < 64 {
        if bits.count < 32 {
            bits.refill();
        }
        let rs = u32::from(bits.symbol(ac));
        let (run, size) = (rs >> 4, rs & 15);
        if size == 0 {
            out.symbol(ac_index | rs, 0, 0);
            if run != 15 {
                // End of block.
                break;
            }
            k += 16;
            continue;
        }
        k += run + 1;
        if k > 64 || size > 10 {
            return false;
        }
        out.symbol(ac_index | rs, bits.raw(size), size);
    }
    out.end_block();
    true
}

/// Copies every segment before the scan but the Huffman tables: SOI, APPn,
/// DQT, SOF, COM, ... as they are.
fn copy_headers(jpeg: &[u8], out: &mut Vec<u8>) -> Option<()> {
    out.extend_from_slice(jpeg.get(..2)?);
    let mut pos = 2;
    loop {
        while jpeg.get(pos..pos + 2) == Some(&[0xff, 0xff]) {
            pos += 1;
        }
        let marker = *jpeg.get(pos + 1)?;
        if marker == 0xda {
            return Some(());
        }
        let len = u16_at(jpeg, pos + 2).ok()?;
        let segment = jpeg.get(pos..pos + 2 + len)?;
        if marker != 0xc4 {
            out.extend_from_slice(segment);
        }
        pos += 2 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::ffmpeg_decodes_cleanly;
    use super::*;

    /// An RGB picture with gradients, edges and noise.
    fn picture(w: usize, h: usize) -> Vec<u8> {
        (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                let noise = ((x * 7919 + y * 104_729) % 61) as u8;
                [
                    (x * 255 / w) as u8 ^ noise,
                    (y * 255 / h) as u8,
                    if (x / 13 + y / 7) % 2 == 0 { 40 } else { 220 },
                ]
            })
            .collect()
    }

    fn pixels(jpeg: &[u8]) -> Vec<u8> {
        let mut d = jpeg_decoder::Decoder::new(jpeg);
        d.decode().expect("decodes")
    }

    /// Standard-table JPEGs of several kinds (jpeg-encoder: 4:2:0, 4:4:4,
    /// grey, odd sizes).
    fn samples() -> Vec<Vec<u8>> {
        use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
        let mut out = Vec::new();
        for (w, h, quality, sampling, grey) in [
            (640, 480, 80, SamplingFactor::R_4_2_0, false),
            (333, 97, 75, SamplingFactor::R_4_2_0, false),
            (120, 64, 95, SamplingFactor::R_4_4_4, false),
            (100, 37, 60, SamplingFactor::R_4_2_2, false),
            (90, 45, 80, SamplingFactor::R_4_4_4, true),
        ] {
            let rgb = picture(w, h);
            let mut jpeg = Vec::new();
            let mut e = Encoder::new(&mut jpeg, quality);
            e.set_sampling_factor(sampling);
            if grey {
                let luma: Vec<u8> = rgb.chunks(3).map(|p| p[1]).collect();
                e.encode(&luma, w as u16, h as u16, ColorType::Luma)
                    .expect("encodes");
            } else {
                e.encode(&rgb, w as u16, h as u16, ColorType::Rgb)
                    .expect("encodes");
            }
            out.push(jpeg);
        }
        out
    }

    #[test]
    fn same_pixels_fewer_bytes() {
        let mut buffer = SymbolBuffer::default();
        for jpeg in samples() {
            let recoded = recode(&jpeg, &mut buffer).expect("recodes");
            assert!(
                recoded.len() < jpeg.len(),
                "{} >= {}",
                recoded.len(),
                jpeg.len()
            );
            assert_eq!(pixels(&recoded), pixels(&jpeg), "pixels changed");
            // Two more decoders take it.
            let zune = |j: &[u8]| {
                zune_jpeg::JpegDecoder::new(zune_jpeg::zune_core::bytestream::ZCursor::new(j))
                    .decode()
                    .expect("zune-jpeg decodes")
            };
            assert_eq!(zune(&recoded), zune(&jpeg), "zune-jpeg: pixels changed");
            ffmpeg_decodes_cleanly(&recoded, &format!("recoded-{}", jpeg.len()));
        }
    }

    #[test]
    fn leaves_what_it_does_not_handle() {
        let mut buffer = SymbolBuffer::default();
        let jpeg = samples().remove(0);
        // Cut short: the scan does not hold its blocks.
        assert!(recode(&jpeg[..jpeg.len() / 2], &mut buffer).is_none());
        // Not a JPEG, or only its headers.
        assert!(recode(b"\xff\xd8\xff\xd9", &mut buffer).is_none());
        assert!(recode(b"hello", &mut buffer).is_none());
        // Garbage in the scan never panics.
        let mut bad = jpeg.clone();
        let scan = bad.len() / 3;
        for b in &mut bad[scan..scan + 200] {
            *b = b.wrapping_mul(31).wrapping_add(7);
        }
        let _ = recode(&bad, &mut buffer);
        // Restart intervals are left alone.
        let mut with_dri = jpeg[..2].to_vec();
        with_dri.extend_from_slice(&[0xff, 0xdd, 0, 4, 0, 8]);
        with_dri.extend_from_slice(&jpeg[2..]);
        assert!(recode(&with_dri, &mut buffer).is_none());
    }
}
