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
    // The sizes show both backends make alike JPEGs (same tables, same
    // subsampling), so the timings compare like with like.
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
    divan::main();
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
