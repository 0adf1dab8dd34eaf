//! One variant frame from one source JPEG: a decode at reduced scale, a
//! resize to the exact size when the decode's scale is not it, an encode.
//!
//! Most of a JPEG decode's cost past the entropy decoding is the inverse
//! DCT and colour conversion of every pixel; decoding at 1/2, 1/4 or 1/8
//! in the DCT domain skips most of it, so the decoder is asked for the
//! smallest scale that is still at least the target size:
//! - the pure-Rust build uses its own decoder ([`super::decode`]: baseline
//!   frames straight into Y'CbCr planes, reduced IDCT at 1/8, 1/4, 1/2),
//!   then resizes and encodes the planes with no colour conversion; other
//!   frames (progressive, CMYK, ...) go through `jpeg-decoder`'s scaled
//!   decode into RGB;
//! - with the `turbojpeg` feature, libjpeg-turbo's scaling factors
//!   (n/8 for n in 1..8).
//!
//! The result is resized by area averaging (only when the scale is not
//! already exact) and encoded by [`crate::encode`]. A raw camera picture
//! ([`render_raw`]) skips the decode: its planes are resized directly.

use super::decode;
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
    let jpeg = std::panic::catch_unwind(|| {
        if !cfg!(feature = "turbojpeg")
            && let Ok(decoded) = decode::decode(jpeg, tw, th)
        {
            let planes = Planes::from_decoded(&decoded, tw, th);
            return encode::encode_planes(&planes, quality).map_err(|e| e.to_string());
        }
        render_rgb(jpeg, tw, th, quality)
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

/// The general path: the backend's decoder into RGB (the pure-Rust build's
/// own decoder declined this frame: progressive, CMYK, ...), resize, encode.
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
    use jpeg_decoder::{Decoder, PixelFormat};

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
    use std::cell::RefCell;
    use turbojpeg::{Decompressor, Image, PixelFormat, ScalingFactor};

    thread_local! {
        /// One libjpeg-turbo handle per blocking-pool thread, reused.
        static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
    }

    /// Decodes with the smallest of libjpeg-turbo's scaling factors (n/8)
    /// that gives at least `width`×`height`, into RGB.
    pub(super) fn decode_at_least(jpeg: &[u8], width: usize, height: usize) -> Result<Rgb, String> {
        let failed = |e: turbojpeg::Error| format!("cannot decode the frame: {e}");
        DECOMPRESSOR.with(|cell| {
            let mut fresh = None;
            let mut borrowed = cell.try_borrow_mut();
            let slot = match borrowed.as_mut() {
                Ok(s) => &mut **s,
                Err(_) => &mut fresh,
            };
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
        use crate::source::yuv::RawFormat;
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
