//! Frame sources other than the test pattern, against the real server: a
//! folder of JPEGs, a watched file, MJPEG on stdin and from a command, the
//! supervisor's placeholder and recovery, several streams and a config file.

mod common;

use common::*;
use std::collections::HashSet;
use std::io::Write;
use std::process::{ChildStdin, Stdio};
use std::time::{Duration, Instant};

/// Polls `/status` until stream `name` satisfies `pred` (or 10 s pass).
async fn wait_status(
    addr: std::net::SocketAddr,
    name: &str,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_stream(addr, Some(name), Duration::from_secs(10), what, pred).await
}

/// Width of frame `i` of the folder test: the width tells the order.
fn width_of(i: usize) -> u16 {
    64 + 16 * i as u16
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_is_played_in_order_at_its_rate_and_new_files_join() {
    let dir = TempDir::new("dir-order");
    for i in 0..5 {
        replace_file(
            &dir.path(&format!("f{i:02}.jpg")),
            &test_jpeg(width_of(i), 48, i),
        );
    }
    std::fs::write(dir.path("notes.txt"), "not a frame").expect("write");
    let spec = format!("dir:{}@10", dir.str());
    let server = TestServer::start(&["--source", &spec]).await;
    let mut client = StreamClient::connect(server.addr, "/stream").await;
    let index = |f: &Received| {
        let (w, h) = decode(&f.jpeg);
        assert_eq!(h, 48);
        (0..6)
            .find(|&i| usize::from(width_of(i)) == w)
            .unwrap_or_else(|| panic!("unexpected width {w}"))
    };

    let first = client.next_frame().await;
    let mut prev = index(&first);
    let mut steps_of_one = 0;
    let mut last_at = first.at;
    for _ in 0..15 {
        let f = client.next_frame().await;
        let i = index(&f);
        let step = (i + 5 - prev) % 5;
        // A busy machine may make the client skip a frame, never go back.
        assert!((1..=2).contains(&step), "frame {i} after {prev}");
        steps_of_one += usize::from(step == 1);
        prev = i;
        last_at = f.at;
    }
    assert!(steps_of_one >= 12, "{steps_of_one} of 15 frames in order");
    let took = last_at.duration_since(first.at).as_secs_f64();
    assert!(
        (1.0..2.5).contains(&took),
        "15 frames at 10 fps took {took:.2} s"
    );

    // A file added later is shown, in its place in the name order.
    replace_file(&dir.path("f05.jpg"), &test_jpeg(width_of(5), 48, 5));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    loop {
        let i = index(&client.next_frame().await);
        seen.push(i);
        if let [.., 4, 5, 0] = seen[..] {
            break;
        }
        assert!(Instant::now() < deadline, "new file not shown: {seen:?}");
    }
    let st = stream_of(&status(server.addr).await, Some("dir"));
    assert_eq!(st["online"], true);
    assert_eq!(st["kind"], "dir");
    assert_eq!(st["frames_dropped"], 0);
    server.stop().await;
}

/// The widths of the frames a stream client receives until `want` (a run of
/// consecutive widths) has been seen, or panics after `within`.
async fn until_widths(client: &mut StreamClient, want: &[usize], within: Duration) -> Vec<usize> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        seen.push(decode(&client.next_frame().await.jpeg).0);
        if seen.ends_with(want) {
            return seen;
        }
        assert!(Instant::now() < deadline, "never saw {want:?}: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_files_rewritten_in_place_or_behind_a_link_are_shown_new() {
    // Writers that do not rename: a file overwritten in place, and a link
    // whose target (outside the folder) is overwritten.
    let dir = TempDir::new("dir-rewrite");
    let outside = TempDir::new("dir-rewrite-target");
    std::fs::write(dir.path("a.jpg"), test_jpeg(64, 32, 0)).expect("write");
    std::fs::write(dir.path("b.jpg"), test_jpeg(80, 32, 1)).expect("write");
    std::fs::write(outside.path("c.jpg"), test_jpeg(96, 32, 2)).expect("write");
    std::os::unix::fs::symlink(outside.path("c.jpg"), dir.path("c.jpg")).expect("symlink");
    let spec = format!("dir:{}@20", dir.str());
    let server = TestServer::start(&["--source", &spec]).await;
    let mut client = StreamClient::connect(server.addr, "/stream").await;
    until_widths(&mut client, &[64, 80, 96], Duration::from_secs(5)).await;

    std::fs::write(dir.path("b.jpg"), test_jpeg(112, 32, 3)).expect("rewrite in place");
    until_widths(&mut client, &[64, 112, 96], Duration::from_secs(5)).await;

    std::fs::write(outside.path("c.jpg"), test_jpeg(128, 32, 4)).expect("rewrite the target");
    until_widths(&mut client, &[64, 112, 128], Duration::from_secs(5)).await;

    // Removed: gone from the loop.
    std::fs::remove_file(dir.path("a.jpg")).expect("remove");
    until_widths(&mut client, &[112, 128, 112, 128], Duration::from_secs(5)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_file_serves_only_complete_versions() {
    let dir = TempDir::new("watch");
    let file = dir.path("cam.jpg");
    let versions: Vec<Vec<u8>> = (0..40).map(|n| test_jpeg(320, 240, n)).collect();
    replace_file(&file, &versions[0]);
    let spec = format!("file:{}", file.display());
    let server = TestServer::start(&["--source", &spec]).await;
    let mut client = StreamClient::connect(server.addr, "/stream").await;
    assert_eq!(client.next_frame().await.jpeg, versions[0]);

    // Half the versions are overwritten in place in four pieces with pauses
    // (a reader can see every prefix), half written aside and renamed over.
    let writer_file = file.clone();
    let writer_versions = versions.clone();
    let writer = std::thread::spawn(move || {
        for (n, v) in writer_versions.iter().enumerate().skip(1) {
            if n % 2 == 0 {
                replace_file(&writer_file, v);
            } else {
                let mut f = std::fs::File::create(&writer_file).expect("truncate");
                for piece in v.chunks(v.len().div_ceil(4)) {
                    f.write_all(piece).expect("write");
                    f.flush().expect("flush");
                    std::thread::sleep(Duration::from_millis(15));
                }
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    });

    // Every frame received decodes (`next_frame` decodes it) and is exactly
    // one of the versions written, never a mix or a prefix.
    let known: HashSet<&[u8]> = versions.iter().map(|v| &v[..]).collect();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen.len() < versions.len() - 1 && Instant::now() < deadline {
        let f = tokio::time::timeout(Duration::from_secs(2), client.next_frame()).await;
        let Ok(f) = f else { break }; // the writer is done and the file still
        assert!(
            known.contains(&f.jpeg[..]),
            "a frame that was never written"
        );
        seen.insert(f.jpeg);
    }
    writer.join().expect("writer");
    assert!(
        seen.len() >= 20,
        "only {} of 40 versions arrived",
        seen.len()
    );
    // The last version is on show, and nothing was dropped as corrupt.
    let (code, _, body) = get(server.addr, "/snapshot?max_age=60000").await;
    assert_eq!(code, 200);
    assert_eq!(Some(&body), versions.last());
    let st = stream_of(&status(server.addr).await, Some("file"));
    assert_eq!(st["online"], true, "{st}");
    assert_eq!(st["frames_dropped"], 0, "{st}");

    // A missing file is a source error: placeholder and offline.
    std::fs::remove_file(&file).expect("remove");
    let st = wait_status(server.addr, "file", "offline", |s| s["online"] == false).await;
    let err = st["last_error"].as_str().expect("last_error");
    assert!(err.starts_with(&format!("{spec}: ")), "{err}");
    server.stop().await;
}

/// A JPEG of `w`x`h` carrying an EXIF-style APP1 segment that holds a
/// complete small JPEG (a thumbnail) right after SOI.
fn jpeg_with_thumbnail(w: u16, h: u16, n: usize) -> Vec<u8> {
    let main = test_jpeg(w, h, n);
    let thumb = test_jpeg(80, 60, 99);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&thumb);
    let len = u16::try_from(app1.len() + 2).expect("thumbnail fits a segment");
    let mut out = main[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&main[2..]);
    out
}

/// Runs the built binary with stdin piped to the test.
fn start_with_stdin(args: &[&str]) -> (Daemon, ChildStdin) {
    let mut server = Daemon::serve_with_stdin(args, Stdio::piped());
    let stdin = server.child.stdin.take().expect("piped stdin");
    (server, stdin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_stream_with_exif_thumbnails_and_a_truncated_frame() {
    let (mut server, mut stdin) = start_with_stdin(&["--source", "stdin"]);
    let mut client = StreamClient::connect(server.addr(0), "/stream").await;
    let plain = test_jpeg(160, 120, 1);
    let with_thumb = jpeg_with_thumbnail(320, 240, 2);
    zune_decodes_with_thumbnail(&with_thumb);
    let truncated = plain[..plain.len() - 2].to_vec(); // no EOI
    // 60 frames at 20 fps; every 10th is cut short by the next frame.
    let feeder = std::thread::spawn(move || {
        for i in 0..60 {
            let frame: &[u8] = match i % 10 {
                9 => &truncated,
                n if n % 2 == 0 => &plain,
                _ => &with_thumb,
            };
            stdin.write_all(frame).expect("write to stdin");
            stdin.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Dropping stdin closes it.
    });
    let mut sizes = HashSet::new();
    for _ in 0..20 {
        sizes.insert(decode(&client.next_frame().await.jpeg));
    }
    // The thumbnail inside APP1 never ends a frame early.
    assert_eq!(
        sizes,
        HashSet::from([(160, 120), (320, 240)]),
        "frame sizes seen"
    );
    feeder.join().expect("feeder");

    let st = wait_status(server.addr(0), "stdin", "stdin closed", |s| {
        s["online"] == false
    })
    .await;
    assert_eq!(st["last_error"], "stdin closed");
    assert_eq!(st["frames_dropped"], 6, "{st}");
    assert_eq!(st["frames_captured"].as_u64().map(|n| n >= 54), Some(true));
    // The same connection carries on with the placeholder.
    for _ in 0..2 {
        client.next_frame().await;
    }
    let (code, _, body) = get(server.addr(0), "/snapshot").await;
    assert_eq!(code, 503);
    assert!(String::from_utf8_lossy(&body).contains("stdin closed"));
    let (exit, _) = server.signal_and_wait(libc::SIGINT);
    assert_eq!(exit, Some(0));
}

fn zune_decodes_with_thumbnail(jpeg: &[u8]) {
    assert_eq!(decode(jpeg), (320, 240), "test image is a valid JPEG");
}

/// Processes in process group `pgid` that are alive (not zombies).
fn live_group_members(pgid: i32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the command name in parentheses: state ppid pgrp ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|p| p.parse::<i32>().ok()) == Some(pgid) && fields[0] != "Z" {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_shell_pipeline_streams_and_leaves_no_process_behind() {
    let dir = TempDir::new("exec-loop");
    std::fs::write(dir.path("a.jpg"), test_jpeg(160, 120, 1)).expect("write");
    std::fs::write(dir.path("b.jpg"), test_jpeg(200, 100, 2)).expect("write");
    let pid_file = dir.path("pid");
    let command = format!(
        "cd {}; echo $$ > pid; while true; do cat a.jpg b.jpg; sleep 0.05; done | cat",
        dir.str()
    );
    let mut server = Daemon::serve(&["--source", &format!("cam=exec:{command}")]);
    let mut client = StreamClient::connect(server.addr(0), "/stream").await;
    let mut sizes = HashSet::new();
    for _ in 0..30 {
        sizes.insert(decode(&client.next_frame().await.jpeg));
        if sizes.len() == 2 {
            break;
        }
    }
    assert_eq!(sizes, HashSet::from([(160, 120), (200, 100)]));
    let pgid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    let members = live_group_members(pgid);
    assert!(
        members.len() >= 2,
        "shell and pipeline run in their own group: {members:?}"
    );

    let (exit, _) = server.signal_and_wait(libc::SIGINT);
    assert_eq!(exit, Some(0));
    eventually_blocking(Duration::from_secs(2), "no process left behind", || {
        live_group_members(pgid).is_empty()
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_command_that_exits_is_restarted() {
    let dir = TempDir::new("exec-restart");
    std::fs::write(dir.path("a.jpg"), test_jpeg(160, 120, 1)).expect("write");
    let command = format!(
        "cd {}; echo run >> runs; cat a.jpg; echo 'camera gone' >&2; exit 4",
        dir.str()
    );
    let spec = format!("exec:{command}");
    let server = TestServer::start(&["--source", &spec]).await;
    let mut client = StreamClient::connect(server.addr, "/stream").await;
    let st = wait_status(server.addr, "exec", "offline after exit", |s| {
        s["online"] == false && s["frames_captured"].as_u64() >= Some(1)
    })
    .await;
    // The reason says "command", not the command line: it is drawn into
    // the picture every viewer sees.
    assert_eq!(
        st["last_error"],
        "command exited with status 4: camera gone"
    );
    // Backoff: restarts after 0.5 s, then 1 s later.
    eventually(Duration::from_secs(8), "restarted twice", || {
        let runs = std::fs::read_to_string(dir.path("runs")).unwrap_or_default();
        std::future::ready(runs.lines().count() >= 3)
    })
    .await;
    wait_status(server.addr, "exec", "frames of later runs", |s| {
        s["frames_captured"].as_u64() >= Some(3)
    })
    .await;
    // The viewer stayed connected throughout.
    client.next_frame().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_ffmpeg_test_source() {
    require("ffmpeg");
    let spec = "exec:ffmpeg -loglevel error -nostdin -re -f lavfi -i testsrc=size=320x240:rate=10 -f mjpeg -";
    let server = TestServer::start(&["--source", &format!("ff={spec}")]).await;
    let mut client = StreamClient::connect(server.addr, "/stream").await;
    // Starting ffmpeg takes seconds on a loaded machine.
    let first = client
        .next_frame_within(Duration::from_secs(15))
        .await
        .expect("a first frame from ffmpeg");
    decode(&first.jpeg);
    let mut last = first.at;
    for _ in 0..20 {
        let f = client.next_frame().await;
        assert_eq!(decode(&f.jpeg), (320, 240));
        last = f.at;
    }
    // 2 s at 10 fps. The bounds only say the frames are paced (not a burst
    // of everything ffmpeg buffered) and keep coming: a machine busy with
    // other tests delays some of them by a second or more.
    let took = last.duration_since(first.at).as_secs_f64();
    assert!(
        (0.9..8.0).contains(&took),
        "20 frames at 10 fps in {took:.2} s"
    );
    let st = stream_of(&status(server.addr).await, Some("ff"));
    assert_eq!(st["online"], true);
    assert_eq!(st["frames_dropped"], 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_folder_shows_placeholder_then_recovers_on_the_same_connection() {
    let base = TempDir::new("dir-missing");
    let dir = base.path("frames");
    let spec = format!("dir:{}@10", dir.display());
    let server = TestServer::start(&["--source", &format!("door={spec}")]).await;
    let mut client = StreamClient::connect(server.addr, "/streams/door/stream").await;
    // The placeholder (640x480, the stream's size being unknown).
    assert_eq!(decode(&client.next_frame().await.jpeg), (640, 480));
    let st = stream_of(&status(server.addr).await, Some("door"));
    assert_eq!(st["online"], false);
    let err = st["last_error"].as_str().expect("last_error");
    let label = format!("dir:{}", dir.display());
    assert!(err.starts_with(&format!("{label}: ")), "{err}");

    // An empty folder has another reason.
    std::fs::create_dir(&dir).expect("mkdir");
    let st = wait_status(server.addr, "door", "empty folder", |s| {
        s["last_error"] == format!("{label} has no JPEG files")
    })
    .await;
    assert_eq!(st["online"], false);

    replace_file(&dir.join("a.jpg"), &test_jpeg(200, 100, 1));
    let real = |f: &Received| decode(&f.jpeg) == (200, 100);
    client
        .next_frame_where(Duration::from_secs(10), "a real frame after recovery", real)
        .await;
    let st = stream_of(&status(server.addr).await, Some("door"));
    assert_eq!(st["online"], true);
    assert_eq!(st["last_error"], serde_json::Value::Null);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_streams_and_a_capped_client() {
    let dir = TempDir::new("two");
    for i in 0..3 {
        replace_file(&dir.path(&format!("{i}.jpg")), &test_jpeg(120, 90, i));
    }
    let folder = format!("a=dir:{}@30", dir.str());
    let server =
        TestServer::start(&["--source", &folder, "--source", "b=pattern:160x120@30"]).await;
    let mut slow = StreamClient::connect(server.addr, "/streams/a/stream?fps=5").await;
    let mut fast = StreamClient::connect(server.addr, "/streams/a/stream").await;
    let mut other = StreamClient::connect(server.addr, "/streams/b/stream").await;
    assert_eq!(decode(&other.next_frame().await.jpeg), (160, 120));
    slow.next_frame().await;
    fast.next_frame().await;

    let window = Duration::from_secs(2);
    let count = |mut c: StreamClient| async move {
        let start = Instant::now();
        let mut n = 0;
        while start.elapsed() < window {
            assert_eq!(decode(&c.next_frame().await.jpeg), (120, 90));
            n += 1;
        }
        n
    };
    let (slow_n, fast_n) = tokio::join!(count(slow), count(fast));
    assert!(
        (7..=13).contains(&slow_n),
        "?fps=5 gave {slow_n} frames in 2 s"
    );
    assert!(fast_n >= 45, "uncapped client got {fast_n} frames in 2 s");
    assert_eq!(decode(&other.next_frame().await.jpeg), (160, 120));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_runs_from_the_example_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mjpegd.toml");
    let server = TestServer::start(&["--config", example]).await;
    let mut small = StreamClient::connect(server.addr, "/streams/small/stream").await;
    assert_eq!(decode(&small.next_frame().await.jpeg), (320, 240));
    let mut main = StreamClient::connect(server.addr, "/stream").await;
    assert_eq!(decode(&main.next_frame().await.jpeg), (640, 480));
    let st = status(server.addr).await;
    let names: Vec<&str> = st["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["main", "small", "frames"]);
    assert_eq!(stream_of(&st, Some("frames"))["kind"], "dir");
    let (code, _, body) = get(server.addr, "/").await;
    assert_eq!(code, 200);
    let page = String::from_utf8_lossy(&body);
    for name in names {
        assert!(page.contains(name), "index page lacks {name}");
    }
    server.stop().await;
}
