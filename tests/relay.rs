//! Relay, snapshot-polling and V4L2 sources against real servers: another
//! in-process mjpegd, and fake upstreams on 127.0.0.1 that write the exact
//! bytes other MJPEG servers send.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Three small, distinct JPEGs (48x32).
fn fixture_jpegs() -> Vec<Vec<u8>> {
    (0..3).map(|n| test_jpeg(48, 32, n)).collect()
}

/// Produces the bytes of the nth part of a stream body.
type PartFn = Arc<dyn Fn(usize) -> Vec<u8> + Send + Sync>;

/// Parts cycling through `jpegs`: the delimiter, `Content-Type` and
/// `Content-Length` lines, the JPEG, every line ended by `eol`.
fn parts_with_length(jpegs: &[Vec<u8>], boundary: &str, eol: &'static str) -> PartFn {
    let (jpegs, boundary) = (jpegs.to_vec(), boundary.to_owned());
    Arc::new(move |n| {
        let jpeg = &jpegs[n % jpegs.len()];
        let mut p = format!(
            "--{boundary}{eol}Content-Type: image/jpeg{eol}Content-Length: {}{eol}{eol}",
            jpeg.len()
        )
        .into_bytes();
        p.extend_from_slice(jpeg);
        p.extend_from_slice(eol.as_bytes());
        p
    })
}

/// A fake upstream: answers every connection with `head`, then writes
/// `part(0)`, `part(1)`, ... every 40 ms until the client leaves (at most
/// 30 s). With `auth`, requests without that `Authorization` value get 401.
struct FakeUpstream {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    accepted: Arc<AtomicUsize>,
}

impl FakeUpstream {
    async fn start(head: &str, part: PartFn, auth: Option<String>) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let head = head.as_bytes().to_vec();
        let (reqs, count) = (requests.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((mut io, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                let (head, part, auth, reqs) =
                    (head.clone(), part.clone(), auth.clone(), reqs.clone());
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut io).await else {
                        return;
                    };
                    reqs.lock().expect("lock").push(req.clone());
                    if let Some(want) = auth {
                        let line = format!("\r\nauthorization: {want}\r\n");
                        if !req
                            .to_ascii_lowercase()
                            .contains(&line.to_ascii_lowercase())
                        {
                            let _ = io
                                .write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"cam\"\r\nContent-Length: 0\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                    if io.write_all(&head).await.is_err() {
                        return;
                    }
                    let end = Instant::now() + Duration::from_secs(30);
                    for n in 0.. {
                        if Instant::now() > end || io.write_all(&part(n)).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(40)).await;
                    }
                });
            }
        });
        FakeUpstream {
            addr,
            requests,
            accepted,
        }
    }
}

/// Reads one request head (up to the blank line).
async fn read_request(io: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), io.read(&mut byte)).await {
            Ok(Ok(1)) => buf.push(byte[0]),
            _ => return None,
        }
        if buf.len() > 16 * 1024 {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Reads frames from `client` until `count` of them have arrived; each must
/// be byte-identical to one of `expected`. Returns them.
async fn frames_from(
    client: &mut StreamClient,
    expected: &[Vec<u8>],
    count: usize,
) -> Vec<common::Received> {
    let mut got = Vec::new();
    while got.len() < count {
        let frame = client.next_frame().await;
        assert!(
            expected.contains(&frame.jpeg),
            "relayed frame of {} bytes is not one of the upstream's (a placeholder?)",
            frame.jpeg.len()
        );
        got.push(frame);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_another_mjpegd_with_its_timestamps() {
    let a = TestServer::start(&["--source", "pattern:160x120@15"]).await;
    let url = format!("http://{}/stream", a.addr);
    let b = TestServer::start(&["--source", &url]).await;

    let from_a = StreamClient::connect(a.addr, "/stream").await;
    let from_b = StreamClient::connect(b.addr, "/stream").await;
    let read = |mut c: StreamClient| async move {
        let mut frames = Vec::new();
        for _ in 0..20 {
            frames.push(c.next_frame().await);
        }
        frames
    };
    let (a_frames, b_frames) = tokio::join!(read(from_a), read(from_b));
    // B passes A's JPEGs on byte for byte, with A's capture time.
    let mut matched = 0;
    for f in &b_frames {
        assert_eq!(decode(&f.jpeg), (160, 120));
        if let Some(original) = a_frames.iter().find(|a| a.jpeg == f.jpeg) {
            assert_eq!(f.timestamp, original.timestamp);
            matched += 1;
        }
    }
    assert!(matched >= 5, "only {matched} of B's frames are A's");
    let st = status(b.addr).await;
    let s = &st["streams"][0];
    assert_eq!(s["kind"], "relay");
    assert_eq!(s["online"], true);
    assert_eq!(s["source"], url.as_str());
    assert_eq!(s["frames_dropped"], 0);

    // The same through mjpg-streamer's URL.
    let url = format!("http://{}/?action=stream", a.addr);
    let c = TestServer::start(&["--source", &url]).await;
    let mut client = StreamClient::connect(c.addr, "/?action=stream").await;
    for _ in 0..3 {
        let f = client.next_frame().await;
        assert_eq!(decode(&f.jpeg), (160, 120));
        assert!((now_unix() - f.timestamp).abs() < 5.0);
    }
    c.stop().await;
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mjpg_streamer_format_with_timestamps_and_a_bad_frame() {
    let jpegs = fixture_jpegs();
    let frames = jpegs.clone();
    let part: PartFn = Arc::new(move |n| {
        let jpeg = &frames[n % frames.len()];
        // Every fourth part is cut short (its length says so): dropped.
        let jpeg = if n % 4 == 1 {
            &jpeg[..jpeg.len() / 2]
        } else {
            &jpeg[..]
        };
        let secs = now_unix() as u64 - 1;
        let mut p = format!(
            "Content-Type: image/jpeg\r\nContent-Length: {}\r\nX-Timestamp: {secs}.123456\r\n\r\n",
            jpeg.len()
        )
        .into_bytes();
        p.extend_from_slice(jpeg);
        p.extend_from_slice(b"\r\n--boundarydonotcross\r\n");
        p
    });
    let head = "HTTP/1.0 200 OK\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\nServer: MJPG-Streamer/0.2\r\nCache-Control: no-store, no-cache, must-revalidate, pre-check=0, post-check=0, max-age=0\r\nPragma: no-cache\r\nExpires: Mon, 3 Jan 2000 12:34:56 GMT\r\nContent-Type: multipart/x-mixed-replace;boundary=boundarydonotcross\r\n\r\n--boundarydonotcross\r\n";
    let up = FakeUpstream::start(head, part, None).await;
    let url = format!("http://{}/?action=stream", up.addr);
    let server = TestServer::start(&["--source", &url]).await;
    let mut client = StreamClient::connect(server.addr, "/stream").await;
    for f in frames_from(&mut client, &jpegs, 6).await {
        // The upstream's capture time is kept.
        let micros = (f.timestamp.fract() * 1e6).round() as u64;
        assert_eq!(micros, 123456, "timestamp {}", f.timestamp);
    }
    let st = status(server.addr).await;
    assert!(
        st["streams"][0]["frames_dropped"].as_u64() >= Some(1),
        "{st}"
    );
    // One connection throughout: bad frames do not make the relay reconnect.
    assert_eq!(up.accepted.load(Ordering::Relaxed), 1);
    let req = up.requests.lock().expect("lock")[0].clone();
    assert!(req.starts_with("GET /?action=stream HTTP/1.1\r\n"), "{req}");
    assert!(req.contains(&format!("\r\nHost: {}\r\n", up.addr)), "{req}");
    assert!(req.contains("\r\nUser-Agent: mjpegd/"), "{req}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flask_style_chunked_boundary_before_frame() {
    let jpegs = fixture_jpegs();
    let frames = jpegs.clone();
    // Flask yields b'--frame\r\nContent-Type: image/jpeg\r\n\r\n' + frame +
    // b'\r\n'; the server sends each yield as one chunk.
    let part: PartFn = Arc::new(move |n| {
        let mut data = b"--frame\r\nContent-Type: image/jpeg\r\n\r\n".to_vec();
        data.extend_from_slice(&frames[n % frames.len()]);
        data.extend_from_slice(b"\r\n");
        let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
        chunk.extend_from_slice(&data);
        chunk.extend_from_slice(b"\r\n");
        chunk
    });
    let head = "HTTP/1.1 200 OK\r\nServer: gunicorn\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n";
    let up = FakeUpstream::start(head, part, None).await;
    let server = TestServer::start(&["--source", &format!("http://{}/video_feed", up.addr)]).await;
    let mut client = StreamClient::connect(server.addr, "/stream").await;
    let got = frames_from(&mut client, &jpegs, 6).await;
    // Without Content-Length the frame ends where its JPEG ends: every
    // picture comes through intact.
    for j in &jpegs {
        assert!(got.iter().any(|f| &f.jpeg == j));
    }
    assert_eq!(status(server.addr).await["streams"][0]["frames_dropped"], 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lf_only_and_quoted_dashed_boundaries() {
    let jpegs = fixture_jpegs();
    let lf = parts_with_length(&jpegs, "myboundary", "\n");
    let head = "HTTP/1.0 200 OK\nContent-Type: multipart/x-mixed-replace;boundary=myboundary\n\n";
    let up = FakeUpstream::start(head, lf, None).await;

    let dashed = parts_with_length(&jpegs, "myboundary", "\r\n");
    let head = "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=\"--myboundary\"\r\nConnection: close\r\n\r\n";
    let up2 = FakeUpstream::start(head, dashed, None).await;

    let server = TestServer::start(&[
        "--source",
        &format!("lf=http://{}/mjpg/video.mjpg", up.addr),
        "--source",
        &format!("dashed=http://{}/axis-cgi/mjpg/video.cgi", up2.addr),
    ])
    .await;
    for name in ["lf", "dashed"] {
        let path = format!("/streams/{name}/stream");
        let mut client = StreamClient::connect(server.addr, &path).await;
        frames_from(&mut client, &jpegs, 5).await;
    }
    let st = status(server.addr).await;
    for s in st["streams"].as_array().expect("streams") {
        assert_eq!(s["frames_dropped"], 0, "{s}");
        assert_eq!(s["online"], true, "{s}");
    }
    server.stop().await;
}

/// Reads frames until one of `size` arrives (within 15 s).
async fn wait_for(c: &mut StreamClient, size: (usize, usize)) {
    let what = format!("a {size:?} frame");
    c.next_frame_where(Duration::from_secs(15), &what, |f| decode(&f.jpeg) == size)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_upstream_restarts() {
    // Upstream frames are 96x64; the placeholder is 640x480, so a client
    // can tell them apart.
    let pattern = ["--source", "pattern:96x64@10"];
    // A's socket stays ours, so that A comes back on the same port.
    let a_socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = TestServer::start_on(&a_socket, &pattern);
    let a_addr = a.addr;
    let relay = TestServer::start(&["--source", &format!("http://{a_addr}/stream")]).await;
    let mut client = StreamClient::connect(relay.addr, "/stream").await;
    wait_for(&mut client, (96, 64)).await;
    assert_eq!(status(relay.addr).await["streams"][0]["online"], true);

    a.stop().await;
    wait_for(&mut client, (640, 480)).await;
    let st = status(relay.addr).await;
    let s = &st["streams"][0];
    assert_eq!(s["online"], false, "{s}");
    let reason = s["last_error"].as_str().expect("a reason");
    assert!(reason.contains(&a_addr.to_string()), "{reason}");

    let a2 = TestServer::start_on(&a_socket, &pattern);
    // Same client connection: real frames again.
    wait_for(&mut client, (96, 64)).await;
    assert_eq!(status(relay.addr).await["streams"][0]["online"], true);
    relay.stop().await;
    a2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_credentials_become_basic_auth_and_stay_secret() {
    let jpegs = fixture_jpegs();
    let part = parts_with_length(&jpegs, "b", "\r\n");
    let head = "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=b\r\n\r\n";
    // "admin:hunter2" in base64.
    let up = FakeUpstream::start(head, part, Some("Basic YWRtaW46aHVudGVyMg==".into())).await;

    // The binary, so that its log output can be searched too.
    let good = format!("good=http://admin:hunter2@{}/video", up.addr);
    let bad = format!("bad=http://admin:wrongpass@{}/video", up.addr);
    let mut daemon = Daemon::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--source",
            &good,
            "--source",
            &bad,
        ],
        &[("RUST_LOG", "debug")],
        1,
    );
    let addr = daemon.addr(0);

    let mut client = StreamClient::connect(addr, "/streams/good/stream").await;
    frames_from(&mut client, &jpegs, 3).await;
    eventually(
        Duration::from_secs(10),
        "the bad stream failed",
        || async move { status(addr).await["streams"][1]["last_error"].is_string() },
    )
    .await;
    let st = status(addr).await;
    let (_, _, page) = get(addr, "/").await;
    daemon.terminate();

    let text = st.to_string();
    assert_eq!(
        st["streams"][0]["source"],
        format!("http://admin:***@{}/video", up.addr)
    );
    assert_eq!(
        st["streams"][1]["last_error"],
        "upstream answered 401 Unauthorized"
    );
    let logs = daemon.stderr_text();
    assert!(
        logs.contains("admin:***@"),
        "the logs name the source: {logs}"
    );
    for secret in ["hunter2", "wrongpass", "YWRtaW46aHVudGVyMg"] {
        assert!(!text.contains(secret), "/status leaks {secret}: {text}");
        assert!(!logs.contains(secret), "logs leak {secret}");
        assert!(
            !String::from_utf8_lossy(&page).contains(secret),
            "/ leaks {secret}"
        );
    }
    let reqs = up.requests.lock().expect("lock");
    assert!(
        reqs.iter()
            .any(|r| r.contains("Authorization: Basic YWRtaW46aHVudGVyMg=="))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_polling_of_another_mjpegd() {
    let a = TestServer::start(&["--source", "pattern:96x64@10"]).await;
    let b = TestServer::start(&[
        "--source",
        &format!("snapshot:http://{}/snapshot@5", a.addr),
    ])
    .await;
    let mut client = StreamClient::connect(b.addr, "/stream").await;
    let start = Instant::now();
    let mut frames = Vec::new();
    while frames.len() < 6 {
        let f = client.next_frame().await;
        if decode(&f.jpeg) == (96, 64) {
            frames.push(f);
        }
        assert!(start.elapsed() < Duration::from_secs(10), "too slow");
    }
    // About 5 per second: 5 intervals take roughly a second.
    let span = frames[5].at - frames[0].at;
    assert!(
        span >= Duration::from_millis(600),
        "polled too fast: {span:?}"
    );
    assert!(
        span <= Duration::from_secs(4),
        "polled too slowly: {span:?}"
    );
    let st = status(b.addr).await;
    assert_eq!(st["streams"][0]["kind"], "snapshot");
    assert_eq!(st["streams"][0]["online"], true);
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_polling_reuses_one_connection() {
    let jpeg = fixture_jpegs().remove(0);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let (acc, srv, body) = (accepted.clone(), served.clone(), jpeg.clone());
    tokio::spawn(async move {
        while let Ok((mut io, _)) = listener.accept().await {
            acc.fetch_add(1, Ordering::Relaxed);
            let (srv, body) = (srv.clone(), body.clone());
            tokio::spawn(async move {
                while let Some(req) = read_request(&mut io).await {
                    assert!(req.starts_with("GET /jpg/image.jpg HTTP/1.1\r\n"), "{req}");
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    if io.write_all(head.as_bytes()).await.is_err()
                        || io.write_all(&body).await.is_err()
                    {
                        return;
                    }
                    srv.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let server = TestServer::start(&[
        "--source",
        &format!("snapshot:http://{addr}/jpg/image.jpg@20"),
    ])
    .await;
    let mut client = StreamClient::connect(server.addr, "/stream").await;
    for _ in 0..3 {
        assert_eq!(client.next_frame().await.jpeg, jpeg);
    }
    eventually(Duration::from_secs(10), "8 fetches", || {
        std::future::ready(served.load(Ordering::Relaxed) >= 8)
    })
    .await;
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        1,
        "keep-alive connection not reused"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_camera_shows_placeholder_and_server_keeps_serving() {
    let server = TestServer::start(&[
        "--source",
        "cam=v4l2:/dev/video99",
        "--source",
        "pattern:96x64@10",
    ])
    .await;
    let mut client = StreamClient::connect(server.addr, "/streams/cam/stream").await;
    let f = client.next_frame().await;
    assert_eq!(decode(&f.jpeg), (640, 480));
    let st = status(server.addr).await;
    let cam = &st["streams"][0];
    assert_eq!(cam["kind"], "v4l2");
    assert_eq!(cam["online"], false);
    assert_eq!(cam["last_error"], "/dev/video99 not found");
    // The other stream and the rest of the server are unaffected.
    let mut other = StreamClient::connect(server.addr, "/streams/pattern/stream").await;
    assert_eq!(decode(&other.next_frame().await.jpeg), (96, 64));
    let (code, _, _) = get(server.addr, "/").await;
    assert_eq!(code, 200);
    // Still retrying, still showing why.
    let f = client.next_frame().await;
    assert_eq!(decode(&f.jpeg), (640, 480));
    server.stop().await;
}

#[test]
fn devices_subcommand_lists_or_says_none() {
    let out = run(&["devices"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let has_cameras = std::path::Path::new("/dev/video0").exists();
    if has_cameras {
        assert!(text.contains("/dev/video"), "{text}");
    } else if !std::fs::read_dir("/dev")
        .expect("/dev")
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("video"))
    {
        assert!(text.starts_with("no V4L2 devices found"), "{text}");
    }
}
