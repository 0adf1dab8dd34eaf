//! Relaying an HTTPS camera whose certificate no public CA signed: by
//! default the relay refuses it and says which option to use (with the
//! certificate's fingerprint); `tls_pin` (the camera's own certificate, as
//! a file or a fingerprint) or `tls_ca` (the CA that issued it) in the
//! stream's config table make it work. The camera is another mjpegd serving
//! HTTPS with a certificate made here.

mod common;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use sha2::Digest;
use std::path::PathBuf;
use std::time::Duration;

/// PEM files written for a test, removed on drop.
struct Files(Vec<PathBuf>);

impl Files {
    fn write(&mut self, what: &str, text: &str) -> String {
        let path = temp_path(what);
        std::fs::write(&path, text).expect("write");
        let name = path.display().to_string();
        self.0.push(path);
        name
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// An HTTPS upstream with certificate `cert_pem` and key `key_pem`.
async fn camera(files: &mut Files, cert_pem: &str, key_pem: &str) -> TestServer {
    let cert = files.write("cam-cert.pem", cert_pem);
    let key = files.write("cam-key.pem", key_pem);
    TestServer::start(&[
        "--source",
        "pattern:160x120@15",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ])
    .await
}

/// A relay of `camera` configured by the `[[stream]]` lines `extra`.
async fn relay(files: &mut Files, camera: &TestServer, extra: &str) -> TestServer {
    let port = camera.addr.port();
    let conf = files.write(
        "relay.toml",
        &format!(
            "[[stream]]\nname = \"cam\"\nsource = \"https://localhost:{port}/stream\"\n{extra}\n"
        ),
    );
    TestServer::start(&["--config", &conf]).await
}

/// Waits until the relay's stream is online (true) or has a `last_error`
/// (false); returns that and the error text.
async fn outcome(relay: &TestServer) -> (bool, String) {
    let online =
        |s: &serde_json::Value| s["online"] == true && s["frames_captured"].as_u64() > Some(2);
    let within = Duration::from_secs(10);
    let s = wait_stream(relay.addr, None, within, "online or failed", |s| {
        online(s) || s["last_error"].is_string()
    })
    .await;
    match s["last_error"].as_str() {
        Some(e) if !online(&s) => (false, e.to_owned()),
        _ => (true, String::new()),
    }
}

/// What IP cameras do: a self-signed certificate that says it is a CA.
fn camera_style_certificate() -> (String, String, Vec<u8>) {
    let mut params = CertificateParams::new(vec!["localhost".into()]).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_camera_is_refused_with_advice_then_pinned() {
    let mut files = Files(Vec::new());
    let (cert_pem, key_pem, der) = camera_style_certificate();
    let cam = camera(&mut files, &cert_pem, &key_pem).await;
    let fingerprint: String = sha2::Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    let plain = relay(&mut files, &cam, "").await;
    let (online, error) = outcome(&plain).await;
    assert!(!online);
    assert!(error.contains("tls_pin"), "{error}");
    assert!(
        error.contains(&fingerprint),
        "names the presented certificate: {error}"
    );
    plain.stop().await;

    // Pinned by file.
    let pin_file = files.write("pin.pem", &cert_pem);
    let pinned = relay(&mut files, &cam, &format!("tls_pin = \"{pin_file}\"")).await;
    assert_eq!(outcome(&pinned).await, (true, String::new()));
    pinned.stop().await;

    // Pinned by the fingerprint the error message gave.
    let pinned = relay(
        &mut files,
        &cam,
        &format!("tls_pin = \"sha256:{fingerprint}\""),
    )
    .await;
    assert_eq!(outcome(&pinned).await, (true, String::new()));
    pinned.stop().await;

    // Another certificate's pin is refused, naming both.
    let (_, _, other) = camera_style_certificate();
    let other_pin: String = sha2::Sha256::digest(&other)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let wrong = relay(
        &mut files,
        &cam,
        &format!("tls_pin = \"sha256:{other_pin}\""),
    )
    .await;
    let (online, error) = outcome(&wrong).await;
    assert!(!online);
    assert!(
        error.contains("not the one in tls_pin") && error.contains(&fingerprint),
        "{error}"
    );
    wrong.stop().await;
    cam.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_certificate_from_a_private_ca_is_trusted_with_tls_ca() {
    let mut files = Files(Vec::new());
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
    let leaf_key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["localhost".into()])
        .expect("params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf");
    let cam = camera(&mut files, &leaf.pem(), &leaf_key.serialize_pem()).await;

    let (online, error) = outcome(&relay(&mut files, &cam, "").await).await;
    assert!(!online && error.contains("tls_ca"), "{error}");

    let ca_file = files.write("ca.pem", &ca.pem());
    let trusted = relay(&mut files, &cam, &format!("tls_ca = \"{ca_file}\"")).await;
    assert_eq!(outcome(&trusted).await, (true, String::new()));
    trusted.stop().await;
    cam.stop().await;
}

#[test]
fn trust_options_are_checked_at_start() {
    let mut files = Files(Vec::new());
    for (extra, expect) in [
        ("tls_ca = \"/nonexistent/ca.pem\"", "tls_ca"),
        ("tls_pin = \"sha256:1234\"", "tls_pin"),
        ("tls_ca = \"/x\"\ntls_pin = \"/y\"", "not both"),
    ] {
        let conf = files.write(
            "bad.toml",
            &format!("[[stream]]\nsource = \"https://cam.local/stream\"\n{extra}\n"),
        );
        let e = mjpegd::config::Config::from_args(["mjpegd", "--config", &conf]).expect_err(extra);
        assert!(format!("{e:?}").contains(expect), "{extra}: {e:?}");
    }
    let conf = files.write(
        "plain.toml",
        "[[stream]]\nsource = \"http://cam.local/stream\"\ntls_pin = \"sha256:00\"\n",
    );
    assert!(mjpegd::config::Config::from_args(["mjpegd", "--config", &conf]).is_err());
}
