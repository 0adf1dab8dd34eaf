//! `file:PATH`: one file that another program keeps replacing (a camera tool
//! writing `latest.jpg`). Each new complete version becomes a frame.
//!
//! The path is polled every `POLL` (a `stat`, so it costs next to nothing)
//! for a new version: a different inode (the writer renamed a new file over
//! it), length or modification time (the writer overwrote it in place). A new
//! version is read and published only once it is a complete JPEG: a writer
//! that truncates the file and writes it in several pieces shows us prefixes
//! of the new picture first, and no prefix of a JPEG passes `jpeg::check`
//! (the EOI marker comes last, and entropy-coded data cannot contain one).
//! A file that changes while it is read is read again on the next poll. A
//! version that stays incomplete for `SETTLE` is dropped as a bad frame.
//!
//! While the file is unchanged nothing is published: the hub keeps showing
//! the latest frame and the stream stays online. A missing file is a source
//! error, so the supervisor shows the placeholder and tries again.
//!
//! Polling runs on its own thread with plain `std::fs`: the loop is a `stat`
//! every few milliseconds plus the occasional read, which is simplest as
//! straight blocking code; inotify would save the polls but misses writers
//! on network filesystems and needs the same completeness check anyway.

use super::{BadFrames, SourceContext, SourceError, run_on_thread};
use crate::frame::{FrameMeta, owned_jpeg};
use crate::jpeg;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the file is checked for a new version.
const POLL: Duration = Duration::from_millis(10);
/// How long a version may stay incomplete before it is dropped as bad.
const SETTLE: Duration = Duration::from_secs(1);
/// How long the file may be missing (a writer that deletes and recreates it)
/// before the source reports it gone.
const MISSING_GRACE: Duration = Duration::from_secs(1);
/// Files larger than this are not frames.
const MAX_FILE: u64 = 64 << 20;

/// Watches the file until cancelled or until it goes missing.
pub async fn run(path: PathBuf, ctx: &SourceContext) -> Result<(), SourceError> {
    let ctx = ctx.clone();
    let name = format!("file-{}", ctx.hub.name());
    run_on_thread(name, move || watch(&path, &ctx)).await
}

/// What identifies one version of the file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Version {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Version {
    fn of(m: &fs::Metadata) -> Version {
        Version {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

fn watch(path: &Path, ctx: &SourceContext) -> Result<(), SourceError> {
    let label = format!("file:{}", path.display());
    let fail = |e: io::Error| SourceError::new(format!("{label}: {e}"));
    fs::metadata(path).map_err(fail)?;
    let mut bad = BadFrames::new(ctx.hub.clone(), label.clone());
    // The version on show, or the one given up on as bad: nothing to do
    // until the file changes again.
    let mut done: Option<Version> = None;
    // A version read while incomplete, and when it was first seen.
    let mut pending: Option<(Version, Instant)> = None;
    let mut missing_since: Option<Instant> = None;
    while !ctx.cancel.is_cancelled() {
        std::thread::sleep(POLL);
        let version = match fs::metadata(path) {
            Ok(m) => Version::of(&m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let since = *missing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= MISSING_GRACE {
                    return Err(fail(e));
                }
                continue;
            }
            Err(e) => return Err(fail(e)),
        };
        missing_since = None;
        if done == Some(version) {
            continue;
        }
        // An incomplete version that has not changed: the writer is still
        // busy. Read it again only to decide about it once it has settled.
        if let Some((v, since)) = pending
            && v == version
            && since.elapsed() < SETTLE
        {
            continue;
        }
        let (data, version) = match read_version(path) {
            Ok(Some(read)) => read,
            Ok(None) => continue, // changed while reading: next poll
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(fail(e)),
        };
        match jpeg::check(&data) {
            Ok(info) => {
                ctx.hub
                    .publish_owned(owned_jpeg(data), FrameMeta::now(info.width, info.height));
                bad.good();
                done = Some(version);
                pending = None;
            }
            Err(e) => match pending {
                Some((v, since)) if v == version && since.elapsed() >= SETTLE => {
                    bad.drop_frame(format!("{label}: {e}"));
                    done = Some(version);
                    pending = None;
                }
                Some((v, _)) if v == version => {}
                _ => pending = Some((version, Instant::now())),
            },
        }
    }
    Ok(())
}

/// Reads the whole file and the version it had. `None` when the file
/// changed while it was read, so the bytes may mix two versions.
fn read_version(path: &Path) -> io::Result<Option<(Vec<u8>, Version)>> {
    let mut file = fs::File::open(path)?;
    let before = Version::of(&file.metadata()?);
    if before.len > MAX_FILE {
        return Err(io::Error::other(format!(
            "larger than {MAX_FILE} bytes, not a frame"
        )));
    }
    let mut data = Vec::with_capacity(before.len as usize + 1);
    // One byte past the expected length shows a file that grew meanwhile.
    file.by_ref().take(before.len + 1).read_to_end(&mut data)?;
    let after = Version::of(&file.metadata()?);
    Ok((before == after && data.len() as u64 == before.len).then_some((data, before)))
}
