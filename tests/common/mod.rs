//! Shared test helpers: start the real server (in-process on an ephemeral
//! port, or the built binary: one launcher for `ServerProcess` and
//! `Daemon`), a strict MJPEG stream client that checks every byte of the
//! multipart framing and decodes every JPEG, and `eventually` for waiting on
//! a condition instead of sleeping.
#![allow(dead_code)] // each test file uses a different subset

use bytes::{Buf, BytesMut};
use mjpegd::config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub const BOUNDARY: &str = "mjpegd-boundary";

/// Polls `check` every 20 ms until it holds; fails naming `what` after
/// `within`. Returns how long it took. Use it instead of sleeping for a
/// guessed time and then asserting.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    loop {
        if check().await {
            return t.elapsed();
        }
        assert!(t.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Seconds since the epoch, as `X-Timestamp` carries them.
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Fails the test (rather than letting it pass without testing anything)
/// when a program it runs is not on PATH. `.ci/run` installs them all.
pub fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    assert!(found, "this test needs `{tool}` on PATH; it is missing");
}

/// A server running inside the test process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub done: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Starts the server with command-line `args` on 127.0.0.1:0.
    pub async fn start(args: &[&str]) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        TestServer::start_with(listener, args)
    }

    /// Starts the server on `addr`, binding it anew. To restart a server on
    /// the same port, prefer `start_on`: between a stop and this bind,
    /// another process may take the port.
    pub async fn start_at(addr: SocketAddr, args: &[&str]) -> TestServer {
        let listener = TcpListener::bind(addr).await.expect("bind again");
        TestServer::start_with(listener, args)
    }

    /// Starts the server on a copy of `socket`, which the test keeps open:
    /// stopped and started again on it, the server keeps its port, and no
    /// other process can take it meanwhile (while the server is down,
    /// connections wait unanswered in the backlog).
    pub fn start_on(socket: &std::net::TcpListener, args: &[&str]) -> TestServer {
        let copy = socket.try_clone().expect("copy of the socket");
        copy.set_nonblocking(true).expect("nonblocking");
        TestServer::start_with(TcpListener::from_std(copy).expect("listener"), args)
    }

    fn start_with(listener: TcpListener, args: &[&str]) -> TestServer {
        let config = match Config::from_args(std::iter::once("mjpegd").chain(args.iter().copied()))
        {
            Ok(c) => c,
            Err(e) => panic!("bad test config {args:?}: {e:?}"),
        };
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let done = tokio::spawn(mjpegd::server::run(
            config,
            vec![listener],
            shutdown.clone(),
        ));
        TestServer {
            addr,
            shutdown,
            done,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.done)
            .await
            .expect("server stops within 5 s")
            .expect("server task did not panic");
    }
}

/// The built `mjpegd` binary, running.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub started: Instant,
}

impl ServerProcess {
    /// Runs the binary with `args` plus `--listen 127.0.0.1:0` and waits for
    /// its `listening on http://ADDR` line.
    pub fn start(args: &[&str]) -> ServerProcess {
        ServerProcess::start_with_stdin(args, Stdio::null())
    }

    /// `start` with the given standard input (e.g. `Stdio::piped()` to feed
    /// `--source stdin`; take it from `child.stdin`).
    pub fn start_with_stdin(args: &[&str], stdin: Stdio) -> ServerProcess {
        let started = Instant::now();
        let mut command = binary();
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(stdin)
            .stderr(Stdio::null());
        let (child, listening) = spawn_listening(command, 1, String::new);
        ServerProcess {
            child,
            addr: tcp_addr(&listening[0]),
            started,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` and waits for the exit; returns the exit code and how
    /// long the exit took.
    pub fn signal_and_wait(&mut self, signal: i32) -> (Option<i32>, Duration) {
        signal_and_wait(&mut self.child, signal)
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }
}

/// Resident memory of process `pid` in KiB, from /proc.
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("proc status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS line")
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// The `mjpegd` binary, running, with its listen lines and a file holding
/// everything it wrote to stderr.
pub struct Daemon {
    pub child: Child,
    /// The addresses from its `listening on ...` lines, e.g.
    /// `http://127.0.0.1:4711` or `unix:/tmp/x.sock`.
    pub listening: Vec<String>,
    pub stderr: PathBuf,
}

impl Daemon {
    /// Runs the binary with `args` and `env`, and waits for `lines`
    /// `listening on` lines on stdout.
    pub fn start(args: &[&str], env: &[(&str, &str)], lines: usize) -> Daemon {
        let stderr = temp_path("stderr");
        let mut command = binary();
        command
            .args(args)
            .envs(env.iter().copied())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        let log = || std::fs::read_to_string(&stderr).unwrap_or_default();
        let (child, listening) = spawn_listening(command, lines, log);
        Daemon {
            child,
            listening,
            stderr,
        }
    }

    /// The `HOST:PORT` of the `n`th listen line (`http://` or `https://`).
    pub fn addr(&self, n: usize) -> SocketAddr {
        tcp_addr(&self.listening[n])
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then waits up to 10 s for the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        signal_and_wait(&mut self.child, libc::SIGTERM).0
    }

    /// Open file descriptors of the process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("proc fd")
            .count()
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        stop_child(&mut self.child);
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// The built binary, without the secrets' variables a developer may have
/// set, and with stdout piped for its `listening on` lines.
fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mjpegd"));
    command
        .env_remove("MJPEGD_AUTH")
        .env_remove("MJPEGD_TOKEN_SECRET")
        .stdout(Stdio::piped());
    command
}

/// Starts `command` and reads `lines` `listening on ADDR` lines; an early
/// exit fails the test with what `log` returns.
fn spawn_listening(
    mut command: Command,
    lines: usize,
    log: impl Fn() -> String,
) -> (Child, Vec<String>) {
    use std::io::BufRead;
    let mut child = command.spawn().expect("run mjpegd");
    let mut reader = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut listening = Vec::new();
    while listening.len() < lines {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("read stdout") == 0 {
            let _ = child.wait();
            panic!("mjpegd exited early: {}", log());
        }
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        listening.push(addr.to_owned());
    }
    (child, listening)
}

/// `HOST:PORT` of a `http://` or `https://` listen address.
fn tcp_addr(listening: &str) -> SocketAddr {
    listening
        .split_once("://")
        .map(|(_, a)| a)
        .unwrap_or_else(|| panic!("not a TCP address: {listening}"))
        .parse()
        .expect("address")
}

/// Sends `signal` to `child` and waits up to 10 s for its exit; returns
/// the exit code and how long the exit took.
pub fn signal_and_wait(child: &mut Child, signal: i32) -> (Option<i32>, Duration) {
    let t = Instant::now();
    send_signal(child, signal);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return (status.code(), t.elapsed());
        }
        assert!(Instant::now() < deadline, "mjpegd did not exit in 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `signal` to our own, not yet reaped, child.
pub fn send_signal(child: &Child, signal: i32) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a pid");
    let signal = rustix::process::Signal::from_named_raw(signal).expect("a signal");
    let _ = rustix::process::kill_process(pid, signal);
}

/// A fresh path in the temp directory (not created).
pub fn temp_path(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "mjpegd-test-{}-{}-{what}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// One frame as received.
#[derive(Debug)]
pub struct Received {
    pub jpeg: Vec<u8>,
    /// `X-Timestamp` in seconds since the epoch.
    pub timestamp: f64,
    pub at: Instant,
}

/// A client of `/stream` that checks the framing byte by byte.
pub struct StreamClient {
    pub io: TcpStream,
    buf: BytesMut,
    pub head: String,
}

impl StreamClient {
    /// Connects and reads the response head; panics unless it is a 200
    /// multipart response with our boundary, followed by the first delimiter.
    pub async fn connect(addr: SocketAddr, path: &str) -> StreamClient {
        let mut c = StreamClient::open(addr, path, "1.1").await;
        assert!(c.head.starts_with("HTTP/1.1 200 OK\r\n"), "{}", c.head);
        let ct = format!("\r\nContent-Type: multipart/x-mixed-replace;boundary={BOUNDARY}\r\n");
        assert!(c.head.contains(&ct), "{}", c.head);
        assert!(c.head.contains("\r\nCache-Control: no-store"), "{}", c.head);
        c.expect_bytes(format!("--{BOUNDARY}\r\n").as_bytes()).await;
        c
    }

    /// Sends a GET with HTTP/1.`version` and reads the response head.
    pub async fn open(addr: SocketAddr, path: &str, version: &str) -> StreamClient {
        let io = TcpStream::connect(addr).await.expect("connect");
        StreamClient::open_on(io, path, version).await
    }

    /// A `connect` over a `slow_link` with a receive buffer of `rcvbuf` bytes.
    pub async fn over_slow_link(addr: SocketAddr, path: &str, rcvbuf: u32) -> StreamClient {
        let mut c = StreamClient::open_on(slow_link(addr, rcvbuf).await, path, "1.1").await;
        c.expect_stream_head().await;
        c
    }

    /// `open` on a connected socket (e.g. one with a small receive buffer).
    pub async fn open_on(mut io: TcpStream, path: &str, version: &str) -> StreamClient {
        let req = format!("GET {path} HTTP/{version}\r\nHost: test\r\n\r\n");
        io.write_all(req.as_bytes()).await.expect("send request");
        let mut c = StreamClient {
            io,
            buf: BytesMut::new(),
            head: String::new(),
        };
        let end = c.fill_until(b"\r\n\r\n").await;
        let head = c.buf.split_to(end + 4);
        c.head = String::from_utf8(head.to_vec()).expect("head is UTF-8");
        c
    }

    /// Checks the head of a 200 stream response and reads the first
    /// delimiter (what `connect` does after `open`).
    pub async fn expect_stream_head(&mut self) {
        assert!(
            self.head.starts_with("HTTP/1.1 200 OK\r\n"),
            "{}",
            self.head
        );
        self.expect_bytes(format!("--{BOUNDARY}\r\n").as_bytes())
            .await;
    }

    /// The next frame, or `None` if none comes within `wait` (the stream
    /// may be still).
    pub async fn next_frame_within(&mut self, wait: Duration) -> Option<Received> {
        if self.buf.is_empty() {
            let n = tokio::time::timeout(wait, self.io.read_buf(&mut self.buf))
                .await
                .ok()?
                .expect("read");
            assert!(n > 0, "connection closed");
        }
        Some(self.next_frame_checked().await)
    }

    /// Reads the next part; checks its exact header lines, the JPEG, and the
    /// delimiter after it; decodes the JPEG.
    pub async fn next_frame(&mut self) -> Received {
        let f = self.next_part().await;
        decode(&f.jpeg);
        f
    }

    /// Like `next_frame`, but checks the JPEG's structure (every segment,
    /// through EOI) instead of decoding it: cheaper, for tests with many
    /// clients where the test's own CPU use would otherwise dominate.
    pub async fn next_frame_checked(&mut self) -> Received {
        let f = self.next_part().await;
        if let Err(e) = mjpegd::jpeg::check(&f.jpeg) {
            panic!("invalid JPEG in stream: {e}");
        }
        f
    }

    async fn next_part(&mut self) -> Received {
        let end = self.fill_until(b"\r\n\r\n").await;
        let head = self.buf.split_to(end + 4);
        let head = std::str::from_utf8(&head).expect("part head is UTF-8");
        let lines: Vec<&str> = head.trim_end().split("\r\n").collect();
        assert_eq!(lines.len(), 3, "part head {head:?}");
        assert_eq!(lines[0], "Content-Type: image/jpeg");
        let len: usize = lines[1]
            .strip_prefix("Content-Length: ")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("bad length line {:?}", lines[1]));
        let ts = lines[2]
            .strip_prefix("X-Timestamp: ")
            .unwrap_or_else(|| panic!("bad timestamp line {:?}", lines[2]));
        let (secs, micros) = ts.split_once('.').expect("seconds.micros");
        assert_eq!(micros.len(), 6, "{ts}");
        let timestamp: f64 = format!("{secs}.{micros}").parse().expect("number");
        self.fill(len).await;
        let jpeg = self.buf.split_to(len).to_vec();
        let at = Instant::now();
        self.expect_bytes(format!("\r\n--{BOUNDARY}\r\n").as_bytes())
            .await;
        Received {
            jpeg,
            timestamp,
            at,
        }
    }

    /// Reads the rest of the connection (for bodies that end by closing).
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut rest = self.buf.split().to_vec();
        self.io.read_to_end(&mut rest).await.expect("read");
        rest
    }

    async fn expect_bytes(&mut self, expected: &[u8]) {
        self.fill(expected.len()).await;
        assert_eq!(
            &self.buf[..expected.len()],
            expected,
            "stream framing: got {:?}",
            String::from_utf8_lossy(&self.buf[..expected.len()])
        );
        self.buf.advance(expected.len());
    }

    async fn fill(&mut self, n: usize) {
        while self.buf.len() < n {
            self.read_more().await;
        }
    }

    async fn fill_until(&mut self, needle: &[u8]) -> usize {
        loop {
            if let Some(i) = self.buf.windows(needle.len()).position(|w| w == needle) {
                return i;
            }
            assert!(self.buf.len() < 64 * 1024, "no {needle:?} in 64 KiB");
            self.read_more().await;
        }
    }

    async fn read_more(&mut self) {
        self.buf.reserve(64 * 1024);
        let n = tokio::time::timeout(Duration::from_secs(5), self.io.read_buf(&mut self.buf))
            .await
            .expect("data within 5 s")
            .expect("read");
        assert!(n > 0, "connection closed");
    }
}

/// Decodes a JPEG fully; returns (width, height). Panics if it is not valid.
pub fn decode(jpeg: &[u8]) -> (usize, usize) {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    let mut d = zune_jpeg::JpegDecoder::new(ZCursor::new(jpeg));
    let pixels = d.decode().expect("frame decodes as JPEG");
    let (w, h) = d.dimensions().expect("dimensions");
    assert!(!pixels.is_empty());
    (w, h)
}

/// A one-shot request; returns (status code, head, body). Reads until close.
pub async fn request(addr: SocketAddr, raw: &str) -> (u16, String, Vec<u8>) {
    let mut io = TcpStream::connect(addr).await.expect("connect");
    io.write_all(raw.as_bytes()).await.expect("send");
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), io.read_to_end(&mut all))
        .await
        .expect("response within 10 s")
        .expect("read");
    split_response(&all)
}

/// A whole response as read until close: (status code, head, body).
pub fn split_response(all: &[u8]) -> (u16, String, Vec<u8>) {
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(all)));
    let head = String::from_utf8_lossy(&all[..end + 4]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head, all[end + 4..].to_vec())
}

/// `GET path` with `Connection: close`.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// `/status` as JSON.
pub async fn status(addr: SocketAddr) -> serde_json::Value {
    let (code, _, body) = get(addr, "/status").await;
    assert_eq!(code, 200);
    serde_json::from_slice(&body).expect("status is JSON")
}

/// Ends a server the test is done with: SIGTERM first, so that it stops its
/// `exec:` commands as it would for a user (a SIGKILL would leave them
/// running), then SIGKILL if it takes more than 2 s.
pub fn stop_child(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        send_signal(child, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A connection to `addr` with a receive buffer of `rcvbuf` bytes: a viewer
/// on a slow link, or one that stops reading, fills up after a few KiB.
pub async fn slow_link(addr: SocketAddr, rcvbuf: u32) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
    socket.connect(addr).await.expect("connect")
}

/// A `slow_link` that has asked for `path` and reads nothing yet.
pub async fn slow_request(addr: SocketAddr, path: &str, rcvbuf: u32) -> TcpStream {
    let mut io = slow_link(addr, rcvbuf).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    io.write_all(req.as_bytes()).await.expect("send request");
    io
}
