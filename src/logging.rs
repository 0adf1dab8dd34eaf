//! Logging: the subscriber setup (`RUST_LOG` filters, text or JSON lines on
//! stderr) and the per-stream summary logged once a minute.

use crate::hub::FrameHub;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;
use tracing::info;
use tracing_subscriber::EnvFilter;

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Without `RUST_LOG`: our own messages from `info` up; the NATS client's
/// from `warn` up (its connection events are logged by `crate::nats`).
const DEFAULT_FILTER: &str = "info,async_nats=warn";

/// Installs the global subscriber: filters from `RUST_LOG` (default `info`),
/// lines on stderr so stdout stays free for `listening on ...`.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // Colors only on a terminal: journald and log files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Logs each stream's activity since the previous summary.
pub struct Summary {
    at: Instant,
    last: Vec<Totals>,
}

#[derive(Clone, Copy, Default)]
struct Totals {
    captured: u64,
    delivered: u64,
    skipped: u64,
    dropped: u64,
    unchanged: u64,
}

impl Summary {
    pub fn new(hubs: &[Arc<FrameHub>]) -> Summary {
        Summary {
            at: Instant::now(),
            last: hubs.iter().map(|h| totals(h)).collect(),
        }
    }

    /// Logs one info line per stream: rates and counts since the last call.
    pub fn log(&mut self, hubs: &[Arc<FrameHub>]) {
        let secs = self.at.elapsed().as_secs_f64().max(0.001);
        self.at = Instant::now();
        for (hub, last) in hubs.iter().zip(self.last.iter_mut()) {
            let now = totals(hub);
            let d = |f: fn(&Totals) -> u64| f(&now).saturating_sub(f(last));
            let st = hub.status();
            let state = if st.paused {
                "paused"
            } else if st.online {
                "online"
            } else {
                "offline"
            };
            info!(
                stream = %hub.name(),
                state,
                fps = format_args!("{:.1}", d(|t| t.captured) as f64 / secs),
                clients = st.clients,
                delivered = d(|t| t.delivered),
                skipped = d(|t| t.skipped),
                dropped = d(|t| t.dropped),
                unchanged = d(|t| t.unchanged),
                "summary of the last {secs:.0} s"
            );
            *last = now;
        }
    }
}

fn totals(hub: &FrameHub) -> Totals {
    let s = hub.status();
    Totals {
        captured: s.frames_captured,
        delivered: s.frames_delivered,
        skipped: s.frames_skipped,
        dropped: s.frames_dropped,
        unchanged: s.frames_unchanged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameMeta;
    use std::sync::Mutex;

    /// Collects formatted log output.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn summary_counts_since_the_last_one() {
        let hub = FrameHub::new("cam", "pattern", "pattern");
        let hubs = vec![hub.clone()];
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            hub.publish(b"\xff\xd8\xff\xd9", FrameMeta::now(1, 1));
            let mut summary = Summary::new(&hubs);
            for _ in 0..3 {
                hub.publish(b"\xff\xd8\xff\xd9", FrameMeta::now(1, 1));
            }
            hub.stats().record_dropped();
            let mut client = hub.client();
            if let Some(f) = hub.latest() {
                client.sent(&f);
            }
            summary.log(&hubs);
            summary.log(&hubs);
        });
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("UTF-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("INFO"), "{text}");
        assert!(lines[0].contains("stream=cam"), "{text}");
        assert!(lines[0].contains("state=\"online\""), "{text}");
        assert!(lines[0].contains("clients=1"), "{text}");
        assert!(lines[0].contains("delivered=1"), "{text}");
        assert!(lines[0].contains("dropped=1"), "{text}");
        assert!(lines[1].contains("delivered=0"), "{text}");
        assert!(lines[1].contains("fps=0.0"), "{text}");
    }
}
