//! Hints attached to command-line and config-file errors: "did you mean"
//! suggestions for misspelt flags and keys, and the fix for mistakes people
//! actually make (`[stream]` for `[[stream]]`, a secret written inline).

/// The candidate closest to `word` by edit distance, when it is close enough
/// to be a likely misspelling (at most a third of the word's letters off).
pub(super) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Edit distance counting insertions, deletions, substitutions and swaps of
/// neighbours (`fsp` for `fps` is one slip, not two).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// What to say after "unknown key 'KEY'" given the keys that table accepts
/// (as serde lists them in its message: "expected one of `a`, `b`").
pub(super) fn unknown_key(key: &str, serde_message: &str) -> Option<String> {
    // Secrets stay out of the config file, which is often world-readable
    // and kept in version control; it names the files that hold them.
    match key {
        "auth" | "password" | "credentials" => {
            return Some(
                "the config file holds no secrets: write USER:PASSWORD into a file \
                 readable only by mjpegd and set auth_file = \"PATH\""
                    .into(),
            );
        }
        "token_secret" => {
            return Some(
                "the config file holds no secrets: write the secret into a file \
                 and set token_secret_file = \"PATH\""
                    .into(),
            );
        }
        "streams" => return Some("each stream is a [[stream]] table".into()),
        _ => {}
    }
    let expected = serde_message.split_once("expected one of ")?.1;
    let keys = expected.split(", ").map(|k| k.trim().trim_matches('`'));
    closest(key, keys).map(|k| format!("did you mean '{k}'?"))
}

/// clap's "tip: a similar argument exists: '--listen'" as "did you mean
/// '--listen'?".
pub(super) fn clap_tip(message: &str) -> Option<String> {
    message.lines().find_map(|l| {
        let tip = l.trim().strip_prefix("tip: ")?;
        if !tip.starts_with("a similar") && !tip.starts_with("some similar") {
            return None;
        }
        let (_, names) = tip.split_once(": ")?;
        Some(format!("did you mean {}?", names.replace(", ", " or ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        let keys = ["listen", "quality", "snapshot_timeout"];
        assert_eq!(closest("lisen", keys), Some("listen"));
        assert_eq!(closest("qualty", keys), Some("quality"));
        assert_eq!(closest("snapshot_timout", keys), Some("snapshot_timeout"));
        assert_eq!(closest("frobnicate", keys), None);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("fsp", "fps"), 1);
    }

    #[test]
    fn unknown_key_hints() {
        let serde = "unknown field `fsp`, expected one of `name`, `source`, `fps`, `quality`";
        assert_eq!(
            unknown_key("fsp", serde).as_deref(),
            Some("did you mean 'fps'?")
        );
        assert!(unknown_key("auth", serde).is_some_and(|h| h.contains("auth_file")));
        assert!(unknown_key("token_secret", "").is_some_and(|h| h.contains("token_secret_file")));
        assert_eq!(unknown_key("zzzzzz", serde), None);
    }

    #[test]
    fn clap_tips() {
        let msg = "error: unexpected argument '--lisen' found\n\n  tip: a similar argument exists: '--listen'\n\nUsage: ...";
        assert_eq!(clap_tip(msg).as_deref(), Some("did you mean '--listen'?"));
        assert_eq!(
            clap_tip("error: x\n  tip: to pass '--x' as a value, use '-- --x'"),
            None
        );
    }
}
