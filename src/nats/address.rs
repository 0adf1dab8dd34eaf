//! `nats://HOST[:PORT][,HOST[:PORT]...]/SUBJECT[?OPTIONS]`: where a stream's
//! frames travel on a NATS bus, and how to log in there.
//!
//! Secrets are named by file only (`password_file=`, `token_file=`,
//! `nkey_file=`, `creds_file=`): the address itself holds none, so it can be
//! shown in `/status` and logs as it is. A password or token written into
//! the URL is refused with a message that says where it belongs.

use crate::percent;
use std::fmt;
use std::path::PathBuf;

/// The NATS client port when an address names none.
pub const DEFAULT_PORT: u16 = 4222;
/// Longest subject accepted (NATS has no hard limit; this keeps headers and
/// logs sane).
const MAX_SUBJECT: usize = 200;

/// One subject on one NATS cluster, with credentials and TLS settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusAddress {
    /// `host:port` of each server to try (any member of a cluster will do;
    /// the client also learns the others from the server).
    pub servers: Vec<String>,
    /// The subject frames are published on.
    pub subject: String,
    pub auth: BusAuth,
    pub tls: BusTls,
}

/// How the client proves who it is; every secret stays in its file.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum BusAuth {
    #[default]
    Anonymous,
    /// `user=NAME&password_file=PATH`.
    UserPassword {
        user: String,
        password_file: PathBuf,
    },
    /// `token_file=PATH`.
    Token { file: PathBuf },
    /// `nkey_file=PATH`: a file holding an NKey seed (`SU...`).
    NKey { seed_file: PathBuf },
    /// `creds_file=PATH`: a `.creds` file (JWT and NKey seed), as `nsc` writes.
    Creds { file: PathBuf },
}

/// TLS to the server.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BusTls {
    /// `tls=1` (or any other TLS option): refuse a connection without TLS.
    pub required: bool,
    /// `tls_ca=PATH`: a PEM file of the CA that signed the server certificate.
    pub ca: Option<PathBuf>,
    /// `tls_cert=PATH&tls_key=PATH`: a client certificate.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// The query keys an address understands, for error messages.
const KEYS: &str =
    "user, password_file, token_file, nkey_file, creds_file, tls, tls_ca, tls_cert, tls_key";

impl BusAddress {
    /// Parses `nats://...`; the error says what is wrong and what is expected.
    pub fn parse(url: &str) -> Result<BusAddress, String> {
        let rest = url
            .strip_prefix("nats://")
            .ok_or_else(|| format!("'{}' is not a nats:// URL", crate::source::redact(url)))?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (hosts, subject) = rest
            .split_once('/')
            .ok_or_else(|| "a nats:// URL needs a subject: nats://HOST:4222/SUBJECT".to_owned())?;
        if hosts.contains('@') {
            return Err(
                "credentials do not belong in a nats:// URL (it is shown in logs and /status): \
                 use ?user=NAME&password_file=PATH, token_file=, nkey_file= or creds_file="
                    .to_owned(),
            );
        }
        let servers = hosts
            .split(',')
            .map(parse_server)
            .collect::<Result<Vec<_>, _>>()?;
        let subject = String::from_utf8(percent::decode(subject, false))
            .map_err(|_| "the subject is not UTF-8".to_owned())?;
        check_subject(&subject)?;
        let mut addr = BusAddress {
            servers,
            subject,
            auth: BusAuth::Anonymous,
            tls: BusTls::default(),
        };
        addr.apply_query(query.unwrap_or(""))?;
        Ok(addr)
    }

    fn apply_query(&mut self, query: &str) -> Result<(), String> {
        let (mut user, mut password, mut token, mut nkey, mut creds) =
            (None, None, None, None, None);
        let (mut cert, mut key) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = String::from_utf8(percent::decode(v, true))
                .map_err(|_| format!("the value of '{k}' is not UTF-8"))?;
            if v.is_empty() && k != "tls" {
                return Err(format!("'{k}=' needs a value"));
            }
            let path = || Some(PathBuf::from(&v));
            match k {
                "user" => user = Some(v.clone()),
                "password_file" => password = path(),
                "token_file" => token = path(),
                "nkey_file" => nkey = path(),
                "creds_file" => creds = path(),
                "tls_ca" => self.tls.ca = path(),
                "tls_cert" => cert = path(),
                "tls_key" => key = path(),
                "tls" => match v.as_str() {
                    "" | "1" | "true" | "yes" => self.tls.required = true,
                    "0" | "false" | "no" => self.tls.required = false,
                    other => {
                        return Err(format!("bad value for 'tls': '{other}' (expected 1 or 0)"));
                    }
                },
                "password" | "pass" | "token" | "nkey" | "seed" | "creds" => {
                    return Err(format!(
                        "'{k}=' would put a secret in the URL: name a file instead ({k}_file=PATH)"
                    ));
                }
                other => {
                    return Err(format!(
                        "unknown option '{other}' in nats:// URL (expected {KEYS})"
                    ));
                }
            }
        }
        let given = [
            password.is_some(),
            token.is_some(),
            nkey.is_some(),
            creds.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err("give one of password_file, token_file, nkey_file or creds_file".into());
        }
        self.auth = match (user, password, token, nkey, creds) {
            (Some(user), Some(password_file), ..) => BusAuth::UserPassword {
                user,
                password_file,
            },
            (None, Some(_), ..) => return Err("password_file= needs user=NAME".into()),
            (Some(_), None, ..) => return Err("user= needs password_file=PATH".into()),
            (None, None, Some(file), ..) => BusAuth::Token { file },
            (None, None, None, Some(seed_file), _) => BusAuth::NKey { seed_file },
            (None, None, None, None, Some(file)) => BusAuth::Creds { file },
            (None, None, None, None, None) => BusAuth::Anonymous,
        };
        self.tls.client = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err("tls_cert= and tls_key= go together".into()),
        };
        if self.tls.ca.is_some() || self.tls.client.is_some() {
            self.tls.required = true;
        }
        Ok(())
    }

    /// The subject edges send a request to for the newest frame.
    pub fn latest_subject(&self) -> String {
        format!("{}.latest", self.subject)
    }

    /// The subject edges announce their viewers on (see `publish`).
    pub fn interest_subject(&self) -> String {
        format!("{}.interest", self.subject)
    }

    /// The servers as the NATS client wants them (`nats://` or `tls://`).
    pub fn server_urls(&self) -> Vec<String> {
        let scheme = if self.tls.required { "tls" } else { "nats" };
        self.servers
            .iter()
            .map(|s| format!("{scheme}://{s}"))
            .collect()
    }

    /// Files the address names (credentials, certificates), each with the
    /// option that named it.
    pub fn files(&self) -> Vec<(&'static str, &PathBuf)> {
        let mut out = Vec::new();
        match &self.auth {
            BusAuth::Anonymous => {}
            BusAuth::UserPassword { password_file, .. } => {
                out.push(("password_file", password_file))
            }
            BusAuth::Token { file } => out.push(("token_file", file)),
            BusAuth::NKey { seed_file } => out.push(("nkey_file", seed_file)),
            BusAuth::Creds { file } => out.push(("creds_file", file)),
        }
        if let Some(ca) = &self.tls.ca {
            out.push(("tls_ca", ca));
        }
        if let Some((cert, key)) = &self.tls.client {
            out.push(("tls_cert", cert));
            out.push(("tls_key", key));
        }
        out
    }

    /// Checks that every file the address names can be read, so that a
    /// typo stops the server at start-up rather than retrying forever.
    pub fn check_files(&self) -> Result<(), String> {
        for (option, path) in self.files() {
            std::fs::File::open(path).map_err(|e| format!("{option} {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// `host[:port]` or `[v6][:port]`, as `host:port`.
fn parse_server(s: &str) -> Result<String, String> {
    let bad = || format!("bad server '{s}' in nats:// URL (expected HOST[:PORT])");
    if s.is_empty() {
        return Err("a nats:// URL needs a server: nats://HOST:4222/SUBJECT".into());
    }
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        (format!("[{host}]"), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (s.to_owned(), None),
        }
    };
    let ok_host = |c: char| c.is_ascii_alphanumeric() || "-._[]:".contains(c);
    if host.is_empty() || host == "[]" || !host.chars().all(ok_host) {
        return Err(bad());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
    };
    Ok(format!("{host}:{port}"))
}

/// A subject for one stream: dot-separated tokens of visible characters, no
/// wildcards.
fn check_subject(subject: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("bad subject '{subject}': {why}"));
    if subject.is_empty() {
        return bad("empty (nats://HOST:4222/SUBJECT)");
    }
    if subject.len() > MAX_SUBJECT {
        return bad("too long");
    }
    if subject.split('.').any(str::is_empty) {
        return bad("empty token between dots");
    }
    if subject.contains(['*', '>']) {
        return bad("wildcards (* and >) name many subjects, a stream needs one");
    }
    if !subject.chars().all(|c| c.is_ascii_graphic() && c != '/') {
        return bad("use letters, digits and punctuation, no spaces");
    }
    Ok(())
}

/// The address as it may be shown anywhere: it holds no secret, only the
/// names of files.
impl fmt::Display for BusAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nats://{}/{}", self.servers.join(","), self.subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_subject_and_options() {
        let a = BusAddress::parse("nats://a:4223,b,[::1]:5000/cams.front").expect("valid");
        assert_eq!(a.servers, ["a:4223", "b:4222", "[::1]:5000"]);
        assert_eq!(a.subject, "cams.front");
        assert_eq!(a.auth, BusAuth::Anonymous);
        assert_eq!(a.latest_subject(), "cams.front.latest");
        assert_eq!(a.to_string(), "nats://a:4223,b:4222,[::1]:5000/cams.front");
        assert_eq!(a.server_urls()[0], "nats://a:4223");

        let a = BusAddress::parse("nats://h/s?user=edge&password_file=/etc/pw&tls_ca=/etc/ca.pem")
            .expect("valid");
        assert_eq!(
            a.auth,
            BusAuth::UserPassword {
                user: "edge".into(),
                password_file: "/etc/pw".into()
            }
        );
        assert!(a.tls.required);
        assert_eq!(a.server_urls(), ["tls://h:4222"]);
        let a = BusAddress::parse("nats://h/s?creds_file=/x.creds").expect("valid");
        assert_eq!(
            a.auth,
            BusAuth::Creds {
                file: "/x.creds".into()
            }
        );
        let a = BusAddress::parse("nats://h/s?nkey_file=/seed&tls=1").expect("valid");
        assert_eq!(
            a.auth,
            BusAuth::NKey {
                seed_file: "/seed".into()
            }
        );
        assert!(a.tls.required);
    }

    #[test]
    fn secrets_in_the_url_are_refused() {
        for url in [
            "nats://u:SecretPw1@h/s",
            "nats://tok3n@h/s",
            "nats://h/s?password=SecretPw1",
            "nats://h/s?token=SecretPw1",
        ] {
            let e = BusAddress::parse(url).expect_err(url);
            assert!(!e.contains("SecretPw1") && !e.contains("tok3n"), "{e}");
            assert!(e.contains("file"), "{e}");
        }
    }

    #[test]
    fn bad_addresses_say_why() {
        let msg = |u: &str| BusAddress::parse(u).expect_err(u);
        assert!(msg("nats://h").contains("needs a subject"));
        assert!(msg("nats://h/").contains("empty"));
        assert!(msg("nats:///s").contains("needs a server"));
        assert!(msg("nats://h:0/s").contains("bad server"));
        assert!(msg("nats://h:99999/s").contains("bad server"));
        assert!(msg("nats://h/a.*").contains("wildcards"));
        assert!(msg("nats://h/a..b").contains("empty token"));
        assert!(msg("nats://h/a%20b").contains("no spaces"));
        assert!(msg("nats://h/s?colour=red").contains("unknown option"));
        assert!(msg("nats://h/s?user=x").contains("password_file"));
        assert!(msg("nats://h/s?token_file=/a&creds_file=/b").contains("one of"));
        assert!(msg("nats://h/s?tls_cert=/c").contains("together"));
    }
}
