//! Pixel formats: their names (`MJPEG`, `YUYV`, `NV12`), readable fourccs,
//! and which one capture asks the camera for.

use crate::source::spec::WantedFormat;
use crate::source::yuv::RawFormat;

/// `v4l2_fourcc_be`: the flag V4L2 sets on big-endian variants of a format.
const BIG_ENDIAN: u32 = 1 << 31;

pub const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}

pub const MJPG: u32 = fourcc(b"MJPG");
pub const JPEG: u32 = fourcc(b"JPEG");
pub const YUYV: u32 = fourcc(b"YUYV");
pub const NV12: u32 = fourcc(b"NV12");
/// NV12 with the chroma plane in a buffer of its own (multi-planar API).
pub const NV12M: u32 = fourcc(b"NM12");

/// A fourcc as text: `YUYV`, `Y16` and `Y16-BE` for big-endian variants
/// (the flag in the top bit), `0x...` when it is not printable.
pub fn name(code: u32) -> String {
    let be = code & BIG_ENDIAN != 0;
    let bytes = (code & !BIG_ENDIAN).to_le_bytes();
    if !bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return format!("0x{code:08x}");
    }
    let text = String::from_utf8_lossy(&bytes).trim_end().to_owned();
    if be { format!("{text}-BE") } else { text }
}

/// What the frames need before they can be published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipeline {
    /// Camera JPEG, passed through.
    Jpeg,
    /// Raw pictures, encoded here.
    Encode(RawFormat),
}

impl Pipeline {
    /// How mjpegd handles frames of `code`, if it can.
    pub fn of(code: u32) -> Option<Pipeline> {
        match code {
            MJPG | JPEG => Some(Pipeline::Jpeg),
            YUYV => Some(Pipeline::Encode(RawFormat::Yuyv)),
            NV12 | NV12M => Some(Pipeline::Encode(RawFormat::Nv12)),
            _ => None,
        }
    }
}

/// The fourccs that satisfy `wanted`, best first.
fn codes(wanted: WantedFormat) -> &'static [u32] {
    match wanted {
        WantedFormat::Mjpeg => &[MJPG, JPEG],
        WantedFormat::Yuyv => &[YUYV],
        WantedFormat::Nv12 => &[NV12, NV12M],
        WantedFormat::Nv12m => &[NV12M],
    }
}

/// The fourcc to ask the camera for among those it `offers`: the wanted
/// one, or by default the camera's JPEG (no encoding at all), then YUYV,
/// then NV12. The error lists what the camera has.
pub fn choose(offers: &[u32], wanted: Option<WantedFormat>) -> Result<u32, String> {
    let preference: &[u32] = match wanted {
        Some(w) => codes(w),
        None => &[MJPG, JPEG, YUYV, NV12, NV12M],
    };
    if let Some(code) = preference.iter().find(|c| offers.contains(c)) {
        return Ok(*code);
    }
    let list: Vec<String> = offers.iter().map(|c| name(*c)).collect();
    let has = if list.is_empty() {
        "no formats at all".to_owned()
    } else {
        list.join(", ")
    };
    Err(match wanted {
        Some(w) => format!("does not offer {w} (it has {has})"),
        None => format!("offers none of {} (it has {has})", WantedFormat::NAMES),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_readable() {
        assert_eq!(name(YUYV), "YUYV");
        assert_eq!(name(fourcc(b"Y16 ")), "Y16");
        assert_eq!(name(fourcc(b"Y16 ") | BIG_ENDIAN), "Y16-BE");
        assert_eq!(name(fourcc(b"RGB3")), "RGB3");
        assert_eq!(name(0x0000_0001), "0x00000001");
    }

    #[test]
    fn camera_jpeg_is_preferred_unless_asked_otherwise() {
        assert_eq!(choose(&[YUYV, MJPG], None), Ok(MJPG));
        assert_eq!(choose(&[NV12, YUYV], None), Ok(YUYV));
        assert_eq!(choose(&[NV12M], None), Ok(NV12M));
        let nv12 = WantedFormat::parse("nv12");
        assert_eq!(choose(&[YUYV, MJPG, NV12], nv12), Ok(NV12));
        let mjpeg = WantedFormat::parse("MJPEG");
        assert_eq!(choose(&[YUYV, JPEG], mjpeg), Ok(JPEG));
        let nv12m = WantedFormat::parse("NV12M");
        assert_eq!(choose(&[NV12, NV12M], nv12m), Ok(NV12M));
        assert!(choose(&[NV12], nv12m).is_err());
    }

    #[test]
    fn a_missing_format_lists_what_the_camera_has() {
        let mjpeg = WantedFormat::parse("MJPEG");
        assert_eq!(
            choose(&[YUYV, fourcc(b"Y16 ") | BIG_ENDIAN], mjpeg),
            Err("does not offer MJPEG (it has YUYV, Y16-BE)".to_owned())
        );
        assert_eq!(
            choose(&[fourcc(b"RGB3")], None),
            Err("offers none of MJPEG, YUYV, NV12, NV12M (it has RGB3)".to_owned())
        );
        assert_eq!(WantedFormat::parse("H264"), None);
    }

    #[test]
    fn pipelines() {
        assert_eq!(Pipeline::of(MJPG), Some(Pipeline::Jpeg));
        assert_eq!(Pipeline::of(NV12M), Some(Pipeline::Encode(RawFormat::Nv12)));
        assert_eq!(Pipeline::of(fourcc(b"RGB3")), None);
    }
}
