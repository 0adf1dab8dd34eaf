//! What a client asks for (`?width=`, `?height=`, `?quality=`,
//! `?rendition=NAME`) and the variant that answers it.
//!
//! Ad-hoc sizes are snapped to a few widths per source: the full width and
//! the 1/2, 1/4 and 1/8 that a DCT-scaled decode gives cheaply, plus the
//! widths of the stream's configured renditions. So a client cycling
//! through a thousand widths still lands on a handful of variants (and the
//! per-stream cap bounds even those, see [`super::Renditions`]).

use std::fmt;

/// One variant of a stream: its width and JPEG quality. The height follows
/// the source's aspect ratio, frame by frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub width: u16,
    pub quality: u8,
}

impl Key {
    /// The height of this variant for a `source_w`×`source_h` source.
    pub fn height_for(&self, source_w: u16, source_h: u16) -> u16 {
        scaled_side(source_h, self.width, source_w)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "w{}q{}", self.width, self.quality)
    }
}

/// A rendition declared in the configuration (`[[stream.rendition]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedRendition {
    pub name: String,
    pub width: Option<u16>,
    pub height: Option<u16>,
    /// `None`: the stream's quality.
    pub quality: Option<u8>,
}

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// A configured rendition, by name.
    Named(String),
    /// An ad-hoc size and/or quality.
    Adhoc {
        width: Option<u16>,
        height: Option<u16>,
        quality: Option<u8>,
    },
}

/// The query keys this module reads.
const KEYS: [&str; 4] = ["width", "height", "quality", "rendition"];

impl Wanted {
    /// Reads the rendition keys of a query (`query(key)` gives a key's
    /// value); `Ok(None)` when there are none (the source itself), `Err`
    /// with the reason for a 400 when a value is bad.
    pub fn from_query<'a>(
        query: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Option<Wanted>, String> {
        if KEYS.iter().all(|k| query(k).is_none()) {
            return Ok(None);
        }
        if let Some(name) = query("rendition") {
            if ["width", "height", "quality"]
                .iter()
                .any(|k| query(k).is_some())
            {
                return Err("give rendition or width/height/quality, not both".into());
            }
            let name = name.trim();
            if name.is_empty() {
                return Err("rendition needs a name".into());
            }
            return Ok(Some(Wanted::Named(name.to_owned())));
        }
        let side = |key: &str| -> Result<Option<u16>, String> {
            query(key)
                .map(|v| match v.trim().parse::<u16>() {
                    Ok(n) if n >= 1 => Ok(n),
                    _ => Err(format!("{key} must be a whole number from 1 to 65535")),
                })
                .transpose()
        };
        let width = side("width")?;
        let height = side("height")?;
        let quality = query("quality")
            .map(|v| match v.trim().parse::<u8>() {
                Ok(q @ 1..=100) => Ok(q),
                _ => Err("quality must be a whole number from 1 to 100".to_owned()),
            })
            .transpose()?;
        Ok(Some(Wanted::Adhoc {
            width,
            height,
            quality,
        }))
    }
}

/// `side * num / den`, rounded, at least 1.
fn scaled_side(side: u16, num: u16, den: u16) -> u16 {
    if den == 0 {
        return side.max(1);
    }
    let v = (u32::from(side) * u32::from(num) + u32::from(den) / 2) / u32::from(den);
    v.clamp(1, u32::from(u16::MAX)) as u16
}

/// The width asked for by `width`/`height` (fitting inside both when both
/// are given), never wider than the source.
fn asked_width(width: Option<u16>, height: Option<u16>, source_w: u16, source_h: u16) -> u16 {
    let by_height = height.map(|h| scaled_side(source_w, h.min(source_h), source_h));
    match (width, by_height) {
        (Some(w), Some(b)) => w.min(b),
        (Some(w), None) => w,
        (None, Some(b)) => b,
        (None, None) => source_w,
    }
    .clamp(1, source_w.max(1))
}

/// The widths ad-hoc requests snap to for a source `source_w` wide: the
/// source's own, its 1/2, 1/4 and 1/8 (what a DCT-scaled decode makes
/// cheaply), and `configured` ones no wider than the source; ascending.
pub fn snap_widths(source_w: u16, configured: impl IntoIterator<Item = u16>) -> Vec<u16> {
    let mut widths: Vec<u16> = [1u16, 2, 4, 8]
        .iter()
        .map(|d| source_w.div_ceil(*d).max(1))
        .chain(configured.into_iter().filter(|w| *w <= source_w))
        .collect();
    widths.sort_unstable();
    widths.dedup();
    widths
}

/// The variant for `wanted` from a `source_w`×`source_h` source, or `None`
/// for the source itself (full width, its own quality). `default_quality`
/// is the stream's. `Err`: no rendition of that name.
pub fn resolve(
    wanted: &Wanted,
    named: &[NamedRendition],
    source_w: u16,
    source_h: u16,
    default_quality: u8,
) -> Result<Option<Key>, String> {
    match wanted {
        Wanted::Named(name) => {
            let Some(r) = named.iter().find(|r| r.name == *name) else {
                let known: Vec<&str> = named.iter().map(|r| r.name.as_str()).collect();
                return Err(if known.is_empty() {
                    format!("no rendition '{name}': this stream has none configured")
                } else {
                    format!(
                        "no rendition '{name}' (this stream has {})",
                        known.join(", ")
                    )
                });
            };
            Ok(Some(Key {
                width: asked_width(r.width, r.height, source_w, source_h),
                quality: r.quality.unwrap_or(default_quality),
            }))
        }
        Wanted::Adhoc {
            width,
            height,
            quality,
        } => {
            let asked = asked_width(*width, *height, source_w, source_h);
            let configured = named
                .iter()
                .map(|r| asked_width(r.width, r.height, source_w, source_h));
            let snapped = snap_widths(source_w, configured)
                .into_iter()
                // Nearest; of two equally near, the larger.
                .min_by_key(|w| (w.abs_diff(asked), u16::MAX - w))
                .unwrap_or(source_w);
            if snapped >= source_w && quality.is_none() {
                return Ok(None);
            }
            Ok(Some(Key {
                width: snapped,
                quality: quality.unwrap_or(default_quality),
            }))
        }
    }
}

/// Of `live` variants (and the source itself, `None`, `source_w` wide at
/// `default_quality`), the one nearest to `key`: width first, then quality.
pub fn nearest(
    key: Key,
    live: impl IntoIterator<Item = Key>,
    source_w: u16,
    default_quality: u8,
) -> Option<Key> {
    let source = (None, source_w, default_quality);
    let candidates = live.into_iter().map(|k| (Some(k), k.width, k.quality));
    std::iter::once(source)
        .chain(candidates)
        .min_by_key(|(_, w, q)| (w.abs_diff(key.width), q.abs_diff(key.quality)))
        .and_then(|(k, _, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
    }

    fn adhoc(w: Option<u16>, h: Option<u16>, q: Option<u8>) -> Wanted {
        Wanted::Adhoc {
            width: w,
            height: h,
            quality: q,
        }
    }

    #[test]
    fn query_values_are_checked() {
        assert_eq!(Wanted::from_query(query(&[("fps", "5")])), Ok(None));
        assert_eq!(
            Wanted::from_query(query(&[("width", "640")])),
            Ok(Some(adhoc(Some(640), None, None)))
        );
        for bad in [
            &[("width", "0")][..],
            &[("width", "-3")],
            &[("width", "abc")],
            &[("width", "70000")],
            &[("height", "")],
            &[("quality", "0")],
            &[("quality", "101")],
            &[("rendition", "")],
            &[("rendition", "small"), ("width", "3")],
        ] {
            assert!(Wanted::from_query(query(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes_snap_to_dct_scales_and_configured_widths() {
        let none: &[NamedRendition] = &[];
        let r = |w: Option<u16>, h: Option<u16>, q| resolve(&adhoc(w, h, q), none, 1280, 720, 80);
        assert_eq!(
            r(Some(640), None, None),
            Ok(Some(Key {
                width: 640,
                quality: 80
            }))
        );
        assert_eq!(
            r(Some(500), None, None),
            Ok(Some(Key {
                width: 640,
                quality: 80
            }))
        );
        assert_eq!(
            r(Some(1), None, None),
            Ok(Some(Key {
                width: 160,
                quality: 80
            }))
        );
        assert_eq!(
            r(None, Some(180), None),
            Ok(Some(Key {
                width: 320,
                quality: 80
            }))
        );
        // Larger than the source, or the source's size: the source itself.
        assert_eq!(r(Some(5000), None, None), Ok(None));
        assert_eq!(r(Some(1280), None, None), Ok(None));
        assert_eq!(
            r(None, None, Some(30)),
            Ok(Some(Key {
                width: 1280,
                quality: 30
            }))
        );
        // Both: fits inside the box.
        assert_eq!(
            r(Some(1000), Some(180), Some(50)),
            Ok(Some(Key {
                width: 320,
                quality: 50
            }))
        );
        let named = [NamedRendition {
            name: "small".into(),
            width: Some(500),
            height: None,
            quality: Some(70),
        }];
        assert_eq!(
            resolve(&adhoc(Some(480), None, None), &named, 1280, 720, 80),
            Ok(Some(Key {
                width: 500,
                quality: 80
            }))
        );
        assert_eq!(
            resolve(&Wanted::Named("small".into()), &named, 1280, 720, 80),
            Ok(Some(Key {
                width: 500,
                quality: 70
            }))
        );
        assert!(resolve(&Wanted::Named("big".into()), &named, 1280, 720, 80).is_err());
        assert_eq!(
            Key {
                width: 500,
                quality: 70
            }
            .height_for(1280, 720),
            281
        );
    }

    #[test]
    fn nearest_live_variant_or_the_source() {
        let live = [
            Key {
                width: 640,
                quality: 80,
            },
            Key {
                width: 160,
                quality: 80,
            },
        ];
        let k = |w, q| Key {
            width: w,
            quality: q,
        };
        assert_eq!(nearest(k(320, 80), live, 1280, 80), Some(k(160, 80)));
        assert_eq!(nearest(k(640, 20), live, 1280, 80), Some(k(640, 80)));
        assert_eq!(nearest(k(1280, 20), live, 1280, 80), None);
    }
}
