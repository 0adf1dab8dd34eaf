//! Renditions: a stream at another size or JPEG quality, encoded once per
//! source frame and shared by every client that asked for it.
//!
//! ```text
//!  source FrameHub ──latest──▶ encoder task (one per live variant) ──▶ variant FrameHub ──▶ clients
//!                               decode at reduced scale (or take the    (served like any stream)
//!                               raw camera picture), resize, encode
//!                               on the blocking pool
//! ```
//! A source JPEG is decoded once for all of the stream's variants
//! ([`shared`]), at the scale the largest needs.
//! A variant ([`Variant`]) is a `(width, quality)` pair; it starts with its
//! first client (a [`Lease`]) and stops when the last one leaves. Its
//! encoder takes the source's newest frame whenever it is free, so a slow
//! encoder skips source frames and nothing queues. Ad-hoc sizes are snapped
//! to a few widths ([`want`]), and at most `max_renditions` ad-hoc variants
//! run per stream: past that a request gets the nearest live one (or the
//! source itself). Configured renditions are always available.

pub mod decode;
mod encoder;
pub mod planes;
pub mod scale;
mod shared;
pub mod want;

use crate::frame::Frame;
use crate::hub::{FrameHub, ViewerGuard};
use serde::Serialize;
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
pub use want::{Key, NamedRendition, Wanted};

/// Ad-hoc variants per stream when the configuration does not say.
pub const DEFAULT_MAX_RENDITIONS: usize = 4;

/// A stream's rendition settings.
#[derive(Clone, Debug)]
pub struct RenditionSettings {
    pub named: Vec<NamedRendition>,
    /// Most live ad-hoc variants.
    pub max_adhoc: usize,
    /// Quality of variants that do not ask for one.
    pub quality: u8,
}

impl Default for RenditionSettings {
    fn default() -> Self {
        RenditionSettings {
            named: Vec::new(),
            max_adhoc: DEFAULT_MAX_RENDITIONS,
            quality: 80,
        }
    }
}

/// The live variants of one stream.
pub struct Renditions {
    source: Arc<FrameHub>,
    settings: RenditionSettings,
    live: Mutex<Vec<Arc<Variant>>>,
    /// Variant frames encoded for this stream since start, all variants.
    encoded_total: Arc<AtomicU64>,
    /// The decode of the newest source frame, shared by the variants.
    shared: Arc<shared::SharedDecode>,
    tasks: TaskTracker,
    /// Past frames being encoded for `/snapshot?at=` with a size: each is a
    /// decode and an encode on the blocking pool, so a flood of such
    /// requests must not take every core.
    past_encodes: tokio::sync::Semaphore,
}

/// Past frames a stream encodes at once; more requests wait for a turn.
const PAST_ENCODES_AT_ONCE: usize = 2;

/// One live variant.
pub struct Variant {
    key: Key,
    /// The configured rendition it is, if any.
    name: Option<String>,
    hub: Arc<FrameHub>,
    /// Cancelled when the last client leaves (or at shutdown).
    stop: CancellationToken,
    clients: Mutex<Clients>,
    stats: EncodeStats,
    /// The HTTP side's send loops for this variant, made by its first
    /// client that wants them.
    sender: OnceLock<Arc<dyn Any + Send + Sync>>,
}

/// The clients of a variant and the frame rate each needs.
#[derive(Default)]
struct Clients {
    count: usize,
    /// Clients without a rate cap.
    uncapped: usize,
    /// The caps (`?fps=`) of the others, as intervals between frames.
    capped: Vec<Duration>,
}

#[derive(Default)]
struct EncodeStats {
    encoded: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    encode_nanos: AtomicU64,
    /// Frames made by decoding the source's JPEG.
    decoded: AtomicU64,
    /// Frames made from the camera picture the source's JPEG was encoded
    /// from, with no decode.
    from_raw: AtomicU64,
    /// The size of the last frame made.
    size: Mutex<(u16, u16)>,
    /// Whether the last frame was made from a raw picture.
    last_from: Mutex<Option<bool>>,
}

/// A variant's state for `/status` and `/metrics`.
#[derive(Clone, Debug, Serialize)]
pub struct RenditionStatus {
    /// The configured rendition's name, or `WIDTHxHEIGHTqQUALITY`.
    pub name: String,
    pub configured: bool,
    pub width: u16,
    pub height: u16,
    pub quality: u8,
    pub clients: u64,
    pub frames_encoded: u64,
    /// Source frames this variant did not encode: its encoder was busy
    /// with an earlier one, or no client wanted that many.
    pub frames_skipped: u64,
    /// Source frames that could not be re-encoded.
    pub frames_failed: u64,
    /// Frames made by decoding the source's JPEG.
    pub frames_decoded: u64,
    /// Frames made from the raw camera picture, with no decode.
    pub frames_from_raw: u64,
    /// What the last frame was made from: `"raw"` (the camera picture),
    /// `"jpeg"` (the source's JPEG, decoded) or `""` (none yet).
    pub from: &'static str,
    pub encode_ms_mean: f64,
    /// Encoding time, all frames (for `/metrics`).
    #[serde(skip)]
    pub encode_seconds: f64,
}

/// What a request is served from.
pub enum Choice {
    /// The source stream itself.
    Source,
    Variant(Lease),
}

/// A client's hold on a variant: while any lease exists the variant runs.
pub struct Lease {
    renditions: Arc<Renditions>,
    variant: Arc<Variant>,
    cap: Option<Duration>,
    /// A variant's client watches the source too (`--capture-on-demand`).
    _viewer: ViewerGuard,
}

impl Renditions {
    pub fn new(
        source: Arc<FrameHub>,
        settings: RenditionSettings,
        tasks: TaskTracker,
    ) -> Arc<Renditions> {
        Arc::new(Renditions {
            source,
            settings,
            live: Mutex::new(Vec::new()),
            encoded_total: Arc::default(),
            shared: Arc::default(),
            tasks,
            past_encodes: tokio::sync::Semaphore::new(PAST_ENCODES_AT_ONCE),
        })
    }

    pub fn named(&self) -> &[NamedRendition] {
        &self.settings.named
    }

    /// The source's size: from its newest frame, waiting up to `wait` for
    /// a first one.
    async fn source_size(&self, wait: Duration, cancel: &CancellationToken) -> Option<(u16, u16)> {
        let size_of = |hub: &FrameHub| {
            let f = hub.latest()?;
            if f.meta.width > 0 && f.meta.height > 0 {
                return Some((f.meta.width, f.meta.height));
            }
            let info = crate::jpeg::check(&f.jpeg()).ok()?;
            (info.width > 0 && info.height > 0).then_some((info.width, info.height))
        };
        let mut frames = self.source.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(size) = size_of(&self.source) {
                return Some(size);
            }
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = tokio::time::sleep_until(deadline) => return None,
                changed = frames.changed() => changed.ok()?,
            }
        }
    }

    /// The variant (or the source) that serves `wanted`, started if it is
    /// not live yet. `cap`: the client's `?fps=` interval. `Err` holds the
    /// status and reason of a refusal. `shutdown` ends a started variant.
    pub async fn choose(
        self: &Arc<Self>,
        wanted: &Wanted,
        cap: Option<Duration>,
        wait: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Choice, (u16, String)> {
        let Some((w, h)) = self.source_size(wait, shutdown).await else {
            return Err((
                503,
                format!("stream {}: no frame yet to scale", self.source.name()),
            ));
        };
        let quality = self.settings.quality;
        let named = &self.settings.named;
        let Some(key) = want::resolve(wanted, named, w, h, quality).map_err(|e| (400, e))? else {
            return Ok(Choice::Source);
        };
        let configured = self.configured_name(key, w, h);
        let mut live = self.lock_live();
        let existing = live.iter().find(|v| v.key == key).cloned();
        let variant = match existing {
            Some(v) => v,
            None => {
                let adhoc = live.iter().filter(|v| v.name.is_none()).count();
                if configured.is_none() && adhoc >= self.settings.max_adhoc {
                    // Over the cap: the nearest live variant, or the source.
                    match want::nearest(key, live.iter().map(|v| v.key), w, quality) {
                        Some(k) => live
                            .iter()
                            .find(|v| v.key == k)
                            .cloned()
                            .ok_or((500, "variant vanished".to_owned()))?,
                        None => return Ok(Choice::Source),
                    }
                } else {
                    let v = self.start(key, configured, shutdown);
                    live.push(v.clone());
                    v
                }
            }
        };
        variant.lock_clients().join(cap);
        drop(live);
        Ok(Choice::Variant(Lease {
            renditions: self.clone(),
            variant,
            cap,
            _viewer: self.source.viewer(),
        }))
    }

    /// One past frame (from the history) at the size and quality `wanted`
    /// asks for, encoded once on the blocking pool: `Ok(None)` when that is
    /// the frame itself. Sizes snap as for live variants.
    pub async fn render_past(
        &self,
        wanted: &Wanted,
        frame: Arc<Frame>,
    ) -> Result<Option<Vec<u8>>, (u16, String)> {
        let (w, h) = match (frame.meta.width, frame.meta.height) {
            (0, _) | (_, 0) => match crate::jpeg::check(&frame.jpeg()) {
                Ok(info) => (info.width, info.height),
                Err(e) => return Err((500, format!("the past frame is no JPEG: {e}"))),
            },
            size => size,
        };
        let quality = self.settings.quality;
        let named = &self.settings.named;
        let Some(key) = want::resolve(wanted, named, w, h, quality).map_err(|e| (400, e))? else {
            return Ok(None);
        };
        let width = key.width.min(w);
        let height = Key { width, ..key }.height_for(w, h);
        // Never closed, so the wait ends with a turn. A waiting request holds
        // only its connection, which the connection limits already bound.
        let _turn = self.past_encodes.acquire().await;
        let job = tokio::task::spawn_blocking(move || {
            scale::render(&frame.jpeg(), width, height, key.quality)
        });
        match job.await {
            Ok(Ok(scaled)) => Ok(Some(scaled.jpeg)),
            Ok(Err(why)) => Err((500, format!("cannot scale the past frame: {why}"))),
            Err(e) => Err((500, format!("cannot scale the past frame: {e}"))),
        }
    }

    /// The configured rendition that `key` is, if any.
    fn configured_name(&self, key: Key, w: u16, h: u16) -> Option<String> {
        let q = self.settings.quality;
        self.settings.named.iter().find_map(|r| {
            let k = want::resolve(
                &Wanted::Named(r.name.clone()),
                &self.settings.named,
                w,
                h,
                q,
            );
            (k == Ok(Some(key))).then(|| r.name.clone())
        })
    }

    fn start(&self, key: Key, name: Option<String>, shutdown: &CancellationToken) -> Arc<Variant> {
        let label = name.clone().unwrap_or_else(|| key.to_string());
        let hub = FrameHub::new(
            &format!("{}/{label}", self.source.name()),
            self.source.name(),
            "rendition",
        );
        // Its frames keep the source's capture times: marked like the
        // source's, a client of the variant never gets a picture from
        // before a `--capture-on-demand` pause as new (its own demand is
        // never asked; the lease registers the client with the source).
        if self.source.capture_on_demand() {
            hub.set_capture_on_demand(Some(Duration::from_secs(3600)));
        }
        let variant = Arc::new(Variant {
            key,
            name,
            hub,
            stop: shutdown.child_token(),
            clients: Mutex::default(),
            stats: EncodeStats::default(),
            sender: OnceLock::new(),
        });
        self.tasks.spawn(encoder::run(
            self.source.clone(),
            variant.clone(),
            self.encoded_total.clone(),
            self.shared.clone(),
        ));
        variant
    }

    /// Every live variant's state.
    pub fn status(&self) -> Vec<RenditionStatus> {
        let mut list: Vec<RenditionStatus> = self.lock_live().iter().map(|v| v.status()).collect();
        list.sort_by_key(|s| (std::cmp::Reverse(s.width), s.quality));
        list
    }

    /// Variant frames encoded for this stream since the server started.
    pub fn frames_encoded(&self) -> u64 {
        self.encoded_total.load(Relaxed)
    }

    /// Source frames decoded for the variants since the server started:
    /// one per source frame however many variants re-encode it.
    pub fn source_decodes(&self) -> u64 {
        self.shared.decodes()
    }

    fn lock_live(&self) -> MutexGuard<'_, Vec<Arc<Variant>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clients {
    fn join(&mut self, cap: Option<Duration>) {
        self.count += 1;
        match cap {
            None => self.uncapped += 1,
            Some(c) => self.capped.push(c),
        }
    }

    fn leave(&mut self, cap: Option<Duration>) {
        self.count = self.count.saturating_sub(1);
        match cap {
            None => self.uncapped = self.uncapped.saturating_sub(1),
            Some(c) => {
                if let Some(i) = self.capped.iter().position(|x| *x == c) {
                    self.capped.swap_remove(i);
                }
            }
        }
    }

    /// The shortest interval between frames any client needs (`None`:
    /// every source frame).
    fn fastest(&self) -> Option<Duration> {
        if self.uncapped > 0 {
            return None;
        }
        self.capped.iter().min().copied()
    }
}

impl Variant {
    pub fn hub(&self) -> &Arc<FrameHub> {
        &self.hub
    }

    fn lock_clients(&self) -> MutexGuard<'_, Clients> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn status(&self) -> RenditionStatus {
        let s = &self.stats;
        let encoded = s.encoded.load(Relaxed);
        let nanos = s.encode_nanos.load(Relaxed);
        let (width, height) = *s.size.lock().unwrap_or_else(|e| e.into_inner());
        let mean_ms = if encoded == 0 {
            0.0
        } else {
            nanos as f64 / encoded as f64 / 1e6
        };
        RenditionStatus {
            name: self
                .name
                .clone()
                .unwrap_or_else(|| format!("{width}x{height}q{}", self.key.quality)),
            configured: self.name.is_some(),
            width: if width == 0 { self.key.width } else { width },
            height,
            quality: self.key.quality,
            clients: self.lock_clients().count as u64,
            frames_encoded: encoded,
            frames_skipped: s.skipped.load(Relaxed),
            frames_failed: s.failed.load(Relaxed),
            frames_decoded: s.decoded.load(Relaxed),
            frames_from_raw: s.from_raw.load(Relaxed),
            from: match *s.last_from.lock().unwrap_or_else(|e| e.into_inner()) {
                Some(true) => "raw",
                Some(false) => "jpeg",
                None => "",
            },
            encode_ms_mean: (mean_ms * 100.0).round() / 100.0,
            encode_seconds: nanos as f64 / 1e9,
        }
    }
}

impl Lease {
    /// The variant's hub: serve it like any stream.
    pub fn hub(&self) -> &Arc<FrameHub> {
        &self.variant.hub
    }

    /// Cancelled when the variant stops.
    pub fn stopped(&self) -> &CancellationToken {
        &self.variant.stop
    }

    /// The value kept with the variant for its HTTP send loops, made by
    /// `make` on first use.
    pub fn sender<T: Any + Send + Sync>(&self, make: impl FnOnce() -> Arc<T>) -> Option<Arc<T>> {
        self.variant
            .sender
            .get_or_init(|| make() as Arc<dyn Any + Send + Sync>)
            .clone()
            .downcast::<T>()
            .ok()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut live = self.renditions.lock_live();
        let mut clients = self.variant.lock_clients();
        clients.leave(self.cap);
        if clients.count == 0 {
            live.retain(|v| !Arc::ptr_eq(v, &self.variant));
            self.variant.stop.cancel();
        }
    }
}
