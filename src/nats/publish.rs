//! Publishing a stream to NATS (`publish = "nats://HOST:4222/SUBJECT"`): a
//! capture node sends every frame of its stream, live pictures and offline
//! placeholders alike, so that edges show what it shows.
//!
//! - Latest wins: the publisher follows the stream's newest frame; while a
//!   send waits (a slow or lost link), newer frames replace older ones and
//!   the client's send queue stays short.
//! - Late joiners: the publisher answers requests on `SUBJECT.latest` with
//!   the newest frame, so an edge that starts or reconnects shows a picture
//!   at once instead of waiting for the next frame (which may be a second
//!   or more away on a slow source).
//! - Heartbeats: when no frame went out for [`HEARTBEAT_EVERY`] (an
//!   unchanged picture with `--drop-same-frames`, a slow `dir:`), a message
//!   without payload tells edges that the capture node is alive.
//! - Payload limit: the server's `max_payload` is read at every connection
//!   and logged; a frame that does not fit is not sent. Edges get a small
//!   placeholder that says so instead, and the log says what to change.
//! - Capture on demand across the bus: edges with viewers announce it on
//!   `SUBJECT.interest` every [`INTEREST_EVERY`]. Without
//!   `--capture-on-demand` the publisher counts as a viewer for good; with
//!   it, only while an edge announced viewers in the last
//!   [`INTEREST_TIMEOUT`], so the capture node pauses (after its linger)
//!   when nobody watches anywhere and resumes when an edge gets a viewer.

use super::address::BusAddress;
use super::connect::{LinkState, connect};
use super::wire;
use crate::frame::{Frame, FrameMeta};
use crate::hub::{FrameHub, ViewerGuard};
use async_nats::{Client, Message, Subscriber};
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// A message without payload goes out after this long without a frame.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How often an edge with viewers says so.
pub const INTEREST_EVERY: Duration = Duration::from_secs(1);
/// Edges' viewers count until this long after the last announcement.
pub const INTEREST_TIMEOUT: Duration = Duration::from_secs(3);
/// Requests for the newest frame waiting to be answered, at most.
const REQUEST_QUEUE: usize = 64;
/// How often a too-big frame is reported again in the log while they last.
const OVERSIZE_LOG_EVERY: Duration = Duration::from_secs(60);
/// Size and JPEG quality of the "too big for the bus" placeholder: small,
/// so that it fits however low the limit.
const NOTICE_SIZE: (u16, u16) = (320, 240);
const NOTICE_QUALITY: u8 = 60;

/// Publishes `hub`'s frames to `addr` until `cancel` fires.
pub async fn run(hub: Arc<FrameHub>, addr: BusAddress, cancel: CancellationToken) {
    // Without capture on demand the bus is a viewer for good.
    let _viewer = (!hub.capture_on_demand()).then(|| hub.viewer());
    let role = format!("publish {}", hub.name());
    let (client, link) = match connect(&addr, &role, REQUEST_QUEUE).await {
        Ok(c) => c,
        Err(e) => {
            // Only an unreadable credentials file gets here (connecting
            // itself retries in the background); the config check makes
            // this rare.
            error!(stream = hub.name(), "cannot publish to {addr}: {e}");
            return;
        }
    };
    let requests = tokio::select! {
        _ = cancel.cancelled() => return,
        r = client.subscribe(addr.latest_subject()) => r,
    };
    let requests = match requests {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(
                stream = hub.name(),
                "cannot answer requests for the newest frame: {e}"
            );
            None
        }
    };
    let interest = if hub.capture_on_demand() {
        match client.subscribe(addr.interest_subject()).await {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(stream = hub.name(), "cannot follow edges' viewers: {e}");
                None
            }
        }
    } else {
        None
    };
    let mut publisher = Publisher {
        hub,
        addr,
        client,
        link,
        last_sent: Instant::now(),
        oversize: Oversize::default(),
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        () = publisher.run(requests, interest) => {}
    }
    // Hands what is queued to the server before the process ends.
    let _ = tokio::time::timeout(Duration::from_millis(200), publisher.client.flush()).await;
}

struct Publisher {
    hub: Arc<FrameHub>,
    addr: BusAddress,
    client: Client,
    link: Arc<LinkState>,
    last_sent: Instant,
    oversize: Oversize,
}

/// When the log last said that frames are too big, and how many since.
#[derive(Default)]
struct Oversize {
    logged_at: Option<Instant>,
    unlogged: u64,
    notice_at: Option<Instant>,
}

impl Publisher {
    async fn run(&mut self, mut requests: Option<Subscriber>, mut interest: Option<Subscriber>) {
        let mut frames = self.hub.subscribe();
        // Held while edges announce viewers (capture on demand only).
        let mut edges_watch: Option<(ViewerGuard, Instant)> = None;
        let mut connected = self.link.watch();
        let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            tokio::select! {
                changed = frames.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let frame = frames.borrow_and_update().clone();
                    if let Some(frame) = frame {
                        self.send_frame(&frame, None).await;
                    }
                }
                request = next_message(&mut requests) => match request {
                    Some(request) => self.answer(request).await,
                    None => requests = None,
                },
                announced = next_message(&mut interest) => match announced {
                    Some(_) => match &mut edges_watch {
                        Some((_, at)) => *at = Instant::now(),
                        None => edges_watch = Some((self.hub.viewer(), Instant::now())),
                    },
                    None => interest = None,
                },
                up = connected.changed() => {
                    if up.is_err() {
                        return;
                    }
                    if *connected.borrow_and_update() {
                        self.check_payload_limit();
                    }
                }
                _ = heartbeat.tick() => {
                    if edges_watch.as_ref().is_some_and(|(_, at)| at.elapsed() >= INTEREST_TIMEOUT) {
                        edges_watch = None;
                    }
                    if self.last_sent.elapsed() >= HEARTBEAT_EVERY {
                        let seq = self.hub.latest().map_or(0, |f| f.seq);
                        let headers = wire::heartbeat_headers(seq);
                        let subject = self.addr.subject.clone();
                        if self.client.publish_with_headers(subject, headers, Bytes::new()).await.is_ok() {
                            self.last_sent = Instant::now();
                        }
                    }
                }
            }
        }

        async fn next_message(subscriber: &mut Option<Subscriber>) -> Option<Message> {
            use futures_util::StreamExt;
            match subscriber {
                Some(s) => s.next().await,
                None => std::future::pending().await,
            }
        }
    }

    /// Sends `frame` on the stream's subject, or to `reply` (a request for
    /// the newest frame).
    async fn send_frame(&mut self, frame: &Arc<Frame>, reply: Option<async_nats::Subject>) {
        let limit = self.client.max_payload();
        let jpeg = frame.jpeg();
        if limit > 0 && jpeg.len() + wire::HEADER_ROOM > limit {
            self.too_big(frame, limit, reply).await;
            return;
        }
        let reason = (!frame.online).then(|| self.hub.last_error()).flatten();
        let headers = wire::frame_headers(frame, reason.as_deref());
        let subject = reply.unwrap_or_else(|| self.addr.subject.clone().into());
        match self
            .client
            .publish_with_headers(subject, headers, jpeg)
            .await
        {
            Ok(()) => {
                self.last_sent = Instant::now();
                self.hub.stats().record_published();
            }
            Err(e) => warn!(stream = self.hub.name(), bus = %self.addr, "frame not published: {e}"),
        }
    }

    async fn answer(&mut self, request: Message) {
        let (Some(reply), Some(frame)) = (request.reply, self.hub.latest()) else {
            return;
        };
        self.send_frame(&frame, Some(reply)).await;
    }

    /// Logs the server's limit at each connection, and says at once if the
    /// newest frame would not fit.
    fn check_payload_limit(&mut self) {
        let limit = self.client.max_payload();
        info!(
            stream = self.hub.name(),
            bus = %self.addr,
            "publishing frames (server max_payload {})",
            kib(limit)
        );
        if let Some(frame) = self.hub.latest()
            && frame.jpeg().len() + wire::HEADER_ROOM > limit
        {
            self.report_oversize(frame.jpeg().len(), limit);
        }
    }

    /// Logs a frame over the limit: at once, then once a minute while
    /// they last, with the number not logged in between.
    fn report_oversize(&mut self, size: usize, limit: usize) {
        let now = Instant::now();
        let o = &mut self.oversize;
        if o.logged_at
            .is_some_and(|at| now.duration_since(at) < OVERSIZE_LOG_EVERY)
        {
            o.unlogged += 1;
            return;
        }
        let more = std::mem::take(&mut o.unlogged);
        let also = if more > 0 {
            format!(" ({more} more since the last message)")
        } else {
            String::new()
        };
        error!(
            stream = self.hub.name(),
            bus = %self.addr,
            "{}{also}",
            too_big_message(size, limit)
        );
        o.logged_at = Some(now);
    }

    /// A frame over the server's limit: logged (once a minute while they
    /// last) and replaced on the bus by a small placeholder that says why.
    async fn too_big(&mut self, frame: &Frame, limit: usize, reply: Option<async_nats::Subject>) {
        self.report_oversize(frame.jpeg().len(), limit);
        let now = Instant::now();
        let o = &mut self.oversize;
        // One notice a second is enough to keep edges informed.
        if reply.is_none()
            && o.notice_at
                .is_some_and(|at| now.duration_since(at) < HEARTBEAT_EVERY)
        {
            return;
        }
        o.notice_at = Some(now);
        let reason = format!(
            "frame of {} too big for the bus (max_payload {})",
            kib(frame.jpeg().len()),
            kib(limit)
        );
        let meta = FrameMeta {
            width: NOTICE_SIZE.0,
            height: NOTICE_SIZE.1,
            ..frame.meta
        };
        let (w, h) = NOTICE_SIZE;
        let Ok(jpeg) = crate::source::render_placeholder(w, h, self.hub.name(), &reason)
            .encode_jpeg(NOTICE_QUALITY)
        else {
            return;
        };
        let notice = Arc::new(Frame::new(frame.seq, jpeg, meta, false));
        let headers = wire::frame_headers(&notice, Some(&reason));
        let subject = reply.unwrap_or_else(|| self.addr.subject.clone().into());
        if self
            .client
            .publish_with_headers(subject, headers, notice.jpeg())
            .await
            .is_ok()
        {
            self.last_sent = Instant::now();
        }
    }
}

fn too_big_message(size: usize, limit: usize) -> String {
    format!(
        "a frame of {} does not fit the NATS server's max_payload of {}: not published. \
         Raise max_payload in the server's configuration (e.g. max_payload: 8MB), \
         or lower the stream's size or quality",
        kib(size),
        kib(limit)
    )
}

fn kib(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}
