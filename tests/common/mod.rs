//! Shared test helpers: the real server (in-process on an ephemeral port,
//! or the built binary), a strict reader of the multipart stream built on
//! the project's own parser, plain HTTP exchanges, test JPEGs and a test
//! certificate, and `eventually` for waiting on a condition instead of
//! sleeping.
#![allow(dead_code, unused_imports)] // each test file uses a different subset

mod daemon;
mod fixtures;
mod http;
mod server;
mod stream;
mod tls;

pub use daemon::*;
pub use fixtures::*;
pub use http::*;
pub use server::*;
pub use stream::*;
pub use tls::*;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The multipart boundary of `/stream` responses.
pub const BOUNDARY: &str = "mjpegd-boundary";

/// A wait for a condition, failing the test naming `what` once `within`
/// has passed: the one polling loop behind `eventually` and
/// `eventually_blocking`.
struct Patience<'a> {
    start: Instant,
    within: Duration,
    what: &'a str,
}

impl<'a> Patience<'a> {
    const PAUSE: Duration = Duration::from_millis(20);

    fn new(within: Duration, what: &'a str) -> Self {
        Patience {
            start: Instant::now(),
            within,
            what,
        }
    }

    /// Fails the test once the time is up.
    fn not_yet(&self) {
        self.not_yet_showing(&"");
    }

    /// `not_yet`, naming what was last seen.
    fn not_yet_showing(&self, seen: &dyn std::fmt::Display) {
        assert!(
            self.start.elapsed() < self.within,
            "{}: not within {:?} {seen}",
            self.what,
            self.within
        );
    }
}

/// Polls `check` every 20 ms until it holds; fails naming `what` after
/// `within`. Returns how long it took. Use it instead of sleeping for a
/// guessed time and then asserting.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let wait = Patience::new(within, what);
    while !check().await {
        wait.not_yet();
        tokio::time::sleep(Patience::PAUSE).await;
    }
    wait.start.elapsed()
}

/// `eventually` for tests without a runtime (checks on processes, files).
pub fn eventually_blocking(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
) -> Duration {
    let wait = Patience::new(within, what);
    while !check() {
        wait.not_yet();
        std::thread::sleep(Patience::PAUSE);
    }
    wait.start.elapsed()
}

/// Seconds since the epoch, as `X-Timestamp` carries them.
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// The path of program `tool`, from PATH or the system directories that
/// are often missing from it (Debian puts `nats-server` in /usr/sbin).
/// Fails the test (rather than letting it pass without testing anything)
/// when it is not there. `.ci/run` installs them all.
pub fn require(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("this test needs `{tool}`; it is missing (.ci/run installs it)"))
}

/// A fresh path in the temp directory (not created).
pub fn temp_path(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "mjpegd-test-{}-{}-{what}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Raises this process's open-file limit to its hard maximum (tests that
/// open thousands of connections) and fails unless that took effect and
/// allows `needed` descriptors: otherwise the test would fail later, at
/// some `connect`, for a reason far harder to read.
pub fn raise_fd_limit(needed: u64) -> u64 {
    use rustix::process::{Resource, getrlimit};
    let limit = mjpegd::rlimit::raise_fd_limit();
    let now = getrlimit(Resource::Nofile);
    assert_eq!(
        now.current, now.maximum,
        "the soft open-file limit was not raised to the hard one"
    );
    assert_eq!(mjpegd::rlimit::fd_limit(), limit);
    assert!(
        limit >= needed,
        "this test needs {needed} open files; the hard limit is {limit}"
    );
    limit
}
