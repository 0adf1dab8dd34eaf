//! mjpegd and µStreamer side by side on one vivid camera in one QEMU guest
//! (see `guest`): YUYV 640x480 capture + encode + serve at quality 80 with
//! two encoder threads each, then camera MJPEG passed through (from
//! v4l2loopback), at 1 and 10 clients, alternated. The load client is
//! `mjpeg-bench` in the guest, so server CPU comes from the guest's /proc
//! and latency compares stamps on the guest's clock: mjpegd's `X-Timestamp`
//! is the capture time, µStreamer's capture time is derived from its
//! `X-UStreamer-Grab-Time`/`-Send-Time` pair.
//!
//! Not part of the test suite (it takes minutes and wants a quiet machine):
//! `cargo test --release [--features turbojpeg] --test v4l2_bench -- --ignored --nocapture`
//! prints a Markdown table.

mod common;
mod guest;

use guest::Guest;
use serde_json::Value;
use std::time::Duration;

const VIVID: &str = "n_devs=1 node_types=0x1";
const LOOPBACK: &str = "video_nr=3 exclusive_caps=1 card_label=loopcam";
const SECONDS: u32 = 10;
const ROUNDS: usize = 2;

struct Server {
    name: &'static str,
    command: String,
    /// Query for stream clients.
    query: &'static str,
}

fn servers(passthrough: bool) -> Vec<Server> {
    let mjpegd = format!("/host{}", env!("CARGO_BIN_EXE_mjpegd"));
    let ustreamer = "/host/usr/bin/ustreamer --host 0.0.0.0 --port 8080 --quality 80 --workers 2";
    if passthrough {
        vec![
            Server {
                name: "mjpegd (passthrough)",
                command: format!("{mjpegd} --listen 0.0.0.0:8080 --source v4l2:/dev/video3:MJPEG"),
                query: "",
            },
            Server {
                name: "µStreamer (passthrough)",
                command: format!(
                    "{ustreamer} --device /dev/video3 --format MJPEG --encoder HW --resolution 640x480"
                ),
                query: "?extra_headers=1",
            },
        ]
    } else {
        let name = if cfg!(feature = "turbojpeg") {
            "mjpegd (turbojpeg)"
        } else {
            "mjpegd (pure Rust)"
        };
        vec![
            Server {
                name,
                command: format!(
                    "{mjpegd} --listen 0.0.0.0:8080 --quality 80 --source v4l2:/dev/video0:YUYV:640x480@25"
                ),
                query: "",
            },
            Server {
                name: "µStreamer (CPU encoder)",
                command: format!(
                    "{ustreamer} --device /dev/video0 --format YUYV --resolution 640x480 --desired-fps 25 --encoder CPU"
                ),
                query: "?extra_headers=1",
            },
        ]
    }
}

/// The chroma subsampling of the server's current frame (its `/snapshot`),
/// read from the JPEG frame header: "4:2:0", "4:2:2", "4:4:4" or "?".
fn subsampling(guest: &Guest) -> &'static str {
    use std::io::{Read, Write};
    let mut body = Vec::new();
    let fetched = std::net::TcpStream::connect(guest.http).and_then(|mut s| {
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(b"GET /snapshot HTTP/1.0\r\n\r\n")?;
        s.read_to_end(&mut body)
    });
    let sof = fetched
        .ok()
        .and_then(|_| body.windows(2).position(|w| w == [0xff, 0xc0]));
    match sof.and_then(|at| body.get(at + 11)) {
        Some(0x22) => "4:2:0",
        Some(0x21) => "4:2:2",
        Some(0x11) => "4:4:4",
        _ => "?",
    }
}

fn run(guest: &mut Guest, server: &Server, clients: u32) -> (Value, &'static str) {
    guest.sh(&format!(
        "{} >/tmp/server.log 2>&1 & echo $! >/tmp/server.pid",
        server.command
    ));
    // Let it start and settle before measuring.
    guest.sh("sleep 5");
    let sampling = subsampling(guest);
    let bench = format!("/host{}", env!("CARGO_BIN_EXE_mjpeg-bench"));
    let out = guest.sh_within(
        &format!(
            "{bench} 'http://127.0.0.1:8080/stream{}' -c {clients} -d {SECONDS} --pid $(cat /tmp/server.pid) --json",
            server.query
        ),
        Duration::from_secs(u64::from(SECONDS) * 4 + 60),
    );
    guest.sh(
        "kill $(cat /tmp/server.pid); while kill -0 $(cat /tmp/server.pid) 2>/dev/null; do usleep 100000; done",
    );
    let result = out
        .lines()
        .find_map(|l| {
            let start = l.find('{')?;
            serde_json::from_str(&l[start..]).ok()
        })
        .unwrap_or_else(|| {
            let log = guest.sh("cat /tmp/server.log");
            panic!("no result from mjpeg-bench: {out}\n{log}")
        });
    (result, sampling)
}

#[test]
#[ignore = "a benchmark: minutes long, run by hand"]
fn mjpegd_and_ustreamer_on_vivid() {
    // µStreamer runs in the guest from the host's file system. CI does not
    // run this benchmark, so nothing installs it for it.
    assert!(
        std::path::Path::new("/usr/bin/ustreamer").is_file(),
        "this benchmark needs µStreamer: apt-get install ustreamer"
    );
    let req = guest::requirements().expect("QEMU, kernel and busybox");
    let mut drivers = vec![("vivid", VIVID)];
    let loopback = guest::has_module(&req, "v4l2loopback");
    if loopback {
        drivers.push(("v4l2loopback", LOOPBACK));
    }
    let mut guest = Guest::boot(&req, &drivers).expect("guest boots");
    println!(
        "\n| server | clients | round | fps per client (median) | server CPU ms per delivered frame | mean frame KiB | subsampling | latency p50 / p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut modes = vec![false];
    // Passthrough encodes nothing, so it is measured with the default
    // build only.
    if loopback && !cfg!(feature = "turbojpeg") {
        modes.push(true);
    }
    for passthrough in modes {
        if passthrough {
            // A camera-sized JPEG at quality 80, fed at 25 fps.
            guest.sh(
                "/host/usr/bin/ffmpeg -nostdin -loglevel error -f lavfi -i testsrc=size=640x480:rate=1 -frames:v 1 -q:v 4 /tmp/cam.jpg",
            );
            guest.sh(
                "/host/usr/bin/ffmpeg -nostdin -loglevel error -re -loop 1 -framerate 25 -i /tmp/cam.jpg -c:v copy -f v4l2 /dev/video3 >/tmp/ffmpeg.log 2>&1 &",
            );
            guest.sh("sleep 3");
        }
        for round in 1..=ROUNDS {
            for clients in [1, 10] {
                for server in servers(passthrough) {
                    let (r, sampling) = run(&mut guest, &server, clients);
                    let frames = r["frames_total"].as_f64().unwrap_or(0.0);
                    let cpu = r["server_cpu_s"].as_f64().unwrap_or(f64::NAN);
                    let bytes = r["bytes_total"].as_f64().unwrap_or(0.0);
                    println!(
                        "| {} | {clients} | {round} | {} | {:.2} | {:.1} | {sampling} | {} / {} |",
                        server.name,
                        r["fps_per_client_median"],
                        cpu * 1000.0 / frames.max(1.0),
                        bytes / frames.max(1.0) / 1024.0,
                        r["latency_ms_p50"],
                        r["latency_ms_p99"],
                    );
                }
            }
        }
    }
}
