//! What stream viewers do, on every send method, against the real binary:
//! a source that changes rarely (a `file:` another program replaces), a
//! viewer on a slow link who stops reading for a while, many viewers joining
//! while the picture changes, viewers who close the page of a still stream,
//! and `?fps=` values from the absurd to the hostile.
//!
//! The promises: every viewer ends on the newest frame; a viewer who leaves
//! is gone at once (client count, descriptors, `--max-clients`), whatever
//! the source and `?fps=` do; a bad `?fps=` is a 400, never a panic.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Every way stream parts reach a plain-TCP client.
const SEND_METHODS: [&str; 3] = ["sendfile", "sendfile-per-client", "write"];

/// A 1920x1080 JPEG of noise (well over a megabyte), different for each `n`.
fn big_jpeg(n: u32) -> Vec<u8> {
    noise_jpeg(1920, 1080, n)
}

/// A `w`x`h` JPEG of noise (a few hundred KiB at 640x480: more than a
/// socket takes at once, less than a pipe holds), different for each `n`.
fn noise_jpeg(w: u16, h: u16, n: u32) -> Vec<u8> {
    let mut x = 0x9E37_79B9u32 ^ n.wrapping_mul(0x85EB_CA6B);
    let pixels: Vec<u8> = (0..usize::from(w) * usize::from(h) * 3)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    mjpegd::encode::encode_rgb(&pixels, w, h, 85).expect("encodes")
}

/// A folder with `image.jpg` holding `first`, removed on drop.
struct ImageFile(TempDir);

impl ImageFile {
    fn new(first: &[u8]) -> ImageFile {
        let f = ImageFile(TempDir::new("image"));
        replace_file(&f.path(), first);
        f
    }

    fn path(&self) -> std::path::PathBuf {
        self.0.path("image.jpg")
    }

    fn spec(&self) -> String {
        format!("file:{}", self.path().display())
    }
}

fn start(source: &str, method: &str, extra: &[&str]) -> Daemon {
    let mut args = vec!["--source", source, "--send-method", method];
    args.extend_from_slice(extra);
    Daemon::serve(&args)
}

/// Polls `/status` until the default stream has published a frame of
/// `len` bytes' JPEG (the file source picked up a replacement).
async fn wait_published(addr: SocketAddr, jpeg: &[u8]) {
    eventually(Duration::from_secs(10), "the new file served", || async {
        let (code, _, body) = get(addr, "/snapshot?max_age=60000").await;
        code == 200 && body == jpeg
    })
    .await;
}

/// A viewer on a slow link: a receive buffer of a few KiB, and it stops
/// reading while a big frame is on its way; meanwhile the file changes
/// again. When it reads again it must get the newest frame, though the file
/// never changes after that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_slow_viewer_ends_on_the_newest_frame() {
    let a = test_jpeg(160, 120, 1);
    let b = big_jpeg(2);
    let c = test_jpeg(160, 120, 3);
    assert!(b.len() > 1_000_000, "big frame is {} bytes", b.len());
    for method in SEND_METHODS {
        let image = ImageFile::new(&a);
        let d = start(&image.spec(), method, &[]);
        let addr = d.addr(0);
        let mut viewer = StreamClient::over_slow_link(addr, "/stream", 4096).await;
        assert_eq!(viewer.next_frame().await.jpeg, a, "{method}: first frame");

        // B goes out while the viewer does not read: it cannot all fit.
        replace_file(&image.path(), &b);
        wait_published(addr, &b).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // C arrives while B is still on its way.
        replace_file(&image.path(), &c);
        wait_published(addr, &c).await;
        tokio::time::sleep(Duration::from_millis(300)).await;

        // Reading again: B (finished), then C, the current frame.
        let mut last = None;
        let mut got = 0;
        while let Some(f) = viewer.next_frame_within(Duration::from_secs(2)).await {
            got += 1;
            last = Some(f.jpeg);
            if last.as_deref() == Some(&c[..]) {
                break;
            }
        }
        println!(
            "{method}: {got} frames after resuming, last is C: {}",
            last.as_deref() == Some(&c[..])
        );
        assert!(
            last.as_deref() == Some(&c[..]),
            "{method}: the viewer was left on an old frame ({got} frames after resuming)"
        );
        decode(last.as_deref().expect("a frame"));
    }
}

/// A viewer that stops reading in the middle of a big frame of a still
/// picture: no new frame ever comes to push it along, yet it is dropped
/// once its socket has taken nothing for the send timeout, and a viewer
/// beside it is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_stops_reading_a_still_stream_is_dropped() {
    let a = test_jpeg(160, 120, 1);
    let b = big_jpeg(4);
    for method in SEND_METHODS {
        let image = ImageFile::new(&a);
        let d = start(&image.spec(), method, &["--send-timeout", "1"]);
        let addr = d.addr(0);
        let mut stalled = StreamClient::over_slow_link(addr, "/stream", 4096).await;
        assert_eq!(stalled.next_frame().await.jpeg, a, "{method}: first frame");
        let mut reader = StreamClient::connect(addr, "/stream").await;
        assert_eq!(reader.next_frame().await.jpeg, a, "{method}: first frame");

        replace_file(&image.path(), &b);
        // The reader gets B whole while the other viewer's socket is full.
        assert_eq!(reader.next_frame().await.jpeg, b, "{method}: reader gets B");
        let took = wait_clients(addr, 1, Duration::from_secs(5)).await;
        println!("{method}: the stalled viewer was dropped after {took:?}");
        // The one left is the reader, still served.
        replace_file(&image.path(), &a);
        assert_eq!(
            reader.next_frame().await.jpeg,
            a,
            "{method}: reader goes on"
        );
        drop(stalled);
    }
}

/// `jpeg` with a comment segment holding `n`: a different file, the same
/// picture (cheap unique big frames).
fn numbered(jpeg: &[u8], n: u32) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xFE, 0, 6]);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Viewers join while the file changes every 150 ms, half of them on a slow
/// link that takes longer than that for each frame; when the file stops
/// changing, every one of them must show the last picture.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_joining_while_the_picture_changes_all_end_on_it() {
    const VIEWERS: usize = 40;
    let big = big_jpeg(9);
    for method in SEND_METHODS {
        let image = ImageFile::new(&numbered(&big, 0));
        let d = start(&image.spec(), method, &[]);
        let addr = d.addr(0);
        let path = image.path();
        let frames = big.clone();
        let feeder = tokio::task::spawn_blocking(move || {
            let mut last = Vec::new();
            for n in 1..=20 {
                last = numbered(&frames, n);
                replace_file(&path, &last);
                std::thread::sleep(Duration::from_millis(150));
            }
            last
        });
        let mut viewers = Vec::new();
        for i in 0..VIEWERS {
            viewers.push(tokio::spawn(async move {
                let mut v = match i % 2 {
                    0 => StreamClient::over_slow_link(addr, "/stream", 16 * 1024).await,
                    _ => StreamClient::connect(addr, "/stream").await,
                };
                let mut last = v.next_frame_checked().await.jpeg;
                // Read until the stream has been still for a while (long
                // enough for a loaded machine).
                while let Some(f) = v.next_frame_within(Duration::from_secs(3)).await {
                    last = f.jpeg;
                    if i % 2 == 0 {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                last
            }));
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        let final_frame = feeder.await.expect("feeder");
        let mut stale = 0;
        for v in viewers {
            let got = v.await.expect("viewer");
            if got != final_frame {
                println!("{method}: a viewer ended on frame {:?} of 20", &got[6..8]);
                stale += 1;
            }
        }
        println!("{method}: {stale} of {VIEWERS} viewers ended on an old frame");
        assert_eq!(stale, 0, "{method}: viewers left on an old frame");
    }
}

/// Viewers of a still picture close the page (FIN) or vanish (RST): the
/// server lets go of them at once, though no frame is sent for a long time,
/// and `--max-clients` admits new viewers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_who_leave_a_still_stream_are_gone_at_once() {
    for method in SEND_METHODS {
        let image = ImageFile::new(&test_jpeg(160, 120, 7));
        let d = start(&image.spec(), method, &["--max-clients", "3"]);
        let addr = d.addr(0);
        // Let the source settle, and the stream's send loops (with their
        // own descriptors) start with a first viewer, before counting
        // descriptors.
        get(addr, "/snapshot?max_age=60000").await;
        StreamClient::connect(addr, "/stream")
            .await
            .next_frame()
            .await;
        wait_clients(addr, 0, Duration::from_secs(1)).await;
        let fds_before = d.open_fds();
        for round in 0..3 {
            let mut viewers = Vec::new();
            for _ in 0..3 {
                let mut v = StreamClient::connect(addr, "/stream").await;
                v.next_frame().await;
                viewers.push(v);
            }
            assert_eq!(stream_clients(addr).await, 3);
            // A fourth is refused while three watch.
            let (code, _, _) = get(addr, "/stream").await;
            assert_eq!(code, 503, "{method}: --max-clients 3 with 3 viewers");
            for (i, v) in viewers.into_iter().enumerate() {
                if (i + round) % 2 == 0 {
                    v.reset();
                } else {
                    drop(v);
                }
            }
            let took = wait_clients(addr, 0, Duration::from_secs(1)).await;
            println!("{method} round {round}: 3 viewers gone after {took:?}");
        }
        let fds = d.open_fds();
        println!("{method}: descriptors {fds_before} before, {fds} after 9 viewers left");
        assert!(fds <= fds_before + 1, "{method}: descriptors leaked");
        let mut v = StreamClient::connect(addr, "/stream").await;
        v.next_frame().await;
    }
}

/// Many viewers of a moving stream (enough for two send loops, on threads
/// of their own, to send every frame, whole parts by `tee` and `splice`
/// from the frame's pages), a third of them on a slow link, so parts are
/// cut short: half of all viewers close
/// the page or vanish mid-stream. They are gone within a second, and every
/// viewer who stays goes on getting whole, correct parts: nothing of a part
/// that a closed or full socket did not take reaches another viewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_who_leave_a_moving_stream_leave_the_others_whole() {
    const VIEWERS: usize = 80;
    let dir = TempDir::new("noise");
    for n in 0..6 {
        let jpeg = noise_jpeg(640, 480, n);
        std::fs::write(dir.path(&format!("{n:03}.jpg")), jpeg).expect("write frame");
    }
    let source = format!("dir:{}@30", dir.str());
    for method in SEND_METHODS {
        // Two loops from the first viewer on (by default a second loop
        // opens only for a far larger audience).
        let d = start(&source, method, &["--send-loops", "2"]);
        let addr = d.addr(0);
        let mut viewers = Vec::new();
        for i in 0..VIEWERS {
            viewers.push(match i % 3 {
                0 => StreamClient::over_slow_link(addr, "/stream", 8 * 1024).await,
                _ => StreamClient::connect(addr, "/stream").await,
            });
        }
        for v in &mut viewers {
            v.next_frame_checked().await;
        }
        wait_clients(addr, VIEWERS as u64, Duration::from_secs(5)).await;
        let mut staying = Vec::new();
        for (i, v) in viewers.into_iter().enumerate() {
            match i % 4 {
                0 => v.reset(),
                2 => drop(v),
                _ => staying.push(v),
            }
        }
        let took = wait_clients(addr, (VIEWERS / 2) as u64, Duration::from_secs(1)).await;
        println!("{method}: {} viewers gone after {took:?}", VIEWERS / 2);
        // Every viewer who stays keeps watching (one after the other, the
        // last would not read for longer than the send timeout).
        let watching: Vec<_> = staying
            .into_iter()
            .map(|mut v| {
                tokio::spawn(async move {
                    for _ in 0..10 {
                        v.next_frame_checked().await;
                    }
                    decode(&v.next_frame().await.jpeg)
                })
            })
            .collect();
        for w in watching {
            let size = w.await.expect("a staying viewer's parts were whole");
            assert_eq!(size, (640, 480), "{method}: a whole picture");
        }
    }
}

/// Short `curl` viewers, as in a shell loop or a home-automation poller:
/// each ends after a second; none may stay counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_curl_viewers_do_not_stay_counted() {
    require("curl");
    let image = ImageFile::new(&test_jpeg(160, 120, 3));
    let d = start(&image.spec(), "sendfile", &["--max-clients", "3"]);
    let addr = d.addr(0);
    let url = format!("http://{addr}/stream");
    for _ in 0..5 {
        let out = tokio::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "0.5", &url])
            .output()
            .await
            .expect("run curl");
        // 28: the time limit ended the endless body, as intended.
        assert_eq!(out.status.code(), Some(28), "curl: {out:?}");
    }
    let took = wait_clients(addr, 0, Duration::from_secs(1)).await;
    println!("5 curl viewers released {took:?} after the last one ended");
    let (code, _, _) = get(addr, "/snapshot").await;
    assert_ne!(code, 503);
    let mut v = StreamClient::connect(addr, "/stream").await;
    v.next_frame().await;
}

/// `?fps=` within 0.01..=1000 is a cap; anything else is a 400, never a
/// panic; a capped viewer who leaves is gone at once, not after 1/fps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fps_values_are_checked_and_capped_viewers_leave_at_once() {
    let d = start("pattern:160x120@30", "sendfile", &[]);
    let addr = d.addr(0);
    for bad in [
        "0", "-1", "0.0001", "1e-300", "1e-19", "1001", "1e300", "NaN", "inf", "abc", "",
    ] {
        let (code, _, body) = get(addr, &format!("/stream?fps={bad}")).await;
        assert_eq!(code, 400, "fps={bad}: {}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).contains("fps"));
    }
    for good in ["0.01", "1", "29.97", "1000"] {
        let mut v = StreamClient::connect(addr, &format!("/stream?fps={good}")).await;
        v.next_frame().await;
    }
    // Each capped viewer gets its first frame, then would wait 100 s.
    let mut viewers = Vec::new();
    for _ in 0..20 {
        let mut v = StreamClient::connect(addr, "/stream?fps=0.01").await;
        v.next_frame().await;
        viewers.push(v);
    }
    let fds_with = d.open_fds();
    drop(viewers);
    let took = wait_clients(addr, 0, Duration::from_secs(1)).await;
    let fds_after = d.open_fds();
    println!(
        "20 viewers at fps=0.01 released after {took:?}; descriptors {fds_with} -> {fds_after}"
    );
    assert!(fds_after + 20 <= fds_with, "descriptors not closed");
    assert!(!d.stderr_text().contains("panicked"), "{}", d.stderr_text());
}

/// A rate-capped viewer who arrives before the source's first frame gets
/// that frame as soon as it comes, not one capped interval (100 s) later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_viewer_before_the_first_frame_gets_it_at_once() {
    let image = ImageFile::new(&test_jpeg(160, 120, 7));
    // The source's first frame comes 1.5 s after the start.
    let source = format!(
        "exec:sh -c 'sleep 1.5; cat {}; exec sleep 1000'",
        image.path().display()
    );
    let d = start(&source, "sendfile", &[]);
    let mut v = StreamClient::connect(d.addr(0), "/stream?fps=0.01").await;
    let t = Instant::now();
    let f = v
        .next_frame_within(Duration::from_secs(10))
        .await
        .expect("the first frame, not 100 s later");
    assert_eq!(decode(&f.jpeg), (160, 120));
    println!("first frame {:?} after connecting", t.elapsed());
}

/// A source that never produces a frame: viewers wait for the first one,
/// and one who gives up is gone at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_of_a_silent_source_leave_at_once() {
    for method in SEND_METHODS {
        let d = start("exec:sleep 1000", method, &[]);
        let addr = d.addr(0);
        let mut waiting = Vec::new();
        for _ in 0..5 {
            let io = TcpStream::connect(addr).await.expect("connect");
            let v = StreamClient::open_on(io, "/stream", "1.1").await;
            v.expect_stream_head();
            waiting.push(v);
        }
        assert_eq!(stream_clients(addr).await, 5);
        drop(waiting);
        let took = wait_clients(addr, 0, Duration::from_secs(1)).await;
        println!("{method}: 5 viewers of a silent source released after {took:?}");
    }
}

/// Viewers that stopped reading in the middle of a big frame (their socket
/// full, in every send method) do not hold up shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_viewers_do_not_hold_up_shutdown() {
    for method in SEND_METHODS {
        let mut d = start(
            "pattern:1280x720@30",
            method,
            &["--quality", "95", "--send-buffer", "4096"],
        );
        let addr = d.addr(0);
        let mut stalled = Vec::new();
        for _ in 0..20 {
            // Never read again.
            stalled.push(StreamClient::over_slow_link(addr, "/stream", 4096).await);
        }
        eventually(Duration::from_secs(2), "20 clients counted", || async {
            stream_clients(addr).await == 20
        })
        .await;
        let t = Instant::now();
        let code = d.terminate();
        let took = t.elapsed();
        println!("{method}: exit {code:?} {took:?} after SIGTERM with 20 stalled viewers");
        assert_eq!(code, Some(0), "{method}");
        assert!(
            took < Duration::from_secs(2),
            "{method}: shutdown took {took:?}"
        );
        // Every connection ended by itself, none was left for the grace
        // time to cut off.
        let log = d.stderr_text();
        assert!(!log.contains("still running"), "{method}: {log}");
        drop(stalled);
    }
}
