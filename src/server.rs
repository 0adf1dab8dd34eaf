//! Wiring: one `FrameHub` and supervised source per stream, the HTTP accept
//! loops, and one cancellation tree that ends them all on shutdown.

use crate::config::Config;
use crate::history::MemoryRing;
use crate::http::limits::{Admission, ConnectionPermit};
use crate::http::{HttpContext, HttpOptions, serve_admitted};
use crate::hub::FrameHub;
use crate::listen::{Accepted, Listener, UNIX_PEER};
use crate::logging::Summary;
use crate::rendition::RenditionSettings;
use crate::source::{SourceContext, supervise};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, debug_span, info, warn};

/// How often each stream's activity is summarized in the log.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Runs the server on `listeners` (TCP or unix; HTTPS on TCP when the config
/// has TLS) until `shutdown` is cancelled, then ends every source and
/// connection, waiting at most the configured grace time.
pub async fn run<L: Into<Listener>>(
    config: Config,
    listeners: Vec<L>,
    shutdown: CancellationToken,
) {
    let tasks = TaskTracker::new();
    let mut hubs = Vec::new();
    for stream in &config.streams {
        let spec = stream.source.clone();
        let hub = FrameHub::new(&stream.name, &spec.to_string(), spec.kind());
        hub.set_drop_same_frames(config.drop_same_frames);
        hub.set_capture_on_demand(config.capture_on_demand);
        if let Some(history) = config.history_of(stream) {
            hub.set_history(Arc::new(MemoryRing::new(history)));
        }
        info!(stream = %stream.name, source = %spec, "stream ready");
        let ctx = SourceContext {
            hub: hub.clone(),
            cancel: shutdown.clone(),
            quality: stream.quality.unwrap_or(config.quality),
            subsampling: config.subsampling,
        };
        tasks.spawn(supervise(spec, ctx));
        if let Some(bus) = &stream.publish {
            info!(stream = %stream.name, bus = %bus, "publishing to NATS");
            tasks.spawn(crate::nats::publish::run(
                hub.clone(),
                bus.clone(),
                shutdown.clone(),
            ));
        }
        hubs.push(hub);
    }
    tasks.spawn(tick_rates(hubs.clone(), shutdown.clone()));

    let options = HttpOptions {
        header_timeout: config.header_timeout,
        snapshot_timeout: config.snapshot_timeout,
        resume_timeout: config.resume_timeout,
        allow_origin: config.allow_origin.clone(),
        access: config.access.clone(),
        limits: config.limits,
        send_timeout: config.send_timeout,
        zero_copy: config.zero_copy,
        batch_sends: config.batch_sends,
        send_loops: send_loops(&config),
        // `--send-loops N` given: all N loops from the first client; by
        // default a stream opens its loops as its audience grows.
        loop_bytes_per_frame: if config.send_loops == 0 {
            crate::http::LOOP_BYTES_PER_FRAME
        } else {
            1
        },
        ..HttpOptions::default()
    };
    let renditions = config
        .streams
        .iter()
        .map(|s| RenditionSettings {
            named: s.renditions.clone(),
            max_adhoc: s.max_renditions,
            quality: s.quality.unwrap_or(config.quality),
        })
        .collect();
    let ctx = Arc::new(
        HttpContext::new(hubs, options)
            .with_tasks(tasks.clone())
            .with_renditions(renditions),
    );
    let tls = config.tls.as_ref().map(|t| t.acceptor.clone());
    for listener in listeners {
        tasks.spawn(accept_loop(
            listener.into(),
            tls.clone(),
            config.send_buffer,
            ctx.clone(),
            shutdown.clone(),
            tasks.clone(),
        ));
    }

    shutdown.cancelled().await;
    info!("shutting down");
    tasks.close();
    if tokio::time::timeout(config.shutdown_grace, tasks.wait())
        .await
        .is_err()
    {
        warn!(
            "{} tasks still running after {:?}; exiting anyway",
            tasks.len(),
            config.shutdown_grace
        );
    }
}

/// Send loops per stream: as configured, else one per HTTP worker thread
/// (the runtime's default is one per core).
fn send_loops(config: &Config) -> usize {
    match (config.send_loops, config.workers) {
        (0, 0) => std::thread::available_parallelism().map_or(1, usize::from),
        (0, workers) => workers,
        (loops, _) => loops,
    }
}

/// Accepts connections until shutdown; each one gets its own task.
async fn accept_loop(
    listener: Listener,
    tls: Option<TlsAcceptor>,
    send_buffer: usize,
    ctx: Arc<HttpContext>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok(Accepted::Tcp(socket, peer)) => {
                // Counted before the TLS handshake, so that handshakes in
                // progress count against the limits too. A refused TLS
                // client is closed at once: answering it would first cost a
                // whole handshake.
                let permit = match ctx
                    .gate
                    .admit(peer.ip(), &ctx.options.limits, tls.is_none())
                {
                    Admission::Serve(permit) => permit,
                    Admission::Close(why) => {
                        debug!(%peer, "closed at once: {why}");
                        continue;
                    }
                };
                // Frames are written whole; sending them at once matters more
                // than coalescing small writes.
                let _ = socket.set_nodelay(true);
                if send_buffer > 0 {
                    let _ = socket2::SockRef::from(&socket).set_send_buffer_size(send_buffer);
                }
                debug!(%peer, "connection");
                // Every log line of the connection names the peer.
                let span = debug_span!("conn", %peer);
                match &tls {
                    None => tasks.spawn(
                        serve_admitted(socket, peer, ctx.clone(), shutdown.clone(), permit)
                            .instrument(span),
                    ),
                    Some(acceptor) => tasks.spawn(
                        serve_tls(
                            acceptor.clone(),
                            socket,
                            peer,
                            ctx.clone(),
                            shutdown.clone(),
                            permit,
                        )
                        .instrument(span),
                    ),
                };
            }
            Ok(Accepted::Unix(socket)) => {
                debug!("connection on a unix socket");
                let permit = match ctx.gate.admit(UNIX_PEER.ip(), &ctx.options.limits, true) {
                    Admission::Serve(permit) => permit,
                    Admission::Close(why) => {
                        debug!("unix socket connection closed at once: {why}");
                        continue;
                    }
                };
                tasks.spawn(
                    serve_admitted(socket, UNIX_PEER, ctx.clone(), shutdown.clone(), permit)
                        .instrument(debug_span!("conn", peer = "unix")),
                );
            }
            Err(e) => {
                // Typically out of file descriptors: wait for some to close
                // rather than spinning on the error.
                warn!("accept failed: {e}");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}

/// Completes the TLS handshake in the connection's own task (so a client
/// that never finishes it holds up nobody else), within the request head
/// deadline, then serves HTTP over it.
async fn serve_tls(
    acceptor: TlsAcceptor,
    socket: TcpStream,
    peer: std::net::SocketAddr,
    ctx: Arc<HttpContext>,
    shutdown: CancellationToken,
    permit: ConnectionPermit,
) {
    let handshake = tokio::select! {
        _ = shutdown.cancelled() => return,
        h = tokio::time::timeout(ctx.options.header_timeout, acceptor.accept(socket)) => h,
    };
    match handshake {
        Ok(Ok(stream)) => serve_admitted(stream, peer, ctx, shutdown, permit).await,
        Ok(Err(e)) => debug!(%peer, "TLS handshake failed: {e}"),
        Err(_) => debug!(%peer, "TLS handshake not completed in time"),
    }
}

/// Updates every stream's measured frame rates once a second, and logs a
/// summary of each stream every `SUMMARY_EVERY`.
async fn tick_rates(hubs: Vec<Arc<FrameHub>>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut summary = Summary::new(&hubs);
    let mut next_summary = tokio::time::Instant::now() + SUMMARY_EVERY;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => hubs.iter().for_each(|h| h.stats().tick()),
        }
        if tokio::time::Instant::now() >= next_summary {
            summary.log(&hubs);
            next_summary += SUMMARY_EVERY;
        }
    }
}
