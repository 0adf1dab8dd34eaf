//! Test pictures and a test certificate, and the decoder that checks every
//! JPEG a test receives.

use mjpegd::canvas::{Canvas, Rgb};
use std::path::PathBuf;

/// A `w`×`h` JPEG showing `n`: the number drawn on a shade of its own and a
/// block placed by it, so that each `n` is a different picture.
pub fn test_jpeg(w: u16, h: u16, n: usize) -> Vec<u8> {
    let mut c = Canvas::new(w, h, Rgb((n * 40 % 256) as u8, 80, 160));
    let scale = (i32::from(h) / 60).clamp(1, 8);
    c.draw_text(4, 4, &n.to_string(), scale, Rgb(255, 255, 255));
    let (w4, h4) = (i32::from(w) / 4, i32::from(h) / 4);
    let x = (n as i32 % 3) * w4;
    c.fill_rect(x, h4 * 2, w4, h4, Rgb(20, 20, 200));
    c.encode_jpeg(80).expect("encodes").to_vec()
}

/// A new folder holding `n` test JPEGs of `w`×`h` (`000.jpg`, ...).
pub fn jpeg_dir(w: u16, h: u16, n: usize) -> PathBuf {
    let dir = crate::common::temp_path("frames");
    std::fs::create_dir_all(&dir).expect("frames dir");
    for i in 0..n {
        std::fs::write(dir.join(format!("{i:03}.jpg")), test_jpeg(w, h, i)).expect("write frame");
    }
    dir
}

/// Replaces `path` with `data` in one step (write aside, rename over), as a
/// careful writer such as a camera program on a ram disk does.
pub fn replace_file(path: &std::path::Path, data: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A fresh, empty temporary folder, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let dir = crate::common::temp_path(what);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// The path of `file` in it.
    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    pub fn str(&self) -> &str {
        self.0.to_str().expect("UTF-8 temp path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Decodes a JPEG fully; returns (width, height). Panics if it is not valid.
pub fn decode(jpeg: &[u8]) -> (usize, usize) {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    let mut d = zune_jpeg::JpegDecoder::new(ZCursor::new(jpeg));
    let pixels = d.decode().expect("frame decodes as JPEG");
    let (w, h) = d.dimensions().expect("dimensions");
    assert!(!pixels.is_empty());
    (w, h)
}

/// A camera that is slow to open: an `exec:` command (`source`) that
/// writes a test JPEG ten times a second, at once the first time and after
/// `delay` seconds on every restart. Its files are removed on drop.
pub struct SlowCamera {
    frame: PathBuf,
    pub source: String,
}

impl SlowCamera {
    pub fn new(delay: f64) -> SlowCamera {
        let frame = crate::common::temp_path("frame.jpg");
        std::fs::write(&frame, test_jpeg(64, 48, 5)).expect("write frame");
        let p = frame.display();
        let source = format!(
            "exec:if [ -e {p}.started ]; then sleep {delay}; fi; touch {p}.started; \
             while :; do cat {p}; sleep 0.1; done"
        );
        SlowCamera { frame, source }
    }
}

impl Drop for SlowCamera {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("{}.started", self.frame.display()));
        let _ = std::fs::remove_file(&self.frame);
    }
}
