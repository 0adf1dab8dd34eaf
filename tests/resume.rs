//! A source that `--capture-on-demand` paused and that is slow to start
//! again (ffmpeg, rpicam-vid take seconds): a snapshot request waits for its
//! first new frame, up to `--resume-timeout`, and never gets the picture from
//! before the pause. Stopping the command for lack of viewers is routine and
//! logs no warning. Runs the real binary with an `exec:` source that waits
//! before it writes frames.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// A server on `camera` that pauses it 0.3 s after the last viewer, with
/// `extra` flags; returns once the camera has delivered and been paused.
async fn paused_server(camera: &SlowCamera, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--source",
        &camera.source,
        "--capture-on-demand",
        "0.3",
    ];
    args.extend_from_slice(extra);
    let d = Daemon::start(&args, env, 1);
    wait_stream(
        d.addr(0),
        None,
        Duration::from_secs(15),
        "a first frame",
        |s| s["frames_captured"].as_u64() > Some(0),
    )
    .await;
    wait_paused(d.addr(0)).await;
    d
}

async fn wait_paused(addr: std::net::SocketAddr) {
    wait_stream(addr, None, Duration::from_secs(15), "paused", |s| {
        s["paused"] == true
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_waits_for_a_slow_source_to_resume() {
    let camera = SlowCamera::new(1.5);
    let mut d = paused_server(
        &camera,
        &["--snapshot-timeout", "0.5"],
        &[("RUST_LOG", "info")],
    )
    .await;
    let addr = d.addr(0);

    let asked = now_unix();
    let t = Instant::now();
    let (code, head, body) = get(addr, "/snapshot").await;
    let took = t.elapsed();
    assert_eq!(code, 200, "{head}");
    assert!(
        timestamp(&head) >= asked,
        "a frame from after the request, not before the pause"
    );
    assert!(
        took >= Duration::from_millis(1200),
        "waited for the restart: {took:?}"
    );
    assert!(took < Duration::from_secs(8), "{took:?}");
    decode(&body);

    // Stopping the command for lack of viewers is no warning.
    wait_paused(addr).await;
    assert_eq!(d.terminate(), Some(0));
    let log = d.stderr_text();
    assert!(
        log.contains("capture paused") || log.contains("paused"),
        "{log}"
    );
    assert!(!log.contains("WARN"), "warnings in a routine pause:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_timeout_bounds_the_wait_and_never_serves_the_old_picture() {
    let camera = SlowCamera::new(5.0);
    let mut d = paused_server(&camera, &["--resume-timeout", "1"], &[]).await;
    let addr = d.addr(0);
    let t = Instant::now();
    let (code, head, body) = get(addr, "/snapshot").await;
    let took = t.elapsed();
    assert_eq!(code, 503, "{head}");
    assert_eq!(header(&head, "retry-after"), Some("1"));
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("resuming"), "{text}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // SIGTERM, not the drop's SIGKILL: the server then ends the command too.
    assert_eq!(d.terminate(), Some(0));
}
