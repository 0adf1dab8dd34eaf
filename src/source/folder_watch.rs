//! Change notifications for a folder (Linux inotify).
//!
//! A `dir:` source loops over the same files for hours. Asking the
//! filesystem every frame whether the folder or the next file changed costs
//! two or three `stat` calls per frame, which at one client is a tenth of
//! the server's CPU. With a watch, an unchanged folder costs one
//! non-blocking `read` per frame; the files are looked at again only after
//! the kernel reported a change in the folder. Where a watch cannot be set
//! (inotify limits, a filesystem without it) the caller keeps asking with
//! `stat`, as before.

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// What happened in the folder since the last look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Nothing,
    /// Something in it was created, removed, renamed or written.
    Changes,
    /// The watch ended (the folder was removed or renamed, or the watch
    /// failed): ask the filesystem from now on.
    Lost,
}

/// A watch on one folder's entries and their contents.
pub struct FolderWatch {
    fd: OwnedFd,
    buf: Vec<MaybeUninit<u8>>,
}

impl FolderWatch {
    /// Starts watching `path`. Changes made after this returns are seen.
    pub fn new(path: &Path) -> std::io::Result<FolderWatch> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        let events = WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::CLOSE_WRITE
            | WatchFlags::MODIFY
            | WatchFlags::ATTRIB
            | WatchFlags::DELETE_SELF
            | WatchFlags::MOVE_SELF
            | WatchFlags::ONLYDIR;
        inotify::add_watch(&fd, path, events)?;
        Ok(FolderWatch {
            fd,
            buf: vec![MaybeUninit::uninit(); 4096],
        })
    }

    /// Reads every pending event without waiting.
    /// The inotify descriptor: readable when there are events to read.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn poll(&mut self) -> Seen {
        let mut seen = Seen::Nothing;
        let mut reader = inotify::Reader::new(&self.fd, &mut self.buf);
        loop {
            match reader.next() {
                Ok(event) => {
                    let flags = event.events();
                    if flags.intersects(
                        ReadFlags::IGNORED | ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF,
                    ) {
                        return Seen::Lost;
                    }
                    seen = Seen::Changes;
                }
                Err(Errno::AGAIN) => return seen,
                Err(Errno::INTR) => {}
                Err(_) => return Seen::Lost,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn sees_changes_in_the_folder_and_its_removal() {
        let dir = std::env::temp_dir().join(format!("mjpegd-watch-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        let mut watch = FolderWatch::new(&dir).expect("watch");
        assert_eq!(watch.poll(), Seen::Nothing);
        fs::write(dir.join("a.jpg"), b"x").expect("write");
        assert_eq!(watch.poll(), Seen::Changes);
        assert_eq!(watch.poll(), Seen::Nothing);
        // Rewriting a file in place is a change too.
        fs::write(dir.join("a.jpg"), b"yy").expect("write");
        assert_eq!(watch.poll(), Seen::Changes);
        fs::remove_dir_all(&dir).expect("remove");
        assert_eq!(watch.poll(), Seen::Lost);
    }

    #[test]
    fn a_missing_folder_cannot_be_watched() {
        assert!(FolderWatch::new(Path::new("/nonexistent/mjpegd-watch")).is_err());
    }
}
