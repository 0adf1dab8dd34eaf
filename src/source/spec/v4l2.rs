//! The spec of a V4L2 camera, `v4l2:/dev/videoN[:FORMAT][:WxH][@FPS]`, and
//! the pixel formats it may ask for.

use super::{SpecError, parse_fps, parse_size};
use std::fmt;

/// `v4l2:/dev/videoN[:FORMAT][:WxH][@FPS]`.
#[derive(Clone, Debug, PartialEq)]
pub struct V4l2Spec {
    pub device: String,
    pub size: Option<(u16, u16)>,
    pub fps: Option<f64>,
    /// The pixel format to ask for; by default the camera's JPEG, then
    /// YUYV, then NV12.
    pub format: Option<WantedFormat>,
}

impl V4l2Spec {
    /// Parses what follows `v4l2:`. `video0` and `0` are short for
    /// `/dev/video0`; after the device come the format and the size, in
    /// either order (`0:NV12:1280x720@15`).
    pub fn parse(s: &str) -> Result<V4l2Spec, SpecError> {
        let (rest, fps) = match s.rsplit_once('@') {
            Some((rest, fps)) => (rest, Some(parse_fps(fps)?)),
            None => (s, None),
        };
        let mut parts = rest.split(':');
        let device = parts.next().unwrap_or_default();
        let (mut size, mut format) = (None, None);
        for part in parts {
            if let Some(f) = WantedFormat::parse(part) {
                format = Some(f);
            } else if part.contains(['x', 'X']) && part.starts_with(|c: char| c.is_ascii_digit()) {
                size = Some(parse_size(part)?);
            } else {
                return Err(SpecError(format!(
                    "v4l2: '{part}' is neither a size (WxH) nor a format ({})",
                    WantedFormat::NAMES
                )));
            }
        }
        let device = if device.is_empty() {
            return Err(SpecError(
                "v4l2 needs a device, e.g. v4l2:/dev/video0".into(),
            ));
        } else if device.bytes().all(|b| b.is_ascii_digit()) {
            format!("/dev/video{device}")
        } else if !device.contains('/') {
            format!("/dev/{device}")
        } else {
            device.to_owned()
        };
        Ok(V4l2Spec {
            device,
            size,
            fps,
            format,
        })
    }
}

impl fmt::Display for V4l2Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v4l2:{}", self.device)?;
        if let Some(format) = self.format {
            write!(f, ":{format}")?;
        }
        if let Some((w, h)) = self.size {
            write!(f, ":{w}x{h}")?;
        }
        if let Some(fps) = self.fps {
            write!(f, "@{fps}")?;
        }
        Ok(())
    }
}

/// A pixel format asked for in the source spec or config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WantedFormat {
    Mjpeg,
    Yuyv,
    Nv12,
    /// NV12 in two planes, luma and chroma in separate buffers.
    Nv12m,
}

impl WantedFormat {
    pub const NAMES: &'static str = "MJPEG, YUYV, NV12, NV12M";

    /// `MJPEG` (or `MJPG`, `JPEG`), `YUYV` (or `YUY2`), `NV12` (either
    /// layout), `NV12M` (or `NM12`: only the two-plane one); any case.
    pub fn parse(s: &str) -> Option<WantedFormat> {
        Some(match s.to_ascii_uppercase().as_str() {
            "MJPEG" | "MJPG" | "JPEG" => WantedFormat::Mjpeg,
            "YUYV" | "YUY2" => WantedFormat::Yuyv,
            "NV12" => WantedFormat::Nv12,
            "NV12M" | "NM12" => WantedFormat::Nv12m,
            _ => return None,
        })
    }
}

impl fmt::Display for WantedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WantedFormat::Mjpeg => "MJPEG",
            WantedFormat::Yuyv => "YUYV",
            WantedFormat::Nv12 => "NV12",
            WantedFormat::Nv12m => "NV12M",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let s = V4l2Spec::parse("/dev/video2:1280x720@15").expect("valid");
        assert_eq!(s.device, "/dev/video2");
        assert_eq!((s.size, s.fps), (Some((1280, 720)), Some(15.0)));
        assert_eq!(s.to_string(), "v4l2:/dev/video2:1280x720@15");
        let s = V4l2Spec::parse("0").expect("valid");
        assert_eq!(
            (s.device.as_str(), s.size, s.fps),
            ("/dev/video0", None, None)
        );
        assert_eq!(
            V4l2Spec::parse("video1@5").expect("valid").device,
            "/dev/video1"
        );
        assert!(V4l2Spec::parse("").is_err());
        assert!(V4l2Spec::parse("/dev/video0:big").is_err());
        assert!(V4l2Spec::parse("/dev/video0@0").is_err());
    }

    #[test]
    fn specs_with_formats() {
        let s = V4l2Spec::parse("0:NV12:641x480@5").expect("valid");
        assert_eq!(s.format, WantedFormat::parse("NV12"));
        assert_eq!((s.size, s.fps), (Some((641, 480)), Some(5.0)));
        assert_eq!(s.to_string(), "v4l2:/dev/video0:NV12:641x480@5");
        let s = V4l2Spec::parse("/dev/video1:1280x720:mjpeg").expect("valid");
        assert_eq!(s.format, WantedFormat::parse("MJPEG"));
        assert_eq!(s.size, Some((1280, 720)));
        let e = V4l2Spec::parse("0:H264").expect_err("unknown format");
        assert!(e.0.contains("MJPEG, YUYV, NV12, NV12M"), "{}", e.0);
    }
}
