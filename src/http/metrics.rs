//! `/metrics`: Prometheus text exposition format (version 0.0.4).
//!
//! Written by hand rather than through a metrics library: every number already
//! lives in the hubs as an atomic counter (the send path must stay lock-free),
//! so a registry would only mirror them. The format is a few line shapes:
//! `# HELP`, `# TYPE`, and `name{label="value"} number`.

use super::HttpContext;
use super::response::Response;
use crate::history::HistoryStats;
use crate::hub::{FrameHub, StreamStatus};
use crate::rendition::RenditionStatus;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The exposition format's media type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn respond(ctx: &HttpContext) -> Response {
    Response::new(200, CONTENT_TYPE, render(ctx)).no_cache()
}

/// The whole exposition.
pub fn render(ctx: &HttpContext) -> String {
    let mut out = String::with_capacity(4096);
    let streams: Vec<(&Arc<FrameHub>, StreamStatus)> =
        ctx.streams.iter().map(|h| (h, h.status())).collect();

    type Field = fn(&StreamStatus) -> f64;
    let per_stream: [(&str, &str, &str, Field); 11] = [
        (
            "mjpegd_frames_captured_total",
            "counter",
            "Frames the source produced.",
            |s| s.frames_captured as f64,
        ),
        (
            "mjpegd_frames_delivered_total",
            "counter",
            "Frames written whole to stream clients.",
            |s| s.frames_delivered as f64,
        ),
        (
            "mjpegd_frames_skipped_total",
            "counter",
            "Frames a slow or rate-capped client did not get because a newer one replaced them.",
            |s| s.frames_skipped as f64,
        ),
        (
            "mjpegd_frames_dropped_total",
            "counter",
            "Frames from the source that were not complete JPEGs.",
            |s| s.frames_dropped as f64,
        ),
        (
            "mjpegd_frames_unchanged_total",
            "counter",
            "Frames identical to the previous one, not sent (--drop-same-frames).",
            |s| s.frames_unchanged as f64,
        ),
        (
            "mjpegd_frames_published_total",
            "counter",
            "Frames sent to a NATS bus (publish).",
            |s| s.frames_published as f64,
        ),
        (
            "mjpegd_frames_replaced_total",
            "counter",
            "Frames from a nats:// source replaced by newer ones before the stream took them.",
            |s| s.frames_replaced as f64,
        ),
        (
            "mjpegd_bytes_out_total",
            "counter",
            "Bytes sent to clients of the stream (stream parts, snapshots, heads).",
            |s| s.bytes_out as f64,
        ),
        (
            "mjpegd_clients",
            "gauge",
            "Connected stream clients.",
            |s| s.clients as f64,
        ),
        (
            "mjpegd_source_online",
            "gauge",
            "1 while the source delivers frames, 0 while it is down.",
            |s| f64::from(u8::from(s.online)),
        ),
        (
            "mjpegd_source_paused",
            "gauge",
            "1 while capture is paused for lack of viewers (--capture-on-demand).",
            |s| f64::from(u8::from(s.paused)),
        ),
    ];
    for (name, kind, help, field) in per_stream {
        family(&mut out, name, kind, help);
        for (_, s) in &streams {
            sample(&mut out, name, &[("stream", &s.name)], field(s));
        }
    }

    history(&mut out, &streams);

    let name = "mjpegd_capture_to_send_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Time from capture of a frame to the end of its write to a stream client.",
    );
    for (hub, s) in &streams {
        let h = hub.stats().latency();
        for (le, count) in &h.buckets {
            let le = if le.is_infinite() {
                "+Inf".to_owned()
            } else {
                le.to_string()
            };
            sample(
                &mut out,
                &format!("{name}_bucket"),
                &[("stream", &s.name), ("le", &le)],
                *count as f64,
            );
        }
        sample(
            &mut out,
            &format!("{name}_sum"),
            &[("stream", &s.name)],
            h.sum_seconds,
        );
        sample(
            &mut out,
            &format!("{name}_count"),
            &[("stream", &s.name)],
            h.count as f64,
        );
    }

    renditions(&mut out, ctx);

    family(
        &mut out,
        "mjpegd_build_info",
        "gauge",
        "Always 1; the version and the JPEG encoder as labels.",
    );
    sample(
        &mut out,
        "mjpegd_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("encoder", crate::encode::BACKEND),
        ],
        1.0,
    );
    let uptime = ctx.started.elapsed().as_secs_f64();
    family(
        &mut out,
        "mjpegd_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
    );
    sample(&mut out, "mjpegd_uptime_seconds", &[], round3(uptime));

    let p = process_stats();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let process: [(&str, &str, &str, Option<f64>); 5] = [
        (
            "process_open_fds",
            "gauge",
            "Open file descriptors (sockets included).",
            p.open_fds,
        ),
        (
            "process_max_fds",
            "gauge",
            "Limit on open file descriptors.",
            p.max_fds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory in bytes.",
            p.rss_bytes,
        ),
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time in seconds.",
            p.cpu_seconds,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process in seconds since the Unix epoch.",
            // Without /proc, the server's own start is the next best thing.
            Some(p.start_time.unwrap_or(now - uptime)),
        ),
    ];
    for (name, kind, help, value) in process {
        if let Some(v) = value {
            family(&mut out, name, kind, help);
            sample(&mut out, name, &[], v);
        }
    }
    if let Some(files) = frame_files() {
        let held: [(&str, &str, f64); 2] = [
            (
                "mjpegd_frame_files_bytes",
                "Memory of the in-memory files (memfd) that hold frames being sent with sendfile: \
                 the newest frame of streams with several clients and frames slow clients are \
                 still being sent. Shared memory, which process_resident_memory_bytes does not \
                 count.",
                files.bytes,
            ),
            (
                "mjpegd_frame_files",
                "In-memory frame files (memfd) open.",
                files.count,
            ),
        ];
        for (name, help, value) in held {
            family(&mut out, name, "gauge", help);
            sample(&mut out, name, &[], value);
        }
    }
    out
}

/// The history of each stream that keeps one (`--history`).
fn history(out: &mut String, streams: &[(&Arc<FrameHub>, StreamStatus)]) {
    type Field = fn(&HistoryStats) -> f64;
    let fields: [(&str, &str, Field); 3] = [
        (
            "mjpegd_history_seconds",
            "Time between the oldest and the newest frame the stream's history holds.",
            |h| h.span_s,
        ),
        (
            "mjpegd_history_frames",
            "Frames the stream's history holds.",
            |h| h.frames as f64,
        ),
        (
            "mjpegd_history_bytes",
            "Bytes of the frames the stream's history holds.",
            |h| h.bytes as f64,
        ),
    ];
    for (name, help, field) in fields {
        let mut held = streams
            .iter()
            .filter_map(|(_, s)| Some((&s.name, s.history.as_ref()?)))
            .peekable();
        if held.peek().is_none() {
            return;
        }
        family(out, name, "gauge", help);
        for (stream, h) in held {
            sample(out, name, &[("stream", stream)], field(h));
        }
    }
}

/// Every live rendition's series, labelled by stream and rendition, and
/// each stream's totals of variant frames encoded and source frames decoded.
fn renditions(out: &mut String, ctx: &HttpContext) {
    let mut live = Vec::new();
    let mut totals = Vec::new();
    for (i, hub) in ctx.streams.iter().enumerate() {
        if let (Some(r), _) = ctx.renditions_at(i) {
            totals.push((hub.name(), r.frames_encoded(), r.source_decodes()));
            live.extend(r.status().into_iter().map(|s| (hub.name(), s)));
        }
    }
    let name = "mjpegd_renditions_frames_encoded_total";
    family(
        out,
        name,
        "counter",
        "Variant frames encoded for the stream since start, all renditions.",
    );
    for (stream, total, _) in &totals {
        sample(out, name, &[("stream", stream)], *total as f64);
    }
    let name = "mjpegd_renditions_source_decodes_total";
    family(
        out,
        name,
        "counter",
        "Source frames decoded for the stream's renditions (one per source frame, shared by all of them).",
    );
    for (stream, _, decodes) in &totals {
        sample(out, name, &[("stream", stream)], *decodes as f64);
    }
    type Field = fn(&RenditionStatus) -> f64;
    let per_rendition: [(&str, &str, &str, Field); 5] = [
        (
            "mjpegd_rendition_clients",
            "gauge",
            "Clients of a live rendition.",
            |s| s.clients as f64,
        ),
        (
            "mjpegd_rendition_frames_encoded_total",
            "counter",
            "Frames encoded for a rendition (one per source frame at most).",
            |s| s.frames_encoded as f64,
        ),
        (
            "mjpegd_rendition_frames_skipped_total",
            "counter",
            "Source frames a rendition did not encode (its encoder was busy, or no client wanted that many).",
            |s| s.frames_skipped as f64,
        ),
        (
            "mjpegd_rendition_encode_seconds_total",
            "counter",
            "Time spent decoding, scaling and encoding a rendition's frames.",
            |s| s.encode_seconds,
        ),
        (
            "mjpegd_rendition_width",
            "gauge",
            "Width of a rendition's frames (its height and quality are gauges too).",
            |s| f64::from(s.width),
        ),
    ];
    let dims: [(&str, Field); 2] = [
        ("mjpegd_rendition_height", |s| f64::from(s.height)),
        ("mjpegd_rendition_quality", |s| f64::from(s.quality)),
    ];
    for (name, kind, help, field) in per_rendition {
        family(out, name, kind, help);
        for (stream, s) in &live {
            sample(
                out,
                name,
                &[("stream", stream), ("rendition", &s.name)],
                field(s),
            );
        }
    }
    for (name, field) in dims {
        family(out, name, "gauge", "See mjpegd_rendition_width.");
        for (stream, s) in &live {
            sample(
                out,
                name,
                &[("stream", stream), ("rendition", &s.name)],
                field(s),
            );
        }
    }
}

/// The memfds this process holds, by their pages.
struct FrameFiles {
    count: f64,
    bytes: f64,
}

/// Sums the memory files among this process's descriptors (each file once,
/// however many descriptors it has). Their pages are never mapped, so
/// neither VmRSS nor RssShmem sees them, yet they are memory the server
/// holds: a frame stays alive while a slow client is still sent it.
fn frame_files() -> Option<FrameFiles> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut files = FrameFiles {
        count: 0.0,
        bytes: 0.0,
    };
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let is_memfd = std::fs::read_link(entry.path()).is_ok_and(|target| {
            target
                .as_os_str()
                .as_encoded_bytes()
                .starts_with(b"/memfd:")
        });
        // The descriptor may be closed between the two calls: skip it then.
        if let (true, Ok(meta)) = (is_memfd, std::fs::metadata(entry.path()))
            && seen.insert((meta.dev(), meta.ino()))
        {
            files.count += 1.0;
            files.bytes += (meta.blocks() * 512) as f64;
        }
    }
    Some(files)
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_label(out, v);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values escape backslash, double quote and line feed.
fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// This process's numbers from /proc (Linux); `None` where unavailable.
#[derive(Default)]
struct ProcessStats {
    open_fds: Option<f64>,
    max_fds: Option<f64>,
    rss_bytes: Option<f64>,
    cpu_seconds: Option<f64>,
    start_time: Option<f64>,
}

fn process_stats() -> ProcessStats {
    let (page, ticks) = (
        rustix::param::page_size(),
        rustix::param::clock_ticks_per_second(),
    );
    let mut p = ProcessStats {
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as f64),
        ..ProcessStats::default()
    };
    p.max_fds = Some(crate::rlimit::fd_limit() as f64);
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
        && let Some(pages) = statm
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<f64>().ok())
        && page > 0
    {
        p.rss_bytes = Some(pages * page as f64);
    }
    if ticks > 0
        && let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        // The command name may contain spaces and parentheses: fields are
        // counted after its closing parenthesis (field 3 is `state`).
        && let Some((_, rest)) = stat.rsplit_once(')')
    {
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let ticks = ticks as f64;
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            p.cpu_seconds = Some((utime + stime) / ticks);
        }
        if let (Some(start), Some(boot)) = (field(22), boot_time()) {
            p.start_time = Some(boot + start / ticks);
        }
    }
    p
}

/// System boot time in seconds since the epoch (`btime` in /proc/stat).
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(&mut out, "m", &[("stream", "a\"b\\c\nd")], 1.5);
        assert_eq!(out, "m{stream=\"a\\\"b\\\\c\\nd\"} 1.5\n");
    }

    #[test]
    fn frame_files_are_counted_by_their_pages() {
        let part = crate::memfd::PartFile::create(&[&vec![7u8; 300_000]]).expect("memfd");
        let held = frame_files().expect("/proc");
        drop(part);
        // Other tests create and drop files meanwhile: at least ours counts.
        assert!(held.count >= 1.0);
        assert!(held.bytes >= 300_000.0, "{}", held.bytes);
    }

    #[test]
    fn process_stats_are_read_on_linux() {
        let p = process_stats();
        assert!(p.open_fds.is_some_and(|n| n >= 3.0));
        assert!(p.rss_bytes.is_some_and(|n| n > 1e5));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        let start = p.start_time.expect("start time");
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "{start} vs {now}"
        );
    }
}
