//! Parsing of MJPEG-over-HTTP bodies (`multipart/x-mixed-replace`).
//!
//! Network cameras and streaming servers (mjpg-streamer, µStreamer, ffmpeg's
//! `mpjpeg` muxer, countless Flask and ESP32 examples) send an endless
//! multipart body with one JPEG per part. They disagree on details: line
//! endings, whether `Content-Length` is sent, whether the boundary precedes
//! or follows each frame, whether the declared boundary already carries the
//! `--` prefix. [`MultipartParser`] accepts all of these incrementally and
//! hands out part bodies split from its receive buffer without copying.
//! It reads a body whose transfer coding (chunked) the HTTP client has
//! already removed.

use std::fmt;
use std::ops::ControlFlow;

use bytes::{Buf, Bytes, BytesMut};
use memchr::memmem;

use crate::jpeg::{Scan, Scanner};

/// Extracts the multipart boundary from a `Content-Type` header value.
///
/// The value is returned as declared (quotes removed). A boundary declared
/// with a leading `--` is kept as is; [`MultipartParser`] accepts delimiter
/// lines both with and without an extra `--` for it.
pub fn boundary_from_content_type(ct: &str) -> Option<String> {
    ct.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            // Quoted: up to the closing quote (boundaries never contain one).
            Some(quoted) => quoted.split('"').next().unwrap_or_default(),
            None => value,
        };
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Header fields in the order received; values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Part {
    /// The value of the first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The part's `Content-Type`, if it declared one.
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }
}

/// Why a part was dropped. The parser continues at the next delimiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartError {
    /// The part body is larger than the configured limit.
    PartTooLarge { limit: usize },
    /// The part header section is larger than [`MAX_HEADER_BYTES`].
    HeadersTooLarge,
    /// The part header section is not valid HTTP header syntax.
    BadHeaders(String),
}

impl fmt::Display for MultipartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MultipartError::PartTooLarge { limit } => {
                write!(f, "part larger than {limit} bytes")
            }
            MultipartError::HeadersTooLarge => {
                write!(f, "part headers longer than {MAX_HEADER_BYTES} bytes")
            }
            MultipartError::BadHeaders(why) => write!(f, "bad part headers: {why}"),
        }
    }
}

impl std::error::Error for MultipartError {}

/// Limit on one part's header section.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Limit on the number of header fields in one part.
const MAX_HEADERS: usize = 64;
/// A delimiter line longer than this after the boundary is not a delimiter.
const MAX_DELIMITER_TAIL: usize = 128;

/// A delimiter line found in the buffer.
#[derive(Debug, Clone, Copy)]
struct Delimiter {
    /// Where the line starts.
    start: usize,
    /// Just past the line's terminating `\n`.
    end: usize,
    /// `--boundary--`: no more parts follow.
    closing: bool,
}

/// Result of looking for a delimiter line.
enum Search {
    Found(Delimiter),
    /// None yet; searching can resume at this offset once more data arrives.
    NotYet(usize),
}

/// Whether the text after the boundary makes the line a delimiter.
enum Tail {
    Delimiter { closing: bool, end: usize },
    NotDelimiter,
    NeedMore,
}

#[derive(Debug)]
enum State {
    /// Skipping a preamble or junk up to the next delimiter line.
    Seek,
    /// After a delimiter line, reading the part headers.
    Headers,
    /// Reading the body of a part.
    Body(Body),
    /// The closing delimiter was seen.
    Done,
}

#[derive(Debug)]
struct Body {
    headers: Vec<(String, String)>,
    /// From `Content-Length`; otherwise the body ends at a delimiter line or
    /// at the end of the JPEG it holds.
    len: Option<usize>,
    /// Where the delimiter search resumes.
    searched: usize,
    /// Progress through a JPEG body without `Content-Length`.
    jpeg: Scanner,
}

/// Incremental parser for `multipart/x-mixed-replace` bodies.
#[derive(Debug)]
pub struct MultipartParser {
    buf: BytesMut,
    /// The shortest accepted delimiter text: `--boundary`, or the boundary
    /// itself when it was declared with a leading `--`.
    needle: Vec<u8>,
    /// The boundary started with `--`, so `--` + needle is also accepted.
    dashed: bool,
    max_part: usize,
    state: State,
}

impl MultipartParser {
    /// `boundary` as declared in the `Content-Type` header; parts larger
    /// than `max_part` bytes are dropped with an error.
    pub fn new(boundary: &str, max_part: usize) -> Self {
        let dashed = boundary.starts_with("--") && boundary.len() > 2;
        let needle = if dashed {
            boundary.as_bytes().to_vec()
        } else {
            format!("--{boundary}").into_bytes()
        };
        MultipartParser {
            buf: BytesMut::new(),
            needle,
            dashed,
            max_part,
            state: State::Seek,
        }
    }

    /// Appends received body bytes.
    pub fn push(&mut self, data: &[u8]) {
        // After the closing delimiter everything is epilogue.
        if !matches!(self.state, State::Done) {
            self.buf.extend_from_slice(data);
        }
    }

    /// Whether the closing delimiter has been seen.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Bytes buffered and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The bytes buffered and not yet consumed, e.g. to check what follows
    /// a part or to hand the rest of a body on.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Returns the next complete part, an error for a dropped part, or
    /// `None` when more data is needed (or the body has ended).
    pub fn next_part(&mut self) -> Option<Result<Part, MultipartError>> {
        loop {
            let step = match &mut self.state {
                State::Seek => self.seek(),
                State::Headers => self.headers(),
                State::Body(_) => self.body(),
                State::Done => return None,
            };
            if let ControlFlow::Break(item) = step {
                return item;
            }
        }
    }

    /// Skips to just after the next delimiter line, wherever it is.
    fn seek(&mut self) -> ControlFlow<Option<Result<Part, MultipartError>>> {
        match self.find_delimiter(0, false) {
            Search::Found(delim) => {
                self.buf.advance(delim.end);
                self.state = self.after_delimiter(delim);
                ControlFlow::Continue(())
            }
            Search::NotYet(resume) => {
                // Nothing before `resume` can start a delimiter: drop it so
                // junk does not accumulate.
                self.buf.advance(resume);
                ControlFlow::Break(None)
            }
        }
    }

    fn after_delimiter(&self, delim: Delimiter) -> State {
        if delim.closing {
            State::Done
        } else {
            State::Headers
        }
    }

    /// Parses the header section of a part.
    fn headers(&mut self) -> ControlFlow<Option<Result<Part, MultipartError>>> {
        // Some cameras omit the headers and the blank line entirely.
        match self.buf.first_chunk::<2>() {
            None => return ControlFlow::Break(None),
            Some([0xFF, 0xD8]) => {
                self.state = State::Body(Body::new(Vec::new()));
                return ControlFlow::Continue(());
            }
            Some(_) => {}
        }
        // Parse at most the limit so the outcome does not depend on how much
        // happens to be buffered.
        let window = self.buf.len().min(MAX_HEADER_BYTES);
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let parsed = match httparse::parse_headers(&self.buf[..window], &mut fields) {
            Ok(httparse::Status::Complete((used, fields))) => (used, collect_headers(fields)),
            Ok(httparse::Status::Partial) if window < MAX_HEADER_BYTES => {
                return ControlFlow::Break(None);
            }
            Ok(httparse::Status::Partial) => {
                return self.fail(MultipartError::HeadersTooLarge);
            }
            Err(err) => return self.fail(MultipartError::BadHeaders(err.to_string())),
        };
        let (used, headers) = parsed;
        self.buf.advance(used);
        self.state = State::Body(Body::new(headers));
        ControlFlow::Continue(())
    }

    /// Reads a part body, by `Content-Length` when given.
    fn body(&mut self) -> ControlFlow<Option<Result<Part, MultipartError>>> {
        let State::Body(body) = &mut self.state else {
            return ControlFlow::Continue(());
        };
        match body.len {
            Some(len) if len > self.max_part => self.too_large(),
            Some(len) if self.buf.len() < len => ControlFlow::Break(None),
            // Exactly `len` bytes; whatever follows is skipped up to the
            // next delimiter.
            Some(len) => self.emit(len, 0, State::Seek),
            None => self.body_until_end(),
        }
    }

    /// A body without `Content-Length` ends at the next delimiter line, or
    /// as soon as the JPEG it holds is complete. The latter matters for
    /// servers that send the boundary before each frame: waiting for the
    /// next delimiter would delay every frame by one frame interval.
    fn body_until_end(&mut self) -> ControlFlow<Option<Result<Part, MultipartError>>> {
        let State::Body(body) = &mut self.state else {
            return ControlFlow::Continue(());
        };
        let jpeg_end = match body.jpeg.run(&self.buf) {
            Scan::Complete(info) => Some(info.len),
            Scan::Incomplete | Scan::Invalid(_) => None,
        };
        let from = body.searched;
        // A delimiter before the JPEG's end wins; it is always complete by
        // then because the EOI cannot sit inside a delimiter line.
        let search = match jpeg_end {
            Some(end) => self.find_delimiter_in(from, end),
            None => self.find_delimiter(from, true),
        };
        match (search, jpeg_end) {
            (Search::Found(delim), _) => self.body_before(delim),
            (Search::NotYet(_), Some(end)) if end > self.max_part => self.too_large(),
            (Search::NotYet(_), Some(end)) => self.emit(end, 0, State::Seek),
            (Search::NotYet(resume), None) => self.wait_for_body(resume),
        }
    }

    /// Emits the body that ends right before `delim`, minus the line break
    /// that belongs to the delimiter.
    fn body_before(
        &mut self,
        delim: Delimiter,
    ) -> ControlFlow<Option<Result<Part, MultipartError>>> {
        let body = &self.buf[..delim.start];
        let body = body.strip_suffix(b"\n").unwrap_or(body);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let len = body.len();
        if len > self.max_part {
            return self.too_large();
        }
        let next = self.after_delimiter(delim);
        self.emit(len, delim.end - len, next)
    }

    /// No end found yet: remember the search position, or give up on a
    /// body that has outgrown the limit.
    fn wait_for_body(
        &mut self,
        resume: usize,
    ) -> ControlFlow<Option<Result<Part, MultipartError>>> {
        // The line break before a delimiter (up to 2 bytes) is not body.
        if resume > self.max_part.saturating_add(2) {
            return self.too_large();
        }
        if let State::Body(body) = &mut self.state {
            body.searched = resume;
        }
        ControlFlow::Break(None)
    }

    /// Splits off `len` body bytes, drops `skip` more and moves to `next`.
    fn emit(
        &mut self,
        len: usize,
        skip: usize,
        next: State,
    ) -> ControlFlow<Option<Result<Part, MultipartError>>> {
        let State::Body(body) = std::mem::replace(&mut self.state, next) else {
            return ControlFlow::Continue(());
        };
        let bytes = self.buf.split_to(len.min(self.buf.len())).freeze();
        self.buf.advance(skip.min(self.buf.len()));
        ControlFlow::Break(Some(Ok(Part {
            headers: body.headers,
            body: bytes,
        })))
    }

    fn too_large(&mut self) -> ControlFlow<Option<Result<Part, MultipartError>>> {
        let limit = self.max_part;
        self.fail(MultipartError::PartTooLarge { limit })
    }

    /// Reports an error and resynchronises at the next delimiter. The
    /// buffer is searched from where the broken part began so the outcome
    /// does not depend on how the data was chunked.
    fn fail(&mut self, err: MultipartError) -> ControlFlow<Option<Result<Part, MultipartError>>> {
        self.state = State::Seek;
        ControlFlow::Break(Some(Err(err)))
    }

    /// Finds a delimiter whose line starts before `limit`.
    fn find_delimiter_in(&self, from: usize, limit: usize) -> Search {
        match self.find_delimiter(from, true) {
            Search::Found(d) if d.start < limit => Search::Found(d),
            _ => Search::NotYet(from),
        }
    }

    /// Looks for a delimiter line starting the search at `from`. When
    /// `anchored`, the boundary must begin a line (position 0 counts as a
    /// line start); otherwise it may appear anywhere, which tolerates junk.
    fn find_delimiter(&self, from: usize, anchored: bool) -> Search {
        let finder = memmem::Finder::new(&self.needle);
        let mut pos = from;
        while let Some(off) = self.buf.get(pos..).and_then(|rest| finder.find(rest)) {
            let at = pos + off;
            let start = if anchored {
                self.line_start(at)
            } else {
                Some(at)
            };
            if let Some(start) = start {
                match self.tail(at + self.needle.len()) {
                    Tail::Delimiter { closing, end } => {
                        return Search::Found(Delimiter {
                            start,
                            end,
                            closing,
                        });
                    }
                    Tail::NeedMore => return Search::NotYet(start),
                    Tail::NotDelimiter => {}
                }
            }
            pos = at + 1;
        }
        // A needle cut off at the end of the buffer starts in its last
        // needle.len() - 1 bytes.
        let keep = self.needle.len() - 1;
        Search::NotYet(
            self.buf
                .len()
                .saturating_sub(keep)
                .max(pos.min(self.buf.len())),
        )
    }

    /// Where the delimiter line holding the needle at `at` starts, if the
    /// needle (or `--` + needle for a dashed boundary) begins a line.
    fn line_start(&self, at: usize) -> Option<usize> {
        let begins_line = |i: usize| i == 0 || self.buf.get(i - 1) == Some(&b'\n');
        if begins_line(at) {
            return Some(at);
        }
        let dashes = at.checked_sub(2)?;
        let is_dashed = self.buf.get(dashes..at) == Some(b"--".as_slice());
        (self.dashed && is_dashed && begins_line(dashes)).then_some(dashes)
    }

    /// Classifies the rest of a line after the boundary at `from`: only
    /// whitespace, or `--` for the closing delimiter, may follow.
    fn tail(&self, from: usize) -> Tail {
        let rest = self.buf.get(from..).unwrap_or_default();
        let window = &rest[..rest.len().min(MAX_DELIMITER_TAIL)];
        let Some(nl) = memchr::memchr(b'\n', window) else {
            let plausible = window.iter().all(|b| b" \t\r-".contains(b));
            return if plausible && window.len() < MAX_DELIMITER_TAIL {
                Tail::NeedMore
            } else {
                Tail::NotDelimiter
            };
        };
        let line = &window[..nl];
        // The closing "--" must follow the boundary directly; only
        // whitespace (transport padding, the \r of CRLF) may follow that.
        let (closing, padding) = match line.strip_prefix(b"--") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        if padding.trim_ascii().is_empty() {
            let end = from + nl + 1;
            Tail::Delimiter { closing, end }
        } else {
            Tail::NotDelimiter
        }
    }
}

impl Body {
    fn new(headers: Vec<(String, String)>) -> Self {
        let len = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok());
        Body {
            headers,
            len,
            searched: 0,
            jpeg: Scanner::default(),
        }
    }
}

fn collect_headers(fields: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|h| {
            let value = String::from_utf8_lossy(h.value).trim().to_owned();
            (h.name.to_owned(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jpeg::testing::{encode, small};
    use proptest::prelude::*;

    const MAX: usize = 1 << 20;

    fn frames() -> Vec<Vec<u8>> {
        vec![small(1), small(2), encode(33, 17, false, true), small(3)]
    }

    /// Feeds `stream` in chunks (sizes cycled) and collects all results.
    fn parse(boundary: &str, stream: &[u8], chunks: &[usize]) -> Vec<Result<Part, MultipartError>> {
        let mut parser = MultipartParser::new(boundary, MAX);
        let mut out = Vec::new();
        let mut rest = stream;
        let mut sizes = chunks.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).clamp(1, rest.len());
            parser.push(&rest[..n]);
            rest = &rest[n..];
            while let Some(item) = parser.next_part() {
                out.push(item);
            }
        }
        out
    }

    fn bodies(parts: &[Result<Part, MultipartError>]) -> Vec<Vec<u8>> {
        parts
            .iter()
            .map(|p| p.as_ref().expect("part").body.to_vec())
            .collect()
    }

    /// (a) mjpg-streamer: boundary first, Content-Length, X-Timestamp.
    fn mjpg_streamer(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut s = Vec::new();
        for f in frames {
            s.extend_from_slice(b"--boundarydonotcross\r\nContent-Type: image/jpeg\r\n");
            s.extend_from_slice(format!("Content-Length: {}\r\n", f.len()).as_bytes());
            s.extend_from_slice(b"X-Timestamp: 123.456\r\n\r\n");
            s.extend_from_slice(f);
            s.extend_from_slice(b"\r\n");
        }
        s
    }

    /// (b) Flask: boundary first, no Content-Length.
    fn flask(frames: &[Vec<u8>], newline: &str) -> Vec<u8> {
        let mut s = Vec::new();
        for f in frames {
            let head = format!("--frame{newline}Content-Type: image/jpeg{newline}{newline}");
            s.extend_from_slice(head.as_bytes());
            s.extend_from_slice(f);
            s.extend_from_slice(newline.as_bytes());
        }
        s
    }

    #[test]
    fn boundary_parameter() {
        let b = |ct| boundary_from_content_type(ct);
        assert_eq!(
            b("multipart/x-mixed-replace; boundary=foo").as_deref(),
            Some("foo")
        );
        assert_eq!(
            b("multipart/x-mixed-replace;boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(
            b("multipart/x-mixed-replace; BOUNDARY=--foo").as_deref(),
            Some("--foo")
        );
        assert_eq!(
            b("multipart/x-mixed-replace; charset=x; Boundary = myboundary ; q=1").as_deref(),
            Some("myboundary")
        );
        assert_eq!(b("multipart/x-mixed-replace").as_deref(), None);
        assert_eq!(b("multipart/x-mixed-replace; boundary=").as_deref(), None);
        assert_eq!(b("image/jpeg").as_deref(), None);
    }

    #[test]
    fn mjpg_streamer_style() {
        let frames = frames();
        let parts = parse("boundarydonotcross", &mjpg_streamer(&frames), &[usize::MAX]);
        assert_eq!(bodies(&parts), frames);
        let part = parts[0].as_ref().unwrap();
        assert_eq!(part.content_type(), Some("image/jpeg"));
        assert_eq!(part.header("x-timestamp"), Some("123.456"));
        assert_eq!(
            part.header("CONTENT-LENGTH"),
            Some(&*frames[0].len().to_string())
        );
    }

    #[test]
    fn content_length_is_trusted() {
        // The body holds the boundary text; Content-Length still rules.
        let body = b"--x\r\n--x--\r\n".to_vec();
        let mut s = format!("--x\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        s.extend_from_slice(&body);
        s.extend_from_slice(b"\r\n--x--\r\n");
        let parts = parse("x", &s, &[usize::MAX]);
        assert_eq!(bodies(&parts), vec![body]);
    }

    #[test]
    fn flask_style_without_length() {
        let frames = frames();
        let parts = parse("frame", &flask(&frames, "\r\n"), &[usize::MAX]);
        assert_eq!(bodies(&parts), frames);
        assert_eq!(parts[3].as_ref().unwrap().header("content-length"), None);
    }

    #[test]
    fn jpeg_body_is_returned_without_waiting_for_the_next_boundary() {
        let frame = small(4);
        let mut parser = MultipartParser::new("frame", MAX);
        parser.push(&flask(std::slice::from_ref(&frame), "\r\n"));
        assert_eq!(parser.next_part().unwrap().unwrap().body, frame);
        assert!(parser.next_part().is_none());
    }

    #[test]
    fn non_jpeg_body_ends_at_delimiter() {
        let s = b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\n\r\nworld\n--b--\r\n";
        let parts = parse("b", s, &[usize::MAX]);
        assert_eq!(bodies(&parts), vec![b"hello".to_vec(), b"world".to_vec()]);
        // Same when fed byte by byte.
        assert_eq!(bodies(&parse("b", s, &[1])), bodies(&parts));
    }

    #[test]
    fn lf_only_line_endings() {
        let frames = frames();
        let parts = parse("frame", &flask(&frames, "\n"), &[usize::MAX]);
        assert_eq!(bodies(&parts), frames);
        assert_eq!(
            parts[0].as_ref().unwrap().content_type(),
            Some("image/jpeg")
        );

        let mut s = Vec::new();
        for f in &frames {
            let head = format!(
                "--b\nContent-Type: image/jpeg\nContent-Length: {}\n\n",
                f.len()
            );
            s.extend_from_slice(head.as_bytes());
            s.extend_from_slice(f);
            s.extend_from_slice(b"\n");
        }
        assert_eq!(bodies(&parse("b", &s, &[7])), frames);
    }

    #[test]
    fn boundary_after_each_frame_with_preamble() {
        let frames = frames();
        let mut s = b"This is a preamble.\r\n--b\r\n".to_vec();
        for f in &frames {
            s.extend_from_slice(b"Content-Type: image/jpeg\r\nX-Frame: 1\r\n\r\n");
            s.extend_from_slice(f);
            s.extend_from_slice(b"\r\n--b\r\n");
        }
        assert_eq!(bodies(&parse("b", &s, &[usize::MAX])), frames);
        assert_eq!(bodies(&parse("b", &s, &[13, 2])), frames);
    }

    #[test]
    fn closing_delimiter_ends_the_body() {
        let frames = frames();
        let mut s = mjpg_streamer(&frames[..2]);
        s.extend_from_slice(b"--boundarydonotcross--\r\nepilogue --boundarydonotcross\r\n");
        let mut parser = MultipartParser::new("boundarydonotcross", MAX);
        parser.push(&s);
        assert_eq!(parser.next_part().unwrap().unwrap().body, frames[0]);
        assert_eq!(parser.next_part().unwrap().unwrap().body, frames[1]);
        assert!(parser.next_part().is_none());
        assert!(parser.is_done());
    }

    #[test]
    fn dashed_boundary_accepts_both_delimiters() {
        let frames = frames();
        for prefix in ["--", ""] {
            let mut s = Vec::new();
            for f in &frames {
                s.extend_from_slice(format!("{prefix}--myboundary\r\n\r\n").as_bytes());
                s.extend_from_slice(b"not a jpeg: ");
                s.extend_from_slice(f);
                s.extend_from_slice(b"\r\n");
            }
            let parts = parse("--myboundary", &s, &[usize::MAX]);
            let expected: Vec<Vec<u8>> = frames
                .iter()
                .map(|f| [&b"not a jpeg: "[..], f].concat())
                .collect();
            // The last body waits for a delimiter that has not come yet.
            assert_eq!(bodies(&parts), expected[..frames.len() - 1]);
        }
    }

    #[test]
    fn boundary_lookalikes_are_body() {
        let s = b"--b\r\n\r\none\r\n--bb\r\n--b-x\r\n--b --\r\n--b\r\n\r\ntwo\r\n--b\r\n";
        let parts = parse("b", s, &[usize::MAX]);
        assert_eq!(parts.len(), 2);
        let one = &b"one\r\n--bb\r\n--b-x\r\n--b --"[..];
        assert_eq!(parts[0].as_ref().unwrap().body, one);
        assert_eq!(parts[1].as_ref().unwrap().body, &b"two"[..]);
    }

    #[test]
    fn oversized_part_is_dropped_and_parsing_resumes() {
        let big = vec![b'x'; 5000];
        let small = small(5);
        let mut s = b"--b\r\n\r\n".to_vec();
        s.extend_from_slice(&big);
        s.extend_from_slice(b"\r\n--b\r\nContent-Length: 999999\r\n\r\n");
        s.extend_from_slice(&big);
        s.extend_from_slice(b"\r\n--b\r\n\r\n");
        s.extend_from_slice(&small);
        s.extend_from_slice(b"\r\n--b\r\n");
        for chunks in [&[usize::MAX][..], &[100], &[1]] {
            let mut parser = MultipartParser::new("b", 1000);
            let mut out = Vec::new();
            for piece in s.chunks(chunks[0].min(s.len())) {
                parser.push(piece);
                while let Some(part) = parser.next_part() {
                    out.push(part.map(|p| p.body));
                }
                assert!(parser.buffered() < 1000 + 200);
            }
            let limit = Err(MultipartError::PartTooLarge { limit: 1000 });
            assert_eq!(
                out,
                vec![limit.clone(), limit, Ok(Bytes::from(small.clone()))]
            );
        }
    }

    #[test]
    fn endless_headers_are_an_error() {
        let mut parser = MultipartParser::new("b", MAX);
        parser.push(b"--b\r\n");
        let mut errors = Vec::new();
        for _ in 0..100 {
            parser
                .push(b"X-Junk: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
            parser.push(&[b'a'; 200]);
            while let Some(item) = parser.next_part() {
                errors.push(item.unwrap_err());
            }
        }
        assert_eq!(errors, vec![MultipartError::HeadersTooLarge]);
        assert!(parser.buffered() < 1000);
    }

    #[test]
    fn headers_may_be_missing() {
        let frame = small(6);
        let mut s = b"--b\r\n".to_vec();
        s.extend_from_slice(&frame);
        s.extend_from_slice(b"\r\n--b\r\n");
        let parts = parse("b", &s, &[usize::MAX]);
        assert_eq!(bodies(&parts), vec![frame]);
    }

    fn all_fixtures() -> Vec<(&'static str, Vec<u8>)> {
        let frames = frames();
        let mut after = b"preamble\r\n--b\r\n".to_vec();
        for f in &frames {
            after.extend_from_slice(b"Content-Type: image/jpeg\r\n\r\n");
            after.extend_from_slice(f);
            after.extend_from_slice(b"\r\n--b\r\n");
        }
        let mut text = b"--boundarydonotcross\nA: 1\n\nhello --boundarydonotcross\n".to_vec();
        text.extend_from_slice(&mjpg_streamer(&frames));
        vec![
            ("boundarydonotcross", mjpg_streamer(&frames)),
            ("frame", flask(&frames, "\r\n")),
            ("frame", flask(&frames, "\n")),
            ("b", after),
            ("boundarydonotcross", text),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_chunking_yields_the_same_parts(
            which in 0usize..5,
            chunks in proptest::collection::vec(1usize..400, 1..20),
        ) {
            let (boundary, stream) = all_fixtures().swap_remove(which);
            let whole = parse(boundary, &stream, &[usize::MAX]);
            prop_assert_eq!(parse(boundary, &stream, &chunks), whole);
        }

        #[test]
        fn random_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..800),
            chunks in proptest::collection::vec(1usize..100, 1..5),
        ) {
            let mut framed = b"--b\r\n".to_vec();
            framed.extend_from_slice(&data);
            for buf in [&data[..], &framed[..]] {
                let _ = parse("b", buf, &chunks);
                let _ = boundary_from_content_type(&String::from_utf8_lossy(buf));
            }
        }

        #[test]
        fn random_text_never_panics(text in "[-b\r\n :a-z0-9;=\"]{0,300}") {
            let _ = parse("b", text.as_bytes(), &[3, 1]);
            let _ = parse("--b", text.as_bytes(), &[1]);
            let _ = boundary_from_content_type(&text);
        }
    }
}
