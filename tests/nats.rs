//! Scale-out over NATS with real `nats-server` processes (on ports they
//! pick themselves, read back from their logs) and real `mjpegd` binaries:
//! a capture node publishes, edges subscribe and serve viewers. A missing
//! `nats-server` fails these tests (`.ci/run` installs it).

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `nats-server`, with the ports it reported.
struct NatsServer {
    child: Child,
    client_port: u16,
    monitor_port: u16,
    route_port: Option<u16>,
    args: Vec<String>,
}

impl NatsServer {
    /// A server on a free port.
    fn start(extra: &[&str]) -> NatsServer {
        NatsServer::start_on(-1, extra)
    }

    /// A server on `port` (-1: a free one), with a monitor on a free port.
    fn start_on(port: i32, extra: &[&str]) -> NatsServer {
        let mut args: Vec<String> = ["-a", "127.0.0.1", "-m", "-1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(["-p".to_owned(), port.to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let clustered = extra.contains(&"--cluster");
        let mut child = Command::new(require("nats-server"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run nats-server");
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().expect("lines").push(line);
            }
        });
        let port_after = |text: &str| -> Option<u16> {
            let lines = lines.lock().expect("lines");
            lines
                .iter()
                .find_map(|l| l.split_once(text).map(|(_, rest)| rest.to_owned()))
                .and_then(|rest| rest.trim().rsplit(':').next()?.parse().ok())
        };
        let ready = || {
            let client = port_after("Listening for client connections on ");
            let monitor = port_after("Starting http monitor on ");
            let route = port_after("Listening for route connections on ");
            (client.is_some() && monitor.is_some() && (!clustered || route.is_some()))
                .then(|| (client.unwrap_or(0), monitor.unwrap_or(0), route))
        };
        eventually_blocking(Duration::from_secs(10), "nats-server ready", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "nats-server exited ({status}): {}",
                    lines.lock().expect("lines").join("\n")
                );
            }
            ready().is_some()
        });
        let (client_port, monitor_port, route_port) = ready().expect("ports");
        NatsServer {
            child,
            client_port,
            monitor_port,
            route_port,
            args,
        }
    }

    /// `nats://127.0.0.1:PORT/SUBJECT` with `query` appended.
    fn url(&self, subject: &str) -> String {
        format!("nats://127.0.0.1:{}/{subject}", self.client_port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port (retrying while the old
    /// socket lingers).
    fn restart(&mut self) {
        self.kill();
        let port = i32::from(self.client_port);
        let extra: Vec<String> = self.args.iter().skip(6).cloned().collect();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let restarted = std::panic::catch_unwind(|| NatsServer::start_on(port, &extra));
            match restarted {
                Ok(s) => {
                    *self = s;
                    return;
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => std::panic::resume_unwind(e),
            }
        }
    }

    /// Names of the client connections the server has, from its monitor.
    async fn connection_names(&self) -> Vec<String> {
        let addr: SocketAddr = format!("127.0.0.1:{}", self.monitor_port)
            .parse()
            .expect("addr");
        let (code, _, body) = get(addr, "/connz").await;
        assert_eq!(code, 200);
        let v: Value = serde_json::from_slice(&body).expect("connz JSON");
        v["connections"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A capture node without HTTP, publishing `source` to `url`.
fn capture_node(source: &str, url: &str) -> Daemon {
    Daemon::start(
        &[
            "--listen",
            "none",
            "--source",
            &format!("cam={source}"),
            "--publish",
            url,
        ],
        &[],
        0,
    )
}

/// A capture node that also serves HTTP (to compare with what edges serve).
fn capture_node_with_http(source: &str, url: &str, extra: &[&str]) -> Daemon {
    let mut args = vec!["--source", source, "--publish", url];
    args.extend_from_slice(extra);
    Daemon::serve(&args)
}

/// An edge serving `url` as its stream.
fn edge(url: &str) -> Daemon {
    Daemon::serve(&["--source", &format!("cam={url}")])
}

/// Polls the first stream's `/status` until `pred` holds; returns it.
async fn wait_status(
    addr: SocketAddr,
    within: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    wait_stream(addr, None, within, what, pred).await
}

/// Waits for the edge at `addr` to show NO SIGNAL.
async fn wait_no_signal(addr: SocketAddr) -> Value {
    wait_status(addr, Duration::from_secs(8), "NO SIGNAL", no_signal).await
}

async fn wait_online(addr: SocketAddr) {
    wait_status(addr, Duration::from_secs(15), "online", |s| {
        s["online"] == true
    })
    .await;
}

fn no_signal(s: &Value) -> bool {
    s["online"] == false
        && s["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no frames from the bus"))
}

/// Reads frames for `secs` seconds: (X-Timestamp in micros → JPEG) and the
/// longest gap between two frames.
async fn collect(client: &mut StreamClient, secs: f64) -> (HashMap<u64, Vec<u8>>, Duration) {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut frames = HashMap::new();
    let mut last = Instant::now();
    let mut gap = Duration::ZERO;
    while Instant::now() < end {
        let f = client.next_frame().await;
        gap = gap.max(f.at.duration_since(last));
        last = f.at;
        frames.insert((f.timestamp * 1e6).round() as u64, f.jpeg);
    }
    (frames, gap)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_node_and_two_edges_deliver_byte_identical_jpegs() {
    let nats = NatsServer::start(&[]);
    let url = nats.url("cams.front");
    let capture = capture_node_with_http("pattern:320x240@15", &url, &[]);
    let (e1, e2) = (edge(&url), edge(&url));
    for d in [&capture, &e1, &e2] {
        wait_online(d.addr(0)).await;
    }
    let mut viewers = Vec::new();
    for d in [&capture, &e1, &e2] {
        viewers.push(StreamClient::connect(d.addr(0), "/stream").await);
    }
    let [c, a, b] = &mut viewers[..] else {
        unreachable!()
    };
    let ((at_capture, _), (at_e1, _), (at_e2, _)) =
        tokio::join!(collect(c, 3.0), collect(a, 3.0), collect(b, 3.0));
    let mut common = 0;
    for (ts, jpeg) in &at_e1 {
        if let (Some(original), Some(other)) = (at_capture.get(ts), at_e2.get(ts)) {
            assert_eq!(
                jpeg, original,
                "edge 1 frame {ts} differs from the capture node's"
            );
            assert_eq!(
                other, original,
                "edge 2 frame {ts} differs from the capture node's"
            );
            common += 1;
        }
    }
    assert!(common >= 10, "only {common} frames seen at all three nodes");
    // Every frame an edge served is one the capture node captured: the
    // capture time travels with it.
    let unknown = at_e1
        .keys()
        .filter(|ts| !at_capture.contains_key(ts))
        .count();
    assert!(
        unknown <= 2,
        "{unknown} edge frames with unknown capture times"
    );
    let s = status(capture.addr(0)).await;
    assert!(
        stream_of(&s, None)["frames_published"]
            .as_u64()
            .unwrap_or(0)
            > 30,
        "{s}"
    );
    let s = status(e1.addr(0)).await;
    assert_eq!(stream_of(&s, None)["kind"], "nats");
    assert_eq!(stream_of(&s, None)["source"], url.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_edge_does_not_disturb_the_others_viewers() {
    let nats = NatsServer::start(&[]);
    let url = nats.url("cams.hall");
    let _capture = capture_node("pattern:320x240@15", &url);
    let (mut e1, e2) = (edge(&url), edge(&url));
    wait_online(e1.addr(0)).await;
    wait_online(e2.addr(0)).await;
    let mut kept = StreamClient::connect(e2.addr(0), "/stream").await;
    let mut doomed = StreamClient::connect(e1.addr(0), "/stream").await;
    doomed.next_frame().await;
    let before = stream_of(&status(e2.addr(0)).await, None)["frames_captured"]
        .as_u64()
        .expect("count");
    let viewing = tokio::spawn(async move { collect(&mut kept, 4.0).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(e1.pid(), libc::SIGKILL) };
    let _ = e1.child.wait();
    let (frames, gap) = viewing.await.expect("viewer");
    assert!(frames.len() >= 30, "{} frames in 4 s", frames.len());
    assert!(gap < Duration::from_millis(1500), "a {gap:?} gap");
    let s = wait_status(e2.addr(0), Duration::from_secs(1), "online", |s| {
        s["online"] == true
    })
    .await;
    let after = s["frames_captured"].as_u64().expect("count");
    assert!(after >= before + 30, "{before} → {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_capture_node_shows_no_signal_on_every_edge_until_it_returns() {
    let nats = NatsServer::start(&[]);
    let url = nats.url("cams.yard");
    let mut capture = capture_node("pattern:320x240@15", &url);
    let (e1, e2) = (edge(&url), edge(&url));
    wait_online(e1.addr(0)).await;
    wait_online(e2.addr(0)).await;
    let mut v1 = StreamClient::connect(e1.addr(0), "/stream").await;
    let mut v2 = StreamClient::connect(e2.addr(0), "/stream").await;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(capture.pid(), libc::SIGKILL) };
    let _ = capture.child.wait();
    let killed = Instant::now();
    for e in [&e1, &e2] {
        let s = wait_no_signal(e.addr(0)).await;
        assert_eq!(s["last_error"], "no frames from the bus", "{s}");
    }
    assert!(
        killed.elapsed() >= Duration::from_secs(2),
        "NO SIGNAL too early"
    );
    // The viewers stayed connected and see the placeholder.
    for v in [&mut v1, &mut v2] {
        let (frames, _) = collect(v, 1.5).await;
        assert!(!frames.is_empty());
    }
    let back = now_unix();
    let _capture = capture_node("pattern:320x240@15", &url);
    for e in [&e1, &e2] {
        wait_online(e.addr(0)).await;
    }
    for v in [&mut v1, &mut v2] {
        v.next_frame_where(Duration::from_secs(5), "a new frame on a viewer", |f| {
            f.timestamp >= back
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_nats_server_is_reconnected_without_restarting_mjpegd() {
    let mut nats = NatsServer::start(&[]);
    let url = nats.url("cams.gate");
    let capture = capture_node("pattern:320x240@15", &url);
    let e = edge(&url);
    wait_online(e.addr(0)).await;
    let mut viewer = StreamClient::connect(e.addr(0), "/stream").await;
    nats.kill();
    let s = wait_no_signal(e.addr(0)).await;
    assert!(
        s["last_error"]
            .as_str()
            .is_some_and(|r| r.contains("not connected")),
        "{s}"
    );
    nats.restart();
    wait_online(e.addr(0)).await;
    let (frames, _) = collect(&mut viewer, 1.0).await;
    assert!(
        frames.len() >= 5,
        "{} frames after the restart",
        frames.len()
    );
    let names = nats.connection_names().await;
    assert!(
        names.contains(&"mjpegd publish cam".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"mjpegd subscribe cam".to_owned()),
        "{names:?}"
    );
    drop(capture);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_keeps_frames_flowing_when_a_member_dies() {
    let a = NatsServer::start(&["--cluster_name", "mj", "--cluster", "nats://127.0.0.1:-1"]);
    let routes = format!("nats://127.0.0.1:{}", a.route_port.expect("route port"));
    let member = || {
        NatsServer::start(&[
            "--cluster_name",
            "mj",
            "--cluster",
            "nats://127.0.0.1:-1",
            "--routes",
            &routes,
        ])
    };
    let (b, c) = (member(), member());
    let mut a = a;
    // The capture node on A, the edges on B and C.
    let _capture = capture_node("pattern:320x240@15", &a.url("cams.dock"));
    let e1 = edge(&b.url("cams.dock"));
    let e2 = edge(&c.url("cams.dock"));
    wait_online(e1.addr(0)).await;
    wait_online(e2.addr(0)).await;
    assert!(
        a.connection_names()
            .await
            .contains(&"mjpegd publish cam".to_owned())
    );
    assert!(
        b.connection_names()
            .await
            .contains(&"mjpegd subscribe cam".to_owned())
    );
    assert!(
        c.connection_names()
            .await
            .contains(&"mjpegd subscribe cam".to_owned())
    );
    let mut v1 = StreamClient::connect(e1.addr(0), "/stream").await;
    let mut v2 = StreamClient::connect(e2.addr(0), "/stream").await;
    v1.next_frame().await;
    v2.next_frame().await;
    // Kill the member that carries every frame into the cluster; the
    // capture node finds B or C (learned from A) and the edges never see
    // a gap long enough for NO SIGNAL.
    let watch = |addr: SocketAddr| {
        tokio::spawn(async move {
            let end = Instant::now() + Duration::from_secs(6);
            while Instant::now() < end {
                let s = status(addr).await;
                assert_eq!(stream_of(&s, None)["online"], true, "went offline: {s}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let (w1, w2) = (watch(e1.addr(0)), watch(e2.addr(0)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.kill();
    let ((f1, gap1), (f2, gap2)) = tokio::join!(collect(&mut v1, 5.0), collect(&mut v2, 5.0));
    w1.await.expect("edge 1 stayed online");
    w2.await.expect("edge 2 stayed online");
    for (frames, gap) in [(f1, gap1), (f2, gap2)] {
        assert!(frames.len() >= 30, "{} frames in 5 s", frames.len());
        assert!(gap < Duration::from_millis(2500), "a {gap:?} gap");
    }
    let names: Vec<String> = [b.connection_names().await, c.connection_names().await].concat();
    assert!(
        names.contains(&"mjpegd publish cam".to_owned()),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_edge_gets_the_newest_frame_at_once() {
    let nats = NatsServer::start(&[]);
    let url = nats.url("cams.slow");
    // One frame every 5 s: waiting for the next one would take seconds.
    let capture = capture_node_with_http("pattern:320x240@0.2", &url, &[]);
    wait_status(
        capture.addr(0),
        Duration::from_secs(10),
        "a frame published",
        |s| s["frames_published"].as_u64() >= Some(1),
    )
    .await;
    let started = Instant::now();
    let e = edge(&url);
    let mut viewer = StreamClient::connect(e.addr(0), "/stream").await;
    let first = viewer.next_frame().await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(2500),
        "first frame after {waited:?}"
    );
    let (original, _) = {
        let mut c = StreamClient::connect(capture.addr(0), "/stream").await;
        let f = c.next_frame().await;
        ((f.timestamp, f.jpeg), ())
    };
    assert_eq!(first.timestamp, original.0);
    assert_eq!(first.jpeg, original.1);
    // Heartbeats keep the still stream online on the edge.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let s = status(e.addr(0)).await;
    assert_eq!(stream_of(&s, None)["online"], true, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_capture_nodes_offline_reason_reaches_the_edge() {
    let nats = NatsServer::start(&[]);
    let url = nats.url("cams.gone");
    let missing = temp_path("no-such-dir");
    let capture = capture_node_with_http(&format!("dir:{}", missing.display()), &url, &[]);
    let s = wait_status(capture.addr(0), Duration::from_secs(8), "offline", |s| {
        s["online"] == false && s["last_error"].is_string()
    })
    .await;
    let reason = s["last_error"].as_str().expect("reason").to_owned();
    let e = edge(&url);
    let s = wait_status(
        e.addr(0),
        Duration::from_secs(8),
        "the relayed reason",
        |s| s["online"] == false && s["last_error"] == reason.as_str(),
    )
    .await;
    assert!(s["frames_captured"].as_u64() == Some(0), "{s}");
    let mut viewer = StreamClient::connect(e.addr(0), "/stream").await;
    viewer.next_frame().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_the_servers_max_payload_are_reported_not_lost_silently() {
    let conf = temp_path("nats.conf");
    std::fs::write(&conf, "max_payload: 24576\n").expect("write conf");
    let nats = NatsServer::start(&["-c", conf.to_str().expect("path")]);
    let url = nats.url("cams.big");
    let capture = capture_node_with_http("pattern:1280x720@5", &url, &["--quality", "95"]);
    let e = edge(&url);
    let s = wait_status(e.addr(0), Duration::from_secs(10), "the size notice", |s| {
        s["last_error"]
            .as_str()
            .is_some_and(|r| r.contains("too big for the bus"))
    })
    .await;
    assert_eq!(s["online"], false);
    let log = capture.stderr_text();
    assert!(
        log.contains("does not fit the NATS server's max_payload of 24 KiB"),
        "{log}"
    );
    assert_eq!(log.matches("does not fit").count(), 1, "logged once: {log}");
    let _ = std::fs::remove_file(conf);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_files_and_are_never_shown() {
    let password = "Bus-Secret-8d1f";
    let nats = NatsServer::start(&["--user", "cam", "--pass", password]);
    let pw_file = temp_path("nats-pw");
    std::fs::write(&pw_file, format!("{password}\n")).expect("write");
    let url = format!(
        "{}?user=cam&password_file={}",
        nats.url("cams.safe"),
        pw_file.display()
    );
    let capture = capture_node_with_http("pattern:320x240@10", &url, &[]);
    let e = edge(&url);
    wait_online(e.addr(0)).await;
    let wrong_file = temp_path("nats-wrong-pw");
    std::fs::write(&wrong_file, "Wrong-Secret-77").expect("write");
    let wrong_url = format!(
        "{}?user=cam&password_file={}",
        nats.url("cams.safe"),
        wrong_file.display()
    );
    let refused = edge(&wrong_url);
    wait_no_signal(refused.addr(0)).await;
    for d in [&capture, &e, &refused] {
        for path in ["/status", "/metrics"] {
            let (_, _, body) = get(d.addr(0), path).await;
            let body = String::from_utf8_lossy(&body);
            assert!(
                !body.contains(password) && !body.contains("Wrong-Secret"),
                "{path}: {body}"
            );
        }
        let log = d.stderr_text();
        assert!(
            !log.contains(password) && !log.contains("Wrong-Secret"),
            "{log}"
        );
    }
    assert!(
        refused.stderr_text().contains("uthorization"),
        "{}",
        refused.stderr_text()
    );
    // A password in the URL is refused before anything starts.
    let out = run(&[
        "--source",
        &format!("nats://cam:{password}@127.0.0.1:4222/x"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("password_file") && !err.contains(password),
        "{err}"
    );
    // So is a credentials file that is not there.
    let out = run(&[
        "--source",
        "nats://127.0.0.1:4222/x?token_file=/nonexistent/token",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token_file /nonexistent/token"));
    let _ = std::fs::remove_file(pw_file);
    let _ = std::fs::remove_file(wrong_file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_a_token_protect_the_bus() {
    let cert = Cert::new();
    let token = "Tok-3f9a-secret";
    let nats = NatsServer::start(&[
        "--tls",
        "--tlscert",
        cert.cert.to_str().expect("path"),
        "--tlskey",
        cert.key.to_str().expect("path"),
        "--auth",
        token,
    ]);
    let token_file = temp_path("nats-token");
    std::fs::write(&token_file, token).expect("write");
    let url = format!(
        "{}?token_file={}&tls_ca={}",
        nats.url("cams.tls"),
        token_file.display(),
        cert.cert.display()
    );
    let capture = capture_node_with_http("pattern:320x240@10", &url, &[]);
    let e = edge(&url);
    wait_online(e.addr(0)).await;
    let mut viewer = StreamClient::connect(e.addr(0), "/stream").await;
    viewer.next_frame().await;
    // Without TLS settings the client cannot talk to this server.
    let plain = edge(&format!(
        "{}?token_file={}",
        nats.url("cams.tls"),
        token_file.display()
    ));
    wait_no_signal(plain.addr(0)).await;
    for d in [&capture, &e, &plain] {
        assert!(!d.stderr_text().contains(token), "{}", d.stderr_text());
    }
    let _ = std::fs::remove_file(token_file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_node_on_demand_captures_only_while_an_edge_has_viewers() {
    let nats = NatsServer::start(&[]);
    let url = nats.url("cams.lazy");
    let capture = capture_node_with_http("pattern:320x240@10", &url, &["--capture-on-demand", "1"]);
    let e = edge(&url);
    wait_online(e.addr(0)).await;
    // Nobody watches anywhere: the capture node pauses after its linger.
    wait_status(capture.addr(0), Duration::from_secs(10), "paused", |s| {
        s["paused"] == true
    })
    .await;
    let idle = stream_of(&status(capture.addr(0)).await, None)["frames_captured"]
        .as_u64()
        .expect("count");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let still = stream_of(&status(capture.addr(0)).await, None)["frames_captured"]
        .as_u64()
        .expect("count");
    assert_eq!(idle, still, "captured while paused");
    // A viewer on the edge: the edge announces it, the capture node resumes
    // and the viewer gets new frames.
    let asked = now_unix();
    let mut viewer = StreamClient::connect(e.addr(0), "/stream").await;
    let new = |f: &Received| f.timestamp > asked;
    viewer
        .next_frame_where(
            Duration::from_secs(6),
            "a new frame for the edge's viewer",
            new,
        )
        .await;
    let s = status(capture.addr(0)).await;
    assert_eq!(stream_of(&s, None)["paused"], false, "{s}");
    // The viewer leaves: the capture node pauses again.
    drop(viewer);
    wait_status(
        capture.addr(0),
        Duration::from_secs(10),
        "paused again",
        |s| s["paused"] == true,
    )
    .await;
}
