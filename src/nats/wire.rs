//! How a frame travels on the bus: the JPEG as the message payload, and in
//! NATS headers its capture time, sequence number, size, image size and
//! whether it is a live picture or the capture node's offline placeholder
//! (with the reason). A message with no payload and a `Mjpegd-Heartbeat`
//! header says "still here" when the picture does not change.
//!
//! Everything read here comes from the network: every header is checked
//! and a bad message is refused with a reason, never a panic.

use crate::frame::{Frame, FrameMeta};
use async_nats::HeaderMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const CAPTURED: &str = "Mjpegd-Captured";
pub const SEQ: &str = "Mjpegd-Seq";
pub const SIZE: &str = "Mjpegd-Size";
pub const IMAGE: &str = "Mjpegd-Image";
pub const ONLINE: &str = "Mjpegd-Online";
pub const REASON: &str = "Mjpegd-Reason";
pub const HEARTBEAT: &str = "Mjpegd-Heartbeat";

/// Room for the headers next to the JPEG within the server's `max_payload`
/// (the limit covers headers and payload).
pub const HEADER_ROOM: usize = 512;
/// Longest reason carried (a placeholder's text fits in far less).
const MAX_REASON: usize = 300;

/// The headers of `frame`; `reason` is the stream's offline reason.
pub fn frame_headers(frame: &Frame, reason: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    let captured = frame
        .meta
        .captured
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    h.insert(
        CAPTURED,
        format!("{}.{:06}", captured.as_secs(), captured.subsec_micros()),
    );
    h.insert(SEQ, frame.seq.to_string());
    h.insert(SIZE, frame.jpeg().len().to_string());
    if frame.meta.width != 0 {
        h.insert(IMAGE, format!("{}x{}", frame.meta.width, frame.meta.height));
    }
    h.insert(ONLINE, if frame.online { "true" } else { "false" });
    if !frame.online {
        h.insert(REASON, header_text(reason.unwrap_or("offline")));
    }
    h
}

/// The headers of a heartbeat after frame `seq`.
pub fn heartbeat_headers(seq: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(HEARTBEAT, seq.to_string());
    h
}

/// A header value: one line of printable text.
fn header_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON)
        .collect()
}

/// One message read from the bus.
#[derive(Debug, PartialEq)]
pub enum BusMessage {
    /// A frame; `reason` is `Some` for an offline placeholder.
    Frame {
        seq: u64,
        meta: FrameMeta,
        reason: Option<String>,
    },
    Heartbeat,
}

/// Reads the headers of a message whose payload is `payload_len` bytes.
pub fn read(headers: Option<&HeaderMap>, payload_len: usize) -> Result<BusMessage, String> {
    let h = headers.ok_or("a message without mjpegd headers")?;
    let get = |name: &str| h.get(name).map(|v| v.as_str());
    if get(HEARTBEAT).is_some() {
        return Ok(BusMessage::Heartbeat);
    }
    let need = |name: &str| get(name).ok_or_else(|| format!("no {name} header"));
    let seq: u64 = need(SEQ)?
        .parse()
        .map_err(|_| format!("bad {SEQ} header"))?;
    let size: usize = need(SIZE)?
        .parse()
        .map_err(|_| format!("bad {SIZE} header"))?;
    if size != payload_len {
        return Err(format!(
            "{SIZE} says {size} bytes, the message holds {payload_len}"
        ));
    }
    let captured = parse_time(need(CAPTURED)?).ok_or_else(|| format!("bad {CAPTURED} header"))?;
    let (width, height) = match get(IMAGE) {
        Some(v) => parse_image(v).ok_or_else(|| format!("bad {IMAGE} header"))?,
        None => (0, 0),
    };
    let online = match need(ONLINE)? {
        "true" => true,
        "false" => false,
        _ => return Err(format!("bad {ONLINE} header")),
    };
    let reason = (!online).then(|| header_text(get(REASON).unwrap_or("capture node offline")));
    Ok(BusMessage::Frame {
        seq,
        meta: FrameMeta {
            captured,
            captured_at: local_instant(captured),
            width,
            height,
        },
        reason,
    })
}

/// `seconds.micros` since the epoch.
fn parse_time(s: &str) -> Option<SystemTime> {
    let (secs, micros) = s.split_once('.')?;
    if micros.len() != 6 {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let micros: u32 = micros.parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs) + Duration::from_micros(micros.into()))
}

fn parse_image(s: &str) -> Option<(u16, u16)> {
    let (w, h) = s.split_once('x')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

/// The local monotonic time of a wall-clock capture time from another
/// machine, so that frame ages and latency on an edge count from the
/// capture, bus included (with clocks in sync; a capture time "in the
/// future" counts as now).
fn local_instant(captured: SystemTime) -> Instant {
    let now = Instant::now();
    let age = SystemTime::now()
        .duration_since(captured)
        .unwrap_or_default()
        .min(Duration::from_secs(3600));
    now.checked_sub(age).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(online: bool) -> Frame {
        let meta = FrameMeta {
            captured: UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            captured_at: Instant::now(),
            width: 640,
            height: 480,
        };
        Frame::new(42, Bytes::from_static(b"\xff\xd8abc\xff\xd9"), meta, online)
    }

    #[test]
    fn a_frame_round_trips() {
        let h = frame_headers(&frame(true), None);
        assert_eq!(
            h.get(CAPTURED).map(|v| v.as_str()),
            Some("1700000000.123456")
        );
        match read(Some(&h), 7).expect("valid") {
            BusMessage::Frame { seq, meta, reason } => {
                assert_eq!(seq, 42);
                assert_eq!(
                    meta.captured,
                    UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456)
                );
                assert_eq!((meta.width, meta.height), (640, 480));
                assert_eq!(reason, None);
            }
            other => panic!("{other:?}"),
        }
        let h = frame_headers(&frame(false), Some("camera unplugged\r\nX: y"));
        match read(Some(&h), 7).expect("valid") {
            BusMessage::Frame { reason, .. } => {
                assert_eq!(reason.as_deref(), Some("camera unplugged  X: y"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            read(Some(&heartbeat_headers(3)), 0),
            Ok(BusMessage::Heartbeat)
        );
    }

    #[test]
    fn bad_messages_say_why() {
        assert!(read(None, 3).is_err());
        let h = frame_headers(&frame(true), None);
        assert!(read(Some(&h), 8).expect_err("size").contains("7 bytes"));
        let mut bad = h.clone();
        bad.insert(CAPTURED, "yesterday");
        assert!(read(Some(&bad), 7).is_err());
        let mut bad = h.clone();
        bad.insert(ONLINE, "maybe");
        assert!(read(Some(&bad), 7).is_err());
        let mut bad = h;
        bad.insert(SEQ, "-1");
        assert!(read(Some(&bad), 7).is_err());
    }
}
