//! JPEG framing: find where a JPEG image starts and ends in a byte stream.
//!
//! Cameras and encoders hand us JPEG frames glued together (a child
//! process's stdout, a multipart body without `Content-Length`), so we need
//! to know where each frame ends without decoding it. The functions here walk
//! the JPEG marker structure only: segments are skipped by their declared
//! length and entropy-coded data is skipped up to the next real marker. That
//! is cheap, and it never confuses an `FF D9` inside an embedded EXIF
//! thumbnail with the end of the main image.
//!
//! Everything works on byte slices, never panics and never allocates except
//! where a new buffer is the result.

use std::fmt;
use std::ops::ControlFlow;

use bytes::{Buf, Bytes, BytesMut};

/// Size and extent of one complete JPEG image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegInfo {
    pub width: u16,
    pub height: u16,
    /// Bytes from the SOI marker through the EOI marker inclusive.
    pub len: usize,
}

/// Outcome of [`scan`] on a buffer that should start with a JPEG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// A whole image is present; it occupies `info.len` bytes.
    Complete(JpegInfo),
    /// Looks like a JPEG so far but the buffer ends before EOI.
    Incomplete,
    /// The bytes cannot be a JPEG.
    Invalid(JpegError),
}

/// Why bytes are not (or not exactly) one JPEG image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JpegError {
    /// The data does not begin with `FF D8`.
    NoSoi,
    /// The data ends before the EOI marker.
    Truncated,
    /// A segment declares a length below 2 (its length field counts itself).
    BadSegmentLength { at: usize },
    /// Something other than `FF` where a marker has to be.
    ExpectedMarker { at: usize },
    /// A marker that cannot occur between segments (reserved, or a second SOI).
    UnexpectedMarker { marker: u8, at: usize },
    /// A SOFn segment too short to hold the image size.
    BadFrameHeader { at: usize },
    /// SOS or EOI before any SOFn, so the image has no size.
    NoFrameHeader { at: usize },
    /// EOI before any scan, so there is no image data.
    NoScan { at: usize },
    /// Bytes other than a little padding follow the EOI marker.
    TrailingData { len: usize },
    /// A frame grew beyond the configured limit without ending.
    TooLarge { limit: usize },
}

impl fmt::Display for JpegError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JpegError::NoSoi => write!(f, "no SOI marker"),
            JpegError::Truncated => write!(f, "truncated"),
            JpegError::BadSegmentLength { at } => write!(f, "bad segment length at byte {at}"),
            JpegError::ExpectedMarker { at } => write!(f, "expected a marker at byte {at}"),
            JpegError::UnexpectedMarker { marker, at } => {
                write!(f, "unexpected marker 0x{marker:02X} at byte {at}")
            }
            JpegError::BadFrameHeader { at } => write!(f, "short frame header at byte {at}"),
            JpegError::NoFrameHeader { at } => write!(f, "no frame header before byte {at}"),
            JpegError::NoScan { at } => write!(f, "no image data before EOI at byte {at}"),
            JpegError::TrailingData { len } => write!(f, "{len} unexpected bytes after EOI"),
            JpegError::TooLarge { limit } => write!(f, "frame larger than {limit} bytes"),
        }
    }
}

impl std::error::Error for JpegError {}

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const DHT: u8 = 0xC4;

/// Start-of-frame markers carry the image size. C4 (DHT), C8 (JPG) and
/// CC (DAC) sit in the same range but are not frame headers.
fn is_sof(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, DHT | 0xC8 | 0xCC)
}

/// Markers that stand alone, without a length field.
fn is_standalone(marker: u8) -> bool {
    matches!(marker, 0x01 | 0xD0..=0xD7)
}

/// Markers that can never appear between segments: `00` is stuffing,
/// 02..BF are reserved, and a second SOI means the frame was cut short.
fn is_forbidden(marker: u8) -> bool {
    matches!(marker, 0x00 | 0x02..=0xBF | SOI)
}

fn be16(buf: &[u8], at: usize) -> Option<u16> {
    let hi = *buf.get(at)?;
    let lo = *buf.get(at.checked_add(1)?)?;
    Some(u16::from_be_bytes([hi, lo]))
}

/// A marker found where one must be: its code, where its `FF` is, and
/// where its code byte is (fill bytes may sit between the two).
struct Marker {
    code: u8,
    at: usize,
    code_at: usize,
}

/// Resumable JPEG structure walker.
///
/// `pos` only moves past things that are fully present, so calling
/// [`Scanner::run`] again on the same buffer with more bytes appended picks
/// up where the last call stopped instead of walking from the start.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scanner {
    pos: usize,
    in_entropy: bool,
    size: Option<(u16, u16)>,
    seen_scan: bool,
}

impl Scanner {
    /// Continues walking `buf`, which must be the same bytes as before plus
    /// possibly more at the end.
    pub(crate) fn run(&mut self, buf: &[u8]) -> Scan {
        // Position 0 means the SOI has not been checked yet.
        if self.pos == 0
            && let ControlFlow::Break(scan) = self.check_soi(buf)
        {
            return scan;
        }
        loop {
            let step = if self.in_entropy {
                self.skip_entropy(buf)
            } else {
                self.next_segment(buf)
            };
            if let ControlFlow::Break(scan) = step {
                return scan;
            }
        }
    }

    fn check_soi(&mut self, buf: &[u8]) -> ControlFlow<Scan> {
        match buf {
            [0xFF, SOI, ..] => {
                self.pos = 2;
                ControlFlow::Continue(())
            }
            // A prefix of SOI may still become a JPEG.
            [] | [0xFF] => ControlFlow::Break(Scan::Incomplete),
            _ => ControlFlow::Break(Scan::Invalid(JpegError::NoSoi)),
        }
    }

    /// Skips entropy-coded data up to the next marker that ends the scan.
    fn skip_entropy(&mut self, buf: &[u8]) -> ControlFlow<Scan> {
        loop {
            let rest = buf.get(self.pos..).unwrap_or_default();
            let Some(off) = memchr::memchr(0xFF, rest) else {
                self.pos = buf.len();
                return ControlFlow::Break(Scan::Incomplete);
            };
            let ff = self.pos + off;
            match buf.get(ff + 1) {
                // Cannot tell yet whether this FF starts a marker.
                None => {
                    self.pos = ff;
                    return ControlFlow::Break(Scan::Incomplete);
                }
                // Stuffed FF and restart markers belong to the scan data.
                Some(0x00 | 0xD0..=0xD7) => self.pos = ff + 2,
                // Fill byte: the next FF may begin the marker.
                Some(0xFF) => self.pos = ff + 1,
                Some(_) => {
                    self.pos = ff;
                    self.in_entropy = false;
                    return ControlFlow::Continue(());
                }
            }
        }
    }

    /// Reads the marker at `pos`, skipping any `FF` fill bytes before it.
    fn read_marker(&self, buf: &[u8]) -> Result<Marker, Scan> {
        match buf.get(self.pos) {
            None => return Err(Scan::Incomplete),
            Some(0xFF) => {}
            Some(_) => return Err(Scan::Invalid(JpegError::ExpectedMarker { at: self.pos })),
        }
        let mut code_at = self.pos + 1;
        while buf.get(code_at) == Some(&0xFF) {
            code_at += 1;
        }
        match buf.get(code_at) {
            None => Err(Scan::Incomplete),
            Some(&code) => Ok(Marker {
                code,
                at: code_at - 1,
                code_at,
            }),
        }
    }

    /// Handles one marker outside entropy-coded data.
    fn next_segment(&mut self, buf: &[u8]) -> ControlFlow<Scan> {
        let marker = match self.read_marker(buf) {
            Ok(marker) => marker,
            Err(scan) => return ControlFlow::Break(scan),
        };
        let code = marker.code;
        if code == EOI {
            return ControlFlow::Break(self.finish(marker));
        }
        if is_forbidden(code) {
            let err = JpegError::UnexpectedMarker {
                marker: code,
                at: marker.at,
            };
            return ControlFlow::Break(Scan::Invalid(err));
        }
        if is_standalone(code) {
            self.pos = marker.code_at + 1;
            return ControlFlow::Continue(());
        }
        self.segment(buf, &marker)
    }

    /// EOI: the image is complete if it had a size and at least one scan.
    fn finish(&self, marker: Marker) -> Scan {
        let Some((width, height)) = self.size else {
            return Scan::Invalid(JpegError::NoFrameHeader { at: marker.at });
        };
        if !self.seen_scan {
            return Scan::Invalid(JpegError::NoScan { at: marker.at });
        }
        Scan::Complete(JpegInfo {
            width,
            height,
            len: marker.code_at + 1,
        })
    }

    /// A marker with a length field: skip the whole segment by its length,
    /// picking up the image size from SOFn and entering scan data after SOS.
    fn segment(&mut self, buf: &[u8], marker: &Marker) -> ControlFlow<Scan> {
        let len_at = marker.code_at + 1;
        let Some(len) = be16(buf, len_at) else {
            return ControlFlow::Break(Scan::Incomplete);
        };
        if len < 2 {
            let err = JpegError::BadSegmentLength { at: marker.at };
            return ControlFlow::Break(Scan::Invalid(err));
        }
        let end = len_at + usize::from(len);
        if end > buf.len() {
            return ControlFlow::Break(Scan::Incomplete);
        }
        if is_sof(marker.code) {
            // Precision (1 byte), then height and width.
            match (be16(buf, len_at + 3), be16(buf, len_at + 5)) {
                (Some(h), Some(w)) if len >= 8 => self.size = Some((w, h)),
                _ => {
                    let err = JpegError::BadFrameHeader { at: marker.at };
                    return ControlFlow::Break(Scan::Invalid(err));
                }
            }
        }
        if marker.code == SOS {
            if self.size.is_none() {
                let err = JpegError::NoFrameHeader { at: marker.at };
                return ControlFlow::Break(Scan::Invalid(err));
            }
            self.seen_scan = true;
            self.in_entropy = true;
        }
        self.pos = end;
        ControlFlow::Continue(())
    }
}

/// Walks the JPEG at the start of `buf` and tells whether it is complete.
///
/// Bytes after the EOI marker are not looked at, so this also finds the
/// first frame in a buffer holding several.
pub fn scan(buf: &[u8]) -> Scan {
    Scanner::default().run(buf)
}

/// Most bytes after EOI that [`check`] tolerates as padding. Some encoders
/// and transports pad frames to an even or aligned size.
const MAX_PADDING: usize = 16;

/// Checks that `buf` is exactly one complete JPEG image.
///
/// A few zero or whitespace bytes after EOI are accepted as padding.
pub fn check(buf: &[u8]) -> Result<JpegInfo, JpegError> {
    match scan(buf) {
        Scan::Complete(info) => {
            let tail = buf.get(info.len..).unwrap_or_default();
            let padding = |b: &u8| matches!(b, 0 | b' ' | b'\t' | b'\r' | b'\n');
            if tail.len() > MAX_PADDING || !tail.iter().all(padding) {
                return Err(JpegError::TrailingData { len: tail.len() });
            }
            Ok(info)
        }
        Scan::Incomplete => Err(JpegError::Truncated),
        Scan::Invalid(err) => Err(err),
    }
}

/// Header facts needed to decide about Huffman tables.
struct Header {
    has_dht: bool,
    /// Offset of the first SOS marker.
    sos_at: usize,
}

/// Walks the segments before the first SOS. `None` when the data is not a
/// JPEG or ends before the first SOS.
fn read_header(buf: &[u8]) -> Option<Header> {
    let mut scanner = Scanner::default();
    if scanner.check_soi(buf).is_break() {
        return None;
    }
    let mut has_dht = false;
    loop {
        let marker = scanner.read_marker(buf).ok()?;
        has_dht |= marker.code == DHT;
        if marker.code == SOS {
            return Some(Header {
                has_dht,
                sos_at: marker.at,
            });
        }
        // Stops on EOI, bad markers, missing bytes or a bad segment.
        if marker.code == EOI || scanner.next_segment(buf).is_break() {
            return None;
        }
    }
}

/// Whether the JPEG defines any Huffman table before its first scan.
pub fn has_huffman_tables(buf: &[u8]) -> bool {
    read_header(buf).is_some_and(|h| h.has_dht)
}

// The "typical" Huffman tables of ITU-T T.81 Annex K.3 (tables K.3 to K.6).
// Motion-JPEG from UVC webcams omits DHT and relies on these (as the AVI1
// MJPEG convention specifies). Each table is 16 code-length counts followed
// by the symbol values.

const DC_LUMA_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
const DC_CHROMA_BITS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

const AC_LUMA_BITS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D];
const AC_LUMA_VALUES: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52, 0xD1, 0xF0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
    0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5,
    0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2,
    0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];

const AC_CHROMA_BITS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
const AC_CHROMA_VALUES: [u8; 162] = [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
    0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33, 0x52, 0xF0,
    0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18, 0x19, 0x1A, 0x26,
    0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5,
    0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3,
    0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA,
    0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];

/// The four standard tables as one DHT segment, marker included.
fn standard_dht_segment() -> Vec<u8> {
    // (table class << 4 | destination id, code counts, symbols)
    let tables: [(u8, &[u8], &[u8]); 4] = [
        (0x00, &DC_LUMA_BITS, &DC_VALUES),
        (0x10, &AC_LUMA_BITS, &AC_LUMA_VALUES),
        (0x01, &DC_CHROMA_BITS, &DC_VALUES),
        (0x11, &AC_CHROMA_BITS, &AC_CHROMA_VALUES),
    ];
    let body: usize = tables.iter().map(|(_, b, v)| 1 + b.len() + v.len()).sum();
    // The length field counts itself; 418 for these tables, well below u16::MAX.
    let len = u16::try_from(body + 2).unwrap_or(u16::MAX);
    let mut seg = Vec::with_capacity(body + 4);
    seg.extend_from_slice(&[0xFF, DHT]);
    seg.extend_from_slice(&len.to_be_bytes());
    for (id, bits, values) in tables {
        seg.push(id);
        seg.extend_from_slice(bits);
        seg.extend_from_slice(values);
    }
    seg
}

/// Returns the frame with the standard Huffman tables inserted before the
/// first SOS, so that ordinary decoders (browsers) can display it.
///
/// `None` when the frame already has DHT (keep the original bytes) or is not
/// a JPEG with a readable header.
pub fn with_standard_huffman_tables(buf: &[u8]) -> Option<Vec<u8>> {
    let header = read_header(buf)?;
    if header.has_dht {
        return None;
    }
    let (head, tail) = buf.split_at_checked(header.sos_at)?;
    let dht = standard_dht_segment();
    let mut out = Vec::with_capacity(buf.len() + dht.len());
    out.extend_from_slice(head);
    out.extend_from_slice(&dht);
    out.extend_from_slice(tail);
    Some(out)
}

/// Splits a concatenated stream of JPEG images (as written by
/// `ffmpeg -f mjpeg -` or a camera tool) into frames.
///
/// Frames are split off the receive buffer without copying. Bytes outside
/// frames are skipped, an invalid frame is reported once and skipped, and a
/// frame that never ends is dropped once it exceeds `max_frame` bytes.
#[derive(Debug)]
pub struct JpegSplitter {
    buf: BytesMut,
    max_frame: usize,
    skipped: u64,
    /// Progress through the frame at the start of `buf`, when `buf` starts
    /// with SOI.
    scanner: Scanner,
}

impl JpegSplitter {
    /// `max_frame` bounds the memory held for one unfinished frame.
    pub fn new(max_frame: usize) -> Self {
        JpegSplitter {
            buf: BytesMut::new(),
            max_frame,
            skipped: 0,
            scanner: Scanner::default(),
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes discarded so far: garbage between frames, invalid frames and
    /// oversized frames.
    pub fn skipped_bytes(&self) -> u64 {
        self.skipped
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Returns the next complete frame, an error for a frame that had to be
    /// dropped, or `None` when more data is needed.
    pub fn next_frame(&mut self) -> Option<Result<Bytes, JpegError>> {
        if !self.sync() {
            return None;
        }
        match self.scanner.run(&self.buf) {
            Scan::Complete(info) => {
                self.scanner = Scanner::default();
                Some(Ok(self.buf.split_to(info.len).freeze()))
            }
            Scan::Incomplete if self.buf.len() > self.max_frame => {
                let limit = self.max_frame;
                self.discard(self.buf.len());
                Some(Err(JpegError::TooLarge { limit }))
            }
            Scan::Incomplete => None,
            Scan::Invalid(err) => {
                // Drop the SOI so the next search finds the following frame.
                self.discard(2);
                Some(Err(err))
            }
        }
    }

    /// Makes `buf` start at an SOI marker, dropping what comes before it.
    /// Returns false when no SOI is buffered yet.
    fn sync(&mut self) -> bool {
        if self.scanner.pos > 0 {
            return true; // already inside a frame
        }
        match memchr::memmem::find(&self.buf, &[0xFF, SOI]) {
            Some(at) => {
                self.discard(at);
                true
            }
            None => {
                // Keep a final FF: it may be the first half of the next SOI.
                let keep = usize::from(self.buf.last() == Some(&0xFF));
                self.discard(self.buf.len() - keep);
                false
            }
        }
    }

    fn discard(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        self.buf.advance(n);
        self.skipped += n as u64;
        self.scanner = Scanner::default();
    }
}

/// Small real JPEGs for tests in this crate.
#[cfg(test)]
pub(crate) mod testing {
    use jpeg_encoder::{ColorType, Encoder};

    /// Encodes a deterministic gradient picture.
    pub(crate) fn encode(width: u16, height: u16, gray: bool, progressive: bool) -> Vec<u8> {
        let (color, channels) = if gray {
            (ColorType::Luma, 1)
        } else {
            (ColorType::Rgb, 3)
        };
        let pixels: Vec<u8> = (0..usize::from(width) * usize::from(height) * channels)
            .map(|i| ((i * 7) ^ (i / 13)) as u8)
            .collect();
        let mut out = Vec::new();
        let mut encoder = Encoder::new(&mut out, 80);
        encoder.set_progressive(progressive);
        encoder
            .encode(&pixels, width, height, color)
            .expect("encode test image");
        out
    }

    /// A small colour JPEG.
    pub(crate) fn small(seed: u16) -> Vec<u8> {
        encode(8 + seed % 24, 8 + seed % 17, seed.is_multiple_of(3), false)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{encode, small};
    use super::*;
    use proptest::prelude::*;

    fn decode(jpeg: &[u8]) -> Result<Vec<u8>, String> {
        let cursor = zune_jpeg::zune_core::bytestream::ZCursor::new(jpeg);
        zune_jpeg::JpegDecoder::new(cursor)
            .decode()
            .map_err(|e| format!("{e:?}"))
    }

    /// Positions and lengths (marker included) of the segments before SOS.
    fn segments(jpeg: &[u8]) -> Vec<(u8, usize, usize)> {
        let mut out = Vec::new();
        let mut pos = 2;
        while jpeg[pos + 1] != SOS {
            let len = usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
            out.push((jpeg[pos + 1], pos, len + 2));
            pos += len + 2;
        }
        out
    }

    fn without_dht(jpeg: &[u8]) -> Vec<u8> {
        let mut out = jpeg.to_vec();
        for (_, at, len) in segments(jpeg).into_iter().rev() {
            if jpeg[at + 1] == DHT {
                out.drain(at..at + len);
            }
        }
        out
    }

    /// Inserts an APP1 EXIF segment holding a complete thumbnail JPEG.
    fn with_exif_thumbnail(jpeg: &[u8], thumb: &[u8]) -> Vec<u8> {
        let mut payload = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x02\x01\0\x04\0\0\0\x01".to_vec();
        payload.extend_from_slice(thumb);
        payload.extend_from_slice(b"\0\0\0\0");
        let len = u16::try_from(payload.len() + 2).unwrap();
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    fn complete(width: u16, height: u16, len: usize) -> Scan {
        Scan::Complete(JpegInfo { width, height, len })
    }

    #[test]
    fn encoder_output_is_complete() {
        for (w, h) in [(1, 1), (8, 8), (17, 33), (64, 48), (100, 3)] {
            for gray in [false, true] {
                for progressive in [false, true] {
                    let jpeg = encode(w, h, gray, progressive);
                    assert_eq!(scan(&jpeg), complete(w, h, jpeg.len()), "{w}x{h}");
                    assert_eq!(check(&jpeg).map(|i| i.len), Ok(jpeg.len()));
                }
            }
        }
    }

    #[test]
    fn progressive_has_several_scans() {
        let jpeg = encode(32, 32, false, true);
        let scans = jpeg.windows(2).filter(|w| w == &[0xFF, SOS]).count();
        assert!(scans > 1, "expected a multi-scan image");
        assert_eq!(scan(&jpeg), complete(32, 32, jpeg.len()));
    }

    #[test]
    fn scan_stops_at_first_eoi() {
        let first = small(1);
        let mut two = first.clone();
        two.extend_from_slice(&small(2));
        assert_eq!(scan(&two), complete(9, 9, first.len()));
        assert!(matches!(check(&two), Err(JpegError::TrailingData { .. })));
    }

    #[test]
    fn exif_thumbnail_is_skipped_by_length() {
        let thumb = encode(8, 8, false, false);
        let jpeg = with_exif_thumbnail(&encode(40, 30, false, false), &thumb);
        assert_eq!(scan(&jpeg), complete(40, 30, jpeg.len()));
        decode(&jpeg).expect("still decodable");
    }

    #[test]
    fn every_truncation_is_incomplete() {
        let thumb = encode(8, 8, true, false);
        let images = [
            with_exif_thumbnail(&encode(24, 16, false, false), &thumb),
            encode(16, 16, false, true),
            encode(9, 7, true, false),
        ];
        for jpeg in images {
            for cut in 0..jpeg.len() {
                assert_eq!(scan(&jpeg[..cut]), Scan::Incomplete, "cut at {cut}");
                assert_eq!(check(&jpeg[..cut]), Err(JpegError::Truncated));
            }
        }
    }

    #[test]
    fn restart_markers_and_fill_bytes_are_data() {
        let pixels = vec![128u8; 64 * 64 * 3];
        let mut jpeg = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, 90);
        encoder.set_restart_interval(1);
        encoder
            .encode(&pixels, 64, 64, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        assert!(jpeg.windows(2).any(|w| w == [0xFF, 0xD0]));
        // Fill bytes before EOI and before a header marker.
        let eoi = jpeg.len() - 2;
        jpeg.splice(eoi..eoi, [0xFF, 0xFF, 0xFF]);
        jpeg.splice(2..2, [0xFF, 0xFF]);
        assert_eq!(scan(&jpeg), complete(64, 64, jpeg.len()));
    }

    #[test]
    fn invalid_inputs() {
        let jpeg = small(4);
        let invalid = |bytes: &[u8]| match scan(bytes) {
            Scan::Invalid(err) => err,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert_eq!(invalid(b"GIF89a"), JpegError::NoSoi);
        assert_eq!(
            invalid(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01]),
            JpegError::BadSegmentLength { at: 2 }
        );
        assert_eq!(
            invalid(&[0xFF, 0xD8, 0x12]),
            JpegError::ExpectedMarker { at: 2 }
        );
        assert_eq!(
            invalid(&[0xFF, 0xD8, 0xFF, 0xD8]),
            JpegError::UnexpectedMarker { marker: SOI, at: 2 }
        );
        assert_eq!(
            invalid(&[0xFF, 0xD8, 0xFF, 0xD9]),
            JpegError::NoFrameHeader { at: 2 }
        );
        let sos = [0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0x11, 0xFF, 0xD9];
        assert_eq!(invalid(&sos), JpegError::NoFrameHeader { at: 2 });
        let short_sof = [0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x04, 0x08, 0x00];
        assert_eq!(invalid(&short_sof), JpegError::BadFrameHeader { at: 2 });
        // A new SOI inside scan data: the frame was cut short.
        let mut cut = jpeg[..jpeg.len() - 20].to_vec();
        cut.extend_from_slice(&jpeg);
        assert!(matches!(
            invalid(&cut),
            JpegError::UnexpectedMarker { marker: SOI, .. }
        ));
    }

    #[test]
    fn check_allows_only_padding() {
        let mut jpeg = small(5);
        let len = jpeg.len();
        jpeg.extend_from_slice(b"\r\n\0\0");
        assert_eq!(check(&jpeg).map(|i| i.len), Ok(len));
        jpeg.push(b'x');
        assert_eq!(check(&jpeg), Err(JpegError::TrailingData { len: 5 }));
        jpeg.truncate(len);
        jpeg.extend_from_slice(&[0; 100]);
        assert_eq!(check(&jpeg), Err(JpegError::TrailingData { len: 100 }));
    }

    #[test]
    fn errors_have_short_messages() {
        assert_eq!(JpegError::NoSoi.to_string(), "no SOI marker");
        assert_eq!(JpegError::Truncated.to_string(), "truncated");
        assert_eq!(
            JpegError::BadSegmentLength { at: 7 }.to_string(),
            "bad segment length at byte 7"
        );
    }

    #[test]
    fn standard_tables_match_the_encoder() {
        // jpeg-encoder writes the Annex K tables, one DHT segment each.
        let jpeg = encode(16, 16, false, false);
        let ours = standard_dht_segment();
        assert_eq!(ours.len(), 420);
        for (marker, at, len) in segments(&jpeg) {
            if marker == DHT {
                let table = &jpeg[at + 4..at + len];
                assert!(ours.windows(table.len()).any(|w| w == table));
            }
        }
    }

    #[test]
    fn inserted_tables_restore_the_image() {
        for gray in [false, true] {
            let jpeg = encode(40, 24, gray, false);
            assert!(has_huffman_tables(&jpeg));
            assert_eq!(with_standard_huffman_tables(&jpeg), None);
            let original = decode(&jpeg).unwrap();

            let stripped = without_dht(&jpeg);
            assert!(!has_huffman_tables(&stripped));
            assert_eq!(check(&stripped).map(|i| i.width), Ok(40));
            assert_ne!(decode(&stripped).ok(), Some(original.clone()));

            let fixed = with_standard_huffman_tables(&stripped).unwrap();
            assert!(has_huffman_tables(&fixed));
            assert_eq!(check(&fixed).map(|i| i.len), Ok(fixed.len()));
            assert_eq!(decode(&fixed).unwrap(), original);
        }
    }

    #[test]
    fn tables_need_a_jpeg() {
        assert_eq!(with_standard_huffman_tables(b"not a jpeg"), None);
        assert_eq!(with_standard_huffman_tables(&[0xFF, 0xD8, 0xFF]), None);
        assert!(!has_huffman_tables(&[]));
    }

    /// Feeds `stream` in chunks of the given sizes (cycled) and collects
    /// everything the splitter yields.
    fn split(
        stream: &[u8],
        chunks: &[usize],
        max_frame: usize,
    ) -> (Vec<Result<Bytes, JpegError>>, u64) {
        let mut splitter = JpegSplitter::new(max_frame);
        let mut out = Vec::new();
        let mut rest = stream;
        let mut sizes = chunks.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).clamp(1, rest.len());
            splitter.push(&rest[..n]);
            rest = &rest[n..];
            while let Some(item) = splitter.next_frame() {
                out.push(item);
            }
        }
        (out, splitter.skipped_bytes())
    }

    fn frames_with_garbage() -> (Vec<u8>, Vec<Vec<u8>>, u64) {
        let thumb = encode(8, 8, false, false);
        let frames = vec![
            small(1),
            with_exif_thumbnail(&small(2), &thumb),
            encode(20, 20, false, true),
            small(3),
        ];
        let garbage: [&[u8]; 4] = [b"junk\xFF", b"", b"\r\n--x\r\n\xFF\xFF", b"\0"];
        let mut stream = Vec::new();
        for (frame, junk) in frames.iter().zip(garbage) {
            stream.extend_from_slice(junk);
            stream.extend_from_slice(frame);
        }
        let skipped = garbage.iter().map(|g| g.len() as u64).sum();
        (stream, frames, skipped)
    }

    #[test]
    fn splitter_finds_frames_between_garbage() {
        let (stream, frames, skipped) = frames_with_garbage();
        for chunks in [&[usize::MAX][..], &[1], &[2, 3, 700], &[4096, 1, 13]] {
            let (out, skip) = split(&stream, chunks, 1 << 20);
            let out: Vec<_> = out.into_iter().map(|f| f.unwrap().to_vec()).collect();
            assert_eq!(out, frames);
            assert_eq!(skip, skipped);
        }
    }

    #[test]
    fn splitter_reports_a_bad_frame_once() {
        let good = small(6);
        let mut stream = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x00, 1, 2, 3];
        stream.extend_from_slice(&good);
        let (out, skipped) = split(&stream, &[3], 1 << 20);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], Err(JpegError::BadSegmentLength { at: 2 }));
        assert_eq!(out[1].as_deref(), Ok(&good[..]));
        assert_eq!(skipped, 9);
    }

    #[test]
    fn splitter_bounds_an_endless_frame() {
        let mut splitter = JpegSplitter::new(1000);
        let header = encode(8, 8, false, false);
        splitter.push(&header[..header.len() - 2]); // no EOI
        let mut errors = 0;
        for _ in 0..100 {
            splitter.push(&[0x55; 100]);
            while let Some(item) = splitter.next_frame() {
                assert_eq!(item, Err(JpegError::TooLarge { limit: 1000 }));
                errors += 1;
            }
            assert!(splitter.buffered() <= 1100);
        }
        assert_eq!(errors, 1);
        splitter.push(&header);
        assert_eq!(splitter.next_frame().unwrap().as_deref(), Ok(&header[..]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut prefixed = vec![0xFF, 0xD8];
            prefixed.extend_from_slice(&data);
            for buf in [&data[..], &prefixed[..]] {
                let _ = scan(buf);
                let _ = check(buf);
                let _ = has_huffman_tables(buf);
                let _ = with_standard_huffman_tables(buf);
                let _ = split(buf, &[7, 1, 64], 256);
            }
        }

        #[test]
        fn mutated_jpegs_never_panic(pos in 0usize..2000, byte in any::<u8>(), cut in 0usize..2000) {
            let mut jpeg = small(7);
            let len = jpeg.len();
            jpeg[pos % len] = byte;
            jpeg.truncate(cut % (len + 1));
            let _ = scan(&jpeg);
            let _ = with_standard_huffman_tables(&jpeg);
            let _ = split(&jpeg, &[5], 1 << 16);
        }

        #[test]
        fn any_chunking_yields_the_same_frames(chunks in proptest::collection::vec(1usize..300, 1..20)) {
            let (stream, frames, skipped) = frames_with_garbage();
            let (out, skip) = split(&stream, &chunks, 1 << 20);
            let out: Vec<_> = out.into_iter().map(|f| f.map(|b| b.to_vec())).collect();
            prop_assert_eq!(out, frames.into_iter().map(Ok).collect::<Vec<_>>());
            prop_assert_eq!(skip, skipped);
        }
    }
}
