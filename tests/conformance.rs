//! HTTP framing that request smuggling relies on, request target forms,
//! `nosniff`, the scope of signed tokens, CORS preflights that must not tell
//! stream names apart, and request paths in log lines: against the built
//! binary on an ephemeral port.

mod common;

use common::*;
use mjpegd::http::auth::TokenKey;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "conformance-test-secret-0123456789";

fn daemon(extra: &[&str]) -> Daemon {
    let mut args = vec!["--source", "cam=pattern:160x120@30"];
    args.extend_from_slice(extra);
    Daemon::serve(&args)
}

/// Sends `raw` and reads everything until the server closes (or 3 s pass):
/// the number of responses in it and the first one.
async fn answers(addr: SocketAddr, raw: &[u8]) -> (usize, u16, String) {
    let mut io = TcpStream::connect(addr).await.expect("connect");
    io.write_all(raw).await.expect("send");
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), io.read_to_end(&mut all)).await;
    let count = all.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
    let (status, head, _) = split_response(&all);
    (count, status, head)
}

#[tokio::test]
async fn ambiguous_body_lengths_are_refused_and_nothing_is_smuggled() {
    let d = daemon(&[]);
    let a = d.addr(0);
    let smuggled = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
    let cases: [(String, u16, &str); 6] = [
        (
            format!(
                "GET /status HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            ),
            400,
            "two different Content-Length headers",
        ),
        (
            format!(
                "GET /status HTTP/1.1\r\nHost: t\r\nContent-Length: 0, {}\r\n\r\n{smuggled}",
                smuggled.len()
            ),
            400,
            "a Content-Length list of different values",
        ),
        (
            format!("GET /status HTTP/1.1\r\nHost: t\r\nContent-Length: +0\r\n\r\n{smuggled}"),
            400,
            "a Content-Length that is not digits",
        ),
        (
            format!(
                "GET /status HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            501,
            "Transfer-Encoding",
        ),
        (
            format!(
                "GET /status HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            400,
            "Transfer-Encoding and Content-Length",
        ),
        (
            format!(
                "GET /status HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 00\r\nConnection: close\r\n\r\n{smuggled}"
            ),
            200,
            "the same length twice",
        ),
    ];
    let mut by_status = std::collections::BTreeMap::new();
    for (raw, want, what) in &cases {
        let (count, status, head) = answers(a, raw.as_bytes()).await;
        *by_status.entry(status).or_insert(0) += 1;
        assert_eq!(status, *want, "{what}: {head}");
        if *want != 200 {
            assert_eq!(count, 1, "{what}: the body was read as a request");
            assert!(head.contains("Connection: close"), "{what}: {head}");
        }
    }
    println!(
        "framing: {} requests tried, answers by status {by_status:?}",
        cases.len()
    );
}

#[tokio::test]
async fn absolute_form_options_star_and_nosniff() {
    let d = daemon(&[]);
    let a = d.addr(0);
    let host = format!("127.0.0.1:{}", a.port());
    let (code, head, body) = request(
        a,
        &format!("GET http://{host}/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(code, 200, "{head}");
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
    let (code, head, body) = request(
        a,
        "GET HTTP://camera.example/streams/cam/snapshot?max_age=1000 HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, 200, "{head}");
    decode(&body);

    let (code, head, _) = request(
        a,
        "OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, 204, "{head}");
    assert!(head.contains("Allow: GET, HEAD, OPTIONS"), "{head}");
    let (code, _, _) = request(a, "GET * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
    assert_eq!(code, 400);
    let (code, _, _) = request(
        a,
        "GET ftp://x/status HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, 400);

    for path in ["/status", "/metrics", "/", "/nowhere", "/snapshot"] {
        let (_, head, _) = get(a, path).await;
        assert!(
            head.contains("\r\nX-Content-Type-Options: nosniff\r\n"),
            "{path}: {head}"
        );
    }
}

#[tokio::test]
async fn a_token_opens_only_the_action_it_was_signed_for() {
    let d = daemon(&["--token-secret", SECRET]);
    let a = d.addr(0);
    let key = TokenKey::new(SECRET).expect("secret");
    let now = SystemTime::now();
    let token = |scope: &str| key.sign_for(scope, Duration::from_secs(60), now);
    let (root, snap, live) = (
        token("/"),
        token("/?action=snapshot"),
        token("/?action=stream"),
    );
    let cases = [
        (format!("/?action=snapshot&token={snap}&17000"), 200),
        (format!("/?action=stream&token={snap}"), 403),
        (format!("/?token={snap}"), 403),
        (format!("/?action=stream&action=snapshot&token={snap}"), 403),
        (format!("/?action=stream&token={root}"), 403),
        (format!("/?action=snapshot&token={root}"), 403),
        (format!("/?token={root}"), 200),
        (format!("/?action=snapshot&token={live}"), 403),
    ];
    let mut by_status = std::collections::BTreeMap::new();
    for (target, want) in &cases {
        let (code, head, _) = get(a, target).await;
        *by_status.entry(code).or_insert(0) += 1;
        assert_eq!(code, *want, "{target}: {head}");
    }
    // The stream token opens the stream.
    let path = format!("/?action=stream&token={live}");
    let mut c = StreamClient::open(a, &path, "1.1").await;
    c.expect_stream_head();
    assert_eq!(c.frames(1).await.len(), 1);
    println!(
        "token scope: {} requests tried, answers by status {by_status:?}",
        cases.len() + 1
    );

    // `mjpegd token` makes such tokens.
    let out = run(&[
        "token",
        "--path",
        "/?action=snapshot",
        "--token-secret",
        SECRET,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(
        key.verify("/?action=snapshot", made.trim(), SystemTime::now()),
        Ok(())
    );
}

#[tokio::test]
async fn cors_preflights_do_not_tell_stream_names_apart() {
    let d = daemon(&[
        "--auth",
        "viewer:preflight-test-pw",
        "--allow-origin",
        "https://dash.example",
    ]);
    let a = d.addr(0);
    let preflight = |path: &str| {
        format!(
            "OPTIONS {path} HTTP/1.1\r\nHost: t\r\nOrigin: https://dash.example\r\n\
             Access-Control-Request-Method: GET\r\nConnection: close\r\n\r\n"
        )
    };
    let mut heads = Vec::new();
    for path in [
        "/streams/cam/stream",
        "/streams/no-such-name/stream",
        "/streams/cam/snapshot",
        "/nowhere",
    ] {
        let (code, head, body) = request(a, &preflight(path)).await;
        assert_eq!(code, 204, "{path}: {head}");
        assert!(body.is_empty());
        // Everything but the date must be the same.
        let head: Vec<String> = head
            .lines()
            .filter(|l| !l.starts_with("Date: "))
            .map(str::to_owned)
            .collect();
        heads.push((path, head));
    }
    for (path, head) in &heads[1..] {
        assert_eq!(head, &heads[0].1, "{path} vs {}", heads[0].0);
    }
}

#[tokio::test]
async fn control_characters_in_paths_cannot_forge_log_lines() {
    let d = Daemon::start(
        &["--listen", "127.0.0.1:0", "--source", "pattern:160x120@5"],
        &[("RUST_LOG", "mjpegd=debug")],
        1,
    );
    let a = d.addr(0);
    let raw =
        "GET /x%0d%0aFORGED%20admin%20logged%20in%1b[2J HTTP/1.1\r\nConnection: close\r\n\r\n";
    let (code, _, _) = request(a, raw).await;
    assert_eq!(code, 404);
    // The log line is written as the request is handled.
    eventually(Duration::from_secs(5), "the request logged", || {
        std::future::ready(d.stderr_text().contains("FORGED"))
    })
    .await;
    let log = d.stderr_text();
    let forged: Vec<&str> = log
        .lines()
        .filter(|l| l.trim_start().starts_with("FORGED"))
        .collect();
    assert!(forged.is_empty(), "forged log lines: {forged:?}");
    assert!(!log.contains('\u{1b}'), "a terminal escape reached the log");
    assert!(log.contains("/x\\x0d\\x0aFORGED admin"), "{log}");
}
