//! [`PlanarEncoder`]: mjpegd's own baseline JPEG encoder, fed Y'CbCr planes
//! (no colour conversion: renditions and camera pictures are Y'CbCr
//! already) at 4:2:0 or 4:2:2, with the standard tables.
//!
//! The output is what jpeg-encoder and libjpeg make from the same samples
//! at the same quality: JFIF, baseline, Annex K tables scaled alike, one
//! interleaved scan, so sizes and `--quality` keep their meaning.

use super::bits::BitWriter;
use super::dct::{Block, Quantizer, forward_dct};
use super::huffman::{HuffmanCodes, encode_block};
use super::tables::{CHROMA_AC, CHROMA_DC, HuffmanSpec, LUMA_AC, LUMA_DC, ZIGZAG, quant_table};
use super::{EncodeError, Subsampling};
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

/// The Huffman codes, the same for every picture.
struct Codes {
    luma_dc: HuffmanCodes,
    luma_ac: HuffmanCodes,
    chroma_dc: HuffmanCodes,
    chroma_ac: HuffmanCodes,
}

fn codes() -> &'static Codes {
    static CODES: OnceLock<Codes> = OnceLock::new();
    CODES.get_or_init(|| Codes {
        luma_dc: HuffmanCodes::new(&LUMA_DC),
        luma_ac: HuffmanCodes::new(&LUMA_AC),
        chroma_dc: HuffmanCodes::new(&CHROMA_DC),
        chroma_ac: HuffmanCodes::new(&CHROMA_AC),
    })
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

    /// Encodes a `width` x `height` picture: `y` covers it, `cb` and `cr`
    /// cover its chroma (half width; half height too at 4:2:0).
    pub(crate) fn encode(
        &self,
        width: u16,
        height: u16,
        y: PlaneRef<'_>,
        cb: PlaneRef<'_>,
        cr: PlaneRef<'_>,
    ) -> Result<Vec<u8>, EncodeError> {
        let (w, h) = (usize::from(width), usize::from(height));
        let rows_per_mcu = match self.subsampling {
            Subsampling::Yuv420 => 16,
            Subsampling::Yuv422 => 8,
        };
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(rows_per_mcu / 8));
        let covers =
            |p: &PlaneRef<'_>, pw: usize, ph: usize| p.fits() && p.width >= pw && p.height >= ph;
        if w == 0 || h == 0 || !covers(&y, w, h) || !covers(&cb, cw, ch) || !covers(&cr, cw, ch) {
            return Err(EncodeError::BadInput(format!(
                "planes do not cover {width}x{height} at {}",
                self.subsampling
            )));
        }
        // Only the picture's own samples count: what lies past it is padding.
        let y = PlaneRef {
            width: w,
            height: h,
            ..y
        };
        let cb = PlaneRef {
            width: cw,
            height: ch,
            ..cb
        };
        let cr = PlaneRef {
            width: cw,
            height: ch,
            ..cr
        };

        let luma_table = quant_table(true, self.quality);
        let chroma_table = quant_table(false, self.quality);
        let mut out = Vec::with_capacity(w * h / 4 + 1024);
        write_headers(
            &mut out,
            width,
            height,
            self.subsampling,
            &luma_table,
            &chroma_table,
        );

        let (luma_q, chroma_q) = (Quantizer::new(&luma_table), Quantizer::new(&chroma_table));
        let codes = codes();
        let luma_rows = rows_per_mcu / 8;
        let mut bits = BitWriter::new(&mut out);
        let mut block = [[0f32; 8]; 8];
        let mut zz = [0i32; 64];
        let mut pred = [0i32; 3];
        for my in 0..h.div_ceil(rows_per_mcu) {
            for mx in 0..w.div_ceil(16) {
                for by in 0..luma_rows {
                    for bx in 0..2 {
                        y.load(mx * 2 + bx, my * luma_rows + by, &mut block);
                        forward_dct(&mut block);
                        let nz = luma_q.quantize(&block, &mut zz);
                        encode_block(
                            &mut bits,
                            &zz,
                            nz,
                            &mut pred[0],
                            &codes.luma_dc,
                            &codes.luma_ac,
                        );
                    }
                }
                for (plane, c) in [(&cb, 1), (&cr, 2)] {
                    plane.load(mx, my, &mut block);
                    forward_dct(&mut block);
                    let nz = chroma_q.quantize(&block, &mut zz);
                    encode_block(
                        &mut bits,
                        &zz,
                        nz,
                        &mut pred[c],
                        &codes.chroma_dc,
                        &codes.chroma_ac,
                    );
                }
            }
        }
        bits.finish();
        out.extend_from_slice(&[0xff, 0xd9]);
        Ok(out)
    }
}

/// SOI, JFIF, the two quantization tables, the frame header, the four
/// Huffman tables and the scan header.
fn write_headers(
    out: &mut Vec<u8>,
    width: u16,
    height: u16,
    subsampling: Subsampling,
    luma: &[u8; 64],
    chroma: &[u8; 64],
) {
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
    for (class_id, spec) in [
        (0x00, &LUMA_DC),
        (0x10, &LUMA_AC),
        (0x01, &CHROMA_DC),
        (0x11, &CHROMA_AC),
    ] {
        write_huffman_table(out, class_id, spec);
    }
    out.extend_from_slice(&[0xff, 0xda, 0, 12, 3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]);
}

fn write_huffman_table(out: &mut Vec<u8>, class_id: u8, spec: &HuffmanSpec) {
    let len = (2 + 1 + 16 + spec.symbols.len()) as u16;
    out.extend_from_slice(&[0xff, 0xc4]);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(class_id);
    out.extend_from_slice(&spec.counts);
    out.extend_from_slice(spec.symbols);
}

#[cfg(test)]
mod tests {
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
            let noise = |x: usize, y: usize| {
                let mut n =
                    (x as u32).wrapping_mul(0x9e37_79b9) ^ (y as u32).wrapping_mul(0x85eb_ca6b);
                n ^= n >> 15;
                n = n.wrapping_mul(0x2c1b_3c6d);
                (n >> 28) as f64 - 8.0
            };
            let luma = |x: usize, y: usize| {
                let (fx, fy) = (x as f64, y as f64);
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

        fn encode(&self, quality: u8, subsampling: Subsampling) -> Vec<u8> {
            let [y, cb, cr] = &self.planes;
            let (cw, ch) = self.chroma;
            let plane = |data, width, height| PlaneRef {
                data,
                stride: width,
                width,
                height,
            };
            PlanarEncoder::new(quality, subsampling)
                .encode(
                    self.width as u16,
                    self.height as u16,
                    plane(y, self.width, self.height),
                    plane(cb, cw, ch),
                    plane(cr, cw, ch),
                )
                .expect("encodes")
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
    fn sizes_match_jpeg_encoder_at_the_same_quality() {
        let pic = Picture::new(640, 360, Subsampling::Yuv420);
        // jpeg-encoder takes whole-resolution Y'CbCr and averages 2x2
        // chroma: repeated samples average back to the same planes.
        let interleaved: Vec<u8> = (0..640 * 360)
            .flat_map(|i| pic.ycbcr(i % 640, i / 640, Subsampling::Yuv420))
            .collect();
        for q in [30, 50, 75, 80, 90, 95] {
            let ours = pic.encode(q, Subsampling::Yuv420).len();
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
        let e = PlanarEncoder::new(80, Subsampling::Yuv420);
        // Chroma too short for 4:2:2; luma too small; empty picture.
        assert!(
            e.encode(32, 16, plane(y, 32, 16), plane(cb, 16, 8), plane(cr, 16, 8))
                .is_ok()
        );
        let e422 = PlanarEncoder::new(80, Subsampling::Yuv422);
        assert!(matches!(
            e422.encode(32, 16, plane(y, 32, 16), plane(cb, 16, 8), plane(cr, 16, 8)),
            Err(EncodeError::BadInput(_))
        ));
        assert!(
            e.encode(33, 16, plane(y, 32, 16), plane(cb, 16, 8), plane(cr, 16, 8))
                .is_err()
        );
        assert!(
            e.encode(0, 16, plane(y, 32, 16), plane(cb, 16, 8), plane(cr, 16, 8))
                .is_err()
        );
        // A plane claiming more rows than its data holds.
        assert!(
            e.encode(
                32,
                16,
                plane(&y[..100], 32, 16),
                plane(cb, 16, 8),
                plane(cr, 16, 8)
            )
            .is_err()
        );
    }
}
