//! The command line as a new user meets it, through the real binary: the
//! commands are listed in `--help`, `mjpegd help` works, a stray argument to
//! a command is an error (exit 2, one line), and misspelt flags and config
//! keys get a suggestion.

mod common;

/// Exit code, stdout and stderr of the binary run with `args`.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = common::run(args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_the_commands() {
    for args in [&["--help"][..], &["help"]] {
        let (code, out, _) = run(args);
        assert_eq!(code, Some(0), "{args:?}");
        assert!(
            out.contains("token") && out.contains("devices"),
            "{args:?}: {out}"
        );
    }
    let (code, out, _) = run(&["help", "token"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("--ttl"), "{out}");
}

#[test]
fn mistakes_exit_2_with_one_line_and_a_hint() {
    for (args, expect) in [
        (
            &["devices", "--bogus"][..],
            "mjpegd devices: unexpected argument '--bogus'",
        ),
        (&["--lisen", "0"], "did you mean '--listen'?"),
        (&["devics"], "did you mean 'devices'?"),
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    let conf = std::env::temp_dir().join(format!("mjpegd-cli-{}.toml", std::process::id()));
    std::fs::write(&conf, "[stream]\nsource = \"pattern\"\n").expect("write");
    let (code, _, err) = run(&["--config", conf.to_str().expect("utf-8")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("[stream] must be [[stream]]"), "{err}");
    let _ = std::fs::remove_file(conf);
}
