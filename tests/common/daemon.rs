//! The built `mjpegd` binary: one runner for every test that starts it as a
//! server (`Daemon`), and `run` for one-shot commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `mjpegd` binary, running, with its listen lines and a file holding
/// everything it wrote to stderr.
pub struct Daemon {
    pub child: Child,
    /// The addresses from its `listening on ...` lines, e.g.
    /// `http://127.0.0.1:4711` or `unix:/tmp/x.sock`.
    pub listening: Vec<String>,
    pub stderr: PathBuf,
    /// When it was started.
    pub started: Instant,
}

impl Daemon {
    /// Runs the binary with `args` and `env`, and waits for `lines`
    /// `listening on` lines on stdout.
    pub fn start(args: &[&str], env: &[(&str, &str)], lines: usize) -> Daemon {
        Daemon::launch(args, env, lines, Stdio::null())
    }

    /// Runs the binary with `--listen 127.0.0.1:0` and `args`: the usual
    /// server of a test; `addr(0)` is where it listens.
    pub fn serve(args: &[&str]) -> Daemon {
        Daemon::serve_with_stdin(args, Stdio::null())
    }

    /// `serve` with the given standard input (e.g. `Stdio::piped()` to feed
    /// `--source stdin`; take it from `child.stdin`).
    pub fn serve_with_stdin(args: &[&str], stdin: Stdio) -> Daemon {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Daemon::launch(&all, &[], 1, stdin)
    }

    fn launch(args: &[&str], env: &[(&str, &str)], lines: usize, stdin: Stdio) -> Daemon {
        let started = Instant::now();
        let stderr = crate::common::temp_path("stderr");
        let mut command = binary();
        command
            .args(args)
            .envs(env.iter().copied())
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        let log = || std::fs::read_to_string(&stderr).unwrap_or_default();
        let (child, listening) = spawn_listening(command, lines, log);
        Daemon {
            child,
            listening,
            stderr,
            started,
        }
    }

    /// The `HOST:PORT` of the `n`th listen line (`http://` or `https://`).
    pub fn addr(&self, n: usize) -> SocketAddr {
        let line = &self.listening[n];
        line.split_once("://")
            .map(|(_, a)| a)
            .unwrap_or_else(|| panic!("not a TCP address: {line}"))
            .parse()
            .expect("address")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends `signal` and waits for the exit; returns the exit code and how
    /// long the exit took.
    pub fn signal_and_wait(&mut self, signal: i32) -> (Option<i32>, Duration) {
        signal_and_wait(&mut self.child, signal)
    }

    /// SIGTERM, then waits up to 10 s for the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.signal_and_wait(libc::SIGTERM).0
    }

    /// Open file descriptors of the process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("proc fd")
            .count()
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        stop_child(&mut self.child);
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// The built binary, without the secrets' variables a developer may have
/// set (a test that wants them sets them again).
pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mjpegd"));
    command
        .env_remove("MJPEGD_AUTH")
        .env_remove("MJPEGD_TOKEN_SECRET");
    command
}

/// Runs the binary with `args` to its end (sub-commands, bad flags).
pub fn run(args: &[&str]) -> Output {
    binary().args(args).output().expect("run mjpegd")
}

/// Resident memory of process `pid` in KiB, from /proc.
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("proc status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS line")
}

/// Starts `command` and reads `lines` `listening on ADDR` lines; an early
/// exit fails the test with what `log` returns.
fn spawn_listening(
    mut command: Command,
    lines: usize,
    log: impl Fn() -> String,
) -> (Child, Vec<String>) {
    use std::io::BufRead;
    let mut child = command.spawn().expect("run mjpegd");
    let mut reader = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut listening = Vec::new();
    while listening.len() < lines {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("read stdout") == 0 {
            let _ = child.wait();
            panic!("mjpegd exited early: {}", log());
        }
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        listening.push(addr.to_owned());
    }
    (child, listening)
}

/// Sends `signal` to `child` and waits up to 10 s for its exit; returns
/// the exit code and how long the exit took.
pub fn signal_and_wait(child: &mut Child, signal: i32) -> (Option<i32>, Duration) {
    let t = Instant::now();
    send_signal(child, signal);
    let mut code = None;
    crate::common::eventually_blocking(Duration::from_secs(10), "mjpegd exits", || {
        code = child.try_wait().expect("wait").map(|s| s.code());
        code.is_some()
    });
    (code.flatten(), t.elapsed())
}

/// Sends `signal` to our own, not yet reaped, child.
pub fn send_signal(child: &Child, signal: i32) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a pid");
    let signal = rustix::process::Signal::from_named_raw(signal).expect("a signal");
    let _ = rustix::process::kill_process(pid, signal);
}

/// Ends a server the test is done with: SIGTERM first, so that it stops its
/// `exec:` commands as it would for a user (a SIGKILL would leave them
/// running), then SIGKILL if it takes more than 2 s.
pub fn stop_child(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        send_signal(child, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
