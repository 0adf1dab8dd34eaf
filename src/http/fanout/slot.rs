//! `Slot`: one stream client as the send loops see it, and the one atomic
//! state that decides who may write to its socket.
//!
//! States: idle (a sender may claim it), claimed by a sender (a loop's pass,
//! the publishing thread's pass, or the loop finishing a part), parked (the
//! socket was full in the middle of a part; the rest waits for the socket to
//! take data again), owned by the client's task (while it joins), dead.
//! Every change of owner is a compare-and-swap, so two senders never write
//! to one socket at once, and a sender that lost the client to `dead` stops.
//!
//! Two handovers must not lose a wake-up, and both use the same pattern
//! ("store, full fence, look"):
//! - a sender that releases a client looks at the stream's newest frame
//!   after it stores idle; a pass stores the newest frame's number before
//!   it looks at the clients' states. At least one of them sees the other,
//!   so the newest frame always reaches the client.
//! - a sender that parks a client looks at its writable flag after it
//!   stores parked; the loop sets the flag before it tries to claim a
//!   parked client. At least one of them goes on with the part.

use crate::frame::Frame;
use crate::hub::FrameHub;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::Notify;

/// A sender may claim the client.
const IDLE: u8 = 0;
/// A sender writes to the client's socket.
const SENDING: u8 = 1;
/// The socket was full in the middle of a part; the rest is `pending`.
const PARKED: u8 = 2;
/// The client's task writes to the socket (frames that came while it
/// joined).
const TASK: u8 = 3;
/// The client is gone (send error, stalled, shutdown, or its task ended).
const DEAD: u8 = 4;

/// The rest of a part a full socket did not take.
pub(super) struct Pending {
    pub frame: Arc<Frame>,
    /// Bytes of the part already sent.
    pub offset: usize,
    /// When the socket last took a byte of the stream.
    pub progress: Instant,
}

/// What one non-blocking send of a part did.
pub(super) enum Sent {
    /// The part went whole.
    Whole,
    /// The socket is full; the part is sent up to this offset.
    Upto(usize),
    /// The connection failed.
    Failed,
}

/// One client as the loops see it.
pub struct Slot {
    /// Key of the client in its loop's readiness set and its place in the
    /// loop's list (ids grow, so the list stays sorted by them).
    pub(super) id: u64,
    /// A duplicate of the client's socket: the list owns it, so a descriptor
    /// number can never be reused under a pass that sends to it.
    sock: OwnedFd,
    /// The loop's readiness set, to leave it before `sock` is closed.
    epoll: Arc<OwnedFd>,
    state: AtomicU8,
    /// The socket reported room since the last send began.
    writable: AtomicBool,
    /// Sequence number of the newest frame the client has whole (never send a
    /// frame twice, nor an older one).
    last_seq: AtomicU64,
    /// Frames the client got whole.
    pub(super) frames: AtomicU64,
    /// The part to finish while parked.
    pending: Mutex<Option<Pending>>,
    /// Tells the client's task that the client was dropped.
    dead: Notify,
}

impl Slot {
    /// A client owned by its task, which has sent it frame `seq`; `sock` is
    /// registered in `epoll` under `id` by the caller.
    pub(super) fn new(id: u64, sock: OwnedFd, epoll: Arc<OwnedFd>, seq: u64) -> Slot {
        Slot {
            id,
            sock,
            epoll,
            state: AtomicU8::new(TASK),
            writable: AtomicBool::new(false),
            last_seq: AtomicU64::new(seq),
            frames: AtomicU64::new(0),
            pending: Mutex::new(None),
            dead: Notify::new(),
        }
    }

    /// Asks the processor to bring the fields a pass reads into its cache:
    /// a pass goes through hundreds of clients whose slots the kernel's
    /// work for the previous sends has pushed out of it, and a fetch that
    /// starts one client early costs nothing to wait for.
    pub(super) fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            for field in [
                std::ptr::from_ref(&self.last_seq).cast::<i8>(),
                std::ptr::from_ref(&self.state).cast::<i8>(),
            ] {
                // SAFETY: SSE is part of every x86-64 processor, and a
                // prefetch only hints: it never faults nor reads into the
                // program.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(field) };
            }
        }
    }

    /// Claims the idle client for sending `frame`, if it does not have it.
    pub(super) fn claim(&self, frame: &Frame) -> bool {
        frame.seq > self.last_seq.load(Ordering::Acquire)
            && self
                .state
                .compare_exchange(IDLE, SENDING, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
    }

    /// One non-blocking send of `frame` from `offset`: from the frame's
    /// memory file when given, else its bytes.
    pub(super) fn send(
        &self,
        frame: &Frame,
        offset: usize,
        file: Option<&crate::memfd::PartFile>,
    ) -> Sent {
        // Only a readiness report that comes after this send began says
        // anything about the room this send leaves.
        self.writable.store(false, Ordering::SeqCst);
        let sock = self.sock.as_fd();
        let result = match file {
            Some(file) => file.send_to(sock, offset),
            None => send_pieces(sock, &frame.part_from(offset)),
        };
        match result {
            Ok(n) if offset + n >= frame.part_len() => Sent::Whole,
            Ok(n) => Sent::Upto(offset + n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Sent::Upto(offset)
            }
            Err(_) => Sent::Failed,
        }
    }

    /// Records that `frame` reached the client whole; returns the sequence
    /// number of the frame it had before.
    pub(super) fn delivered(&self, frame: &Frame) -> u64 {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.last_seq.swap(frame.seq, Ordering::AcqRel)
    }

    /// The client's task sent `frame` whole: counts it.
    pub fn sent_by_task(&self, hub: &FrameHub, frame: &Frame) {
        hub.stats().record_one_sent(frame, self.delivered(frame));
    }

    /// Sequence number of the newest frame the client has whole.
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// Ends a send that left nothing to finish; `newest` is the number of
    /// the newest frame published. If the client does not have that frame
    /// and no other sender is taking it there, the sender keeps the client
    /// and must send it (returned).
    pub(super) fn release(&self, hub: &FrameHub, newest: &AtomicU64) -> Option<Arc<Frame>> {
        if self
            .state
            .compare_exchange(SENDING, IDLE, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            return None; // dead
        }
        // Pairs with the fence in `Fanout::published`: a frame published
        // before the store above is seen here, or its pass sees the client
        // idle.
        fence(Ordering::SeqCst);
        if newest.load(Ordering::SeqCst) <= self.last_seq() {
            return None;
        }
        self.take_newest(hub, SENDING)
    }

    /// The client's task is done with the socket: offers the client to the
    /// loops, unless the stream's newest frame is one the client does not
    /// have and no loop is sending it; then the task keeps the client and
    /// must send that frame (returned).
    pub fn give_back(&self, hub: &FrameHub) -> Option<Arc<Frame>> {
        if self
            .state
            .compare_exchange(TASK, IDLE, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            return None; // dead
        }
        fence(Ordering::SeqCst);
        self.take_newest(hub, TASK)
    }

    /// Takes the idle client back (into state `to`) if the stream's newest
    /// frame is newer than the client's; returns that frame.
    fn take_newest(&self, hub: &FrameHub, to: u8) -> Option<Arc<Frame>> {
        loop {
            let latest = hub.latest()?;
            if latest.seq <= self.last_seq() {
                return None;
            }
            if self
                .state
                .compare_exchange(IDLE, to, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                // Another sender claimed the client (it sends this frame or
                // a newer one), or the client died.
                return None;
            }
            if latest.seq > self.last_seq() {
                return Some(latest);
            }
            // Sent by another sender between the look and the claim.
            if self
                .state
                .compare_exchange(to, IDLE, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                return None;
            }
        }
    }

    /// Parks the claimed client with the rest of a part. Returns the part
    /// back if the socket reported room meanwhile: the caller goes on.
    pub(super) fn park(&self, pending: Pending) -> Option<Pending> {
        *lock(&self.pending) = Some(pending);
        if self
            .state
            .compare_exchange(SENDING, PARKED, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            lock(&self.pending).take();
            return None; // dead
        }
        fence(Ordering::SeqCst);
        if self.writable.load(Ordering::SeqCst) {
            self.unpark()
        } else {
            None
        }
    }

    /// The socket reported room: takes the parked client's part, if it is
    /// parked (the caller then sends it).
    pub(super) fn on_writable(&self) -> Option<Pending> {
        self.writable.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.unpark()
    }

    fn unpark(&self) -> Option<Pending> {
        self.state
            .compare_exchange(PARKED, SENDING, Ordering::SeqCst, Ordering::Relaxed)
            .ok()?;
        lock(&self.pending).take()
    }

    /// How long a parked client's socket has taken nothing; `None` if the
    /// client is not parked.
    pub(super) fn parked_for(&self) -> Option<std::time::Duration> {
        if self.state.load(Ordering::Acquire) != PARKED {
            return None;
        }
        lock(&self.pending).as_ref().map(|p| p.progress.elapsed())
    }

    /// Drops the client: its task ends it.
    pub(super) fn kill(&self) {
        self.state.store(DEAD, Ordering::SeqCst);
        self.dead.notify_one();
    }

    pub(super) fn clear_pending(&self) {
        drop(lock(&self.pending).take());
    }

    /// Resolves when a loop has dropped the client (a send failed, the
    /// socket stalled, or the server shuts down).
    pub async fn dropped(&self) {
        while self.state.load(Ordering::Acquire) != DEAD {
            self.dead.notified().await;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Leave the readiness set before the descriptor closes: the kernel
        // keeps a registration for as long as the socket stays open through
        // its other descriptor (the client's own), and a report for a
        // closed duplicate would name a descriptor number that may be
        // reused.
        let _ = rustix::event::epoll::delete(&*self.epoll, &self.sock);
    }
}

/// Copies a part's pieces into the socket in one non-blocking vectored
/// send; returns how much it took.
fn send_pieces(sock: BorrowedFd<'_>, pieces: &[&[u8]; 3]) -> io::Result<usize> {
    let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
    let iov = pieces.map(io::IoSlice::new);
    let mut no_control = rustix::net::SendAncillaryBuffer::default();
    Ok(rustix::net::sendmsg(sock, &iov, &mut no_control, flags)?)
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The protected values stay consistent at every step, so a lock poisoned
    // by a panic elsewhere is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
