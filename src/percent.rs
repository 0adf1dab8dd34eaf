//! Percent-decoding (`%XX`) of URL parts, shared by the HTTP server (request
//! paths and queries) and the sources (credentials in camera URLs).

/// Decodes `%XX` escapes, and `+` as a space when `plus_is_space` (query
/// strings). A `%` not followed by two hex digits is kept as is.
pub fn decode(s: &str, plus_is_space: bool) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match b {
            b'%' => {
                if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                out.push(b);
            }
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn escapes_plus_and_stray_percent_signs() {
        assert_eq!(decode("a%20b%2Fc", false), b"a b/c");
        assert_eq!(decode("a+b", true), b"a b");
        assert_eq!(decode("a+b", false), b"a+b");
        assert_eq!(decode("100%", false), b"100%");
        assert_eq!(decode("%zz%4", false), b"%zz%4");
    }
}
