//! `dir:PATH[@FPS]`: the `.jpg`/`.jpeg` files of a folder, in name order,
//! looped at a steady frame rate.
//!
//! The folder is watched for changes (inotify, see [`super::folder_watch`]):
//! after a file was added, removed, renamed or written the folder is listed
//! again and each file is looked at again before it is shown, so changes are
//! picked up within a frame, while an unchanged folder costs no filesystem
//! call per frame. Where no watch can be set, the folder is listed again at
//! the start of every loop and whenever its modification time changes, and
//! every file is looked at (`stat`) each time it is shown. Files that are
//! symbolic links are always looked at: their targets may live elsewhere.
//! Each file is read and checked as a complete JPEG before it is published;
//! a bad file is dropped, counted and logged once per burst. File contents
//! are cached by (inode, length, modification time), so looping does not
//! read the disk every frame, while a changed file is read again.
//!
//! The source runs on its own thread with plain `std::fs`: a frame is a
//! short sequence of small blocking calls (stat, maybe readdir and read),
//! which `tokio::fs` would only hand to the blocking pool one by one, and a
//! thread of its own keeps the frame schedule steady like the test pattern's.

use super::folder_watch::{FolderWatch, Seen};
use super::pacer::Pacer;
use super::{BadFrames, DirSpec, SourceContext, SourceError, run_on_thread};
use crate::frame::FrameMeta;
use crate::jpeg::{self, JpegError};
use bytes::Bytes;
use std::fs;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Files larger than this are not frames (and would cost too much memory).
const MAX_FILE: u64 = 64 << 20;
/// At most this many bytes of file contents stay cached; files beyond that
/// are read from disk every time they are shown.
const MAX_CACHED: usize = 256 << 20;
/// A truncated file modified this recently is most likely still being
/// written: it is skipped without counting it as bad, and read again later.
const STILL_WRITING: Duration = Duration::from_secs(2);

/// Plays the folder until cancelled or until it has nothing to show.
pub async fn run(spec: DirSpec, ctx: &SourceContext) -> Result<(), SourceError> {
    let ctx = ctx.clone();
    let name = format!("dir-{}", ctx.hub.name());
    run_on_thread(name, move || play(&spec, &ctx)).await
}

fn play(spec: &DirSpec, ctx: &SourceContext) -> Result<(), SourceError> {
    let mut folder = Folder::open(&spec.path)?;
    let mut bad = BadFrames::new(ctx.hub.clone(), folder.label.clone());
    let mut pacer = Pacer::new(spec.fps);
    // The first frame looks at the folder; later ones only when the watch
    // became readable while the pacer waited.
    let mut look = true;
    while pacer
        .wait_watching(&ctx.cancel, folder.watch_fd().map(|fd| (fd, &mut look)))
        .is_some()
    {
        let frame = folder.next_frame(&mut bad, std::mem::take(&mut look))?;
        ctx.hub
            .publish_owned(frame.jpeg, FrameMeta::now(frame.width, frame.height));
        bad.good();
    }
    Ok(())
}

/// A JPEG ready to publish.
#[derive(Clone)]
struct Jpeg {
    jpeg: Bytes,
    width: u16,
    height: u16,
}

/// What identifies one version of a file's contents.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Version {
    ino: u64,
    len: u64,
    mtime: Option<SystemTime>,
}

impl Version {
    fn of(m: &fs::Metadata) -> Version {
        Version {
            ino: m.ino(),
            len: m.len(),
            mtime: m.modified().ok(),
        }
    }
}

enum Content {
    /// A valid JPEG; `None` when the cache was full (read it again next time).
    Good(Option<Jpeg>),
    /// Not a complete JPEG (already counted and logged).
    Bad,
}

struct Cached {
    version: Version,
    content: Content,
    /// The folder's change count when `version` was read from the file.
    checked: u64,
}

/// One file of the folder, as last listed.
#[derive(Default)]
struct Entry {
    path: PathBuf,
    /// A symbolic link (a change of its target is not seen by the watch).
    link: bool,
    cached: Option<Cached>,
}

/// The folder being played: its sorted file list with the cached file
/// contents (kept beside each name, so a frame costs no lookup), and where
/// playback is.
struct Folder {
    path: PathBuf,
    /// `dir:PATH`, for messages.
    label: String,
    /// Modification time of the folder when it was last listed.
    listed_mtime: Option<SystemTime>,
    files: Vec<Entry>,
    /// Where in `files` the next frame comes from.
    next: usize,
    cached_bytes: usize,
    /// Tells when something in the folder changed; `None` when no watch
    /// could be set (or it ended): then the filesystem is asked every time.
    watch: Option<FolderWatch>,
    /// How many times the watch reported changes: a cached file checked at
    /// the current count is known unchanged.
    changes: u64,
}

impl Folder {
    fn open(path: &Path) -> Result<Folder, SourceError> {
        let mut folder = Folder {
            path: path.to_owned(),
            label: format!("dir:{}", path.display()),
            listed_mtime: None,
            files: Vec::new(),
            next: 0,
            cached_bytes: 0,
            // Set before the first listing, so no change after it is missed.
            watch: FolderWatch::new(path).ok(),
            changes: 0,
        };
        folder.list()?;
        if folder.files.is_empty() {
            return Err(folder.no_files());
        }
        Ok(folder)
    }

    fn no_files(&self) -> SourceError {
        SourceError::new(format!("{} has no JPEG files", self.label))
    }

    /// Lists the folder's JPEG files in name order and forgets cached files
    /// that are gone.
    fn list(&mut self) -> Result<(), SourceError> {
        let cannot = |e: io::Error| SourceError::new(format!("{}: {e}", self.label));
        // Taken before listing, so a change during the listing is seen next
        // time rather than lost.
        self.listed_mtime = fs::metadata(&self.path).map_err(cannot)?.modified().ok();
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.path).map_err(cannot)? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            // Symlinks count if they point to a file; stat follows them.
            if is_jpeg_name(&path) && path.is_file() {
                let link = entry.file_type().is_ok_and(|t| t.is_symlink());
                files.push(Entry {
                    path,
                    link,
                    cached: None,
                });
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        // Go on with the first name after the one shown last.
        let last = self.next.checked_sub(1).and_then(|i| self.files.get(i));
        self.next = last.map_or(0, |last| files.partition_point(|f| f.path <= last.path));
        // Files still there keep what was cached of them.
        let mut old = std::mem::take(&mut self.files).into_iter().peekable();
        for file in &mut files {
            while old.next_if(|o| o.path < file.path).is_some() {}
            if let Some(o) = old.next_if(|o| o.path == file.path) {
                file.cached = o.cached;
            }
        }
        self.cached_bytes = files
            .iter()
            .filter_map(|f| f.cached.as_ref())
            .map(cached_len)
            .sum();
        self.files = files;
        Ok(())
    }

    /// The watch's descriptor, readable when it has something to report.
    fn watch_fd(&self) -> Option<BorrowedFd<'_>> {
        self.watch.as_ref().map(FolderWatch::as_fd)
    }

    /// Whether the folder changed since it was listed. `look`: the watch may
    /// have something to report (else it is not asked).
    fn changed(&mut self, look: bool) -> bool {
        if let Some(watch) = &mut self.watch {
            if !look {
                return false;
            }
            match watch.poll() {
                Seen::Nothing => return false,
                Seen::Changes => {
                    self.changes += 1;
                    return true;
                }
                Seen::Lost => {
                    self.watch = None;
                    self.changes += 1;
                }
            }
        }
        fs::metadata(&self.path)
            .map(|m| m.modified().ok() != self.listed_mtime)
            .unwrap_or(true)
    }

    /// The next good JPEG after the last one shown, wrapping around (and
    /// listing the folder again) at the end. Fails when a whole loop finds
    /// nothing to show.
    fn next_frame(&mut self, bad: &mut BadFrames, look: bool) -> Result<Jpeg, SourceError> {
        if self.changed(look) {
            self.list()?;
        }
        let mut wrapped = false;
        loop {
            let idx = self.next;
            if idx >= self.files.len() {
                if self.files.is_empty() {
                    return Err(self.no_files());
                }
                if wrapped {
                    return Err(SourceError::new(format!(
                        "{} has no valid JPEG files",
                        self.label
                    )));
                }
                wrapped = true;
                self.next = 0;
                if self.watch.is_none() {
                    self.list()?;
                }
                continue;
            }
            self.next = idx + 1;
            // Taken out of the list while it is loaded (no copy per frame).
            let mut entry = std::mem::take(&mut self.files[idx]);
            let jpeg = self.load(&mut entry, bad);
            self.files[idx] = entry;
            if let Some(jpeg) = jpeg {
                return Ok(jpeg);
            }
        }
    }

    /// The contents of `path` if it is a good JPEG, from the cache when the
    /// file is unchanged.
    fn load(&mut self, entry: &mut Entry, bad: &mut BadFrames) -> Option<Jpeg> {
        let path = entry.path.as_path();
        let file = || -> String {
            path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into(),
            )
        };
        if self.watch.is_some()
            && !entry.link
            && let Some(c) = entry.cached.as_ref().filter(|c| c.checked == self.changes)
        {
            // Nothing in the folder changed since this file was looked at.
            match &c.content {
                Content::Good(Some(jpeg)) => return Some(jpeg.clone()),
                Content::Bad => return None,
                Content::Good(None) => {}
            }
        }
        // Gone since the listing: skip it; the folder's change makes the
        // next frame list it again.
        let meta = fs::metadata(path).ok()?;
        let version = Version::of(&meta);
        if let Some(c) = entry.cached.as_mut().filter(|c| c.version == version) {
            c.checked = self.changes;
            match &c.content {
                Content::Good(Some(jpeg)) => return Some(jpeg.clone()),
                Content::Bad => return None,
                Content::Good(None) => {}
            }
        }
        if meta.len() > MAX_FILE {
            bad.drop_frame(format!("{}: larger than {MAX_FILE} bytes", file()));
            self.store(entry, version, Content::Bad);
            return None;
        }
        let data = match fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                bad.drop_frame(format!("{}: {e}", file()));
                return None;
            }
        };
        match jpeg::check(&data) {
            Ok(info) => {
                let jpeg = Jpeg {
                    jpeg: Bytes::from(data),
                    width: info.width,
                    height: info.height,
                };
                let keep = self.cached_bytes + jpeg.jpeg.len() <= MAX_CACHED;
                self.store(entry, version, Content::Good(keep.then(|| jpeg.clone())));
                Some(jpeg)
            }
            Err(JpegError::Truncated) if modified_within(&meta, STILL_WRITING) => None,
            Err(e) => {
                bad.drop_frame(format!("{}: {e}", file()));
                self.store(entry, version, Content::Bad);
                None
            }
        }
    }

    fn store(&mut self, entry: &mut Entry, version: Version, content: Content) {
        let cached = Cached {
            version,
            content,
            checked: self.changes,
        };
        self.cached_bytes += cached_len(&cached);
        if let Some(old) = entry.cached.replace(cached) {
            self.cached_bytes -= cached_len(&old);
        }
    }
}

fn cached_len(c: &Cached) -> usize {
    match &c.content {
        Content::Good(Some(j)) => j.jpeg.len(),
        _ => 0,
    }
}

fn is_jpeg_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
}

fn modified_within(meta: &fs::Metadata, d: Duration) -> bool {
    meta.modified()
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canvas::{Canvas, Rgb};
    use crate::hub::FrameHub;

    fn jpeg(w: u16, h: u16) -> Vec<u8> {
        Canvas::new(w, h, Rgb(10, 20, 30))
            .encode_jpeg(80)
            .expect("encodes")
            .to_vec()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mjpegd-files-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn plays_in_name_order_skips_bad_files_and_caches() {
        let dir = temp_dir("order");
        fs::write(dir.join("b.jpg"), jpeg(32, 16)).expect("write");
        fs::write(dir.join("a.JPEG"), jpeg(16, 16)).expect("write");
        fs::write(dir.join("c.jpg"), b"not a jpeg").expect("write");
        fs::write(dir.join("d.txt"), b"ignored").expect("write");
        fs::write(dir.join("e.jpg"), jpeg(48, 16)).expect("write");
        let hub = FrameHub::new("t", "dir", "dir");
        let mut bad = BadFrames::new(hub.clone(), "dir");
        let mut folder = Folder::open(&dir).expect("opens");
        let widths: Vec<u16> = (0..6)
            .map(|_| folder.next_frame(&mut bad, true).expect("frame").width)
            .collect();
        assert_eq!(widths, [16, 32, 48, 16, 32, 48]);
        // The bad file is counted once, not once per loop.
        assert_eq!(hub.status().frames_dropped, 1);
        assert!(folder.cached_bytes > 0);

        // A changed file is read again.
        std::thread::sleep(Duration::from_millis(20));
        fs::write(dir.join("a.JPEG"), jpeg(64, 16)).expect("write");
        let widths: Vec<u16> = (0..3)
            .map(|_| folder.next_frame(&mut bad, true).expect("frame").width)
            .collect();
        assert_eq!(widths, [64, 32, 48]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn empty_missing_and_all_bad_folders_fail_with_a_reason() {
        let dir = temp_dir("empty");
        let e = Folder::open(&dir).err().expect("empty folder fails");
        assert_eq!(e.0, format!("dir:{} has no JPEG files", dir.display()));
        let e = Folder::open(&dir.join("missing")).err().expect("fails");
        assert!(e.0.contains("No such file"), "{e}");

        fs::write(dir.join("x.jpg"), b"\xff\xd8garbage").expect("write");
        let old = SystemTime::now() - Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(dir.join("x.jpg"))
            .and_then(|f| f.set_modified(old))
            .expect("set mtime");
        let hub = FrameHub::new("t", "dir", "dir");
        let mut bad = BadFrames::new(hub.clone(), "dir");
        let mut folder = Folder::open(&dir).expect("opens");
        let e = folder
            .next_frame(&mut bad, true)
            .err()
            .expect("nothing valid");
        assert!(e.0.ends_with("has no valid JPEG files"), "{e}");
        assert_eq!(hub.status().frames_dropped, 1);
        let _ = fs::remove_dir_all(&dir);
    }
}
