//! Basic auth and signed URL tokens, end to end: the in-process server for
//! the HTTP rules, the binary for secrets from files and the environment,
//! the `mjpegd token` subcommand, and what reaches the log.

mod common;

use base64::Engine;
use common::*;
use mjpegd::http::auth::TokenKey;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const USER_PASS: &str = "viewer:pa ss:w0rd";
const SECRET: &str = "correct-horse-battery-staple";

fn basic(userpass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(userpass)
    )
}

fn get_with(path: &str, auth: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n")
}

#[tokio::test]
async fn basic_auth_guards_every_endpoint() {
    let s = TestServer::start(&["--source", "pattern:160x120@30", "--auth", USER_PASS]).await;
    let a = s.addr;
    let paths = [
        "/",
        "/stream",
        "/snapshot",
        "/status",
        "/?action=stream",
        "/?action=snapshot",
        "/streams/pattern/stream",
        "/nope",
    ];
    for path in paths {
        let (code, head, _) = get(a, path).await;
        assert_eq!(code, 401, "{path} without credentials");
        assert!(
            head.contains("\r\nWWW-Authenticate: Basic realm=\"mjpegd\""),
            "{head}"
        );
        for wrong in ["viewer:pa ss:w0rD", "viewer:", "Viewer:pa ss:w0rd", ""] {
            let (code, _, _) = request(a, &get_with(path, &basic(wrong))).await;
            assert_eq!(code, 401, "{path} with {wrong:?}");
        }
    }
    let (code, _, _) = request(a, "OPTIONS /stream HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(code, 401, "OPTIONS needs credentials too");

    let ok = basic(USER_PASS);
    let (code, _, body) = request(a, &get_with("/snapshot", &ok)).await;
    assert_eq!(code, 200);
    assert_eq!(decode(&body), (160, 120));
    for (path, want) in [("/", 200), ("/status", 200), ("/nope", 404)] {
        assert_eq!(request(a, &get_with(path, &ok)).await.0, want, "{path}");
    }
    let mut io = TcpStream::connect(a).await.expect("connect");
    io.write_all(get_with("/stream", &ok).as_bytes())
        .await
        .expect("send");
    let (head, rest) = read_head(&mut io).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(FrameReader::new(io, &rest).frames(3).await.len(), 3);
    s.stop().await;
}

#[tokio::test]
async fn a_refused_request_keeps_the_connection_for_the_next_try() {
    let s = TestServer::start(&["--source", "pattern:160x120@30", "--auth", USER_PASS]).await;
    let mut io = TcpStream::connect(s.addr).await.expect("connect");
    io.write_all(b"GET /status HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("send");
    let (head, rest) = read_head(&mut io).await;
    assert!(head.starts_with("HTTP/1.1 401 "), "{head}");
    assert!(head.contains("Connection: keep-alive"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.parse().ok())
        .expect("length");
    assert_eq!(rest.len(), len, "the 401 body, nothing more");
    let (code, _, body) = exchange(io, get_with("/status", &basic(USER_PASS)).as_bytes()).await;
    assert_eq!(code, 200);
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
    s.stop().await;
}

#[tokio::test]
async fn tokens_admit_their_path_until_they_expire() {
    let s = TestServer::start(&[
        "--source",
        "pattern:160x120@30",
        "--auth",
        USER_PASS,
        "--token-secret",
        SECRET,
    ])
    .await;
    let a = s.addr;
    let key = TokenKey::new(SECRET).expect("valid secret");
    let now = SystemTime::now();
    let stream_token = key.sign_for("/stream", Duration::from_secs(60), now);

    // An <img> tag's request: no Authorization header, the token in the URL,
    // next to other query keys.
    let path = format!("/stream?fps=10&token={stream_token}");
    let mut c = StreamClient::open(a, &path, "1.1").await;
    c.expect_stream_head();
    assert_eq!(c.frames(2).await.len(), 2);
    drop(c);

    let snap = key.sign_for("/streams/pattern/snapshot", Duration::from_secs(60), now);
    let (code, _, body) = get(a, &format!("/streams/pattern/snapshot?token={snap}")).await;
    assert_eq!(code, 200);
    decode(&body);

    let expired = key.sign(
        "/stream",
        now.duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
            - 1,
    );
    let forged = TokenKey::new("some-other-secret-value")
        .expect("valid")
        .sign_for("/stream", Duration::from_secs(60), now);
    let (sig_expiry, sig) = stream_token.split_once('.').expect("dot");
    let later: u64 = sig_expiry.parse::<u64>().expect("number") + 3600;
    for (path, why) in [
        (format!("/snapshot?token={stream_token}"), "another path"),
        (format!("/stream?token={expired}"), "expired"),
        (format!("/stream?token={forged}"), "another secret"),
        (format!("/stream?token={later}.{sig}"), "moved expiry"),
        ("/stream?token=".to_owned(), "empty"),
        ("/stream?token=garbage".to_owned(), "garbage"),
    ] {
        let (code, _, body) = get(a, &path).await;
        assert_eq!(code, 403, "{why}: {path}");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("token"), "{why}: {text}");
    }
    // An invalid token is refused even with valid Basic credentials.
    let (code, _, _) = request(
        a,
        &get_with(&format!("/stream?token={expired}"), &basic(USER_PASS)),
    )
    .await;
    assert_eq!(code, 403);
    s.stop().await;
}

#[test]
fn secrets_from_files_and_environment_reach_the_server_but_not_the_log() {
    let auth_file = temp_path("auth");
    std::fs::write(&auth_file, format!("{USER_PASS}\n")).expect("write");
    let auth_path = auth_file.to_str().expect("utf-8").to_owned();
    let mut d = Daemon::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--source",
            "pattern:160x120@30",
            "--auth-file",
            &auth_path,
        ],
        &[("MJPEGD_TOKEN_SECRET", SECRET), ("RUST_LOG", "debug")],
        1,
    );
    let a = d.addr(0);

    // `mjpegd token` reads the secret the same way.
    let out = binary()
        .args(["token", "--path", "/snapshot", "--ttl", "5m"])
        .env("MJPEGD_TOKEN_SECRET", SECRET)
        .output()
        .expect("run mjpegd token");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let token = String::from_utf8(out.stdout).expect("utf-8");
    let token = token.trim();
    assert_eq!(token.lines().count(), 1);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (code, _, body) = get(a, &format!("/snapshot?token={token}")).await;
        assert_eq!(code, 200);
        decode(&body);
        assert_eq!(get(a, &format!("/stream?token={token}")).await.0, 403);
        assert_eq!(get(a, "/snapshot").await.0, 401);
        let (code, _, _) = request(a, &get_with("/status", &basic(USER_PASS))).await;
        assert_eq!(code, 200);
        let (code, _, _) = request(a, &get_with("/status", &basic("viewer:guess"))).await;
        assert_eq!(code, 401);
    });
    // Once it has exited, everything it logged is in the file.
    assert_eq!(d.terminate(), Some(0));
    let log = d.stderr_text();
    assert!(log.contains("request"), "debug log has requests: {log}");
    let (_, sig) = token.split_once('.').expect("dot");
    for secret in ["pa ss:w0rd", SECRET, sig, "viewer:guess"] {
        assert!(!log.contains(secret), "log shows {secret:?}:\n{log}");
    }
    let encoded = basic(USER_PASS);
    assert!(!log.contains(encoded.trim_start_matches("Basic ")));
    let _ = std::fs::remove_file(&auth_file);

    // Credentials from the environment alone.
    let d = Daemon::start(
        &["--listen", "127.0.0.1:0", "--source", "pattern:160x120@30"],
        &[("MJPEGD_AUTH", "env:secret-pass")],
        1,
    );
    let a = d.addr(0);
    rt.block_on(async {
        assert_eq!(get(a, "/status").await.0, 401);
        let (code, _, _) = request(a, &get_with("/status", &basic("env:secret-pass"))).await;
        assert_eq!(code, 200);
    });
}

#[test]
fn token_subcommand_errors_exit_2_with_one_line() {
    for (args, env) in [
        (&["token"][..], None),
        (&["token", "--ttl", "soon", "--token-secret", SECRET], None),
        (&["token", "--path", "stream"], Some(SECRET)),
        (&["token", "--token-secret", "short"], None),
    ] {
        let mut cmd = binary();
        cmd.args(args);
        if let Some(secret) = env {
            cmd.env("MJPEGD_TOKEN_SECRET", secret);
        }
        let out = cmd.output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("mjpegd token: "), "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[tokio::test]
async fn cors_preflights_need_no_credentials_but_everything_else_does() {
    let s = TestServer::start(&[
        "--source",
        "pattern:160x120@30",
        "--auth",
        USER_PASS,
        "--allow-origin",
        "https://dash.example",
    ])
    .await;
    let preflight = "OPTIONS /snapshot HTTP/1.1\r\nOrigin: https://dash.example\r\n\
                     Access-Control-Request-Method: GET\r\n\
                     Access-Control-Request-Headers: authorization\r\nConnection: close\r\n\r\n";
    let (code, head, _) = request(s.addr, preflight).await;
    assert_eq!(code, 204, "{head}");
    let plain_options = "OPTIONS /snapshot HTTP/1.1\r\nConnection: close\r\n\r\n";
    assert_eq!(request(s.addr, plain_options).await.0, 401);
    let (code, head, _) = get(s.addr, "/snapshot").await;
    assert_eq!(code, 401);
    assert!(
        head.contains("Access-Control-Allow-Origin: https://dash.example"),
        "{head}"
    );
    s.stop().await;
}
