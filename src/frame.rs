//! `Frame`: one complete JPEG with its metadata, shared by every client.
//!
//! A frame is built once when a source publishes it and is immutable after that.
//! Besides the JPEG it holds the headers of the multipart *part* that stream
//! clients send (part headers, the JPEG, and the next boundary line), so that
//! the per-client send path is one vectored write of shared bytes: no
//! formatting, no copying. The JPEG is kept as the source handed it over:
//! joining headers and JPEG in one buffer would copy every frame once more,
//! a cost that shows when a stream has one or two viewers.

use crate::memfd::PartFile;
use crate::source::yuv::RawPicture;
use bytes::{BufMut, Bytes, BytesMut};
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

/// What follows every JPEG in a stream: the boundary line that announces
/// the next part. Sending it right after the JPEG lets browsers show the
/// frame as soon as it arrives.
const TAIL: &[u8] = b"\r\n--mjpegd-boundary\r\n";

/// One published JPEG.
#[derive(Debug)]
pub struct Frame {
    /// Sequence number within its stream, starting at 1.
    pub seq: u64,
    pub meta: FrameMeta,
    /// False for the placeholder frames a stream shows while its source is down.
    pub online: bool,
    /// The part's headers, through the blank line.
    head: Bytes,
    jpeg: Bytes,
    /// The whole part in a sealed memory file, for `sendfile`; made by the
    /// first sender that wants it (a copy and a few system calls that only
    /// pay off once several clients share them). `None` inside: the file
    /// could not be made, and clients write the bytes.
    part_file: OnceLock<Option<PartFile>>,
    /// The camera picture the JPEG was encoded from, on live frames of raw
    /// camera sources only (never kept in a history): renditions resize it
    /// rather than decode the JPEG.
    raw: Option<Arc<RawPicture>>,
}

impl Frame {
    /// Builds the frame around `jpeg`, which it keeps (no copy): every client
    /// then sends the part from these bytes. `jpeg` should own its memory
    /// (not be a view into a larger buffer), since the frame, and a history
    /// that keeps it, keep that memory alive.
    pub fn new(seq: u64, jpeg: Bytes, meta: FrameMeta, online: bool) -> Frame {
        let since_epoch = meta.captured.duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut head = BytesMut::with_capacity(112);
        head.put_slice(b"Content-Type: image/jpeg\r\nContent-Length: ");
        put_decimal(&mut head, jpeg.len() as u64, 1);
        head.put_slice(b"\r\nX-Timestamp: ");
        put_decimal(&mut head, since_epoch.as_secs(), 1);
        head.put_u8(b'.');
        put_decimal(&mut head, u64::from(since_epoch.subsec_micros()), 6);
        head.put_slice(b"\r\n\r\n");
        Frame {
            seq,
            meta,
            online,
            head: head.freeze(),
            jpeg,
            part_file: OnceLock::new(),
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
            head: self.head.clone(),
            jpeg: self.jpeg.clone(),
            part_file: empty,
            raw: None,
        }
    }

    /// The JPEG bytes (a shared view, no copy).
    pub fn jpeg(&self) -> Bytes {
        self.jpeg.clone()
    }

    /// The length of the part a stream client sends for this frame: part
    /// headers, JPEG, and the boundary line that announces the next part.
    pub fn part_len(&self) -> usize {
        self.head.len() + self.jpeg.len() + TAIL.len()
    }

    /// The part's bytes from `offset` on, in up to three pieces (headers,
    /// JPEG, boundary line; pieces already sent are empty): what one
    /// vectored write sends, without joining them in one buffer.
    pub fn part_from(&self, offset: usize) -> [&[u8]; 3] {
        let mut skip = offset;
        [&self.head[..], &self.jpeg[..], TAIL].map(|piece| {
            let cut = skip.min(piece.len());
            skip -= cut;
            &piece[cut..]
        })
    }

    /// The part as a sealed memory file, for zero-copy sends; made now if
    /// no sender has asked for it yet (`None`: it could not be made).
    pub fn part_file(&self) -> Option<&PartFile> {
        self.part_file
            .get_or_init(|| PartFile::create(&self.part_from(0)).ok())
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

/// `jpeg` as frame bytes, without a copy; spare capacity is given back
/// first, since a frame (and a history that keeps it) holds the whole
/// allocation.
pub fn owned_jpeg(mut jpeg: Vec<u8>) -> Bytes {
    if jpeg.capacity() - jpeg.len() > jpeg.len() / 16 {
        jpeg.shrink_to_fit();
    }
    Bytes::from(jpeg)
}

/// Appends `n` in decimal, zero-padded to at least `width` digits: the
/// part headers are made for every frame, without the formatting machinery.
fn put_decimal(out: &mut BytesMut, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while n > 0 || digits.len() - start < width {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.put_slice(&digits[start..]);
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
        let f = Frame::new(7, Bytes::from_static(b"\xff\xd8xx\xff\xd9"), meta, true);
        let expected = b"Content-Type: image/jpeg\r\nContent-Length: 6\r\n\
X-Timestamp: 1700000000.123456\r\n\r\n\xff\xd8xx\xff\xd9\r\n--mjpegd-boundary\r\n";
        assert_eq!(f.part_from(0).concat(), expected);
        assert_eq!(f.part_len(), expected.len());
        assert_eq!(TAIL, format!("\r\n--{BOUNDARY}\r\n").as_bytes());
        for offset in 0..=expected.len() {
            assert_eq!(f.part_from(offset).concat(), &expected[offset..]);
        }
        assert_eq!(&f.jpeg()[..], b"\xff\xd8xx\xff\xd9");
        assert_eq!(f.seq, 7);
    }
}
