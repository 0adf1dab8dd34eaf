//! [`Planes`]: a picture as full-range Y', Cb and Cr planes at 4:2:0, the
//! form a variant frame is encoded from, and the ways to make it at an
//! exact size: from a decoded JPEG's planes ([`super::decode`]) or from a
//! raw camera picture (YUYV/NV12), resizing each plane by area averaging.
//!
//! Y' is padded to an even width and height (the last column and row
//! repeated) so that chroma covers whole 2x2 blocks, as libjpeg-turbo's
//! planar input wants.

use super::decode::{DecodedPlanes, Plane};
use crate::encode::{split_nv12, split_yuyv};
use crate::source::yuv::{RawFormat, RawImage};

/// A 4:2:0 full-range Y'CbCr picture.
pub struct Planes {
    /// The picture size.
    pub width: usize,
    pub height: usize,
    /// `stride` x `rows` (both even, at least the picture size).
    pub y: Vec<u8>,
    pub stride: usize,
    pub rows: usize,
    /// `stride / 2` x `rows / 2` each.
    pub cb: Vec<u8>,
    pub cr: Vec<u8>,
}

impl Planes {
    /// The decoded picture resized to `width`x`height`.
    pub fn from_decoded(src: &DecodedPlanes, width: usize, height: usize) -> Planes {
        let mut out = Planes::blank(width, height);
        let Some(luma) = src.planes.first() else {
            return out;
        };
        resize_into(luma, &mut out.y, out.stride, out.rows, width, height);
        if let [_, cb, cr] = &src.planes[..] {
            let (cw, ch) = (out.stride / 2, out.rows / 2);
            let (tw, th) = (width.div_ceil(2), height.div_ceil(2));
            resize_into(cb, &mut out.cb, cw, ch, tw, th);
            resize_into(cr, &mut out.cr, cw, ch, tw, th);
        }
        out
    }

    /// The decoded picture at `width`x`height`, its planes taken as they
    /// are when a decode at an exact scale already gave them in this
    /// layout (4:2:0, rows of the even width, even rows): no copy. Else
    /// resized as by [`Planes::from_decoded`].
    pub fn from_decoded_owned(src: DecodedPlanes, width: usize, height: usize) -> Planes {
        if !Planes::fits_as_is(&src, width, height) {
            return Planes::from_decoded(&src, width, height);
        }
        let Ok([y, cb, cr]) = <[Plane; 3]>::try_from(src.planes) else {
            // `fits_as_is` saw three planes.
            return Planes::blank(width, height);
        };
        Planes {
            width,
            height,
            y: y.data,
            stride: width.next_multiple_of(2),
            rows: height.next_multiple_of(2),
            cb: cb.data,
            cr: cr.data,
        }
    }

    /// Whether `src`'s planes are already a `width`x`height` [`Planes`]'.
    fn fits_as_is(src: &DecodedPlanes, width: usize, height: usize) -> bool {
        let (stride, rows) = (width.next_multiple_of(2), height.next_multiple_of(2));
        let chroma = |c: &Plane| {
            (c.width, c.height) == (width.div_ceil(2), height.div_ceil(2))
                && c.stride == stride / 2
                && c.data.len() >= stride / 2 * rows / 2
        };
        let [y, cb, cr] = &src.planes[..] else {
            return false;
        };
        width > 0
            && height > 0
            && (src.width, src.height) == (width, height)
            && (y.width, y.height, y.stride) == (width, height, stride)
            && y.data.len() >= stride * rows
            && chroma(cb)
            && chroma(cr)
    }

    /// A camera picture resized to `width`x`height`: its video range is
    /// stretched to JPEG's full range, never converted through RGB.
    pub fn from_raw(img: &RawImage<'_>, width: usize, height: usize) -> Planes {
        let (w, h) = (usize::from(img.width), usize::from(img.height));
        // The encoder's own split, into planes padded to even sizes.
        let (pw, cw) = (w.next_multiple_of(2), w.div_ceil(2));
        let (lh, ch) = match img.format {
            RawFormat::Yuyv => (h, h),
            RawFormat::Nv12 => (h.next_multiple_of(2), h.div_ceil(2)),
        };
        let mut luma = Plane {
            data: vec![0; pw * lh],
            stride: pw,
            width: w,
            height: h,
        };
        let chroma = || Plane {
            data: vec![128; cw * ch],
            stride: cw,
            width: cw,
            height: ch,
        };
        let (mut cb, mut cr) = (chroma(), chroma());
        match img.format {
            RawFormat::Yuyv => split_yuyv(img, &mut luma.data, &mut cb.data, &mut cr.data),
            RawFormat::Nv12 => split_nv12(img, &mut luma.data, &mut cb.data, &mut cr.data),
        }
        let decoded = DecodedPlanes {
            planes: vec![luma, cb, cr],
            width: w,
            height: h,
        };
        Planes::from_decoded(&decoded, width, height)
    }

    /// Mid-grey planes for a `width`x`height` picture.
    fn blank(width: usize, height: usize) -> Planes {
        let (width, height) = (width.max(1), height.max(1));
        let (stride, rows) = (width.next_multiple_of(2), height.next_multiple_of(2));
        Planes {
            width,
            height,
            y: vec![128; stride * rows],
            stride,
            rows,
            cb: vec![128; stride * rows / 4],
            cr: vec![128; stride * rows / 4],
        }
    }
}

/// Resizes `src` to `width`x`height` into `out` (`stride` x `rows`,
/// padding past the picture filled by repeating the last column and row).
fn resize_into(
    src: &Plane,
    out: &mut [u8],
    stride: usize,
    rows: usize,
    width: usize,
    height: usize,
) {
    if src.width == 0 || src.height == 0 || width == 0 || height == 0 {
        return;
    }
    if (src.width, src.height) == (width, height) {
        for (y, row) in out.chunks_exact_mut(stride).take(height).enumerate() {
            row[..width].copy_from_slice(&src.data[y * src.stride..y * src.stride + width]);
        }
    } else if (src.width, src.height) == (2 * width, 2 * height) {
        // Exactly half (the smaller variant made from the larger one's
        // decode): each sample the rounded mean of a 2x2 square, as the
        // general path computes it, without its weights.
        for (y, row) in out.chunks_exact_mut(stride).take(height).enumerate() {
            let top = &src.data[2 * y * src.stride..][..2 * width];
            let bottom = &src.data[(2 * y + 1) * src.stride..][..2 * width];
            for ((px, t), b) in row[..width]
                .iter_mut()
                .zip(top.chunks_exact(2))
                .zip(bottom.chunks_exact(2))
            {
                let sum = u16::from(t[0]) + u16::from(t[1]) + u16::from(b[0]) + u16::from(b[1]);
                *px = ((sum + 2) >> 2) as u8;
            }
        }
    } else {
        average_into(src, out, stride, width, height);
    }
    // Padding: repeat the last column, then the last row.
    if stride > width {
        for row in out.chunks_exact_mut(stride).take(height) {
            let last = row[width - 1];
            row[width..].fill(last);
        }
    }
    if rows > height {
        let (done, pad) = out.split_at_mut(stride * height);
        let last = &done[stride * (height - 1)..];
        for row in pad.chunks_exact_mut(stride) {
            row.copy_from_slice(last);
        }
    }
}

/// The general resize: each output sample the area average of the input
/// samples it covers (separable, weights in 1/256ths).
fn average_into(src: &Plane, out: &mut [u8], stride: usize, width: usize, height: usize) {
    let h_taps = taps(src.width, width);
    let v_taps = taps(src.height, height);
    // Horizontal pass: src.height rows of `width` samples.
    let mut across = vec![0u32; src.height * width];
    for (y, line) in across.chunks_exact_mut(width).enumerate() {
        let row = &src.data[y * src.stride..y * src.stride + src.width];
        for (acc, tap) in line.iter_mut().zip(&h_taps) {
            *acc = tap
                .weights
                .iter()
                .zip(&row[tap.first..])
                .map(|(&w, &s)| w * u32::from(s))
                .sum();
        }
    }
    for (tap, row) in v_taps.iter().zip(out.chunks_exact_mut(stride)) {
        for (x, px) in row[..width].iter_mut().enumerate() {
            let sum: u64 = tap
                .weights
                .iter()
                .enumerate()
                .map(|(i, &w)| u64::from(w) * u64::from(across[(tap.first + i) * width + x]))
                .sum();
            // Weights are in 1/256ths in each direction.
            *px = ((sum + 32768) >> 16).min(255) as u8;
        }
    }
}

/// The input samples one output sample averages: from `first`, with
/// weights in 1/256ths summing to 256.
struct Tap {
    first: usize,
    weights: Vec<u32>,
}

/// For each of `to` output positions, the input positions of `from` it
/// covers. Enlarging (a side rounded down by a sample) takes the nearest.
fn taps(from: usize, to: usize) -> Vec<Tap> {
    let ratio = from as f64 / to as f64;
    (0..to)
        .map(|o| {
            if ratio <= 1.0 {
                let i = (((o as f64 + 0.5) * ratio) as usize).min(from - 1);
                return Tap {
                    first: i,
                    weights: vec![256],
                };
            }
            let (start, end) = (o as f64 * ratio, ((o + 1) as f64 * ratio).min(from as f64));
            let first = start.floor() as usize;
            let mut weights = Vec::new();
            let mut i = first;
            while (i as f64) < end && i < from {
                let cover = end.min(i as f64 + 1.0) - start.max(i as f64);
                weights.push((cover / ratio * 256.0).round() as u32);
                i += 1;
            }
            // Rounding may leave the sum off 256 by one or two: the
            // largest weight takes the difference, so flat stays flat.
            let sum: u32 = weights.iter().sum();
            if let Some(big) = weights.iter_mut().max() {
                *big = (*big + 256).saturating_sub(sum);
            }
            Tap { first, weights }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(w: usize, h: usize, value: impl Fn(usize, usize) -> u8) -> Plane {
        Plane {
            data: (0..w * h).map(|i| value(i % w, i / w)).collect(),
            stride: w,
            width: w,
            height: h,
        }
    }

    #[test]
    fn flat_stays_flat_at_any_size() {
        let src = plane(37, 23, |_, _| 200);
        for (w, h) in [(10, 7), (37, 23), (40, 25), (1, 1), (19, 12)] {
            let (stride, rows) = (w + w % 2, h + h % 2);
            let mut out = vec![0; stride * rows];
            resize_into(&src, &mut out, stride, rows, w, h);
            assert!(out.iter().all(|&p| p == 200), "{w}x{h}: {out:?}");
        }
    }

    #[test]
    fn halving_averages_pairs() {
        let src = plane(4, 2, |x, y| (x * 10 + y * 100) as u8);
        let mut out = vec![0; 2];
        resize_into(&src, &mut out, 2, 1, 2, 1);
        // (0+10+100+110)/4 = 55, (20+30+120+130)/4 = 75
        assert_eq!(out, [55, 75]);
    }

    #[test]
    fn the_fast_halving_is_the_general_average() {
        let noise: Vec<u8> = (0..64 * 34u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let src = plane(64, 34, |x, y| noise[y * 64 + x]);
        let (mut fast, mut general) = (vec![0; 32 * 17], vec![0; 32 * 17]);
        resize_into(&src, &mut fast, 32, 17, 32, 17);
        average_into(&src, &mut general, 32, 32, 17);
        assert_eq!(fast, general);
    }

    #[test]
    fn raw_pictures_become_full_range_planes() {
        // YUYV 6x4, video-range white luma and neutral chroma.
        let yuyv: Vec<u8> = [235, 128, 235, 128].repeat(3 * 4);
        let img = RawImage::new(&yuyv, 6, 4, 12, RawFormat::Yuyv).expect("fits");
        let p = Planes::from_raw(&img, 3, 2);
        assert_eq!((p.width, p.height, p.stride, p.rows), (3, 2, 4, 2));
        assert!(p.y.iter().all(|&v| v == 255));
        assert!(p.cb.iter().chain(&p.cr).all(|&v| v == 128));
        // NV12 5x3 (odd): black luma, chroma at the video range's ends.
        let mut nv12 = vec![16u8; 6 * 3];
        nv12.extend([16, 240].repeat(3 * 2));
        let img = RawImage::new(&nv12, 5, 3, 6, RawFormat::Nv12).expect("fits");
        let p = Planes::from_raw(&img, 5, 3);
        assert_eq!((p.stride, p.rows), (6, 4));
        assert!(p.y.iter().all(|&v| v == 0));
        assert!(p.cb.iter().all(|&v| v == 0) && p.cr.iter().all(|&v| v == 255));
    }
}
