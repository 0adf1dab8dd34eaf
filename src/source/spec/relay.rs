//! The specs of sources fetched over HTTP: `http[s]://...` relays and
//! `snapshot:URL[@FPS]` stills.

use super::{SpecError, parse_fps};
use crate::source::http_client::{HttpUrl, Timeouts};
use crate::source::tls_trust::TlsTrust;
use std::fmt;

/// `http://...` or `https://...`: relay another server's MJPEG stream.
#[derive(Clone, Debug, PartialEq)]
pub struct RelaySpec {
    pub url: HttpUrl,
    pub timeouts: Timeouts,
    /// Which certificates an `https` upstream may present.
    pub tls: TlsTrust,
}

impl RelaySpec {
    /// Parses the whole spec, which is the URL.
    pub fn parse(s: &str) -> Result<RelaySpec, SpecError> {
        let url = HttpUrl::parse(s).map_err(|e| SpecError(format!("bad relay URL: {e}")))?;
        Ok(RelaySpec {
            url,
            timeouts: Timeouts::default(),
            tls: TlsTrust::default(),
        })
    }
}

/// Displays the URL with any password replaced by `***`.
impl fmt::Display for RelaySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.url)
    }
}

/// `snapshot:URL[@FPS]`: poll a still image.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotSpec {
    pub url: HttpUrl,
    pub fps: f64,
    pub timeouts: Timeouts,
    /// Which certificates an `https` upstream may present.
    pub tls: TlsTrust,
}

impl SnapshotSpec {
    /// Parses what follows `snapshot:`. A trailing `@N` is the rate when N
    /// is a number (a user name's `@` is followed by a host instead).
    pub fn parse(s: &str) -> Result<SnapshotSpec, SpecError> {
        let (url, fps) = match s.rsplit_once('@') {
            Some((url, fps)) if fps.parse::<f64>().is_ok() => (url, parse_fps(fps)?),
            _ => (s, 1.0),
        };
        let url = HttpUrl::parse(url).map_err(|e| SpecError(format!("bad snapshot URL: {e}")))?;
        Ok(SnapshotSpec {
            url,
            fps,
            timeouts: Timeouts::default(),
            tls: TlsTrust::default(),
        })
    }
}

impl fmt::Display for SnapshotSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "snapshot:{}@{}", self.url, self.fps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_specs() {
        let s = SnapshotSpec::parse("http://u:p@cam/jpg@2.5").expect("valid");
        assert_eq!(s.fps, 2.5);
        assert_eq!(s.url.host(), "cam");
        assert_eq!(s.to_string(), "snapshot:http://u:***@cam/jpg@2.5");
        let s = SnapshotSpec::parse("http://u:p@cam").expect("valid");
        assert_eq!((s.fps, s.url.path().as_str()), (1.0, "/"));
        assert!(SnapshotSpec::parse("http://cam/@0").is_err());
        assert!(SnapshotSpec::parse("cam/jpg").is_err());
    }
}
