//! The one reader of `/stream` bodies: the project's own
//! `MultipartParser` splits the parts, and every byte it consumed is
//! checked against the exact framing the server must send (delimiter,
//! the three header lines, body, CRLF), so junk, a stray blank line or
//! a wrong line ending fails the test; every JPEG is checked or decoded.

use crate::common::{BOUNDARY, decode, read_head};
use mjpegd::mjpeg::{MultipartParser, Part};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a read may wait for data the stream owes.
const READ_WAIT: Duration = Duration::from_secs(5);

/// One frame as received.
#[derive(Debug)]
pub struct Received {
    pub jpeg: Vec<u8>,
    /// `X-Timestamp` in seconds since the epoch.
    pub timestamp: f64,
    pub at: Instant,
}

/// Strict reader of a multipart body from any connection (TCP, TLS, unix
/// socket, a byte slice).
pub struct FrameReader<R> {
    pub io: R,
    parser: MultipartParser,
    /// Bytes given to the parser.
    pushed: usize,
    /// Bytes the exact framing of the parts read so far takes.
    framed: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader of the body on `io`; `already` holds body bytes read past
    /// the response head.
    pub fn new(io: R, already: &[u8]) -> Self {
        let mut parser = MultipartParser::new(BOUNDARY, 64 << 20);
        parser.push(already);
        FrameReader {
            io,
            parser,
            pushed: already.len(),
            framed: 0,
        }
    }

    /// The next frame, its JPEG decoded.
    pub async fn next_frame(&mut self) -> Received {
        let f = self.next_part(READ_WAIT).await.expect("data within 5 s");
        decode(&f.jpeg);
        f
    }

    /// Like `next_frame`, but checks the JPEG's structure (every segment,
    /// through EOI) instead of decoding it: cheaper, for tests with many
    /// clients where the test's own CPU use would otherwise dominate.
    pub async fn next_frame_checked(&mut self) -> Received {
        let f = self.next_part(READ_WAIT).await.expect("data within 5 s");
        check_jpeg(&f.jpeg);
        f
    }

    /// The next frame (structure checked), or `None` if none starts within
    /// `wait` (the stream may be still).
    pub async fn next_frame_within(&mut self, wait: Duration) -> Option<Received> {
        let f = self.next_part(wait).await?;
        check_jpeg(&f.jpeg);
        Some(f)
    }

    /// Reads frames (each decoded) until one satisfies `wanted`; fails
    /// naming `what` if none has after `within`.
    pub async fn next_frame_where(
        &mut self,
        within: Duration,
        what: &str,
        mut wanted: impl FnMut(&Received) -> bool,
    ) -> Received {
        let wait = crate::common::Patience::new(within, what);
        loop {
            let f = self.next_frame().await;
            if wanted(&f) {
                return f;
            }
            wait.not_yet();
        }
    }

    /// The JPEGs of the next `count` frames, each decoded.
    pub async fn frames(&mut self, count: usize) -> Vec<Vec<u8>> {
        let mut frames = Vec::with_capacity(count);
        while frames.len() < count {
            frames.push(self.next_frame().await.jpeg);
        }
        frames
    }

    /// The rest of the connection (for bodies that end by closing).
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut rest = self.parser.pending().to_vec();
        self.io.read_to_end(&mut rest).await.expect("read");
        rest
    }

    /// Reads the next part and the delimiter after it; `None` if no data
    /// comes within `wait` when none is buffered.
    async fn next_part(&mut self, wait: Duration) -> Option<Received> {
        let mut wait = wait;
        loop {
            match self.parser.next_part() {
                Some(Ok(part)) => return Some(self.check_part(part).await),
                Some(Err(e)) => panic!("stream framing: {e}"),
                None => assert!(!self.parser.is_done(), "the stream ended"),
            }
            if !self.read_more(wait).await {
                return None;
            }
            wait = READ_WAIT;
        }
    }

    /// Checks the header lines exactly, that the parser consumed nothing
    /// but this part's framing, and that the delimiter follows at once.
    async fn check_part(&mut self, part: Part) -> Received {
        let at = Instant::now();
        let names: Vec<&str> = part.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["Content-Type", "Content-Length", "X-Timestamp"],
            "part headers {:?}",
            part.headers
        );
        assert_eq!(part.headers[0].1, "image/jpeg");
        assert_eq!(part.headers[1].1, part.body.len().to_string());
        let ts = &part.headers[2].1;
        let (secs, micros) = ts.split_once('.').expect("seconds.micros");
        assert!(
            micros.len() == 6 && micros.bytes().all(|b| b.is_ascii_digit()),
            "{ts}"
        );
        let timestamp: f64 = format!("{secs}.{micros}").parse().expect("number");
        // What precedes the body: (CRLF before a later delimiter), the
        // delimiter line, one `Name: value` CRLF line each, a blank line.
        let heads: usize = part
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum();
        let before = if self.framed == 0 { 0 } else { 2 };
        self.framed += before + BOUNDARY.len() + 4 + heads + 2 + part.body.len();
        let consumed = self.pushed - self.parser.buffered();
        assert_eq!(
            consumed, self.framed,
            "bytes besides the exact framing in the stream"
        );
        let delimiter = format!("\r\n--{BOUNDARY}\r\n");
        while self.parser.pending().len() < delimiter.len() {
            assert!(self.read_more(READ_WAIT).await, "delimiter within 5 s");
        }
        assert_eq!(
            &self.parser.pending()[..delimiter.len()],
            delimiter.as_bytes(),
            "stream framing after a part: {:?}",
            String::from_utf8_lossy(self.parser.pending())
        );
        Received {
            jpeg: part.body.to_vec(),
            timestamp,
            at,
        }
    }

    /// Reads more of the body into the parser; false if nothing came within
    /// `wait`. The connection must stay open.
    async fn read_more(&mut self, wait: Duration) -> bool {
        let mut chunk = vec![0u8; 64 * 1024];
        let Ok(read) = tokio::time::timeout(wait, self.io.read(&mut chunk)).await else {
            return false;
        };
        let n = read.expect("read");
        assert!(n > 0, "connection closed");
        self.parser.push(&chunk[..n]);
        self.pushed += n;
        true
    }
}

/// Checks a JPEG's structure without decoding it.
fn check_jpeg(jpeg: &[u8]) {
    if let Err(e) = mjpegd::jpeg::check(jpeg) {
        panic!("invalid JPEG in stream: {e}");
    }
}

/// Sends `GET path` on `io` (any connection: TCP, TLS, a unix socket) and
/// reads the response head; returns it and a reader of the body.
pub async fn open_stream<S>(io: S, path: &str) -> (String, FrameReader<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    request_stream(io, path, "1.1").await
}

/// `open_stream` with HTTP/1.`version`.
async fn request_stream<S>(mut io: S, path: &str, version: &str) -> (String, FrameReader<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let req = format!("GET {path} HTTP/{version}\r\nHost: test\r\n\r\n");
    io.write_all(req.as_bytes()).await.expect("send request");
    let (head, already) = read_head(&mut io).await;
    (head, FrameReader::new(io, &already))
}

/// A client of `/stream` over TCP: the response head, then the strict
/// `FrameReader` (`next_frame` and the others reach it through `Deref`).
pub struct StreamClient {
    pub head: String,
    frames: FrameReader<TcpStream>,
}

impl std::ops::Deref for StreamClient {
    type Target = FrameReader<TcpStream>;
    fn deref(&self) -> &Self::Target {
        &self.frames
    }
}

impl std::ops::DerefMut for StreamClient {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.frames
    }
}

impl StreamClient {
    /// Connects and reads the response head; panics unless it is a 200
    /// multipart response with our boundary.
    pub async fn connect(addr: SocketAddr, path: &str) -> StreamClient {
        let c = StreamClient::open(addr, path, "1.1").await;
        c.expect_stream_head();
        let ct = format!("\r\nContent-Type: multipart/x-mixed-replace;boundary={BOUNDARY}\r\n");
        assert!(c.head.contains(&ct), "{}", c.head);
        assert!(c.head.contains("\r\nCache-Control: no-store"), "{}", c.head);
        c
    }

    /// Sends a GET with HTTP/1.`version` and reads the response head.
    pub async fn open(addr: SocketAddr, path: &str, version: &str) -> StreamClient {
        let io = TcpStream::connect(addr).await.expect("connect");
        StreamClient::open_on(io, path, version).await
    }

    /// A `connect` over a `slow_link` with a receive buffer of `rcvbuf` bytes.
    pub async fn over_slow_link(addr: SocketAddr, path: &str, rcvbuf: u32) -> StreamClient {
        let io = crate::common::slow_link(addr, rcvbuf).await;
        let c = StreamClient::open_on(io, path, "1.1").await;
        c.expect_stream_head();
        c
    }

    /// `open` on a connected socket (e.g. one with a small receive buffer).
    pub async fn open_on(io: TcpStream, path: &str, version: &str) -> StreamClient {
        let (head, frames) = request_stream(io, path, version).await;
        StreamClient { head, frames }
    }

    /// Checks that the head is that of a 200 stream response.
    pub fn expect_stream_head(&self) {
        assert!(
            self.head.starts_with("HTTP/1.1 200 OK\r\n"),
            "{}",
            self.head
        );
    }

    /// The connection, e.g. to reset it.
    pub fn into_io(self) -> TcpStream {
        self.frames.io
    }

    /// Leaves with a reset (`SO_LINGER` 0) instead of a clean close, as a
    /// phone that lost its network or a killed client does.
    pub fn reset(self) {
        socket2::SockRef::from(&self.into_io())
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER");
    }
}
