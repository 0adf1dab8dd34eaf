//! One benchmark client: connect, request the stream, read and check every
//! part until the deadline.
//!
//! Parts with `Content-Length` (mjpegd, mjpg-streamer, µStreamer) are read on
//! a fast path that looks only at their first and last bytes and never keeps
//! the JPEG; anything else (no length, LF-only lines) goes through the
//! library's general multipart parser. A chunked body is not decoded: the
//! error says to ask with `--http10`, which servers answer unchunked.

use bytes::{Buf, BytesMut};
use mjpegd::mjpeg::{MultipartParser, boundary_from_content_type};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Where to connect and what to ask for.
pub struct Target {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Target {
    /// Parses `http://HOST[:PORT]/PATH`.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("'{url}': only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>()
                    .map_err(|_| format!("'{url}': bad port '{p}'"))?,
            ),
            _ => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("'{url}': no host"));
        }
        Ok(Target {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }
}

/// What one client saw.
#[derive(Debug, Default)]
pub struct ClientResult {
    /// Got a 200 multipart response head.
    pub connected: bool,
    pub error: Option<String>,
    /// The stream ended before the deadline.
    pub dropped: bool,
    pub connect_ms: Option<f64>,
    pub ttff_ms: Option<f64>,
    pub frames: u64,
    pub bytes: u64,
    pub corrupt: u64,
    /// Time this client was measuring (start of its connect to the deadline).
    pub window: Duration,
    /// X-Timestamp to receipt, per frame, in milliseconds.
    pub latency_ms: Vec<f32>,
    /// When each of those frames arrived (seconds since the Unix epoch).
    pub received_at: Vec<f64>,
    /// When the first complete frame arrived.
    pub first_frame_at: Option<Instant>,
}

impl ClientResult {
    pub fn failed(error: String) -> ClientResult {
        ClientResult {
            error: Some(error),
            ..ClientResult::default()
        }
    }
}

/// Runs one client until `end`, or until it has `limit` frames (0: no limit).
pub async fn run(target: &Target, http10: bool, end: Instant, limit: u64) -> ClientResult {
    let started = Instant::now();
    let mut r = ClientResult {
        window: end.saturating_duration_since(started),
        ..ClientResult::default()
    };
    match tokio::time::timeout_at(end, session(target, http10, started, limit, &mut r)).await {
        Ok(Ok(())) => r.dropped = r.connected && (limit == 0 || r.frames < limit),
        Ok(Err(e)) => {
            if r.connected {
                r.dropped = true;
            }
            r.error = Some(e);
        }
        Err(_deadline) => {
            if !r.connected && r.error.is_none() {
                r.error = Some("no response head before the end of the run".into());
            }
        }
    }
    r
}

async fn session(
    target: &Target,
    http10: bool,
    started: Instant,
    limit: u64,
    r: &mut ClientResult,
) -> Result<(), String> {
    let mut io = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    r.connect_ms = Some(ms(started.elapsed()));
    let _ = io.set_nodelay(true);
    let version = if http10 { "1.0" } else { "1.1" };
    let request = format!(
        "GET {} HTTP/{version}\r\nHost: {}:{}\r\nUser-Agent: mjpeg-bench\r\n\r\n",
        target.path, target.host, target.port
    );
    io.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send request: {e}"))?;

    let mut buf = BytesMut::with_capacity(64 * 1024);
    let head_len = loop {
        if let Some(i) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err("response head larger than 64 KiB".into());
        }
        read_more(&mut io, &mut buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    buf.advance(head_len);
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!(
            "status {}",
            head.lines().next().unwrap_or("").trim()
        ));
    }
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let boundary = header("content-type")
        .as_deref()
        .and_then(boundary_from_content_type)
        .ok_or("response is not multipart")?;
    r.connected = true;
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return Err("chunked response: measure this server with --http10".into());
    }
    let mut counter = Counter { started, limit, r };
    fast_path(&mut io, buf, &boundary, &mut counter).await
}

/// Counts frames into the result.
struct Counter<'a> {
    started: Instant,
    limit: u64,
    r: &'a mut ClientResult,
}

impl Counter<'_> {
    /// Whether the client has all the frames it wanted.
    fn done(&self) -> bool {
        self.limit > 0 && self.r.frames >= self.limit
    }

    fn frame(&mut self, len: usize, ok: bool, timestamp: Option<&str>) {
        let r = &mut *self.r;
        r.frames += 1;
        r.bytes += len as u64;
        if !ok {
            r.corrupt += 1;
        }
        if r.ttff_ms.is_none() {
            r.ttff_ms = Some(ms(self.started.elapsed()));
            r.first_frame_at = Some(Instant::now());
        }
        if let Some(ts) = timestamp.and_then(|t| t.trim().parse::<f64>().ok()) {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            r.latency_ms.push(((now - ts) * 1000.0) as f32);
            r.received_at.push(now);
        }
    }
}

/// The capture time on the wall clock. µStreamer's `X-Timestamp` is when
/// it sent the frame; with `?extra_headers=1` it also says when it grabbed
/// and sent it on its monotonic clock, so capture = sent - (send - grab).
fn capture_stamp(stamp: Option<String>, grab: Option<f64>, send: Option<f64>) -> Option<String> {
    match (stamp.as_deref().map(str::parse::<f64>), grab, send) {
        (Some(Ok(sent)), Some(grab), Some(send)) if send >= grab => {
            Some(format!("{:.6}", sent - (send - grab)))
        }
        _ => stamp,
    }
}

/// Parts with `Content-Length`: read the headers, then skip the body while
/// looking only at its first two and last two bytes.
async fn fast_path(
    io: &mut TcpStream,
    mut buf: BytesMut,
    boundary: &str,
    counter: &mut Counter<'_>,
) -> Result<(), String> {
    let mut scratch = vec![0u8; 256 * 1024];
    loop {
        let end = loop {
            if let Some(i) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                break i;
            }
            if buf.len() > 64 * 1024 {
                return Err("part headers larger than 64 KiB".into());
            }
            read_more(io, &mut buf).await?;
        };
        let text = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut length = None;
        let mut timestamp = None;
        let (mut grab, mut send) = (None, None);
        for line in text.split("\r\n") {
            if let Some((n, v)) = line.split_once(':') {
                let (n, v) = (n.trim(), v.trim());
                if n.eq_ignore_ascii_case("content-length") {
                    length = v.parse::<usize>().ok();
                } else if n.eq_ignore_ascii_case("x-timestamp") {
                    timestamp = Some(v.to_owned());
                } else if n.eq_ignore_ascii_case("x-ustreamer-grab-time") {
                    grab = v.parse::<f64>().ok();
                } else if n.eq_ignore_ascii_case("x-ustreamer-send-time") {
                    send = v.parse::<f64>().ok();
                }
            }
        }
        let timestamp = capture_stamp(timestamp, grab, send);
        let Some(len) = length else {
            // No length: hand everything from here to the general parser.
            return slow_path(io, buf, boundary, counter).await;
        };
        buf.advance(end + 4);
        let mut first = [0u8; 2];
        let mut last = [0u8; 2];
        let mut seen = 0usize;
        while seen < len {
            if !buf.is_empty() {
                let n = buf.len().min(len - seen);
                track(&buf[..n], seen, len, &mut first, &mut last);
                buf.advance(n);
                seen += n;
                continue;
            }
            // Read the body straight into scratch space, never past its end,
            // so the next part's headers stay in the socket for `buf`.
            let want = (len - seen).min(scratch.len());
            let n = io
                .read(&mut scratch[..want])
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("stream ended".into());
            }
            track(&scratch[..n], seen, len, &mut first, &mut last);
            seen += n;
        }
        let ok = first == [0xff, 0xd8] && last == [0xff, 0xd9];
        counter.frame(len, ok, timestamp.as_deref());
        if counter.done() {
            return Ok(());
        }
    }
}

/// Records the first and last two bytes of a body seen in pieces.
fn track(chunk: &[u8], offset: usize, len: usize, first: &mut [u8; 2], last: &mut [u8; 2]) {
    for (i, &b) in chunk.iter().enumerate().take(2usize.saturating_sub(offset)) {
        first[offset + i] = b;
    }
    let end = offset + chunk.len();
    for pos in len.saturating_sub(2).max(offset)..end {
        last[pos + 2 - len] = chunk[pos - offset];
    }
}

/// Any multipart body, through the library's parser.
async fn slow_path(
    io: &mut TcpStream,
    initial: BytesMut,
    boundary: &str,
    counter: &mut Counter<'_>,
) -> Result<(), String> {
    let mut parser = MultipartParser::new(boundary, 32 * 1024 * 1024);
    let mut raw = initial;
    loop {
        parser.push(&raw);
        raw.clear();
        while let Some(part) = parser.next_part() {
            match part {
                Ok(p) => {
                    let b = &p.body;
                    let ok = b.starts_with(&[0xff, 0xd8]) && b.ends_with(&[0xff, 0xd9]);
                    counter.frame(b.len(), ok, p.header("x-timestamp"));
                }
                Err(_) => counter.r.corrupt += 1,
            }
            if counter.done() {
                return Ok(());
            }
        }
        read_more(io, &mut raw).await?;
    }
}

async fn read_more(io: &mut TcpStream, buf: &mut BytesMut) -> Result<(), String> {
    buf.reserve(64 * 1024);
    let n = io.read_buf(buf).await.map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("stream ended".into());
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ustreamer_capture_stamps() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            capture_stamp(s("1000.500000"), Some(20.0), Some(20.125)),
            s("1000.375000")
        );
        assert_eq!(capture_stamp(s("1000.5"), None, None), s("1000.5"));
        assert_eq!(capture_stamp(None, Some(1.0), Some(2.0)), None);
    }

    #[test]
    fn urls() {
        let t = Target::parse("http://127.0.0.1:8080/?action=stream").expect("valid");
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8080, "/?action=stream")
        );
        let t = Target::parse("http://localhost").expect("valid");
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        let t = Target::parse("http://[::1]:9/s").expect("valid");
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
        assert!(Target::parse("https://x/").is_err());
    }

    #[test]
    fn tracks_ends_across_pieces() {
        let body = [0xff, 0xd8, 1, 2, 3, 0xff, 0xd9];
        for split in 0..body.len() {
            let (a, b) = body.split_at(split);
            let (mut first, mut last) = ([0; 2], [0; 2]);
            track(a, 0, body.len(), &mut first, &mut last);
            track(b, a.len(), body.len(), &mut first, &mut last);
            assert_eq!((first, last), ([0xff, 0xd8], [0xff, 0xd9]), "split {split}");
        }
    }
}
