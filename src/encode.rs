//! JPEG encoding: the one place mjpegd turns pixels into JPEG.
//!
//! Two kinds of input reach it: RGB canvases (the test pattern and the
//! "NO SIGNAL" placeholder, see [`crate::canvas`]) and raw camera pictures
//! in Y'CbCr (YUYV 4:2:2 and NV12 4:2:0, see [`crate::source::yuv`]).
//!
//! Two backends sit behind the same functions:
//! - by default pure Rust, so a plain `cargo build` needs nothing but Rust:
//!   mjpegd's own baseline encoder ([`baseline`]) for Y'CbCr input
//!   (renditions, camera pictures), the `jpeg-encoder` crate for RGB;
//! - with the cargo feature `turbojpeg`, libjpeg-turbo (compiled from
//!   source by the `turbojpeg` crate; needs cmake and nasm at build time),
//!   several times faster (figures in `bench/ENCODE.md`).
//!
//! Both produce baseline JFIF with the standard quantization tables and
//! Huffman tables built for each picture (6-20% smaller frames than the
//! standard Huffman tables at the same quality). The own encoder builds
//! them while it codes (see [`baseline`]); what jpeg-encoder and
//! libjpeg-turbo write with the standard tables is re-coded with fitted
//! ones ([`recode`]), lossless and cheaper than libjpeg-turbo's own
//! option, except renditions under libjpeg-turbo, whose budget is CPU.
//!
//! YUYV camera pictures (4:2:2) are encoded 4:2:0 by default (two camera
//! rows' chroma averaged): what libjpeg's defaults, µStreamer and
//! mjpg-streamer produce, a quarter fewer blocks to code and smaller
//! frames; [`Subsampling::Yuv422`] keeps the camera's chroma whole. NV12
//! (4:2:0) stays 4:2:0: no detail is invented. Cameras use the
//! video range (Y' 16..235, Cb/Cr 16..240) and JFIF the full range, both
//! with the BT.601 matrix, so samples are only stretched, never converted
//! through RGB.

// mjpegd's own encoder: the pure-Rust backend's; libjpeg-turbo replaces it.
#[cfg(not(feature = "turbojpeg"))]
mod baseline;
#[cfg(not(feature = "turbojpeg"))]
mod dct;
// Huffman coding with tables built for each picture: the own encoder's,
// and re-coding what the other encoders wrote with standard tables.
mod bits;
mod huffman;
mod recode;
#[cfg(any(test, not(feature = "turbojpeg")))]
mod tables;

use crate::rendition::planes::Planes;
use crate::source::yuv::{RawFormat, RawImage};
use std::fmt;

/// Which encoder this build uses: `"mjpegd"` (pure Rust: its own for
/// Y'CbCr, `jpeg-encoder` for RGB) or `"libjpeg-turbo"`.
pub const BACKEND: &str = if cfg!(feature = "turbojpeg") {
    "libjpeg-turbo"
} else {
    "mjpegd"
};

/// Why a picture could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The pixel buffer does not fit the geometry it came with.
    BadInput(String),
    /// The encoder library failed.
    Encoder(String),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BadInput(msg) => write!(f, "bad picture: {msg}"),
            EncodeError::Encoder(msg) => write!(f, "JPEG encoder: {msg}"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Encodes packed RGB (3 bytes per pixel, rows top to bottom, no padding).
/// Chroma is subsampled 4:2:0 below quality 90, kept whole from 90 up.
pub fn encode_rgb(
    pixels: &[u8],
    width: u16,
    height: u16,
    quality: u8,
) -> Result<Vec<u8>, EncodeError> {
    let needed = usize::from(width) * usize::from(height) * 3;
    if width == 0 || height == 0 || pixels.len() < needed {
        return Err(EncodeError::BadInput(format!(
            "RGB {width}x{height} needs {needed} bytes, got {}",
            pixels.len()
        )));
    }
    backend::rgb(&pixels[..needed], width, height, quality.clamp(1, 100))
}

/// The chroma resolution of JPEGs encoded from 4:2:2 camera pictures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Subsampling {
    /// Chroma at half width and half height.
    #[default]
    Yuv420,
    /// Chroma at half width and full height, as YUYV cameras deliver it.
    Yuv422,
}

impl Subsampling {
    /// The accepted spellings, for messages.
    pub const NAMES: &str = "4:2:0 or 4:2:2";

    /// `4:2:0`/`420` or `4:2:2`/`422`.
    pub fn parse(s: &str) -> Option<Subsampling> {
        match s.trim() {
            "4:2:0" | "420" => Some(Subsampling::Yuv420),
            "4:2:2" | "422" => Some(Subsampling::Yuv422),
            _ => None,
        }
    }
}

impl fmt::Display for Subsampling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Subsampling::Yuv420 => "4:2:0",
            Subsampling::Yuv422 => "4:2:2",
        })
    }
}

/// Encodes a video-range camera picture (checked against its geometry
/// when it was made): YUYV at `subsampling`, NV12 at its own 4:2:0.
pub fn encode_raw(
    img: &RawImage<'_>,
    quality: u8,
    subsampling: Subsampling,
) -> Result<Vec<u8>, EncodeError> {
    let half_height = img.format == RawFormat::Nv12 || subsampling == Subsampling::Yuv420;
    backend::yuv(img, quality.clamp(1, 100), half_height)
}

/// Encodes full-range 4:2:0 planes (a rendition's picture) at 4:2:0:
/// no colour conversion and no chroma downsampling.
pub fn encode_planes(planes: &Planes, quality: u8) -> Result<Vec<u8>, EncodeError> {
    let (w, h) = (planes.width, planes.height);
    let fits = w > 0
        && h > 0
        && planes.stride >= w
        && planes.rows >= h
        && planes.stride.is_multiple_of(2)
        && planes.rows.is_multiple_of(2)
        && planes.y.len() >= planes.stride * planes.rows
        && planes.cb.len() >= planes.stride * planes.rows / 4
        && planes.cr.len() >= planes.stride * planes.rows / 4;
    let (Ok(width), Ok(height)) = (u16::try_from(w), u16::try_from(h)) else {
        return Err(EncodeError::BadInput(format!("planes {w}x{h} too large")));
    };
    if !fits {
        return Err(EncodeError::BadInput(format!("planes do not fit {w}x{h}")));
    }
    backend::planes(planes, width, height, quality.clamp(1, 100))
}

/// Video-range Y' (16..235) to full range (0..255).
pub(crate) static Y_FULL: [u8; 256] = stretch(16, 219);
/// Video-range Cb/Cr (16..240, centred on 128) to full range.
pub(crate) static C_FULL: [u8; 256] = stretch(16, 224);

/// The table mapping `lo..lo+span` linearly onto 0..255, clamped.
const fn stretch(lo: i32, span: i32) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let v = ((i as i32 - lo) * 255 + span / 2) / span;
        t[i] = if v < 0 {
            0
        } else if v > 255 {
            255
        } else {
            v as u8
        };
        i += 1;
    }
    t
}

/// Runs `f` with this thread's `T` from `key`, kept from call to call so an
/// encode allocates nothing once warm (camera frames and renditions are
/// encoded on pools of threads; renditions' libjpeg-turbo decoder is kept
/// the same way). Encoders and decoders never re-enter, but if the value
/// were already borrowed `f` would get a fresh one: a borrow never panics.
pub(crate) fn with_reused<T: Default + 'static, R>(
    key: &'static std::thread::LocalKey<std::cell::RefCell<T>>,
    f: impl FnOnce(&mut T) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut kept) => f(&mut kept),
        Err(_) => f(&mut T::default()),
    })
}

/// The row lengths of the planes a camera picture is split into (each
/// plane holds whole rows of its width): luma padded to an even width (and
/// to an even height at 4:2:0, `half_height`) by repeating the last column
/// and row, so that chroma covers whole pixel pairs, as the splitters below
/// write it and both encoders want it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SplitWidths {
    pub luma: usize,
    pub chroma: usize,
}

/// Splits `img` into Y', Cb and Cr planes in `planes` (resized to fit):
/// chroma at half width, and at half height too when `half_height`.
pub(crate) fn split_planes(
    img: &RawImage<'_>,
    half_height: bool,
    planes: &mut [Vec<u8>; 3],
) -> SplitWidths {
    let (w, h) = (usize::from(img.width), usize::from(img.height));
    let luma_width = w.next_multiple_of(2);
    let (luma_height, chroma_height) = if half_height {
        let ph = h.next_multiple_of(2);
        (ph, ph / 2)
    } else {
        (h, h)
    };
    let chroma_width = luma_width / 2;
    let [y, u, v] = planes;
    y.resize(luma_width * luma_height, 0);
    u.resize(chroma_width * chroma_height, 0);
    v.resize(chroma_width * chroma_height, 0);
    match img.format {
        RawFormat::Yuyv if half_height => split_yuyv_420(img, y, u, v),
        RawFormat::Yuyv => split_yuyv(img, y, u, v),
        RawFormat::Nv12 => split_nv12(img, y, u, v),
    }
    SplitWidths {
        luma: luma_width,
        chroma: chroma_width,
    }
}

/// YUYV rows into planar 4:2:2 (`y`: even width × height; `u`, `v`:
/// half width × height). Rows run whole pixel pairs (checked by
/// `RawImage::new`), so an odd width's padding column is the camera's own.
pub(crate) fn split_yuyv(img: &RawImage<'_>, y: &mut [u8], u: &mut [u8], v: &mut [u8]) {
    let pairs = usize::from(img.width).div_ceil(2);
    let rows = img.data.chunks(img.stride);
    let planes = y
        .chunks_exact_mut(pairs * 2)
        .zip(u.chunks_exact_mut(pairs))
        .zip(v.chunks_exact_mut(pairs));
    for (row, ((yr, ur), vr)) in rows.zip(planes) {
        let src = row.chunks_exact(4);
        for (((px, yy), uu), vv) in src
            .zip(yr.chunks_exact_mut(2))
            .zip(ur.iter_mut())
            .zip(vr.iter_mut())
        {
            yy[0] = Y_FULL[usize::from(px[0])];
            *uu = C_FULL[usize::from(px[1])];
            yy[1] = Y_FULL[usize::from(px[2])];
            *vv = C_FULL[usize::from(px[3])];
        }
    }
}

/// NV12 into planar 4:2:0 (`y`: even width × even height; `u`, `v`: a
/// quarter of that), repeating the last column and row into padding.
pub(crate) fn split_nv12(img: &RawImage<'_>, y: &mut [u8], u: &mut [u8], v: &mut [u8]) {
    let (w, h) = (usize::from(img.width), usize::from(img.height));
    let pw = w.next_multiple_of(2);
    let cw = pw / 2;
    let (luma, chroma) = img.data.split_at(img.stride * h);
    for (yr, row) in y.chunks_exact_mut(pw).zip(luma.chunks(img.stride)) {
        for (d, s) in yr.iter_mut().zip(&row[..w]) {
            *d = Y_FULL[usize::from(*s)];
        }
        if pw > w {
            yr[w] = yr[w - 1];
        }
    }
    if y.len() > pw * h {
        let (done, pad) = y.split_at_mut(pw * h);
        pad.copy_from_slice(&done[pw * (h - 1)..]);
    }
    let planes = u.chunks_exact_mut(cw).zip(v.chunks_exact_mut(cw));
    for (row, (ur, vr)) in chroma.chunks(img.stride).zip(planes) {
        for ((cbcr, uu), vv) in row.chunks_exact(2).zip(ur.iter_mut()).zip(vr.iter_mut()) {
            *uu = C_FULL[usize::from(cbcr[0])];
            *vv = C_FULL[usize::from(cbcr[1])];
        }
    }
}

/// YUYV rows into planar 4:2:0 (`y`: even width × even height; `u`,
/// `v`: half width × half height, each the mean of two camera rows),
/// repeating the last row into the padding of an odd height.
pub(crate) fn split_yuyv_420(img: &RawImage<'_>, y: &mut [u8], u: &mut [u8], v: &mut [u8]) {
    let (pairs, h) = (usize::from(img.width).div_ceil(2), usize::from(img.height));
    // `RawImage::new` checked that every row holds `pairs` whole pairs.
    let row = |i: usize| &img.data[i.min(h - 1) * img.stride..][..pairs * 4];
    for (i, yr) in y.chunks_exact_mut(pairs * 2).enumerate() {
        for (px, yy) in row(i).chunks_exact(4).zip(yr.chunks_exact_mut(2)) {
            yy[0] = Y_FULL[usize::from(px[0])];
            yy[1] = Y_FULL[usize::from(px[2])];
        }
    }
    let planes = u.chunks_exact_mut(pairs).zip(v.chunks_exact_mut(pairs));
    for (i, (ur, vr)) in planes.enumerate() {
        let (top, bottom) = (row(2 * i).chunks_exact(4), row(2 * i + 1).chunks_exact(4));
        for (((a, b), uu), vv) in top.zip(bottom).zip(ur.iter_mut()).zip(vr.iter_mut()) {
            *uu = C_FULL[(usize::from(a[1]) + usize::from(b[1])).div_ceil(2)];
            *vv = C_FULL[(usize::from(a[3]) + usize::from(b[3])).div_ceil(2)];
        }
    }
}

/// The pure-Rust backend: mjpegd's own encoder ([`baseline`]) for
/// Y'CbCr input (renditions' planes, camera pictures split into planes the
/// way the libjpeg-turbo backend splits them), `jpeg-encoder` for RGB (it
/// converts colour and picks the subsampling by quality).
#[cfg(not(feature = "turbojpeg"))]
mod backend {
    use super::baseline::{PlanarEncoder, PlaneRef, SymbolBuffer};
    use super::recode::recode;
    use super::{EncodeError, Planes, RawImage, Subsampling, split_planes, with_reused};
    use jpeg_encoder::{ColorType, Encoder};
    use std::cell::RefCell;

    thread_local! {
        /// The planes a camera picture is split into, reused from frame to
        /// frame (camera frames are encoded on a pool of threads).
        static SCRATCH: RefCell<[Vec<u8>; 3]> = RefCell::default();
        /// The symbols of the picture being encoded, waiting for the
        /// Huffman tables built for them: the buffer is kept from picture to
        /// picture (0.5-1 MB for a 720p frame).
        static SYMBOLS: RefCell<SymbolBuffer> = RefCell::default();
    }

    /// Encodes with this thread's symbol buffer.
    fn encode_planes_with(
        encoder: PlanarEncoder,
        width: u16,
        height: u16,
        [y, cb, cr]: [PlaneRef<'_>; 3],
    ) -> Result<Vec<u8>, EncodeError> {
        with_reused(&SYMBOLS, |buffer| {
            encoder.encode(width, height, y, cb, cr, buffer)
        })
    }

    pub(super) fn rgb(
        pixels: &[u8],
        width: u16,
        height: u16,
        quality: u8,
    ) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(pixels.len() / 8);
        Encoder::new(&mut out, quality)
            .encode(pixels, width, height, ColorType::Rgb)
            .map_err(|e| EncodeError::Encoder(e.to_string()))?;
        // jpeg-encoder codes with the standard tables: coded again with
        // tables built for the picture, like everything else encoded here.
        Ok(with_reused(&SYMBOLS, |buffer| recode(&out, buffer)).unwrap_or(out))
    }

    /// `half_height`: chroma at half height too (4:2:0), else 4:2:2.
    pub(super) fn yuv(
        img: &RawImage<'_>,
        quality: u8,
        half_height: bool,
    ) -> Result<Vec<u8>, EncodeError> {
        let subsampling = if half_height {
            Subsampling::Yuv420
        } else {
            Subsampling::Yuv422
        };
        with_reused(&SCRATCH, |planes| {
            let widths = split_planes(img, half_height, planes);
            let [yp, up, vp] = &*planes;
            let (pw, cw) = (widths.luma, widths.chroma);
            let (ph, ch) = (yp.len() / pw.max(1), up.len() / cw.max(1));
            encode_planes_with(
                PlanarEncoder::new(quality, subsampling),
                img.width,
                img.height,
                [whole(yp, pw, ph), whole(up, cw, ch), whole(vp, cw, ch)],
            )
        })
    }

    /// A plane that is all picture, no padding past `stride`.
    fn whole(data: &[u8], stride: usize, height: usize) -> PlaneRef<'_> {
        PlaneRef {
            data,
            stride,
            width: stride,
            height,
        }
    }

    pub(super) fn planes(
        planes: &Planes,
        width: u16,
        height: u16,
        quality: u8,
    ) -> Result<Vec<u8>, EncodeError> {
        let luma = PlaneRef {
            data: &planes.y,
            stride: planes.stride,
            width: planes.width,
            height: planes.height,
        };
        let (cw, ch) = (planes.stride / 2, planes.rows / 2);
        encode_planes_with(
            PlanarEncoder::new(quality, Subsampling::Yuv420),
            width,
            height,
            [luma, whole(&planes.cb, cw, ch), whole(&planes.cr, cw, ch)],
        )
    }
}

/// The libjpeg-turbo backend. Camera pictures are split into the planar
/// Y'/Cb/Cr layout libjpeg-turbo compresses from (range-stretched on the
/// way), which skips its colour conversion and downsampling entirely.
///
/// libjpeg-turbo writes with the standard Huffman tables; camera frames
/// and the RGB pictures are then re-coded with tables fitted to each
/// picture ([`super::recode`]). libjpeg-turbo has an option for that
/// (`TJPARAM_OPTIMIZE`), but it takes it off its fast path and costs
/// 1.8-2.6x the time per frame; re-coding the finished scan costs
/// 1.25-2x (`bench/ENCODE.md`). Renditions are left as written.
#[cfg(feature = "turbojpeg")]
mod backend {
    use super::huffman::SymbolBuffer;
    use super::recode::recode;
    use super::{EncodeError, Planes, RawImage, split_planes, with_reused};
    use std::cell::RefCell;
    use turbojpeg::{Compressor, Image, PixelFormat, Subsamp, YuvPlanesImage};

    /// Per-thread encoder state: the libjpeg-turbo handle, the planes a
    /// camera picture is split into, the output buffer and the symbols of
    /// the re-coding, all reused from frame to frame (camera frames are
    /// encoded on a pool of threads).
    #[derive(Default)]
    struct State {
        compressor: Option<Compressor>,
        planes: [Vec<u8>; 3],
        out: Output,
    }

    /// Where libjpeg-turbo writes, and the symbols its scan is re-coded from.
    #[derive(Default)]
    struct Output {
        jpeg: Vec<u8>,
        symbols: SymbolBuffer,
    }

    thread_local! {
        static STATE: RefCell<State> = RefCell::new(State::default());
    }

    fn failed(e: turbojpeg::Error) -> EncodeError {
        EncodeError::Encoder(e.to_string())
    }

    /// Runs `f` with this thread's compressor (created on first use) and
    /// scratch buffers.
    fn with_state<T>(
        f: impl FnOnce(&mut Compressor, &mut [Vec<u8>; 3], &mut Output) -> Result<T, EncodeError>,
    ) -> Result<T, EncodeError> {
        with_reused(&STATE, |state| {
            if state.compressor.is_none() {
                state.compressor = Some(Compressor::new().map_err(failed)?);
            }
            let State {
                compressor,
                planes,
                out,
            } = state;
            match compressor.as_mut() {
                Some(c) => f(c, planes, out),
                None => Err(EncodeError::Encoder("no compressor".into())),
            }
        })
    }

    /// Compresses into the reused worst-case-sized buffer (no allocation by
    /// libjpeg-turbo, no reallocation), then, when `fit` is set, re-codes
    /// the JPEG with Huffman tables built for it (see [`super::recode`])
    /// into a buffer of its own; otherwise, or when re-coding does not
    /// apply, copies it out as it is.
    fn compress_into(
        out: &mut Output,
        fit: bool,
        width: usize,
        height: usize,
        subsamp: Subsamp,
        compress: impl FnOnce(&mut [u8]) -> turbojpeg::Result<usize>,
    ) -> Result<Vec<u8>, EncodeError> {
        let worst = turbojpeg::compressed_buf_len(width, height, subsamp).map_err(failed)?;
        if out.jpeg.len() < worst {
            out.jpeg.resize(worst, 0);
        }
        let len = compress(&mut out.jpeg[..]).map_err(failed)?;
        let jpeg = &out.jpeg[..len.min(out.jpeg.len())];
        let fitted = if fit {
            recode(jpeg, &mut out.symbols)
        } else {
            None
        };
        Ok(fitted.unwrap_or_else(|| jpeg.to_vec()))
    }

    pub(super) fn rgb(
        pixels: &[u8],
        width: u16,
        height: u16,
        quality: u8,
    ) -> Result<Vec<u8>, EncodeError> {
        // Same choice as jpeg-encoder, so both builds give alike pictures.
        let subsamp = if quality < 90 {
            Subsamp::Sub2x2
        } else {
            Subsamp::None
        };
        let (w, h) = (usize::from(width), usize::from(height));
        with_state(|c, _, out| {
            c.set_quality(i32::from(quality)).map_err(failed)?;
            c.set_subsamp(subsamp).map_err(failed)?;
            let image = Image {
                pixels,
                width: w,
                pitch: w * 3,
                height: h,
                format: PixelFormat::RGB,
            };
            compress_into(out, true, w, h, subsamp, |buf| {
                c.compress_to_slice(image, buf)
            })
        })
    }

    pub(super) fn planes(
        planes: &Planes,
        width: u16,
        height: u16,
        quality: u8,
    ) -> Result<Vec<u8>, EncodeError> {
        let (w, h) = (usize::from(width), usize::from(height));
        let cw = planes.stride / 2;
        with_state(|c, _, out| {
            c.set_quality(i32::from(quality)).map_err(failed)?;
            let image = YuvPlanesImage {
                y_plane: &planes.y[..],
                u_plane: &planes.cb[..],
                v_plane: &planes.cr[..],
                width: w,
                height: h,
                y_stride: planes.stride,
                u_stride: cw,
                v_stride: cw,
                subsamp: Subsamp::Sub2x2,
            };
            // Renditions are kept as libjpeg-turbo writes them: their budget
            // is CPU per variant, and re-coding would add a quarter to half
            // of the encode time (bench/ENCODE.md).
            compress_into(out, false, w, h, Subsamp::Sub2x2, |buf| {
                c.compress_yuv_planes_to_slice(&image, buf)
            })
        })
    }

    /// `half_height`: chroma at half height too (4:2:0), else 4:2:2.
    pub(super) fn yuv(
        img: &RawImage<'_>,
        quality: u8,
        half_height: bool,
    ) -> Result<Vec<u8>, EncodeError> {
        let (w, h) = (usize::from(img.width), usize::from(img.height));
        let subsamp = if half_height {
            Subsamp::Sub2x2
        } else {
            Subsamp::Sub2x1
        };
        with_state(|c, planes, out| {
            let widths = split_planes(img, half_height, planes);
            let [yp, up, vp] = &*planes;
            c.set_quality(i32::from(quality)).map_err(failed)?;
            let image = YuvPlanesImage {
                y_plane: &yp[..],
                u_plane: &up[..],
                v_plane: &vp[..],
                width: w,
                height: h,
                y_stride: widths.luma,
                u_stride: widths.chroma,
                v_stride: widths.chroma,
                subsamp,
            };
            compress_into(out, true, w, h, subsamp, |buf| {
                c.compress_yuv_planes_to_slice(&image, buf)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn is_jpeg(b: &[u8]) -> bool {
        b.starts_with(&[0xff, 0xd8]) && b.ends_with(&[0xff, 0xd9])
    }

    /// Decodes with ffmpeg, which must exit 0 and print nothing; a missing
    /// ffmpeg fails the test (install the `ffmpeg` package).
    pub(super) fn ffmpeg_decodes_cleanly(jpeg: &[u8], name: &str) {
        let dir = std::env::temp_dir().join(format!("mjpegd-enc-ffmpeg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(format!("{name}.jpg"));
        std::fs::write(&path, jpeg).expect("writes");
        let decode = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "null", "-"])
            .output()
            .expect("ffmpeg must be installed for this test (apt-get install ffmpeg)");
        assert!(
            decode.status.success() && decode.stdout.is_empty() && decode.stderr.is_empty(),
            "{name}: ffmpeg says {}",
            String::from_utf8_lossy(&decode.stderr)
        );
        std::fs::remove_file(&path).ok();
    }

    /// A noisy video-range YUYV picture, `shift` pixels further along.
    fn noisy_yuyv(w: usize, h: usize, shift: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(w * h * 2);
        for y in 0..h {
            for x in (0..w).step_by(2) {
                let n = |x: usize| {
                    let v = ((x + shift) as u32).wrapping_mul(0x9e37_79b9)
                        ^ (y as u32).wrapping_mul(0x85eb_ca6b);
                    (v.wrapping_mul(0x2c1b_3c6d) >> 27) as usize
                };
                let luma =
                    |x: usize| (40 + (x + shift) * 150 / w + y * 40 / h + n(x)).min(235) as u8;
                let chroma = 100 + (x * 50 / w) as u8 + n(x + 1) as u8 / 4;
                out.extend([luma(x), chroma, luma(x + 1), 250 - chroma]);
            }
        }
        out
    }

    /// Camera pictures of several sizes on one thread, in turn: each
    /// decodes (jpeg-decoder, ffmpeg) and encodes the same whatever came
    /// before it (nothing is carried from one picture to the next).
    #[test]
    fn camera_pictures_decode_and_do_not_depend_on_the_last_one() {
        let sizes = [(640usize, 480usize), (33, 17), (1280, 720), (640, 480)];
        let mut first = Vec::new();
        for (i, &(w, h)) in sizes.iter().enumerate() {
            let data = noisy_yuyv(w, h, i * 3);
            let img = RawImage::new(
                &data,
                w as u16,
                h as u16,
                w.div_ceil(2) * 4,
                RawFormat::Yuyv,
            )
            .expect("fits");
            for sub in [Subsampling::Yuv420, Subsampling::Yuv422] {
                let jpeg = encode_raw(&img, 80, sub).expect("encodes");
                let mut d = jpeg_decoder::Decoder::new(&jpeg[..]);
                let pixels = d.decode().expect("jpeg-decoder decodes");
                let info = d.info().expect("info");
                assert_eq!((usize::from(info.width), usize::from(info.height)), (w, h));
                assert_eq!(pixels.len(), w * h * 3);
                ffmpeg_decodes_cleanly(
                    &jpeg,
                    &format!("camera-{w}x{h}-{i}-{sub}").replace(':', ""),
                );
                if i == 0 {
                    first.push(jpeg);
                } else if (w, h) == sizes[0] {
                    // The same picture as the first (shift aside): encoded
                    // again after others, the same bytes as a fresh encode.
                    let again = noisy_yuyv(w, h, 0);
                    let img = RawImage::new(&again, w as u16, h as u16, w * 2, RawFormat::Yuyv)
                        .expect("fits");
                    let jpeg = encode_raw(&img, 80, sub).expect("encodes");
                    assert!(first.contains(&jpeg), "{sub}: not the first encode's bytes");
                }
            }
        }
    }

    #[test]
    fn range_tables() {
        assert_eq!(
            (Y_FULL[16], Y_FULL[235], Y_FULL[0], Y_FULL[255]),
            (0, 255, 0, 255)
        );
        assert_eq!((C_FULL[16], C_FULL[128], C_FULL[240]), (0, 128, 255));
    }

    #[test]
    fn rgb_encodes_and_checks_its_input() {
        let px = vec![200u8; 17 * 9 * 3];
        for q in [0, 50, 95, 255] {
            assert!(is_jpeg(&encode_rgb(&px, 17, 9, q).expect("encodes")));
        }
        assert!(matches!(
            encode_rgb(&px[1..], 17, 9, 80),
            Err(EncodeError::BadInput(_))
        ));
        assert!(encode_rgb(&px, 0, 9, 80).is_err());
    }

    #[test]
    fn odd_sizes_encode() {
        for (w, h) in [(1u16, 1u16), (3, 5), (33, 17)] {
            let stride = usize::from(w).div_ceil(2) * 4 + 4;
            let yuyv = vec![100u8; stride * usize::from(h)];
            let nv12 = vec![100u8; stride * (usize::from(h) * 2)];
            for (data, format) in [(&yuyv, RawFormat::Yuyv), (&nv12, RawFormat::Nv12)] {
                let img = RawImage::new(data, w, h, stride, format).expect("fits");
                for sub in [Subsampling::Yuv420, Subsampling::Yuv422] {
                    let jpeg = encode_raw(&img, 70, sub).expect("encodes");
                    assert!(is_jpeg(&jpeg), "{format} {sub}");
                }
            }
        }
    }

    /// The luma component's sampling factors (h, v) from the SOF segment.
    fn luma_sampling(jpeg: &[u8]) -> (u8, u8) {
        let sof = jpeg
            .windows(2)
            .position(|w| w == [0xff, 0xc0])
            .expect("baseline SOF");
        // FF C0, length (2), precision, height (2), width (2), count, then
        // per component: id, sampling (h << 4 | v), table.
        let f = jpeg[sof + 11];
        (f >> 4, f & 15)
    }

    #[test]
    fn yuyv_is_encoded_at_the_chosen_subsampling() {
        let (w, h) = (64u16, 48u16);
        // Chroma that changes from row to row: 4:2:0 averages row pairs.
        let mut yuyv = Vec::new();
        for y in 0..usize::from(h) {
            for x in 0..usize::from(w) / 2 {
                yuyv.extend([(x * 7) as u8 + 16, (y * 5) as u8 + 16, 200, 240 - y as u8]);
            }
        }
        let img = RawImage::new(&yuyv, w, h, usize::from(w) * 2, RawFormat::Yuyv).expect("fits");
        let half = encode_raw(&img, 80, Subsampling::Yuv420).expect("4:2:0");
        let whole = encode_raw(&img, 80, Subsampling::Yuv422).expect("4:2:2");
        assert_eq!(luma_sampling(&half), (2, 2));
        assert_eq!(luma_sampling(&whole), (2, 1));
        assert!(
            half.len() < whole.len(),
            "{} vs {}",
            half.len(),
            whole.len()
        );
        // NV12 stays 4:2:0 whatever is asked.
        let nv12 = vec![100u8; usize::from(w) * usize::from(h) * 3 / 2];
        let img = RawImage::new(&nv12, w, h, usize::from(w), RawFormat::Nv12).expect("fits");
        let jpeg = encode_raw(&img, 80, Subsampling::Yuv422).expect("nv12");
        assert_eq!(luma_sampling(&jpeg), (2, 2));
        assert_eq!(Subsampling::default(), Subsampling::Yuv420);
        assert_eq!(Subsampling::parse("422"), Some(Subsampling::Yuv422));
        assert_eq!(Subsampling::parse("4:2:0"), Some(Subsampling::Yuv420));
        assert_eq!(Subsampling::parse("4:4:4"), None);
    }

    /// Flat video-range camera colours come out as the same full-range
    /// Y'CbCr the range tables give (decoded to Y'CbCr by zune-jpeg).
    #[test]
    fn camera_colours_are_stretched_not_converted() {
        use zune_jpeg::zune_core::bytestream::ZCursor;
        use zune_jpeg::zune_core::colorspace::ColorSpace;
        use zune_jpeg::zune_core::options::DecoderOptions;
        let (w, h) = (40u16, 24u16);
        let (luma, cb, cr) = (100u8, 60u8, 200u8);
        let yuyv = [luma, cb, luma, cr].repeat(usize::from(w) / 2 * usize::from(h));
        let mut nv12 = vec![luma; usize::from(w) * usize::from(h)];
        nv12.extend([cb, cr].repeat(usize::from(w) / 2 * usize::from(h) / 2));
        let want = [Y_FULL[100], C_FULL[60], C_FULL[200]];
        for (data, stride, format) in [
            (&yuyv, usize::from(w) * 2, RawFormat::Yuyv),
            (&nv12, usize::from(w), RawFormat::Nv12),
        ] {
            let img = RawImage::new(data, w, h, stride, format).expect("fits");
            for sub in [Subsampling::Yuv420, Subsampling::Yuv422] {
                let jpeg = encode_raw(&img, 90, sub).expect("encodes");
                let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::YCbCr);
                let mut d =
                    zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(&jpeg[..]), options);
                let px = d.decode().expect("decodes");
                for got in px.chunks_exact(3) {
                    let off = got.iter().zip(want).map(|(&a, b)| a.abs_diff(b)).max();
                    assert!(off <= Some(1), "{format} {sub}: {got:?} vs {want:?}");
                }
            }
        }
    }
}
