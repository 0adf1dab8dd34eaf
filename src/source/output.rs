//! A command's standard error, logged without flooding the log.
//!
//! `exec:` commands explain their failures on standard error, so it is
//! logged, line by line, prefixed with the stream name and scrubbed of the
//! spec's secrets (ffmpeg repeats the URL it failed to open, password and
//! all). A command can also write errors in a tight loop (`yes error >&2`
//! wrote hundreds of megabytes of log in seconds), so lines are rate-limited
//! like bad frames: a burst of [`BURST`] lines, then [`RATE`] a second; the
//! lines left out are counted and summed up in one line ("N more lines")
//! when the flood ebbs, every [`SUMMARY_EVERY`] while it lasts, and at the
//! end. While lines are being left out the pipe is read in pauses, so a
//! flooding command is slowed down instead of keeping a core busy.

use super::Secrets;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Lines logged at once before the rate limit applies.
const BURST: f64 = 8.0;
/// Lines logged per second in the long run.
const RATE: f64 = 2.0;
/// How often a flood that does not end is summed up.
const SUMMARY_EVERY: Duration = Duration::from_secs(5);
/// Pause between reads while lines are left out.
const FLOOD_PAUSE: Duration = Duration::from_millis(10);
/// Longest line logged; the rest is cut off.
const MAX_LOG_LINE: usize = 1000;
/// Bytes read from the pipe at a time.
const READ_CHUNK: usize = 64 << 10;

/// Logs the command's standard error line by line (lines end at `\n` or at
/// `\r`, which progress output uses). Returns the last non-empty line,
/// scrubbed, which explains most failures.
///
/// Once `stopping` is cancelled (we stopped the command: no viewers, or
/// shutdown), what it says while dying (broken pipe, "received signal 15")
/// is expected and logged at debug level only.
pub async fn log_stderr<R>(
    mut stderr: R,
    stream: String,
    secrets: &Secrets,
    stopping: CancellationToken,
) -> Option<String>
where
    R: AsyncRead + Unpin,
{
    let mut log = LineLog {
        stream,
        secrets,
        limit: Limiter::new(Instant::now()),
        stopping,
    };
    let mut buf = vec![0u8; READ_CHUNK];
    let mut line: Vec<u8> = Vec::new();
    // The last non-empty line, kept as bytes: turning every line of a flood
    // into text would cost more than reading it.
    let mut last: Vec<u8> = Vec::new();
    loop {
        let n = match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = buf.get(..n).unwrap_or_default();
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            take(&mut line, &chunk[..end]);
            log.line(&mut line, &mut last);
            chunk = &chunk[end + 1..];
        }
        take(&mut line, chunk);
        if log.limit.flooding() {
            tokio::time::sleep(FLOOD_PAUSE).await;
        }
    }
    log.line(&mut line, &mut last);
    log.finish();
    let last = clean(&last);
    (!last.is_empty()).then(|| secrets.scrub(&last))
}

/// Appends to a line, up to `MAX_LOG_LINE` bytes.
fn take(line: &mut Vec<u8>, bytes: &[u8]) {
    let room = MAX_LOG_LINE.saturating_sub(line.len());
    line.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// The line as text to log: trimmed, control characters escaped (so a
/// command cannot forge log lines or colour the terminal).
fn clean(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .trim()
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Where the lines go.
struct LineLog<'a> {
    stream: String,
    secrets: &'a Secrets,
    limit: Limiter,
    stopping: CancellationToken,
}

impl LineLog<'_> {
    /// One complete line (emptied afterwards).
    fn line(&mut self, line: &mut Vec<u8>, last: &mut Vec<u8>) {
        if line.iter().all(u8::is_ascii_whitespace) {
            line.clear();
            return;
        }
        std::mem::swap(line, last);
        line.clear();
        let now = Instant::now();
        if let Some(summary) = self.limit.summary_due(now) {
            self.summary(summary);
        }
        if self.stopping.is_cancelled() {
            let text = self.secrets.scrub(&clean(last));
            debug!(stream = %self.stream, "command (stopping): {text}");
        } else if self.limit.allow(now) {
            let text = self.secrets.scrub(&clean(last));
            if text.to_ascii_lowercase().contains("error") {
                warn!(stream = %self.stream, "command: {text}");
            } else {
                info!(stream = %self.stream, "command: {text}");
            }
        }
    }

    fn finish(&mut self) {
        if let Some(n) = self.limit.take_left_out() {
            self.summary(n);
        }
    }

    fn summary(&self, n: u64) {
        let s = if n == 1 { "" } else { "s" };
        warn!(
            stream = %self.stream,
            "command: {n} more line{s} of output not logged (more than {RATE} a second)"
        );
    }
}

/// A token bucket for log lines that counts what it holds back.
#[derive(Debug)]
struct Limiter {
    tokens: f64,
    at: Instant,
    /// Lines held back since the last summary.
    left_out: u64,
    /// When the current flood was last summed up (or began).
    summarised_at: Option<Instant>,
}

impl Limiter {
    fn new(now: Instant) -> Limiter {
        Limiter {
            tokens: BURST,
            at: now,
            left_out: 0,
            summarised_at: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * RATE).min(BURST);
        self.at = now;
    }

    /// Whether a line at `now` may be logged; counts it if not.
    fn allow(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.left_out += 1;
            self.summarised_at.get_or_insert(now);
            false
        }
    }

    /// Lines held back to report before the line at `now`: when the flood
    /// has ebbed (a line may be logged again) or has lasted `SUMMARY_EVERY`.
    fn summary_due(&mut self, now: Instant) -> Option<u64> {
        let since = self.summarised_at?;
        self.refill(now);
        if self.tokens >= 2.0 {
            // One token for the summary, one for the line.
            self.tokens -= 1.0;
            return self.take_left_out();
        }
        if now.saturating_duration_since(since) >= SUMMARY_EVERY {
            self.summarised_at = Some(now);
            return Some(std::mem::take(&mut self.left_out));
        }
        None
    }

    /// Ends the flood: the count of lines held back, if any.
    fn take_left_out(&mut self) -> Option<u64> {
        self.summarised_at = None;
        let n = std::mem::take(&mut self.left_out);
        (n > 0).then_some(n)
    }

    /// Whether lines are being held back now.
    fn flooding(&self) -> bool {
        self.summarised_at.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_a_burst_and_a_rate_with_summaries() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        let mut logged = 0;
        let mut summaries = Vec::new();
        // 10,000 lines a second for 25 s.
        for i in 0..250_000u64 {
            let now = t0 + Duration::from_micros(i * 100);
            if let Some(n) = l.summary_due(now) {
                summaries.push(n);
            }
            if l.allow(now) {
                logged += 1;
            }
        }
        summaries.extend(l.take_left_out());
        let total: u64 = summaries.iter().sum();
        assert_eq!(logged + total, 250_000, "every line logged or counted");
        assert!(logged <= BURST as u64 + 25 * RATE as u64 + 1, "{logged}");
        assert_eq!(
            summaries.len(),
            5,
            "every 5 s and at the end: {summaries:?}"
        );
        assert!(l.take_left_out().is_none());
    }

    #[test]
    fn a_flood_that_ebbs_is_summed_up_before_the_next_line() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        for _ in 0..20 {
            l.allow(t0);
        }
        assert!(l.flooding());
        let later = t0 + Duration::from_secs(2);
        assert_eq!(l.summary_due(later), Some(12));
        assert!(l.allow(later));
        assert!(!l.flooding());
        assert_eq!(l.summary_due(later), None);
    }

    #[tokio::test]
    async fn lines_are_scrubbed_and_the_last_one_returned() {
        let secrets = Secrets::from_text("rtsp://admin:CamPw12345@h/s1");
        let input: &[u8] =
            b"starting\r\nframe=1\rrtsp://admin:CamPw12345@h/s1: refused\n\x1b[31mbad CamPw12345\n\n";
        let last = log_stderr(input, "t".into(), &secrets, CancellationToken::new()).await;
        assert_eq!(last.as_deref(), Some("\\u{1b}[31mbad ***"));
    }
}
