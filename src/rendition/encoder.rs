//! A variant's encoder: takes the source's newest frame, re-encodes it on
//! the blocking pool and publishes it to the variant's hub, until the
//! variant stops. A frame that carries the raw camera picture it was
//! encoded from is made from that picture (no decode); others from the JPEG.
//!
//! The variants of a stream decode each source frame once between them
//! ([`super::shared`]).
//!
//! One frame is in work at a time. Source frames published meanwhile only
//! replace each other in the source's hub, so when the encode ends the
//! next one starts from the newest frame and the others are skipped: a
//! slow encoder lowers the variant's frame rate, never queues work. When
//! every client of the variant caps its rate (`?fps=`), frames are made
//! only as often as the fastest of them takes them.

use super::Variant;
use super::shared::SharedDecode;
use crate::frame::{FrameMeta, owned_jpeg};
use crate::hub::FrameHub;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;
use tracing::{debug, warn};

pub(super) async fn run(
    source: Arc<FrameHub>,
    variant: Arc<Variant>,
    total: Arc<AtomicU64>,
    shared: Arc<SharedDecode>,
) {
    let stop = variant.stop.clone();
    let key = variant.key;
    let _registration = shared.register(key);
    let stats = &variant.stats;
    let mut frames = source.subscribe();
    let mut last_seq = 0u64;
    let mut next_due = tokio::time::Instant::now();
    let mut failing = false;
    debug!(stream = %variant.hub.name(), "rendition started");
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = frames.changed() => if changed.is_err() { break },
        }
        let fastest = variant.lock_clients().fastest();
        if let Some(interval) = fastest {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(next_due) => {}
            }
            next_due = (next_due + interval).max(tokio::time::Instant::now());
        }
        let Some(frame) = frames.borrow_and_update().clone() else {
            continue;
        };
        if last_seq != 0 && frame.seq > last_seq + 1 {
            stats.skipped.fetch_add(frame.seq - last_seq - 1, Relaxed);
        }
        last_seq = frame.seq;
        let (sw, sh) = match (frame.meta.width, frame.meta.height) {
            (0, _) | (_, 0) => match crate::jpeg::check(&frame.jpeg()) {
                Ok(info) => (info.width, info.height),
                Err(_) => continue,
            },
            size => size,
        };
        // Never wider than this frame (a source may change size).
        let width = key.width.min(sw);
        let height = super::Key { width, ..key }.height_for(sw, sh);
        let started = Instant::now();
        let job = {
            let (frame, shared) = (frame.clone(), shared.clone());
            tokio::task::spawn_blocking(move || match frame.raw() {
                Some(raw) => super::scale::render_raw(&raw.image(), width, height, key.quality),
                None => shared.render(
                    frame.seq,
                    &frame.jpeg(),
                    (sw, sh),
                    (width, height),
                    key.quality,
                ),
            })
        };
        let done = tokio::select! {
            _ = stop.cancelled() => break,
            done = job => done,
        };
        let scaled = match done {
            Ok(Ok(scaled)) => scaled,
            Ok(Err(why)) => {
                stats.failed.fetch_add(1, Relaxed);
                if !failing {
                    warn!(stream = %variant.hub.name(), "cannot make rendition frame: {why}");
                    failing = true;
                }
                continue;
            }
            Err(e) => {
                stats.failed.fetch_add(1, Relaxed);
                warn!(stream = %variant.hub.name(), "rendition encoder ended: {e}");
                continue;
            }
        };
        failing = false;
        stats
            .encode_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
        *stats.size.lock().unwrap_or_else(|e| e.into_inner()) = (scaled.width, scaled.height);
        let from_raw = frame.raw().is_some();
        *stats.last_from.lock().unwrap_or_else(|e| e.into_inner()) = Some(from_raw);
        if from_raw {
            stats.from_raw.fetch_add(1, Relaxed);
        } else {
            stats.decoded.fetch_add(1, Relaxed);
        }
        let meta = FrameMeta {
            width: scaled.width,
            height: scaled.height,
            ..frame.meta
        };
        if frame.online {
            variant.hub.publish_owned(owned_jpeg(scaled.jpeg), meta);
        } else {
            let why = source
                .last_error()
                .unwrap_or_else(|| "source offline".into());
            variant.hub.publish_offline(&scaled.jpeg, meta, &why);
        }
        stats.encoded.fetch_add(1, Relaxed);
        total.fetch_add(1, Relaxed);
    }
    debug!(stream = %variant.hub.name(), "rendition stopped");
}
