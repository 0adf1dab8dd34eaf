//! The history (`--history`, `history`, `history_max_mb`) against the built
//! binary on 127.0.0.1: `/snapshot?at=` and `?ago=` answer with the frame
//! of that moment (told by its `X-Timestamp`), moments outside the history
//! get a 404 that says what it holds, `/stream?from=` replays at the
//! captured pace and joins the live stream with no frame missing or twice,
//! `/clip` is an AVI that ffprobe and ffmpeg read with the right frames and
//! timing, the history keeps to its memory budget and holds no
//! descriptors, and a past snapshot comes at the size a rendition asks for
//! (a replay with one is a 400).

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `seconds.micros` as the server writes it.
fn ts_text(ts: f64) -> String {
    format!("{ts:.6}")
}

/// Every frame of a live stream for `how_long`.
async fn record_live(addr: SocketAddr, path: &str, how_long: Duration) -> Vec<Received> {
    let mut live = StreamClient::connect(addr, path).await;
    let until = Instant::now() + how_long;
    let mut frames = Vec::new();
    while Instant::now() < until {
        frames.push(live.next_frame_checked().await);
    }
    frames
}

#[tokio::test]
async fn snapshots_from_the_past_are_the_frames_of_that_moment() {
    let d = Daemon::serve(&["--source", "pattern:320x240@10", "--history", "6"]);
    let addr = d.addr(0);
    let seen = record_live(addr, "/stream", Duration::from_secs(3)).await;
    assert!(seen.len() >= 15, "only {} frames in 3 s", seen.len());
    // Drop the first frame: it may be from before the client connected.
    let seen = &seen[1..];
    for i in [2, 7, seen.len() - 3] {
        let (a, b) = (seen[i].timestamp, seen[i + 1].timestamp);
        // Exactly a frame's time: that frame.
        let (code, head, body) = get(addr, &format!("/snapshot?at={}", ts_text(a))).await;
        assert_eq!(code, 200, "{head}");
        assert_eq!(
            header(&head, "X-Timestamp").expect("X-Timestamp"),
            ts_text(a)
        );
        assert_eq!(body, seen[i].jpeg, "the same picture as streamed");
        decode(&body);
        // Between two frames: the earlier one.
        let between = ts_text(a + (b - a) / 2.0);
        let (code, head, _) = get(addr, &format!("/snapshot?at={between}")).await;
        assert_eq!(code, 200, "{head}");
        assert_eq!(
            header(&head, "X-Timestamp").expect("X-Timestamp"),
            ts_text(a),
            "at={between}"
        );
        // Just before the next frame: still the earlier one.
        let (_, head, _) = get(addr, &format!("/snapshot?at={}", ts_text(b - 0.000_001))).await;
        assert_eq!(
            header(&head, "X-Timestamp").expect("X-Timestamp"),
            ts_text(a)
        );
    }
    // ?ago=: the frame shown that long before the request.
    let before = now_unix();
    let (code, head, body) = get(addr, "/streams/pattern/snapshot?ago=2").await;
    let after = now_unix();
    assert_eq!(code, 200, "{head}");
    decode(&body);
    let got: f64 = timestamp(&head);
    assert!(got <= after - 2.0, "{got} is later than 2 s before {after}");
    // The frame after it was captured later than the moment asked for.
    let next = seen
        .iter()
        .map(|f| f.timestamp)
        .find(|t| *t > got + 1e-7)
        .expect("a later frame was streamed");
    assert!(
        next > before - 2.0,
        "{got} is not the newest frame at {}",
        before - 2.0
    );
    assert!(
        seen.iter().any(|f| ts_text(f.timestamp) == ts_text(got)),
        "a frame the stream showed"
    );
}

#[tokio::test]
async fn moments_outside_the_history_are_answered_with_its_span() {
    let config = temp_path("history.toml");
    std::fs::write(
        &config,
        "history = 3\n\
         [[stream]]\nname = \"cam\"\nsource = \"pattern:320x240@10\"\n\
         [[stream]]\nname = \"still\"\nsource = \"pattern:160x120@5\"\nhistory = 0\n\
         [[stream]]\nname = \"small\"\nsource = \"pattern:160x120@10\"\nhistory = 1\nhistory_max_mb = 1\n",
    )
    .expect("write config");
    let d = Daemon::serve(&["--config", config.to_str().expect("utf-8 path")]);
    let addr = d.addr(0);
    // Twice the span: the history is full and keeps to it.
    wait_stream(
        addr,
        Some("cam"),
        Duration::from_secs(20),
        "6 s of frames",
        |s| s["frames_captured"].as_u64() >= Some(60),
    )
    .await;
    let st = status(addr).await;
    let cam = &st["streams"][0]["history"];
    let span = cam["span_s"].as_f64().unwrap_or_else(|| panic!("{st}"));
    assert!((2.5..=3.0).contains(&span), "span {span} s: {cam}");
    let frames = cam["frames"].as_u64().expect("frames");
    assert!((20..=31).contains(&frames), "{frames} frames: {cam}");
    assert!(cam["bytes"].as_u64().expect("bytes") > 0);
    assert!(st["streams"][1].get("history").is_none(), "{st}");
    let small = &st["streams"][2]["history"];
    assert!(small["span_s"].as_f64().expect("span") <= 1.0, "{small}");
    assert_eq!(small["max_bytes"], 1 << 20, "{small}");

    let now = now_unix();
    // Before the oldest frame held.
    for path in [
        format!("/snapshot?at={:.3}", now - 10.0),
        "/streams/cam/snapshot?ago=10".to_owned(),
    ] {
        let (code, head, body) = get(addr, &path).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(code, 404, "{path}: {head}{body}");
        assert!(body.contains("the history holds frames from"), "{body}");
        let oldest: f64 = header(&head, "X-History-Oldest")
            .expect("oldest")
            .parse()
            .expect("a number");
        let newest: f64 = header(&head, "X-History-Newest")
            .expect("newest")
            .parse()
            .expect("a number");
        assert!(oldest > now - 3.5 && newest > oldest && newest <= now_unix());
    }
    // In the future.
    let (code, _, body) = get(addr, &format!("/snapshot?at={:.3}", now + 60.0)).await;
    assert_eq!(code, 404, "{}", String::from_utf8_lossy(&body));
    // Not a moment.
    for path in [
        "/snapshot?at=30",
        "/snapshot?at=yesterday",
        "/snapshot?ago=-5",
        "/snapshot?ago=1&at=now",
        "/stream?from=10",
        "/stream?from=-1&fps=2",
        "/stream?from=-1&catchup=100",
        "/clip?from=-1&to=-2",
        "/clip?to=soon",
    ] {
        get_expecting(addr, path, 400).await;
    }
    // A stream without history.
    for path in [
        "/streams/still/snapshot?ago=1",
        "/streams/still/stream?from=-1",
        "/streams/still/clip?from=-1",
    ] {
        let (code, _, body) = get(addr, path).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(code, 404, "{path}: {body}");
        assert!(body.contains("keeps no history"), "{body}");
    }
    // A clip of a span the history does not hold.
    let (code, _, body) = get(
        addr,
        &format!("/clip?from={:.3}&to={:.3}", now - 60.0, now - 30.0),
    )
    .await;
    assert_eq!(code, 404, "{}", String::from_utf8_lossy(&body));
    // The metrics say the same as the status.
    let (_, _, metrics) = get(addr, "/metrics").await;
    let metrics = String::from_utf8(metrics).expect("utf-8");
    for name in [
        "mjpegd_history_seconds",
        "mjpegd_history_frames",
        "mjpegd_history_bytes",
    ] {
        assert!(
            metrics.contains(&format!("{name}{{stream=\"cam\"}} ")),
            "{name}"
        );
        assert!(
            !metrics.contains(&format!("{name}{{stream=\"still\"}}")),
            "{name}"
        );
    }
    let _ = std::fs::remove_file(config);
}

/// Replays the last 3 s of a 10 fps stream from `path`, and checks it against
/// a live client that watched all along.
async fn check_replay(addr: SocketAddr, path: &str) {
    let live = tokio::spawn(record_live(addr, "/stream", Duration::from_secs(14)));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let asked = now_unix();
    let mut replay = StreamClient::connect(addr, path).await;
    // 3 s at the captured pace, about 3 s of catching up at twice the pace,
    // then live.
    let until = Instant::now() + Duration::from_secs(9);
    let mut got = Vec::new();
    while Instant::now() < until {
        got.push(replay.next_frame_checked().await);
    }
    let live = live.await.expect("live client");
    let first = got[0].timestamp;
    assert!(
        (asked - 3.0 - 0.15..=asked - 3.0 + 0.1).contains(&first),
        "{path}: starts at {first}, asked at {asked} for 3 s before"
    );
    // No repeat, nothing out of order.
    for w in got.windows(2) {
        assert!(w[1].timestamp > w[0].timestamp, "{path}: {w:?}");
    }
    // No gap: every frame the live client saw in the replayed span, once.
    let last = got.last().expect("frames").timestamp;
    let expected: Vec<String> = live
        .iter()
        .map(|f| ts_text(f.timestamp))
        .filter(|t| t.as_str() >= ts_text(first).as_str() && t.as_str() <= ts_text(last).as_str())
        .collect();
    let replayed: Vec<String> = got.iter().map(|f| ts_text(f.timestamp)).collect();
    assert_eq!(
        replayed, expected,
        "{path}: the replay is the stream, frame for frame"
    );
    // Pictures identical to the live ones.
    for f in &got[..5] {
        let twin = live
            .iter()
            .find(|l| ts_text(l.timestamp) == ts_text(f.timestamp))
            .expect("seen live");
        assert_eq!(twin.jpeg, f.jpeg);
    }
    // The captured pace up to the request: receive times are spread like
    // the capture times.
    let before: Vec<&Received> = got.iter().filter(|f| f.timestamp < asked).collect();
    let (a, b) = (before[0], before[before.len() - 1]);
    let captured = b.timestamp - a.timestamp;
    let played = (b.at - a.at).as_secs_f64();
    assert!(captured > 2.5, "{path}: {captured} s replayed");
    assert!(
        (played - captured).abs() < 0.3,
        "{path}: {captured} s of frames played in {played} s"
    );
    for w in before.windows(2) {
        let gap = w[1].timestamp - w[0].timestamp;
        let recv = (w[1].at - w[0].at).as_secs_f64();
        assert!(
            recv > gap * 0.5 - 0.03,
            "{path}: frames {gap} s apart arrived {recv} s apart"
        );
    }
    // Then faster than captured, then live: the last frames arrive within a
    // moment of their capture.
    let tail = &got[got.len() - 5..];
    for f in tail {
        let arrived = now_unix() - f.at.elapsed().as_secs_f64();
        assert!(
            arrived - f.timestamp < 0.5,
            "{path}: frame of {} arrived at {arrived}: not live",
            f.timestamp
        );
    }
    let st = status(addr).await;
    assert_eq!(st["streams"][0]["frames_skipped"], 0, "{st}");
}

#[tokio::test]
async fn replay_keeps_the_pace_and_joins_the_live_stream() {
    // The default send path (send loops) and the one-task-per-client path.
    let batched = Daemon::serve(&["--source", "pattern:320x240@10", "--history", "20"]);
    let written = Daemon::serve(&[
        "--source",
        "pattern:320x240@10",
        "--history",
        "20",
        "--send-method",
        "write",
    ]);
    tokio::join!(
        check_replay(batched.addr(0), "/stream?from=-3"),
        check_replay(written.addr(0), "/streams/pattern/stream?from=-3"),
    );
}

/// Runs `tool` with `args`; its stdout, or a panic naming what is missing.
fn run_tool(tool: &str, args: &[&str]) -> (String, String) {
    let out = Command::new(require(tool))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{tool} {args:?}: {stderr}");
    (stdout, stderr)
}

fn ffprobe_value(out: &str, key: &str) -> f64 {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {out}"))
}

#[tokio::test]
async fn clips_are_avi_files_with_every_frame_and_the_real_timing() {
    let d = Daemon::serve(&["--source", "cam=pattern:320x240@10", "--history", "20"]);
    let addr = d.addr(0);
    let seen = record_live(addr, "/stream", Duration::from_secs(4)).await;
    let seen = &seen[1..];
    let (from, to) = (&seen[2], &seen[seen.len() - 2]);
    let count = seen.len() - 3;
    let path = format!(
        "/streams/cam/clip?from={}&to={}",
        ts_text(from.timestamp),
        ts_text(to.timestamp)
    );
    let (code, head, body) = get(addr, &path).await;
    assert_eq!(code, 200, "{head}");
    assert_eq!(header(&head, "Content-Type"), Some("video/x-msvideo"));
    assert_eq!(
        header(&head, "Content-Length"),
        Some(body.len().to_string().as_str()),
        "{head}"
    );
    let secs = from.timestamp as u64;
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    let disposition = header(&head, "Content-Disposition").expect("Content-Disposition");
    assert!(
        disposition.starts_with("attachment; filename=\"cam-20")
            && disposition.ends_with(&format!("T{h:02}-{m:02}-{s:02}.avi\"")),
        "{disposition}"
    );
    assert_eq!(header(&head, "X-Frames"), Some(count.to_string().as_str()));
    let file = temp_path("clip.avi");
    std::fs::write(&file, &body).expect("write clip");
    let name = file.to_str().expect("utf-8 path");

    let (probe, _) = run_tool(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames:format=duration,format_name",
            "-of",
            "default=nw=1",
            name,
        ],
    );
    assert!(probe.contains("codec_name=mjpeg"), "{probe}");
    assert!(probe.contains("format_name=avi"), "{probe}");
    assert!(
        probe.contains("width=320") && probe.contains("height=240"),
        "{probe}"
    );
    assert_eq!(
        ffprobe_value(&probe, "nb_read_frames"),
        count as f64,
        "{probe}"
    );
    let span = to.timestamp - from.timestamp;
    let interval = span / (count - 1) as f64;
    let duration = ffprobe_value(&probe, "duration");
    assert!(
        (duration - (span + interval)).abs() < 0.15,
        "{duration} s for {count} frames over {span} s"
    );
    // Each frame at its capture time.
    let (packets, _) = run_tool(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
            name,
        ],
    );
    let pts: Vec<f64> = packets
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let captured: Vec<f64> = seen[2..seen.len() - 1]
        .iter()
        .map(|f| f.timestamp - from.timestamp)
        .collect();
    assert_eq!(pts.len(), captured.len(), "{packets}");
    for (p, c) in pts.iter().zip(&captured) {
        assert!(
            (p - c).abs() <= interval * 0.6,
            "frame at {c} s shown at {p} s"
        );
    }
    // Every frame decodes, without a warning.
    let (_, errors) = run_tool("ffmpeg", &["-v", "error", "-i", name, "-f", "null", "-"]);
    assert!(errors.trim().is_empty(), "{errors}");
    let _ = std::fs::remove_file(&file);

    // Relative times, the default stream's path, and HEAD.
    let (code, head, body) = get(addr, "/clip?from=-2&to=now").await;
    assert_eq!(code, 200, "{head}");
    assert!(&body[..4] == b"RIFF" && &body[8..12] == b"AVI ");
    let (code, head, body) = request(
        addr,
        "HEAD /clip?from=-2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, 200, "{head}");
    assert!(body.is_empty());
    assert!(
        header(&head, "Content-Length").is_some_and(|l| l.parse::<u64>().is_ok_and(|n| n > 1000))
    );
}

/// Writes `n` different 1280x720 JPEGs of a camera's size (about 100 KiB:
/// a test pattern with noise) into a fresh folder.
fn frames_720p(n: usize) -> std::path::PathBuf {
    let dir = temp_path("frames720");
    std::fs::create_dir_all(&dir).expect("frames folder");
    let pattern = dir.join("%03d.jpg");
    run_tool(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=1280x720:rate=30",
            "-vf",
            "noise=alls=12:allf=t",
            "-frames:v",
            &n.to_string(),
            "-q:v",
            "4",
            pattern.to_str().expect("utf-8 path"),
        ],
    );
    dir
}

fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read folder")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum()
}

#[tokio::test]
async fn the_history_keeps_to_its_memory_budget() {
    let dir = frames_720p(30);
    let per_frame = folder_bytes(&dir) / 30;
    assert!(
        per_frame > 60_000,
        "{per_frame} bytes a frame: not camera-like"
    );
    let source = format!("dir:{}@30", dir.display());
    // 4 s at 30 fps would be about 12 MB: the 6 MiB budget decides.
    let span = 4;
    let budget_mb = 6;
    let natural = per_frame * 30 * span;
    assert!(natural > 2 * (budget_mb << 20), "{natural} bytes");
    let with = Daemon::serve(&[
        "--source",
        &source,
        "--history",
        &span.to_string(),
        "--history-max-mb",
        &budget_mb.to_string(),
    ]);
    let without = Daemon::serve(&["--source", &source]);
    // Twice the span, with a client on each, sampling the resident memory.
    let (a, b) = (with.addr(0), without.addr(0));
    let clients = tokio::join!(
        record_live(a, "/stream", Duration::from_secs(2 * span)),
        record_live(b, "/stream", Duration::from_secs(2 * span)),
    );
    assert!(clients.0.len() > 100 && clients.1.len() > 100);
    let st = status(a).await;
    let h = &st["streams"][0]["history"];
    let held = h["bytes"].as_u64().unwrap_or_else(|| panic!("{st}"));
    assert!(held <= budget_mb << 20, "{h}");
    assert!(
        held > (budget_mb << 20) - 2 * per_frame * 2,
        "the budget is used: {h}"
    );
    assert!(
        h["span_s"].as_f64().expect("span") < span as f64,
        "the budget decides: {h}"
    );
    let (rss_with, rss_without) = (with.rss_kib() * 1024, without.rss_kib() * 1024);
    let extra = rss_with.saturating_sub(rss_without);
    eprintln!(
        "RSS with a {budget_mb} MiB history: {} MiB, without: {} MiB",
        rss_with >> 20,
        rss_without >> 20
    );
    // The history's bytes plus allocator slack, well below what the span
    // alone would hold.
    assert!(
        extra <= (budget_mb << 20) + (3 << 20),
        "{extra} bytes more with the history than without (budget {budget_mb} MiB)"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Memory files (memfd) among a process's descriptors.
fn memfds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("/memfd:"))
        .count()
}

#[tokio::test]
async fn frames_in_the_history_hold_no_descriptors() {
    // Per-client sendfile: every frame sent live gets a memory file.
    let d = Daemon::serve(&[
        "--source",
        "pattern:320x240@30",
        "--history",
        "30",
        "--send-method",
        "sendfile-per-client",
    ]);
    let addr = d.addr(0);
    let mut live = StreamClient::connect(addr, "/stream").await;
    for _ in 0..15 {
        live.next_frame_checked().await;
    }
    let (fds_before, files_before) = (d.open_fds(), memfds(d.pid()));
    assert!(files_before >= 1, "live frames are sent from memory files");
    for _ in 0..120 {
        live.next_frame_checked().await;
    }
    let st = status(addr).await;
    let held = st["streams"][0]["history"]["frames"]
        .as_u64()
        .expect("frames");
    assert!(held >= 130, "{st}");
    let (fds_after, files_after) = (d.open_fds(), memfds(d.pid()));
    assert!(
        files_after <= 3 && fds_after <= fds_before + 2,
        "{held} frames held: {files_before} -> {files_after} memory files, \
         {fds_before} -> {fds_after} descriptors"
    );
    // Replaying them makes none either.
    let mut replay = StreamClient::connect(addr, "/stream?from=-4&catchup=16").await;
    for _ in 0..60 {
        replay.next_frame_checked().await;
    }
    assert!(memfds(d.pid()) <= 4, "{} memory files", memfds(d.pid()));
}

/// RGB pixels of a JPEG.
fn pixels(jpeg: &[u8]) -> (Vec<u8>, usize, usize) {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    let mut d = zune_jpeg::JpegDecoder::new(ZCursor::new(jpeg));
    let px = d.decode().expect("decodes");
    let (w, h) = d.dimensions().expect("dimensions");
    (px, w, h)
}

#[tokio::test]
async fn past_snapshots_come_at_the_size_asked_and_replays_refuse_renditions() {
    let d = Daemon::serve(&["--source", "pattern:320x240@10", "--history", "6"]);
    let addr = d.addr(0);
    let seen = record_live(addr, "/stream", Duration::from_secs(2)).await;
    assert!(seen.len() >= 10, "only {} frames in 2 s", seen.len());
    let frame = &seen[seen.len() / 2];
    let at = ts_text(frame.timestamp);
    let (code, head, small) = get(addr, &format!("/snapshot?at={at}&width=160")).await;
    assert_eq!(code, 200, "{head}");
    assert_eq!(
        header(&head, "X-Timestamp").expect("X-Timestamp"),
        at,
        "the frame of that moment"
    );
    // The same picture, halved: each pixel near the mean of its 2x2.
    let (full, fw, _) = pixels(&frame.jpeg);
    let (half, w, h) = pixels(&small);
    assert_eq!((w, h), (160, 120));
    let mut err = 0f64;
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let at = |dx: usize, dy: usize| {
                    f64::from(full[((2 * y + dy) * fw + 2 * x + dx) * 3 + c])
                };
                let mean = (at(0, 0) + at(1, 0) + at(0, 1) + at(1, 1)) / 4.0;
                err += (mean - f64::from(half[(y * w + x) * 3 + c])).powi(2);
            }
        }
    }
    let psnr = 10.0 * (255f64.powi(2) / (err / (w * h * 3) as f64)).log10();
    assert!(psnr > 24.0, "PSNR {psnr:.1} dB against the frame halved");
    // ago= with a quality, on the named stream's URL.
    let (code, head, body) = get(addr, "/streams/pattern/snapshot?ago=1&width=80&quality=30").await;
    assert_eq!(code, 200, "{head}");
    assert_eq!(decode(&body), (80, 60));
    // A burst of them takes turns (a few encodes at once) and each is answered.
    let burst = (0..24).map(|i| {
        let path = format!("/snapshot?at={at}&width={}", 80 + 16 * (i % 5));
        tokio::spawn(async move { get(addr, &path).await })
    });
    for answer in futures_util::future::join_all(burst).await {
        let (code, head, body) = answer.expect("request task");
        assert_eq!(code, 200, "{head}");
        assert!(decode(&body).0 <= 160, "{head}");
    }
    // One-off encodes start no live variant.
    let st = status(addr).await;
    assert_eq!(
        st["streams"][0]["renditions"],
        serde_json::json!([]),
        "{st}"
    );
    // Bad values and moments outside the history, as without a size.
    let (code, _, _) = get(addr, &format!("/snapshot?at={at}&width=0")).await;
    assert_eq!(code, 400);
    let (code, head, _) = get(addr, "/snapshot?ago=600&width=160").await;
    assert_eq!(code, 404);
    assert!(header(&head, "X-History-Oldest").is_some(), "{head}");
    // A replay is served at the source's size only: a clear 400.
    let (code, _, body) = get(addr, "/stream?from=-2&width=160").await;
    assert_eq!(code, 400);
    let why = String::from_utf8_lossy(&body);
    assert!(
        why.contains("from=") && why.contains("source's size"),
        "{why}"
    );
}
