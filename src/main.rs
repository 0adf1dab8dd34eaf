//! The `mjpegd` binary: parse the configuration, bind, run until Ctrl-C,
//! SIGTERM or another signal that would otherwise kill it (SIGHUP, SIGQUIT,
//! SIGUSR1, SIGUSR2), then stop every source and child process and remove
//! the unix socket files it made.

use anyhow::Context;
use mjpegd::children;
use mjpegd::config::{Config, ConfigError, Invocation};
use mjpegd::listen::{Listener, UnixPermissions};
use mjpegd::systemd::{Inherited, Notifier};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, UnixListener};
use tokio_util::sync::CancellationToken;

/// Pending connections the kernel may hold: enough for thousands of clients
/// connecting at once.
const LISTEN_BACKLOG: u32 = 4096;

fn main() -> ExitCode {
    // First, while this is the only thread: the environment changes.
    let inherited = match mjpegd::systemd::take_listen_fds() {
        Ok(sockets) => sockets,
        Err(e) => {
            eprintln!("mjpegd: socket activation: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = match mjpegd::config::command_line(std::env::args_os()) {
        Ok(Invocation::Serve(config)) => *config,
        // `mjpegd token ...` makes a signed URL token instead of serving.
        Ok(Invocation::Token(token)) => return print_text(&format!("{token}\n")),
        // `mjpegd devices` lists cameras.
        Ok(Invocation::Devices) => {
            return print_text(&mjpegd::source::v4l2::describe_devices());
        }
        Err(ConfigError::Info(text)) => return print_text(&text),
        Err(ConfigError::Invalid(line)) => {
            // Name the subcommand the line is about, as in `mjpegd token: ...`.
            let command = std::env::args()
                .nth(1)
                .filter(|a| a == "token" || a == "devices");
            match command {
                Some(c) => eprintln!("mjpegd {c}: {line}"),
                None => eprintln!("mjpegd: {line}"),
            }
            return ExitCode::from(2);
        }
    };
    mjpegd::logging::init(config.log_format);
    mjpegd::rlimit::raise_fd_limit();
    match run(config, inherited) {
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

fn run(config: Config, inherited: Vec<Inherited>) -> anyhow::Result<()> {
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
        // Sockets from systemd (a .socket unit) replace --listen.
        let activated = !inherited.is_empty();
        let mut tcp = Vec::new();
        for socket in inherited {
            match socket {
                Inherited::Tcp(l) => tcp.push(TcpListener::from_std(l)?),
                Inherited::Unix(l) => {
                    let l = UnixListener::from_std(l)?;
                    let path = l.local_addr()?;
                    let path = path.as_pathname().map(Path::display);
                    let shown = path.map_or("(unnamed)".into(), |p| p.to_string());
                    say(&format!("listening on unix:{shown}\n"))?;
                    listeners.push(l.into());
                }
            }
        }
        if !activated {
            for addr in &config.listen {
                tcp.push(bind(*addr).with_context(|| format!("cannot listen on {addr}"))?);
            }
        }
        for listener in tcp {
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
        let unix_paths = if activated { &[][..] } else { &config.listen_unix[..] };
        for path in unix_paths {
            let listener = sockets
                .bind(path, config.unix_permissions)
                .with_context(|| format!("cannot listen on unix:{}", path.display()))?;
            say(&format!("listening on unix:{}\n", path.display()))?;
            listeners.push(listener.into());
        }
        if listeners.is_empty() {
            // `--listen none`: a capture node that only publishes to NATS.
            tracing::info!("serving no HTTP (--listen none)");
        }
        let shutdown = CancellationToken::new();
        tokio::spawn(signals.cancel(shutdown.clone()));
        let notifier = Notifier::from_env().map(Arc::new);
        if let Some(n) = &notifier {
            let streams = config.streams.len();
            n.notify(&format!(
                "READY=1\nSTATUS=serving {streams} stream{} on {} listener{}",
                if streams == 1 { "" } else { "s" },
                listeners.len(),
                if listeners.len() == 1 { "" } else { "s" },
            ));
            if let Some(every) = mjpegd::systemd::watchdog_interval() {
                tokio::spawn(watchdog(n.clone(), every, shutdown.clone()));
            }
        }
        mjpegd::server::run(config, listeners, shutdown).await;
        if let Some(n) = &notifier {
            n.notify("STOPPING=1");
        }
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
    /// Binds `path`, first removing a stale socket left by a previous run,
    /// and gives it `permissions`. Anything at `path` that is not a socket
    /// is left alone (an error).
    fn bind(&mut self, path: &Path, permissions: UnixPermissions) -> anyhow::Result<UnixListener> {
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
        // Group before mode: the mode is what opens the socket to the group.
        if let Some(gid) = permissions.group {
            std::os::unix::fs::chown(path, None, Some(gid))
                .with_context(|| format!("cannot give {} to group {gid}", path.display()))?;
        }
        if let Some(mode) = permissions.mode {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot set mode {mode:o} on {}", path.display()))?;
        }
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

/// Tells systemd every `every` that the server is alive (`WatchdogSec=`).
/// It runs on the same runtime as the clients, so a wedged runtime stops
/// the pings and systemd restarts the service.
async fn watchdog(notifier: Arc<Notifier>, every: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => notifier.notify("WATCHDOG=1"),
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
