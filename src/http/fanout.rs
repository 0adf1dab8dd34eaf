//! `Fanout`: one task per stream that sends each new frame to all of the
//! stream's plain-TCP clients in one pass, with one `sendfile` each.
//!
//! Waking every client's own task for every frame costs more than the send
//! itself once the send is a `sendfile` of page references. So clients whose
//! socket takes a whole part at once (nearly always) are served from this
//! single loop; a client whose socket is full gets the rest of the part from
//! its own task, which waits for the socket and then hands the client back.
//! The loop sends through a duplicate of the client's descriptor that it
//! owns, so a descriptor number can never be reused under it.

use crate::frame::Frame;
use crate::hub::{ClientGuard, FrameHub};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The fanout may send to the client.
const IDLE: u8 = 0;
/// The client's task is finishing a part the socket did not take whole.
const BUSY: u8 = 1;
/// The client is gone (send error, or its task ended).
const DEAD: u8 = 2;

/// One client as the fanout sees it.
pub struct Slot {
    sock: OwnedFd,
    state: AtomicU8,
    /// Sequence number of the newest frame this client has (never send a
    /// frame twice, nor an older one).
    last_seq: AtomicU64,
    /// The part to finish (frame and bytes already sent) while `BUSY`.
    pending: Mutex<Option<(Arc<Frame>, usize)>>,
    client: Mutex<Option<ClientGuard>>,
    wake: Notify,
}

impl Slot {
    /// Marks the slot busy with the rest of `frame` and wakes its task.
    fn hand_back(&self, frame: &Arc<Frame>, offset: usize) {
        *lock(&self.pending) = Some((frame.clone(), offset));
        self.state.store(BUSY, Ordering::Release);
        self.wake.notify_one();
    }

    /// Idle, and `frame` is newer than what the client has.
    fn wants(&self, frame: &Frame) -> bool {
        self.state.load(Ordering::Acquire) == IDLE
            && frame.seq > self.last_seq.load(Ordering::Acquire)
    }

    fn kill(&self) {
        self.state.store(DEAD, Ordering::Release);
        self.wake.notify_one();
    }

    /// Waits until the fanout hands the client back (or drops it).
    pub async fn handed_back(&self) {
        self.wake.notified().await;
    }

    /// The part to finish, if the fanout handed one back; `Err` if the
    /// client is gone.
    pub fn take_pending(&self) -> Result<Option<(Arc<Frame>, usize)>, ()> {
        match self.state.load(Ordering::Acquire) {
            DEAD => Err(()),
            BUSY => Ok(lock(&self.pending).take()),
            _ => Ok(None),
        }
    }

    /// The client's task finished the part: the fanout may send again.
    pub fn resume(&self, frame: &Frame) {
        self.delivered(frame);
        self.state.store(IDLE, Ordering::Release);
    }

    /// Records that `frame` reached the client whole.
    fn delivered(&self, frame: &Frame) {
        self.last_seq.fetch_max(frame.seq, Ordering::AcqRel);
        if let Some(c) = lock(&self.client).as_mut() {
            c.sent(frame);
        }
    }
}

/// The clients of one stream served by the fanout loop.
#[derive(Default)]
pub struct Fanout {
    slots: Mutex<Vec<Arc<Slot>>>,
}

impl Fanout {
    /// Starts the loop for `hub`; it ends with `shutdown`.
    pub fn start(hub: Arc<FrameHub>, shutdown: CancellationToken) -> Arc<Fanout> {
        let fanout = Arc::new(Fanout::default());
        tokio::spawn(run(hub, fanout.clone(), shutdown));
        fanout
    }

    /// Adds a client that already has frame `seq`; `sock` is a duplicate of
    /// its socket's descriptor.
    pub fn join(&self, sock: OwnedFd, client: ClientGuard, seq: u64) -> Arc<Slot> {
        let slot = Arc::new(Slot {
            sock,
            state: AtomicU8::new(IDLE),
            last_seq: AtomicU64::new(seq),
            pending: Mutex::new(None),
            client: Mutex::new(Some(client)),
            wake: Notify::new(),
        });
        lock(&self.slots).push(slot.clone());
        slot
    }

    /// Removes a client (closing the fanout's descriptor at once) and returns
    /// its guard.
    pub fn leave(&self, slot: &Arc<Slot>) -> Option<ClientGuard> {
        slot.state.store(DEAD, Ordering::Release);
        lock(&self.slots).retain(|s| !Arc::ptr_eq(s, slot));
        lock(&slot.client).take()
    }

    /// Sends `frame` to every idle client.
    fn send(&self, hub: &FrameHub, frame: &Arc<Frame>) {
        let slots = lock(&self.slots);
        let Some(file) = frame.part_file() else {
            // No memory file (could not be made): every client's own task
            // writes this frame.
            for s in slots.iter().filter(|s| s.wants(frame)) {
                s.hand_back(frame, 0);
            }
            return;
        };
        // Start at a different client each frame, so that when sending takes
        // long (a saturated machine) no client is always served last.
        let start = (frame.seq as usize).checked_rem(slots.len()).unwrap_or(0);
        let (later, first) = slots.split_at(start);
        for slot in first.iter().chain(later).filter(|s| s.wants(frame)) {
            match file.send_to(slot.sock.as_raw_fd(), 0) {
                Ok(n) if n == file.len() => {
                    slot.delivered(frame);
                    hub.observe_latency(frame.meta.captured_at.elapsed());
                }
                Ok(n) => slot.hand_back(frame, n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => slot.hand_back(frame, 0),
                Err(_) => slot.kill(),
            }
        }
    }
}

async fn run(hub: Arc<FrameHub>, fanout: Arc<Fanout>, shutdown: CancellationToken) {
    let mut frames = hub.subscribe();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = frames.changed() => if changed.is_err() { break },
        }
        let Some(frame) = frames.borrow_and_update().clone() else {
            continue;
        };
        fanout.send(&hub, &frame);
    }
    // Close the duplicates now, so clients see the end of the stream.
    for slot in lock(&fanout.slots).drain(..) {
        slot.kill();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The protected values stay consistent at every step, so a lock poisoned
    // by a panic elsewhere is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
