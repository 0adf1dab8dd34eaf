//! The `mjpegd` binary: parse the configuration, bind, run until Ctrl-C,
//! SIGTERM or another signal that would otherwise kill it (SIGHUP, SIGQUIT,
//! SIGUSR1, SIGUSR2), then stop every source and child process and remove
//! the unix socket files it made.

use anyhow::Context;
use mjpegd::children;
use mjpegd::config::{Config, ConfigError};
use mjpegd::listen::Listener;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, UnixListener};
use tokio_util::sync::CancellationToken;

/// Pending connections the kernel may hold: enough for thousands of clients
/// connecting at once.
const LISTEN_BACKLOG: u32 = 4096;

fn main() -> ExitCode {
    // `mjpegd token ...` makes a signed URL token instead of serving.
    if std::env::args_os().nth(1).is_some_and(|a| a == "token") {
        return match mjpegd::config::token_command(std::env::args_os()) {
            Ok(token) => print_text(&format!("{token}\n")),
            Err(ConfigError::Info(text)) => print_text(&text),
            Err(ConfigError::Invalid(line)) => {
                eprintln!("mjpegd token: {line}");
                ExitCode::from(2)
            }
        };
    }
    // `mjpegd devices` lists cameras; every other command line runs the server.
    if std::env::args_os().nth(1).is_some_and(|a| a == "devices") {
        return print_text(&mjpegd::source::v4l2::describe_devices());
    }
    let config = match Config::from_args(std::env::args_os()) {
        Ok(c) => c,
        Err(ConfigError::Info(text)) => return print_text(&text),
        Err(ConfigError::Invalid(line)) => {
            eprintln!("mjpegd: {line}");
            return ExitCode::from(2);
        }
    };
    mjpegd::logging::init(config.log_format);
    mjpegd::rlimit::raise_fd_limit();
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mjpegd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to stdout; a closed or broken stdout is one line on stderr
/// and a failed exit, not a panic.
fn print_text(text: &str) -> ExitCode {
    match say(text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mjpegd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn say(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to standard output")
}

fn run(config: Config) -> anyhow::Result<()> {
    // Orphans of `exec:` commands become our children, so none escapes.
    let subreaper = children::become_subreaper();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.workers > 0 {
        builder.worker_threads(config.workers);
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut sockets = UnixSockets::default();
    let result = runtime.block_on(async {
        // Before anything is announced: a signal from then on ends the
        // server cleanly instead of killing it.
        let signals = EndSignals::watch().context("cannot watch signals")?;
        if subreaper {
            tokio::spawn(reap_orphans());
        }
        let mut listeners: Vec<Listener> = Vec::new();
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        for addr in &config.listen {
            let listener = bind(*addr).with_context(|| format!("cannot listen on {addr}"))?;
            let local = listener.local_addr()?;
            say(&format!("listening on {scheme}://{local}\n"))?;
            if !local.ip().is_loopback() {
                if config.access.is_open() {
                    tracing::warn!(
                        "listening on {local} without --auth: the streams are reachable from the network"
                    );
                } else if config.tls.is_none() {
                    tracing::warn!(
                        "listening on {local} without --tls-cert: credentials cross the network in clear text"
                    );
                }
            }
            listeners.push(listener.into());
        }
        for path in &config.listen_unix {
            let listener = sockets
                .bind(path)
                .with_context(|| format!("cannot listen on unix:{}", path.display()))?;
            say(&format!("listening on unix:{}\n", path.display()))?;
            listeners.push(listener.into());
        }
        let shutdown = CancellationToken::new();
        tokio::spawn(signals.cancel(shutdown.clone()));
        mjpegd::server::run(config, listeners, shutdown).await;
        anyhow::Ok(())
    });
    drop(sockets);
    // Capture threads check for shutdown every few milliseconds; do not let
    // one stuck in a system call hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(200));
    // Sources are gone: anything still running below us is left over.
    let left = children::kill_all_children();
    if left > 0 {
        tracing::debug!("killed {left} leftover child processes");
    }
    result
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Unix socket files this process created; removed again when dropped (at
/// exit), so that a restart finds no stale file. A file is only removed if
/// it is still the one we bound (same device and inode): another server may
/// have taken the path over meanwhile.
#[derive(Default)]
struct UnixSockets(Vec<(PathBuf, Option<(u64, u64)>)>);

/// The identity of the file at `path`, without following a symlink.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl UnixSockets {
    /// Binds `path`, first removing a stale socket left by a previous run.
    /// Anything at `path` that is not a socket is left alone (an error).
    fn bind(&mut self, path: &Path) -> anyhow::Result<UnixListener> {
        use std::os::unix::fs::FileTypeExt;
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            anyhow::ensure!(
                meta.file_type().is_socket(),
                "{} exists and is not a socket",
                path.display()
            );
            // A live server on it would still accept: refuse to steal it.
            anyhow::ensure!(
                std::os::unix::net::UnixStream::connect(path).is_err(),
                "another server is listening on {}",
                path.display()
            );
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        self.0.push((path.to_owned(), file_id(path)));
        Ok(listener)
    }
}

impl Drop for UnixSockets {
    fn drop(&mut self) {
        for (path, id) in &self.0 {
            if id.is_some() && file_id(path) == *id {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// The signals whose default action would kill the process: each one ends
/// the server cleanly instead (sources stopped, children killed, socket
/// files removed). A configuration reload on SIGHUP is not supported, so it
/// stops too, as a service manager expects of a daemon without one.
struct EndSignals(Vec<(tokio::signal::unix::Signal, &'static str)>);

impl EndSignals {
    /// Installs the handlers (inside the runtime).
    fn watch() -> std::io::Result<EndSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        let kinds = [
            (SignalKind::interrupt(), "SIGINT"),
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::hangup(), "SIGHUP"),
            (SignalKind::quit(), "SIGQUIT"),
            (SignalKind::user_defined1(), "SIGUSR1"),
            (SignalKind::user_defined2(), "SIGUSR2"),
        ];
        let mut signals = Vec::with_capacity(kinds.len());
        for (kind, name) in kinds {
            signals.push((signal(kind)?, name));
        }
        Ok(EndSignals(signals))
    }

    /// Cancels `token` when the first of the signals arrives.
    async fn cancel(mut self, token: CancellationToken) {
        let name = std::future::poll_fn(|cx| {
            for (signal, name) in self.0.iter_mut() {
                if signal.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*name);
                }
            }
            std::task::Poll::Pending
        })
        .await;
        tracing::info!("{name} received");
        token.cancel();
    }
}

/// Reaps orphaned descendants that were handed to us and have exited.
async fn reap_orphans() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut child_exits) = signal(SignalKind::child()) else {
        return;
    };
    while child_exits.recv().await.is_some() {
        children::reap_adopted();
    }
}
