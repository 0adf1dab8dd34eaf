//! `TestPattern`: the built-in animated picture, so the server shows video
//! with no camera at all.
//!
//! Color bars with a sweeping bar and a bouncing box (something moves every
//! frame), the frame number and the wall-clock time to the millisecond. Frames
//! are rendered and encoded once each, on a steady deadline schedule that does
//! not drift, on the source's own thread.

use super::pacer::Pacer;
use super::{PatternSpec, SourceContext, SourceError, run_on_thread};
use crate::canvas::{Canvas, Rgb};
use crate::clock::utc_time;
use crate::frame::FrameMeta;
use std::time::SystemTime;

/// Runs the pattern until cancelled.
pub async fn run(spec: PatternSpec, ctx: &SourceContext) -> Result<(), SourceError> {
    let ctx = ctx.clone();
    let name = format!("pattern-{}", ctx.hub.name());
    run_on_thread(name, move || {
        let mut pattern = TestPattern::new(&spec);
        let mut pacer = Pacer::new(spec.fps);
        while let Some(n) = pacer.wait(&ctx.cancel) {
            let meta = FrameMeta::now(spec.width, spec.height);
            let canvas = pattern.render(n, meta.captured);
            let jpeg = canvas
                .encode_jpeg(ctx.quality)
                .map_err(|e| SourceError::new(format!("JPEG encoding failed: {e}")))?;
            ctx.hub.publish_owned(jpeg, meta);
        }
        Ok(())
    })
    .await
}

/// Renders the frames of the test pattern.
pub struct TestPattern {
    background: Canvas,
    frame: Canvas,
    fps: f64,
}

const BARS: [Rgb; 7] = [
    Rgb(192, 192, 192),
    Rgb(192, 192, 0),
    Rgb(0, 192, 192),
    Rgb(0, 192, 0),
    Rgb(192, 0, 192),
    Rgb(192, 0, 0),
    Rgb(0, 0, 192),
];
const WHITE: Rgb = Rgb(255, 255, 255);
const BLACK: Rgb = Rgb(0, 0, 0);

impl TestPattern {
    pub fn new(spec: &PatternSpec) -> TestPattern {
        let (w, h) = (spec.width as i32, spec.height as i32);
        let mut bg = Canvas::new(spec.width, spec.height, Rgb(16, 16, 16));
        let bar_h = h * 2 / 3;
        for (i, color) in BARS.iter().enumerate() {
            let x0 = w * i as i32 / BARS.len() as i32;
            let x1 = w * (i as i32 + 1) / BARS.len() as i32;
            bg.fill_rect(x0, 0, x1 - x0, bar_h, *color);
        }
        // A gray ramp under the bars.
        let steps = 16;
        for i in 0..steps {
            let x0 = w * i / steps;
            let x1 = w * (i + 1) / steps;
            let v = (i * 255 / (steps - 1)) as u8;
            bg.fill_rect(x0, bar_h, x1 - x0, h - bar_h, Rgb(v, v, v));
        }
        TestPattern {
            frame: bg.clone(),
            background: bg,
            fps: spec.fps,
        }
    }

    /// Draws frame `n` captured at `at`.
    pub fn render(&mut self, n: u64, at: SystemTime) -> &Canvas {
        let c = &mut self.frame;
        c.copy_from(&self.background);
        let (w, h) = (c.width() as i32, c.height() as i32);
        let t = n as f64 / self.fps;

        // A bar sweeping left to right every 2 seconds.
        let sweep_x = ((t / 2.0).fract() * w as f64) as i32;
        c.fill_rect(sweep_x, 0, (w / 80).max(2), h, WHITE);

        // A box bouncing around, one step per frame.
        let size = (h / 8).max(4);
        let bx = bounce(n as i64 * 7, (w - size) as i64) as i32;
        let by = bounce(n as i64 * 5, (h - size) as i64) as i32;
        c.fill_rect(bx, by, size, size, BLACK);
        c.fill_rect(bx + 2, by + 2, size - 4, size - 4, Rgb(255, 128, 0));

        // Frame number and time, on a black band in the middle.
        let info = format!("frame {n}  {}x{} @ {} fps", w, h, self.fps);
        let time = utc_time(at);
        // As large as fits: the widest line (the time) within the width.
        let widest = info.chars().count().max(time.chars().count()) as i32;
        let scale = (h / 160).min((w - 8) / (8 * widest)).max(1);
        let line = 10 * scale;
        let band_y = h / 2 - line * 3 / 2;
        c.fill_rect(0, band_y - scale * 2, w, line * 3 + scale * 4, BLACK);
        c.draw_text_centered(band_y, "mjpegd test pattern", scale, WHITE);
        c.draw_text_centered(band_y + line, &info, scale, WHITE);
        c.draw_text_centered(band_y + 2 * line, &time, scale, Rgb(255, 255, 0));
        &self.frame
    }
}

/// Position `p` folded back and forth within [0, max].
fn bounce(p: i64, max: i64) -> i64 {
    if max <= 0 {
        return 0;
    }
    let m = p.rem_euclid(2 * max);
    if m > max { 2 * max - m } else { m }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_frames_differ() {
        let mut p = TestPattern::new(&PatternSpec {
            width: 160,
            height: 120,
            fps: 30.0,
        });
        let at = SystemTime::now();
        let a = p.render(1, at).encode_jpeg(80).expect("encodes");
        let b = p.render(2, at).encode_jpeg(80).expect("encodes");
        assert_ne!(a, b);
    }

    #[test]
    fn bounce_stays_in_range() {
        for p in 0..1000 {
            let v = bounce(p, 37);
            assert!((0..=37).contains(&v));
        }
        assert_eq!(bounce(5, 0), 0);
    }
}
