//! What of a source spec, and of what its source says, may be shown.
//!
//! A spec can carry secrets: `user:password@` in a URL (also inside an
//! `exec:` command line), secret query values (`?pwd=...`, `&token=...`),
//! `--password=...` options. Whatever displays a spec or a source's words
//! (`/status`, the snapshot 503 body, the NO SIGNAL picture, log lines,
//! config errors) goes through here:
//!
//! - [`redact`] masks every secret it can recognise by its shape, in any
//!   text: the spec itself, or a line a command wrote that repeats a URL.
//! - [`Secrets`] holds the secret values of one spec, collected once when the
//!   source starts, and also masks them where they appear on their own (a
//!   command that echoes a password without its URL around it).
//!
//! Masking errs on the side of hiding: a malformed URL such as
//! `http://admin:pa/ss@host/` (a `/` in the password) loses everything from
//! the `:` to the `@` rather than showing part of the password.

use std::fmt;
use std::ops::Range;

/// Shown in place of a secret.
pub const MASK: &str = "***";

/// Secret values shorter than this are masked only where their shape
/// (URL, `key=value`) marks them; masked wherever they appear, every `ab`
/// in the log would vanish, and a value that short is guessed anyway.
const MIN_FREE_STANDING: usize = 4;

/// Words that make a key secret, alone or as its last part after `_`, `-`
/// or `.` (`admin_password`, `x-api-key`, `X-Amz-Signature`).
const SECRET_WORDS: &[&str] = &[
    "pass",
    "passwd",
    "password",
    "passphrase",
    "pwd",
    "pw",
    "token",
    "key",
    "apikey",
    "secret",
    "auth",
    "authorization",
    "signature",
    "sig",
    "credential",
    "credentials",
    "session",
    "sessionid",
    "cookie",
];

/// Whether a value under `key` is a secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.trim_start_matches('-').to_ascii_lowercase();
    let last = key.rsplit(['_', '-', '.']).next().unwrap_or("");
    SECRET_WORDS.contains(&key.as_str()) || SECRET_WORDS.contains(&last)
}

/// `text` with every recognisable secret replaced by [`MASK`].
pub fn redact(text: &str) -> String {
    mask(text, &merged(secret_spans(text)))
}

/// The secret values of one source spec, masked wherever they turn up.
/// Its `Debug` output shows how many there are, never what they are.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    /// Longest first, so that a secret containing another is masked whole.
    values: Vec<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({})", self.values.len())
    }
}

impl Secrets {
    /// The secrets [`redact`] finds in `text`.
    pub fn from_text(text: &str) -> Secrets {
        let mut s = Secrets::default();
        for span in secret_spans(text) {
            if let Some(value) = text.get(span) {
                s.add(value);
            }
        }
        s
    }

    /// Adds a secret value, and its percent-decoded form (a command may
    /// print either).
    pub fn add(&mut self, value: &str) {
        for v in [value.to_owned(), percent_decode(value)] {
            if v.chars().count() >= MIN_FREE_STANDING && v != MASK && !self.values.contains(&v) {
                self.values.push(v);
            }
        }
        self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    /// Adds every secret of `other`.
    pub fn extend(&mut self, other: &Secrets) {
        for v in &other.values {
            self.add(v);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with recognisable secrets and these values masked: for any
    /// text a source logs or shows (its errors, its command's output).
    pub fn scrub(&self, text: &str) -> String {
        let mut out = redact(text);
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }
}

/// Byte ranges of `text` that hold secrets (may overlap).
fn secret_spans(text: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    url_passwords(text, &mut spans);
    key_values(text, &mut spans);
    option_values(text, &mut spans);
    spans
}

/// Where a word (URL, option value) ends in free text.
fn ends_token(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>')
}

/// The password of every `scheme://user:password@host` in `text`.
fn url_passwords(text: &str, spans: &mut Vec<Range<usize>>) {
    let mut from = 0;
    while let Some(i) = text.get(from..).and_then(|t| t.find("://")) {
        let start = from + i + 3;
        from = start;
        let rest = text.get(start..).unwrap_or("");
        let token_len = rest.find(ends_token).unwrap_or(rest.len());
        let token = &rest[..token_len];
        let authority_len = token.find(['/', '?', '#']).unwrap_or(token.len());
        let authority = &token[..authority_len];
        let span = if let Some(at) = authority.rfind('@') {
            // `user:password@host`; a user without a password shows.
            authority[..at].find(':').map(|c| c + 1..at)
        } else if let Some(c) = authority.find(':')
            && !authority.starts_with('[')
            && !authority[c + 1..].bytes().all(|b| b.is_ascii_digit())
            && let Some(at) = token.rfind('@')
        {
            // Not `host:port`, and an `@` further on: a password with a
            // `/`, `?` or `#` in it. Mask up to that `@`.
            Some(c + 1..at)
        } else {
            None
        };
        if let Some(r) = span.filter(|r| !r.is_empty()) {
            spans.push(start + r.start..start + r.end);
        }
    }
}

/// The value of every `key=value` whose key is secret (URL queries,
/// `--password=...`), and of an `Authorization:` header line.
fn key_values(text: &str, spans: &mut Vec<Range<usize>>) {
    let key_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    for (i, c) in text.char_indices() {
        if c != '=' && c != ':' {
            continue;
        }
        let before = &text[..i];
        let key_start = before
            .char_indices()
            .rev()
            .take_while(|&(_, k)| key_char(k))
            .last()
            .map_or(i, |(j, _)| j);
        let key = &text[key_start..i];
        let value_start = i + 1;
        let rest = &text[value_start..];
        let value_len = if c == '=' && is_secret_key(key) {
            rest.find(|v: char| ends_token(v) || matches!(v, '&' | '#'))
                .unwrap_or(rest.len())
        } else if c == ':' && key.eq_ignore_ascii_case("authorization") {
            // The rest of the header line: `Basic ...`, `Bearer ...`.
            rest.find(['\r', '\n', '"', '\'', '`'])
                .unwrap_or(rest.len())
        } else {
            continue;
        };
        let lead = rest[..value_len].len() - rest[..value_len].trim_start().len();
        if value_len > lead {
            spans.push(value_start + lead..value_start + value_len);
        }
    }
}

/// Values given to secret command-line options as the next word
/// (`--password X`, `-token X`), and the password of `-u user:password`
/// (curl, wget).
fn option_values(text: &str, spans: &mut Vec<Range<usize>>) {
    let words = word_spans(text);
    for pair in words.windows(2) {
        let Some(name) = text[pair[0].clone()].strip_prefix('-') else {
            continue;
        };
        let value = quoted_word(text, pair[1].clone());
        let word = &text[value.clone()];
        if word.is_empty() || word.starts_with('-') || word.contains("://") {
            continue;
        }
        if name == "u" || name == "-user" {
            if let Some(c) = word.find(':') {
                spans.push(value.start + c + 1..value.end);
            }
        } else if is_secret_key(name) {
            spans.push(value);
        }
    }
}

/// The word at `word` without its quotes; a quoted word runs to its
/// closing quote, spaces and all.
fn quoted_word(text: &str, word: Range<usize>) -> Range<usize> {
    let w = &text[word.clone()];
    match w.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let inner = word.start + 1;
            let end = text[inner..].find(q).map_or(text.len(), |e| inner + e);
            inner..end
        }
        _ => word,
    }
}

/// Byte ranges of the whitespace-separated words of `text`.
fn word_spans(text: &str) -> Vec<Range<usize>> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                words.push(s..i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push(s..text.len());
    }
    words
}

/// `spans` sorted, with overlapping ones joined.
fn merged(mut spans: Vec<Range<usize>>) -> Vec<Range<usize>> {
    spans.sort_by_key(|r| r.start);
    let mut out: Vec<Range<usize>> = Vec::with_capacity(spans.len());
    for r in spans {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// `text` with each of the sorted, disjoint `spans` replaced by [`MASK`].
fn mask(text: &str, spans: &[Range<usize>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in spans {
        out.push_str(text.get(at..r.start).unwrap_or(""));
        out.push_str(MASK);
        at = r.end;
    }
    out.push_str(text.get(at..).unwrap_or(""));
    out
}

/// Decodes `%XX` escapes (and leaves anything else as it is).
pub(super) fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&crate::percent::decode(s, false)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked_anywhere() {
        assert_eq!(
            redact("cam=http://admin:s3cret@10.0.0.2:81/video?x=1 and https://h/p"),
            "cam=http://admin:***@10.0.0.2:81/video?x=1 and https://h/p"
        );
        assert_eq!(
            redact("exec:ffmpeg -i rtsp://admin:CamPw12345@host/s1 -f mjpeg -"),
            "exec:ffmpeg -i rtsp://admin:***@host/s1 -f mjpeg -"
        );
        assert_eq!(
            redact("'rtsp://u:p@ss@h/x': Connection refused"),
            "'rtsp://u:***@h/x': Connection refused"
        );
        assert_eq!(redact("http://user@h/"), "http://user@h/");
        assert_eq!(redact("http://h:8080/a@b"), "http://h:8080/a@b");
        assert_eq!(redact("http://[::1]:80/a@b"), "http://[::1]:80/a@b");
        assert_eq!(redact("dir:/x"), "dir:/x");
        // A `/` in the password: everything up to the `@` goes.
        assert_eq!(redact("http://admin:pa/ss@host/"), "http://admin:***@host/");
        // Unparsed, `@2` could belong to the password: it is masked too.
        assert_eq!(redact("snapshot:http://u:p@h@2"), "snapshot:http://u:***@2");
    }

    #[test]
    fn secret_keys_and_options_are_masked() {
        assert_eq!(
            redact("http://h/v?user=admin&pwd=QueryPw555&x=1#f"),
            "http://h/v?user=admin&pwd=***&x=1#f"
        );
        assert_eq!(
            redact("?Token=abc&api_key=k1&X-Amz-Signature=s&monkey=banana&keyframes=2"),
            "?Token=***&api_key=***&X-Amz-Signature=***&monkey=banana&keyframes=2"
        );
        assert_eq!(
            redact("tool --password=hunter22 --pass 'two words' -u bob:pw1 --user=al"),
            "tool --password=*** --pass '***' -u bob:*** --user=al"
        );
        assert_eq!(
            redact("-headers 'Authorization: Basic YWRtaW46cGFzcw==' -i x"),
            "-headers 'Authorization: ***' -i x"
        );
        assert_eq!(redact("error: no camera"), "error: no camera");
        assert_eq!(redact("a=b key= c"), "a=b key= c");
    }

    #[test]
    fn secrets_of_a_spec_are_scrubbed_from_other_text() {
        let s =
            Secrets::from_text("ffmpeg -i rtsp://admin:CamPw%2312345@h/s1?token=T0kenValue&pw=ab");
        assert_eq!(
            format!("{s:?}"),
            "Secrets(3)",
            "the encoded and decoded password, the token"
        );
        assert_eq!(
            s.scrub("auth failed for CamPw#12345 (token T0kenValue), ab stays"),
            "auth failed for *** (token ***), ab stays"
        );
        assert_eq!(
            s.scrub("rtsp://admin:CamPw%2312345@h/s1: 401"),
            "rtsp://admin:***@h/s1: 401"
        );
        assert!(Secrets::from_text("pattern:640x480@30").is_empty());
    }

    #[test]
    fn keys_that_are_secret() {
        for k in [
            "pass",
            "PWD",
            "access_token",
            "apikey",
            "api-key",
            "--password",
            "sig",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["user", "monkey", "keyframes", "passive", "action", "fps"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
