//! V4L2 capture against a real kernel driver: vivid in a Debian kernel
//! under QEMU (see `guest`). One boot serves every case, in order: YUYV,
//! NV12 (each with a rendition made from the camera picture), a multi-planar device, an odd width on an input with a fixed frame
//! rate, and unplugging and replugging the camera under a connected viewer.
//! Camera MJPEG comes from v4l2loopback (built for the guest kernel by
//! DKMS) fed JPEG files by ffmpeg, so passthrough runs against a driver too.
//!
//! Without QEMU, ffmpeg, a Debian kernel, static busybox or v4l2loopback
//! the test fails, naming what is missing (`.ci/run` installs them all).

mod common;
mod guest;

use common::{StreamClient, require};
use guest::Guest;
use serde_json::Value;
use std::time::Duration;

/// Three vivid instances, one capture node each: video0 single-planar with
/// a webcam input, video1 the same but multi-planar only, video2 with a TV
/// input first (a fixed 25 fps, PAL) and its scaler on, so odd sizes exist.
const VIVID: &str = "n_devs=3 node_types=0x1,0x1,0x1 multiplanar=1,2,1 \
                     input_types=0xe4,0xe4,0xe5 ccs_cap_mode=-1,-1,7";

/// A loopback device as /dev/video3 that announces capture only while a
/// writer feeds it, as a camera would.
const LOOPBACK: &str = "video_nr=3 exclusive_caps=1 card_label=loopcam";

const WAIT: Duration = Duration::from_secs(60);

/// The guest, with v4l2loopback.
fn boot() -> Guest {
    require("qemu-system-x86_64");
    require("ffmpeg");
    let req = guest::requirements().unwrap_or_else(|e| panic!("{e} (.ci/run installs them)"));
    assert!(
        guest::has_module(&req, "v4l2loopback"),
        "no v4l2loopback module for the guest kernel (package v4l2loopback-dkms)"
    );
    let drivers = [("vivid", VIVID), ("v4l2loopback", LOOPBACK)];
    Guest::boot(&req, &drivers).unwrap_or_else(|e| panic!("guest: {e}"))
}

/// Reads `n` frames from a new `/stream` connection, decoding each;
/// returns their sizes.
async fn frames(guest: &mut Guest, n: usize) -> Vec<(usize, usize)> {
    let mut client = StreamClient::connect(guest.http, "/stream").await;
    let mut sizes = Vec::new();
    for _ in 0..n {
        let f = client
            .next_frame_within(WAIT)
            .await
            .expect("a frame within a minute");
        sizes.push(common::decode(&f.jpeg));
    }
    sizes
}

/// One JPEG from a new `/stream` connection.
async fn one_jpeg(guest: &mut Guest) -> Vec<u8> {
    let mut client = StreamClient::connect(guest.http, "/stream").await;
    let f = client.next_frame_within(WAIT).await.expect("a frame");
    f.jpeg
}

/// The luma component's sampling factors (horizontal, vertical) in a
/// baseline JPEG's frame header: (2, 2) is 4:2:0, (2, 1) is 4:2:2.
fn luma_sampling(jpeg: &[u8]) -> (u8, u8) {
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xff, 0xc0])
        .expect("a baseline frame header");
    // Marker (2), length (2), precision, height (2), width (2), components,
    // then the first component: id, sampling (h << 4 | v), table.
    let f = jpeg[sof + 11];
    (f >> 4, f & 15)
}

fn capture(st: &Value) -> String {
    st["capture"].as_str().unwrap_or_default().to_owned()
}

/// Starts mjpegd on `spec`, waits until it is online and returns its status.
fn serve(guest: &mut Guest, spec: &str) -> Value {
    guest.start_mjpegd(&format!("--source {spec}"));
    guest.status_until(WAIT, &format!("{spec} online"), |st| {
        st["online"] == Value::Bool(true)
    })
}

/// A 320-wide rendition of the running raw camera stream: frames of the
/// asked size, made from the camera picture (no JPEG decoded).
async fn raw_rendition(guest: &mut Guest, format: &str) {
    let mut client = StreamClient::connect(guest.http, "/stream?width=320").await;
    for _ in 0..3 {
        let f = client
            .next_frame_within(WAIT)
            .await
            .expect("a rendition frame");
        assert_eq!(common::decode(&f.jpeg), (320, 240), "{format}");
    }
    let st = guest.status_until(WAIT, "the rendition in /status", |st| {
        st["renditions"][0]["frames_encoded"].as_u64() >= Some(3)
    });
    let r = &st["renditions"][0];
    assert_eq!(r["from"], "raw", "{format}: {st}");
    assert_eq!(r["frames_decoded"], 0, "{format}: {st}");
    assert!(r["frames_from_raw"].as_u64() >= Some(3), "{format}: {st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vivid_capture() {
    let mut guest = boot();
    let devices = guest.sh(&format!("/host{} devices", env!("CARGO_BIN_EXE_mjpegd")));
    assert!(
        devices.contains("/dev/video1") && devices.contains("multi-planar"),
        "{devices}"
    );
    assert!(
        devices.contains("NV12") && !devices.contains("\\u{"),
        "{devices}"
    );

    // YUYV, encoded here: 4:2:0 by default, 4:2:2 when asked.
    let st = serve(&mut guest, "v4l2:/dev/video0:YUYV:640x480@10");
    assert!(capture(&st).starts_with("YUYV 640x480 at 10 fps"), "{st}");
    assert!(frames(&mut guest, 3).await.iter().all(|s| *s == (640, 480)));
    assert_eq!(luma_sampling(&one_jpeg(&mut guest).await), (2, 2));
    raw_rendition(&mut guest, "YUYV").await;
    guest.stop_mjpegd();
    serve(
        &mut guest,
        "v4l2:/dev/video0:YUYV:640x480@10 --subsampling 4:2:2",
    );
    assert_eq!(luma_sampling(&one_jpeg(&mut guest).await), (2, 1));
    guest.stop_mjpegd();

    // NV12.
    let st = serve(&mut guest, "v4l2:/dev/video0:NV12:640x480@10");
    assert!(capture(&st).starts_with("NV12 640x480"), "{st}");
    assert!(frames(&mut guest, 3).await.iter().all(|s| *s == (640, 480)));
    raw_rendition(&mut guest, "NV12").await;
    guest.stop_mjpegd();

    // A multi-planar-only device, with NV12 in one buffer and in two.
    for format in ["YUYV", "NV12", "NV12M"] {
        let st = serve(&mut guest, &format!("v4l2:/dev/video1:{format}:640x480@10"));
        assert!(capture(&st).contains("multi-planar"), "{st}");
        if format == "NV12M" {
            assert!(capture(&st).starts_with("NM12 640x480"), "{st}");
        }
        assert!(frames(&mut guest, 3).await.iter().all(|s| *s == (640, 480)));
        guest.stop_mjpegd();
    }

    // An odd width on the TV input, whose rate is fixed: the even part is
    // encoded, and the 25 fps in effect is said instead of the asked 5.
    let st = serve(&mut guest, "v4l2:/dev/video2:YUYV:641x480@5");
    let what = capture(&st);
    assert!(
        what.starts_with("YUYV 641x480 at 25 fps (asked for 5)"),
        "{st}"
    );
    assert!(frames(&mut guest, 3).await.iter().all(|s| *s == (640, 480)));
    let st = guest.status_until(WAIT, "the fixed rate measured", |st| {
        st["captured_fps"].as_f64().unwrap_or(0.0) > 7.5
    });
    assert_eq!(st["online"], true, "{st}");
    let log = guest.stop_mjpegd();
    assert!(log.contains("asked for 5"), "{log}");

    // A format the device lacks is refused with the list it has.
    guest.start_mjpegd("--source v4l2:/dev/video0:MJPEG");
    let st = guest.status_until(WAIT, "MJPEG refused", |st| {
        st["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("MJPEG")
    });
    let e = st["last_error"].as_str().unwrap_or_default();
    assert!(e.contains("does not offer MJPEG (it has YUYV"), "{st}");
    guest.stop_mjpegd();

    unplug_and_replug(&mut guest).await;
    mjpeg_passthrough(&mut guest).await;
}

/// Camera JPEGs reach viewers byte for byte.
async fn mjpeg_passthrough(guest: &mut Guest) {
    let picture = guest.host_dir().join("cam.jpg");
    let made = std::process::Command::new(require("ffmpeg"))
        .args(["-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", "testsrc=size=640x480:rate=1", "-frames:v", "1"])
        .arg(&picture)
        .status()
        .expect("ffmpeg runs");
    assert!(made.success());
    let original = std::fs::read(&picture).expect("the picture");
    guest.sh(&format!(
        "/host/usr/bin/ffmpeg -nostdin -loglevel error -re -loop 1 -framerate 10 -i /host{} \
         -c:v copy -f v4l2 /dev/video3 >/tmp/ffmpeg.log 2>&1 & echo $! >/tmp/ffmpeg.pid",
        picture.display()
    ));
    let st = serve(guest, "v4l2:/dev/video3:MJPEG");
    assert!(capture(&st).starts_with("MJPG 640x480"), "{st}");
    let mut client = StreamClient::connect(guest.http, "/stream").await;
    for _ in 0..3 {
        let f = client.next_frame_within(WAIT).await.expect("a frame");
        assert!(f.jpeg == original, "the camera's JPEG was changed");
    }
    guest.stop_mjpegd();
    guest.sh("kill $(cat /tmp/ffmpeg.pid); cat /tmp/ffmpeg.log");
}

/// Unbinding vivid.0 is the unplug: the viewer keeps its connection, sees
/// the NO SIGNAL picture, and gets the camera again after the bind.
async fn unplug_and_replug(guest: &mut Guest) {
    serve(guest, "v4l2:/dev/video0:YUYV:640x480@10");
    let mut client = StreamClient::connect(guest.http, "/stream").await;
    let first = client.next_frame_within(WAIT).await.expect("a frame");
    assert_eq!(common::decode(&first.jpeg), (640, 480));
    guest.sh("echo vivid.0 > /sys/bus/platform/drivers/vivid/unbind");
    let st = guest.status_until(WAIT, "offline after the unplug", |st| st["online"] == false);
    let why = st["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains("/dev/video0"), "{st}");
    // The placeholder reaches the connected viewer.
    let mut placeholder = false;
    for _ in 0..20 {
        let Some(f) = client.next_frame_within(Duration::from_secs(20)).await else {
            break;
        };
        common::decode(&f.jpeg);
        if guest.status(WAIT)["online"] == false {
            placeholder = true;
            break;
        }
    }
    assert!(placeholder, "no NO SIGNAL frame while unplugged");
    guest.sh("echo vivid.0 > /sys/bus/platform/drivers/vivid/bind");
    guest.status_until(WAIT, "online after the replug", |st| st["online"] == true);
    // The same connection shows the camera again.
    let mut live = 0;
    for _ in 0..50 {
        let f = client.next_frame_within(WAIT).await.expect("a frame");
        if common::decode(&f.jpeg) == (640, 480) && guest.status(WAIT)["online"] == true {
            live += 1;
            if live == 3 {
                break;
            }
        }
    }
    assert_eq!(
        live, 3,
        "the camera did not come back on the same connection"
    );
    guest.stop_mjpegd();
}
