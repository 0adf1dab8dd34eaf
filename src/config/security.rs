//! The security options: credentials, token secret, TLS files, client
//! limits, and the `mjpegd token` subcommand that makes signed URLs.
//!
//! Secrets can come from a flag, a file, or an environment variable; the
//! last two keep them out of `ps` output. Errors name where a secret came
//! from, never its value.

use super::ConfigError;
use super::cli::parse_secs;
use crate::http::auth::{Access, Credentials, TokenKey, parse_ttl};
use crate::http::limits::Limits;
use crate::tls::TlsSettings;
#[cfg(test)]
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Environment variable holding `USER:PASSWORD`.
pub const AUTH_ENV: &str = "MJPEGD_AUTH";
/// Environment variable holding the token secret.
pub const TOKEN_SECRET_ENV: &str = "MJPEGD_TOKEN_SECRET";

#[derive(clap::Args, Debug)]
pub(super) struct SecurityArgs {
    /// Require HTTP Basic auth with USER:PASSWORD on every request. Shows in
    /// `ps`: prefer --auth-file or the MJPEGD_AUTH environment variable.
    #[arg(long, value_name = "USER:PASSWORD", conflicts_with = "auth_file")]
    pub(super) auth: Option<String>,

    /// Read USER:PASSWORD for --auth from this file.
    #[arg(long, value_name = "PATH")]
    pub(super) auth_file: Option<PathBuf>,

    /// Secret (16+ characters) that signs ?token= URLs made by `mjpegd token`.
    /// Also MJPEGD_TOKEN_SECRET or --token-secret-file.
    #[arg(long, value_name = "SECRET", conflicts_with = "token_secret_file")]
    pub(super) token_secret: Option<String>,

    /// Read the token secret from this file.
    #[arg(long, value_name = "PATH")]
    pub(super) token_secret_file: Option<PathBuf>,

    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub(super) tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub(super) tls_key: Option<PathBuf>,

    /// Most open connections (0: no limit); more get 503 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(super) max_connections: usize,

    /// Most open connections from one address, an IPv6 /64 counting as one
    /// (0: half of --max-connections); more get 503.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(super) max_connections_per_ip: usize,

    /// Most stream clients over all streams (0: no limit); more get 503.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(super) max_clients: usize,

    /// Most stream clients from one IP address (0: no limit); more get 503.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(super) max_streams_per_ip: usize,

    /// Seconds a client may take no data before it is dropped.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub(super) send_timeout: Duration,
}

/// The resolved security settings.
pub(super) struct Security {
    pub access: Access,
    pub tls: Option<TlsSettings>,
    pub limits: Limits,
    pub send_timeout: Duration,
}

/// Looks up an environment variable (a parameter so tests need not touch the
/// process environment).
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(super) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl SecurityArgs {
    pub(super) fn resolve(self, env: Env<'_>) -> Result<Security, String> {
        let basic = secret(self.auth, self.auth_file, "--auth", AUTH_ENV, env)?
            .map(|(s, from)| Credentials::parse(&s).map_err(|e| format!("{from}: {e}")))
            .transpose()?;
        let tokens = token_key(self.token_secret, self.token_secret_file, env)?;
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsSettings::load(&cert, &key)?),
            _ => match (credential("tls-cert", env), credential("tls-key", env)) {
                (Some(cert), Some(key)) => Some(TlsSettings::load(&cert, &key)?),
                _ => None,
            },
        };
        Ok(Security {
            access: Access { basic, tokens },
            tls,
            limits: Limits {
                max_connections: self.max_connections,
                max_connections_per_ip: self.max_connections_per_ip,
                max_clients: self.max_clients,
                max_streams_per_ip: self.max_streams_per_ip,
            },
            send_timeout: self.send_timeout,
        })
    }
}

fn token_key(
    flag: Option<String>,
    file: Option<PathBuf>,
    env: Env<'_>,
) -> Result<Option<TokenKey>, String> {
    secret(flag, file, "--token-secret", TOKEN_SECRET_ENV, env)?
        .map(|(s, from)| TokenKey::new(&s).map_err(|e| format!("{from}: {e}")))
        .transpose()
}

/// A secret from its flag, its file, or its environment variable (in that
/// order), with a description of where it came from for error messages.
fn secret(
    flag: Option<String>,
    file: Option<PathBuf>,
    flag_name: &str,
    env_name: &str,
    env: Env<'_>,
) -> Result<Option<(String, String)>, String> {
    if let Some(s) = flag {
        return Ok(Some((s, flag_name.to_owned())));
    }
    if let Some(path) = file {
        let s = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {flag_name}-file {}: {e}", path.display()))?;
        return Ok(Some((s, format!("{flag_name}-file {}", path.display()))));
    }
    // systemd's LoadCredential=auth:/etc/mjpegd/auth puts the file where
    // only this service can read it, named after the flag.
    if let Some(path) = credential(flag_name.trim_start_matches("--"), env) {
        let s = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read credential {}: {e}", path.display()))?;
        return Ok(Some((s, format!("credential {}", path.display()))));
    }
    Ok(env(env_name)
        .filter(|s| !s.is_empty())
        .map(|s| (s, format!("${env_name}"))))
}

/// The file of systemd credential `name` (`$CREDENTIALS_DIRECTORY/NAME`),
/// when the service was given one.
fn credential(name: &str, env: Env<'_>) -> Option<PathBuf> {
    let path = PathBuf::from(env(CREDENTIALS_ENV)?).join(name);
    path.exists().then_some(path)
}

/// Where systemd puts the service's credentials (`LoadCredential=`).
pub const CREDENTIALS_ENV: &str = "CREDENTIALS_DIRECTORY";

/// `mjpegd token --path PATH --ttl TTL`: prints a signed token for PATH.
#[derive(clap::Args, Debug)]
pub(super) struct TokenArgs {
    /// Path the token is for, as in the URL (e.g. /stream or /streams/cam/snapshot;
    /// /?action=stream or /?action=snapshot for mjpg-streamer's URLs).
    #[arg(long, value_name = "PATH", default_value = "/stream")]
    path: String,

    /// How long the token is valid: 90s, 15m, 2h, 7d.
    #[arg(long, value_name = "TTL", default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,

    /// The server's token secret (also MJPEGD_TOKEN_SECRET or --token-secret-file).
    #[arg(long, value_name = "SECRET", conflicts_with = "token_secret_file")]
    token_secret: Option<String>,

    /// Read the token secret from this file.
    #[arg(long, value_name = "PATH")]
    token_secret_file: Option<PathBuf>,
}

/// `mjpegd token ...` as parsed from a whole command line (`args` starts
/// with the program name, then `token`): the token line to print.
#[cfg(test)]
pub(super) fn token_command_with_env<I, T>(
    args: I,
    env: Env<'_>,
    now: SystemTime,
) -> Result<String, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match super::command_line_with_env(args, env, now)? {
        super::Invocation::Token(t) => Ok(t),
        _ => Err(ConfigError::Invalid("not a token command".into())),
    }
}

/// Signs a token for `cli.path`, valid for `cli.ttl` from `now`.
pub(super) fn make_token(
    cli: TokenArgs,
    env: Env<'_>,
    now: SystemTime,
) -> Result<String, ConfigError> {
    if !crate::http::auth::valid_scope(&cli.path) {
        return Err(ConfigError::Invalid(format!(
            "--path '{}' must be a URL path starting with '/', without query \
             (but /?action=stream or /?action=snapshot)",
            cli.path
        )));
    }
    let key = token_key(cli.token_secret, cli.token_secret_file, env)
        .map_err(ConfigError::Invalid)?
        .ok_or_else(|| {
            ConfigError::Invalid(format!(
                "no token secret: give --token-secret-file, --token-secret or ${TOKEN_SECRET_ENV}"
            ))
        })?;
    Ok(key.sign_for(&cli.path, cli.ttl, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const SECRET: &str = "a-long-enough-secret";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse_with(args: &[&str], env: Env<'_>) -> Result<Config, ConfigError> {
        Config::from_args_with_env(std::iter::once("mjpegd").chain(args.iter().copied()), env)
    }

    fn invalid(args: &[&str], env: Env<'_>) -> String {
        match parse_with(args, env) {
            Err(ConfigError::Invalid(m)) => m,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn temp_file(name: &str, content: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("mjpegd-{}-{name}", std::process::id()));
        std::fs::write(&path, content).expect("write temp file");
        path
    }

    #[test]
    fn secrets_from_flag_file_or_environment() {
        let c = parse_with(&[], &no_env).expect("valid");
        assert!(c.access.is_open());
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.send_timeout, Duration::from_secs(10));

        let c = parse_with(&["--auth", "u:p"], &no_env).expect("valid");
        assert_eq!(c.access.basic, Some(Credentials::parse("u:p").expect("ok")));

        let f = temp_file("auth", "file:pass\n");
        let c = parse_with(&["--auth-file", f.to_str().expect("utf-8")], &no_env).expect("valid");
        assert_eq!(
            c.access.basic,
            Some(Credentials::parse("file:pass").expect("ok"))
        );
        let _ = std::fs::remove_file(&f);

        let env = |name: &str| match name {
            AUTH_ENV => Some("env:pass".to_owned()),
            TOKEN_SECRET_ENV => Some(SECRET.to_owned()),
            _ => None,
        };
        let c = parse_with(&[], &env).expect("valid");
        assert_eq!(
            c.access.basic,
            Some(Credentials::parse("env:pass").expect("ok"))
        );
        assert_eq!(c.access.tokens, Some(TokenKey::new(SECRET).expect("ok")));
        // A flag wins over the environment.
        let c = parse_with(&["--auth", "flag:pass"], &env).expect("valid");
        assert_eq!(
            c.access.basic,
            Some(Credentials::parse("flag:pass").expect("ok"))
        );
    }

    #[test]
    fn secrets_from_systemd_credentials() {
        let dir = std::env::temp_dir().join(format!("mjpegd-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("auth"), "cred:pass\n").expect("write");
        std::fs::write(dir.join("token-secret"), SECRET).expect("write");
        let dir_text = dir.display().to_string();
        let env = |name: &str| (name == CREDENTIALS_ENV).then(|| dir_text.clone());
        let c = parse_with(&[], &env).expect("valid");
        assert_eq!(
            c.access.basic,
            Some(Credentials::parse("cred:pass").expect("ok"))
        );
        assert_eq!(c.access.tokens, Some(TokenKey::new(SECRET).expect("ok")));
        // A flag still wins.
        let c = parse_with(&["--auth", "flag:pass"], &env).expect("valid");
        assert_eq!(
            c.access.basic,
            Some(Credentials::parse("flag:pass").expect("ok"))
        );
        std::fs::remove_file(dir.join("token-secret")).expect("rm");
        let c = parse_with(&[], &env).expect("valid");
        assert!(c.access.tokens.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_secrets_are_one_line_without_the_secret() {
        let m = invalid(&["--auth", "nocolon-secretvalue"], &no_env);
        assert!(m.contains("--auth") && !m.contains("secretvalue"), "{m}");
        let m = invalid(&["--token-secret", "shortsecret"], &no_env);
        assert!(m.contains("16") && !m.contains("shortsecret"), "{m}");
        let m = invalid(&["--auth-file", "/nonexistent/auth"], &no_env);
        assert!(m.contains("/nonexistent/auth"), "{m}");
        let env = |_: &str| Some("x".to_owned());
        let m = invalid(&[], &env);
        assert!(m.contains(AUTH_ENV), "{m}");
        let m = invalid(&["--auth", "a:b", "--auth-file", "/x"], &no_env);
        assert!(!m.contains('\n'), "{m}");
        let m = invalid(&["--tls-cert", "/x.pem"], &no_env);
        assert!(m.contains("--tls-key"), "{m}");
        let m = invalid(
            &[
                "--tls-cert",
                "/nonexistent/c.pem",
                "--tls-key",
                "/nonexistent/k.pem",
            ],
            &no_env,
        );
        assert!(m.contains("/nonexistent/c.pem"), "{m}");
        let m = invalid(&["--send-timeout", "0"], &no_env);
        assert!(m.contains("'0'"), "{m}");
    }

    #[test]
    fn security_keys_in_the_config_file() {
        let auth = temp_file("file-auth", "viewer:pw-from-file\n");
        let conf = temp_file(
            "security.toml",
            &format!(
                "auth_file = \"{}\"\nmax_clients = 5\nmax_streams_per_ip = 2\nsend_timeout = 3\n",
                auth.display()
            ),
        );
        let conf_arg = conf.display().to_string();
        let c = parse_with(&["--config", &conf_arg], &no_env).expect("valid");
        assert!(
            c.access.basic.is_some(),
            "credentials from the file's auth_file"
        );
        assert_eq!(c.limits.max_clients, 5);
        assert_eq!(c.limits.max_streams_per_ip, 2);
        assert_eq!(c.send_timeout, Duration::from_secs(3));
        // The command line wins.
        let c = parse_with(&["--config", &conf_arg, "--max-clients", "7"], &no_env).expect("valid");
        assert_eq!(c.limits.max_clients, 7);

        let bad = temp_file("bad-security.toml", "quality = 50\nmax_clients = -1\n");
        let m = invalid(&["--config", &bad.display().to_string()], &no_env);
        assert!(m.contains(":2:") && m.contains("max_clients"), "{m}");
        let secret_inline = temp_file("inline.toml", "auth = \"u:p\"\n");
        let m = invalid(&["--config", &secret_inline.display().to_string()], &no_env);
        assert!(m.contains("auth"), "{m}");
        for f in [auth, conf, bad, secret_inline] {
            let _ = std::fs::remove_file(f);
        }
    }

    #[test]
    fn limits_and_unix_listeners() {
        let c = parse_with(
            &[
                "--max-clients",
                "5",
                "--max-connections",
                "50",
                "--max-streams-per-ip",
                "2",
                "--max-connections-per-ip",
                "7",
                "--send-timeout",
                "2.5",
                "--listen",
                "unix:/tmp/m.sock",
                "--listen",
                "9000",
            ],
            &no_env,
        )
        .expect("valid");
        assert_eq!(
            c.limits,
            Limits {
                max_connections: 50,
                max_connections_per_ip: 7,
                max_clients: 5,
                max_streams_per_ip: 2
            }
        );
        assert_eq!(c.send_timeout, Duration::from_millis(2500));
        assert_eq!(c.listen, vec!["127.0.0.1:9000".parse().expect("addr")]);
        assert_eq!(c.listen_unix, vec![PathBuf::from("/tmp/m.sock")]);
        // The config file takes unix sockets too.
        let file = temp_file("listen.toml", "listen = [\"unix:/tmp/f.sock\", 9001]\n");
        let c = parse_with(&["--config", file.to_str().expect("utf-8")], &no_env).expect("valid");
        assert_eq!(c.listen, vec!["127.0.0.1:9001".parse().expect("addr")]);
        assert_eq!(c.listen_unix, vec![PathBuf::from("/tmp/f.sock")]);
        let _ = std::fs::remove_file(&file);
        // Only a unix socket: no TCP listener by default.
        let c = parse_with(&["--listen", "unix:/tmp/m.sock"], &no_env).expect("valid");
        assert!(c.listen.is_empty());
    }

    #[test]
    fn token_command_signs_for_the_path() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let run = |args: &[&str], env: Env<'_>| {
            token_command_with_env(["mjpegd", "token"].iter().chain(args), env, now)
        };
        let t = run(
            &[
                "--path",
                "/snapshot",
                "--ttl",
                "2m",
                "--token-secret",
                SECRET,
            ],
            &no_env,
        )
        .expect("token");
        let key = TokenKey::new(SECRET).expect("ok");
        assert!(t.starts_with("1120."), "{t}");
        assert_eq!(key.verify("/snapshot", &t, now), Ok(()));
        let env = |n: &str| (n == TOKEN_SECRET_ENV).then(|| SECRET.to_owned());
        let t = run(&[], &env).expect("defaults: /stream for 1h");
        assert_eq!(key.verify("/stream", &t, now), Ok(()));
        assert!(t.starts_with("4600."), "{t}");
        for bad in [
            &["--path", "stream"][..],
            &["--path", "/s?x=1"],
            &["--ttl", "forever"],
        ] {
            let args: Vec<&str> = bad
                .iter()
                .copied()
                .chain(["--token-secret", SECRET])
                .collect();
            assert!(
                matches!(run(&args, &no_env), Err(ConfigError::Invalid(_))),
                "{bad:?}"
            );
        }
        match run(&[], &no_env) {
            Err(ConfigError::Invalid(m)) => assert!(m.contains(TOKEN_SECRET_ENV), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run(&["--help"], &no_env),
            Err(ConfigError::Info(_))
        ));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Flags and values that make up plausible and implausible command
        /// lines.
        fn word() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "--listen",
                    "--source",
                    "--quality",
                    "--snapshot-timeout",
                    "--header-timeout",
                    "--send-buffer",
                    "--auth",
                    "--auth-file",
                    "--token-secret",
                    "--token-secret-file",
                    "--tls-cert",
                    "--tls-key",
                    "--max-connections",
                    "--max-clients",
                    "--max-streams-per-ip",
                    "--send-timeout",
                    "--help",
                    "--version",
                    "--",
                    "-",
                    "token",
                    "unix:",
                    "unix:/tmp/x",
                    "0",
                    "8080",
                    "[::1]:0",
                    "pattern",
                    "pattern:1x1@1",
                    "a=pattern",
                    "u:p",
                    "-1",
                    "1e9",
                    "NaN",
                    "inf",
                    "",
                ])
                .prop_map(str::to_owned),
                "\\PC{0,20}",
                "--[a-z-]{1,20}(=\\PC{0,10})?",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn random_argv_never_panics(args in proptest::collection::vec(word(), 0..8)) {
                let argv = std::iter::once("mjpegd".to_owned()).chain(args.iter().cloned());
                match Config::from_args_with_env(argv, &no_env) {
                    Ok(c) => prop_assert!(!c.streams.is_empty()),
                    Err(ConfigError::Invalid(m)) => {
                        prop_assert!(!m.contains('\n'), "{}", m);
                        prop_assert!(!m.is_empty());
                    }
                    Err(ConfigError::Info(_)) => {}
                }
                let argv = ["mjpegd".to_owned(), "token".to_owned()].into_iter().chain(args);
                let _ = token_command_with_env(argv, &no_env, SystemTime::UNIX_EPOCH);
            }
        }
    }
}
