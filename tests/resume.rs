//! A source that `--capture-on-demand` paused and that is slow to start
//! again (ffmpeg, rpicam-vid take seconds): a snapshot request waits for its
//! first new frame, up to `--resume-timeout`, and never gets the picture from
//! before the pause. Stopping the command for lack of viewers is routine and
//! logs no warning. Runs the real binary with an `exec:` source that waits
//! before it writes frames.

mod common;
#[path = "support/mod.rs"]
mod support;

use common::{get, now_unix};
use std::time::{Duration, Instant};
use support::*;

/// A JPEG file and an `exec:` command that writes it ten times a second:
/// at once the first time, after `delay` seconds on every restart (a camera
/// that is slow to open).
fn slow_camera(delay: f64) -> (std::path::PathBuf, String) {
    let c = mjpegd::canvas::Canvas::new(64, 48, mjpegd::canvas::Rgb(200, 40, 40));
    let path = temp_path("frame.jpg");
    std::fs::write(&path, c.encode_jpeg(80).expect("encodes")).expect("write frame");
    let p = path.display();
    let cmd = format!(
        "exec:if [ -e {p}.started ]; then sleep {delay}; fi; touch {p}.started; \
         while :; do cat {p}; sleep 0.1; done"
    );
    (path, cmd)
}

async fn wait_paused(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = common::status(addr).await;
        if st["streams"][0]["paused"].as_bool() == Some(true) {
            return;
        }
        assert!(Instant::now() < deadline, "never paused: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_waits_for_a_slow_source_to_resume() {
    let (frame, cmd) = slow_camera(1.5);
    let mut d = Daemon::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--source",
            &cmd,
            "--capture-on-demand",
            "0.3",
            "--snapshot-timeout",
            "0.5",
        ],
        &[("RUST_LOG", "info")],
        1,
    );
    let addr = d.addr(0);
    // The first start: a frame exists, then nobody watches and it pauses.
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::status(addr).await["streams"][0]["frames_captured"].as_u64() == Some(0) {
        assert!(Instant::now() < deadline, "no first frame");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_paused(addr).await;

    let asked = now_unix();
    let t = Instant::now();
    let (code, head, body) = get(addr, "/snapshot").await;
    let took = t.elapsed();
    assert_eq!(code, 200, "{head}");
    let ts: f64 = header(&head, "x-timestamp")
        .expect("timestamp")
        .parse()
        .expect("number");
    assert!(
        ts >= asked,
        "a frame from after the request, not before the pause"
    );
    assert!(
        took >= Duration::from_millis(1200),
        "waited for the restart: {took:?}"
    );
    assert!(took < Duration::from_secs(8), "{took:?}");
    support::decode(&body);

    // Stopping the command for lack of viewers is no warning.
    wait_paused(addr).await;
    assert_eq!(d.terminate(), Some(0));
    let log = d.stderr_text();
    assert!(
        log.contains("capture paused") || log.contains("paused"),
        "{log}"
    );
    assert!(!log.contains("WARN"), "warnings in a routine pause:\n{log}");
    let _ = std::fs::remove_file(format!("{}.started", frame.display()));
    let _ = std::fs::remove_file(frame);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_timeout_bounds_the_wait_and_never_serves_the_old_picture() {
    let (frame, cmd) = slow_camera(5.0);
    let mut d = Daemon::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--source",
            &cmd,
            "--capture-on-demand",
            "0.3",
            "--resume-timeout",
            "1",
        ],
        &[],
        1,
    );
    let addr = d.addr(0);
    // Let the first start deliver, then pause.
    let deadline = Instant::now() + Duration::from_secs(15);
    while common::status(addr).await["streams"][0]["frames_captured"].as_u64() == Some(0) {
        assert!(Instant::now() < deadline, "no first frame");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_paused(addr).await;
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
    let _ = std::fs::remove_file(format!("{}.started", frame.display()));
    let _ = std::fs::remove_file(frame);
}
