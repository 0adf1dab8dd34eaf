//! The layout of an AVI file (RIFF, MJPEG video) for a known run of frames,
//! so that a clip can be sent as it is written: every size, the header and
//! the index follow from the frames' lengths and capture times alone.
//!
//! AVI has one frame rate per stream. The real timing is kept by choosing
//! the rate from the typical interval between the frames and placing each
//! frame in the slot of its capture time; a slot no frame falls into (the
//! source paused, or dropped frames) gets an empty chunk, which players
//! show as "keep the previous picture", so the clip lasts as long as the
//! span it covers.

use crate::frame::Frame;
use std::time::Duration;

/// The clip's files are plain AVI (RIFF sizes are 32-bit); players handle
/// up to this size without the OpenDML extensions.
pub const MAX_FILE: u64 = (1 << 31) - 1;

/// A frame's slot length when a clip has a single frame.
const LONE_FRAME: Duration = Duration::from_millis(100);

const AVIF_HASINDEX: u32 = 0x10;
const AVIIF_KEYFRAME: u32 = 0x10;

/// What to write for one slot of the clip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Frame number `i` of the run.
    Frame(usize),
    /// No new picture in this slot.
    Empty,
}

/// Where every byte of the file comes from.
#[derive(Debug)]
pub struct AviLayout {
    /// Everything before the first chunk.
    pub header: Vec<u8>,
    pub slots: Vec<Slot>,
    /// Everything after the last chunk (the index).
    pub index: Vec<u8>,
    /// Length of the whole file.
    pub len: u64,
}

/// The chunk header of a video chunk of `len` bytes.
pub fn chunk_head(len: usize) -> [u8; 8] {
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(b"00dc");
    head[4..].copy_from_slice(&(len as u32).to_le_bytes());
    head
}

/// Padding after a chunk of `len` bytes (chunks start at even offsets).
pub fn pad(len: usize) -> &'static [u8] {
    if len % 2 == 1 { &[0] } else { &[] }
}

impl AviLayout {
    /// Lays out `frames` (oldest first, at least one) as a `width`×`height`
    /// MJPEG clip; `None` if the file would exceed `MAX_FILE`.
    pub fn new(frames: &[impl AsRef<Frame>], width: u16, height: u16) -> Option<AviLayout> {
        let slot_time = typical_interval(frames);
        let slots = place(frames, slot_time);
        let chunk_len = |slot: &Slot| match slot {
            Slot::Frame(i) => frames[*i].as_ref().jpeg().len(),
            Slot::Empty => 0,
        };
        let mut movi: u64 = 4;
        let mut index = Vec::with_capacity(8 + 16 * slots.len());
        index.extend_from_slice(b"idx1");
        index.extend_from_slice(&((16 * slots.len()) as u32).to_le_bytes());
        let mut largest = 0;
        for slot in &slots {
            let len = chunk_len(slot);
            largest = largest.max(len);
            index.extend_from_slice(b"00dc");
            let flags = if len > 0 { AVIIF_KEYFRAME } else { 0 };
            index.extend_from_slice(&flags.to_le_bytes());
            // Offsets count from the `movi` list's type field.
            index.extend_from_slice(&u32::try_from(movi).ok()?.to_le_bytes());
            index.extend_from_slice(&(len as u32).to_le_bytes());
            movi += 8 + len as u64 + (len % 2) as u64;
        }
        let micros = slot_time.as_micros().clamp(1, u128::from(u32::MAX)) as u32;
        let count = slots.len() as u32;
        let buffer = largest as u32 + 8;
        let (w, h) = (u32::from(width), u32::from(height));

        let mut avih = Vec::with_capacity(56);
        for v in [
            micros,
            // Most bytes per second: the largest frame in every slot.
            (u64::from(buffer) * 1_000_000 / u64::from(micros)).min(u64::from(u32::MAX)) as u32,
            0,
            AVIF_HASINDEX,
            count,
            0,
            1,
            buffer,
            w,
            h,
            0,
            0,
            0,
            0,
        ] {
            avih.extend_from_slice(&v.to_le_bytes());
        }
        let mut strh = Vec::with_capacity(56);
        strh.extend_from_slice(b"vidsMJPG");
        for v in [0u32, 0, 0, micros, 1_000_000, 0, count, buffer, u32::MAX, 0] {
            strh.extend_from_slice(&v.to_le_bytes());
        }
        for v in [0u16, 0, width, height] {
            strh.extend_from_slice(&v.to_le_bytes());
        }
        let mut strf = Vec::with_capacity(40);
        for v in [40u32, w, h] {
            strf.extend_from_slice(&v.to_le_bytes());
        }
        strf.extend_from_slice(&1u16.to_le_bytes());
        strf.extend_from_slice(&24u16.to_le_bytes());
        strf.extend_from_slice(b"MJPG");
        for v in [w * h * 3, 0, 0, 0, 0] {
            strf.extend_from_slice(&v.to_le_bytes());
        }

        let mut strl = Vec::new();
        chunk(&mut strl, b"strh", &strh);
        chunk(&mut strl, b"strf", &strf);
        let mut hdrl = Vec::new();
        chunk(&mut hdrl, b"avih", &avih);
        list(&mut hdrl, b"strl", &strl);

        let len = 12 + (12 + hdrl.len() as u64) + (8 + movi) + index.len() as u64;
        if len > MAX_FILE {
            return None;
        }
        let mut header = Vec::with_capacity(24 + hdrl.len());
        header.extend_from_slice(b"RIFF");
        header.extend_from_slice(&((len - 8) as u32).to_le_bytes());
        header.extend_from_slice(b"AVI ");
        list(&mut header, b"hdrl", &hdrl);
        header.extend_from_slice(b"LIST");
        header.extend_from_slice(&(movi as u32).to_le_bytes());
        header.extend_from_slice(b"movi");
        Some(AviLayout {
            header,
            slots,
            index,
            len,
        })
    }
}

fn chunk(out: &mut Vec<u8>, id: &[u8; 4], body: &[u8]) {
    out.extend_from_slice(id);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(pad(body.len()));
}

fn list(out: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]) {
    out.extend_from_slice(b"LIST");
    out.extend_from_slice(&(body.len() as u32 + 4).to_le_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
}

/// The median time between consecutive frames: the source's frame period,
/// undisturbed by a pause or a late frame.
fn typical_interval(frames: &[impl AsRef<Frame>]) -> Duration {
    let mut gaps: Vec<Duration> = frames
        .windows(2)
        .map(|w| {
            w[1].as_ref()
                .meta
                .captured_at
                .saturating_duration_since(w[0].as_ref().meta.captured_at)
        })
        .filter(|d| !d.is_zero())
        .collect();
    if gaps.is_empty() {
        return LONE_FRAME;
    }
    gaps.sort_unstable();
    gaps[gaps.len() / 2]
}

/// Each frame in the slot of its capture time (never two in one slot),
/// empty slots where no frame was captured.
fn place(frames: &[impl AsRef<Frame>], slot_time: Duration) -> Vec<Slot> {
    let Some(first) = frames.first() else {
        return Vec::new();
    };
    let start = first.as_ref().meta.captured_at;
    let mut slots = Vec::with_capacity(frames.len());
    for (i, frame) in frames.iter().enumerate() {
        let offset = frame
            .as_ref()
            .meta
            .captured_at
            .saturating_duration_since(start);
        let wanted = (offset.as_secs_f64() / slot_time.as_secs_f64()).round() as usize;
        while slots.len() < wanted {
            slots.push(Slot::Empty);
        }
        slots.push(Slot::Frame(i));
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameMeta;
    use std::sync::Arc;
    use std::time::{Instant, SystemTime};

    fn frames(at_ms: &[u64]) -> Vec<Arc<Frame>> {
        let base = Instant::now();
        at_ms
            .iter()
            .enumerate()
            .map(|(i, ms)| {
                let meta = FrameMeta {
                    captured: SystemTime::now(),
                    captured_at: base + Duration::from_millis(*ms),
                    width: 4,
                    height: 2,
                };
                Arc::new(Frame::new(i as u64 + 1, vec![7; 10 + i].into(), meta, true))
            })
            .collect()
    }

    /// `dwMicroSecPerFrame`, after RIFF, the hdrl list head and the avih head.
    fn micros_per_slot(avi: &AviLayout) -> u32 {
        u32::from_le_bytes(avi.header[32..36].try_into().expect("4 bytes"))
    }

    #[test]
    fn sizes_add_up() {
        let run = frames(&[0, 40, 80, 120]);
        let avi = AviLayout::new(&run, 4, 2).expect("small");
        let body: u64 = avi
            .slots
            .iter()
            .map(|s| match s {
                Slot::Frame(i) => {
                    let n = run[*i].jpeg().len();
                    8 + n as u64 + pad(n).len() as u64
                }
                Slot::Empty => 8,
            })
            .sum();
        assert_eq!(
            avi.len,
            avi.header.len() as u64 + body + avi.index.len() as u64
        );
        assert_eq!(&avi.header[..4], b"RIFF");
        let riff = u32::from_le_bytes(avi.header[4..8].try_into().expect("4 bytes"));
        assert_eq!(u64::from(riff), avi.len - 8);
        assert_eq!(micros_per_slot(&avi), 40_000);
        assert_eq!(avi.slots.len(), 4);
    }

    #[test]
    fn a_pause_becomes_empty_slots() {
        let run = frames(&[0, 100, 200, 600, 700, 750]);
        let avi = AviLayout::new(&run, 4, 2).expect("small");
        assert_eq!(micros_per_slot(&avi), 100_000);
        use Slot::*;
        // 750 ms rounds to slot 8, the one after 700 ms.
        assert_eq!(
            avi.slots,
            vec![
                Frame(0),
                Frame(1),
                Frame(2),
                Empty,
                Empty,
                Empty,
                Frame(3),
                Frame(4),
                Frame(5)
            ]
        );
    }
}
