//! [`PlanarEncoder`]: mjpegd's own baseline JPEG encoder, fed Y'CbCr planes
//! (no colour conversion: renditions and camera pictures are Y'CbCr
//! already) at 4:2:0 or 4:2:2.
//!
//! The output is what jpeg-encoder and libjpeg make from the same samples
//! at the same quality (JFIF, baseline, Annex K quantization tables scaled
//! alike, one interleaved scan, so `--quality` keeps its meaning), except
//! for the Huffman tables: every picture gets tables built for its own
//! symbols (JPEG Annex K.2, what libjpeg's `optimize_coding` does), in two
//! passes. The first transforms and quantizes every block and keeps its
//! symbols in a [`SymbolBuffer`], counting them; the tables are built from
//! the counts; the second codes the buffer with them. Frames come out 6-20%
//! smaller than with the standard tables (figures in `bench/ENCODE.md`) and
//! decode to the same pixels: Huffman coding is lossless. The tables go in
//! the JPEG's own DHT segments, as always.
//!
//! Why two passes rather than one with tables fitted to the previous
//! picture's counts (counting on the way, the standard tables for a first
//! picture)? Both were built and measured:
//! - Size: on 60 frames of moving video (640x480, 1280x720) at quality 80
//!   the previous picture's tables gave frames 0.6-0.9% larger than the
//!   exact ones, but tables fitted to a different picture can do much
//!   worse than the standard ones: a photo-like picture coded with a
//!   camera-like picture's tables came out 25% larger than with the
//!   standard tables.
//!   Encoders here are not tied to one picture sequence: renditions of
//!   every stream are encoded on tokio's shared blocking threads, and a
//!   snapshot of a past frame is a one-off with nothing before it.
//! - Time: the exact tables cost nothing measurable against the previous
//!   encoder (-4% to +3% per frame; the second pass is paid for by the
//!   fewer bits written), the previous picture's tables were 1-4% faster
//!   still. The buffer costs 4 bytes a symbol, 0.5-1 MB for a 720p frame,
//!   kept per encoding thread.
//!
//! So each frame is coded exactly, statelessly and the same way whichever
//! thread encodes it.

#[cfg(test)]
use super::bits::BitWriter;
use super::dct::{Block, Quantizer, forward_dct};
#[cfg(test)]
use super::huffman::CodeBook;
pub(crate) use super::huffman::SymbolBuffer;
use super::huffman::{
    CHROMA_DC, HuffmanTable, LUMA_DC, SymbolSink, Tables, encode_block, write_huffman_table,
};
#[cfg(test)]
use super::tables::{
    CHROMA_AC as CHROMA_AC_SPEC, CHROMA_DC as CHROMA_DC_SPEC, LUMA_AC as LUMA_AC_SPEC,
    LUMA_DC as LUMA_DC_SPEC,
};
use super::tables::{ZIGZAG, quant_table};
use super::{EncodeError, Subsampling};
#[cfg(test)]
use std::sync::OnceLock;

/// One plane of samples: `width` x `height` of them in rows `stride` apart.
#[derive(Clone, Copy)]
pub(crate) struct PlaneRef<'a> {
    pub data: &'a [u8],
    pub stride: usize,
    pub width: usize,
    pub height: usize,
}

impl PlaneRef<'_> {
    fn fits(&self) -> bool {
        self.width > 0
            && self.height > 0
            && self.stride >= self.width
            && (self.height - 1)
                .checked_mul(self.stride)
                .and_then(|n| n.checked_add(self.width))
                .is_some_and(|n| n <= self.data.len())
    }

    /// The 8x8 block at block column `bx`, row `by`, minus 128; past the
    /// plane's edge the last column and row repeat (as libjpeg pads).
    #[inline(always)]
    fn load(&self, bx: usize, by: usize, block: &mut Block) {
        let x0 = bx * 8;
        for (r, out) in block.iter_mut().enumerate() {
            let y = (by * 8 + r).min(self.height - 1);
            let row = &self.data[y * self.stride..][..self.width];
            if let Some(src) = row
                .get(x0..x0 + 8)
                .and_then(|s| <&[u8; 8]>::try_from(s).ok())
            {
                *out = src.map(|s| f32::from(s) - 128.0);
            } else {
                for (c, o) in out.iter_mut().enumerate() {
                    *o = f32::from(row[(x0 + c).min(self.width - 1)]) - 128.0;
                }
            }
        }
    }
}

/// Encodes planes at one quality and chroma subsampling.
pub(crate) struct PlanarEncoder {
    quality: u8,
    subsampling: Subsampling,
}

impl PlanarEncoder {
    pub(crate) fn new(quality: u8, subsampling: Subsampling) -> PlanarEncoder {
        PlanarEncoder {
            quality: quality.clamp(1, 100),
            subsampling,
        }
    }

    /// Encodes a `width` x `height` picture with Huffman tables built for
    /// it, `buffer` holding its symbols meanwhile: `y` covers the picture,
    /// `cb` and `cr` cover its chroma (half width; half height too at
    /// 4:2:0).
    pub(crate) fn encode(
        &self,
        width: u16,
        height: u16,
        y: PlaneRef<'_>,
        cb: PlaneRef<'_>,
        cr: PlaneRef<'_>,
        buffer: &mut SymbolBuffer,
    ) -> Result<Vec<u8>, EncodeError> {
        let scan = self.scan(width, height, y, cb, cr)?;
        buffer.clear();
        scan.run(buffer);
        let tables = Tables::optimal(buffer.counts());
        let headers = headers_len(tables.tables());
        let mut out = Vec::with_capacity(headers + tables.coded_room(buffer.counts()) + 2);
        scan.write_headers(&mut out, tables.tables());
        buffer.write_coded(&tables.book, &mut out);
        out.extend_from_slice(&[0xff, 0xd9]);
        Ok(out)
    }

    /// Encodes with the standard Huffman tables, in one pass: what the
    /// fitted tables are measured against.
    #[cfg(test)]
    pub(crate) fn encode_standard(
        &self,
        width: u16,
        height: u16,
        y: PlaneRef<'_>,
        cb: PlaneRef<'_>,
        cr: PlaneRef<'_>,
    ) -> Result<Vec<u8>, EncodeError> {
        /// Codes symbols straight into the entropy-coded segment.
        struct Writer<'w, 'a> {
            bits: &'w mut BitWriter<'a>,
            book: &'w CodeBook,
        }
        impl SymbolSink for Writer<'_, '_> {
            fn symbol(&mut self, index: u32, extra: u32, extra_len: u32) {
                let (v, n) = self.book.with_extra(index, extra, extra_len);
                self.bits.put(v, n);
            }
        }
        let scan = self.scan(width, height, y, cb, cr)?;
        let tables = standard();
        let mut out = Vec::new();
        scan.write_headers(&mut out, tables.tables());
        let mut bits = BitWriter::new(&mut out);
        scan.run(&mut Writer {
            bits: &mut bits,
            book: &tables.book,
        });
        bits.finish();
        out.extend_from_slice(&[0xff, 0xd9]);
        Ok(out)
    }

    /// Checks the planes and cuts them to the picture.
    fn scan<'a>(
        &self,
        width: u16,
        height: u16,
        y: PlaneRef<'a>,
        cb: PlaneRef<'a>,
        cr: PlaneRef<'a>,
    ) -> Result<Scan<'a>, EncodeError> {
        let (w, h) = (usize::from(width), usize::from(height));
        let chroma_rows = match self.subsampling {
            Subsampling::Yuv420 => h.div_ceil(2),
            Subsampling::Yuv422 => h,
        };
        let (cw, ch) = (w.div_ceil(2), chroma_rows);
        let covers =
            |p: &PlaneRef<'_>, pw: usize, ph: usize| p.fits() && p.width >= pw && p.height >= ph;
        if w == 0 || h == 0 || !covers(&y, w, h) || !covers(&cb, cw, ch) || !covers(&cr, cw, ch) {
            return Err(EncodeError::BadInput(format!(
                "planes do not cover {width}x{height} at {}",
                self.subsampling
            )));
        }
        // Only the picture's own samples count: what lies past it is padding.
        let cut = |p: PlaneRef<'a>, width, height| PlaneRef { width, height, ..p };
        let luma_table = quant_table(true, self.quality);
        let chroma_table = quant_table(false, self.quality);
        Ok(Scan {
            width,
            height,
            planes: [cut(y, w, h), cut(cb, cw, ch), cut(cr, cw, ch)],
            subsampling: self.subsampling,
            luma: Quantizer::new(&luma_table),
            chroma: Quantizer::new(&chroma_table),
            luma_table,
            chroma_table,
        })
    }
}

/// A picture's blocks in scan order, quantized.
struct Scan<'a> {
    width: u16,
    height: u16,
    /// Y', Cb, Cr, each cut to the picture's own samples.
    planes: [PlaneRef<'a>; 3],
    subsampling: Subsampling,
    luma: Quantizer,
    chroma: Quantizer,
    /// The quantization tables in natural order, for the DQT segments.
    luma_table: [u8; 64],
    chroma_table: [u8; 64],
}

impl Scan<'_> {
    /// Sends every block's symbols to `sink`, MCU by MCU (interleaved).
    #[inline(always)]
    fn run(&self, sink: &mut impl SymbolSink) {
        let [y, cb, cr] = &self.planes;
        let luma_rows = match self.subsampling {
            Subsampling::Yuv420 => 2,
            Subsampling::Yuv422 => 1,
        };
        let mut block = [[0f32; 8]; 8];
        let mut zz = [0i32; 64];
        let mut pred = [0i32; 3];
        for my in 0..y.height.div_ceil(luma_rows * 8) {
            for mx in 0..y.width.div_ceil(16) {
                for by in 0..luma_rows {
                    for bx in 0..2 {
                        y.load(mx * 2 + bx, my * luma_rows + by, &mut block);
                        forward_dct(&mut block);
                        let nz = self.luma.quantize(&block, &mut zz);
                        encode_block(sink, &zz, nz, &mut pred[0], LUMA_DC);
                    }
                }
                for (plane, c) in [(cb, 1), (cr, 2)] {
                    plane.load(mx, my, &mut block);
                    forward_dct(&mut block);
                    let nz = self.chroma.quantize(&block, &mut zz);
                    encode_block(sink, &zz, nz, &mut pred[c], CHROMA_DC);
                }
            }
        }
    }
}

/// The standard tables, the same for every picture.
#[cfg(test)]
fn standard() -> &'static Tables {
    static STANDARD: OnceLock<Tables> = OnceLock::new();
    STANDARD.get_or_init(|| {
        Tables::new(
            [
                &LUMA_DC_SPEC,
                &LUMA_AC_SPEC,
                &CHROMA_DC_SPEC,
                &CHROMA_AC_SPEC,
            ]
            .map(HuffmanTable::standard),
        )
    })
}

impl Scan<'_> {
    /// SOI, JFIF, the two quantization tables, the frame header, the four
    /// Huffman tables and the scan header.
    fn write_headers(&self, out: &mut Vec<u8>, huffman: [&HuffmanTable; 4]) {
        let (width, height, subsampling) = (self.width, self.height, self.subsampling);
        let (luma, chroma) = (&self.luma_table, &self.chroma_table);
        out.extend_from_slice(&[0xff, 0xd8]);
        // APP0 JFIF 1.01, no density unit, 1:1 aspect, no thumbnail.
        out.extend_from_slice(&[
            0xff, 0xe0, 0, 16, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0,
        ]);
        for (id, table) in [(0u8, luma), (1, chroma)] {
            out.extend_from_slice(&[0xff, 0xdb, 0, 67, id]);
            out.extend(ZIGZAG.iter().map(|&n| table[n]));
        }
        let luma_sampling = match subsampling {
            Subsampling::Yuv420 => 0x22,
            Subsampling::Yuv422 => 0x21,
        };
        let [wh, wl] = width.to_be_bytes();
        let [hh, hl] = height.to_be_bytes();
        out.extend_from_slice(&[0xff, 0xc0, 0, 17, 8, hh, hl, wh, wl, 3]);
        out.extend_from_slice(&[1, luma_sampling, 0, 2, 0x11, 1, 3, 0x11, 1]);
        for (class_id, table) in [0x00, 0x10, 0x01, 0x11].into_iter().zip(huffman) {
            write_huffman_table(out, class_id, table);
        }
        out.extend_from_slice(&[0xff, 0xda, 0, 12, 3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]);
    }
}

/// How many bytes [`Scan::write_headers`] writes with these Huffman
/// tables: SOI, JFIF, two DQT, SOF, the four DHT, SOS.
fn headers_len(huffman: [&HuffmanTable; 4]) -> usize {
    let dht: usize = huffman
        .iter()
        .map(|t| 2 + 2 + 1 + 16 + t.symbols.len())
        .sum();
    2 + 18 + 2 * 69 + 19 + dht + 14
}

#[cfg(test)]
mod tests {
    use super::super::tests::ffmpeg_decodes_cleanly;
    use super::*;
    use std::process::Command;

    /// Owned planes of a natural-ish picture: smooth gradients, soft waves
    /// and a little noise, chroma at `subsampling`.
    struct Picture {
        width: usize,
        height: usize,
        planes: [Vec<u8>; 3],
        chroma: (usize, usize),
    }

    impl Picture {
        fn new(width: usize, height: usize, subsampling: Subsampling) -> Picture {
            Picture::moved(width, height, subsampling, 0)
        }

        /// The picture with its waves and noise moved `shift` pixels to the
        /// left: the next frame of a panning camera.
        fn moved(width: usize, height: usize, subsampling: Subsampling, shift: usize) -> Picture {
            let noise = |x: usize, y: usize| {
                let x = x + shift;
                let mut n =
                    (x as u32).wrapping_mul(0x9e37_79b9) ^ (y as u32).wrapping_mul(0x85eb_ca6b);
                n ^= n >> 15;
                n = n.wrapping_mul(0x2c1b_3c6d);
                (n >> 28) as f64 - 8.0
            };
            let luma = |x: usize, y: usize| {
                let (fx, fy) = ((x + shift) as f64, y as f64);
                let v = 40.0
                    + 150.0 * fx / width.max(2) as f64
                    + 30.0 * (fy / 23.0).sin()
                    + 20.0 * (fx / 11.0 + fy / 17.0).cos()
                    + noise(x, y) / 2.0;
                v.clamp(0.0, 255.0) as u8
            };
            let chroma_h = match subsampling {
                Subsampling::Yuv420 => height.div_ceil(2),
                Subsampling::Yuv422 => height,
            };
            let cw = width.div_ceil(2);
            let y = (0..width * height)
                .map(|i| luma(i % width, i / width))
                .collect();
            let cb = (0..cw * chroma_h)
                .map(|i| {
                    (90.0
                        + 70.0 * (i % cw) as f64 / cw as f64
                        + 10.0 * ((i / cw) as f64 / 9.0).sin()) as u8
                })
                .collect();
            let cr = (0..cw * chroma_h)
                .map(|i| (170.0 - 60.0 * (i / cw) as f64 / chroma_h as f64) as u8)
                .collect();
            Picture {
                width,
                height,
                planes: [y, cb, cr],
                chroma: (cw, chroma_h),
            }
        }

        /// Encoded as pictures are: with Huffman tables built for it.
        fn encode(&self, quality: u8, subsampling: Subsampling) -> Vec<u8> {
            self.encode_into(quality, subsampling, &mut SymbolBuffer::default())
        }

        /// As [`Picture::encode`], with `buffer` as the symbol buffer.
        fn encode_into(
            &self,
            quality: u8,
            subsampling: Subsampling,
            buffer: &mut SymbolBuffer,
        ) -> Vec<u8> {
            let [y, cb, cr] = self.plane_refs();
            PlanarEncoder::new(quality, subsampling)
                .encode(self.width as u16, self.height as u16, y, cb, cr, buffer)
                .expect("encodes")
        }

        /// Encoded with the standard Huffman tables.
        fn encode_standard(&self, quality: u8, subsampling: Subsampling) -> Vec<u8> {
            let [y, cb, cr] = self.plane_refs();
            PlanarEncoder::new(quality, subsampling)
                .encode_standard(self.width as u16, self.height as u16, y, cb, cr)
                .expect("encodes")
        }

        fn plane_refs(&self) -> [PlaneRef<'_>; 3] {
            let [y, cb, cr] = &self.planes;
            let (cw, ch) = self.chroma;
            let plane = |data, width, height| PlaneRef {
                data,
                stride: width,
                width,
                height,
            };
            [
                plane(y, self.width, self.height),
                plane(cb, cw, ch),
                plane(cr, cw, ch),
            ]
        }

        /// The input Y'CbCr at pixel (x, y), chroma repeated.
        fn ycbcr(&self, x: usize, y: usize, subsampling: Subsampling) -> [u8; 3] {
            let (cw, _) = self.chroma;
            let cy = match subsampling {
                Subsampling::Yuv420 => y / 2,
                Subsampling::Yuv422 => y,
            };
            let c = cy * cw + x / 2;
            [
                self.planes[0][y * self.width + x],
                self.planes[1][c],
                self.planes[2][c],
            ]
        }
    }

    fn psnr(pairs: impl Iterator<Item = (u8, u8)>) -> f64 {
        let (mut sum, mut n) = (0f64, 0usize);
        for (a, b) in pairs {
            sum += (f64::from(a) - f64::from(b)).powi(2);
            n += 1;
        }
        if sum == 0.0 {
            return f64::INFINITY;
        }
        10.0 * (255.0f64 * 255.0 * n as f64 / sum).log10()
    }

    /// Y'CbCr (full range, BT.601) to RGB, as JFIF decoders do.
    fn rgb([y, cb, cr]: [u8; 3]) -> [u8; 3] {
        let (y, cb, cr) = (f64::from(y), f64::from(cb) - 128.0, f64::from(cr) - 128.0);
        let c = |v: f64| v.round().clamp(0.0, 255.0) as u8;
        [
            c(y + 1.402 * cr),
            c(y - 0.344_136 * cb - 0.714_136 * cr),
            c(y + 1.772 * cb),
        ]
    }

    /// Decodes with zune-jpeg to Y'CbCr: (width, height, samples).
    fn zune_ycbcr(jpeg: &[u8]) -> (usize, usize, Vec<u8>) {
        use zune_jpeg::zune_core::bytestream::ZCursor;
        use zune_jpeg::zune_core::colorspace::ColorSpace;
        use zune_jpeg::zune_core::options::DecoderOptions;
        let options = DecoderOptions::default()
            .set_strict_mode(true)
            .jpeg_set_out_colorspace(ColorSpace::YCbCr);
        let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(jpeg), options);
        let pixels = d.decode().expect("zune-jpeg decodes");
        let (w, h) = d.dimensions().expect("dimensions");
        (w, h, pixels)
    }

    /// Decodes with jpeg-decoder to RGB: (width, height, samples).
    fn jpeg_decoder_rgb(jpeg: &[u8]) -> (usize, usize, Vec<u8>) {
        let mut d = jpeg_decoder::Decoder::new(jpeg);
        let pixels = d.decode().expect("jpeg-decoder decodes");
        let info = d.info().expect("info");
        assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24);
        (usize::from(info.width), usize::from(info.height), pixels)
    }

    /// Luma PSNR (zune-jpeg) and RGB PSNR (jpeg-decoder) of a round trip.
    fn round_trip(pic: &Picture, quality: u8, subsampling: Subsampling) -> (f64, f64) {
        let jpeg = pic.encode(quality, subsampling);
        let (w, h, ycc) = zune_ycbcr(&jpeg);
        assert_eq!((w, h), (pic.width, pic.height));
        let luma = ycc
            .chunks_exact(3)
            .enumerate()
            .map(|(i, px)| (px[0], pic.ycbcr(i % w, i / w, subsampling)[0]));
        let luma_psnr = psnr(luma);
        let (w, h, rgb_out) = jpeg_decoder_rgb(&jpeg);
        assert_eq!((w, h), (pic.width, pic.height));
        let expect: Vec<u8> = (0..w * h)
            .flat_map(|i| rgb(pic.ycbcr(i % w, i / w, subsampling)))
            .collect();
        let rgb_psnr = psnr(rgb_out.iter().copied().zip(expect));
        (luma_psnr, rgb_psnr)
    }

    #[test]
    fn round_trips_closely_at_both_subsamplings_and_odd_sizes() {
        for sub in [Subsampling::Yuv420, Subsampling::Yuv422] {
            for (w, h) in [(640, 360), (17, 9), (1, 1), (4095, 16), (33, 31)] {
                let pic = Picture::new(w, h, sub);
                let (luma, rgb) = round_trip(&pic, 90, sub);
                assert!(
                    luma > 38.0 && rgb > 35.0,
                    "{w}x{h} {sub} q90: luma {luma:.1} dB, RGB {rgb:.1} dB"
                );
                let (luma, rgb) = round_trip(&pic, 50, sub);
                assert!(
                    luma > 32.0 && rgb > 30.0,
                    "{w}x{h} {sub} q50: luma {luma:.1} dB, RGB {rgb:.1} dB"
                );
            }
        }
    }

    #[test]
    fn higher_quality_is_closer_and_larger() {
        let pic = Picture::new(160, 96, Subsampling::Yuv420);
        let mut last = (0.0, 0);
        for q in [10, 30, 60, 85, 100] {
            let size = pic.encode(q, Subsampling::Yuv420).len();
            let (luma, _) = round_trip(&pic, q, Subsampling::Yuv420);
            assert!(
                luma > last.0 && size > last.1,
                "q{q}: {luma:.1} dB, {size} bytes after {last:?}"
            );
            last = (luma, size);
        }
        assert!(last.0 > 45.0, "q100: {:.1} dB", last.0);
    }

    #[test]
    fn with_standard_tables_sizes_match_jpeg_encoder_at_the_same_quality() {
        let pic = Picture::new(640, 360, Subsampling::Yuv420);
        // jpeg-encoder takes whole-resolution Y'CbCr and averages 2x2
        // chroma: repeated samples average back to the same planes.
        let interleaved: Vec<u8> = (0..640 * 360)
            .flat_map(|i| pic.ycbcr(i % 640, i / 640, Subsampling::Yuv420))
            .collect();
        for q in [30, 50, 75, 80, 90, 95] {
            let ours = pic.encode_standard(q, Subsampling::Yuv420).len();
            let mut theirs = Vec::new();
            let mut e = jpeg_encoder::Encoder::new(&mut theirs, q);
            e.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
            e.encode(&interleaved, 640, 360, jpeg_encoder::ColorType::Ycbcr)
                .expect("jpeg-encoder encodes");
            let ratio = ours as f64 / theirs.len() as f64;
            assert!(
                (0.95..=1.05).contains(&ratio),
                "q{q}: {ours} vs {} bytes",
                theirs.len()
            );
        }
    }

    #[test]
    fn ffmpeg_reads_it_as_baseline_jpeg() {
        let dir = std::env::temp_dir().join(format!("mjpegd-enc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for (sub, pix_fmt) in [
            (Subsampling::Yuv420, "yuvj420p"),
            (Subsampling::Yuv422, "yuvj422p"),
        ] {
            let path = dir.join(format!("{}.jpg", pix_fmt));
            std::fs::write(&path, Picture::new(97, 41, sub).encode(75, sub)).expect("writes");
            let probe = Command::new("ffprobe")
                .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
                .arg("stream=codec_name,width,height,pix_fmt")
                .args(["-of", "csv=p=0"])
                .arg(&path)
                .output()
                .expect("ffprobe (package ffmpeg) must be installed for this test");
            assert!(
                probe.status.success(),
                "{}",
                String::from_utf8_lossy(&probe.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&probe.stdout).trim(),
                format!("mjpeg,97,41,{pix_fmt}")
            );
            // A full decode with errors made fatal: any damage fails it.
            let decode = Command::new("ffmpeg")
                .args(["-v", "error", "-xerror", "-err_detect", "explode", "-i"])
                .arg(&path)
                .args(["-f", "null", "-"])
                .output()
                .expect("ffmpeg must be installed for this test");
            assert!(
                decode.status.success() && decode.stderr.is_empty(),
                "{}",
                String::from_utf8_lossy(&decode.stderr)
            );
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The DHT segments of a JPEG, whole.
    fn huffman_segments(jpeg: &[u8]) -> Vec<&[u8]> {
        let mut found = Vec::new();
        let mut at = 2;
        while at + 4 <= jpeg.len() && jpeg[at] == 0xff && jpeg[at + 1] != 0xda {
            let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
            if jpeg[at + 1] == 0xc4 {
                found.push(&jpeg[at..at + 2 + len]);
            }
            at += 2 + len;
        }
        found
    }

    #[test]
    fn fitted_tables_make_smaller_frames_that_decode_to_the_same_pixels() {
        for sub in [Subsampling::Yuv420, Subsampling::Yuv422] {
            for (w, h, quality) in [(320, 240, 80), (640, 480, 80), (97, 41, 50), (160, 96, 95)] {
                let pic = Picture::new(w, h, sub);
                let standard = pic.encode_standard(quality, sub);
                let fitted = pic.encode(quality, sub);
                let case = format!("{w}x{h} {sub} q{quality}");
                // Huffman coding is lossless: same coefficients, same
                // pixels, byte for byte, in both decoders.
                let (dw, dh, standard_rgb) = jpeg_decoder_rgb(&standard);
                assert_eq!((dw, dh), (w, h));
                assert!(
                    jpeg_decoder_rgb(&fitted).2 == standard_rgb,
                    "{case}: pixels differ"
                );
                assert!(zune_ycbcr(&fitted).2 == zune_ycbcr(&standard).2, "{case}");
                ffmpeg_decodes_cleanly(&fitted, &format!("fitted-{w}x{h}-{quality}"));
                assert_ne!(huffman_segments(&fitted), huffman_segments(&standard));
                // Allocated once, to within the frame hub's 1/16 of slack.
                let cap = fitted.capacity();
                assert!(
                    cap >= fitted.len() && cap - fitted.len() <= fitted.len() / 16,
                    "{case}"
                );
                assert!(
                    fitted.len() * 100 < standard.len() * 95,
                    "{case}: {} bytes vs {} with the standard tables",
                    fitted.len(),
                    standard.len()
                );
            }
        }
    }

    #[test]
    fn a_reused_symbol_buffer_carries_nothing_over() {
        // A flat grey picture codes DC category 0 and EOB only; a busy one
        // needs nearly every symbol; then grey again.
        let (w, h) = (64, 48);
        let grey = Picture {
            width: w,
            height: h,
            planes: [vec![128; w * h], vec![128; w * h / 4], vec![128; w * h / 4]],
            chroma: (w / 2, h / 2),
        };
        let mut state = 1u32;
        let mut noise = || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        };
        let busy = Picture {
            width: w,
            height: h,
            planes: [
                (0..w * h).map(|_| noise()).collect(),
                (0..w * h / 4).map(|_| noise()).collect(),
                (0..w * h / 4).map(|_| noise()).collect(),
            ],
            chroma: (w / 2, h / 2),
        };
        let sub = Subsampling::Yuv420;
        let mut buffer = SymbolBuffer::default();
        for (name, pic) in [("grey", &grey), ("busy", &busy), ("grey-again", &grey)] {
            let jpeg = pic.encode_into(95, sub, &mut buffer);
            assert!(
                jpeg == pic.encode(95, sub),
                "{name}: differs from a fresh buffer's"
            );
            let standard = pic.encode_standard(95, sub);
            assert!(
                jpeg_decoder_rgb(&jpeg).2 == jpeg_decoder_rgb(&standard).2,
                "{name}"
            );
            ffmpeg_decodes_cleanly(&jpeg, name);
        }
        // The headers are as long as reckoned (the coded data follows SOS).
        let jpeg = busy.encode(95, sub);
        let sos = jpeg
            .windows(2)
            .position(|w| w == [0xff, 0xda])
            .expect("SOS");
        let tables: Vec<HuffmanTable> = huffman_segments(&jpeg)
            .iter()
            .map(|d| HuffmanTable {
                counts: d[5..21].try_into().expect("16 counts"),
                symbols: d[21..].to_vec(),
            })
            .collect();
        let [a, b, c, d] = &tables[..] else {
            panic!("four DHT segments");
        };
        assert_eq!(headers_len([a, b, c, d]), sos + 14);
        // The grey picture's tables hold only the symbols it uses.
        let jpeg = grey.encode(95, sub);
        let symbols: Vec<usize> = huffman_segments(&jpeg)
            .iter()
            .map(|d| d.len() - 21)
            .collect();
        assert_eq!(symbols, [1, 1, 1, 1]);
    }

    #[test]
    fn rejects_planes_that_do_not_cover_the_picture() {
        let pic = Picture::new(32, 16, Subsampling::Yuv420);
        let [y, cb, cr] = &pic.planes;
        let plane = |data, width, height| PlaneRef {
            data,
            stride: width,
            width,
            height,
        };
        let mut buf = SymbolBuffer::default();
        // A `w`x16 picture from the first `luma` bytes of the luma plane
        // and 16x8 chroma planes.
        let mut encode = |sub, w: u16, luma: usize| {
            PlanarEncoder::new(80, sub).encode(
                w,
                16,
                plane(&y[..luma], 32, 16),
                plane(cb, 16, 8),
                plane(cr, 16, 8),
                &mut buf,
            )
        };
        assert!(encode(Subsampling::Yuv420, 32, y.len()).is_ok());
        // Chroma too short for 4:2:2; luma too small; empty picture.
        assert!(matches!(
            encode(Subsampling::Yuv422, 32, y.len()),
            Err(EncodeError::BadInput(_))
        ));
        assert!(encode(Subsampling::Yuv420, 33, y.len()).is_err());
        assert!(encode(Subsampling::Yuv420, 0, y.len()).is_err());
        // A plane claiming more rows than its data holds.
        assert!(encode(Subsampling::Yuv420, 32, 100).is_err());
    }
}

#[cfg(test)]
mod measure {
    use super::*;
    use std::time::Instant;

    /// Decodes a JPEG into full-resolution Y'CbCr and makes 4:2:0 planes.
    fn planes_of(jpeg: &[u8]) -> (usize, usize, [Vec<u8>; 3]) {
        use zune_jpeg::zune_core::bytestream::ZCursor;
        use zune_jpeg::zune_core::colorspace::ColorSpace;
        use zune_jpeg::zune_core::options::DecoderOptions;
        let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::YCbCr);
        let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(jpeg), options);
        let px = d.decode().expect("decodes");
        let (w, h) = d.dimensions().expect("dims");
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let y = px.chunks_exact(3).map(|p| p[0]).collect();
        let mut c = [vec![0u8; cw * ch], vec![0u8; cw * ch]];
        for (k, plane) in c.iter_mut().enumerate() {
            for cy in 0..ch {
                for cx in 0..cw {
                    let mut sum = 0u32;
                    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                        let (x, yy) = ((2 * cx + dx).min(w - 1), (2 * cy + dy).min(h - 1));
                        sum += u32::from(px[(yy * w + x) * 3 + 1 + k]);
                    }
                    plane[cy * cw + cx] = ((sum + 2) / 4) as u8;
                }
            }
        }
        let [cb, cr] = c;
        (w, h, [y, cb, cr])
    }

    #[test]
    #[ignore = "measurement: cargo test --release --lib measure -- --ignored --nocapture"]
    fn huffman_choices() {
        let dir = std::env::var("FRAMES").unwrap_or("/tmp/frames/480p".into());
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .expect("frames")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        names.sort();
        let frames: Vec<_> = names
            .iter()
            .map(|p| planes_of(&std::fs::read(p).expect("reads")))
            .collect();
        // The standard tables in one pass, then tables fitted to each
        // picture in two (what pictures get).
        let choices = ["standard", "fitted"];
        let rounds: usize = std::env::var("ROUNDS").map_or(15, |r| r.parse().unwrap_or(15));
        let only = std::env::var("CHOICE").ok();
        let mut best = [f64::MAX; 2];
        let mut bytes = [0usize; 2];
        let encoder = PlanarEncoder::new(80, Subsampling::Yuv420);
        let mut buffer = SymbolBuffer::default();
        // Rounds interleave the choices so that background load hits both.
        for _round in 0..rounds {
            for (i, &choice) in choices.iter().enumerate() {
                if only.as_ref().is_some_and(|o| o != choice) {
                    continue;
                }
                bytes[i] = 0;
                let start = Instant::now();
                for (w, h, [y, cb, cr]) in &frames {
                    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
                    let p = |data, width, height| PlaneRef {
                        data,
                        stride: width,
                        width,
                        height,
                    };
                    let (y, cb, cr) = (p(y, *w, *h), p(cb, cw, ch), p(cr, cw, ch));
                    let (w, h) = (*w as u16, *h as u16);
                    let jpeg = match choice {
                        "standard" => encoder.encode_standard(w, h, y, cb, cr),
                        _ => encoder.encode(w, h, y, cb, cr, &mut buffer),
                    };
                    bytes[i] += jpeg.expect("encodes").len();
                }
                best[i] = best[i].min(start.elapsed().as_secs_f64());
            }
        }
        let n = frames.len() as f64;
        println!(
            "symbol buffer after the last frame: {} symbols, {} bytes allocated",
            buffer.symbols.len(),
            buffer.symbols.capacity() * 4
        );
        for i in 0..2 {
            println!(
                "{}: {:.0} bytes/frame, {:.3} ms/frame (fastest of {rounds} rounds)",
                choices[i],
                bytes[i] as f64 / n,
                best[i] * 1e3 / n
            );
        }
    }
}
