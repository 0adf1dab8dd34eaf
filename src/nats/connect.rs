//! Connecting to NATS: the client options an address asks for (credentials
//! read from their files at each connection, TLS), a quick reconnect
//! schedule, and the connection's events turned into state the publisher
//! and the source can look at. Nothing here logs a secret: the options are
//! never printed, and the address holds only file names.

use super::address::{BusAddress, BusAuth};
use async_nats::{Client, ConnectOptions, Event};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Messages the client may hold for the server while it sends (frames
/// included): a short queue, so a slow link costs a few frames of memory.
const CLIENT_CAPACITY: usize = 32;
/// Reconnect attempts are spaced by this much more each time, up to
/// `MAX_RECONNECT_DELAY`: a restarted server is found again within seconds.
const RECONNECT_STEP: Duration = Duration::from_millis(250);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// A server that stops answering pings is given up after a few of these.
const PING_INTERVAL: Duration = Duration::from_secs(5);

/// What the connection's events said last.
pub struct LinkState {
    connected: watch::Sender<bool>,
    /// Messages the client dropped because a subscription's queue was full.
    slow_consumer_drops: AtomicU64,
}

impl LinkState {
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// A receiver that changes on every connect and disconnect.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    /// Drops counted since the last call.
    pub fn take_drops(&self) -> u64 {
        self.slow_consumer_drops.swap(0, Relaxed)
    }
}

/// A client connecting (in the background, retrying for ever) to `addr`,
/// and the state its events keep. `role` names the connection in logs and
/// on the server (`mjpegd publish cam`); `queue` bounds each subscription.
pub async fn connect(
    addr: &BusAddress,
    role: &str,
    queue: usize,
) -> Result<(Client, Arc<LinkState>), String> {
    let (connected, _) = watch::channel(false);
    let state = Arc::new(LinkState {
        connected,
        slow_consumer_drops: AtomicU64::new(0),
    });
    let events = state.clone();
    let (shown, who) = (addr.to_string(), role.to_owned());
    let mut options = ConnectOptions::new()
        .name(format!("mjpegd {role}"))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            (RECONNECT_STEP * attempts.min(100) as u32).min(MAX_RECONNECT_DELAY)
        })
        .connection_timeout(Duration::from_secs(2))
        .ping_interval(PING_INTERVAL)
        .client_capacity(CLIENT_CAPACITY)
        .subscription_capacity(queue)
        .event_callback(move |event| {
            let (state, shown, who) = (events.clone(), shown.clone(), who.clone());
            async move { on_event(&state, &shown, &who, event) }
        });
    options = with_auth(options, &addr.auth).await?;
    if addr.tls.required {
        options = options.require_tls(true);
    }
    if let Some(ca) = &addr.tls.ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &addr.tls.client {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let client = options
        .connect(addr.server_urls())
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    Ok((client, state))
}

/// Adds the credentials, read from their files now (a rotated file is
/// picked up by the next start).
async fn with_auth(options: ConnectOptions, auth: &BusAuth) -> Result<ConnectOptions, String> {
    let read = |option: &'static str, path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| format!("cannot read {option} {}: {e}", path.display()))
    };
    Ok(match auth {
        BusAuth::Anonymous => options,
        BusAuth::UserPassword {
            user,
            password_file,
        } => options.user_and_password(user.clone(), read("password_file", password_file)?),
        BusAuth::Token { file } => options.token(read("token_file", file)?),
        BusAuth::NKey { seed_file } => options.nkey(read("nkey_file", seed_file)?),
        BusAuth::Creds { file } => options
            .credentials_file(file)
            .await
            .map_err(|e| format!("cannot use creds_file {}: {e}", file.display()))?,
    })
}

fn on_event(state: &LinkState, shown: &str, role: &str, event: Event) {
    match event {
        Event::Connected => {
            info!(bus = shown, "{role}: connected to NATS");
            state.connected.send_replace(true);
        }
        Event::Disconnected => {
            warn!(bus = shown, "{role}: disconnected from NATS; reconnecting");
            state.connected.send_replace(false);
        }
        Event::SlowConsumer(_) => {
            state.slow_consumer_drops.fetch_add(1, Relaxed);
        }
        Event::ServerError(e) => warn!(bus = shown, "{role}: NATS server error: {e}"),
        // Mostly failed reconnect attempts, every second or two while a
        // server is down: the disconnect was logged once already.
        Event::ClientError(e) => debug!(bus = shown, "{role}: NATS client error: {e}"),
        Event::LameDuckMode => info!(bus = shown, "{role}: NATS server is shutting down"),
        Event::Draining | Event::Closed => {}
    }
}
