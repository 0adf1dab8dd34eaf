//! The `mjpegd` binary: parse the configuration, bind, run until Ctrl-C or
//! SIGTERM.

use anyhow::Context;
use mjpegd::config::{Config, ConfigError};
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

/// Pending connections the kernel may hold: enough for thousands of clients
/// connecting at once.
const LISTEN_BACKLOG: u32 = 4096;

fn main() -> ExitCode {
    // `mjpegd devices` lists cameras; every other command line runs the server.
    if std::env::args_os().nth(1).is_some_and(|a| a == "devices") {
        print!("{}", mjpegd::source::v4l2::describe_devices());
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_args(std::env::args_os()) {
        Ok(c) => c,
        Err(ConfigError::Info(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(ConfigError::Invalid(line)) => {
            eprintln!("mjpegd: {line}");
            return ExitCode::from(2);
        }
    };
    mjpegd::logging::init(config.log_format);
    raise_fd_limit();
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mjpegd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.workers > 0 {
        builder.worker_threads(config.workers);
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        let mut listeners = Vec::new();
        for addr in &config.listen {
            let listener = bind(*addr).with_context(|| format!("cannot listen on {addr}"))?;
            let local = listener.local_addr()?;
            println!("listening on http://{local}");
            if !local.ip().is_loopback() {
                tracing::warn!("listening on {local}: the streams are reachable from the network");
            }
            listeners.push(listener);
        }
        std::io::stdout().flush()?;
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        mjpegd::server::run(config, listeners, shutdown).await;
        anyhow::Ok(())
    });
    // Capture threads check for shutdown every few milliseconds; do not let
    // one stuck in a system call hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(200));
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

/// Cancels `token` on Ctrl-C (SIGINT) or SIGTERM.
async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            token.cancel();
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    token.cancel();
}

/// Raises the open-file limit to its hard maximum: every client is a socket.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
