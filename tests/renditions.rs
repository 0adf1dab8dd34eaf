//! Renditions against the real binary: clients asking for `?width=`,
//! `?height=`, `?quality=` or a configured `?rendition=` get frames of
//! exactly that size (decoded) in the source's aspect ratio; each live
//! variant is encoded once per source frame however many clients share it
//! (counted in `/status`); a variant stops encoding when its last client
//! leaves; a client asking for a thousand sizes cannot make the server run
//! more than `max_renditions` variants; bad values are a 400.

mod common;

use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The binary with `config` as its configuration file.
fn server(config: &str) -> (Daemon, PathBuf) {
    let path = temp_path("config.toml");
    std::fs::write(&path, config).expect("write config");
    let server = Daemon::serve(&["--config", path.to_str().expect("utf-8 path")]);
    (server, path)
}

/// The binary serving the folder `dir` at `fps` as stream `cam`, with
/// `more` TOML for that stream.
fn cam_server(dir: &Path, fps: u32, more: &str) -> (Daemon, PathBuf) {
    let dir = dir.display();
    server(&format!(
        "[[stream]]\nname = \"cam\"\nsource = \"dir:{dir}@{fps}\"\n{more}"
    ))
}

/// The stream named `name` in `/status`.
async fn stream_status(addr: SocketAddr, name: &str) -> Value {
    stream_of(&status(addr).await, Some(name))
}

/// Live renditions of stream `name`, by width.
async fn renditions(addr: SocketAddr, name: &str) -> Vec<Value> {
    let mut list = stream_status(addr, name).await["renditions"]
        .as_array()
        .expect("renditions list")
        .clone();
    list.sort_by_key(|r| r["width"].as_u64());
    list
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {key} in {v}"))
}

/// A snapshot's decoded size.
async fn snapshot_size(addr: SocketAddr, path: &str) -> (usize, usize) {
    decode(&get_expecting(addr, path, 200).await.1)
}

/// The decoded size of the next frame of a stream at `path`.
async fn stream_size(addr: SocketAddr, path: &str) -> (usize, usize) {
    let mut c = StreamClient::connect(addr, path).await;
    let f = c.next_frame().await;
    decode(&f.jpeg)
}

/// The decoded size of a snapshot, or of a stream's next frame, at `path`.
async fn size_at(addr: SocketAddr, path: &str) -> (usize, usize) {
    if path.contains("snapshot") {
        snapshot_size(addr, path).await
    } else {
        stream_size(addr, path).await
    }
}

fn cleanup(paths: &[&Path]) {
    for p in paths {
        let _ = std::fs::remove_dir_all(p);
        let _ = std::fs::remove_file(p);
    }
}

#[tokio::test]
async fn sizes_and_aspect_are_exact_on_every_url() {
    let wide = jpeg_dir(1280, 720, 3);
    let four_three = jpeg_dir(640, 480, 2);
    let (server, config) = server(&format!(
        r#"
[[stream]]
name = "cam"
source = "dir:{}@10"
[[stream.rendition]]
name = "small"
width = 500
quality = 70
[[stream.rendition]]
name = "tiny"
height = 90

[[stream]]
name = "desk"
source = "dir:{}@10"
"#,
        wide.display(),
        four_three.display()
    ));
    let addr = server.addr(0);
    let cases = [
        // Ad-hoc sizes on /stream, /snapshot and mjpg-streamer's URLs, with ?fps=.
        ("/stream?width=640", (640, 360)),
        ("/stream?height=180&fps=5", (320, 180)),
        ("/snapshot?width=160", (160, 90)),
        ("/?action=stream&width=640&fps=2", (640, 360)),
        ("/?action=snapshot&height=360&_=17", (640, 360)),
        ("/streams/cam/snapshot?width=1000&height=180", (320, 180)),
        // Snapped: 600 is nearest to 640 of the widths a scaled decode gives
        // and the configured ones (1280, 640, 500, 320, 160).
        ("/snapshot?width=600", (640, 360)),
        ("/snapshot?width=510", (500, 281)),
        // Never larger than the source.
        ("/snapshot?width=4000", (1280, 720)),
        ("/snapshot?quality=40", (1280, 720)),
        // Configured renditions by name.
        ("/streams/cam/stream?rendition=small", (500, 281)),
        ("/streams/cam/snapshot?rendition=tiny", (160, 90)),
        // Another aspect ratio.
        ("/streams/desk/stream?width=320", (320, 240)),
        ("/streams/desk/snapshot?height=60", (80, 60)),
    ];
    for (path, size) in cases {
        assert_eq!(size_at(addr, path).await, size, "{path}");
    }

    // Listed on the index page and, while live, in /status and /metrics.
    let (_, _, page) = get(addr, "/").await;
    let page = String::from_utf8_lossy(&page);
    assert!(
        page.contains("streams/cam/stream?rendition=small"),
        "{page}"
    );
    assert!(
        page.contains("streams/cam/snapshot?rendition=tiny"),
        "{page}"
    );
    let mut viewer = StreamClient::connect(addr, "/streams/cam/stream?rendition=small").await;
    viewer.next_frame().await;
    let live = renditions(addr, "cam").await;
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0]["name"], "small");
    assert_eq!((n(&live[0], "width"), n(&live[0], "height")), (500, 281));
    assert_eq!((n(&live[0], "quality"), n(&live[0], "clients")), (70, 1));
    assert!(live[0]["encode_ms_mean"].as_f64().expect("mean") > 0.0);
    let (_, _, metrics) = get(addr, "/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("mjpegd_rendition_clients{stream=\"cam\",rendition=\"small\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("mjpegd_rendition_frames_encoded_total{stream=\"cam\",rendition=\"small\"}")
    );
    drop(viewer);
    cleanup(&[&wide, &four_three, &config]);
}

#[tokio::test]
async fn quality_changes_the_bytes() {
    // One still picture: the same source frame at two qualities.
    let still = jpeg_dir(1280, 720, 1);
    let (server, config) = server(&format!(
        "[[stream]]\nname = \"still\"\nsource = \"dir:{}@10\"\n",
        still.display()
    ));
    let addr = server.addr(0);
    let mut sizes = Vec::new();
    for q in [10, 50, 95] {
        let (code, _, low) = get(addr, &format!("/snapshot?width=640&quality={q}")).await;
        assert_eq!(code, 200);
        assert_eq!(decode(&low), (640, 360));
        sizes.push(low.len());
    }
    assert!(sizes[0] < sizes[1] && sizes[1] < sizes[2], "{sizes:?}");
    // The same variant twice: the same bytes.
    let (_, _, a) = get(addr, "/snapshot?width=320&quality=60").await;
    let (_, _, b) = get(addr, "/snapshot?width=320&quality=60").await;
    assert_eq!(a, b);
    cleanup(&[&still, &config]);
}

#[tokio::test]
async fn thirty_clients_over_three_variants_cost_three_encodes_per_source_frame() {
    raise_fd_limit(100);
    let dir = jpeg_dir(1280, 720, 4);
    let (server, config) = cam_server(&dir, 10, "");
    let addr = server.addr(0);
    let widths = [640u16, 320, 160];
    let mut clients = Vec::new();
    for i in 0..30 {
        let w = widths[i % 3];
        clients.push((
            w,
            StreamClient::connect(addr, &format!("/stream?width={w}")).await,
        ));
    }
    for (_, c) in &mut clients {
        c.next_frame_checked().await;
    }
    let live = renditions(addr, "cam").await;
    assert_eq!(live.len(), 3, "{live:?}");
    assert!(live.iter().all(|r| n(r, "clients") == 10), "{live:?}");

    let before = stream_status(addr, "cam").await;
    // Every client keeps reading for 3 s (about 30 source frames).
    let reading: Vec<_> = clients
        .into_iter()
        .map(|(w, mut c)| {
            tokio::spawn(async move {
                let until = Instant::now() + Duration::from_secs(3);
                let mut got = Vec::new();
                while Instant::now() < until {
                    got.push(c.next_frame_checked().await);
                }
                (w, c, got)
            })
        })
        .collect();
    let mut read = Vec::new();
    for r in reading {
        read.push(r.await.expect("reader"));
    }
    let after = stream_status(addr, "cam").await;
    let source_frames = n(&after, "frames_captured") - n(&before, "frames_captured");
    assert!(
        source_frames >= 15,
        "source made {source_frames} frames in 3 s"
    );
    let by_width = |s: &Value, w: u16| {
        s["renditions"]
            .as_array()
            .expect("list")
            .iter()
            .find(|r| n(r, "width") == u64::from(w))
            .cloned()
            .unwrap_or_else(|| panic!("no {w} rendition in {s}"))
    };
    let mut encodes = 0;
    for w in widths {
        let (b, a) = (by_width(&before, w), by_width(&after, w));
        let encoded = n(&a, "frames_encoded") - n(&b, "frames_encoded");
        let skipped = n(&a, "frames_skipped") - n(&b, "frames_skipped");
        // Each source frame is encoded once for the variant (or skipped when
        // the encoder was busy), never once per client: ±1 for a frame in
        // work while /status was read.
        assert!(
            (encoded + skipped).abs_diff(source_frames) <= 1,
            "{w}: {encoded} encoded + {skipped} skipped for {source_frames} source frames"
        );
        assert!(
            encoded * 2 >= source_frames,
            "{w}: only {encoded} of {source_frames} encoded"
        );
        encodes += encoded;
    }
    let total = n(&after, "rendition_frames_encoded") - n(&before, "rendition_frames_encoded");
    assert!(total.abs_diff(encodes) <= 3, "{total} vs {encodes}");
    assert!(
        encodes <= 3 * source_frames + 3,
        "{encodes} encodes for {source_frames} source frames and 3 variants"
    );
    // And the three variants decode each source frame once between them
    // (±1 for a frame in work while /status was read).
    let decodes = n(&after, "rendition_source_decodes") - n(&before, "rendition_source_decodes");
    assert!(
        decodes <= source_frames + 1 && decodes * 3 >= encodes,
        "{decodes} source decodes for {source_frames} source frames and {encodes} encodes"
    );
    // Clients of a variant share its frames: same timestamp, same bytes,
    // the right size.
    let mut seen: std::collections::HashMap<(u16, u64), Vec<u8>> = Default::default();
    for (w, _, got) in &read {
        assert!(got.len() >= 10, "{w}: {} frames in 3 s", got.len());
        for f in got {
            let key = (*w, (f.timestamp * 1e6) as u64);
            match seen.get(&key) {
                Some(bytes) => assert_eq!(
                    bytes, &f.jpeg,
                    "two different {w} frames of one source frame"
                ),
                None => {
                    assert_eq!(decode(&f.jpeg).0, usize::from(*w));
                    seen.insert(key, f.jpeg.clone());
                }
            }
        }
    }
    drop(read);
    cleanup(&[&dir, &config]);
}

#[tokio::test]
async fn a_variant_stops_within_a_second_of_its_last_client_leaving() {
    let dir = jpeg_dir(1280, 720, 3);
    let (server, config) = cam_server(&dir, 20, "");
    let addr = server.addr(0);
    let mut a = StreamClient::connect(addr, "/stream?width=320").await;
    let mut b = StreamClient::connect(addr, "/stream?width=320&fps=5").await;
    a.next_frame().await;
    b.next_frame().await;
    assert_eq!(renditions(addr, "cam").await.len(), 1);
    drop(a);
    let one_left = || async {
        let live = renditions(addr, "cam").await;
        live.len() == 1 && n(&live[0], "clients") == 1
    };
    eventually(Duration::from_secs(5), "one client counted", one_left).await;
    let live = renditions(addr, "cam").await;
    assert_eq!(live.len(), 1, "one client is still there: {live:?}");
    assert_eq!(n(&live[0], "clients"), 1);
    drop(b);
    eventually(Duration::from_secs(1), "variant gone", || async {
        renditions(addr, "cam").await.is_empty()
    })
    .await;
    // And it encodes no more.
    let encoded = n(
        &stream_status(addr, "cam").await,
        "rendition_frames_encoded",
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = n(
        &stream_status(addr, "cam").await,
        "rendition_frames_encoded",
    );
    assert!(
        later <= encoded + 1,
        "{encoded} then {later}: still encoding"
    );
    // A new client starts it again.
    assert_eq!(stream_size(addr, "/stream?width=320").await, (320, 180));
    cleanup(&[&dir, &config]);
}

#[tokio::test]
async fn the_cap_holds_against_a_client_asking_for_a_thousand_sizes() {
    raise_fd_limit(1100);
    let dir = jpeg_dir(320, 180, 2);
    let (server, config) = cam_server(&dir, 4, "max_renditions = 2\n");
    let addr = server.addr(0);
    let mut held = Vec::new();
    let mut most = 0;
    // 1000 widths and 100 qualities, all kept open at once.
    for batch in 0..20 {
        let opened: Vec<_> = (0..50)
            .map(|i| {
                let k = batch * 50 + i + 1;
                let path = format!("/stream?width={k}&quality={}", k % 100 + 1);
                tokio::spawn(async move {
                    let mut c = StreamClient::connect(addr, &path).await;
                    let f = c.next_frame_checked().await;
                    (c, mjpegd::jpeg::check(&f.jpeg).expect("jpeg").width)
                })
            })
            .collect();
        for o in opened {
            let (c, width) = o.await.expect("client");
            // The snapped widths of a 320-wide source.
            assert!([320, 160, 80, 40].contains(&width), "width {width}");
            held.push(c);
        }
        let live = renditions(addr, "cam").await;
        most = most.max(live.len());
        assert!(live.len() <= 2, "{} variants live: {live:?}", live.len());
    }
    assert!(most >= 1);
    let s = stream_status(addr, "cam").await;
    let on_variants: u64 = s["renditions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|r| n(r, "clients"))
        .sum();
    assert_eq!(on_variants + n(&s, "clients"), 1000, "{s}");
    drop(held);
    cleanup(&[&dir, &config]);
}

#[tokio::test]
async fn bad_values_are_a_400() {
    let dir = jpeg_dir(320, 180, 1);
    let (server, config) = cam_server(
        &dir,
        5,
        "[[stream.rendition]]\nname = \"small\"\nwidth = 80\n",
    );
    let addr = server.addr(0);
    for query in [
        "width=0",
        "width=-1",
        "width=abc",
        "width=99999",
        "width=",
        "height=0",
        "height=1.5",
        "quality=0",
        "quality=101",
        "quality=high",
        "rendition=big",
        "rendition=",
        "rendition=small&width=10",
        "width=100&fps=0",
    ] {
        for path in ["/stream", "/snapshot", "/streams/cam/stream", "/"] {
            let sep = if path == "/" { "?action=stream&" } else { "?" };
            let url = format!("{path}{sep}{query}");
            let (code, _, body) = get(addr, &url).await;
            let body = String::from_utf8_lossy(&body);
            if query.contains("fps") && path.contains("snapshot") {
                continue; // snapshots take no rate
            }
            assert_eq!(code, 400, "{url}: {body}");
            assert!(!body.is_empty(), "{url}: a reason");
        }
    }
    // Still serving.
    assert_eq!(
        snapshot_size(addr, "/snapshot?rendition=small").await,
        (80, 45)
    );
    cleanup(&[&dir, &config]);
}

#[tokio::test]
async fn a_rendition_of_a_paused_source_is_never_the_picture_from_before_the_pause() {
    // A camera that takes 1.5 s to start again after a pause.
    let camera = SlowCamera::new(1.5);
    let server = Daemon::serve(&[
        "--source",
        &camera.source,
        "--capture-on-demand",
        "0.3",
        "--snapshot-timeout",
        "0.5",
    ]);
    let addr = server.addr(0);
    // A first frame (a snapshot request starts the camera), then no viewer.
    let (code, _, _) = get(addr, "/snapshot").await;
    assert_eq!(code, 200);
    wait_stream(addr, None, Duration::from_secs(15), "paused", |s| {
        s["paused"] == true && n(s, "frames_captured") > 0
    })
    .await;
    let asked = now_unix();
    let (code, head, body) = get(addr, "/snapshot?width=32").await;
    assert_eq!(code, 200, "{head}");
    assert!(
        timestamp(&head) >= asked,
        "a frame from after the request, not before the pause"
    );
    assert_eq!(decode(&body), (32, 24));
}
