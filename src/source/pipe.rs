//! `stdin` and `exec:COMMAND`: a concatenated MJPEG byte stream (what
//! `ffmpeg -f mjpeg -` writes) read from standard input or from a child
//! process's standard output, split into frames with `jpeg::JpegSplitter`.
//!
//! The splitter walks JPEG segments by their lengths, so an EXIF thumbnail
//! (a whole small JPEG inside an APP1 segment) never ends a frame early.
//! Frames that are not complete JPEGs are dropped, counted and logged once
//! per burst.
//!
//! `exec:` runs the command with `sh -c` in a process group of its own and
//! kills the whole group when the source ends, so neither the shell nor
//! anything it started (a pipeline, a background job) outlives it. The
//! command's standard error is logged line by line; when the command exits,
//! the source fails with its exit status and last error line, and the
//! supervisor restarts it with backoff.

use super::{BadFrames, SourceContext, SourceError};
use crate::frame::FrameMeta;
use crate::jpeg::{self, JpegSplitter};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info, warn};

/// Largest frame accepted from a pipe; a frame growing beyond is dropped.
const MAX_FRAME: usize = 32 << 20;
/// Bytes read from the pipe at a time.
const READ_CHUNK: usize = 256 << 10;
/// How long a command gets to exit after SIGTERM before the group is killed.
const TERM_GRACE: Duration = Duration::from_millis(200);
/// How long to wait for a command's exit status after it closed stdout.
const EXIT_WAIT: Duration = Duration::from_secs(1);
/// Longest stderr line logged; the rest is cut off.
const MAX_LOG_LINE: usize = 1000;

/// How reading a byte stream ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Cancelled,
    Eof,
}

/// Reads MJPEG from standard input until it closes.
pub async fn run_stdin(ctx: &SourceContext) -> Result<(), SourceError> {
    // tokio's stdin reads on the blocking pool, so it also works when stdin
    // is a regular file; a read still blocked at shutdown does not hold the
    // exit (the runtime is shut down with a timeout).
    match read_mjpeg(tokio::io::stdin(), ctx, "stdin").await? {
        Ended::Cancelled => Ok(()),
        Ended::Eof => Err(SourceError::new("stdin closed")),
    }
}

/// Publishes every frame of the MJPEG byte stream `input`.
async fn read_mjpeg<R>(mut input: R, ctx: &SourceContext, label: &str) -> Result<Ended, SourceError>
where
    R: AsyncRead + Unpin,
{
    let mut splitter = JpegSplitter::new(MAX_FRAME);
    let mut bad = BadFrames::new(ctx.hub.clone(), label);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = tokio::select! {
            _ = ctx.cancel.cancelled() => return Ok(Ended::Cancelled),
            r = input.read(&mut buf) => r.map_err(|e| SourceError::new(format!("{label}: {e}")))?,
        };
        if n == 0 {
            // Two bytes or more left over are the start of a frame that
            // never ended.
            if splitter.buffered() >= 2 {
                bad.drop_frame(format!(
                    "{} bytes of an unfinished frame at the end",
                    splitter.buffered()
                ));
            }
            return Ok(Ended::Eof);
        }
        // `get` cannot fail: `read` returns at most `buf.len()`.
        splitter.push(buf.get(..n).unwrap_or_default());
        while let Some(frame) = splitter.next_frame() {
            match frame.and_then(|f| jpeg::check(&f).map(|info| (f, info))) {
                Ok((jpeg, info)) => {
                    ctx.hub
                        .publish(&jpeg, FrameMeta::now(info.width, info.height));
                    bad.good();
                }
                Err(e) => bad.drop_frame(e),
            }
        }
    }
}

/// Runs `command` and reads MJPEG from its standard output until it exits.
pub async fn run_exec(command: &str, ctx: &SourceContext) -> Result<(), SourceError> {
    let label = format!("exec:{command}");
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SourceError::new(format!("{label}: cannot run sh: {e}")))?;
    let group = child
        .id()
        .map(ProcessGroup)
        .ok_or_else(|| SourceError::new(format!("{label}: exited at once")))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(SourceError::new(format!(
            "{label}: no pipes to the command"
        )));
    };
    let stderr_log = AbortOnDropHandle::new(tokio::spawn(log_stderr(
        stderr,
        ctx.hub.name().to_owned(),
        ctx.cancel.clone(),
    )));

    let ended = read_mjpeg(stdout, ctx, &label).await?;
    if ended == Ended::Cancelled {
        group.signal(libc::SIGTERM);
        let _ = tokio::time::timeout(TERM_GRACE, child.wait()).await;
        return Ok(()); // dropping `group` kills what is left
    }
    // Stdout closed: normally the command is exiting.
    let status = tokio::time::timeout(EXIT_WAIT, child.wait()).await;
    drop(group);
    let last_line = tokio::time::timeout(Duration::from_millis(200), stderr_log)
        .await
        .ok()
        .and_then(|r| r.ok())
        .flatten();
    let mut reason = match status {
        Ok(Ok(status)) => format!("{label} {}", describe(status)),
        Ok(Err(e)) => format!("{label}: {e}"),
        Err(_) => format!("{label} closed its output"),
    };
    if let Some(line) = last_line {
        reason.push_str(": ");
        reason.push_str(&line);
    }
    Err(SourceError::new(reason))
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => "exited".to_owned(),
    }
}

/// A child's process group (the child is its leader); every process still
/// in it is killed when this is dropped, however the source ended.
struct ProcessGroup(u32);

impl ProcessGroup {
    fn signal(&self, signal: i32) {
        let Ok(pgid) = libc::pid_t::try_from(self.0) else {
            return;
        };
        // SAFETY: killpg(2) only sends a signal. The group was created for
        // our child, and its id cannot be reused while any member lives.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

/// Logs the command's standard error line by line (lines end at `\n` or at
/// `\r`, which progress output uses), prefixed with the stream name. Returns
/// the last non-empty line, which explains most failures. Once `stopping`
/// is cancelled (we stopped the command: no viewers, or shutdown), what it
/// says while dying (broken pipe, "received signal 15") is expected and
/// logged at debug level only.
async fn log_stderr<R>(mut stderr: R, stream: String, stopping: CancellationToken) -> Option<String>
where
    R: AsyncRead + Unpin,
{
    let mut buf = vec![0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    let mut last = None;
    let mut emit = |line: &mut Vec<u8>| {
        let text = String::from_utf8_lossy(line).trim().to_owned();
        line.clear();
        if text.is_empty() {
            return;
        }
        if stopping.is_cancelled() {
            debug!(%stream, "command (stopping): {text}");
        } else if text.to_ascii_lowercase().contains("error") {
            warn!(%stream, "command: {text}");
        } else {
            info!(%stream, "command: {text}");
        }
        last = Some(text);
    };
    loop {
        let n = match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in buf.iter().take(n) {
            if b == b'\n' || b == b'\r' {
                emit(&mut line);
            } else if line.len() < MAX_LOG_LINE {
                line.push(b);
            }
        }
    }
    emit(&mut line);
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canvas::{Canvas, Rgb};
    use crate::hub::FrameHub;
    use tokio_util::sync::CancellationToken;

    fn ctx() -> SourceContext {
        SourceContext {
            hub: FrameHub::new("t", "stdin", "stdin"),
            cancel: CancellationToken::new(),
            quality: 80,
        }
    }

    #[tokio::test]
    async fn splits_frames_and_drops_bad_ones() {
        let a = Canvas::new(32, 16, Rgb(1, 2, 3))
            .encode_jpeg(80)
            .expect("jpeg");
        let b = Canvas::new(48, 16, Rgb(1, 2, 3))
            .encode_jpeg(80)
            .expect("jpeg");
        let mut input = Vec::new();
        input.extend_from_slice(&a);
        input.extend_from_slice(&a[..a.len() - 2]); // no EOI: cut short by the next frame
        input.extend_from_slice(&b);
        input.extend_from_slice(&b[..10]); // unfinished at the end
        let ctx = ctx();
        let ended = read_mjpeg(&input[..], &ctx, "test").await.expect("reads");
        assert_eq!(ended, Ended::Eof);
        let st = ctx.hub.status();
        assert_eq!(st.frames_captured, 2);
        assert_eq!(st.frames_dropped, 2);
        assert_eq!(st.width, 48);
    }

    #[tokio::test]
    async fn failing_command_reports_status_and_stderr() {
        let ctx = ctx();
        let e = run_exec("echo starting >&2; echo 'no camera' >&2; exit 3", &ctx)
            .await
            .expect_err("the command fails");
        assert_eq!(
            e.0,
            "exec:echo starting >&2; echo 'no camera' >&2; exit 3 exited with status 3: no camera"
        );
    }
}
