//! `FrameHub`: the meeting point of one stream's source and its clients.
//!
//! The hub keeps only the newest frame (a `watch` channel of `Arc<Frame>`).
//! Clients wait for a frame newer than the one they sent last and write it
//! whole, so a slow client skips frames instead of queueing them: memory per
//! client is one `Arc` and its socket buffer, whatever the client does.
//! The hub also keeps the stream's source state for `/status`, its counters
//! ([`HubStats`], `hub.stats()`) and who watches it ([`Demand`],
//! `hub.demand()`).

mod stats;

pub use stats::{HubStats, SendTally};

use crate::demand::Demand;
use crate::frame::{Frame, FrameMeta};
use crate::history::{FrameStore, HistoryStats};
use crate::source::yuv::RawPicture;
use bytes::Bytes;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The newest frame of a stream, if any has been published yet.
pub type Latest = Option<Arc<Frame>>;

/// One stream's latest frame, state and statistics.
pub struct FrameHub {
    name: String,
    source: String,
    kind: &'static str,
    tx: watch::Sender<Latest>,
    seq: AtomicU64,
    stats: HubStats,
    state: Mutex<State>,
    started: Instant,
    /// `--drop-same-frames`: publish a frame identical to the previous one
    /// only once `SAME_FRAME_REPEAT` has passed.
    drop_same: AtomicBool,
    /// Whether anybody watches (`--capture-on-demand`).
    demand: Demand,
    /// Told of every frame right after it is published, on the publisher's
    /// thread (the HTTP side's send loops; see [`FrameListener`]).
    /// Weak: the listener's tasks hold the hub.
    listener: OnceLock<Weak<dyn FrameListener>>,
    /// The stream's recent frames, when it keeps them (`--history`).
    history: OnceLock<Arc<dyn FrameStore>>,
}

/// Something that acts on each frame as it is published, on the thread that
/// publishes it, before the publisher goes on. It must not block: the
/// stream's send loops use it to send to a few clients at once without a
/// thread switch, and to wake their own tasks when there are many.
pub trait FrameListener: Send + Sync {
    fn published(&self, hub: &FrameHub, frame: &Arc<Frame>);
}

/// With `--drop-same-frames`, an unchanged picture is still sent this often,
/// so browsers and players keep the connection and show a live timestamp.
pub const SAME_FRAME_REPEAT: Duration = Duration::from_secs(1);

struct State {
    online: bool,
    last_error: Option<String>,
    width: u16,
    height: u16,
    health: FrameHealth,
    capture: Option<String>,
}

/// When the source last delivered a real frame and when it last delivered
/// a bad one: how the supervisor tells a source that runs but shows
/// nothing (a silent command, a text file, a relay sending garbage).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrameHealth {
    pub last_good: Option<Instant>,
    /// The last bad frame and why it was dropped.
    pub last_bad: Option<(Instant, String)>,
}

/// A stream's state as reported by `/status` (and later `/metrics`).
#[derive(Clone, Debug, Serialize)]
pub struct StreamStatus {
    pub name: String,
    pub source: String,
    pub kind: &'static str,
    pub online: bool,
    pub last_error: Option<String>,
    pub width: u16,
    pub height: u16,
    pub captured_fps: f64,
    pub delivered_fps: f64,
    pub clients: u64,
    pub frames_captured: u64,
    pub frames_delivered: u64,
    /// Frames a slow or rate-capped client did not get because a newer one replaced them.
    pub frames_skipped: u64,
    /// Frames the source produced that were not complete JPEGs, dropped.
    pub frames_dropped: u64,
    pub bytes_out: u64,
    /// Frames identical to the previous one, not published (`--drop-same-frames`).
    pub frames_unchanged: u64,
    /// Frames sent to a NATS bus (`publish`).
    pub frames_published: u64,
    /// Frames a source's input delivered faster than the stream took them,
    /// replaced by newer ones (a `nats://` subscription that fell behind).
    pub frames_replaced: u64,
    /// Capture paused because nobody watches (`--capture-on-demand`).
    pub paused: bool,
    pub last_frame_age_ms: Option<u64>,
    pub uptime_s: f64,
    /// What a camera actually delivers (format, size, frame rate in effect),
    /// when it says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<String>,
    /// The recent frames kept (`--history`), when the stream keeps them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryStats>,
}

impl FrameHub {
    /// A hub for stream `name` fed by `source` (its spec, for display) of `kind`.
    pub fn new(name: &str, source: &str, kind: &'static str) -> Arc<FrameHub> {
        let (tx, _) = watch::channel(None);
        Arc::new(FrameHub {
            name: name.to_owned(),
            source: source.to_owned(),
            kind,
            tx,
            seq: AtomicU64::new(0),
            stats: HubStats::default(),
            state: Mutex::new(State {
                online: false,
                last_error: None,
                width: 0,
                height: 0,
                health: FrameHealth::default(),
                capture: None,
            }),
            started: Instant::now(),
            drop_same: AtomicBool::new(false),
            demand: Demand::default(),
            listener: OnceLock::new(),
            history: OnceLock::new(),
        })
    }

    /// Skips frames identical to the previous one (still repeating the
    /// picture every `SAME_FRAME_REPEAT`).
    pub fn set_drop_same_frames(&self, on: bool) {
        self.drop_same.store(on, Relaxed);
    }

    /// Lets sources pause after `linger` without viewers (`None`: never).
    pub fn set_capture_on_demand(&self, linger: Option<Duration>) {
        self.demand.set_linger(linger);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stream's counters, rates and latency.
    pub fn stats(&self) -> &HubStats {
        &self.stats
    }

    /// Who watches the stream, for sources that pause without viewers.
    pub fn demand(&self) -> &Demand {
        &self.demand
    }

    /// Publishes a complete JPEG from the source; the stream is online.
    /// With `--drop-same-frames`, a JPEG identical to the current frame is
    /// counted but not published (the current frame is returned).
    pub fn publish(&self, jpeg: &[u8], meta: FrameMeta) -> Arc<Frame> {
        self.publish_owned(Bytes::copy_from_slice(jpeg), meta)
    }

    /// [`publish`](Self::publish) without a copy: the frame keeps `jpeg`.
    /// For JPEGs that own their memory (a file's contents, an encoder's
    /// output), not views into a larger read buffer that the frame would
    /// keep alive.
    pub fn publish_owned(&self, jpeg: Bytes, meta: FrameMeta) -> Arc<Frame> {
        self.publish_with_raw(jpeg, meta, None)
    }

    /// [`publish_owned`](Self::publish_owned) with the raw camera picture
    /// the JPEG was encoded from.
    pub fn publish_with_raw(
        &self,
        jpeg: Bytes,
        meta: FrameMeta,
        raw: Option<Arc<RawPicture>>,
    ) -> Arc<Frame> {
        self.stats.captured.fetch_add(1, Relaxed);
        {
            let mut st = self.lock_state();
            st.online = true;
            st.last_error = None;
            st.health.last_good = Some(Instant::now());
            if meta.width != 0 {
                st.width = meta.width;
                st.height = meta.height;
            }
        }
        if self.drop_same.load(Relaxed)
            && let Some(prev) = self.latest()
            && prev.online
            && prev.age() < SAME_FRAME_REPEAT
            // Slice equality compares lengths first, then one memcmp: exact,
            // and cheaper than hashing the new frame.
            && prev.jpeg() == jpeg
        {
            self.stats.unchanged.fetch_add(1, Relaxed);
            return prev;
        }
        self.send(jpeg, meta, true, raw)
    }

    /// Publishes a placeholder while the source is down, and records why.
    pub fn publish_offline(&self, placeholder: &[u8], meta: FrameMeta, reason: &str) {
        self.set_offline(reason);
        self.send(Bytes::copy_from_slice(placeholder), meta, false, None);
    }

    /// Marks the source offline without publishing a frame.
    pub fn set_offline(&self, reason: &str) {
        let mut st = self.lock_state();
        st.online = false;
        st.last_error = Some(reason.to_owned());
    }

    /// Counts a bad frame and remembers why it was dropped (see
    /// [`frame_health`](Self::frame_health)).
    pub fn record_bad_frame(&self, reason: &str) {
        self.stats.record_dropped();
        self.note_bad_input(reason);
    }

    /// Remembers input that held no frame at all (bytes without a JPEG
    /// start), which counts as bad for [`frame_health`](Self::frame_health)
    /// but not as a dropped frame.
    pub fn note_bad_input(&self, reason: &str) {
        let mut st = self.lock_state();
        let now = Instant::now();
        match &mut st.health.last_bad {
            // Reuses the string: a broken source may send thousands a second.
            Some((at, why)) => {
                *at = now;
                why.clear();
                why.push_str(reason);
            }
            None => st.health.last_bad = Some((now, reason.to_owned())),
        }
    }

    /// When the source last delivered a good and a bad frame.
    pub fn frame_health(&self) -> FrameHealth {
        self.lock_state().health.clone()
    }

    fn send(
        &self,
        jpeg: Bytes,
        meta: FrameMeta,
        online: bool,
        raw: Option<Arc<RawPicture>>,
    ) -> Arc<Frame> {
        let seq = self.seq.fetch_add(1, Relaxed) + 1;
        let frame = Arc::new(Frame::new(seq, jpeg, meta, online).with_raw(raw));
        // Into the history first: a client catching up from the history
        // finds there every frame it may see as the newest.
        if let Some(history) = self.history.get() {
            history.record(&frame);
        }
        self.tx.send_replace(Some(frame.clone()));
        if let Some(listener) = self.listener.get().and_then(Weak::upgrade) {
            listener.published(self, &frame);
        }
        frame
    }

    /// Sets the listener told of every frame (once; later calls are ignored).
    pub fn set_listener(&self, listener: Weak<dyn FrameListener>) {
        let _ = self.listener.set(listener);
    }

    /// Keeps the stream's frames in `store` from now on (once; later calls
    /// are ignored).
    pub fn set_history(&self, store: Arc<dyn FrameStore>) {
        let _ = self.history.set(store);
    }

    /// The stream's recent frames, when it keeps them.
    pub fn history(&self) -> Option<&Arc<dyn FrameStore>> {
        self.history.get()
    }

    /// A receiver that sees every newer frame (and the current one as unseen).
    pub fn subscribe(&self) -> watch::Receiver<Latest> {
        let mut rx = self.tx.subscribe();
        rx.mark_changed();
        rx
    }

    /// The newest frame, if any.
    pub fn latest(&self) -> Latest {
        self.tx.borrow().clone()
    }

    /// Registers a stream client for the lifetime of the returned guard.
    /// A client is also a viewer (see [`viewer`](Self::viewer)).
    pub fn client(self: &Arc<Self>) -> ClientGuard {
        self.stats.clients.fetch_add(1, Relaxed);
        ClientGuard {
            _viewer: self.viewer(),
            hub: self.clone(),
            last_seq: 0,
            frames: 0,
            since: Instant::now(),
        }
    }

    /// Registers interest in fresh frames (a snapshot request waiting for
    /// one) for the lifetime of the returned guard: a paused source resumes.
    pub fn viewer(self: &Arc<Self>) -> ViewerGuard {
        self.demand.join();
        ViewerGuard { hub: self.clone() }
    }

    /// Whether `--capture-on-demand` is set for this stream.
    pub fn capture_on_demand(&self) -> bool {
        self.demand.enabled()
    }

    /// Whether the source is currently delivering real frames.
    pub fn online(&self) -> bool {
        self.lock_state().online
    }

    /// Last reason the source gave for being offline.
    pub fn last_error(&self) -> Option<String> {
        self.lock_state().last_error.clone()
    }

    /// Records what the source's device actually delivers, for `/status`.
    pub fn set_capture(&self, what: Option<String>) {
        self.lock_state().capture = what;
    }

    /// The stream's state and counters.
    pub fn status(&self) -> StreamStatus {
        let c = &self.stats;
        let (captured_fps, delivered_fps) = c.rates();
        let st = self.lock_state();
        StreamStatus {
            name: self.name.clone(),
            source: self.source.clone(),
            kind: self.kind,
            online: st.online,
            last_error: st.last_error.clone(),
            width: st.width,
            height: st.height,
            captured_fps: round2(captured_fps),
            delivered_fps: round2(delivered_fps),
            clients: c.clients.load(Relaxed),
            frames_captured: c.captured.load(Relaxed),
            frames_delivered: c.delivered.load(Relaxed),
            frames_skipped: c.skipped.load(Relaxed),
            frames_dropped: c.corrupt.load(Relaxed),
            bytes_out: c.bytes_out.load(Relaxed),
            frames_unchanged: c.unchanged.load(Relaxed),
            frames_published: c.published.load(Relaxed),
            frames_replaced: c.replaced.load(Relaxed),
            paused: self.demand.paused(),
            last_frame_age_ms: self.latest().map(|f| f.age().as_millis() as u64),
            uptime_s: round2(self.started.elapsed().as_secs_f64()),
            capture: st.capture.clone(),
            history: self.history.get().map(|h| h.stats()),
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state holds plain values only; a panic while it was held cannot
        // leave it inconsistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A connected stream client; counts what it was sent and unregisters on drop.
pub struct ClientGuard {
    hub: Arc<FrameHub>,
    last_seq: u64,
    frames: u64,
    since: Instant,
    /// Dropped with the client: the stream loses a viewer.
    _viewer: ViewerGuard,
}

/// Somebody waiting for or watching a stream's frames; see [`FrameHub::viewer`].
pub struct ViewerGuard {
    hub: Arc<FrameHub>,
}

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        self.hub.demand.leave();
    }
}

impl ClientGuard {
    /// Records that `frame` was written whole to this client (counters and
    /// the capture-to-send time).
    pub fn sent(&mut self, frame: &Frame) {
        self.hub.stats.record_one_sent(frame, self.last_seq);
        self.last_seq = frame.seq;
        self.frames += 1;
    }

    /// Records that `frame`, a frame from the history, was written whole to
    /// this client: counted like a live one, but its age is no
    /// capture-to-send time.
    pub fn replayed(&mut self, frame: &Frame) {
        self.hub
            .stats
            .count_sent(&SendTally::of(frame, self.last_seq));
        self.last_seq = frame.seq;
        self.frames += 1;
    }

    /// Frames written to this client so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Time since the client connected.
    pub fn connected_for(&self) -> Duration {
        self.since.elapsed()
    }

    /// Counts bytes sent outside of frames (response heads, snapshots).
    pub fn sent_bytes(&self, n: usize) {
        self.hub.stats.count_bytes_out(n);
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.hub.stats.clients.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slow_receiver_sees_only_the_latest_frame() {
        let hub = FrameHub::new("t", "pattern", "pattern");
        let mut rx = hub.subscribe();
        for _ in 0..5 {
            hub.publish(b"\xff\xd8\xff\xd9", FrameMeta::now(1, 1));
        }
        rx.changed().await.expect("sender alive");
        let f = rx.borrow_and_update().clone().expect("a frame");
        assert_eq!(f.seq, 5);
        assert!(!rx.has_changed().expect("sender alive"));
    }

    #[test]
    fn client_counters() {
        let hub = FrameHub::new("t", "pattern", "pattern");
        let a = hub.publish(b"\xff\xd8\xff\xd9", FrameMeta::now(1, 1));
        let _ = hub.publish(b"\xff\xd8\xff\xd9", FrameMeta::now(1, 1));
        let c = hub.publish(b"\xff\xd8\xff\xd9", FrameMeta::now(1, 1));
        {
            let mut g = hub.client();
            assert_eq!(hub.status().clients, 1);
            g.sent(&a);
            g.sent(&c);
        }
        let s = hub.status();
        assert_eq!(s.clients, 0);
        assert_eq!(s.frames_delivered, 2);
        assert_eq!(s.frames_skipped, 1);
        assert_eq!(s.frames_captured, 3);
        assert!(s.online);
    }

    #[test]
    fn drop_same_frames_skips_repeats_within_a_second() {
        let hub = FrameHub::new("t", "pattern", "pattern");
        let a = hub.publish(b"\xff\xd8a\xff\xd9", FrameMeta::now(1, 1));
        // Off by default: identical frames are published.
        let b = hub.publish(b"\xff\xd8a\xff\xd9", FrameMeta::now(1, 1));
        assert_eq!(b.seq, a.seq + 1);
        hub.set_drop_same_frames(true);
        let c = hub.publish(b"\xff\xd8a\xff\xd9", FrameMeta::now(1, 1));
        assert_eq!(c.seq, b.seq, "identical frame not published");
        let d = hub.publish(b"\xff\xd8b\xff\xd9", FrameMeta::now(1, 1));
        assert_eq!(d.seq, b.seq + 1, "a change is published");
        // The same picture after a second is published again.
        let old = FrameMeta {
            captured_at: Instant::now() - SAME_FRAME_REPEAT,
            ..FrameMeta::now(1, 1)
        };
        let hub2 = FrameHub::new("u", "pattern", "pattern");
        hub2.set_drop_same_frames(true);
        let e = hub2.publish(b"\xff\xd8a\xff\xd9", old);
        let f = hub2.publish(b"\xff\xd8a\xff\xd9", FrameMeta::now(1, 1));
        assert_eq!(f.seq, e.seq + 1, "repeated once a second");
        let s = hub.status();
        assert_eq!((s.frames_captured, s.frames_unchanged), (4, 1));
    }

    #[test]
    fn viewers_are_clients_and_snapshot_waiters() {
        let hub = FrameHub::new("t", "pattern", "pattern");
        hub.set_capture_on_demand(Some(Duration::from_millis(1)));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!hub.demand().has_demand());
        let v = hub.viewer();
        assert!(hub.demand().has_demand());
        drop(v);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!hub.demand().has_demand());
        let c = hub.client();
        assert!(hub.demand().has_demand());
        drop(c);
        assert_eq!(hub.status().clients, 0);
    }
}
