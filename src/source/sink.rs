//! `JpegSink`: the last step of sources that receive ready-made JPEGs
//! (relayed streams, polled snapshots, MJPEG cameras).
//!
//! Each frame is checked before it is published, so a viewer never gets a
//! truncated or garbled picture: a bad frame is dropped, counted in the
//! stream's `frames_dropped`, and logged once per burst of bad frames (a
//! broken upstream must not flood the log). Frames without Huffman tables,
//! as UVC cameras send them, get the standard tables inserted so that every
//! decoder can show them.

use super::BadFrames;
use crate::frame::{FrameMeta, owned_jpeg};
use crate::hub::FrameHub;
use crate::jpeg;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How far an upstream's capture timestamp may be from our clock and still
/// be believed. Further off means another clock (monotonic, or a camera that
/// never set its time), so the arrival time is used instead.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Checks and publishes JPEG frames into one stream.
pub struct JpegSink {
    hub: Arc<FrameHub>,
    /// Counts and logs bad frames; the source as displayed (passwords
    /// redacted) names it in log lines.
    bad: BadFrames,
}

impl JpegSink {
    pub fn new(hub: Arc<FrameHub>, source: String) -> JpegSink {
        JpegSink {
            bad: BadFrames::new(hub.clone(), source),
            hub,
        }
    }

    /// Publishes `jpeg` if it is one complete image; returns whether it was.
    /// `captured` is the upstream's capture time, if it sent one.
    pub fn offer(&mut self, jpeg: &[u8], captured: Option<SystemTime>) -> bool {
        let fixed = jpeg::with_standard_huffman_tables(jpeg);
        match jpeg::check(fixed.as_deref().unwrap_or(jpeg)) {
            Ok(info) => {
                self.bad.good();
                let meta = meta(info.width, info.height, captured);
                match fixed {
                    Some(fixed) => self.hub.publish_owned(owned_jpeg(fixed), meta),
                    None => self.hub.publish(jpeg, meta),
                };
                true
            }
            Err(e) => {
                self.reject(&format!("not a complete JPEG: {e}"));
                false
            }
        }
    }

    /// Publishes a JPEG the caller has already scanned whole (`info` is
    /// [`jpeg::scan`]'s verdict on exactly these bytes): a camera's frame
    /// is not scanned a second time.
    pub fn offer_scanned(&mut self, jpeg: &[u8], info: jpeg::JpegInfo) {
        self.bad.good();
        let meta = meta(info.width, info.height, None);
        // Inserting the tables before the scan keeps the image whole.
        match jpeg::with_standard_huffman_tables(jpeg) {
            Some(fixed) => self.hub.publish_owned(owned_jpeg(fixed), meta),
            None => self.hub.publish(jpeg, meta),
        };
    }

    /// Drops a frame that could not even be extracted, with the reason.
    pub fn reject(&mut self, why: &str) {
        self.bad.drop_frame(why);
    }
}

/// Frame metadata, keeping the upstream's capture time when it is plausible.
fn meta(width: u16, height: u16, captured: Option<SystemTime>) -> FrameMeta {
    let mut meta = FrameMeta::now(width, height);
    if let Some(t) = captured {
        // A time in the future means the clocks differ: use ours.
        let skew = meta.captured.duration_since(t).ok();
        if let Some(behind) = skew.filter(|b| *b <= MAX_CLOCK_SKEW) {
            meta.captured = t;
            meta.captured_at = Instant::now()
                .checked_sub(behind)
                .unwrap_or(meta.captured_at);
        }
    }
    meta
}

/// Parses an `X-Timestamp` value (`seconds.fraction` since the epoch),
/// exactly: through a float, microseconds would not survive a relay.
pub fn parse_timestamp(value: &str) -> Option<SystemTime> {
    let (secs, frac) = value.trim().split_once('.').unwrap_or((value.trim(), ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if secs.is_empty() || secs.len() > 11 || !digits(secs) || frac.len() > 9 || !digits(frac) {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        frac.parse::<u32>().ok()? * 10u32.pow(9 - frac.len() as u32)
    };
    if secs == 0 {
        return None;
    }
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jpeg::testing::small;

    #[test]
    fn good_frames_publish_bad_ones_count() {
        let hub = FrameHub::new("t", "test", "test");
        let mut sink = JpegSink::new(hub.clone(), "test".into());
        let good = small(1);
        assert!(sink.offer(&good, None));
        assert!(!sink.offer(&good[..good.len() / 2], None));
        assert!(!sink.offer(b"hello", None));
        let st = hub.status();
        assert_eq!((st.frames_captured, st.frames_dropped), (1, 2));
        assert!(st.online);
        assert!(sink.offer(&good, None));
        assert!(!sink.bad.in_burst(), "a good frame ends the burst");
    }

    #[test]
    fn upstream_timestamps_kept_when_plausible() {
        let now = SystemTime::now();
        let recent = now - Duration::from_millis(250);
        assert_eq!(meta(1, 1, Some(recent)).captured, recent);
        let ancient = now - Duration::from_secs(3600);
        assert_ne!(meta(1, 1, Some(ancient)).captured, ancient);
        let ts = parse_timestamp("1700000000.123456").expect("valid");
        let d = ts.duration_since(UNIX_EPOCH).expect("after epoch");
        assert_eq!(d.as_micros(), 1_700_000_000_123_456);
        assert!(parse_timestamp("soon").is_none());
        assert!(parse_timestamp("-1").is_none());
        assert!(parse_timestamp("1.2.3").is_none());
        assert!(parse_timestamp("1e9").is_none());
        let d = parse_timestamp("1700000000").expect("whole seconds");
        assert_eq!(
            d.duration_since(UNIX_EPOCH).expect("ok").as_secs(),
            1_700_000_000
        );
    }
}
