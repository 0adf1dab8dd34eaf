//! The "NO SIGNAL" picture a stream shows while its source is down: it names
//! the stream and the reason, so a viewer sees what is wrong, and it keeps
//! clients connected until the source returns.

use super::SourceContext;
use crate::canvas::{Canvas, Rgb};
use crate::frame::FrameMeta;
use tracing::error;

/// Renders the placeholder and publishes it as an offline frame.
pub fn publish(ctx: &SourceContext, reason: &str) {
    let status = ctx.hub.status();
    let (w, h) = if status.width >= 160 && status.height >= 120 {
        (status.width, status.height)
    } else {
        (640, 480)
    };
    let meta = FrameMeta::now(w, h);
    match render(w, h, ctx.hub.name(), reason).encode_jpeg(ctx.quality) {
        Ok(jpeg) => ctx.hub.publish_offline(&jpeg, meta, reason),
        Err(e) => {
            error!(stream = ctx.hub.name(), "cannot encode placeholder: {e}");
            ctx.hub.set_offline(reason);
        }
    }
}

/// Draws the placeholder picture.
pub fn render(w: u16, h: u16, stream: &str, reason: &str) -> Canvas {
    let mut c = Canvas::new(w, h, Rgb(24, 24, 32));
    let scale = (h as i32 / 120).max(1);
    let small = (scale / 2).max(1);
    let y = h as i32 / 3;
    c.draw_text_centered(y, "NO SIGNAL", scale * 2, Rgb(255, 64, 64));
    c.draw_text_centered(y + 24 * scale, stream, scale, Rgb(255, 255, 255));
    let cols = ((w as i32 - 16) / (8 * small)).max(8) as usize;
    let mut line_y = y + 40 * scale;
    for line in wrap(reason, cols).iter().take(6) {
        c.draw_text_centered(line_y, line, small, Rgb(220, 220, 220));
        line_y += 10 * small;
    }
    c
}

/// Splits `text` into lines of at most `cols` characters, at spaces when it can.
fn wrap(text: &str, cols: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > cols {
            if !cur.is_empty() {
                lines.push(std::mem::take(&mut cur));
            }
            lines.push(word.drain(..cols).collect());
        }
        let word: String = word.into_iter().collect();
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > cols {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(&word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_long_reasons() {
        let lines = wrap("dir:/x has no JPEG files in it at all", 12);
        assert!(lines.iter().all(|l| l.chars().count() <= 12), "{lines:?}");
        assert_eq!(lines.join(" "), "dir:/x has no JPEG files in it at all");
        let long = wrap("aaaaaaaaaaaaaaaaaaaaaaaaa", 10);
        assert_eq!(long, vec!["aaaaaaaaaa", "aaaaaaaaaa", "aaaaa"]);
    }

    #[test]
    fn renders_a_jpeg() {
        let jpeg = render(320, 240, "cam", "NO SIGNAL: test")
            .encode_jpeg(75)
            .expect("encodes");
        assert_eq!(&jpeg[..2], &[0xff, 0xd8]);
    }
}
