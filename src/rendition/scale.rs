//! One variant frame from one source JPEG: a decode at reduced scale, a
//! resize to the exact size when the decode's scale is not it, an encode.
//!
//! Most of a JPEG decode's cost past the entropy decoding is the inverse
//! DCT, chroma upsampling and colour conversion of every pixel. Decoding
//! at n/8 in the DCT domain skips most of the IDCT, so the decoder is asked
//! for the smallest scale that is still at least the target size. And as a
//! variant frame is encoded from Y'CbCr 4:2:0 planes ([`Planes`]), a
//! source is decoded into its planes whenever the decoder can: decoding to
//! RGB would upsample the chroma and convert every pixel to RGB only for
//! the encoder to convert it back and downsample the chroma again, four
//! passes that change nothing but rounding.
//! - The pure-Rust build uses its own decoder ([`super::decode`]: baseline
//!   frames straight into Y'CbCr planes, reduced IDCT at 1/8, 1/4, 1/2);
//!   other frames (progressive, CMYK, ...) go through `jpeg-decoder`'s
//!   scaled decode into RGB.
//! - With the `turbojpeg` feature, libjpeg-turbo's scaling factors (n/8
//!   for n in 1..8). 4:2:0 and 4:2:2 Y'CbCr frames, what cameras send, are
//!   decoded into planes by its decompress-to-YUV, which scales too; every
//!   other frame (grey, 4:4:4, RGB-coded, CMYK, ...) into RGB.
//!
//! Planes are resized by area averaging when the scale is not exact (a
//! 4:2:0 decode at an exact scale is taken as it is) and encoded by
//! [`crate::encode`] with no colour conversion; RGB is resized the same way
//! and encoded from RGB. A raw camera picture ([`render_raw`]) skips the
//! decode: its planes are resized directly.

use super::decode::{self, DecodedPlanes};
use super::planes::Planes;
use crate::encode;
use crate::source::yuv::RawImage;

/// A variant frame.
pub struct Scaled {
    pub jpeg: Vec<u8>,
    pub width: u16,
    pub height: u16,
}

/// Packed RGB pixels.
struct Rgb {
    pixels: Vec<u8>,
    width: usize,
    height: usize,
}

/// Re-encodes `jpeg` at `width`×`height` and `quality`. Never panics on a
/// bad input: a decoder panic is caught and reported as an error.
pub fn render(jpeg: &[u8], width: u16, height: u16, quality: u8) -> Result<Scaled, String> {
    let (w, h) = (width.max(1), height.max(1));
    let (tw, th) = (usize::from(w), usize::from(h));
    let jpeg = std::panic::catch_unwind(|| match backend::decode_planes(jpeg, tw, th) {
        Ok(decoded) => {
            let planes = Planes::from_decoded_owned(decoded, tw, th);
            encode::encode_planes(&planes, quality).map_err(|e| e.to_string())
        }
        Err(_) => render_rgb(jpeg, tw, th, quality),
    })
    .map_err(|_| "the JPEG decoder failed on this frame".to_owned())??;
    Ok(Scaled {
        jpeg,
        width: w,
        height: h,
    })
}

/// `jpeg` decoded into planes of at least `width`×`height`, for
/// [`render_decoded`] (which may make several variants of one decode);
/// `None` when the planar decode declines the frame (or its decoder
/// panics): [`render_decoded`] then takes the general path.
pub fn decode_planes(jpeg: &[u8], width: u16, height: u16) -> Option<DecodedPlanes> {
    let (tw, th) = (usize::from(width.max(1)), usize::from(height.max(1)));
    std::panic::catch_unwind(|| backend::decode_planes(jpeg, tw, th).ok())
        .ok()
        .flatten()
}

/// Re-encodes `jpeg` at `width`×`height` and `quality` from `decoded`,
/// the planes [`decode_planes`] made of it (resized to the size), or by
/// the general path when there are none. Never panics on a bad input.
pub fn render_decoded(
    decoded: Option<&DecodedPlanes>,
    jpeg: &[u8],
    width: u16,
    height: u16,
    quality: u8,
) -> Result<Scaled, String> {
    let (w, h) = (width.max(1), height.max(1));
    let (tw, th) = (usize::from(w), usize::from(h));
    let jpeg = std::panic::catch_unwind(|| match decoded {
        Some(decoded) => {
            let planes = Planes::from_decoded(decoded, tw, th);
            encode::encode_planes(&planes, quality).map_err(|e| e.to_string())
        }
        None => render_rgb(jpeg, tw, th, quality),
    })
    .map_err(|_| "the JPEG decoder failed on this frame".to_owned())??;
    Ok(Scaled {
        jpeg,
        width: w,
        height: h,
    })
}

/// Encodes a raw camera picture at `width`×`height` and `quality`: its
/// planes are resized as they are, nothing is decoded.
pub fn render_raw(
    img: &RawImage<'_>,
    width: u16,
    height: u16,
    quality: u8,
) -> Result<Scaled, String> {
    let (w, h) = (width.max(1), height.max(1));
    let planes = Planes::from_raw(img, usize::from(w), usize::from(h));
    let jpeg = encode::encode_planes(&planes, quality).map_err(|e| e.to_string())?;
    Ok(Scaled {
        jpeg,
        width: w,
        height: h,
    })
}

/// The general path, for the frames the planar decode declined: the
/// backend's decoder into RGB, resize, encode.
fn render_rgb(jpeg: &[u8], tw: usize, th: usize, quality: u8) -> Result<Vec<u8>, String> {
    let decoded = backend::decode_at_least(jpeg, tw, th)?;
    let rgb = if (decoded.width, decoded.height) == (tw, th) {
        decoded
    } else {
        resize(&decoded, tw, th)
    };
    let (w, h) = (tw as u16, th as u16);
    encode::encode_rgb(&rgb.pixels, w, h, quality).map_err(|e| e.to_string())
}

/// Area-averaging resize (each output pixel the mean of the input area it
/// covers), separable: rows first, then columns. Also stretches by a pixel
/// when a decode rounded a side down.
fn resize(src: &Rgb, width: usize, height: usize) -> Rgb {
    let h_taps = taps(src.width, width);
    let v_taps = taps(src.height, height);
    // Horizontal pass: src.height rows of `width` pixels.
    let mut rows = vec![0f32; src.height * width * 3];
    for y in 0..src.height {
        let line = &src.pixels[y * src.width * 3..(y + 1) * src.width * 3];
        let out = &mut rows[y * width * 3..(y + 1) * width * 3];
        for (x, tap) in h_taps.iter().enumerate() {
            let mut acc = [0f32; 3];
            for &(i, w) in tap {
                for c in 0..3 {
                    acc[c] += f32::from(line[i * 3 + c]) * w;
                }
            }
            out[x * 3..x * 3 + 3].copy_from_slice(&acc);
        }
    }
    let mut pixels = vec![0u8; width * height * 3];
    for (y, tap) in v_taps.iter().enumerate() {
        let out = &mut pixels[y * width * 3..(y + 1) * width * 3];
        for (x, px) in out.iter_mut().enumerate() {
            let acc: f32 = tap.iter().map(|&(i, w)| rows[i * width * 3 + x] * w).sum();
            *px = acc.round().clamp(0.0, 255.0) as u8;
        }
    }
    Rgb {
        pixels,
        width,
        height,
    }
}

/// For each of `to` output positions, the input positions of `from` it
/// covers and their weights (summing to 1).
fn taps(from: usize, to: usize) -> Vec<Vec<(usize, f32)>> {
    let ratio = from as f32 / to as f32;
    (0..to)
        .map(|o| {
            if ratio <= 1.0 {
                // Enlarging (a side rounded down by a pixel): nearest.
                let i = ((o as f32 + 0.5) * ratio) as usize;
                return vec![(i.min(from - 1), 1.0)];
            }
            let (start, end) = (o as f32 * ratio, (o as f32 + 1.0) * ratio);
            let mut tap = Vec::new();
            let mut i = start.floor() as usize;
            while (i as f32) < end && i < from {
                let cover = (end.min(i as f32 + 1.0) - start.max(i as f32)).max(0.0);
                if cover > 0.0 {
                    tap.push((i, cover / ratio));
                }
                i += 1;
            }
            tap
        })
        .collect()
}

#[cfg(not(feature = "turbojpeg"))]
mod backend {
    use super::Rgb;
    use super::decode::{self, DecodedPlanes};
    use jpeg_decoder::{Decoder, PixelFormat};

    /// mjpegd's own decoder ([`decode`]): baseline frames at the smallest
    /// of 1/8, 1/4, 1/2, 1 that is at least `width`×`height`, straight
    /// into Y'CbCr planes; an error for the frames it leaves to
    /// [`decode_at_least`].
    pub(super) fn decode_planes(
        jpeg: &[u8],
        width: usize,
        height: usize,
    ) -> Result<DecodedPlanes, String> {
        decode::decode(jpeg, width, height).map_err(|e| e.to_string())
    }

    /// Decodes at the smallest of 1/8, 1/4, 1/2, 1 that is at least
    /// `width`×`height` (as far as the source allows), into RGB.
    pub(super) fn decode_at_least(jpeg: &[u8], width: usize, height: usize) -> Result<Rgb, String> {
        let failed = |e: jpeg_decoder::Error| format!("cannot decode the frame: {e}");
        let mut d = Decoder::new(jpeg);
        let clamp = |v: usize| u16::try_from(v).unwrap_or(u16::MAX);
        d.scale(clamp(width), clamp(height)).map_err(failed)?;
        let pixels = d.decode().map_err(failed)?;
        let info = d.info().ok_or("no picture in the frame")?;
        let (w, h) = (usize::from(info.width), usize::from(info.height));
        let pixels = match info.pixel_format {
            PixelFormat::RGB24 => pixels,
            PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
            PixelFormat::L16 => pixels
                .chunks_exact(2)
                .flat_map(|l| [l[0], l[0], l[0]])
                .collect(),
            PixelFormat::CMYK32 => pixels
                .chunks_exact(4)
                .flat_map(|p| {
                    let k = u16::from(p[3]);
                    let ch = |c: u8| ((u16::from(c) * k) / 255) as u8;
                    [ch(p[0]), ch(p[1]), ch(p[2])]
                })
                .collect(),
        };
        if pixels.len() < w * h * 3 {
            return Err("the decoder returned too few pixels".into());
        }
        Ok(Rgb {
            pixels,
            width: w,
            height: h,
        })
    }
}

#[cfg(feature = "turbojpeg")]
mod backend {
    use super::Rgb;
    use super::decode::{DecodedPlanes, Plane};
    use crate::encode::with_reused;
    use std::cell::RefCell;
    use turbojpeg::{
        Colorspace, DecompressHeader, Decompressor, Image, PixelFormat, ScalingFactor, Subsamp,
        YuvImage,
    };

    thread_local! {
        /// One libjpeg-turbo handle per blocking-pool thread, reused.
        static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
    }

    fn failed(e: turbojpeg::Error) -> String {
        format!("cannot decode the frame: {e}")
    }

    /// Runs `f` with this thread's decompressor (created on first use),
    /// set to the smallest of libjpeg-turbo's scaling factors (n/8) that
    /// gives at least `width`×`height`, with the frame's header.
    fn with_scaled_decompressor<T>(
        jpeg: &[u8],
        width: usize,
        height: usize,
        f: impl FnOnce(&mut Decompressor, DecompressHeader, ScalingFactor) -> Result<T, String>,
    ) -> Result<T, String> {
        with_reused(&DECOMPRESSOR, |slot| {
            if slot.is_none() {
                *slot = Some(Decompressor::new().map_err(failed)?);
            }
            let Some(d) = slot.as_mut() else {
                return Err("no decompressor".into());
            };
            let header = d.read_header(jpeg).map_err(failed)?;
            let factor = (1..=8)
                .map(|n| ScalingFactor::new(n, 8))
                .find(|f| f.scale(header.width) >= width && f.scale(header.height) >= height)
                .unwrap_or(ScalingFactor::ONE);
            d.set_scaling_factor(factor).map_err(failed)?;
            f(d, header, factor)
        })
    }

    /// Decodes a 4:2:0 or 4:2:2 Y'CbCr frame at the smallest scaling
    /// factor that gives at least `width`×`height`, straight into its Y',
    /// Cb and Cr planes: the scaled IDCT writes each component at its own
    /// resolution, with no chroma upsampling and no colour conversion.
    /// Other frames (grey, 4:4:4, RGB- or CMYK-coded, ...) are an error,
    /// for [`decode_at_least`] to take: the gain is in those two steps,
    /// which such frames need less of or differently.
    pub(super) fn decode_planes(
        jpeg: &[u8],
        width: usize,
        height: usize,
    ) -> Result<DecodedPlanes, String> {
        with_scaled_decompressor(jpeg, width, height, |d, header, factor| {
            let half_height = match (header.colorspace, header.subsamp) {
                (Colorspace::YCbCr, Subsamp::Sub2x2) => true,
                (Colorspace::YCbCr, Subsamp::Sub2x1) => false,
                _ => return Err("not a 4:2:0 or 4:2:2 Y'CbCr frame".into()),
            };
            let (w, h) = (factor.scale(header.width), factor.scale(header.height));
            // libjpeg-turbo's unaligned planar layout, one plane after the
            // other: luma padded to whole chroma samples, chroma half as wide
            // (and at 4:2:0 half as high).
            let luma_stride = w.next_multiple_of(2);
            let luma_rows = if half_height {
                h.next_multiple_of(2)
            } else {
                h
            };
            let chroma_stride = luma_stride / 2;
            let chroma_rows = if half_height { luma_rows / 2 } else { h };
            let (luma_len, chroma_len) = (luma_stride * luma_rows, chroma_stride * chroma_rows);
            let total = turbojpeg::yuv_pixels_len(w, 1, h, header.subsamp).map_err(failed)?;
            if total != luma_len + 2 * chroma_len {
                return Err(format!("unexpected planar layout for {w}x{h}"));
            }
            let mut luma = vec![0u8; total];
            let image = YuvImage {
                pixels: &mut luma[..],
                width: w,
                align: 1,
                height: h,
                subsamp: header.subsamp,
            };
            d.decompress_to_yuv(jpeg, image).map_err(failed)?;
            let mut cb = luma.split_off(luma_len);
            let cr = cb.split_off(chroma_len);
            let chroma = |data| Plane {
                data,
                stride: chroma_stride,
                width: w.div_ceil(2),
                height: if half_height { h.div_ceil(2) } else { h },
            };
            let luma = Plane {
                data: luma,
                stride: luma_stride,
                width: w,
                height: h,
            };
            Ok(DecodedPlanes {
                planes: vec![luma, chroma(cb), chroma(cr)],
                width: w,
                height: h,
            })
        })
    }

    /// Decodes with the smallest of libjpeg-turbo's scaling factors (n/8)
    /// that gives at least `width`×`height`, into RGB.
    pub(super) fn decode_at_least(jpeg: &[u8], width: usize, height: usize) -> Result<Rgb, String> {
        with_scaled_decompressor(jpeg, width, height, |d, header, factor| {
            let (w, h) = (factor.scale(header.width), factor.scale(header.height));
            let mut pixels = vec![0u8; w * h * 3];
            let image = Image {
                pixels: &mut pixels[..],
                width: w,
                pitch: w * 3,
                height: h,
                format: PixelFormat::RGB,
            };
            d.decompress(jpeg, image).map_err(failed)?;
            Ok(Rgb {
                pixels,
                width: w,
                height: h,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::yuv::RawFormat;

    fn picture(w: u16, h: u16) -> Vec<u8> {
        let px: Vec<u8> = (0..usize::from(w) * usize::from(h))
            .flat_map(|i| [(i % 251) as u8, (i / 7 % 256) as u8, 128])
            .collect();
        encode::encode_rgb(&px, w, h, 90).expect("encodes")
    }

    fn size_of(jpeg: &[u8]) -> (u16, u16) {
        let info = crate::jpeg::check(jpeg).expect("a JPEG");
        (info.width, info.height)
    }

    #[test]
    fn exact_sizes_whether_or_not_a_dct_scale() {
        let src = picture(320, 180);
        for (w, h) in [
            (160, 90),
            (80, 45),
            (40, 23),
            (100, 56),
            (320, 180),
            (319, 179),
        ] {
            let out = render(&src, w, h, 70).expect("renders");
            assert_eq!(size_of(&out.jpeg), (w, h));
            assert_eq!((out.width, out.height), (w, h));
        }
    }

    #[test]
    fn quality_changes_the_bytes_and_bad_input_is_an_error() {
        let src = picture(320, 180);
        let lo = render(&src, 160, 90, 20).expect("renders");
        let hi = render(&src, 160, 90, 95).expect("renders");
        assert!(hi.jpeg.len() > lo.jpeg.len());
        assert!(render(b"\xff\xd8garbage\xff\xd9", 10, 10, 80).is_err());
        let mut cut = src.clone();
        cut.truncate(src.len() / 3);
        let _ = render(&cut, 10, 10, 80); // an error or a grey picture: never a panic
    }

    #[test]
    fn raw_pictures_render_at_the_exact_size() {
        let (w, h) = (64usize, 48usize);
        let yuyv: Vec<u8> = (0..w / 2 * h)
            .flat_map(|i| [(i % 200) as u8 + 16, 90, 200 - (i % 100) as u8, 160])
            .collect();
        let img = RawImage::new(&yuyv, 64, 48, w * 2, RawFormat::Yuyv).expect("fits");
        for (tw, th) in [(32, 24), (21, 15), (64, 48)] {
            let out = render_raw(&img, tw, th, 70).expect("renders");
            assert_eq!(size_of(&out.jpeg), (tw, th));
        }
    }

    /// Smooth, strongly coloured RGB: red to blue across, green down, a
    /// soft ring. Scaled IDCTs and box filters agree closely on it, and a
    /// swapped or misplaced chroma plane would not.
    fn colourful(w: usize, h: usize) -> Vec<u8> {
        (0..w * h)
            .flat_map(|i| {
                let (x, y) = ((i % w) as f32 / w as f32, (i / w) as f32 / h as f32);
                let ring = (((x - 0.5).hypot(y - 0.5) * 18.0).sin() * 50.0) as i32;
                let c = |v: f32| (v as i32 + ring).clamp(0, 255) as u8;
                [c(230.0 * (1.0 - x)), c(220.0 * y), c(40.0 + 200.0 * x)]
            })
            .collect()
    }

    /// A full decode by `jpeg-decoder`, as packed RGB.
    fn decode_rgb(jpeg: &[u8]) -> Rgb {
        let mut d = jpeg_decoder::Decoder::new(jpeg);
        let pixels = d.decode().expect("jpeg-decoder decodes");
        let info = d.info().expect("info");
        let pixels = match info.pixel_format {
            jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
            _ => pixels,
        };
        Rgb {
            pixels,
            width: usize::from(info.width),
            height: usize::from(info.height),
        }
    }

    fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        let sum: u64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| u64::from(x.abs_diff(y)))
            .sum();
        sum as f64 / a.len() as f64
    }

    /// Sources as cameras and files give them (4:2:0, 4:2:2, 4:4:4,
    /// grey) render at the exact size, and look like the source decoded
    /// whole and scaled down. With libjpeg-turbo, 4:2:0 and 4:2:2 take the
    /// planar decode, the others the RGB one.
    #[test]
    fn renditions_look_like_the_source_scaled_down() {
        let (w, h) = (640usize, 360usize);
        let rgb = colourful(w, h);
        let yuyv: Vec<u8> = rgb
            .chunks_exact(6)
            .flat_map(|p| {
                // BT.601 video range, chroma from the pair's first pixel.
                let luma = |q: &[u8]| {
                    let (r, g, b) = (f32::from(q[0]), f32::from(q[1]), f32::from(q[2]));
                    (16.0 + (0.257 * r + 0.504 * g + 0.098 * b)) as u8
                };
                let (r, g, b) = (f32::from(p[0]), f32::from(p[1]), f32::from(p[2]));
                let cb = (128.0 - 0.148 * r - 0.291 * g + 0.439 * b) as u8;
                let cr = (128.0 + 0.439 * r - 0.368 * g - 0.071 * b) as u8;
                [luma(&p[..3]), cb, luma(&p[3..]), cr]
            })
            .collect();
        let camera =
            RawImage::new(&yuyv, w as u16, h as u16, w * 2, RawFormat::Yuyv).expect("fits");
        let grey: Vec<u8> = rgb.chunks_exact(3).map(|p| p[1]).collect();
        let mut grey_jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut grey_jpeg, 90)
            .encode(&grey, w as u16, h as u16, jpeg_encoder::ColorType::Luma)
            .expect("encodes grey");
        let sources = [
            (
                "4:2:0",
                encode::encode_rgb(&rgb, w as u16, h as u16, 85).expect("4:2:0"),
                true,
            ),
            (
                "4:2:2",
                encode::encode_raw(&camera, 85, encode::Subsampling::Yuv422).expect("4:2:2"),
                true,
            ),
            (
                "4:4:4",
                encode::encode_rgb(&rgb, w as u16, h as u16, 95).expect("4:4:4"),
                false,
            ),
            ("grey", grey_jpeg, false),
        ];
        for (name, src, planar) in &sources {
            let whole = decode_rgb(src);
            for (tw, th) in [(320, 180), (160, 90), (80, 45), (200, 113), (427, 240)] {
                let taken = backend::decode_planes(src, tw, th).is_ok();
                if cfg!(feature = "turbojpeg") {
                    assert_eq!(taken, *planar, "{name} {tw}x{th}: planar decode");
                }
                let out = render(src, tw as u16, th as u16, 90).expect("renders");
                assert_eq!(size_of(&out.jpeg), (tw as u16, th as u16), "{name}");
                let got = decode_rgb(&out.jpeg);
                let want = resize(&whole, tw, th);
                let off = mean_abs_diff(&got.pixels, &want.pixels);
                assert!(off < 3.0, "{name} {tw}x{th}: mean difference {off:.2}");
            }
        }
    }

    #[test]
    fn area_average_keeps_flat_colour() {
        let src = Rgb {
            pixels: vec![200; 7 * 5 * 3],
            width: 7,
            height: 5,
        };
        let out = resize(&src, 3, 2);
        assert!(out.pixels.iter().all(|&p| p == 200), "{:?}", out.pixels);
        let up = resize(&src, 8, 6);
        assert_eq!(up.pixels.len(), 8 * 6 * 3);
    }
}
