//! Source specifications as written on the command line (`pattern:640x480@30`,
//! `dir:/srv/frames@10`, `file:/run/cam.jpg`, `stdin`, `exec:COMMAND`, relays,
//! cameras, `nats://`). All parsing of specs lives here, below the sources
//! that run them.

mod relay;
mod v4l2;

pub use relay::{RelaySpec, SnapshotSpec};
pub use v4l2::{V4l2Spec, WantedFormat};

use super::redact::{Secrets, redact};
use crate::nats::BusAddress;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a stream's frames come from.
/// Its `Debug` and `Display` forms are redacted (see [`SourceSpec::secrets`]).
#[derive(Clone, PartialEq)]
pub enum SourceSpec {
    /// The built-in animated test pattern.
    Pattern(PatternSpec),
    /// The JPEG files of a folder in name order, looped.
    Dir(DirSpec),
    /// One file that another program keeps replacing; each new complete
    /// version is a frame.
    File(PathBuf),
    /// A concatenated MJPEG byte stream on standard input.
    Stdin,
    /// A shell command writing a concatenated MJPEG byte stream to stdout.
    Exec(String),
    /// Another server's MJPEG stream (`http://...`, `https://...`).
    Relay(RelaySpec),
    /// A still image polled at a fixed rate (`snapshot:URL[@FPS]`).
    Snapshot(SnapshotSpec),
    /// A V4L2 camera (`v4l2:/dev/videoN[:WxH][@FPS]`).
    V4l2(V4l2Spec),
    /// Frames another mjpegd publishes to NATS (`nats://HOST:4222/SUBJECT`).
    Nats(BusAddress),
}

impl SourceSpec {
    /// A short name of the source's kind, for `/status`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Pattern(_) => "pattern",
            SourceSpec::Dir(_) => "dir",
            SourceSpec::File(_) => "file",
            SourceSpec::Stdin => "stdin",
            SourceSpec::Exec(_) => "exec",
            SourceSpec::Relay(_) => "relay",
            SourceSpec::Snapshot(_) => "snapshot",
            SourceSpec::V4l2(_) => "v4l2",
            SourceSpec::Nats(_) => "nats",
        }
    }
}

impl SourceSpec {
    /// The secret values in the spec (URL passwords, secret query values
    /// and options, also inside an `exec:` command line), to be masked in
    /// anything its source logs or shows.
    pub fn secrets(&self) -> Secrets {
        match self {
            SourceSpec::Exec(cmd) => Secrets::from_text(cmd),
            SourceSpec::Relay(r) => r.url.secrets(),
            SourceSpec::Snapshot(s) => s.url.secrets(),
            SourceSpec::Dir(d) => Secrets::from_text(&d.path.to_string_lossy()),
            SourceSpec::File(path) => Secrets::from_text(&path.to_string_lossy()),
            // A nats:// address names files, never holds a secret.
            SourceSpec::Pattern(_)
            | SourceSpec::Stdin
            | SourceSpec::V4l2(_)
            | SourceSpec::Nats(_) => Secrets::default(),
        }
    }
}

/// Debug output ends up in logs and panic messages: the displayed form.
impl fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceSpec({:?})", self.to_string())
    }
}

impl Default for SourceSpec {
    fn default() -> Self {
        SourceSpec::Pattern(PatternSpec::default())
    }
}

/// `pattern[:WxH][@FPS]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PatternSpec {
    pub width: u16,
    pub height: u16,
    pub fps: f64,
}

impl Default for PatternSpec {
    fn default() -> Self {
        PatternSpec {
            width: 640,
            height: 480,
            fps: 30.0,
        }
    }
}

/// `dir:PATH[@FPS]`.
#[derive(Clone, Debug, PartialEq)]
pub struct DirSpec {
    pub path: PathBuf,
    pub fps: f64,
}

/// Frame rate of a `dir:` source without `@FPS`.
pub const DEFAULT_DIR_FPS: f64 = 30.0;

/// What `--source` accepts, for error messages.
const EXPECTED: &str = "expected pattern[:WxH][@FPS], dir:PATH[@FPS], file:PATH, stdin, \
exec:COMMAND, http://..., snapshot:URL[@FPS], v4l2:/dev/videoN or nats://HOST:4222/SUBJECT";

/// A source spec that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

fn err(msg: impl Into<String>) -> SpecError {
    SpecError(msg.into())
}

impl FromStr for SourceSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        let (kind, rest) = match s.split_once(':') {
            Some((k, r)) => (k, Some(r)),
            None => match s.split_once('@') {
                Some((k, _)) => (k, None),
                None => (s, None),
            },
        };
        match kind {
            "pattern" => {
                let tail = rest.unwrap_or(s.strip_prefix("pattern").unwrap_or(""));
                parse_pattern(tail).map(SourceSpec::Pattern)
            }
            "dir" => parse_dir(rest.unwrap_or("")).map(SourceSpec::Dir),
            "file" => match rest.unwrap_or("") {
                "" => Err(err("file: needs a path (file:PATH)")),
                path => Ok(SourceSpec::File(PathBuf::from(path))),
            },
            "stdin" if rest.is_none() && s == "stdin" => Ok(SourceSpec::Stdin),
            "stdin" => Err(err(format!("'{s}': stdin takes no options"))),
            "exec" => match rest.map(str::trim).unwrap_or("") {
                "" => Err(err("exec: needs a command (exec:COMMAND)")),
                cmd => Ok(SourceSpec::Exec(cmd.to_owned())),
            },
            "http" | "https" => RelaySpec::parse(s).map(SourceSpec::Relay),
            "snapshot" => SnapshotSpec::parse(rest.unwrap_or("")).map(SourceSpec::Snapshot),
            "v4l2" => V4l2Spec::parse(rest.unwrap_or("")).map(SourceSpec::V4l2),
            "nats" => BusAddress::parse(s)
                .map(SourceSpec::Nats)
                .map_err(SpecError),
            _ => Err(err(format!("unknown source '{s}' ({EXPECTED})"))),
        }
    }
}

/// Parses `PATH[@FPS]` after `dir:`. The text after the last `@` is a frame
/// rate only when it looks like a number, so paths may contain `@`.
fn parse_dir(tail: &str) -> Result<DirSpec, SpecError> {
    let (path, fps) = match tail.rsplit_once('@') {
        Some((path, fps)) if looks_numeric(fps) => (path, parse_fps(fps)?),
        _ => (tail, DEFAULT_DIR_FPS),
    };
    if path.is_empty() {
        return Err(err("dir: needs a path (dir:PATH[@FPS])"));
    }
    Ok(DirSpec {
        path: PathBuf::from(path),
        fps,
    })
}

fn looks_numeric(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c))
}

/// Parses `[WxH][@FPS]` after `pattern:` (or `@FPS` right after `pattern`).
fn parse_pattern(tail: &str) -> Result<PatternSpec, SpecError> {
    let mut spec = PatternSpec::default();
    let (size, fps) = match tail.split_once('@') {
        Some((size, fps)) => (size, Some(fps)),
        None => (tail, None),
    };
    if !size.is_empty() {
        let (w, h) = parse_size(size)?;
        spec.width = w;
        spec.height = h;
    }
    if let Some(fps) = fps {
        spec.fps = parse_fps(fps)?;
    }
    Ok(spec)
}

/// Parses `WxH`, from 16x16 up to 7680x4320.
pub fn parse_size(s: &str) -> Result<(u16, u16), SpecError> {
    let bad = || err(format!("bad size '{s}' (expected WxH, e.g. 1280x720)"));
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u16 = w.parse().map_err(|_| bad())?;
    let h: u16 = h.parse().map_err(|_| bad())?;
    if !(16..=7680).contains(&w) || !(16..=4320).contains(&h) {
        return Err(err(format!("size '{s}' out of range (16x16 to 7680x4320)")));
    }
    Ok((w, h))
}

/// Parses a frame rate in (0, 240].
pub fn parse_fps(s: &str) -> Result<f64, SpecError> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 240.0 => Ok(f),
        _ => Err(err(format!(
            "bad frame rate '{s}' (expected a number above 0, at most 240)"
        ))),
    }
}

/// The spec as it may be shown anywhere (`/status`, logs, errors): with
/// its secrets masked. This is the one displayable form of a spec.
impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Pattern(p) => write!(f, "pattern:{}x{}@{}", p.width, p.height, p.fps),
            SourceSpec::Dir(d) => write!(f, "dir:{}@{}", redact(&d.path.to_string_lossy()), d.fps),
            SourceSpec::File(path) => write!(f, "file:{}", redact(&path.to_string_lossy())),
            SourceSpec::Stdin => f.write_str("stdin"),
            SourceSpec::Exec(cmd) => write!(f, "exec:{}", self.secrets().scrub(cmd)),
            SourceSpec::Relay(r) => r.fmt(f),
            SourceSpec::Snapshot(r) => r.fmt(f),
            SourceSpec::V4l2(v) => v.fmt(f),
            SourceSpec::Nats(a) => a.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(s: &str) -> PatternSpec {
        match s.parse::<SourceSpec>() {
            Ok(SourceSpec::Pattern(p)) => p,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn pattern_specs() {
        assert_eq!(pattern("pattern"), PatternSpec::default());
        let p = pattern("pattern:1280x720@15");
        assert_eq!((p.width, p.height, p.fps), (1280, 720, 15.0));
        let p = pattern("pattern:320x240");
        assert_eq!((p.width, p.height, p.fps), (320, 240, 30.0));
        let p = pattern("pattern@5");
        assert_eq!((p.width, p.height, p.fps), (640, 480, 5.0));
        assert_eq!(pattern("pattern:@2.5").fps, 2.5);
    }

    #[test]
    fn bad_specs_say_why() {
        for bad in [
            "pattern:0x0",
            "pattern:640",
            "pattern:640x480@0",
            "pattern:640x480@abc",
            "pattern:99999x1",
            "nonsense",
            "dir:/x@0",
            "dir:/x@-3",
            "stdin:foo",
        ] {
            let e = bad.parse::<SourceSpec>().expect_err(bad);
            assert!(!e.0.is_empty());
        }
        let msg = |s: &str| s.parse::<SourceSpec>().expect_err(s).0;
        assert_eq!(msg("dir:"), "dir: needs a path (dir:PATH[@FPS])");
        assert_eq!(msg("dir"), "dir: needs a path (dir:PATH[@FPS])");
        assert_eq!(msg("dir:@5"), "dir: needs a path (dir:PATH[@FPS])");
        assert_eq!(msg("file:"), "file: needs a path (file:PATH)");
        assert_eq!(msg("exec:  "), "exec: needs a command (exec:COMMAND)");
        assert!(msg("nonsense").contains("dir:PATH"));
    }

    #[test]
    fn file_and_program_specs() {
        let parse = |s: &str| s.parse::<SourceSpec>().expect(s);
        assert_eq!(
            parse("dir:/srv/frames"),
            SourceSpec::Dir(DirSpec {
                path: "/srv/frames".into(),
                fps: 30.0
            })
        );
        assert_eq!(
            parse("dir:frames@2.5"),
            SourceSpec::Dir(DirSpec {
                path: "frames".into(),
                fps: 2.5
            })
        );
        // An `@` that is not followed by a number belongs to the path.
        assert_eq!(
            parse("dir:/srv/cam@home"),
            SourceSpec::Dir(DirSpec {
                path: "/srv/cam@home".into(),
                fps: 30.0
            })
        );
        assert_eq!(
            parse("file:/run/cam:1.jpg"),
            SourceSpec::File("/run/cam:1.jpg".into())
        );
        assert_eq!(parse("stdin"), SourceSpec::Stdin);
        assert_eq!(
            parse("exec:ffmpeg -i a:b -f mjpeg -"),
            SourceSpec::Exec("ffmpeg -i a:b -f mjpeg -".into())
        );
        assert_eq!(parse("dir:/x").kind(), "dir");
        assert_eq!(parse("file:/x").kind(), "file");
        assert_eq!(parse("stdin").kind(), "stdin");
        assert_eq!(parse("exec:true").kind(), "exec");
    }

    #[test]
    fn relay_snapshot_and_camera_specs() {
        let s: SourceSpec = "http://u:pw@cam:8080/?action=stream"
            .parse()
            .expect("valid");
        assert_eq!(s.kind(), "relay");
        assert_eq!(s.to_string(), "http://u:***@cam:8080/?action=stream");
        assert!(!format!("{s:?}").contains("pw"));
        let s: SourceSpec = "http://cam/v?user=admin&pwd=QueryPw555"
            .parse()
            .expect("valid");
        assert_eq!(s.to_string(), "http://cam/v?user=admin&pwd=***");
        let cmd = "exec:ffmpeg -i rtsp://admin:CamPw12345@h/s1 -f mjpeg - # CamPw12345";
        let s: SourceSpec = cmd.parse().expect("valid");
        assert_eq!(
            s.to_string(),
            "exec:ffmpeg -i rtsp://admin:***@h/s1 -f mjpeg - # ***"
        );
        assert!(!format!("{s:?}").contains("CamPw"));
        assert_eq!(format!("{:?}", s.secrets()), "Secrets(1)");
        let s: SourceSpec = "snapshot:https://cam/jpg@2".parse().expect("valid");
        assert_eq!(
            (s.kind(), s.to_string().as_str()),
            ("snapshot", "snapshot:https://cam/jpg@2")
        );
        let s: SourceSpec = "v4l2:/dev/video0:1280x720@30".parse().expect("valid");
        assert_eq!(
            (s.kind(), s.to_string().as_str()),
            ("v4l2", "v4l2:/dev/video0:1280x720@30")
        );
        for bad in [
            "http://",
            "snapshot:",
            "snapshot:ftp://x",
            "v4l2:",
            "https://h:0/",
        ] {
            assert!(bad.parse::<SourceSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "pattern:320x240@12.5",
            "dir:/srv/frames@10",
            "dir:/srv/cam@home@2",
            "dir:relative/path",
            "file:/run/cam.jpg",
            "stdin",
            "exec:while true; do cat a.jpg; done | cat",
        ] {
            let s: SourceSpec = text.parse().expect(text);
            assert_eq!(s.to_string().parse::<SourceSpec>(), Ok(s), "{text}");
        }
        assert_eq!(
            "dir:/x".parse::<SourceSpec>().expect("valid").to_string(),
            "dir:/x@30"
        );
    }
}
