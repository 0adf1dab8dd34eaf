//! JPEG encoding throughput at 1280x720, in pixels per second ("Mitem/s" =
//! megapixels per second): the test pattern (RGB, as the `pattern` source
//! and the offline placeholder encode it) and raw camera frames (YUYV and
//! NV12, as the `v4l2` source encodes them), through whichever backend this
//! build uses.
//!
//! ```sh
//! cargo bench --bench encode                        # pure Rust (RGB: jpeg-encoder)
//! cargo bench --bench encode --features turbojpeg   # libjpeg-turbo
//! ```
//! Figures are kept in `bench/ENCODE.md`.
//!
//! Sizes are printed first: the benchmark's pictures, and YUYV at 4:2:0 at
//! two sizes for the camera-like picture and for a noisy photo-like one,
//! each encoded twice in a row (the same bytes, unless the backend's
//! output depends on what it encoded before).

use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use mjpegd::canvas::Canvas;
use mjpegd::encode::{self, Subsampling};
use mjpegd::source::PatternSpec;
use mjpegd::source::pattern::TestPattern;
use mjpegd::source::yuv::{RawFormat, RawImage};
use std::time::SystemTime;

const W: u16 = 1280;
const H: u16 = 720;
/// mjpegd's default `--quality`.
const QUALITY: u8 = 80;
const PIXELS: usize = W as usize * H as usize;

fn main() {
    // The sizes show both backends make alike JPEGs (same subsampling,
    // same quantization), so the timings compare like with like.
    let w = usize::from(W);
    let size = |r: Result<_, encode::EncodeError>| r.map_or(0, |j: Vec<u8>| j.len());
    println!(
        "JPEG backend: {}; {W}x{H} q{QUALITY} JPEG bytes: pattern {}, yuyv {}, yuyv 4:2:0 {}, nv12 {}",
        encode::BACKEND,
        pattern().encode_jpeg(QUALITY).map_or(0, |j| j.len()),
        size(raw(&yuyv(), w * 2, RawFormat::Yuyv)),
        size(raw_at(&yuyv(), w * 2, RawFormat::Yuyv, Subsampling::Yuv420)),
        size(raw(&nv12(), w, RawFormat::Nv12)),
    );
    // Each picture encoded twice in a row: an encoder that learns from the
    // picture before would show it here.
    for case in YUYV_420_CASES {
        let (w, h, picture) = parse_case(case);
        let data = yuyv_picture(w, h, picture);
        let img = RawImage::new(&data, w as u16, h as u16, w * 2, RawFormat::Yuyv)
            .expect("fits the geometry");
        let first = size(img.encode(QUALITY, Subsampling::Yuv420));
        let next = size(img.encode(QUALITY, Subsampling::Yuv420));
        println!("yuyv 4:2:0 q{QUALITY} {case}: JPEG bytes first {first}, next {next}");
    }
    divan::main();
}

/// YUYV pictures encoded at 4:2:0: "PICTURE WxH", the picture `camera`
/// (the benchmark's camera picture) or `photo` (a noisy photo-like one).
const YUYV_420_CASES: [&str; 4] = [
    "camera 640x480",
    "camera 1280x720",
    "photo 640x480",
    "photo 1280x720",
];

/// A picture: video-range Y'CbCr at (x, y) of a `w` x `h` one.
type Picture = fn(usize, usize, usize, usize) -> (u8, u8, u8);

fn parse_case(case: &str) -> (usize, usize, Picture) {
    let (name, size) = case.split_once(' ').expect("PICTURE WxH");
    let (w, h) = size.split_once('x').expect("WxH");
    let picture = match name {
        "camera" => scaled_camera_pixel,
        _ => photo_pixel,
    };
    (
        w.parse().expect("width"),
        h.parse().expect("height"),
        picture,
    )
}

/// A `w` x `h` YUYV picture of `pixel`.
fn yuyv_picture(w: usize, h: usize, pixel: Picture) -> Vec<u8> {
    let mut raw = vec![0u8; w * 2 * h];
    for y in 0..h {
        for x in (0..w).step_by(2) {
            let (y0, cb, cr) = pixel(x, y, w, h);
            let (y1, _, _) = pixel(x + 1, y, w, h);
            raw[(y * w + x) * 2..][..4].copy_from_slice(&[y0, cb, y1, cr]);
        }
    }
    raw
}

/// YUYV at 4:2:0 for each of [`YUYV_420_CASES`].
#[divan::bench(args = YUYV_420_CASES)]
fn yuyv_420(bencher: Bencher, case: &str) {
    let (w, h, picture) = parse_case(case);
    let raw = yuyv_picture(w, h, picture);
    bencher.counter(ItemsCount::new(w * h)).bench(|| {
        RawImage::new(black_box(&raw), w as u16, h as u16, w * 2, RawFormat::Yuyv)
            .and_then(|img| {
                img.encode(QUALITY, Subsampling::Yuv420)
                    .map_err(|e| e.to_string())
            })
            .expect("encodes")
    });
}

fn pattern() -> Canvas {
    let spec = PatternSpec {
        width: W,
        height: H,
        fps: 30.0,
    };
    TestPattern::new(&spec)
        .render(42, SystemTime::UNIX_EPOCH)
        .clone()
}

fn yuyv() -> Vec<u8> {
    let (w, h) = (usize::from(W), usize::from(H));
    let mut raw = vec![0u8; w * 2 * h];
    for y in 0..h {
        for x in (0..w).step_by(2) {
            let (y0, cb, cr) = camera_pixel(x, y);
            let (y1, _, _) = camera_pixel(x + 1, y);
            raw[(y * w + x) * 2..][..4].copy_from_slice(&[y0, cb, y1, cr]);
        }
    }
    raw
}

fn nv12() -> Vec<u8> {
    let (w, h) = (usize::from(W), usize::from(H));
    let mut raw = vec![0u8; w * (h + h / 2)];
    for y in 0..h {
        for x in 0..w {
            let (luma, cb, cr) = camera_pixel(x, y);
            raw[y * w + x] = luma;
            if x.is_multiple_of(2) && y.is_multiple_of(2) {
                raw[(h + y / 2) * w + x..][..2].copy_from_slice(&[cb, cr]);
            }
        }
    }
    raw
}

#[divan::bench]
fn pattern_rgb(bencher: Bencher) {
    let canvas = pattern();
    bencher
        .counter(ItemsCount::new(PIXELS))
        .bench(|| black_box(&canvas).encode_jpeg(QUALITY).expect("encodes"));
}

/// A camera picture of W x H with `stride`-byte rows, encoded.
fn raw(data: &[u8], stride: usize, format: RawFormat) -> Result<Vec<u8>, encode::EncodeError> {
    raw_at(data, stride, format, Subsampling::Yuv422)
}

/// As [`raw`], at the chosen chroma subsampling.
fn raw_at(
    data: &[u8],
    stride: usize,
    format: RawFormat,
    subsampling: Subsampling,
) -> Result<Vec<u8>, encode::EncodeError> {
    let img = RawImage::new(data, W, H, stride, format).map_err(encode::EncodeError::BadInput)?;
    img.encode(QUALITY, subsampling)
}

fn raw_jpeg(data: &[u8], stride: usize, format: RawFormat) -> Vec<u8> {
    raw(data, stride, format).expect("encodes")
}

#[divan::bench]
fn camera_yuyv(bencher: Bencher) {
    let raw = yuyv();
    let stride = usize::from(W) * 2;
    bencher
        .counter(ItemsCount::new(PIXELS))
        .bench(|| raw_jpeg(black_box(&raw), stride, RawFormat::Yuyv));
}

/// YUYV encoded at 4:2:0, as the `v4l2` source does by default.
#[divan::bench]
fn camera_yuyv_420(bencher: Bencher) {
    let raw = yuyv();
    let stride = usize::from(W) * 2;
    bencher.counter(ItemsCount::new(PIXELS)).bench(|| {
        raw_at(
            black_box(&raw),
            stride,
            RawFormat::Yuyv,
            Subsampling::Yuv420,
        )
        .expect("encodes")
    });
}

#[divan::bench]
fn camera_nv12(bencher: Bencher) {
    let raw = nv12();
    bencher
        .counter(ItemsCount::new(PIXELS))
        .bench(|| raw_jpeg(black_box(&raw), usize::from(W), RawFormat::Nv12));
}

/// [`camera_pixel`]'s picture stretched over `w` x `h`.
fn scaled_camera_pixel(x: usize, y: usize, w: usize, h: usize) -> (u8, u8, u8) {
    camera_pixel(x * 1280 / w, y * 720 / h)
}

/// A fixed hash of a position and a seed: reproducible pseudo-random bits.
fn hash(x: usize, y: usize, seed: u32) -> u32 {
    let mut n = (x as u32).wrapping_mul(0x9e37_79b9)
        ^ (y as u32).wrapping_mul(0x85eb_ca6b)
        ^ seed.wrapping_mul(0xc2b2_ae35);
    n ^= n >> 15;
    n = n.wrapping_mul(0x2c1b_3c6d);
    n ^= n >> 12;
    n
}

/// Smooth value noise in -1..1: random values on a grid of `cell` pixels,
/// blended bilinearly.
fn value_noise(x: usize, y: usize, cell: usize, seed: u32) -> f32 {
    let (gx, gy) = (x / cell, y / cell);
    let (fx, fy) = (
        (x % cell) as f32 / cell as f32,
        (y % cell) as f32 / cell as f32,
    );
    let at = |i: usize, j: usize| (hash(i, j, seed) >> 8) as f32 / (1u32 << 23) as f32 - 1.0;
    let top = at(gx, gy) * (1.0 - fx) + at(gx + 1, gy) * fx;
    let bottom = at(gx, gy + 1) * (1.0 - fx) + at(gx + 1, gy + 1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// A noisy photo-like video-range picture: texture at several scales
/// (value noise, octaves of 128 down to 4 pixels), a few hard edges, and
/// sensor noise of about ±6 levels on luma, less on chroma.
fn photo_pixel(x: usize, y: usize, w: usize, h: usize) -> (u8, u8, u8) {
    // The same scene at any size: positions in 1280x720 units.
    let (sx, sy) = (x * 1280 / w, y * 720 / h);
    let mut texture = 0.0;
    let mut amplitude = 48.0;
    for (octave, cell) in [128usize, 64, 32, 16, 8, 4].into_iter().enumerate() {
        texture += amplitude * value_noise(sx, sy, cell, octave as u32);
        amplitude *= 0.55;
    }
    // A bright window and a dark doorway: hard edges as in a room.
    let window = (300..560).contains(&sx) && (120..330).contains(&sy);
    let door = (800..950).contains(&sx) && sy >= 250;
    let base = if window {
        190.0
    } else if door {
        50.0
    } else {
        110.0 + 40.0 * sy as f32 / 720.0
    };
    let sensor = (hash(x, y, 99) % 13) as f32 - 6.0;
    let luma = base + texture + sensor;
    let cb = 128.0 + 20.0 * value_noise(sx, sy, 96, 7) + sensor / 3.0;
    let cr =
        128.0 + 25.0 * value_noise(sx, sy, 80, 8) - sensor / 3.0 + if window { -12.0 } else { 6.0 };
    (
        luma.clamp(16.0, 235.0) as u8,
        cb.clamp(16.0, 240.0) as u8,
        cr.clamp(16.0, 240.0) as u8,
    )
}

/// A camera-like video-range Y'CbCr picture: smooth gradients and large
/// patches with a little sensor noise on top, so the entropy coder does the
/// work it does on real footage (a noiseless synthetic picture compresses
/// unrealistically well).
fn camera_pixel(x: usize, y: usize) -> (u8, u8, u8) {
    // A fixed hash of the position stands in for noise (reproducible runs).
    let mut n = (x as u32).wrapping_mul(0x9e37_79b9) ^ (y as u32).wrapping_mul(0x85eb_ca6b);
    n ^= n >> 15;
    n = n.wrapping_mul(0x2c1b_3c6d);
    n ^= n >> 12;
    let noise = (n % 9) as i32 - 4;
    let luma = 16
        + (x * 150 / 1280 + y * 60 / 720) as i32
        + if (x / 160 + y / 120).is_multiple_of(2) {
            0
        } else {
            30
        };
    let cb = 128 + (x as i32 * 60 / 1280) - 30;
    let cr = 128 + (y as i32 * 60 / 720) - 30;
    (
        (luma + noise).clamp(16, 235) as u8,
        (cb + noise / 2).clamp(16, 240) as u8,
        (cr - noise / 2).clamp(16, 240) as u8,
    )
}
