//! Operations: `/metrics`, snapshot freshness and offline answers,
//! `--drop-same-frames`, `--allow-origin`, `--capture-on-demand`, and the
//! client log lines. Against the real server on 127.0.0.1:0 (or the binary).

mod common;

use common::*;
use mjpegd::frame::FrameMeta;
use mjpegd::http::{HttpContext, HttpOptions, serve_connection};
use mjpegd::hub::FrameHub;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves hand-fed hubs with the real HTTP code on 127.0.0.1:0, for sources
/// whose timing a test must control exactly.
async fn serve_hubs(
    hubs: Vec<Arc<FrameHub>>,
    options: HttpOptions,
) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cancel = CancellationToken::new();
    let ctx = Arc::new(HttpContext::new(hubs, options));
    let c = cancel.clone();
    tokio::spawn(async move {
        loop {
            let (socket, peer) = tokio::select! {
                _ = c.cancelled() => return,
                a = listener.accept() => a.expect("accept"),
            };
            tokio::spawn(serve_connection(socket, peer, ctx.clone(), c.clone()));
        }
    });
    (addr, cancel)
}

/// A parsed exposition: `name{labels}` → value. Panics on any line that is
/// not a valid comment or sample, and on samples without HELP and TYPE.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut typed = std::collections::HashSet::new();
    let mut helped = std::collections::HashSet::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(!help.is_empty());
            assert!(helped.insert(name.to_owned()), "HELP twice for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_owned()), "TYPE twice for {name}");
        } else {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            let name = series.split('{').next().expect("name");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "{line}"
            );
            let labels = &series[name.len()..];
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split(',') {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    assert!(!k.is_empty() && v.starts_with('"') && v.ends_with('"'));
                }
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
                .unwrap_or(name);
            assert!(typed.contains(family), "no TYPE before {line}");
            assert!(helped.contains(family), "no HELP before {line}");
            assert!(
                samples.insert(series.to_owned(), value).is_none(),
                "duplicate {series}"
            );
        }
    }
    samples
}

async fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let (code, head, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(
        header(&head, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse_metrics(&String::from_utf8(body).expect("UTF-8"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_valid_and_move() {
    let s = TestServer::start(&[
        "--source",
        "pattern:160x120@30",
        "--source",
        "cam=pattern:160x120@10",
    ])
    .await;
    // Both sources have delivered a frame once their snapshots answer.
    assert_eq!(get(s.addr, "/streams/cam/snapshot").await.0, 200);
    assert_eq!(get(s.addr, "/streams/pattern/snapshot").await.0, 200);
    let before = scrape(s.addr).await;
    let m = |map: &HashMap<String, f64>, k: &str| {
        *map.get(k)
            .unwrap_or_else(|| panic!("no {k} in {:?}", map.keys()))
    };
    assert_eq!(m(&before, r#"mjpegd_clients{stream="pattern"}"#), 0.0);
    assert_eq!(m(&before, r#"mjpegd_source_online{stream="cam"}"#), 1.0);
    assert!(m(&before, "process_open_fds") >= 3.0);
    assert!(m(&before, "process_resident_memory_bytes") > 1e6);
    let start = m(&before, "process_start_time_seconds");
    assert!(start <= now_unix() && start > now_unix() - 3600.0);

    let mut client = StreamClient::connect(s.addr, "/stream").await;
    for _ in 0..10 {
        client.next_frame().await;
    }
    // A frame is counted once its send is done, which a loaded machine may
    // do just after the client has read it: poll briefly.
    let mut during = scrape(s.addr).await;
    let counted_by = Instant::now() + Duration::from_secs(2);
    while m(
        &during,
        r#"mjpegd_frames_delivered_total{stream="pattern"}"#,
    ) < 10.0
        && Instant::now() < counted_by
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        during = scrape(s.addr).await;
    }
    assert_eq!(m(&during, r#"mjpegd_clients{stream="pattern"}"#), 1.0);
    assert_eq!(m(&during, r#"mjpegd_clients{stream="cam"}"#), 0.0);
    let delivered = m(
        &during,
        r#"mjpegd_frames_delivered_total{stream="pattern"}"#,
    );
    assert!(delivered >= 10.0, "{delivered}");
    assert!(
        m(&during, r#"mjpegd_frames_captured_total{stream="pattern"}"#)
            > m(&before, r#"mjpegd_frames_captured_total{stream="pattern"}"#)
    );
    assert!(
        m(&during, r#"mjpegd_bytes_out_total{stream="pattern"}"#)
            > m(&before, r#"mjpegd_bytes_out_total{stream="pattern"}"#) + 10.0 * 1000.0
    );

    // The latency histogram counts every delivered frame, cumulatively.
    let count = m(
        &during,
        r#"mjpegd_capture_to_send_seconds_count{stream="pattern"}"#,
    );
    assert!(
        count >= 10.0 && count <= delivered,
        "{count} vs {delivered}"
    );
    let mut prev = 0.0;
    for le in [
        "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
        "+Inf",
    ] {
        let b = m(
            &during,
            &format!(r#"mjpegd_capture_to_send_seconds_bucket{{stream="pattern",le="{le}"}}"#),
        );
        assert!(b >= prev, "buckets are cumulative");
        prev = b;
    }
    assert_eq!(prev, count, "+Inf bucket is the count");
    // Frames go out right after capture on loopback: most within 100 ms.
    let fast = m(
        &during,
        r#"mjpegd_capture_to_send_seconds_bucket{stream="pattern",le="0.1"}"#,
    );
    assert!(fast >= count * 0.5, "{fast} of {count} within 100 ms");
    let sum = m(
        &during,
        r#"mjpegd_capture_to_send_seconds_sum{stream="pattern"}"#,
    );
    assert!(
        sum > 0.0 && sum < count,
        "mean latency under 1 s: {sum}/{count}"
    );
    assert_eq!(
        m(
            &during,
            r#"mjpegd_capture_to_send_seconds_count{stream="cam"}"#
        ),
        0.0
    );

    drop(client);
    let addr = s.addr;
    eventually(
        Duration::from_secs(5),
        "the client counted out",
        || async move { m(&scrape(addr).await, r#"mjpegd_clients{stream="pattern"}"#) == 0.0 },
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_max_age_accepts_a_recent_frame_at_once() {
    // One frame a second: without max_age a snapshot waits for the next one.
    let s = TestServer::start(&["--source", "pattern:160x120@1", "--snapshot-timeout", "3"]).await;
    // Let the first frame exist.
    let (code, _, _) = get(s.addr, "/snapshot").await;
    assert_eq!(code, 200);

    let asked = now_unix();
    let t = Instant::now();
    let (code, head, body) = get(s.addr, "/snapshot?max_age=5000").await;
    let took = t.elapsed();
    assert_eq!(code, 200, "{head}");
    decode(&body);
    let ts = timestamp(&head);
    assert!(ts < asked, "an older frame was accepted: {ts} >= {asked}");
    assert!(
        took < Duration::from_millis(400),
        "answered at once: {took:?}"
    );

    // A max_age the current frame exceeds waits for a fresh one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = now_unix();
    let (code, head, _) = get(s.addr, "/snapshot?max_age=50").await;
    assert_eq!(code, 200);
    let ts = timestamp(&head);
    assert!(ts >= asked - 0.06, "fresh enough: {ts} < {asked}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_an_offline_stream_is_503_with_retry_after() {
    let waiting = FrameHub::new("waiting", "test", "test");
    let down = FrameHub::new("down", "test", "test");
    down.publish_offline(
        &test_jpeg(64, 48, 0),
        FrameMeta::now(64, 48),
        "camera unplugged",
    );
    let options = HttpOptions {
        snapshot_timeout: Duration::from_millis(300),
        ..HttpOptions::default()
    };
    let (addr, cancel) = serve_hubs(vec![waiting.clone(), down.clone()], options).await;

    let t = Instant::now();
    let (code, head, body) = get(addr, "/streams/waiting/snapshot").await;
    assert_eq!(code, 503, "no frame yet");
    assert_eq!(header(&head, "retry-after"), Some("1"));
    assert!(String::from_utf8_lossy(&body).contains("no frame yet"));
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "waited the timeout"
    );

    let t = Instant::now();
    let (code, head, body) = get(addr, "/streams/down/snapshot").await;
    assert_eq!(code, 503);
    assert_eq!(header(&head, "retry-after"), Some("1"));
    assert!(
        String::from_utf8_lossy(&body).contains("camera unplugged"),
        "the reason is given"
    );
    assert!(t.elapsed() < Duration::from_millis(250), "answered at once");

    // Back online: a frame published during the wait is the answer.
    let hub = waiting.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        hub.publish(&test_jpeg(64, 48, 50), FrameMeta::now(64, 48));
    });
    let (code, _, body) = get(addr, "/streams/waiting/snapshot").await;
    assert_eq!(code, 200);
    assert_eq!(decode(&body), (64, 48));
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_folder_source_is_offline_in_snapshot_and_metrics() {
    let s = TestServer::start(&[
        "--source",
        "gone=dir:/nonexistent/mjpegd-test",
        "--snapshot-timeout",
        "0.3",
    ])
    .await;
    // The supervisor publishes the placeholder right after the first failure.
    eventually(Duration::from_secs(5), "offline", || async {
        let (code, _, body) = get(s.addr, "/snapshot").await;
        code == 503 && String::from_utf8_lossy(&body).contains("nonexistent")
    })
    .await;
    let (code, head, body) = get(s.addr, "/snapshot").await;
    assert_eq!(code, 503);
    assert_eq!(header(&head, "retry-after"), Some("1"));
    assert!(String::from_utf8_lossy(&body).starts_with("stream gone: "));
    let m = scrape(s.addr).await;
    assert_eq!(m[r#"mjpegd_source_online{stream="gone"}"#], 0.0);
    // The stream itself shows the NO SIGNAL picture.
    let mut c = StreamClient::connect(s.addr, "/stream").await;
    decode(&c.next_frame().await.jpeg);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_same_frames_repeats_once_a_second_and_sends_changes_at_once() {
    let hub = FrameHub::new("still", "test", "test");
    hub.set_drop_same_frames(true);
    let (addr, cancel) = serve_hubs(vec![hub.clone()], HttpOptions::default()).await;
    // A source at 50 fps whose picture never changes, until told to.
    let shade = Arc::new(std::sync::atomic::AtomicU8::new(10));
    let feeder = {
        let (hub, shade, cancel) = (hub.clone(), shade.clone(), cancel.clone());
        tokio::spawn(async move {
            let mut frames = HashMap::new();
            while !cancel.is_cancelled() {
                let s = shade.load(std::sync::atomic::Ordering::Relaxed);
                let jpeg = frames
                    .entry(s)
                    .or_insert_with(|| test_jpeg(64, 48, usize::from(s)));
                hub.publish(jpeg, FrameMeta::now(64, 48));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut client = StreamClient::connect(addr, "/stream").await;
    let first = client.next_frame().await;
    // Identical frames for 2.5 s: about one a second gets through.
    let start = Instant::now();
    let mut repeats = 0;
    while start.elapsed() < Duration::from_millis(2500) {
        let f = tokio::time::timeout(Duration::from_millis(2500), client.next_frame()).await;
        let Ok(f) = f else { break };
        assert_eq!(f.jpeg, first.jpeg);
        assert!(
            f.timestamp > first.timestamp,
            "a repeat has a new timestamp"
        );
        repeats += 1;
    }
    assert!((1..=4).contains(&repeats), "{repeats} repeats in 2.5 s");
    let status = status(addr).await;
    let unchanged = status["streams"][0]["frames_unchanged"]
        .as_u64()
        .expect("count");
    assert!(unchanged >= 60, "{unchanged} identical frames not sent");

    // A change goes out with the next capture.
    shade.store(200, std::sync::atomic::Ordering::Relaxed);
    let t = Instant::now();
    let changed = loop {
        let f = client.next_frame().await;
        if f.jpeg != first.jpeg {
            break f;
        }
    };
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    decode(&changed.jpeg);
    cancel.cancel();
    let _ = feeder.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_origin_adds_cors_headers_everywhere() {
    let s = TestServer::start(&[
        "--source",
        "pattern:160x120@30",
        "--allow-origin",
        "https://example.com",
    ])
    .await;
    for path in ["/snapshot", "/status", "/metrics", "/", "/nope"] {
        let (_, head, _) = get(s.addr, path).await;
        assert_eq!(
            header(&head, "access-control-allow-origin"),
            Some("https://example.com"),
            "{path}: {head}"
        );
    }
    let client = StreamClient::connect(s.addr, "/stream").await;
    assert_eq!(
        header(&client.head, "access-control-allow-origin"),
        Some("https://example.com")
    );
    let (code, head, _) = request(
        s.addr,
        "OPTIONS /snapshot HTTP/1.1\r\nOrigin: https://example.com\r\n\
Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: authorization\r\n\
Connection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, 204);
    assert_eq!(
        header(&head, "access-control-allow-origin"),
        Some("https://example.com")
    );
    assert_eq!(
        header(&head, "access-control-allow-methods"),
        Some("GET, HEAD, OPTIONS")
    );
    assert_eq!(
        header(&head, "access-control-allow-headers"),
        Some("authorization")
    );
    assert_eq!(head.matches("Access-Control-Allow-Origin").count(), 1);
    s.stop().await;

    // Without the option there are no CORS headers.
    let s = TestServer::start(&["--source", "pattern:160x120@30"]).await;
    let (_, head, _) = get(s.addr, "/snapshot").await;
    assert_eq!(header(&head, "access-control-allow-origin"), None);
    let (_, head, _) = request(
        s.addr,
        "OPTIONS /snapshot HTTP/1.1\r\nAccess-Control-Request-Method: GET\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(header(&head, "access-control-allow-methods"), None);
    s.stop().await;
}

async fn stream_state(addr: SocketAddr) -> (bool, u64) {
    let st = status(addr).await;
    let s = &st["streams"][0];
    (
        s["paused"].as_bool().expect("paused"),
        s["frames_captured"].as_u64().expect("captured"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_on_demand_pauses_and_resumes() {
    capture_on_demand_with("pattern:160x120@30").await;
}

/// Any source, not only the test pattern: the supervisor stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_on_demand_stops_a_folder_source() {
    let dir = jpeg_dir(64, 48, 3);
    capture_on_demand_with(&format!("dir:{}@30", dir.display())).await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn wait_paused(addr: SocketAddr, what: &str) {
    eventually(Duration::from_secs(5), what, || async {
        stream_state(addr).await.0
    })
    .await;
}

async fn capture_on_demand_with(source: &str) {
    let s = TestServer::start(&["--source", source, "--capture-on-demand", "0.5"]).await;
    // Nobody watches: capture stops after the linger time.
    wait_paused(s.addr, "paused").await;
    let (_, captured) = stream_state(s.addr).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (paused, still) = stream_state(s.addr).await;
    assert!(paused);
    assert_eq!(captured, still, "no frames captured while paused");

    // A viewer connects: a frame captured after connecting within 1 s.
    let connected = now_unix();
    let t = Instant::now();
    let mut client = StreamClient::connect(s.addr, "/stream").await;
    loop {
        let f = client.next_frame().await;
        if f.timestamp >= connected {
            break;
        }
    }
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    for _ in 0..10 {
        client.next_frame().await;
    }
    let (paused, _) = stream_state(s.addr).await;
    assert!(!paused);

    // The viewer leaves: paused again after the linger time.
    drop(client);
    wait_paused(s.addr, "paused again").await;
    // A snapshot request resumes capture too, and gets a fresh frame.
    let asked = now_unix();
    let (code, head, _) = get(s.addr, "/snapshot").await;
    assert_eq!(code, 200);
    let ts = timestamp(&head);
    assert!(ts >= asked, "fresh snapshot after a pause");
    s.stop().await;
}

#[test]
fn client_connect_and_disconnect_are_logged_as_json() {
    use std::io::{Read, Write};
    let mut daemon = Daemon::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--source",
            "pattern:160x120@30",
            "--log-format",
            "json",
        ],
        &[("RUST_LOG", "mjpegd=debug")],
        1,
    );
    let mut io = std::net::TcpStream::connect(daemon.addr(0)).expect("connect");
    let local = io.local_addr().expect("local addr").to_string();
    io.write_all(b"GET /stream HTTP/1.1\r\n\r\n").expect("send");
    let mut buf = vec![0u8; 200_000];
    let mut got = 0;
    while got < 100_000 {
        got += io.read(&mut buf).expect("read stream");
    }
    drop(io);
    // The disconnect is logged once the server notices it.
    eventually_blocking(Duration::from_secs(5), "the disconnect logged", || {
        daemon.stderr_text().contains("client disconnected")
    });
    daemon.terminate();
    let err = daemon.stderr_text();
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let find = |msg: &str| {
        lines
            .iter()
            .find(|v| {
                v["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(msg))
            })
            .unwrap_or_else(|| panic!("no {msg:?} line in:\n{err}"))
    };
    let connected = find("client connected");
    assert_eq!(connected["level"], "DEBUG");
    assert_eq!(connected["fields"]["stream"], "pattern");
    assert_eq!(connected["span"]["peer"], local.as_str());
    let gone = find("client disconnected");
    assert_eq!(gone["span"]["peer"], local.as_str());
    let frames = gone["fields"]["frames"].as_u64().expect("frames");
    assert!(frames >= 1, "{gone}");
    assert!(gone["fields"]["duration_s"].is_string() || gone["fields"]["duration_s"].is_number());
}
