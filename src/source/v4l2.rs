//! V4L2 cameras (`v4l2:/dev/videoN[:FORMAT][:WxH][@FPS]`) and `mjpegd devices`.
//!
//! Unless a format is asked for, the camera's own MJPEG is preferred: those
//! frames are passed through
//! untouched (only the standard Huffman tables are inserted when a frame
//! lacks them, as UVC frames do), so serving costs no encoding at all.
//! Cameras without MJPEG deliver YUYV or NV12, which is encoded to JPEG on
//! worker threads, one per core, so that encoding frame n+1 overlaps
//! encoding and sending frame n; when all workers are busy the newest frame
//! waits and older ones are skipped, so latency never builds up.
//!
//! Capture talks to the driver through `dev` (single- and multi-planar
//! devices alike) and says what the driver actually delivers — format,
//! size, and the frame rate read back after asking — in the log and in
//! `/status`, since drivers may substitute any of them.
//!
//! Capture runs on its own thread and polls the device with a short timeout
//! so it notices shutdown promptly. A missing or unplugged camera is a
//! source error ("/dev/video0 not found"): the supervisor shows the
//! placeholder and retries, and capture resumes by itself when the camera
//! is back.

mod dev;
mod pixfmt;

use super::sink::JpegSink;
use super::spec::V4l2Spec;
use super::yuv::{RawFormat, RawImage, RawPicture};
use super::{SourceContext, SourceError, run_on_thread};
use crate::encode::Subsampling;
use crate::frame::{FrameMeta, owned_jpeg};
use crate::hub::FrameHub;
use crate::jpeg::{self, Scan};
use linuxvideo::format::{FrameIntervals, FrameSizes};
use linuxvideo::{BufType, CapabilityFlags, Device, Fract};
use pixfmt::Pipeline;
use rustix::event::{PollFd, PollFlags, Timespec};
use std::fmt::Write as _;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Size asked for when the spec names none; the driver picks the closest.
const DEFAULT_SIZE: (u16, u16) = (640, 480);
/// How often capture checks for shutdown while waiting for a frame.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// A camera that delivers nothing for this long is treated as failed.
const STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many encoder threads, however many cores there are.
const MAX_ENCODERS: usize = 8;
/// A rate in effect this far from the asked one is worth a word.
const FPS_TOLERANCE: f64 = 0.01;

/// Captures from the camera until cancelled or the camera fails.
pub async fn run(spec: V4l2Spec, ctx: &SourceContext) -> Result<(), SourceError> {
    let ctx = ctx.clone();
    let name = format!("v4l2-{}", ctx.hub.name());
    run_on_thread(name, move || {
        let device = spec.device.clone();
        // A bug in handling a quirky driver's answers must not take the
        // stream down for good.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| capture(&spec, &ctx)))
            .unwrap_or_else(|_| {
                Err(SourceError::new(format!(
                    "{device}: the driver answered something unexpected"
                )))
            })
    })
    .await
}

/// Turns an I/O error on the device into a reason a viewer understands.
fn device_error(dev: &str, what: &str, e: &io::Error) -> SourceError {
    let reason = match e.raw_os_error() {
        Some(libc::ENOENT) => format!("{dev} not found"),
        Some(libc::EACCES) | Some(libc::EPERM) => {
            format!("{dev}: permission denied (is the user in the 'video' group?)")
        }
        Some(libc::EBUSY) => format!("{dev} is busy (used by another program?)"),
        Some(libc::ENODEV) | Some(libc::ENXIO) => format!("{dev} was disconnected"),
        Some(libc::ENOTTY) => format!("{dev} is not a V4L2 device"),
        _ => format!("{dev}: {what}: {e}"),
    };
    SourceError::new(reason)
}

/// What capture tells about the rate: `25 fps (asked for 5)`.
fn describe_rate(asked: Option<f64>, actual: Option<f64>) -> (String, bool) {
    let show = |v: f64| format!("{}", (v * 100.0).round() / 100.0);
    match (asked, actual) {
        (Some(a), Some(b)) if (a - b).abs() > a * FPS_TOLERANCE => {
            (format!("{} fps (asked for {})", show(b), show(a)), true)
        }
        (_, Some(b)) => (format!("{} fps", show(b)), false),
        (Some(a), None) => (
            format!(
                "an unknown rate (asked for {}; the driver does not say)",
                show(a)
            ),
            true,
        ),
        (None, None) => ("the driver's rate".to_owned(), false),
    }
}

fn capture(spec: &V4l2Spec, ctx: &SourceContext) -> Result<(), SourceError> {
    let dev = spec.device.as_str();
    let mut device = dev::Device::open(dev).map_err(|e| device_error(dev, "cannot open", &e))?;
    let caps = device
        .caps()
        .map_err(|e| device_error(dev, "cannot query", &e))?;
    if !caps.capture && !caps.capture_mplane {
        return Err(SourceError::new(format!(
            "{dev} ({}) has no video capture (a metadata or output node? try the next /dev/video number)",
            caps.card
        )));
    }
    if !caps.streaming {
        return Err(SourceError::new(format!(
            "{dev} ({}) cannot stream (only read(2) capture, which mjpegd does not use)",
            caps.card
        )));
    }
    let offers: Vec<u32> = device.formats().iter().map(|f| f.fourcc).collect();
    let wanted = pixfmt::choose(&offers, spec.format)
        .map_err(|e| SourceError::new(format!("{dev} ({}) {e}", caps.card)))?;
    let (w, h) = spec.size.unwrap_or(DEFAULT_SIZE);
    let format = device
        .set_format(wanted, w.into(), h.into())
        .map_err(|e| device_error(dev, "cannot set the format", &e))?;
    // The driver may substitute another format or size; go with its choice.
    let pipeline = Pipeline::of(format.fourcc).ok_or_else(|| {
        SourceError::new(format!(
            "{dev} switched to unsupported format {}",
            pixfmt::name(format.fourcc)
        ))
    })?;
    let width = u16::try_from(format.width).unwrap_or(0);
    let height = u16::try_from(format.height).unwrap_or(0);
    let actual_fps = device.set_fps(spec.fps);
    let (rate, differs) = describe_rate(spec.fps, actual_fps);
    let what = format!(
        "{} {width}x{height} at {rate}{}",
        pixfmt::name(format.fourcc),
        if device.is_mplane() {
            ", multi-planar"
        } else {
            ""
        }
    );
    if differs {
        warn!(
            stream = ctx.hub.name(),
            "{dev} ({}): capturing {what}", caps.card
        );
    } else {
        info!(
            stream = ctx.hub.name(),
            "{dev} ({}): capturing {what}", caps.card
        );
    }
    ctx.hub.set_capture(Some(what));
    let planes = format.planes;
    let mut stream = device
        .start()
        .map_err(|e| device_error(dev, "cannot start streaming", &e))?;
    let mut sink = JpegSink::new(ctx.hub.clone(), format!("v4l2:{dev}"));
    let mut encoders = match pipeline {
        Pipeline::Encode(raw) => {
            let stride = format.strides[0] as usize;
            let geometry = Geometry {
                width: raw.encodable_width(width, stride),
                height,
                stride,
                format: raw,
                // NV12M: the chroma plane is separate and follows the
                // luma rows once copied out.
                luma_len: (planes > 1).then_some(stride * usize::from(height)),
            };
            if geometry.width != width {
                info!(
                    stream = ctx.hub.name(),
                    "{dev}: rows of {stride} bytes hold no colour for the last column of {width}; encoding {}x{height}",
                    geometry.width
                );
            }
            Some(EncoderPool::start(ctx, geometry)?)
        }
        Pipeline::Jpeg => None,
    };
    let mut last_frame = Instant::now();
    while !ctx.cancel.is_cancelled() {
        if !readable(stream.as_fd(), POLL_INTERVAL)
            .map_err(|e| device_error(dev, "cannot wait for frames", &e))?
        {
            if last_frame.elapsed() >= STALL_TIMEOUT {
                return Err(SourceError::new(format!(
                    "{dev} delivered no frame for {} s",
                    STALL_TIMEOUT.as_secs()
                )));
            }
            continue;
        }
        let got = stream
            .dequeue(|buf| {
                let captured = FrameMeta::now(width, height);
                if buf.error {
                    sink.reject("the driver flagged the frame as corrupt");
                    return;
                }
                match &mut encoders {
                    None => match buf.planes.first() {
                        Some(data) => pass_through(&mut sink, data),
                        None => sink.reject("the driver returned a frame without data"),
                    },
                    Some(pool) => pool.submit(&buf.planes, captured, &mut sink),
                }
            })
            .map_err(|e| device_error(dev, "capture failed", &e))?;
        if got {
            last_frame = Instant::now();
        } else if last_frame.elapsed() >= STALL_TIMEOUT {
            return Err(SourceError::new(format!(
                "{dev} delivered no frame for {} s",
                STALL_TIMEOUT.as_secs()
            )));
        }
    }
    Ok(())
}

/// Publishes a camera JPEG, cut at its end marker (drivers may report
/// more bytes than the image has).
fn pass_through(sink: &mut JpegSink, data: &[u8]) {
    match jpeg::scan(data) {
        Scan::Complete(info) => {
            sink.offer_scanned(data.get(..info.len).unwrap_or_default(), info);
        }
        Scan::Incomplete => sink.reject("truncated JPEG from the camera"),
        Scan::Invalid(e) => sink.reject(&format!("bad JPEG from the camera: {e}")),
    }
}

/// Waits up to `timeout` for the device to have a frame ready.
fn readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let timeout = Timespec::try_from(timeout).unwrap_or(Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    });
    let n = match rustix::event::poll(&mut fds, Some(&timeout)) {
        Ok(n) => n,
        Err(rustix::io::Errno::INTR) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    if fds[0]
        .revents()
        .intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL)
    {
        // An unplugged camera reports POLLERR; dequeue then gives the errno.
        return Ok(true);
    }
    Ok(n > 0)
}

/// The layout of the raw pictures the camera delivers.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    width: u16,
    height: u16,
    stride: usize,
    format: RawFormat,
    /// With a separate chroma plane: how much of the luma plane to keep.
    luma_len: Option<usize>,
}

/// A raw picture waiting to be encoded.
struct Job {
    seq: u64,
    data: Vec<u8>,
    meta: FrameMeta,
}

/// Encoder threads fed from the capture thread. Dropping the pool stops
/// them (the job channel closes) and waits for them.
struct EncoderPool {
    jobs: Option<SyncSender<Job>>,
    /// Buffers coming back from the workers, to be reused.
    spare: Receiver<Vec<u8>>,
    seq: u64,
    luma_len: Option<usize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl EncoderPool {
    fn start(ctx: &SourceContext, geometry: Geometry) -> Result<EncoderPool, SourceError> {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, MAX_ENCODERS);
        // One waiting job per worker at most: beyond that, frames are stale.
        let (jobs, rx) = mpsc::sync_channel::<Job>(n);
        let rx = Arc::new(Mutex::new(rx));
        let (spare_tx, spare) = mpsc::channel();
        // The newest sequence number published, so a frame that finishes
        // encoding after a newer one is dropped instead of going backwards.
        let published = Arc::new(Mutex::new(0u64));
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let rx = rx.clone();
            let spare_tx = spare_tx.clone();
            let published = published.clone();
            let hub = ctx.hub.clone();
            let (quality, subsampling) = (ctx.quality, ctx.subsampling);
            let handle = std::thread::Builder::new()
                .name(format!("jpeg-{}-{i}", ctx.hub.name()))
                .spawn(move || {
                    let encoding = (quality, subsampling);
                    encode_worker(&rx, &spare_tx, &published, &hub, geometry, encoding)
                })
                .map_err(|e| SourceError::new(format!("cannot start encoder thread: {e}")))?;
            threads.push(handle);
        }
        Ok(EncoderPool {
            jobs: Some(jobs),
            spare,
            seq: 0,
            luma_len: geometry.luma_len,
            threads,
        })
    }

    /// Copies the capture buffer out (the driver wants it back) and hands
    /// it to a free worker; skips the frame when every worker is busy.
    fn submit(&mut self, planes: &[&[u8]], meta: FrameMeta, sink: &mut JpegSink) {
        let Some(jobs) = &self.jobs else { return };
        let mut data = self.spare.try_recv().unwrap_or_default();
        data.clear();
        match (self.luma_len, planes) {
            (Some(n), [luma, chroma, ..]) => {
                data.extend_from_slice(&luma[..n.min(luma.len())]);
                data.extend_from_slice(chroma);
            }
            _ => {
                for p in planes {
                    data.extend_from_slice(p);
                }
            }
        }
        self.seq += 1;
        let job = Job {
            seq: self.seq,
            data,
            meta,
        };
        match jobs.try_send(job) {
            Ok(()) => {}
            // Encoding is slower than the camera: this frame is skipped.
            Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => sink.reject("the encoder threads stopped"),
        }
    }
}

impl Drop for EncoderPool {
    fn drop(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn encode_worker(
    rx: &Mutex<Receiver<Job>>,
    spare: &mpsc::Sender<Vec<u8>>,
    published: &Mutex<u64>,
    hub: &FrameHub,
    g: Geometry,
    (quality, subsampling): (u8, Subsampling),
) {
    let mut warned = false;
    // Pictures handed to published frames, to be reused once they are free.
    let mut lent: Vec<Arc<RawPicture>> = Vec::new();
    loop {
        // Holding the lock only while waiting for the next job; a poisoned
        // lock means another worker panicked, and the receiver is still fine.
        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return, // the pool was dropped
        };
        let encoded = RawImage::new(&job.data, g.width, g.height, g.stride, g.format)
            .and_then(|img| img.encode(quality, subsampling).map_err(|e| e.to_string()));
        let mut data = Some(job.data);
        match encoded {
            Ok(jpeg) => {
                let mut newest = published.lock().unwrap_or_else(|e| e.into_inner());
                if job.seq > *newest {
                    *newest = job.seq;
                    // The picture goes with the frame (renditions resize it)
                    // and comes back for reuse when the frame is gone.
                    let raw = data.take().and_then(|d| {
                        match RawPicture::new(d, g.width, g.height, g.stride, g.format) {
                            Ok(raw) => Some(Arc::new(raw)),
                            Err((d, _)) => {
                                data = Some(d);
                                None
                            }
                        }
                    });
                    if let Some(raw) = &raw {
                        lent.push(raw.clone());
                    }
                    hub.publish_with_raw(owned_jpeg(jpeg), job.meta, raw);
                }
                warned = false;
            }
            Err(e) => {
                hub.record_bad_frame(&format!("cannot encode a camera frame: {e}"));
                if !warned {
                    warn!(stream = hub.name(), "cannot encode a camera frame: {e}");
                    warned = true;
                }
            }
        }
        if let Some(data) = data {
            let _ = spare.send(data);
        }
        reclaim(&mut lent, spare);
    }
}

/// Raw pictures lent to frames at most, per worker: past that the oldest
/// is left to be freed with its frame (a client holding old frames).
const MAX_LENT: usize = 4;

/// Sends back for reuse the buffers of lent pictures whose frames are gone.
fn reclaim(lent: &mut Vec<Arc<RawPicture>>, spare: &mpsc::Sender<Vec<u8>>) {
    let mut kept = Vec::with_capacity(lent.len());
    for raw in lent.drain(..) {
        match Arc::try_unwrap(raw) {
            Ok(picture) => {
                let _ = spare.send(picture.into_data());
            }
            Err(raw) => kept.push(raw),
        }
    }
    if kept.len() > MAX_LENT {
        kept.remove(0);
    }
    *lent = kept;
}

/// Describes every V4L2 device: name, driver, and for capture devices each
/// format with its sizes and frame rates. For `mjpegd devices`.
pub fn describe_devices() -> String {
    let mut paths: Vec<String> = match std::fs::read_dir("/dev") {
        Ok(dir) => dir
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("video"))
            .map(|n| format!("/dev/{n}"))
            .collect(),
        Err(_) => Vec::new(),
    };
    // /dev/video2 before /dev/video10.
    paths.sort_by_key(|p| {
        let n: u32 = p
            .trim_start_matches("/dev/video")
            .parse()
            .unwrap_or(u32::MAX);
        (n, p.clone())
    });
    if paths.is_empty() {
        return "no V4L2 devices found (no /dev/video* exists; is a camera plugged in and its driver loaded?)\n".into();
    }
    let mut out = String::new();
    for path in paths {
        let text = std::panic::catch_unwind(|| describe(&path))
            .unwrap_or_else(|_| format!("{path}: the driver answered something unexpected\n"));
        out.push_str(&text);
    }
    out
}

fn describe(path: &str) -> String {
    let mut out = String::new();
    let device = match Device::open(path) {
        Ok(d) => d,
        Err(e) => return format!("{path}: {}\n", device_error(path, "cannot open", &e)),
    };
    let caps = match device.capabilities() {
        Ok(c) => c,
        Err(e) => return format!("{path}: {}\n", device_error(path, "cannot query", &e)),
    };
    let _ = writeln!(
        out,
        "{path}: {} ({}, {})",
        caps.card(),
        caps.driver(),
        caps.bus_info()
    );
    let flags = caps.device_capabilities();
    let buf_type = if flags.contains(CapabilityFlags::VIDEO_CAPTURE) {
        BufType::VIDEO_CAPTURE
    } else if flags.contains(CapabilityFlags::VIDEO_CAPTURE_MPLANE) {
        out.push_str("  multi-planar capture\n");
        BufType::VIDEO_CAPTURE_MPLANE
    } else {
        out.push_str("  no video capture (metadata or output node)\n");
        return out;
    };
    for format in device.formats(buf_type) {
        let Ok(format) = format else { continue };
        let pf = format.pixel_format();
        let code = u32::from_le_bytes(pf.as_fourcc());
        let usable = if Pipeline::of(code).is_some() {
            ""
        } else {
            "  (not supported by mjpegd)"
        };
        let _ = writeln!(
            out,
            "  {} {}{usable}",
            pixfmt::name(code),
            format.description()
        );
        match device.frame_sizes(pf) {
            Ok(FrameSizes::Discrete(sizes)) => {
                for s in sizes {
                    let rates = device
                        .frame_intervals(pf, s.width(), s.height())
                        .map(|i| rates(&i))
                        .unwrap_or_default();
                    let _ = writeln!(out, "    {}x{}{rates}", s.width(), s.height());
                }
            }
            Ok(FrameSizes::Stepwise(s) | FrameSizes::Continuous(s)) => {
                let _ = writeln!(
                    out,
                    "    {}x{} to {}x{}",
                    s.min_width(),
                    s.min_height(),
                    s.max_width(),
                    s.max_height()
                );
            }
            Err(e) => {
                let _ = writeln!(out, "    sizes unknown: {e}");
            }
        }
    }
    out
}

/// ` @ 30, 15 fps` for a list of frame intervals.
fn rates(intervals: &FrameIntervals) -> String {
    let fps = |f: &Fract| {
        if f.numerator() == 0 {
            return "?".to_owned();
        }
        let v = f64::from(f.denominator()) / f64::from(f.numerator());
        format!("{}", (v * 100.0).round() / 100.0)
    };
    match intervals {
        FrameIntervals::Discrete(list) => {
            let list: Vec<String> = list.iter().map(|i| fps(i.fract())).collect();
            format!(" @ {} fps", list.join(", "))
        }
        FrameIntervals::Stepwise(s) | FrameIntervals::Continuous(s) => {
            format!(" @ {} to {} fps", fps(s.max()), fps(s.min()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jpeg::testing::encode;
    use tokio_util::sync::CancellationToken;

    #[test]
    fn rates_in_effect_are_told() {
        assert_eq!(
            describe_rate(Some(5.0), Some(25.0)),
            ("25 fps (asked for 5)".to_owned(), true)
        );
        assert_eq!(
            describe_rate(Some(29.97), Some(29.97)),
            ("29.97 fps".to_owned(), false)
        );
        assert_eq!(
            describe_rate(None, Some(30.0)),
            ("30 fps".to_owned(), false)
        );
        assert!(describe_rate(Some(5.0), None).1);
    }

    #[test]
    fn errors_name_the_device() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(
            device_error("/dev/video9", "x", &e).0,
            "/dev/video9 not found"
        );
        let e = io::Error::from_raw_os_error(libc::ENODEV);
        assert_eq!(
            device_error("/dev/video9", "x", &e).0,
            "/dev/video9 was disconnected"
        );
    }

    fn hub_ctx() -> SourceContext {
        SourceContext {
            hub: FrameHub::new("cam", "v4l2:/dev/video0", "v4l2"),
            cancel: CancellationToken::new(),
            quality: 80,
            subsampling: Default::default(),
        }
    }

    /// UVC frames come without Huffman tables (and often with bytes after
    /// the image): they are published decodable and cut at EOI.
    #[test]
    fn camera_jpeg_without_huffman_tables_is_fixed() {
        let full = encode(64, 48, false, false);
        let no_dht = strip_dht(&full);
        assert!(!jpeg::has_huffman_tables(&no_dht));
        let mut padded = no_dht.clone();
        padded.extend_from_slice(&[0u8; 300]);
        let ctx = hub_ctx();
        let mut sink = JpegSink::new(ctx.hub.clone(), "v4l2:/dev/video0".into());
        pass_through(&mut sink, &padded);
        let frame = ctx.hub.latest().expect("published");
        let out = frame.jpeg();
        assert!(jpeg::has_huffman_tables(&out));
        assert_eq!(jpeg::check(&out).expect("complete").width, 64);
        // The standard tables are the ones jpeg-encoder uses, so the
        // picture decodes to exactly the original pixels.
        assert_eq!(decode(&out), decode(&full));
        pass_through(&mut sink, &no_dht[..no_dht.len() / 2]);
        assert_eq!(ctx.hub.status().frames_dropped, 1);
    }

    fn strip_dht(jpeg: &[u8]) -> Vec<u8> {
        // Walk the header segments up to SOS, leaving out DHT (FF C4).
        let mut out = jpeg[..2].to_vec();
        let mut i = 2;
        while i + 4 <= jpeg.len() {
            let marker = jpeg[i + 1];
            if marker == 0xDA {
                out.extend_from_slice(&jpeg[i..]);
                break;
            }
            let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
            if marker != 0xC4 {
                out.extend_from_slice(&jpeg[i..i + 2 + len]);
            }
            i += 2 + len;
        }
        out
    }

    fn decode(jpeg: &[u8]) -> Vec<u8> {
        use zune_jpeg::zune_core::bytestream::ZCursor;
        zune_jpeg::JpegDecoder::new(ZCursor::new(jpeg))
            .decode()
            .expect("decodes")
    }

    #[test]
    fn encoder_pool_publishes_raw_frames() {
        use crate::source::yuv::tests::{test_picture, to_yuyv};
        let (w, h) = (64usize, 48usize);
        let raw = to_yuyv(&test_picture(w, h), w, h, w * 2);
        let ctx = hub_ctx();
        let mut sink = JpegSink::new(ctx.hub.clone(), "test".into());
        let geometry = Geometry {
            width: w as u16,
            height: h as u16,
            stride: w * 2,
            format: RawFormat::Yuyv,
            luma_len: None,
        };
        let mut pool = EncoderPool::start(&ctx, geometry).expect("threads");
        for _ in 0..3 {
            pool.submit(&[&raw], FrameMeta::now(w as u16, h as u16), &mut sink);
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(pool); // waits for the workers
        let st = ctx.hub.status();
        assert!(st.frames_captured >= 1, "{st:?}");
        assert_eq!(st.frames_dropped, 0);
        let frame = ctx.hub.latest().expect("published");
        assert_eq!(jpeg::check(&frame.jpeg()).expect("valid").width, 64);
    }

    #[tokio::test]
    async fn missing_device_is_a_clear_error() {
        let ctx = hub_ctx();
        let spec = V4l2Spec::parse("/dev/video99").expect("valid");
        let err = run(spec, &ctx).await.expect_err("no such camera");
        assert_eq!(err.0, "/dev/video99 not found");
    }
}
