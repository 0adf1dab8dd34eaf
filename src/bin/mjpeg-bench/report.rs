//! Aggregating client results into the figures a benchmark is judged by,
//! as a table or as one JSON object.

use crate::Args;
use crate::client::ClientResult;
use crate::procmon::ServerUsage;
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// How long after the start of a run its latency counts as settled.
const SETTLED: Duration = Duration::from_secs(2);

pub struct Report {
    url: String,
    clients: usize,
    duration_s: f64,
    connected: usize,
    failed: usize,
    dropped: usize,
    with_frames: usize,
    frames: u64,
    bytes: u64,
    corrupt: u64,
    fps_min: f64,
    fps_median: f64,
    fps_max: f64,
    ttff_median: Option<f64>,
    ttff_max: Option<f64>,
    latency_p50: Option<f64>,
    latency_p99: Option<f64>,
    /// p99 of the frames that arrived once the run was `SETTLED` old: the
    /// steady state, without the connection storm at the start.
    latency_p99_settled: Option<f64>,
    latency_max: Option<f64>,
    errors: BTreeMap<String, usize>,
    server: Option<ServerUsage>,
    client_cpu_s: f64,
}

impl Report {
    pub fn new(
        args: &Args,
        results: Vec<ClientResult>,
        elapsed: Duration,
        server: Option<ServerUsage>,
        client_cpu_s: f64,
        started_unix_s: f64,
    ) -> Report {
        let connected: Vec<&ClientResult> = results.iter().filter(|r| r.connected).collect();
        let mut fps: Vec<f64> = connected
            .iter()
            .map(|r| r.frames as f64 / r.window.as_secs_f64().max(1e-3))
            .collect();
        fps.sort_by(f64::total_cmp);
        let mut ttff: Vec<f64> = results.iter().filter_map(|r| r.ttff_ms).collect();
        ttff.sort_by(f64::total_cmp);
        let mut lat: Vec<f32> = results
            .iter()
            .flat_map(|r| r.latency_ms.iter().copied())
            .collect();
        lat.sort_by(f32::total_cmp);
        let settled_from = started_unix_s + SETTLED.as_secs_f64();
        let mut settled: Vec<f32> = results
            .iter()
            .flat_map(|r| r.received_at.iter().zip(&r.latency_ms))
            .filter(|&(&at, _)| at >= settled_from)
            .map(|(_, &ms)| ms)
            .collect();
        settled.sort_by(f32::total_cmp);
        let mut errors = BTreeMap::new();
        for e in results.iter().filter_map(|r| r.error.as_ref()) {
            *errors.entry(e.clone()).or_insert(0) += 1;
        }
        Report {
            url: args.url.clone(),
            clients: args.clients,
            duration_s: elapsed.as_secs_f64(),
            connected: connected.len(),
            failed: results.len() - connected.len(),
            dropped: results.iter().filter(|r| r.dropped).count(),
            with_frames: results.iter().filter(|r| r.frames > 0).count(),
            frames: results.iter().map(|r| r.frames).sum(),
            bytes: results.iter().map(|r| r.bytes).sum(),
            corrupt: results.iter().map(|r| r.corrupt).sum(),
            fps_min: fps.first().copied().unwrap_or(0.0),
            fps_median: percentile(&fps, 0.5).unwrap_or(0.0),
            fps_max: fps.last().copied().unwrap_or(0.0),
            ttff_median: percentile(&ttff, 0.5),
            ttff_max: ttff.last().copied(),
            latency_p50: percentile(&lat, 0.5).map(f64::from),
            latency_p99: percentile(&lat, 0.99).map(f64::from),
            latency_p99_settled: percentile(&settled, 0.99).map(f64::from),
            latency_max: lat.last().map(|&v| f64::from(v)),
            errors,
            server,
            client_cpu_s,
        }
    }

    fn frames_per_server_cpu_s(&self) -> Option<f64> {
        self.server
            .filter(|s| s.cpu_s > 0.0)
            .map(|s| self.frames as f64 / s.cpu_s)
    }

    pub fn to_json(&self) -> String {
        let v = json!({
            "url": self.url,
            "clients": self.clients,
            "duration_s": round(self.duration_s),
            "clients_connected": self.connected,
            "clients_failed": self.failed,
            "clients_dropped": self.dropped,
            "clients_with_frames": self.with_frames,
            "frames_total": self.frames,
            "bytes_total": self.bytes,
            "corrupt_parts": self.corrupt,
            "fps_aggregate": round(self.frames as f64 / self.duration_s.max(1e-3)),
            "fps_per_client_min": round(self.fps_min),
            "fps_per_client_median": round(self.fps_median),
            "fps_per_client_max": round(self.fps_max),
            "bytes_per_s": round(self.bytes as f64 / self.duration_s.max(1e-3)),
            "ttff_ms_median": self.ttff_median.map(round),
            "ttff_ms_max": self.ttff_max.map(round),
            "latency_ms_p50": self.latency_p50.map(round),
            "latency_ms_p99": self.latency_p99.map(round),
            "latency_ms_p99_settled": self.latency_p99_settled.map(round),
            "latency_ms_max": self.latency_max.map(round),
            "server_cpu_s": self.server.map(|s| round(s.cpu_s)),
            "server_rss_peak_kb": self.server.map(|s| s.rss_peak_kib),
            "frames_per_server_cpu_s": self.frames_per_server_cpu_s().map(round),
            "client_cpu_s": round(self.client_cpu_s),
            "errors": self.errors,
        });
        v.to_string()
    }

    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let d = self.duration_s.max(1e-3);
        let _ = writeln!(
            s,
            "{} — {} clients, {:.1} s",
            self.url, self.clients, self.duration_s
        );
        let rows = [
            (
                "clients connected / failed / dropped",
                format!("{} / {} / {}", self.connected, self.failed, self.dropped),
            ),
            (
                "frames received (corrupt)",
                format!("{} ({})", self.frames, self.corrupt),
            ),
            ("aggregate fps", format!("{:.1}", self.frames as f64 / d)),
            (
                "per-client fps min / median / max",
                format!(
                    "{:.1} / {:.1} / {:.1}",
                    self.fps_min, self.fps_median, self.fps_max
                ),
            ),
            (
                "throughput",
                format!("{:.1} Mbit/s", self.bytes as f64 * 8.0 / d / 1e6),
            ),
            (
                "time to first frame median / max",
                format!("{} / {} ms", opt(self.ttff_median), opt(self.ttff_max)),
            ),
            (
                "latency p50 / p99 / max",
                format!(
                    "{} / {} / {} ms",
                    opt(self.latency_p50),
                    opt(self.latency_p99),
                    opt(self.latency_max)
                ),
            ),
            (
                "latency p99 from 2 s on",
                format!("{} ms", opt(self.latency_p99_settled)),
            ),
            (
                "server CPU",
                self.server.map_or("- (give --pid)".into(), |u| {
                    format!("{:.2} s ({:.0}% of a core)", u.cpu_s, u.cpu_s / d * 100.0)
                }),
            ),
            (
                "frames per server CPU-second",
                opt(self.frames_per_server_cpu_s()),
            ),
            (
                "server peak RSS",
                self.server.map_or("-".into(), |u| {
                    format!("{:.1} MB", u.rss_peak_kib as f64 / 1024.0)
                }),
            ),
            ("client CPU", format!("{:.2} s", self.client_cpu_s)),
        ];
        for (k, v) in rows {
            let _ = writeln!(s, "  {k:<38} {v}");
        }
        for (e, n) in &self.errors {
            let _ = writeln!(s, "  error ×{n}: {e}");
        }
        s
    }
}

fn percentile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(i).copied()
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
