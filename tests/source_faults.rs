//! Hostile and careless sources against the built binary: secrets in specs
//! never reach a viewer or the log, sources that deliver no valid frame say
//! so, and a command flooding its standard error does not flood the log.
//! Each test prints what it measured.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn daemon(sources: &[&str]) -> Daemon {
    let args: Vec<&str> = sources.iter().flat_map(|s| ["--source", s]).collect();
    Daemon::serve(&args)
}

/// The stream's `last_error` once it is set and `accept`ed, polling
/// `/status` for up to `within`.
async fn wait_error(
    addr: SocketAddr,
    name: &str,
    within: Duration,
    accept: impl Fn(&str) -> bool,
) -> String {
    let st = wait_stream(addr, Some(name), within, "the error", |st| {
        st["last_error"].as_str().is_some_and(&accept)
    })
    .await;
    assert_eq!(st["online"], false, "{name}: {st}");
    st["last_error"].as_str().expect("an error").to_owned()
}

/// Decodes a JPEG to RGB pixels; (width, height, pixels).
fn pixels(jpeg: &[u8]) -> (usize, usize, Vec<u8>) {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    let mut d = zune_jpeg::JpegDecoder::new(ZCursor::new(jpeg));
    let px = d.decode().expect("decodes as JPEG");
    let (w, h) = d.dimensions().expect("dimensions");
    (w, h, px)
}

/// Mean absolute difference per channel between a received picture and the
/// NO SIGNAL picture drawn for `stream` with `reason`.
fn diff_from_placeholder(received: &[u8], stream: &str, reason: &str) -> f64 {
    let (w, h, got) = pixels(received);
    let drawn = mjpegd::source::render_placeholder(w as u16, h as u16, stream, reason)
        .encode_jpeg(80)
        .expect("encodes");
    let (_, _, want) = pixels(&drawn);
    assert_eq!(got.len(), want.len(), "picture sizes differ");
    let sum: u64 = got
        .iter()
        .zip(&want)
        .map(|(a, b)| u64::from(a.abs_diff(*b)))
        .sum();
    sum as f64 / got.len() as f64
}

/// The first frame a new viewer of `name` gets.
async fn first_frame(addr: SocketAddr, name: &str) -> Vec<u8> {
    let mut c = StreamClient::connect(addr, &format!("/streams/{name}/stream")).await;
    c.next_frame().await.jpeg
}

const SECRETS: &[&str] = &["CamPw12345", "QueryPw555", "SnapPw777", "TokVal888"];

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows the secret {s}: {text}");
    }
}

#[tokio::test]
async fn secrets_in_specs_reach_no_viewer_picture_or_log_line() {
    require("sh");
    // The command line carries an RTSP password and, like ffmpeg, the
    // command repeats the URL (and the password alone) on stderr.
    let cam = "cam=exec:url=rtsp://admin:CamPw12345@127.0.0.1:9/s1; \
               echo \"password CamPw12345 rejected\" >&2; \
               echo \"[tcp] $url: Connection refused\" >&2; exit 1";
    let door = "door=http://127.0.0.1:1/video?user=admin&pwd=QueryPw555";
    let snap = "snap=snapshot:http://viewer:SnapPw777@127.0.0.1:1/jpg?token=TokVal888@2";
    let mut d = daemon(&[cam, door, snap]);
    let addr = d.addr(0);
    let wait = Duration::from_secs(10);
    let cam_error = wait_error(addr, "cam", wait, |_| true).await;
    for name in ["door", "snap"] {
        wait_error(addr, name, wait, |_| true).await;
    }

    let mut shown = 0;
    let st = status(addr).await;
    println!("/status: {st}");
    assert_no_secret("/status", &st.to_string());
    assert_eq!(
        stream_of(&st, Some("door"))["source"],
        "http://127.0.0.1:1/video?user=admin&pwd=***"
    );
    assert_eq!(
        stream_of(&st, Some("snap"))["source"],
        "snapshot:http://viewer:***@127.0.0.1:1/jpg?token=***@2"
    );
    let cam_source = stream_of(&st, Some("cam"))["source"].to_string();
    assert!(
        cam_source.contains("rtsp://admin:***@127.0.0.1:9/s1"),
        "{cam_source}"
    );
    // The reason names the command's words, never its command line.
    assert_eq!(
        cam_error,
        "command exited with status 1: [tcp] rtsp://admin:***@127.0.0.1:9/s1: Connection refused"
    );
    for path in ["/", "/metrics", "/status"] {
        let (code, head, body) = get(addr, path).await;
        assert_eq!(code, 200, "{path}");
        assert_no_secret(path, &format!("{head}{}", String::from_utf8_lossy(&body)));
        shown += 1;
    }
    for name in ["cam", "door", "snap"] {
        let (code, head, body) = get(addr, &format!("/streams/{name}/snapshot")).await;
        let body = String::from_utf8_lossy(&body);
        println!("/streams/{name}/snapshot: {code} {body}");
        assert_eq!(code, 503, "{name}");
        assert_no_secret("snapshot 503", &format!("{head}{body}"));
        shown += 1;
    }

    // The picture every viewer sees: drawn from the scrubbed reason, not
    // from the command line or the password.
    let picture = first_frame(addr, "cam").await;
    let reason = stream_of(&status(addr).await, Some("cam"))["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let as_shown = diff_from_placeholder(&picture, "cam", &reason);
    let leaky = "exec:url=rtsp://admin:CamPw12345@127.0.0.1:9/s1; echo \"password CamPw12345 \
                 rejected\" >&2; exited with status 1: [tcp] \
                 rtsp://admin:CamPw12345@127.0.0.1:9/s1: Connection refused";
    let as_leaked = diff_from_placeholder(&picture, "cam", leaky);
    let unredacted = diff_from_placeholder(&picture, "cam", &reason.replace("***", "CamPw12345"));
    println!(
        "placeholder vs drawn: scrubbed reason {as_shown:.3}, with the command line \
         {as_leaked:.3}, with the password {unredacted:.3} (mean abs diff per channel)"
    );
    assert!(
        as_shown < 0.5,
        "the picture is not the scrubbed reason drawn"
    );
    assert!(as_leaked > as_shown + 1.0 && unredacted > as_shown + 0.2);

    // Let the command fail and be restarted, then read the log.
    eventually_blocking(Duration::from_secs(10), "both failures logged", || {
        let log = d.stderr_text();
        log.contains("Connection refused") && log.contains("rejected")
    });
    assert_eq!(d.terminate(), Some(0));
    let log = d.stderr_text();
    let lines: Vec<&str> = log.lines().collect();
    println!(
        "{shown} responses and {} log lines checked; the log:\n{log}",
        lines.len()
    );
    for line in &lines {
        assert_no_secret("log line", line);
    }
    assert!(log.contains("command: [tcp] rtsp://admin:***@127.0.0.1:9/s1: Connection refused"));
    assert!(log.contains("command: password *** rejected"));
}

#[test]
fn a_config_error_does_not_print_the_password() {
    // A `/` in the password makes this an invalid URL.
    for spec in [
        "http://admin:pa/ss@host/",
        "cam=snapshot:http://admin:pa/ss@host/x@2",
    ] {
        let out = run(&["--listen", "127.0.0.1:0", "--source", spec]);
        let err = String::from_utf8_lossy(&out.stderr);
        println!("{spec} -> exit {:?}: {err}", out.status.code());
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!err.contains("pa/ss") && !err.contains("'pa'"), "{err}");
        assert!(err.contains("admin:***@"), "{err}");
    }
}

/// Serves `head` and then whatever `body` returns, every 10 ms, forever.
async fn upstream(head: &'static str, body: fn(u64) -> Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut io, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut req = [0u8; 4096];
                let _ = io.read(&mut req).await;
                if io.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for i in 0.. {
                    if io.write_all(&body(i)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
        }
    });
    addr
}

const MULTIPART: &str =
    "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=b\r\n\r\n";

/// Pseudo-random bytes (no boundary line can appear: no `\n`).
fn garbage(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match (x >> 24) as u8 {
                b'\n' => 0,
                b => b,
            }
        })
        .collect()
}

/// A part that never ends its headers.
fn endless_headers(i: u64) -> Vec<u8> {
    let mut out = Vec::new();
    if i == 0 {
        out.extend_from_slice(b"--b\r\nContent-Type: image/jpeg\r\n");
    }
    for _ in 0..32 {
        out.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "a".repeat(100)).as_bytes());
    }
    out
}

#[tokio::test]
async fn sources_without_a_valid_frame_show_why() {
    for tool in ["sh", "sleep", "head"] {
        require(tool);
    }
    let dir = temp_path("text");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let text = dir.join("notes.txt");
    std::fs::write(&text, "these are notes, not a picture\n".repeat(50)).expect("write");
    let garbage = upstream(MULTIPART, garbage).await;
    let headers = upstream(MULTIPART, endless_headers).await;
    let specs = [
        "silent=exec:sleep 1000".to_owned(),
        // 320x240 RGB frames of raw video.
        "raw=exec:while :; do head -c 230400 /dev/zero; sleep 0.05; done".to_owned(),
        format!("text=file:{}", text.display()),
        format!("garbage=http://{garbage}/"),
        format!("headers=http://{headers}/"),
    ];
    let args: Vec<&str> = specs.iter().map(String::as_str).collect();
    let d = daemon(&args);
    let t0 = Instant::now();
    let addr = d.addr(0);

    // Bad input shows at once (well before the 5 s of silence), silence
    // after 5 s.
    let mut first = Vec::new();
    for (name, within) in [
        ("raw", 3.5),
        ("text", 3.5),
        ("headers", 3.5),
        ("silent", 8.0),
        ("garbage", 8.0),
    ] {
        let e = wait_error(addr, name, Duration::from_secs_f64(within), |_| true).await;
        println!(
            "{name}: NO SIGNAL after {:.1} s: {e}",
            t0.elapsed().as_secs_f64()
        );
        first.push((name, e));
    }
    assert!(first[0].1.contains("no SOI marker"), "{first:?}");
    assert!(first[2].1.contains("part headers"), "{first:?}");

    let five = |e: &str| e.starts_with("no JPEG in the last 5 s");
    for (name, _) in &first {
        let e = wait_error(addr, name, Duration::from_secs(8), five).await;
        let (code, _, body) = get(addr, &format!("/streams/{name}/snapshot")).await;
        let body = String::from_utf8_lossy(&body);
        println!("{name}: last_error {e:?}; snapshot {code} {body:?}");
        assert_eq!(code, 503);
        assert!(
            body.starts_with(&format!("stream {name}: no JPEG in the last 5 s")),
            "{body}"
        );
        assert_ne!(body, format!("stream {name}: no frame yet"));
    }

    // Viewers get the placeholder with that reason drawn.
    for name in ["silent", "text"] {
        let picture = first_frame(addr, name).await;
        let reason = stream_of(&status(addr).await, Some(name))["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let diff = diff_from_placeholder(&picture, name, &reason);
        let other = diff_from_placeholder(&picture, name, "source ended");
        println!("{name}: picture vs drawn reason {diff:.3}, vs another reason {other:.3}");
        assert!(diff < 0.5 && other > diff + 0.2, "{name}: {reason}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// CPU time (user + system) of process `pid`, from /proc, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // Fields after the command name, which is in parentheses.
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

#[tokio::test]
async fn a_command_flooding_stderr_does_not_flood_the_log() {
    require("sh");
    require("yes");
    let d = daemon(&["flood=exec:yes error >&2"]);
    let addr = d.addr(0);
    let t0 = Instant::now();
    let cpu0 = cpu_ticks(d.pid());
    let secs = 7.0;
    // The server keeps answering meanwhile.
    let mut slowest = Duration::ZERO;
    while t0.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        let (code, _, _) = get(addr, "/status").await;
        assert_eq!(code, 200);
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(d.pid()) - cpu0) as f64 / 100.0;
    let bytes = std::fs::metadata(&d.stderr).map(|m| m.len()).unwrap_or(0);
    let log = d.stderr_text();
    let command_lines = log.lines().filter(|l| l.contains("command: ")).count();
    let summaries: Vec<&str> = log.lines().filter(|l| l.contains("not logged")).collect();
    println!(
        "exec:yes error >&2 for {elapsed:.1} s: {bytes} bytes of log, {} lines, \
         {command_lines} of them the command's ({:.1}/s), server CPU {cpu:.2} s ({:.0} %), \
         slowest /status {slowest:?}",
        log.lines().count(),
        command_lines as f64 / elapsed,
        100.0 * cpu / elapsed
    );
    for s in &summaries {
        println!("  {s}");
    }
    assert!(bytes < 32 * 1024, "{bytes} bytes of log in {elapsed:.1} s");
    assert!(
        (command_lines as f64) <= 8.0 + 3.0 * elapsed,
        "{command_lines} lines in {elapsed:.1} s"
    );
    assert!(
        log.contains("command: error"),
        "the first lines are logged:\n{log}"
    );
    assert!(
        !summaries.is_empty(),
        "what was left out is counted:\n{log}"
    );
}
