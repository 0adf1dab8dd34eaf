//! `Frame`: one complete JPEG with its metadata, shared by every client.
//!
//! A frame is built once when a source publishes it and is immutable after that.
//! Besides the JPEG it holds the whole multipart *part* that stream clients send
//! (part headers, the JPEG, and the next boundary line), so that the per-client
//! send path is a single write of shared bytes: no formatting, no copying.

use crate::memfd::PartFile;
use crate::source::yuv::RawPicture;
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The multipart boundary of every `/stream` response.
pub const BOUNDARY: &str = "mjpegd-boundary";

/// What a source knows about a JPEG it hands over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameMeta {
    /// Wall-clock capture time (sent to clients as `X-Timestamp`).
    pub captured: SystemTime,
    /// Monotonic capture time (used for ages and latency).
    pub captured_at: Instant,
    /// Image size when known, else 0.
    pub width: u16,
    pub height: u16,
}

impl FrameMeta {
    /// Metadata for a frame captured now.
    pub fn now(width: u16, height: u16) -> Self {
        FrameMeta {
            captured: SystemTime::now(),
            captured_at: Instant::now(),
            width,
            height,
        }
    }
}

/// One published JPEG.
#[derive(Debug)]
pub struct Frame {
    /// Sequence number within its stream, starting at 1.
    pub seq: u64,
    pub meta: FrameMeta,
    /// False for the placeholder frames a stream shows while its source is down.
    pub online: bool,
    part: Bytes,
    /// The same part in a sealed memory file, for `sendfile`; made by the
    /// first sender that wants it (a copy and a few system calls that only
    /// pay off once several clients share them). `None` inside: the file
    /// could not be made, and clients write `part`.
    part_file: OnceLock<Option<PartFile>>,
    jpeg_start: usize,
    jpeg_len: usize,
    /// The camera picture the JPEG was encoded from, on live frames of raw
    /// camera sources only (never kept in a history): renditions resize it
    /// rather than decode the JPEG.
    raw: Option<Arc<RawPicture>>,
}

impl Frame {
    /// Builds the frame and its multipart part. The JPEG is copied once here,
    /// into the part buffer; every client then shares that buffer.
    pub fn new(seq: u64, jpeg: &[u8], meta: FrameMeta, online: bool) -> Frame {
        // Headers are at most 100 bytes; the separator is "\r\n--" BOUNDARY "\r\n".
        let mut part = BytesMut::with_capacity(128 + jpeg.len() + BOUNDARY.len() + 6);
        let since_epoch = meta.captured.duration_since(UNIX_EPOCH).unwrap_or_default();
        // Writing to a BytesMut cannot fail (it grows).
        let _ = write!(
            part,
            "Content-Type: image/jpeg\r\nContent-Length: {}\r\nX-Timestamp: {}.{:06}\r\n\r\n",
            jpeg.len(),
            since_epoch.as_secs(),
            since_epoch.subsec_micros()
        );
        let jpeg_start = part.len();
        part.put_slice(jpeg);
        part.put_slice(b"\r\n--");
        part.put_slice(BOUNDARY.as_bytes());
        part.put_slice(b"\r\n");
        Frame {
            seq,
            meta,
            online,
            part_file: OnceLock::new(),
            part: part.freeze(),
            jpeg_start,
            jpeg_len: jpeg.len(),
            raw: None,
        }
    }

    /// The frame with the raw picture its JPEG was encoded from.
    pub fn with_raw(mut self, raw: Option<Arc<RawPicture>>) -> Frame {
        self.raw = raw;
        self
    }

    /// The raw picture the JPEG was encoded from, if the source kept it.
    pub fn raw(&self) -> Option<&Arc<RawPicture>> {
        self.raw.as_ref()
    }

    /// The same frame sharing the same bytes, without the memory file (and
    /// never making one) nor the raw picture: what a history keeps, so that
    /// frames no longer live hold no descriptor and no camera buffer.
    pub fn without_file(&self) -> Frame {
        let empty = OnceLock::new();
        let _ = empty.set(None);
        Frame {
            seq: self.seq,
            meta: self.meta,
            online: self.online,
            part: self.part.clone(),
            part_file: empty,
            jpeg_start: self.jpeg_start,
            jpeg_len: self.jpeg_len,
            raw: None,
        }
    }

    /// The JPEG bytes (a shared view, no copy).
    pub fn jpeg(&self) -> Bytes {
        self.part
            .slice(self.jpeg_start..self.jpeg_start + self.jpeg_len)
    }

    /// The bytes a stream client sends for this frame: part headers, JPEG, and
    /// the boundary line that announces the next part. Sending the boundary
    /// right after the JPEG lets browsers show the frame as soon as it arrives.
    pub fn part(&self) -> &Bytes {
        &self.part
    }

    /// The part as a sealed memory file, for zero-copy sends; made now if
    /// no sender has asked for it yet (`None`: it could not be made).
    pub fn part_file(&self) -> Option<&PartFile> {
        self.part_file
            .get_or_init(|| PartFile::create(&self.part).ok())
            .as_ref()
    }

    /// The memory file if a sender already made it; never makes one.
    pub fn built_part_file(&self) -> Option<&PartFile> {
        self.part_file.get().and_then(Option::as_ref)
    }

    /// Time since capture.
    pub fn age(&self) -> Duration {
        self.meta.captured_at.elapsed()
    }
}

/// The first bytes of a stream body, before the first part.
pub fn stream_preamble() -> String {
    format!("--{BOUNDARY}\r\n")
}

/// `seconds.micros` since the Unix epoch, as mjpg-streamer and µStreamer send it.
pub fn unix_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_layout_is_exact() {
        let meta = FrameMeta {
            captured: UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            captured_at: Instant::now(),
            width: 2,
            height: 2,
        };
        let f = Frame::new(7, b"\xff\xd8xx\xff\xd9", meta, true);
        let expected = b"Content-Type: image/jpeg\r\nContent-Length: 6\r\n\
X-Timestamp: 1700000000.123456\r\n\r\n\xff\xd8xx\xff\xd9\r\n--mjpegd-boundary\r\n";
        assert_eq!(&f.part()[..], &expected[..]);
        assert_eq!(&f.jpeg()[..], b"\xff\xd8xx\xff\xd9");
        assert_eq!(f.seq, 7);
    }
}
