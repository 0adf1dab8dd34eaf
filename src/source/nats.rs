//! The `nats://HOST:4222/SUBJECT` source: an edge node's stream fed by a
//! capture node that publishes to NATS (see `crate::nats`).
//!
//! - Frames as they come: live pictures are published to the stream, the
//!   capture node's offline placeholders too, with its reason.
//! - Latest wins, memory bounded: a reader task takes messages off the
//!   subscription as fast as they arrive and keeps only the newest one for
//!   the stream; a message replaced before the stream took it is counted
//!   (`frames_replaced` in `/status`), and so is one the client library
//!   dropped because the subscription's short queue was full.
//! - A picture at once: at each connection (start, reconnect) the source
//!   asks the publisher for its newest frame rather than wait for the next.
//! - Viewers announced: while the stream has viewers, the source says so on
//!   `SUBJECT.interest` every second (at once when the first one arrives),
//!   so that a capture node with `--capture-on-demand` captures only while
//!   somebody watches on some edge.
//! - Silence: after [`QUIET_LIMIT`] without any message (frame or
//!   heartbeat) the stream shows NO SIGNAL, "no frames from the bus", and
//!   the next frame replaces it by itself. The connection reconnects by
//!   itself too (any server of the list, or of the cluster).

use super::{BadFrames, PLACEHOLDER_INTERVAL, SourceContext, SourceError, placeholder};
use crate::nats::BusAddress;
use crate::nats::connect::connect;
use crate::nats::publish::INTEREST_EVERY;
use crate::nats::wire::{self, BusMessage};
use async_nats::{Client, Message, Subscriber};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

/// How long the bus may be silent before the stream shows NO SIGNAL (the
/// publisher sends a heartbeat every second when it has no frame).
pub const QUIET_LIMIT: Duration = Duration::from_secs(3);
/// Messages the client library queues for the subscription before it
/// drops (and counts) them: a few frames, however slow this node is.
const SUBSCRIPTION_QUEUE: usize = 8;
/// How often the stream's viewers are looked at, so that the first viewer
/// is announced within this time.
const ANNOUNCE_CHECK: Duration = Duration::from_millis(200);

/// How long a request for the newest frame waits for the publisher.
const LATEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The newest message not yet taken by the stream.
#[derive(Default)]
struct Inbox {
    slot: Mutex<Option<Message>>,
    ready: Notify,
    /// Messages from the subscription so far: a reply to a request for the
    /// newest frame is used only if no live message came after the request.
    live: AtomicU64,
}

impl Inbox {
    /// Puts `msg` in the slot; true if it replaced one the stream never took.
    fn put(&self, msg: Message) -> bool {
        let replaced = self
            .slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(msg)
            .is_some();
        self.ready.notify_one();
        replaced
    }

    fn take(&self) -> Option<Message> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Runs the source until cancelled; an error only if it cannot start.
pub async fn run(addr: &BusAddress, ctx: &SourceContext) -> Result<(), SourceError> {
    let hub = &ctx.hub;
    let role = format!("subscribe {}", hub.name());
    let (client, link) = connect(addr, &role, SUBSCRIPTION_QUEUE)
        .await
        .map_err(SourceError::new)?;
    let subscriber = client
        .subscribe(addr.subject.clone())
        .await
        .map_err(|e| SourceError::new(format!("cannot subscribe to {}: {e}", addr.subject)))?;
    let inbox = Arc::new(Inbox::default());
    let _reader = AbortOnDropHandle::new(tokio::spawn(read(
        subscriber,
        inbox.clone(),
        ctx.hub.clone(),
    )));
    let mut bad = BadFrames::new(hub.clone(), addr.to_string());
    let mut connected = link.watch();
    connected.mark_changed();
    let mut asking: Option<AbortOnDropHandle<()>> = None;
    let mut last_message = Instant::now();
    let mut quiet_shown: Option<Instant> = None;
    let mut announce = tokio::time::interval(ANNOUNCE_CHECK);
    let mut announced: Option<Instant> = None;
    loop {
        let deadline = match quiet_shown {
            None => last_message + QUIET_LIMIT,
            Some(at) => at + PLACEHOLDER_INTERVAL,
        };
        tokio::select! {
            _ = ctx.cancel.cancelled() => return Ok(()),
            () = inbox.ready.notified() => {
                let Some(msg) = inbox.take() else { continue };
                last_message = Instant::now();
                if quiet_shown.take().is_some() {
                    info!(stream = hub.name(), bus = %addr, "frames from the bus again");
                }
                take(ctx, &mut bad, msg);
            }
            up = connected.changed() => {
                if up.is_err() {
                    return Err(SourceError::new("the NATS connection closed"));
                }
                if *connected.borrow_and_update() {
                    asking = Some(AbortOnDropHandle::new(tokio::spawn(ask_latest(
                        client.clone(),
                        addr.latest_subject(),
                        inbox.clone(),
                    ))));
                }
            }
            _ = announce.tick() => {
                if hub.demand().viewers() == 0 {
                    announced = None;
                } else if announced.is_none_or(|at| at.elapsed() >= INTEREST_EVERY) {
                    let _ = client.publish(addr.interest_subject(), Bytes::new()).await;
                    announced = Some(Instant::now());
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                let reason = if link.is_connected() {
                    "no frames from the bus".to_owned()
                } else {
                    format!("no frames from the bus: not connected to {addr}")
                };
                if quiet_shown.is_none() {
                    warn!(stream = hub.name(), bus = %addr, "{reason}");
                }
                placeholder::publish(ctx, &reason);
                quiet_shown = Some(Instant::now());
            }
        }
        let dropped = link.take_drops();
        if dropped > 0 {
            hub.stats().record_replaced(dropped);
        }
        if asking.as_ref().is_some_and(|a| a.is_finished()) {
            asking = None;
        }
    }
}

/// Takes messages off the subscription as they arrive; only the newest
/// one waits for the stream.
async fn read(mut subscriber: Subscriber, inbox: Arc<Inbox>, hub: Arc<crate::hub::FrameHub>) {
    use futures_util::StreamExt;
    while let Some(msg) = subscriber.next().await {
        inbox.live.fetch_add(1, Relaxed);
        if inbox.put(msg) {
            hub.stats().record_replaced(1);
        }
    }
}

/// Asks the publisher for its newest frame; the answer goes to the stream
/// unless a live message was faster.
async fn ask_latest(client: Client, subject: String, inbox: Arc<Inbox>) {
    let before = inbox.live.load(Relaxed);
    let answer = tokio::time::timeout(LATEST_TIMEOUT, client.request(subject, Bytes::new())).await;
    // No answer: no publisher yet, or one that answers no requests; the
    // next live frame will do.
    if let Ok(Ok(msg)) = answer
        && inbox.live.load(Relaxed) == before
    {
        inbox.put(msg);
    }
}

/// Publishes one message's frame to the stream, or drops it with a reason.
fn take(ctx: &SourceContext, bad: &mut BadFrames, msg: Message) {
    let parsed = wire::read(msg.headers.as_ref(), msg.payload.len());
    let (meta, reason) = match parsed {
        Ok(BusMessage::Heartbeat) => return,
        Ok(BusMessage::Frame { meta, reason, .. }) => (meta, reason),
        Err(why) => return bad.drop_frame(format!("bad message from the bus: {why}")),
    };
    if let Err(e) = crate::jpeg::check(&msg.payload) {
        return bad.drop_frame(format!("bad JPEG from the bus: {e}"));
    }
    bad.good();
    match reason {
        None => {
            ctx.hub.publish(&msg.payload, meta);
        }
        Some(reason) => ctx.hub.publish_offline(&msg.payload, meta, &reason),
    }
}
