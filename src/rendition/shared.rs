//! One decode per source frame for all of a stream's variants.
//!
//! Re-encoding a source JPEG starts with decoding it, and the decode is
//! most of a variant frame's cost: the entropy decoding reads every
//! coefficient of the full-size frame whatever the output size. With a
//! 640- and a 320-wide variant of a 720p camera, two decodes per source
//! frame would be spent where one does: decoded once at the scale the
//! largest live variant needs, the planes are resized for the others
//! (a 2:1 average of 640x360 planes costs a fraction of a decode).
//!
//! Every variant's encoder is woken by the same source frame and runs on a
//! blocking-pool thread of its own. The first to reach the frame starts
//! its decode; the others wait for that one instead of starting their own
//! (`OnceLock`: a waiting thread sleeps, it does not spin). Only the
//! newest source frame's decode is kept, so memory stays one decoded
//! frame per stream. A stream with one JPEG variant decodes as before,
//! straight for that variant, with nothing kept.

use super::Key;
use super::decode::DecodedPlanes;
use super::scale::{self, Scaled};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// A stream's shared decode of its newest source frame.
#[derive(Default)]
pub(super) struct SharedDecode {
    /// One entry per running variant encoder.
    keys: Mutex<Vec<Key>>,
    newest: Mutex<Option<Arc<Decoding>>>,
    /// Source frames decoded for renditions, since start.
    decodes: AtomicU64,
}

/// One source frame's decode, made by the first variant that needs it.
struct Decoding {
    /// The source frame's sequence number in its hub.
    seq: u64,
    /// The planes are at least this size.
    width: u16,
    height: u16,
    /// `None`: the planar decode declined the frame; each variant then
    /// takes the general path on its own.
    planes: OnceLock<Option<DecodedPlanes>>,
}

/// A variant encoder's place in [`SharedDecode`]'s list, for as long as
/// the encoder runs: dropped (the task ends or is cancelled), it leaves.
pub(super) struct Registration {
    shared: Arc<SharedDecode>,
    key: Key,
}

impl SharedDecode {
    pub(super) fn register(self: &Arc<Self>, key: Key) -> Registration {
        self.lock_keys().push(key);
        Registration {
            shared: self.clone(),
            key,
        }
    }

    /// Source frames decoded for renditions since start (all variants).
    pub(super) fn decodes(&self) -> u64 {
        self.decodes.load(Relaxed)
    }

    /// Source frame `seq` (`jpeg`, `source` = its width and height)
    /// re-encoded at `width`x`height` and `quality`, from the decode the
    /// stream's variants share.
    pub(super) fn render(
        &self,
        seq: u64,
        jpeg: &[u8],
        source: (u16, u16),
        (width, height): (u16, u16),
        quality: u8,
    ) -> Result<Scaled, String> {
        let Some(decoding) = self.decoding(seq, source, width, height) else {
            self.decodes.fetch_add(1, Relaxed);
            return scale::render(jpeg, width, height, quality);
        };
        let planes = decoding.planes.get_or_init(|| {
            self.decodes.fetch_add(1, Relaxed);
            scale::decode_planes(jpeg, decoding.width, decoding.height)
        });
        scale::render_decoded(planes.as_ref(), jpeg, width, height, quality)
    }

    /// The shared decode of frame `seq` that gives at least
    /// `width`x`height`, started here when there is none yet (at the
    /// size of the largest variant, so that one serves them all); `None`
    /// when this variant is the stream's only one.
    fn decoding(
        &self,
        seq: u64,
        (sw, sh): (u16, u16),
        width: u16,
        height: u16,
    ) -> Option<Arc<Decoding>> {
        let (mut dw, mut dh) = (width, height);
        {
            let keys = self.lock_keys();
            if keys.len() < 2 {
                return None;
            }
            for key in keys.iter() {
                let w = key.width.min(sw);
                let h = Key { width: w, ..*key }.height_for(sw, sh);
                (dw, dh) = (dw.max(w), dh.max(h));
            }
        }
        let mut newest = self.newest.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = newest.as_ref()
            && d.seq == seq
            && d.width >= width
            && d.height >= height
        {
            return Some(d.clone());
        }
        let d = Arc::new(Decoding {
            seq,
            width: dw,
            height: dh,
            planes: OnceLock::new(),
        });
        *newest = Some(d.clone());
        Some(d)
    }

    fn lock_keys(&self) -> MutexGuard<'_, Vec<Key>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut keys = self.shared.lock_keys();
        if let Some(i) = keys.iter().position(|k| *k == self.key) {
            keys.swap_remove(i);
        }
        if keys.len() < 2 {
            // Nobody shares any more: the kept decode is not needed.
            drop(keys);
            *self.shared.newest.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u16, h: u16) -> Vec<u8> {
        let pixels: Vec<u8> = (0..usize::from(w) * usize::from(h))
            .flat_map(|i| {
                let (x, y) = (i % usize::from(w), i / usize::from(w));
                [
                    (x * 255 / usize::from(w)) as u8,
                    (y * 255 / usize::from(h)) as u8,
                    90,
                ]
            })
            .collect();
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 90)
            .encode(&pixels, w, h, jpeg_encoder::ColorType::Rgb)
            .expect("encodes");
        out
    }

    fn size(jpeg: &[u8]) -> (u16, u16) {
        let mut d = jpeg_decoder::Decoder::new(jpeg);
        d.read_info().expect("header");
        let info = d.info().expect("info");
        (info.width, info.height)
    }

    #[test]
    fn variants_of_one_frame_share_one_decode() {
        let shared = Arc::new(SharedDecode::default());
        let src = jpeg(1280, 720);
        let keys = [640, 320, 160].map(|width| Key { width, quality: 80 });
        let regs: Vec<_> = keys.iter().map(|k| shared.register(*k)).collect();
        for seq in 1..=3 {
            // The smallest first: the decode is still made for the largest.
            for key in keys.iter().rev() {
                let h = key.height_for(1280, 720);
                let out = shared
                    .render(seq, &src, (1280, 720), (key.width, h), key.quality)
                    .expect("renders");
                assert_eq!(size(&out.jpeg), (key.width, h));
                assert_eq!((out.width, out.height), (key.width, h));
            }
        }
        assert_eq!(shared.decodes(), 3, "one decode per source frame");
        drop(regs);
        assert!(shared.newest.lock().expect("lock").is_none());
    }

    #[test]
    fn a_single_variant_decodes_for_itself() {
        let shared = Arc::new(SharedDecode::default());
        let src = jpeg(640, 360);
        let key = Key {
            width: 320,
            quality: 80,
        };
        let _reg = shared.register(key);
        let out = shared
            .render(1, &src, (640, 360), (320, 180), 80)
            .expect("renders");
        assert_eq!(size(&out.jpeg), (320, 180));
        assert_eq!(shared.decodes(), 1);
        assert!(
            shared.newest.lock().expect("lock").is_none(),
            "nothing kept"
        );
    }

    #[test]
    fn a_frame_the_planar_decode_declines_still_renders() {
        // Progressive: the general path decodes it, for each variant.
        let pixels = vec![128u8; 64 * 48 * 3];
        let mut src = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut src, 80);
        enc.set_progressive(true);
        enc.encode(&pixels, 64, 48, jpeg_encoder::ColorType::Rgb)
            .expect("encodes");
        let shared = Arc::new(SharedDecode::default());
        let keys = [32, 16].map(|width| Key { width, quality: 70 });
        let _regs: Vec<_> = keys.iter().map(|k| shared.register(*k)).collect();
        for key in keys {
            let h = key.height_for(64, 48);
            let out = shared
                .render(7, &src, (64, 48), (key.width, h), 70)
                .expect("renders");
            assert_eq!(size(&out.jpeg), (key.width, h));
        }
        // Garbage is an error, not a panic.
        assert!(shared.render(8, b"nope", (64, 48), (32, 24), 70).is_err());
    }
}
