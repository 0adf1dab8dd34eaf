//! `PartFile`: a frame's multipart part in an anonymous, sealed memory file,
//! so stream clients can be sent it without copying its bytes per client.
//!
//! Handing the kernel references to the file's pages instead of copying the
//! bytes from user space into each socket is the cheapest fan-out measured on
//! this kind of machine. Two ways of doing that were measured side by side
//! (`../shared/bench/limit/RESULTS-zerocopy.md`, 500 clients, frames per
//! server CPU-second against a `writev` per client): `sendfile(2)` from the
//! file, 1.17× at 480p and 1.43× at 720p; and `tee(2)` of a pipe that holds
//! the file's pages into a second pipe, then `splice(2)` of that into the
//! socket, 1.33× and 1.64×. `sendfile` looks each page up in the file per
//! send; the pipe already holds the page references, and `tee` only takes
//! another reference to each. So a whole part goes out by `tee` + `splice`
//! when the part fits a pipe (one pipe per frame holding its pages, and one
//! scratch pipe per send loop, emptied by the `splice`); the rest of a
//! part a full socket did not take, and parts too big for a pipe, go by
//! `sendfile` from the offset reached.
//!
//! The file is sealed against writes, so pages a socket (or a pipe) still
//! references can never change under it; it is freed when the frame is.

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::pipe::{PipeFlags, SpliceFlags};
use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// An immutable in-memory file holding one part.
#[derive(Debug)]
pub struct PartFile {
    fd: OwnedFd,
    len: usize,
    /// The read end of a pipe holding the file's pages (its write end is
    /// closed), made by the first send loop that sends the part whole:
    /// `None` when the part does not fit a pipe. A part only ever sent by
    /// `sendfile` (clients' own tasks) never makes one.
    pages: OnceLock<Option<OwnedFd>>,
}

impl PartFile {
    /// Creates the file and writes `pieces` into it, one after the other.
    pub fn create(pieces: &[&[u8]]) -> io::Result<PartFile> {
        let fd = rustix::fs::memfd_create(
            "mjpegd-part",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        let mut len = 0;
        for bytes in pieces {
            let mut done = 0;
            while done < bytes.len() {
                match rustix::io::write(&fd, &bytes[done..]) {
                    Ok(n) => done += n,
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            len += bytes.len();
        }
        let seals = SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
        rustix::fs::fcntl_add_seals(&fd, seals)?;
        Ok(PartFile {
            fd,
            len,
            pages: OnceLock::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sends bytes `offset..` of the part to socket `sock`, without
    /// blocking; returns how many the socket took. A non-blocking socket
    /// that is full gives `WouldBlock`. On a thread holding a
    /// [`ScratchPipe`] (a send loop's) a whole part goes by `tee` and
    /// `splice`.
    pub fn send_to(&self, sock: BorrowedFd<'_>, offset: usize) -> io::Result<usize> {
        if offset == 0
            && splicing()
            && let Some(pages) = self.pages()
            && let Some(sent) = splice_whole(pages, sock, self.len)
        {
            return sent;
        }
        self.sendfile_to(sock, offset)
    }

    /// The pipe holding the part's pages, made on first use.
    fn pages(&self) -> Option<BorrowedFd<'_>> {
        self.pages
            .get_or_init(|| pipe_of_pages(&self.fd, self.len))
            .as_ref()
            .map(|fd| fd.as_fd())
    }

    /// As [`PartFile::send_to`], by `sendfile` only.
    pub fn sendfile_to(&self, sock: BorrowedFd<'_>, offset: usize) -> io::Result<usize> {
        let mut off = offset as u64;
        let count = self.len.saturating_sub(offset);
        Ok(rustix::fs::sendfile(
            sock,
            self.fd.as_fd(),
            Some(&mut off),
            count,
        )?)
    }
}

/// A pipe holding the `len` bytes of `file` as references to its pages: its
/// read end, or `None` when they do not fit a pipe (or pipes are short:
/// the per-user pipe limits) and `sendfile` must do.
fn pipe_of_pages(file: &OwnedFd, len: usize) -> Option<OwnedFd> {
    if len == 0 || len > max_pipe_size() {
        return None;
    }
    let (read, write, _) = pipe_of_at_least(len, len)?;
    let mut off = 0u64;
    while (off as usize) < len {
        let rest = len - off as usize;
        match rustix::pipe::splice(
            file,
            Some(&mut off),
            &write,
            None,
            rest,
            SpliceFlags::NONBLOCK,
        ) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    Some(read)
}

/// A non-blocking pipe (read end, write end, capacity) asked to hold `want`
/// bytes: `None` unless it holds at least `len`.
fn pipe_of_at_least(want: usize, len: usize) -> Option<(OwnedFd, OwnedFd, usize)> {
    let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).ok()?;
    let capacity = rustix::pipe::fcntl_setpipe_size(&write, want).ok()?;
    (capacity >= len).then_some((read, write, capacity))
}

/// The largest pipe an unprivileged process may make
/// (`/proc/sys/fs/pipe-max-size`, 1 MiB unless changed).
fn max_pipe_size() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20)
    })
}

/// This thread's scratch pipe: a whole part is `tee`d into it, then
/// spliced into a socket.
struct Scratch {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Scratch {
    /// A scratch pipe that holds at least `len` bytes.
    fn new(len: usize) -> Option<Scratch> {
        // Room for a few parts: a larger pipe costs nothing until it holds
        // pages.
        let want = (2 * len)
            .max(SCRATCH_AT_LEAST)
            .min(max_pipe_size())
            .max(len);
        let (read, write, capacity) = pipe_of_at_least(want, len)?;
        Some(Scratch {
            read,
            write,
            capacity,
        })
    }
}

/// The smallest scratch pipe made, in bytes.
const SCRATCH_AT_LEAST: usize = 256 * 1024;

/// How long a thread that could not make its scratch pipe (the per-user
/// pipe limits, no descriptors left) sends by `sendfile` before it tries
/// again: not three wasted system calls per send meanwhile.
const SCRATCH_RETRY: Duration = Duration::from_secs(1);

/// A thread's scratch pipe, or when it may try making one again.
enum ScratchSlot {
    Ready(Scratch),
    Unavailable(Instant),
}

thread_local! {
    static SCRATCH: RefCell<Option<ScratchSlot>> = const { RefCell::new(None) };
    /// Whether this thread sends by `tee` and `splice` (a send loop's).
    static SPLICING: Cell<bool> = const { Cell::new(false) };
}

/// While held, the thread sends whole parts by `tee` and `splice` through
/// a scratch pipe of its own (made on the first such send); dropped, the
/// pipe is closed. Other threads send by `sendfile` only, so no pooled
/// thread keeps a pipe it no longer needs.
pub struct ScratchPipe(());

impl ScratchPipe {
    pub fn for_this_thread() -> ScratchPipe {
        let _ = SPLICING.try_with(|s| s.set(true));
        ScratchPipe(())
    }
}

/// Whether this thread holds a [`ScratchPipe`].
fn splicing() -> bool {
    SPLICING.try_with(Cell::get).unwrap_or(false)
}

impl Drop for ScratchPipe {
    fn drop(&mut self) {
        let _ = SPLICING.try_with(|s| s.set(false));
        let _ = SCRATCH.try_with(|slot| {
            if let Ok(mut slot) = slot.try_borrow_mut() {
                *slot = None;
            }
        });
    }
}

/// Where the rest of a part the socket did not take goes, to leave the
/// scratch pipe empty.
fn dev_null() -> Option<BorrowedFd<'static>> {
    static NULL: OnceLock<Option<OwnedFd>> = OnceLock::new();
    NULL.get_or_init(|| {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .ok()
            .map(OwnedFd::from)
    })
    .as_ref()
    .map(|fd| fd.as_fd())
}

/// Sends the whole part held by pipe `pages` (`len` bytes) to `sock` by
/// `tee` into this thread's scratch pipe and `splice` into the socket.
/// `None`: the pipe path is not available here (no scratch pipe of that
/// size could be made, `tee` took less than the part), send another way.
fn splice_whole(
    pages: BorrowedFd<'_>,
    sock: BorrowedFd<'_>,
    len: usize,
) -> Option<io::Result<usize>> {
    SCRATCH
        .try_with(|slot| {
            let mut slot = slot.try_borrow_mut().ok()?;
            match &*slot {
                Some(ScratchSlot::Ready(s)) if s.capacity >= len => {}
                Some(ScratchSlot::Unavailable(until)) if Instant::now() < *until => return None,
                _ => {
                    *slot = Some(match Scratch::new(len) {
                        Some(s) => ScratchSlot::Ready(s),
                        None => ScratchSlot::Unavailable(Instant::now() + SCRATCH_RETRY),
                    });
                }
            }
            let Some(ScratchSlot::Ready(scratch)) = slot.as_ref() else {
                return None;
            };
            let teed: usize = rustix::pipe::tee(pages, &scratch.write, len, SpliceFlags::NONBLOCK)
                .unwrap_or_default();
            if teed < len {
                if teed > 0 && !drain(scratch, teed) {
                    *slot = None;
                }
                return None;
            }
            let sent = rustix::pipe::splice(
                &scratch.read,
                None,
                sock,
                None,
                len,
                SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
            );
            let left = len - sent.as_ref().map_or(0, |&n| n);
            if left > 0 && !drain(scratch, left) {
                // Whatever stays in it would go to the next socket: a new
                // pipe next time.
                *slot = None;
            }
            Some(sent.map_err(io::Error::from))
        })
        .ok()
        .flatten()
}

/// Empties `n` bytes from the scratch pipe; false if it could not.
fn drain(scratch: &Scratch, mut n: usize) -> bool {
    let Some(null) = dev_null() else {
        return false;
    };
    while n > 0 {
        match rustix::pipe::splice(&scratch.read, None, null, None, n, SpliceFlags::NONBLOCK) {
            Ok(0) | Err(_) => return false,
            Ok(k) => n -= k.min(n),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    #[test]
    fn sends_the_exact_bytes_and_is_sealed() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let file = PartFile::create(&[&data[..40_000], &data[40_000..]]).expect("memfd");
        assert_eq!(file.len(), data.len());
        // Writing to the sealed file must fail.
        assert!(rustix::io::write(&file.fd, b"x").is_err());

        assert_eq!(received(&file), data);
    }

    /// What a reader gets of `file` sent over a blocking socket pair.
    fn received(file: &PartFile) -> Vec<u8> {
        let (a, mut b) = UnixStream::pair().expect("socket pair");
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            b.read_to_end(&mut got).expect("read");
            got
        });
        let mut off = 0;
        while off < file.len() {
            off += file.send_to(a.as_fd(), off).expect("send");
        }
        drop(a);
        reader.join().expect("reader")
    }

    /// Sends `file` from `from` on to non-blocking `sock`, waiting while it
    /// is full.
    fn send_all(file: &PartFile, sock: BorrowedFd<'_>, from: usize) {
        let mut off = from;
        while off < file.len() {
            match file.send_to(sock, off) {
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => panic!("send: {e}"),
            }
        }
    }

    #[test]
    fn a_part_a_full_socket_cut_short_leaves_nothing_behind() {
        let _pipe = ScratchPipe::for_this_thread();
        let part = |seed: u32| -> Vec<u8> {
            // Small enough that what a bad send left in the scratch pipe
            // and the next part would fit it together.
            (0..40_000u32)
                .map(|i| (i.wrapping_mul(seed) >> 7) as u8)
                .collect()
        };
        let (one, two) = (part(2_654_435_761), part(40_503));
        let (a, b) = (
            PartFile::create(&[&one]).expect("memfd"),
            PartFile::create(&[&two]).expect("memfd"),
        );
        assert!(a.pages().is_some(), "a 40 kB part fits a pipe");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let mut client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("non-blocking");
        rustix::net::sockopt::set_socket_send_buffer_size(&server, 4_096).expect("sndbuf");
        // Nobody reads yet: whole parts go in until the socket takes one
        // only in part (or not at all).
        let files = [(&a, &one), (&b, &two)];
        let mut expected = Vec::new();
        let (mut cut, mut first) = (0, 0);
        for i in 0..10_000 {
            let (file, bytes) = files[i % 2];
            expected.extend_from_slice(bytes);
            match file.send_to(server.as_fd(), 0) {
                Ok(n) if n == file.len() => continue,
                Ok(n) => first = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => first = 0,
                Err(e) => panic!("send: {e}"),
            }
            cut = i;
            break;
        }
        assert!(
            first < 40_000 && expected.len() < 10_000 * 40_000,
            "never full"
        );
        let (after, after_bytes) = files[(cut + 1) % 2];
        expected.extend_from_slice(after_bytes);
        let total = expected.len();
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; total];
            client.read_exact(&mut got).expect("read");
            got
        });
        // The rest of the cut part from where it stopped, then the next one
        // whole: what the socket did not take must not come back.
        let cut_file = files[cut % 2].0;
        send_all(cut_file, server.as_fd(), first);
        send_all(after, server.as_fd(), 0);
        let got = reader.join().expect("reader");
        assert!(got == expected, "the bytes differ");
    }

    #[test]
    fn a_part_too_big_for_a_pipe_goes_by_sendfile() {
        let data = vec![0x5au8; max_pipe_size() + 1];
        let file = PartFile::create(&[&data]).expect("memfd");
        assert!(file.pages().is_none());
        assert!(received(&file) == data);
    }
}
