//! `Fanout`: a stream's plain-TCP clients, split over a few send loops
//! ("shards"); each loop sends every new frame to its clients in one pass.
//!
//! Waking every client's own task for every frame costs more than the send
//! itself once the send is a `sendfile` of page references. So clients whose
//! socket takes a whole part at once (nearly always) are served from a loop;
//! a client whose socket is full is handed back to its own task, which waits
//! for the socket, finishes the part and then catches up with the newest
//! frame before it offers the client to the loop again. One loop is one core;
//! a stream's clients are spread over as many loops as there are HTTP worker
//! threads, so a stream with thousands of clients uses every core. A stream
//! with few clients needs no loop task at all: the thread that publishes a
//! frame runs the passes itself, right away (a few non-blocking sends cost
//! less than waking another thread to make them).
//!
//! Who may write to a client's socket is decided by one atomic state per
//! client (`Slot`): idle (the loop may claim it), claimed by the loop for one
//! send, owned by the client's task, or dead. Every frame reaches every live
//! client, newest first: the loop sends each published frame to every idle
//! client, and the task, whenever it gives the client back, first looks at
//! the stream's newest frame and sends it itself if the client has not had
//! it. Giving back is "store idle, then look"; the loop's pass is "frame
//! published, then look at the state"; with a full fence on both sides at
//! least one of them sees the other, so no frame falls between them.
//!
//! The loop never holds a lock while it sends: it takes the current list of
//! its clients (an immutable, shared list that joins and leaves replace) and
//! sends from that. It sends through a duplicate of the client's descriptor
//! that the list owns, so a descriptor number can never be reused under it;
//! a client that leaves is removed by a guard's `Drop`, whatever way its task
//! ends.

use crate::frame::Frame;
use crate::hub::{ClientGuard, FrameHub, FrameListener, SendTally};
use crate::latency::LatencyTally;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The loop may claim the client for a send.
const IDLE: u8 = 0;
/// The loop is sending to the client.
const LOOP: u8 = 1;
/// The client's task writes to the socket (the rest of a part the socket did
/// not take whole, or a frame the loop's pass went by).
const TASK: u8 = 2;
/// The client is gone (send error, shutdown, or its task ended).
const DEAD: u8 = 3;

/// Below this many clients of a stream, a pass copies the part into each
/// socket instead of making the frame's memory file: making the file is a
/// copy, a few system calls and page bookkeeping, which pays off only once
/// it is shared widely. Measured here at 720p (server CPU for 10 s at 30 fps,
/// copy / memory file): 150 / 185 ms with 10 clients, 298 / 322 ms with 30,
/// 928 / 739 ms with 100; the lines cross near 38.
const SENDFILE_FROM_CLIENTS: usize = 40;

/// Up to this many clients of a stream, the publishing thread sends each
/// frame to all of them itself; above, the loops' tasks do, in parallel.
const INLINE_UP_TO_CLIENTS: usize = 64;

/// One client as the loops see it.
pub struct Slot {
    sock: OwnedFd,
    state: AtomicU8,
    /// Sequence number of the newest frame the client has whole (never send a
    /// frame twice, nor an older one).
    last_seq: AtomicU64,
    /// Frames the client got whole.
    frames: AtomicU64,
    /// The part to finish (frame and bytes already sent) while `TASK`.
    pending: Mutex<Option<(Arc<Frame>, usize)>>,
    wake: Notify,
}

impl Slot {
    /// Claims the idle client for sending `frame`, if it does not have it.
    fn claim(&self, frame: &Frame) -> bool {
        frame.seq > self.last_seq.load(Ordering::Acquire)
            && self
                .state
                .compare_exchange(IDLE, LOOP, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Ends the loop's send: the client is idle again (unless it died).
    fn unclaim(&self) {
        let _ = self
            .state
            .compare_exchange(LOOP, IDLE, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// Hands the client to its task with the rest of `frame` to send.
    fn hand_back(&self, frame: &Arc<Frame>, offset: usize) {
        *lock(&self.pending) = Some((frame.clone(), offset));
        if self
            .state
            .compare_exchange(LOOP, TASK, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.wake.notify_one();
        }
    }

    fn kill(&self) {
        self.state.store(DEAD, Ordering::Release);
        self.wake.notify_one();
    }

    /// Waits until a loop hands the client back (or drops it).
    pub async fn handed_back(&self) {
        self.wake.notified().await;
    }

    /// The part to finish, if a loop handed one back; `Err` if the client is
    /// gone.
    pub fn take_pending(&self) -> Result<Option<(Arc<Frame>, usize)>, ()> {
        match self.state.load(Ordering::Acquire) {
            DEAD => Err(()),
            TASK => Ok(lock(&self.pending).take()),
            _ => Ok(None),
        }
    }

    /// Records that `frame` reached the client whole; returns the sequence
    /// number of the frame it had before.
    fn delivered(&self, frame: &Frame) -> u64 {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.last_seq.swap(frame.seq, Ordering::AcqRel)
    }

    /// Sequence number of the newest frame the client has whole.
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// The client's task sent `frame` whole: counts it.
    pub fn sent_by_task(&self, hub: &FrameHub, frame: &Frame) {
        hub.stats().record_one_sent(frame, self.delivered(frame));
    }

    /// The client's task is done with the socket: offers the client to the
    /// loop, unless the stream's newest frame is one the client does not
    /// have and no loop is sending it; then the task keeps the client and
    /// must send that frame (returned).
    pub fn give_back(&self, hub: &FrameHub) -> Option<Arc<Frame>> {
        loop {
            if self
                .state
                .compare_exchange(TASK, IDLE, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                return None; // dead
            }
            // Pairs with the fence in `Fanout::send`: either this look sees a
            // frame published before the store above, or that frame's pass
            // sees the client idle.
            fence(Ordering::SeqCst);
            let latest = hub.latest()?;
            if latest.seq <= self.last_seq.load(Ordering::SeqCst) {
                return None;
            }
            if self
                .state
                .compare_exchange(IDLE, TASK, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                // A loop claimed the client (it will send this frame or one
                // newer), or the client died.
                return None;
            }
            if latest.seq > self.last_seq.load(Ordering::SeqCst) {
                return Some(latest);
            }
            // A loop sent it between the look and the claim: look again.
        }
    }
}

/// The clients of one send loop.
#[derive(Default)]
struct Shard {
    /// The current list; joins and leaves replace it, the loop sends from
    /// the list it took at the start of a pass.
    slots: Mutex<Arc<[Arc<Slot>]>>,
    /// Wakes the loop's task: a frame to send, or a client joined.
    wake: Notify,
}

impl Shard {
    fn snapshot(&self) -> Arc<[Arc<Slot>]> {
        lock(&self.slots).clone()
    }

    fn len(&self) -> usize {
        lock(&self.slots).len()
    }

    fn add(&self, slot: Arc<Slot>) {
        let mut slots = lock(&self.slots);
        let mut next = Vec::with_capacity(slots.len() + 1);
        next.extend(slots.iter().cloned());
        next.push(slot);
        *slots = next.into();
    }

    fn remove(&self, slot: &Arc<Slot>) {
        let mut slots = lock(&self.slots);
        if slots.iter().any(|s| Arc::ptr_eq(s, slot)) {
            *slots = slots
                .iter()
                .filter(|s| !Arc::ptr_eq(s, slot))
                .cloned()
                .collect();
        }
    }

    /// Empties the list and tells every client's task to end.
    fn kill_all(&self) {
        let slots = std::mem::replace(&mut *lock(&self.slots), Arc::new([]));
        for slot in slots.iter() {
            slot.kill();
        }
    }
}

/// The send loops of one stream.
pub struct Fanout {
    shards: Vec<Shard>,
    /// Clients in all loops.
    clients: AtomicUsize,
}

impl Fanout {
    /// Starts `loops` send loops for `hub` (at least one), tracked by
    /// `tasks`; they end with `shutdown`.
    pub fn start(
        hub: Arc<FrameHub>,
        loops: usize,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Fanout> {
        let fanout = Arc::new(Fanout {
            shards: (0..loops.max(1)).map(|_| Shard::default()).collect(),
            clients: AtomicUsize::new(0),
        });
        for i in 0..fanout.shards.len() {
            tasks.spawn(run(hub.clone(), fanout.clone(), i, shutdown.clone()));
        }
        let listener: Arc<dyn FrameListener> = fanout.clone();
        hub.set_listener(Arc::downgrade(&listener));
        fanout
    }

    /// Adds a client that has frame `seq` (sent by its task, which keeps the
    /// socket until it calls [`Slot::give_back`]); `sock` is a duplicate of
    /// its socket's descriptor. The client stays until the returned
    /// membership drops.
    pub fn join(self: &Arc<Self>, sock: OwnedFd, client: ClientGuard, seq: u64) -> Membership {
        let slot = Arc::new(Slot {
            sock,
            state: AtomicU8::new(TASK),
            last_seq: AtomicU64::new(seq),
            frames: AtomicU64::new(0),
            pending: Mutex::new(None),
            wake: Notify::new(),
        });
        let shard = (0..self.shards.len())
            .min_by_key(|&i| self.shards[i].len())
            .unwrap_or(0);
        self.clients.fetch_add(1, Ordering::AcqRel);
        self.shards[shard].add(slot.clone());
        Membership {
            fanout: self.clone(),
            shard,
            slot,
            client,
        }
    }

    /// Sends `frame` to every idle client of shard `i` that does not have it.
    fn send(&self, i: usize, hub: &FrameHub, frame: &Arc<Frame>) {
        let slots = self.shards[i].snapshot();
        if slots.is_empty() {
            return;
        }
        // Pairs with the fence in `Slot::give_back`.
        fence(Ordering::SeqCst);
        let file = if self.clients.load(Ordering::Relaxed) >= SENDFILE_FROM_CLIENTS {
            frame.part_file()
        } else {
            None
        };
        let part = frame.part_from(0);
        let part_len = frame.part_len();
        let mut sent = SendTally::default();
        let mut latency = LatencyTally::default();
        // Start at a different client each frame, so that when sending takes
        // long (a saturated machine) no client is always served last.
        let start = (frame.seq as usize) % slots.len();
        let (later, first) = slots.split_at(start);
        for slot in first.iter().chain(later) {
            if !slot.claim(frame) {
                continue;
            }
            let fd = slot.sock.as_fd();
            let result = match file {
                Some(file) => file.send_to(fd, 0),
                None => send_pieces(fd, &part),
            };
            match result {
                Ok(n) if n == part_len => {
                    sent.add(frame, slot.delivered(frame));
                    latency.observe(frame.meta.captured_at.elapsed());
                    slot.unclaim();
                }
                Ok(n) => slot.hand_back(frame, n),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    slot.hand_back(frame, 0)
                }
                Err(_) => slot.kill(),
            }
        }
        hub.stats().record_sent(&sent, &latency);
    }
}

impl FrameListener for Fanout {
    fn published(&self, hub: &FrameHub, frame: &Arc<Frame>) {
        if self.clients.load(Ordering::Relaxed) <= INLINE_UP_TO_CLIENTS {
            for i in 0..self.shards.len() {
                self.send(i, hub, frame);
            }
        } else {
            for shard in &self.shards {
                shard.wake.notify_one();
            }
        }
    }
}

/// A client's place in a send loop; leaving (on drop) takes it out of the
/// loop's list, closes the loop's duplicate of its socket once no pass uses
/// it any more, and ends its count as a stream client (the guard, dropped
/// with it).
pub struct Membership {
    fanout: Arc<Fanout>,
    shard: usize,
    slot: Arc<Slot>,
    client: ClientGuard,
}

impl Membership {
    pub fn slot(&self) -> &Slot {
        &self.slot
    }

    /// Frames the client got whole: before it joined, and since.
    pub fn frames(&self) -> u64 {
        self.client.frames() + self.slot.frames.load(Ordering::Relaxed)
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.slot.state.store(DEAD, Ordering::Release);
        self.fanout.shards[self.shard].remove(&self.slot);
        self.fanout.clients.fetch_sub(1, Ordering::AcqRel);
        drop(lock(&self.slot.pending).take());
    }
}

/// A loop's task: a pass with the stream's newest frame whenever it is
/// woken by a frame the publisher left to the loops.
async fn run(hub: Arc<FrameHub>, fanout: Arc<Fanout>, i: usize, shutdown: CancellationToken) {
    let shard = &fanout.shards[i];
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = shard.wake.notified() => {}
        }
        if let Some(frame) = hub.latest() {
            fanout.send(i, &hub, &frame);
        }
    }
    // Tell every client's task now, so clients see the end of the stream.
    shard.kill_all();
}

/// Copies a part's pieces into the socket in one non-blocking vectored
/// send; returns how much it took.
fn send_pieces(sock: BorrowedFd<'_>, pieces: &[&[u8]; 3]) -> io::Result<usize> {
    let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
    let iov = pieces.map(io::IoSlice::new);
    let mut no_control = rustix::net::SendAncillaryBuffer::default();
    Ok(rustix::net::sendmsg(sock, &iov, &mut no_control, flags)?)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The protected values stay consistent at every step, so a lock poisoned
    // by a panic elsewhere is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
