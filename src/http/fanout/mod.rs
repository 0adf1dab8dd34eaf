//! `Fanout`: a stream's plain-TCP clients, split over a few send loops
//! ("shards"); each loop sends every new frame to its clients in one pass,
//! and finishes the parts that a full socket did not take whole as soon as
//! that socket has room again.
//!
//! Waking every client's own task for every frame costs more than the send
//! itself once the send is a `sendfile` of page references, so clients are
//! served from loops, the way a C server serves them from one `epoll` loop.
//! A send never blocks: when a socket is full in the middle of a part, the
//! client is parked with the rest of the part, and the loop's own readiness
//! set (an `epoll` instance holding a duplicate of every client's socket,
//! edge-triggered for room to write) tells the loop when to go on. The loop
//! finishes the part, then sends the stream's newest frame if the client
//! missed one meanwhile: a slow client skips frames and always ends on the
//! newest one. Parked clients are served between passes, in the order their
//! sockets drained, so under saturation every client gets its turn (a client
//! finished by some other task would wait behind the loops' long passes).
//!
//! Each loop runs on a thread of its own and blocks in `epoll_wait`, not in
//! the async runtime: measured here with 2000 clients at 720p, loops as
//! runtime tasks lost time to the runtime's scheduling between a socket
//! draining and the loop going on with it, and the slowest client got a
//! third of the frames the others got.
//!
//! One loop is one core; a stream has as many loops as there are HTTP worker
//! threads, so a stream with thousands of clients uses every core. Its
//! clients fill one loop before the next is opened ([`LOOP_BYTES_PER_FRAME`]):
//! a loop sends one frame to hundreds of clients in a few milliseconds, and
//! a second core sending the same frame at once costs more than it saves
//! (both then take and drop references to the same pages, and the loops
//! wake on two cores instead of one). A stream with few clients needs no
//! loop wake-up per frame: the thread that publishes a frame runs the
//! passes itself, right away (a few non-blocking sends cost less than
//! waking another thread to make them).
//!
//! The loop never holds a lock while it sends: it takes the current list of
//! its clients (an immutable, shared list that joins and leaves replace) and
//! sends from that. A client that leaves is removed by a guard's `Drop`,
//! whatever way its task ends; a parked client whose socket takes nothing
//! for the send timeout is dropped.

mod slot;

use crate::frame::Frame;
use crate::hub::{ClientGuard, FrameHub, FrameListener, SendTally};
use crate::latency::LatencyTally;
use rustix::event::{EventfdFlags, epoll, eventfd};
pub use slot::Slot;
use slot::{Pending, Sent, lock};
use std::borrow::Cow;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// Below this many clients of a stream, a pass copies the part into each
/// socket instead of making the frame's memory file: making the file is a
/// copy, a few system calls and page bookkeeping, which pays off only once
/// it is shared widely. Measured here at 720p (server CPU for 10 s at 30 fps,
/// copy / memory file): 150 / 185 ms with 10 clients, 298 / 322 ms with 30,
/// 928 / 739 ms with 100; the lines cross near 38.
const SENDFILE_FROM_CLIENTS: usize = 40;

/// Up to this many clients of a stream, the publishing thread sends each
/// frame to all of them itself; above, the loops do, in parallel.
const INLINE_UP_TO_CLIENTS: usize = 64;

/// A stream's clients go to its first loop until a pass of that loop sends
/// this many bytes (clients times the size of the stream's part), then also
/// to the next, and so on (`--send-loops` given: spread over all its loops
/// from the first client). Sending costs about 0.2 ms per MB here, so a
/// pass stays under about 14 ms, the longest the last client of a pass
/// waits: about 1,600 clients of a 40 KB 480p frame, 700 of a 95 KB 720p
/// one, 60 of a 1 MB 4K one. Measured here at 500 clients, 480p, paired
/// rounds (frames per server CPU-second): one loop 4 % ahead of two, with a
/// lower p99 latency.
pub const LOOP_BYTES_PER_FRAME: usize = 64 << 20;

/// How often a loop with parked clients looks for stalled ones.
const STALL_CHECK: Duration = Duration::from_millis(250);

/// Readiness reports taken from a loop's set per system call.
const EVENTS_PER_WAIT: usize = 256;

/// The key of a loop's wake-up counter in its readiness set (client ids
/// count up from 0 and never get here).
const WAKE: u64 = u64::MAX;

/// The clients of one send loop.
struct Shard {
    /// The current list, sorted by slot id; joins and leaves replace it, a
    /// pass sends from the list it took at its start.
    slots: Mutex<Arc<[Arc<Slot>]>>,
    /// The loop's readiness set: every client's socket, for room to write,
    /// and `wake`.
    epoll: Arc<OwnedFd>,
    /// Wakes the loop: a frame to send, a client parked, or shutdown.
    wake: OwnedFd,
    /// The loop must end.
    stop: AtomicBool,
    /// A frame waits for the loop's pass.
    pass_due: AtomicBool,
    /// Some client may be parked: the loop watches for stalls.
    parked: AtomicBool,
}

impl Shard {
    fn new() -> io::Result<Shard> {
        let set = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(
            &set,
            &wake,
            epoll::EventData::new_u64(WAKE),
            epoll::EventFlags::IN,
        )?;
        Ok(Shard {
            slots: Mutex::new(Arc::new([])),
            epoll: Arc::new(set),
            wake,
            stop: AtomicBool::new(false),
            pass_due: AtomicBool::new(false),
            parked: AtomicBool::new(false),
        })
    }

    /// Wakes the loop.
    fn wake(&self) {
        // A full counter (it never is: the loop empties it each time) still
        // wakes the loop, so an error here loses nothing.
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    /// Takes the loop's wake-ups.
    fn woken(&self) {
        let mut count = [0u8; 8];
        let _ = rustix::io::read(&self.wake, &mut count);
    }

    fn snapshot(&self) -> Arc<[Arc<Slot>]> {
        lock(&self.slots).clone()
    }

    fn len(&self) -> usize {
        lock(&self.slots).len()
    }

    fn add(&self, slot: Arc<Slot>) {
        let mut slots = lock(&self.slots);
        // Joins may reach here out of the order of their ids.
        let at = slots.partition_point(|s| s.id < slot.id);
        let mut next = Vec::with_capacity(slots.len() + 1);
        next.extend(slots[..at].iter().cloned());
        next.push(slot);
        next.extend(slots[at..].iter().cloned());
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

    /// A client was parked: make sure the loop watches for stalls.
    fn note_parked(&self) {
        if !self.parked.swap(true, Ordering::AcqRel) {
            self.wake();
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

/// Sends and frames a pass or a batch of finished parts delivered, counted
/// into the stream's figures once per batch.
#[derive(Default)]
struct Tally {
    sent: SendTally,
    latency: LatencyTally,
    /// The clock as last read, and how many more deliveries may use it.
    clock: Option<Instant>,
    clock_uses: u32,
}

/// Deliveries that share one reading of the clock for their latency: the
/// sends between them take microseconds, the latency is figured in
/// milliseconds, and a clock read per client was 1 % of the server's time
/// at 500 clients.
const DELIVERIES_PER_CLOCK_READ: u32 = 8;

impl Tally {
    fn add(&mut self, slot: &Slot, frame: &Frame) {
        self.sent.add(frame, slot.delivered(frame));
        let now = match self.clock {
            Some(now) if self.clock_uses > 0 => now,
            _ => {
                self.clock_uses = DELIVERIES_PER_CLOCK_READ;
                *self.clock.insert(Instant::now())
            }
        };
        self.clock_uses -= 1;
        self.latency
            .observe(now.saturating_duration_since(frame.meta.captured_at));
    }

    fn record(&self, hub: &FrameHub) {
        if self.sent.frames > 0 {
            hub.stats().record_sent(&self.sent, &self.latency);
        }
    }
}

/// The send loops of one stream.
pub struct Fanout {
    shards: Vec<Shard>,
    /// Clients in all loops.
    clients: AtomicUsize,
    /// Sequence number of the newest frame published.
    newest: AtomicU64,
    next_id: AtomicU64,
    /// Bytes a loop's pass sends before the next loop is opened.
    loop_bytes: usize,
    /// Size of the newest frame's part.
    part_len: AtomicUsize,
    /// A parked client whose socket takes nothing this long is dropped.
    send_timeout: Duration,
}

impl Fanout {
    /// Starts `loops` send loops for `hub` (at least one), tracked by
    /// `tasks`; they end with `shutdown`. A loop takes clients until its
    /// pass sends `loop_bytes` before the next one gets any. Fails only when the loops'
    /// readiness sets cannot be made (out of descriptors).
    pub fn start(
        hub: Arc<FrameHub>,
        loops: usize,
        loop_bytes: usize,
        send_timeout: Duration,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> io::Result<Arc<Fanout>> {
        let fanout = Arc::new(Fanout {
            shards: (0..loops.max(1))
                .map(|_| Shard::new())
                .collect::<io::Result<_>>()?,
            clients: AtomicUsize::new(0),
            newest: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            loop_bytes: loop_bytes.max(1),
            part_len: AtomicUsize::new(hub.latest().map_or(0, |f| f.part_len())),
            send_timeout,
        });
        for i in 0..fanout.shards.len() {
            let (hub, loop_fanout) = (hub.clone(), fanout.clone());
            tasks.spawn_blocking(move || run(&hub, &loop_fanout, i));
        }
        // The loops block in the kernel, not in the runtime: this task tells
        // them when the server (or the stream's variant) stops. Its guard
        // also tells them when the runtime drops the task unfinished (a
        // runtime that shuts down waits for its blocking threads, so a loop
        // left running would hold the runtime's end for ever).
        let stop = StopLoops(fanout.clone());
        tasks.spawn(async move {
            let _stop = stop;
            shutdown.cancelled().await;
        });
        let listener: Arc<dyn FrameListener> = fanout.clone();
        hub.set_listener(Arc::downgrade(&listener));
        Ok(fanout)
    }

    /// Starts the loops as `options` say; if they cannot start, says why
    /// once and returns `None` (the stream's clients are then served by
    /// their own tasks).
    pub fn start_or_warn(
        hub: Arc<FrameHub>,
        options: &super::HttpOptions,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Option<Arc<Fanout>> {
        let name = hub.name().to_owned();
        let (loops, bytes) = (options.send_loops, options.loop_bytes_per_frame);
        Fanout::start(hub, loops, bytes, options.send_timeout, tasks, shutdown)
            .map_err(|e| warn!(stream = %name, "cannot start the send loops, serving each client from its own task: {e}"))
            .ok()
    }

    /// Adds a client that has frame `seq` (sent by its task, which keeps the
    /// socket until it calls [`Slot::give_back`]); `sock` is a duplicate of
    /// its socket's descriptor. The client stays until the returned
    /// membership drops.
    pub fn join(
        self: &Arc<Self>,
        sock: OwnedFd,
        client: ClientGuard,
        seq: u64,
    ) -> io::Result<Membership> {
        // The least busy of the loops open so far takes the client.
        let clients = self.clients.load(Ordering::Acquire);
        let bytes = clients.saturating_mul(self.part_len.load(Ordering::Relaxed));
        let shard = (0..loops_open(bytes, self.loop_bytes, self.shards.len()))
            .min_by_key(|&i| self.shards[i].len())
            .unwrap_or(0);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let epoll_set = self.shards[shard].epoll.clone();
        epoll::add(
            &*epoll_set,
            &sock,
            epoll::EventData::new_u64(id),
            epoll::EventFlags::OUT | epoll::EventFlags::ET,
        )?;
        let slot = Arc::new(Slot::new(id, sock, epoll_set, seq));
        self.clients.fetch_add(1, Ordering::AcqRel);
        self.shards[shard].add(slot.clone());
        Ok(Membership {
            fanout: self.clone(),
            shard,
            slot,
            client,
        })
    }

    fn use_file(&self) -> bool {
        self.clients.load(Ordering::Relaxed) >= SENDFILE_FROM_CLIENTS
    }

    /// Sends `frame` to every idle client of shard `i` that does not have it.
    fn pass(&self, i: usize, hub: &FrameHub, frame: &Arc<Frame>) {
        let slots = self.shards[i].snapshot();
        if slots.is_empty() {
            return;
        }
        if self.use_file() {
            // Made once, here, for every client of the frame.
            let _ = frame.part_file();
        }
        let mut tally = Tally::default();
        // Start at a different client each frame, so that when sending takes
        // long (a saturated machine) no client is always served last.
        let start = (frame.seq as usize) % slots.len();
        let (later, first) = slots.split_at(start);
        // When a pass began is close enough to when each send began (a pass
        // is milliseconds, the stall limit seconds): one clock read a frame.
        let began = Instant::now();
        let mut clients = first.iter().chain(later).peekable();
        while let Some(slot) = clients.next() {
            if let Some(next) = clients.peek() {
                next.prefetch();
            }
            if slot.claim(frame) {
                // Borrowed: both loops send the same frame at once, and a
                // reference count taken per client would bounce between
                // their cores.
                self.drive(i, hub, slot, Cow::Borrowed(frame), 0, began, &mut tally);
            }
        }
        tally.record(hub);
    }

    /// Sends the claimed client `frame` from `offset`, then the newest frame
    /// as long as the client lacks it and its socket takes parts whole; parks
    /// it when the socket is full.
    #[allow(clippy::too_many_arguments)]
    fn drive(
        &self,
        i: usize,
        hub: &FrameHub,
        slot: &Slot,
        mut frame: Cow<'_, Arc<Frame>>,
        mut offset: usize,
        mut progress: Instant,
        tally: &mut Tally,
    ) {
        loop {
            let file = if self.use_file() {
                frame.built_part_file()
            } else {
                None
            };
            match slot.send(&frame, offset, file) {
                Sent::Failed => return slot.kill(),
                Sent::Whole => {
                    tally.add(slot, &frame);
                    match slot.release(hub, &self.newest) {
                        Some(newer) => {
                            (frame, offset, progress) = (Cow::Owned(newer), 0, Instant::now());
                        }
                        None => return,
                    }
                }
                Sent::Upto(at) => {
                    if at > offset {
                        progress = Instant::now();
                    }
                    self.shards[i].note_parked();
                    match slot.park(Pending {
                        frame: frame.into_owned(),
                        offset: at,
                        progress,
                    }) {
                        Some(p) => {
                            (frame, offset, progress) = (Cow::Owned(p.frame), p.offset, p.progress);
                        }
                        None => return,
                    }
                }
            }
        }
    }

    /// Waits up to `timeout` (`None`: until something happens) for shard
    /// `i`'s readiness set, then goes on with every parked client whose
    /// socket has room, in the order they drained.
    fn wait_and_resume(&self, i: usize, hub: &FrameHub, timeout: Option<Duration>) {
        let shard = &self.shards[i];
        let mut tally = Tally::default();
        let mut slots: Option<Arc<[Arc<Slot>]>> = None;
        let mut buf = [MaybeUninit::<epoll::Event>::uninit(); EVENTS_PER_WAIT];
        let mut timeout = timeout.map(|t| rustix::time::Timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        loop {
            let events = match epoll::wait(&*shard.epoll, &mut buf, timeout.as_ref()) {
                Ok((events, _)) => events,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    warn!(stream = %hub.name(), "send loop cannot wait for its sockets: {e}");
                    std::thread::sleep(STALL_CHECK);
                    break;
                }
            };
            let full = events.len() == EVENTS_PER_WAIT;
            for event in events.iter() {
                let id = event.data.u64();
                if id == WAKE {
                    shard.woken();
                    continue;
                }
                let list = slots.get_or_insert_with(|| shard.snapshot());
                let slot = match find(list, id) {
                    Some(slot) => slot,
                    // Joined after the list was taken: take it again (a
                    // report missed here would never come again). Not in
                    // the new list either: it has left.
                    None => {
                        *list = shard.snapshot();
                        match find(list, id) {
                            Some(slot) => slot,
                            None => continue,
                        }
                    }
                };
                if let Some(p) = slot.on_writable() {
                    let frame = Cow::Owned(p.frame);
                    self.drive(i, hub, &slot, frame, p.offset, p.progress, &mut tally);
                }
            }
            if !full {
                break;
            }
            // More reports wait: take them now, without blocking.
            timeout = Some(rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            });
        }
        tally.record(hub);
    }

    /// Drops shard `i`'s parked clients whose sockets took nothing for the
    /// send timeout; returns whether any client is still parked.
    fn drop_stalled(&self, i: usize) -> bool {
        let mut parked = false;
        for slot in self.shards[i].snapshot().iter() {
            match slot.parked_for() {
                Some(idle) if idle >= self.send_timeout => {
                    debug!("dropping a client that took no data within the send timeout");
                    slot.kill();
                }
                Some(_) => parked = true,
                None => {}
            }
        }
        parked
    }
}

impl FrameListener for Fanout {
    fn published(&self, hub: &FrameHub, frame: &Arc<Frame>) {
        self.newest.fetch_max(frame.seq, Ordering::SeqCst);
        self.part_len.store(frame.part_len(), Ordering::Relaxed);
        // Pairs with the fence in `Slot::release`.
        fence(Ordering::SeqCst);
        if self.clients.load(Ordering::Relaxed) <= INLINE_UP_TO_CLIENTS {
            for i in 0..self.shards.len() {
                self.pass(i, hub, frame);
            }
        } else {
            // A loop without clients has nothing to send: not woken.
            for shard in self.shards.iter().filter(|s| s.len() > 0) {
                shard.pass_due.store(true, Ordering::Release);
                shard.wake();
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
        self.slot.kill();
        self.fanout.shards[self.shard].remove(&self.slot);
        self.fanout.clients.fetch_sub(1, Ordering::AcqRel);
        self.slot.clear_pending();
    }
}

/// Ends a stream's send loops when dropped.
struct StopLoops(Arc<Fanout>);

impl Drop for StopLoops {
    fn drop(&mut self) {
        for shard in &self.0.shards {
            shard.stop.store(true, Ordering::Release);
            shard.wake();
        }
    }
}

/// How many of a stream's `loops` take new clients when a pass to all its
/// clients sends `bytes` and a loop's pass sends `per_loop` before the next
/// is opened.
fn loops_open(bytes: usize, per_loop: usize, loops: usize) -> usize {
    (bytes / per_loop.max(1) + 1).clamp(1, loops.max(1))
}

/// The client `id` in a list sorted by id.
fn find(slots: &[Arc<Slot>], id: u64) -> Option<Arc<Slot>> {
    let at = slots.binary_search_by_key(&id, |s| s.id).ok()?;
    Some(slots[at].clone())
}

/// A send loop, on a thread of its own: finishes parked parts whenever
/// sockets have room, makes a pass with the stream's newest frame whenever
/// the publisher leaves one to the loops, and drops clients that stalled.
fn run(hub: &FrameHub, fanout: &Fanout, i: usize) {
    // Whole parts go by tee and splice through a pipe this thread keeps
    // while the loop runs (`crate::memfd`).
    let _pipe = crate::memfd::ScratchPipe::for_this_thread();
    let shard = &fanout.shards[i];
    let mut next_check = Instant::now() + STALL_CHECK;
    while !shard.stop.load(Ordering::Acquire) {
        let watching = shard.parked.load(Ordering::Acquire);
        let timeout = watching.then(|| next_check.saturating_duration_since(Instant::now()));
        fanout.wait_and_resume(i, hub, timeout);
        if !watching {
            next_check = Instant::now() + STALL_CHECK;
        } else if Instant::now() >= next_check {
            shard.parked.store(false, Ordering::Release);
            if fanout.drop_stalled(i) {
                shard.parked.store(true, Ordering::Release);
            }
            next_check = Instant::now() + STALL_CHECK;
        }
        if shard.pass_due.swap(false, Ordering::AcqRel)
            && let Some(frame) = hub.latest()
        {
            fanout.pass(i, hub, &frame);
        }
    }
    // Tell every client's task now, so clients see the end of the stream.
    shard.kill_all();
}

#[cfg(test)]
mod tests {
    use super::loops_open;

    #[test]
    fn loops_open_as_the_audience_grows() {
        const MB: usize = 1 << 20;
        assert_eq!(loops_open(0, 64 * MB, 4), 1);
        // 500 clients of a 40 KB frame.
        assert_eq!(loops_open(500 * 40_000, 64 * MB, 4), 1);
        assert_eq!(loops_open(64 * MB, 64 * MB, 4), 2);
        // 500 clients of a 1 MB frame.
        assert_eq!(loops_open(500 * MB, 64 * MB, 4), 4);
        assert_eq!(loops_open(150 * MB, 64 * MB, 4), 3);
        // Spread from the first client.
        assert_eq!(loops_open(0, 1, 4), 1);
        assert_eq!(loops_open(1, 1, 4), 2);
        assert_eq!(loops_open(7, 1, 4), 4);
        assert_eq!(loops_open(5, 0, 0), 1);
    }
}
