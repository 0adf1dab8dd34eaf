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
//! anything it started (a pipeline, a background job) outlives it; what left
//! the group (`setsid`) is found in /proc and killed too (`crate::children`).
//! The command's standard error is logged line by line, within limits (see
//! `output`); when the command exits, the source fails with its exit status
//! and last error line, and the supervisor restarts it with backoff.

use super::{BadFrames, Secrets, SourceContext, SourceError, output};
use crate::children::{self, Proc};
use crate::frame::FrameMeta;
use crate::jpeg::{self, JpegSplitter};
use rustix::process::{Pid, Signal};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::task::AbortOnDropHandle;

/// Largest frame accepted from a pipe; a frame growing beyond is dropped.
const MAX_FRAME: usize = 32 << 20;
/// Bytes read from the pipe at a time.
const READ_CHUNK: usize = 256 << 10;
/// How long a command gets to exit after SIGTERM before the group is killed.
const TERM_GRACE: Duration = Duration::from_millis(200);
/// How long to wait for a command's exit status after it closed stdout.
const EXIT_WAIT: Duration = Duration::from_secs(1);

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
    // Bytes skipped outside frames when the last good frame came, and when
    // they were last reported.
    let (mut skipped_at_good, mut noted_skipped) = (0, 0);
    loop {
        let n = tokio::select! {
            _ = ctx.cancel.cancelled() => return Ok(Ended::Cancelled),
            r = input.read(&mut buf) => r.map_err(|e| SourceError::new(format!("reading the input failed: {e}")))?,
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
                    skipped_at_good = splitter.skipped_bytes();
                }
                Err(e) => bad.drop_frame(e),
            }
        }
        // Bytes outside any JPEG (raw video, text) are no frame to drop, but
        // they are why the stream shows nothing: tell the watchdog.
        let skipped = splitter.skipped_bytes();
        if skipped > noted_skipped {
            noted_skipped = skipped;
            let n = skipped - skipped_at_good;
            ctx.hub
                .note_bad_input(&format!("no SOI marker in {n} bytes of input"));
        }
    }
}

/// Runs `command` and reads MJPEG from its standard output until it exits.
/// `label` is the spec as displayed; `secrets` are masked in the command's
/// logged output. Errors say "command", not the command line: they are
/// drawn into the picture every viewer sees.
pub async fn run_exec(
    command: &str,
    label: &str,
    ctx: &SourceContext,
    secrets: Arc<Secrets>,
) -> Result<(), SourceError> {
    let mut command_line = tokio::process::Command::new("sh");
    command_line
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // Registered, so that the reaper of orphans never waits for it.
    let mut child = children::spawn_registered(|| {
        let spawned = command_line.spawn();
        let pid = spawned.as_ref().ok().and_then(|c| c.id());
        (spawned, pid)
    })
    .map_err(|e| SourceError::new(format!("cannot run sh: {e}")))?;
    let mut group = child
        .id()
        .map(ProcessGroup::new)
        .ok_or_else(|| SourceError::new("command exited at once"))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(SourceError::new("no pipes to the command"));
    };
    let stream = ctx.hub.name().to_owned();
    let stopping = ctx.cancel.clone();
    let stderr_log = AbortOnDropHandle::new(tokio::spawn(async move {
        output::log_stderr(stderr, stream, &secrets, stopping).await
    }));

    let ended = read_mjpeg(stdout, ctx, label).await?;
    // The tree is read while the command's shell is still ours to wait for
    // (its pid cannot be reused yet).
    group.collect();
    if ended == Ended::Cancelled {
        group.signal(Signal::TERM);
        if let Ok(Ok(_)) = tokio::time::timeout(TERM_GRACE, child.wait()).await {
            group.waited();
        }
        return Ok(()); // dropping `group` kills what is left
    }
    // Stdout closed: normally the command is exiting.
    let status = tokio::time::timeout(EXIT_WAIT, child.wait()).await;
    if let Ok(Ok(_)) = status {
        group.waited();
    }
    drop(group);
    let last_line = tokio::time::timeout(Duration::from_millis(200), stderr_log)
        .await
        .ok()
        .and_then(|r| r.ok())
        .flatten();
    let mut reason = match status {
        Ok(Ok(status)) => format!("command {}", describe(status)),
        Ok(Err(e)) => format!("command: {e}"),
        Err(_) => "command closed its output".to_owned(),
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

/// A child's process group (the child is its leader) and the processes
/// found below the child; every one still alive is killed when this is
/// dropped, however the source ended.
struct ProcessGroup {
    pid: u32,
    /// Descendants, including those that left the group (`setsid`).
    tree: Vec<Proc>,
    /// The leader was waited for: its pid may belong to another process now.
    waited: bool,
}

impl ProcessGroup {
    fn new(pid: u32) -> ProcessGroup {
        ProcessGroup {
            pid,
            tree: Vec::new(),
            waited: false,
        }
    }

    fn waited(&mut self) {
        self.waited = true;
        children::waited(self.pid);
    }

    /// Records the processes now below the leader (while it has not been
    /// waited for, its pid is still its own).
    fn collect(&mut self) {
        if self.waited {
            return;
        }
        for p in children::descendants(self.pid) {
            if !self.tree.contains(&p) {
                self.tree.push(p);
            }
        }
    }

    fn signal(&self, signal: Signal) {
        // The group was created for our child, and its id cannot be reused
        // while any member lives.
        if let Some(pgid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) {
            let _ = rustix::process::kill_process_group(pgid, signal);
        }
        children::signal(&self.tree, signal);
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.collect();
        self.signal(Signal::KILL);
    }
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
            subsampling: Default::default(),
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
        let cmd = "echo starting >&2; echo 'no camera' >&2; exit 3";
        let e = run_exec(cmd, "exec", &ctx, Arc::default())
            .await
            .expect_err("the command fails");
        assert_eq!(e.0, "command exited with status 3: no camera");
    }
}
