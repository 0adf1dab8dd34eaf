//! `Canvas`: a small RGB raster with rectangles and bitmap text, encoded to JPEG.
//!
//! Used by the test pattern and by the offline placeholder. Text uses the
//! built-in 8x8 font (no font files), scaled by whole pixels.

use crate::encode::{EncodeError, encode_rgb};
use bytes::Bytes;
use font8x8::UnicodeFonts;

/// An RGB color.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

/// An RGB image, 3 bytes per pixel, rows top to bottom.
#[derive(Clone)]
pub struct Canvas {
    width: u16,
    height: u16,
    pixels: Vec<u8>,
}

impl Canvas {
    pub fn new(width: u16, height: u16, background: Rgb) -> Canvas {
        let mut c = Canvas {
            width,
            height,
            pixels: vec![0; width as usize * height as usize * 3],
        };
        c.fill_rect(0, 0, width as i32, height as i32, background);
        c
    }

    pub fn width(&self) -> u16 {
        self.width
    }

    pub fn height(&self) -> u16 {
        self.height
    }

    /// Copies another canvas of the same size over this one (cheap reset to a
    /// pre-drawn background).
    pub fn copy_from(&mut self, other: &Canvas) {
        if other.pixels.len() == self.pixels.len() {
            self.pixels.copy_from_slice(&other.pixels);
        }
    }

    /// Fills a rectangle, clipped to the canvas.
    pub fn fill_rect(&mut self, x: i32, y: i32, w: i32, h: i32, color: Rgb) {
        let (x0, x1) = clip(x, w, self.width);
        let (y0, y1) = clip(y, h, self.height);
        if x0 >= x1 {
            return;
        }
        let stride = self.width as usize * 3;
        for row in y0..y1 {
            let line = &mut self.pixels[row * stride + x0 * 3..row * stride + x1 * 3];
            for px in line.chunks_exact_mut(3) {
                px[0] = color.0;
                px[1] = color.1;
                px[2] = color.2;
            }
        }
    }

    /// Width in pixels of `text` drawn at `scale`.
    pub fn text_width(text: &str, scale: i32) -> i32 {
        text.chars().count() as i32 * 8 * scale
    }

    /// Draws `text` with its top-left corner at (x, y); each font pixel becomes
    /// a `scale`×`scale` square. Characters outside the font show as '?'.
    pub fn draw_text(&mut self, x: i32, y: i32, text: &str, scale: i32, color: Rgb) {
        let scale = scale.max(1);
        for (i, ch) in text.chars().enumerate() {
            let glyph = font8x8::BASIC_FONTS
                .get(ch)
                .or_else(|| font8x8::BASIC_FONTS.get('?'))
                .unwrap_or([0; 8]);
            let gx = x + i as i32 * 8 * scale;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    // font8x8 stores the leftmost pixel in the lowest bit.
                    if bits & (1 << col) != 0 {
                        self.fill_rect(
                            gx + col * scale,
                            y + row as i32 * scale,
                            scale,
                            scale,
                            color,
                        );
                    }
                }
            }
        }
    }

    /// Draws text centered horizontally at row `y`.
    pub fn draw_text_centered(&mut self, y: i32, text: &str, scale: i32, color: Rgb) {
        let x = (self.width as i32 - Self::text_width(text, scale)) / 2;
        self.draw_text(x, y, text, scale, color);
    }

    /// Encodes the canvas as a baseline JPEG (through [`crate::encode`]).
    pub fn encode_jpeg(&self, quality: u8) -> Result<Bytes, EncodeError> {
        encode_rgb(&self.pixels, self.width, self.height, quality).map(crate::frame::owned_jpeg)
    }
}

/// Clips the span [start, start+len) to [0, limit) and returns it as indices.
fn clip(start: i32, len: i32, limit: u16) -> (usize, usize) {
    let a = start.clamp(0, limit as i32);
    let b = start.saturating_add(len.max(0)).clamp(0, limit as i32);
    (a as usize, b as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rectangles_are_clipped() {
        let mut c = Canvas::new(4, 4, Rgb(0, 0, 0));
        c.fill_rect(-2, -2, 3, 3, Rgb(255, 0, 0));
        c.fill_rect(3, 3, 100, 100, Rgb(0, 255, 0));
        assert_eq!(&c.pixels[0..3], &[255, 0, 0]);
        assert_eq!(&c.pixels[3..6], &[0, 0, 0]);
        assert_eq!(&c.pixels[15 * 3..16 * 3], &[0, 255, 0]);
    }

    #[test]
    fn text_sets_pixels_and_encodes() {
        let mut c = Canvas::new(64, 16, Rgb(0, 0, 0));
        c.draw_text(0, 0, "Hi", 1, Rgb(255, 255, 255));
        assert!(c.pixels.contains(&255));
        let jpeg = c.encode_jpeg(80).expect("encodes");
        assert_eq!(&jpeg[..2], &[0xff, 0xd8]);
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xff, 0xd9]);
    }
}
