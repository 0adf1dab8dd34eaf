//! The command line and config file parsed into `Config`: defaults, flags,
//! file keys, precedence and one-line error messages.

use super::*;
use crate::history::DEFAULT_MAX_MB;
use crate::rendition::DEFAULT_MAX_RENDITIONS;
use crate::source::PatternSpec;

fn parse(args: &[&str]) -> Result<Config, ConfigError> {
    Config::from_args(std::iter::once("mjpegd").chain(args.iter().copied()))
}

fn invalid(args: &[&str]) -> String {
    match parse(args) {
        Err(ConfigError::Invalid(msg)) => msg,
        other => panic!("{args:?} gave {other:?}"),
    }
}

#[test]
fn defaults() {
    let c = parse(&[]).expect("defaults are valid");
    assert_eq!(c.listen, vec!["127.0.0.1:8080".parse().expect("addr")]);
    assert_eq!(c.streams.len(), 1);
    assert_eq!(c.streams[0].name, "pattern");
    assert_eq!(
        c.streams[0].source,
        SourceSpec::Pattern(PatternSpec::default())
    );
    assert_eq!(c.quality, 80);
}

#[test]
fn several_named_streams() {
    let c = parse(&[
        "--source",
        "pattern:320x240@10",
        "--source",
        "cam=pattern",
        "--source",
        "pattern@5",
        "--listen",
        "0",
        "--listen",
        "[::1]:9000",
    ])
    .expect("valid");
    let names: Vec<_> = c.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["pattern", "cam", "pattern2"]);
    assert_eq!(c.listen[0].port(), 0);
    assert_eq!(c.listen[1], "[::1]:9000".parse().expect("addr"));
}

#[test]
fn bad_values_give_one_line() {
    for args in [
        &["--quality", "0"][..],
        &["--quality", "101"],
        &["--listen", "nowhere"],
        &["--source", "bogus:1"],
        &["--source", "a=pattern", "--source", "a=pattern"],
        &["--source", "bad/name=pattern"],
        &["--snapshot-timeout", "-1"],
        &["--allow-origin", "a b"],
        &["--allow-origin", ""],
        &["--capture-on-demand", "0"],
        &["--log-format", "xml"],
        &["--frobnicate"],
    ] {
        let msg = invalid(args);
        assert!(!msg.contains('\n'), "{args:?}: {msg}");
        assert!(!msg.is_empty());
    }
}

/// Writes `text` to a fresh file and parses `args` with `--config FILE`.
fn with_file(text: &str, args: &[&str]) -> Result<Config, ConfigError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("mjpegd-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("config{}.toml", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&path, text).expect("write config");
    let path = path.to_str().expect("UTF-8 path").to_owned();
    let mut argv = vec!["--config", path.as_str()];
    argv.extend_from_slice(args);
    let result = parse(&argv);
    let _ = std::fs::remove_file(&path);
    // Error messages name the file; make them independent of where it is.
    result.map_err(|e| match e {
        ConfigError::Invalid(m) => ConfigError::Invalid(m.replace(&path, "config.toml")),
        other => other,
    })
}

fn file_error(text: &str) -> String {
    match with_file(text, &[]) {
        Err(ConfigError::Invalid(msg)) => msg,
        other => panic!("{text:?} gave {other:?}"),
    }
}

#[test]
fn history_settings() {
    let c = parse(&[]).expect("defaults");
    assert_eq!(c.history_of(&c.streams[0]), None, "off by default");
    let c = parse(&["--history", "60"]).expect("valid");
    assert_eq!(
        c.history_of(&c.streams[0]),
        Some(HistorySettings {
            span: Duration::from_secs(60),
            max_bytes: DEFAULT_MAX_MB << 20
        })
    );
    let text = "history = 10\nhistory_max_mb = 32\n\
        [[stream]]\nname = \"a\"\nsource = \"pattern\"\n\
        [[stream]]\nname = \"b\"\nsource = \"pattern\"\nhistory = 0\n\
        [[stream]]\nname = \"c\"\nsource = \"pattern\"\nhistory = 2.5\nhistory_max_mb = 4\n";
    let c = with_file(text, &[]).expect("valid");
    let of = |i: usize| c.history_of(&c.streams[i]);
    assert_eq!(
        of(0),
        Some(HistorySettings {
            span: Duration::from_secs(10),
            max_bytes: 32 << 20
        })
    );
    assert_eq!(of(1), None);
    assert_eq!(
        of(2),
        Some(HistorySettings {
            span: Duration::from_millis(2500),
            max_bytes: 4 << 20
        })
    );
    // The command line overrides the file.
    let c = with_file(text, &["--history-max-mb", "8"]).expect("valid");
    assert_eq!(
        c.history_of(&c.streams[0]).map(|h| h.max_bytes),
        Some(8 << 20)
    );
    assert!(invalid(&["--history", "90000"]).contains("--history"));
    assert!(invalid(&["--history-max-mb", "0"]).contains("--history-max-mb"));
    assert_eq!(
        file_error("history_max_mb = 0\n"),
        "config.toml:1: bad value for 'history_max_mb': '0' is not a number of MiB from 1 to 1048576"
    );
    assert!(
        file_error("[[stream]]\nsource = \"pattern\"\nhistory = -3\n")
            .starts_with("config.toml:3: bad value for 'history'")
    );
}

#[test]
fn the_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mjpegd.toml");
    let c = parse(&["--config", path]).expect("example config is valid");
    let names: Vec<_> = c.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["main", "small", "frames"]);
    assert_eq!(
        c.streams[1].source,
        SourceSpec::Pattern(PatternSpec {
            width: 320,
            height: 240,
            fps: 10.0
        })
    );
    assert_eq!(c.streams[1].quality, Some(60));
    assert_eq!(c.streams[0].quality, None);
    assert_eq!(c.history_of(&c.streams[0]), None);
    assert_eq!(
        c.history_of(&c.streams[1]).map(|h| h.span),
        Some(Duration::from_secs(30))
    );
    assert_eq!(c.streams[2].source.kind(), "dir");
    assert_eq!(c.streams[0].renditions[0].name, "thumb");
    assert_eq!(c.listen, vec!["127.0.0.1:8080".parse().expect("addr")]);
}

#[test]
fn renditions_in_the_config_file() {
    let text = "[[stream]]\nname = \"cam\"\nsource = \"pattern\"\nmax_renditions = 2\n\
                [[stream.rendition]]\nname = \"small\"\nwidth = 640\nquality = 70\n\
                [[stream.rendition]]\nname = \"tall\"\nheight = 90\n\
                [[stream]]\nname = \"other\"\nsource = \"pattern\"\n";
    let c = with_file(text, &[]).expect("valid");
    assert_eq!(c.streams[0].max_renditions, 2);
    assert_eq!(
        c.streams[0].renditions,
        [
            NamedRendition {
                name: "small".into(),
                width: Some(640),
                height: None,
                quality: Some(70)
            },
            NamedRendition {
                name: "tall".into(),
                width: None,
                height: Some(90),
                quality: None
            }
        ]
    );
    assert_eq!(c.streams[1].max_renditions, DEFAULT_MAX_RENDITIONS);
    assert!(c.streams[1].renditions.is_empty());
    let head = "[[stream]]\nsource = \"pattern\"\n";
    for (bad, says) in [
        (
            "[[stream.rendition]]\nname = \"a\"\nwidth = 0\n",
            "bad value for 'width'",
        ),
        (
            "[[stream.rendition]]\nname = \"a\"\nquality = 101\n",
            "bad value for 'quality'",
        ),
        (
            "[[stream.rendition]]\nname = \"a b\"\nwidth = 9\n",
            "invalid rendition name",
        ),
        (
            "[[stream.rendition]]\nname = \"a\"\n",
            "needs a width, a height or a quality",
        ),
        (
            "[[stream.rendition]]\nname = \"a\"\nwidth = 9\n[[stream.rendition]]\nname = \"a\"\nwidth = 8\n",
            "two renditions",
        ),
        ("[[stream.rendition]]\nname = \"a\"\nwdth = 9\n", "wdth"),
        ("max_renditions = -1\n", "bad value for 'max_renditions'"),
    ] {
        let msg = file_error(&format!("{head}{bad}"));
        assert!(msg.contains(says), "{bad:?}: {msg}");
    }
}

#[test]
fn the_deployment_examples_are_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/");
    let pi = parse(&["--config", &format!("{dir}raspberry-pi.toml")]).expect("valid");
    assert_eq!(pi.listen, vec!["0.0.0.0:8080".parse().expect("addr")]);
    assert_eq!(pi.capture_on_demand, Some(Duration::from_secs(30)));
    assert_eq!(pi.streams.len(), 1);
    assert_eq!(pi.streams[0].name, "cam");
    assert_eq!(pi.streams[0].source.kind(), "exec");
    assert!(pi.streams[0].source.to_string().contains("rpicam-vid"));
    let deb = concat!(env!("CARGO_MANIFEST_DIR"), "/debian/mjpegd.toml");
    let packaged = parse(&["--config", deb]).expect("the packaged config is valid");
    assert_eq!(
        packaged.listen,
        vec!["127.0.0.1:8080".parse().expect("addr")]
    );
    assert_eq!(packaged.streams[0].source.kind(), "pattern");
    let ip = parse(&["--config", &format!("{dir}ip-camera.toml")]).expect("valid");
    let names: Vec<_> = ip.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["door", "garage", "garden"]);
    let kinds: Vec<_> = ip.streams.iter().map(|s| s.source.kind()).collect();
    assert_eq!(kinds, ["relay", "relay", "snapshot"]);
    assert!(ip.drop_same_frames);
    assert_eq!(ip.allow_origin.as_deref(), Some("*"));
}

#[test]
fn operations_settings_in_the_file() {
    let text = r#"
drop_same_frames = true
allow_origin = "https://example.com"
capture_on_demand = 10
resume_timeout = 20
log_format = "json"
unix_mode = "660"
unix_group = "root"
"#;
    let c = with_file(text, &[]).expect("valid");
    assert_eq!(
        c.unix_permissions,
        UnixPermissions {
            mode: Some(0o660),
            group: Some(0)
        }
    );
    assert_eq!(
        with_file("unix_mode = 0o640\n", &[])
            .expect("valid")
            .unix_permissions
            .mode,
        Some(0o640)
    );
    assert_eq!(c.resume_timeout, Duration::from_secs(20));
    assert!(c.drop_same_frames);
    assert_eq!(c.allow_origin.as_deref(), Some("https://example.com"));
    assert_eq!(c.capture_on_demand, Some(Duration::from_secs(10)));
    assert_eq!(c.log_format, LogFormat::Json);
    let c = with_file(
        text,
        &[
            "--allow-origin",
            "*",
            "--capture-on-demand",
            "2",
            "--log-format",
            "text",
        ],
    )
    .expect("valid");
    assert_eq!(c.allow_origin.as_deref(), Some("*"), "flags override");
    assert_eq!(c.capture_on_demand, Some(Duration::from_secs(2)));
    assert_eq!(c.log_format, LogFormat::Text);
    for (bad, key) in [
        ("allow_origin = \"a b\"", "allow_origin"),
        ("capture_on_demand = 0", "capture_on_demand"),
        ("log_format = \"xml\"", "log_format"),
        ("drop_same_frames = 1", "drop_same_frames"),
    ] {
        let msg = file_error(bad);
        assert!(msg.starts_with("config.toml:1:"), "{bad}: {msg}");
        assert!(msg.contains(key), "{bad}: {msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }
}

#[test]
fn file_settings_and_command_line_overrides() {
    let text = r#"
listen = ["127.0.0.1:9001", 9002]
quality = 55
subsampling = "4:2:2"
snapshot_timeout = 2
header_timeout = 2.5
send_buffer = 0
send_method = "write"

[[stream]]
source = "dir:/srv/a"
fps = 4

[[stream]]
name = "b"
source = "pattern"
quality = 90
"#;
    let c = with_file(text, &[]).expect("valid");
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.listen[1], "127.0.0.1:9002".parse().expect("addr"));
    assert_eq!(c.quality, 55);
    assert_eq!(c.subsampling, Subsampling::Yuv422);
    assert_eq!(c.snapshot_timeout, Duration::from_secs(2));
    assert_eq!(c.header_timeout, Duration::from_millis(2500));
    assert_eq!(c.send_buffer, 0);
    assert!(!c.zero_copy);
    assert_eq!(c.streams[0].name, "dir");
    assert_eq!(c.streams[0].source.to_string(), "dir:/srv/a@4");
    assert_eq!(c.streams[1].quality, Some(90));

    // Flags win over the file; --source replaces the file's streams.
    let c = with_file(text, &["--quality", "70", "--source", "x=stdin"]).expect("valid");
    assert_eq!(c.quality, 70);
    assert_eq!(c.subsampling, Subsampling::Yuv422);
    assert_eq!(c.snapshot_timeout, Duration::from_secs(2));
    assert_eq!(c.streams.len(), 1);
    assert_eq!(c.streams[0].name, "x");
    let c = with_file(text, &["--subsampling", "420"]).expect("valid");
    assert_eq!(c.subsampling, Subsampling::Yuv420);
    assert_eq!(
        file_error("subsampling = \"4:4:4\"\n"),
        "config.toml:1: bad value for 'subsampling': \"4:4:4\" (expected 4:2:0 or 4:2:2)"
    );
    let c = with_file(text, &["--listen", "0"]).expect("valid");
    assert_eq!(c.listen.len(), 1);
    assert_eq!(c.listen[0].port(), 0);

    // A file without streams keeps the default stream.
    let c = with_file("quality = 50\n", &[]).expect("valid");
    assert_eq!(c.streams[0].name, "pattern");
}

#[test]
fn camera_formats_in_the_config_file() {
    let c = with_file(
        "[[stream]]\nsource = \"v4l2:0:640x480\"\nformat = \"nv12\"\nfps = 15\n",
        &[],
    )
    .expect("valid");
    let SourceSpec::V4l2(v) = &c.streams[0].source else {
        panic!("{:?}", c.streams[0].source)
    };
    assert_eq!(v.to_string(), "v4l2:/dev/video0:NV12:640x480@15");
    assert_eq!(
        file_error("[[stream]]\nsource = \"v4l2:0\"\nformat = \"H264\"\n"),
        "config.toml:3: bad value for 'format': 'H264' (expected MJPEG, YUYV, NV12, NV12M)"
    );
    assert_eq!(
        file_error("[[stream]]\nsource = \"pattern\"\nformat = \"YUYV\"\n"),
        "config.toml:3: 'format' does not apply to pattern sources"
    );
}

#[test]
fn file_errors_name_file_line_and_key() {
    let stream = "quality = 80\n\n[[stream]]\nname = \"a\"\nsource = \"pattern\"\n";
    assert_eq!(
        file_error(&format!("{stream}fsp = 5\n")),
        "config.toml:6: unknown key 'fsp' in [[stream]]; did you mean 'fps'?"
    );
    assert_eq!(
        file_error("\nlisten = \"0\"\nqualty = 5\n"),
        "config.toml:3: unknown key 'qualty' at the top level; did you mean 'quality'?"
    );
    assert_eq!(
        file_error("quality = 500\n"),
        "config.toml:1: bad value for 'quality': 500 (expected 1 to 100)"
    );
    assert!(
        file_error("quality = \"high\"\n")
            .starts_with("config.toml:1: bad value for 'quality': invalid type: string"),
    );
    assert_eq!(
        file_error(&format!("{stream}fps = 0\n")),
        "config.toml:6: bad value for 'fps': 0 (expected a number above 0, at most 240)"
    );
    assert_eq!(
        file_error("[[stream]]\nsource = \"stdin\"\nfps = 5\n"),
        "config.toml:3: 'fps' does not apply to stdin sources"
    );
    assert_eq!(
        file_error("[[stream]]\nsource = \"dir:\"\n"),
        "config.toml:2: bad value for 'source': dir: needs a path (dir:PATH[@FPS])"
    );
    assert_eq!(
        file_error(&format!("{stream}{stream}")),
        "config.toml:9: two streams are named 'a'"
    );
    assert_eq!(
        file_error("quality = 5\n[[stream]]\nname = \"a\"\n"),
        "config.toml:2: missing key 'source' in [[stream]]"
    );
    assert!(file_error("quality = \n").starts_with("config.toml:1: "));
    assert!(
        file_error("listen = [\"nowhere\"]\n").starts_with("config.toml:1: bad value for 'listen'")
    );
    match parse(&["--config", "/nonexistent/mjpegd.toml"]) {
        Err(ConfigError::Invalid(m)) => {
            assert!(
                m.starts_with("cannot read /nonexistent/mjpegd.toml: "),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    for text in [
        "quality = 500\n",
        "bogus = 1\n",
        "[[stream]]\nsource = \"x\"\n",
    ] {
        assert!(!file_error(text).contains('\n'), "one line for {text:?}");
    }
}

#[test]
fn hints_for_common_mistakes() {
    assert_eq!(
        file_error("[stream]\nsource = \"pattern\"\n"),
        "config.toml:1: [stream] must be [[stream]] (double brackets: one table per stream)"
    );
    let m = file_error("auth = \"viewer:secret\"\n");
    assert!(m.contains("auth_file") && !m.contains("secret\""), "{m}");
    assert_eq!(
        file_error("[[stream]]\nsource = \"pattern\"\nfsp = 3\n"),
        "config.toml:3: unknown key 'fsp' in [[stream]]; did you mean 'fps'?"
    );
    assert_eq!(
        file_error("lisen = 8080\n"),
        "config.toml:1: unknown key 'lisen' at the top level; did you mean 'listen'?"
    );
    assert_eq!(
        file_error("[[stream]]\nsource = \"dir:/x@5\"\nfps = 10\n"),
        "config.toml:3: 'fps = 10' and the '@5' in source both set the frame rate; keep one"
    );
    // A password in a URL is no rate.
    let c = with_file(
        "[[stream]]\nsource = \"snapshot:http://u:p@cam.local/s.jpg\"\nfps = 2\n",
        &[],
    )
    .expect("valid");
    assert!(c.streams[0].source.to_string().ends_with("@2"));
    assert!(invalid(&["--lisen", "0"]).contains("did you mean '--listen'?"));
    assert!(invalid(&["devics"]).contains("did you mean 'devices'?"));
}

#[test]
fn subcommands_are_strict_and_listed() {
    let run = |args: &[&str]| command_line(std::iter::once("mjpegd").chain(args.iter().copied()));
    assert!(matches!(run(&["devices"]), Ok(Invocation::Devices)));
    assert!(matches!(
        run(&["devices", "--bogus"]),
        Err(ConfigError::Invalid(_))
    ));
    assert!(matches!(
        run(&["--listen", "0", "devices"]),
        Err(ConfigError::Invalid(_))
    ));
    for args in [&["help"][..], &["--help"], &["help", "token"]] {
        match run(args) {
            Err(ConfigError::Info(text)) => assert!(text.contains("Usage"), "{args:?}"),
            other => panic!("{args:?}: {other:?}"),
        }
    }
    match run(&["--help"]) {
        Err(ConfigError::Info(text)) => {
            assert!(text.contains("token") && text.contains("devices"), "{text}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn operations_options() {
    let c = parse(&[]).expect("defaults are valid");
    assert!(!c.drop_same_frames);
    assert_eq!(c.allow_origin, None);
    assert_eq!(c.capture_on_demand, None);
    assert_eq!(c.log_format, LogFormat::Text);
    let c = parse(&[
        "--drop-same-frames",
        "--allow-origin",
        "*",
        "--capture-on-demand",
        "2.5",
        "--log-format",
        "json",
    ])
    .expect("valid");
    assert!(c.drop_same_frames);
    assert_eq!(c.allow_origin.as_deref(), Some("*"));
    assert_eq!(c.capture_on_demand, Some(Duration::from_millis(2500)));
    assert_eq!(c.log_format, LogFormat::Json);
}

#[test]
fn help_lists_options_with_defaults() {
    match parse(&["--help"]) {
        Err(ConfigError::Info(text)) => {
            for opt in ["--listen", "--source", "--quality", "127.0.0.1:8080"] {
                assert!(text.contains(opt), "help lacks {opt}");
            }
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn nats_publish_listen_none_and_the_examples() {
    let c = parse(&[
        "--listen",
        "none",
        "--source",
        "cam=pattern",
        "--publish",
        "nats://a:4222,b/cams.front",
    ])
    .expect("valid");
    assert!(c.listen.is_empty() && c.listen_unix.is_empty());
    let bus = c.streams[0].publish.as_ref().expect("publish");
    assert_eq!(bus.to_string(), "nats://a:4222,b:4222/cams.front");
    let e = invalid(&["--publish", "nats://u:Sekr1t@h/s"]);
    assert!(e.contains("password_file") && !e.contains("Sekr1t"), "{e}");
    let e = invalid(&["--source", "nats://h/s?creds_file=/nonexistent/x.creds"]);
    assert!(e.contains("creds_file /nonexistent/x.creds"), "{e}");
    assert!(
        file_error("[[stream]]\nsource = \"pattern\"\npublish = \"nats://h\"\n")
            .starts_with("config.toml:3: bad value for 'publish'")
    );
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/");
    let capture = parse(&["--config", &format!("{dir}nats-capture.toml")]).expect("valid");
    assert!(capture.listen.is_empty());
    assert!(capture.streams.iter().all(|s| s.publish.is_some()));
    let edge = parse(&["--config", &format!("{dir}nats-edge.toml")]).expect("valid");
    assert!(edge.streams.iter().all(|s| s.source.kind() == "nats"));
}
