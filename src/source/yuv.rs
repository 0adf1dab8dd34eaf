//! Raw camera pictures (YUYV 4:2:2 and NV12 4:2:0) and their JPEG encoding.
//!
//! Cameras deliver Y'CbCr already, and JPEG stores Y'CbCr, so no RGB
//! round trip is needed: [`RawImage`] checks that a capture buffer covers
//! the picture's geometry and hands it to [`crate::encode`], which only
//! stretches the video range cameras use to the full range JPEG uses.

use crate::encode::{self, EncodeError, Subsampling};
use std::fmt;

/// The raw pixel layouts we can encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawFormat {
    /// Packed 4:2:2: `Y0 Cb Y1 Cr` per pair of pixels.
    Yuyv,
    /// Planar 4:2:0: the Y' plane, then one plane of interleaved `Cb Cr`
    /// for each 2x2 block.
    Nv12,
}

impl fmt::Display for RawFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RawFormat::Yuyv => "YUYV",
            RawFormat::Nv12 => "NV12",
        })
    }
}

impl RawFormat {
    /// Bytes a row of `width` pixels needs: chroma comes in pairs of
    /// pixels, so an odd width needs the pair of its last pixel too.
    fn min_stride(self, width: usize) -> usize {
        match self {
            RawFormat::Yuyv => width.div_ceil(2) * 4,
            RawFormat::Nv12 => width.div_ceil(2) * 2,
        }
    }

    /// The width that can be encoded from rows of `stride` bytes.
    ///
    /// Drivers give odd widths rows of exactly `width` pixels (YUYV 641
    /// wide: 1282 bytes), which hold no chroma for the last pixel; then
    /// the even part (640) is encoded rather than no picture at all.
    pub fn encodable_width(self, width: u16, stride: usize) -> u16 {
        if width % 2 == 1 && width > 1 && stride < self.min_stride(usize::from(width)) {
            width - 1
        } else {
            width
        }
    }
}

/// One raw picture in a capture buffer.
#[derive(Clone, Copy, Debug)]
pub struct RawImage<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) width: u16,
    pub(crate) height: u16,
    /// Bytes per row (of the Y' plane for NV12; the chroma plane has the same).
    pub(crate) stride: usize,
    pub(crate) format: RawFormat,
}

impl<'a> RawImage<'a> {
    /// Wraps `data`; fails when the buffer is too small for the geometry
    /// (a truncated frame from a misbehaving driver must not panic).
    pub fn new(
        data: &'a [u8],
        width: u16,
        height: u16,
        stride: usize,
        format: RawFormat,
    ) -> Result<RawImage<'a>, String> {
        if width == 0 || height == 0 {
            return Err(format!("empty {format} picture {width}x{height}"));
        }
        let (w, h) = (usize::from(width), usize::from(height));
        let min_stride = format.min_stride(w);
        let needed = match format {
            RawFormat::Yuyv => stride.saturating_mul(h),
            RawFormat::Nv12 => stride.saturating_mul(h + h.div_ceil(2)),
        };
        if stride < min_stride {
            return Err(format!(
                "{format} row of {stride} bytes is too short for width {width}"
            ));
        }
        if data.len() < needed {
            return Err(format!(
                "{format} frame of {} bytes is too short for {width}x{height} (needs {needed})",
                data.len()
            ));
        }
        Ok(RawImage {
            data,
            width,
            height,
            stride,
            format,
        })
    }

    /// Encodes the picture as a JPEG of `quality` (1-100); YUYV at
    /// `subsampling`, NV12 at its own 4:2:0.
    pub fn encode(&self, quality: u8, subsampling: Subsampling) -> Result<Vec<u8>, EncodeError> {
        encode::encode_raw(self, quality, subsampling)
    }
}

/// A raw picture that owns its buffer: what a camera frame was encoded
/// from, kept beside the live frame so that a rendition resizes it
/// instead of decoding the JPEG again.
#[derive(Debug)]
pub struct RawPicture {
    data: Vec<u8>,
    width: u16,
    height: u16,
    stride: usize,
    format: RawFormat,
}

impl RawPicture {
    /// Takes `data` when it covers the geometry (see [`RawImage::new`]).
    pub fn new(
        data: Vec<u8>,
        width: u16,
        height: u16,
        stride: usize,
        format: RawFormat,
    ) -> Result<RawPicture, (Vec<u8>, String)> {
        match RawImage::new(&data, width, height, stride, format) {
            Ok(_) => Ok(RawPicture {
                data,
                width,
                height,
                stride,
                format,
            }),
            Err(why) => Err((data, why)),
        }
    }

    /// The picture (checked when it was made).
    pub fn image(&self) -> RawImage<'_> {
        RawImage {
            data: &self.data,
            width: self.width,
            height: self.height,
            stride: self.stride,
            format: self.format,
        }
    }

    /// The buffer back, for reuse.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A picture with gradients, flat colour patches and a sharp edge.
    pub(crate) fn test_picture(w: usize, h: usize) -> Vec<u8> {
        let mut rgb = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let (r, g, b) = if y < h / 2 {
                    ((x * 255 / w) as u8, (y * 255 / h) as u8, 160)
                } else {
                    match x * 4 / w {
                        0 => (200, 40, 40),
                        1 => (40, 180, 60),
                        2 => (30, 60, 200),
                        _ => (240, 240, 240),
                    }
                };
                rgb.extend_from_slice(&[r, g, b]);
            }
        }
        rgb
    }

    /// RGB to video-range BT.601 Y'CbCr, as a camera would produce.
    pub(crate) fn to_ycbcr(r: u8, g: u8, b: u8) -> (u8, u8, u8) {
        let (r, g, b) = (r as f64, g as f64, b as f64);
        let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
        let cb = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
        let cr = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
        (y.round() as u8, cb.round() as u8, cr.round() as u8)
    }

    /// Packs RGB as YUYV with `stride` bytes per row (chroma of each pair averaged).
    pub(crate) fn to_yuyv(rgb: &[u8], w: usize, h: usize, stride: usize) -> Vec<u8> {
        let mut out = vec![0u8; stride * h];
        for y in 0..h {
            for x in (0..w).step_by(2) {
                let px = |x: usize| {
                    let i = (y * w + x.min(w - 1)) * 3;
                    to_ycbcr(rgb[i], rgb[i + 1], rgb[i + 2])
                };
                let (y0, cb0, cr0) = px(x);
                let (y1, cb1, cr1) = px(x + 1);
                let o = y * stride + x / 2 * 4;
                out[o..o + 4].copy_from_slice(&[
                    y0,
                    ((cb0 as u16 + cb1 as u16) / 2) as u8,
                    y1,
                    ((cr0 as u16 + cr1 as u16) / 2) as u8,
                ]);
            }
        }
        out
    }

    /// Packs RGB as NV12 (chroma of each 2x2 block from its top-left pixel),
    /// rows of `w` rounded up to even bytes.
    pub(crate) fn to_nv12(rgb: &[u8], w: usize, h: usize) -> Vec<u8> {
        let stride = w.next_multiple_of(2);
        let mut out = vec![0u8; stride * (h + h.div_ceil(2))];
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) * 3;
                let (luma, cb, cr) = to_ycbcr(rgb[i], rgb[i + 1], rgb[i + 2]);
                out[y * stride + x] = luma;
                if y % 2 == 0 && x % 2 == 0 {
                    let o = (h + y / 2) * stride + x;
                    out[o] = cb;
                    out[o + 1] = cr;
                }
            }
        }
        out
    }

    fn decode_rgb(jpeg: &[u8]) -> (usize, usize, Vec<u8>) {
        use zune_jpeg::zune_core::bytestream::ZCursor;
        use zune_jpeg::zune_core::colorspace::ColorSpace;
        use zune_jpeg::zune_core::options::DecoderOptions;
        let opts = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
        let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(jpeg), opts);
        let pixels = d.decode().expect("decodes");
        let (w, h) = d.dimensions().expect("dimensions");
        (w, h, pixels)
    }

    fn mean_abs_error(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        let sum: u64 = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as u64).sum();
        sum as f64 / a.len() as f64
    }

    #[test]
    fn yuyv_encodes_to_the_source_picture() {
        let (w, h) = (64, 48);
        let rgb = test_picture(w, h);
        // Padded rows, as some drivers deliver them.
        let stride = w * 2 + 32;
        let raw = to_yuyv(&rgb, w, h, stride);
        let img = RawImage::new(&raw, w as u16, h as u16, stride, RawFormat::Yuyv).expect("fits");
        for sub in [Subsampling::Yuv420, Subsampling::Yuv422] {
            let jpeg = img.encode(90, sub).expect("encodes");
            let (dw, dh, back) = decode_rgb(&jpeg);
            assert_eq!((dw, dh), (w, h));
            let err = mean_abs_error(&rgb, &back);
            assert!(err < 4.0, "{sub}: mean abs error {err}");
        }
    }

    #[test]
    fn nv12_encodes_to_the_source_picture() {
        let (w, h) = (64, 48);
        let rgb = test_picture(w, h);
        let raw = to_nv12(&rgb, w, h);
        let img = RawImage::new(&raw, w as u16, h as u16, w, RawFormat::Nv12).expect("fits");
        let jpeg = img.encode(90, Subsampling::default()).expect("encodes");
        let (dw, dh, back) = decode_rgb(&jpeg);
        assert_eq!((dw, dh), (w, h));
        let err = mean_abs_error(&rgb, &back);
        assert!(err < 5.0, "mean abs error {err}");
    }

    #[test]
    fn wrong_colours_would_be_noticed() {
        // The bound above means something: swapping Cb and Cr is far off.
        let (w, h) = (64, 48);
        let rgb = test_picture(w, h);
        let mut raw = to_yuyv(&rgb, w, h, w * 2);
        for px in raw.chunks_exact_mut(4) {
            px.swap(1, 3);
        }
        let img = RawImage::new(&raw, w as u16, h as u16, w * 2, RawFormat::Yuyv).expect("fits");
        let (_, _, back) = decode_rgb(&img.encode(90, Subsampling::default()).expect("encodes"));
        assert!(mean_abs_error(&rgb, &back) > 15.0);
    }

    #[test]
    fn odd_sizes_and_short_buffers() {
        let (w, h) = (33, 17);
        let rgb = test_picture(w, h);
        let raw = to_yuyv(&rgb, w, h, 68);
        let img = RawImage::new(&raw, w as u16, h as u16, 68, RawFormat::Yuyv).expect("fits");
        // 4:2:0 halves the chroma rows too: the colour edges of the test
        // picture cost more there (the same bound as NV12 below).
        for (sub, bound) in [(Subsampling::Yuv420, 9.5), (Subsampling::Yuv422, 6.5)] {
            let (dw, dh, back) = decode_rgb(&img.encode(90, sub).expect("encodes"));
            assert_eq!((dw, dh), (w, h));
            let err = mean_abs_error(&rgb, &back);
            assert!(err < bound, "{sub}: mean abs error {err}");
        }
        assert!(RawImage::new(&raw[..100], 33, 17, 68, RawFormat::Yuyv).is_err());
        assert!(RawImage::new(&raw, 33, 17, 64, RawFormat::Yuyv).is_err());
        let raw = to_nv12(&rgb, w, h);
        let img = RawImage::new(&raw, w as u16, h as u16, w + 1, RawFormat::Nv12).expect("fits");
        let (dw, dh, back) = decode_rgb(&img.encode(90, Subsampling::default()).expect("encodes"));
        assert_eq!((dw, dh), (w, h));
        // The edge column and row (padded by the encoder) come back right too.
        let err = mean_abs_error(&rgb, &back);
        assert!(err < 9.5, "mean abs error {err}");
        assert!(RawImage::new(&[0; 10], 4, 4, 4, RawFormat::Nv12).is_err());
        assert!(RawImage::new(&[0; 24], 4, 4, 4, RawFormat::Nv12).is_ok());
    }

    /// YUYV 641x480 as drivers lay it out: 1282-byte rows, no chroma for
    /// the last pixel. The even part is encoded.
    #[test]
    fn odd_width_rows_without_the_last_chroma_pair() {
        let (w, h) = (41usize, 16usize);
        let stride = w * 2;
        assert_eq!(RawFormat::Yuyv.encodable_width(41, stride), 40);
        assert_eq!(RawFormat::Yuyv.encodable_width(41, 84), 41);
        assert_eq!(RawFormat::Yuyv.encodable_width(40, 80), 40);
        assert_eq!(RawFormat::Nv12.encodable_width(41, 41), 40);
        assert_eq!(RawFormat::Nv12.encodable_width(41, 42), 41);
        let rgb = test_picture(w, h);
        let even: Vec<u8> = rgb
            .chunks_exact(w * 3)
            .flat_map(|row| row[..(w - 1) * 3].to_vec())
            .collect();
        let raw = to_yuyv(&even, w - 1, h, stride);
        assert!(RawImage::new(&raw, w as u16, h as u16, stride, RawFormat::Yuyv).is_err());
        let width = RawFormat::Yuyv.encodable_width(w as u16, stride);
        let img = RawImage::new(&raw, width, h as u16, stride, RawFormat::Yuyv).expect("fits");
        let (dw, dh, back) = decode_rgb(&img.encode(90, Subsampling::Yuv422).expect("encodes"));
        assert_eq!((dw, dh), (w - 1, h));
        assert!(mean_abs_error(&even, &back) < 6.5);
    }
}
