//! A Debian kernel booted under QEMU with the vivid virtual camera driver,
//! for tests against a real V4L2 driver.
//!
//! The initramfs is built here: static busybox, an `/init` that loads
//! vivid and the 9p and network drivers from the host's copy of the guest
//! kernel's modules, mounts the host's `/` read-only over 9p (so the built
//! `mjpegd`, and any other host program, runs in the guest unchanged), and
//! then reads shell commands from the serial console. Tests drive that
//! shell over QEMU's stdio and reach guest port 8080 through a user-mode
//! network forward on 127.0.0.1.
//!
//! QEMU runs under TCG: the KVM of the machines this runs on cannot boot
//! Debian's kernel, and TCG is fast enough for correctness (about ten times
//! slower than native).
#![allow(dead_code)] // the test and the benchmark use different parts

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// What the guest needs from the host.
pub struct Requirements {
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub modules: PathBuf,
    pub busybox: PathBuf,
}

/// Finds QEMU, a Debian kernel with its modules (vivid among them) and a
/// static busybox; the error names the packages to install.
pub fn requirements() -> Result<Requirements, String> {
    let mut missing = Vec::new();
    let qemu = which("qemu-system-x86_64");
    if qemu.is_none() {
        missing.push("qemu-system-x86");
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| is_static(p));
    if busybox.is_none() {
        missing.push("busybox-static");
    }
    let kernel = kernels().into_iter().next();
    if kernel.is_none() {
        missing.push("linux-image-amd64");
    }
    match (qemu, busybox, kernel) {
        (Some(qemu), Some(busybox), Some((kernel, modules))) => Ok(Requirements {
            qemu,
            kernel,
            modules,
            busybox,
        }),
        _ => Err(format!("missing packages: {}", missing.join(" "))),
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn is_static(path: &Path) -> bool {
    // A dynamic executable names its interpreter (PT_INTERP) in the header
    // area; the static busybox has none.
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = vec![0u8; 4096];
    let n = f.read(&mut head).unwrap_or(0);
    n > 4 && &head[..4] == b"\x7fELF" && !head[..n].windows(7).any(|w| w == b"ld-linu")
}

/// `/boot/vmlinuz-V` with `/lib/modules/V` holding vivid, newest first.
fn kernels() -> Vec<(PathBuf, PathBuf)> {
    let mut found: Vec<(PathBuf, PathBuf)> = std::fs::read_dir("/boot")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version = name.strip_prefix("vmlinuz-")?.to_owned();
            let modules = PathBuf::from("/lib/modules").join(&version);
            modules
                .join("kernel/drivers/media/test-drivers/vivid/vivid.ko")
                .is_file()
                .then(|| (e.path(), modules))
        })
        .collect();
    found.sort();
    found.reverse();
    found
}

/// Whether the guest kernel has `module` (built for it, e.g. by DKMS).
pub fn has_module(req: &Requirements, module: &str) -> bool {
    load_order(&req.modules, &[module]).is_ok()
}

/// The modules to load, dependencies first, from `modules.dep`.
fn load_order(modules: &Path, wanted: &[&str]) -> Result<Vec<String>, String> {
    let dep = std::fs::read_to_string(modules.join("modules.dep"))
        .map_err(|e| format!("{}/modules.dep: {e}", modules.display()))?;
    let mut deps: HashMap<String, Vec<String>> = HashMap::new();
    let mut by_name: HashMap<String, String> = HashMap::new();
    for line in dep.lines() {
        let Some((module, rest)) = line.split_once(':') else {
            continue;
        };
        let name = Path::new(module)
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split(".ko").next())
            .unwrap_or_default()
            .replace('-', "_");
        by_name.insert(name, module.to_owned());
        deps.insert(
            module.to_owned(),
            rest.split_whitespace().map(str::to_owned).collect(),
        );
    }
    fn visit(m: &str, deps: &HashMap<String, Vec<String>>, out: &mut Vec<String>) {
        if out.iter().any(|o| o == m) {
            return;
        }
        for d in deps.get(m).into_iter().flatten().rev() {
            visit(d, deps, out);
        }
        out.push(m.to_owned());
    }
    let mut out = Vec::new();
    for w in wanted {
        let path = by_name
            .get(&w.replace('-', "_"))
            .ok_or_else(|| format!("module {w} not in {}", modules.display()))?;
        visit(path, &deps, &mut out);
    }
    Ok(out)
}

/// A newc cpio archive, what the kernel unpacks as initramfs.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let header = format!(
            "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, data: &[u8]) {
        self.entry(name, 0o100755, (0, 0), data);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.out
    }
}

/// The guest, booted and waiting for shell commands.
pub struct Guest {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    /// Everything the console printed, for failure messages.
    pub console: Vec<String>,
    /// Host address forwarded to the guest's port 8080.
    pub http: SocketAddr,
    commands: u32,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Guest {
    /// Boots the guest with `drivers` loaded in order, each with its
    /// parameters (e.g. `("vivid", "n_devs=2 multiplanar=1,2")`).
    pub fn boot(req: &Requirements, drivers: &[(&str, &str)]) -> Result<Guest, String> {
        let dir = std::env::temp_dir().join(format!("mjpegd-guest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let dir = TempDir(dir);
        let mut wanted = vec!["e1000", "virtio_pci", "9pnet_virtio", "9p"];
        wanted.extend(drivers.iter().map(|(name, _)| *name));
        let order = load_order(&req.modules, &wanted)?;
        let mut cpio = Cpio::default();
        for d in ["bin", "dev", "proc", "sys", "tmp", "etc", "host", "modules"] {
            cpio.dir(d);
        }
        cpio.entry("dev/console", 0o020600, (5, 1), &[]);
        let busybox = std::fs::read(&req.busybox).map_err(|e| e.to_string())?;
        cpio.file("bin/busybox", &busybox);
        let mut init = String::from(INIT_HEAD);
        for (i, module) in order.iter().enumerate() {
            let data = std::fs::read(req.modules.join(module)).map_err(|e| e.to_string())?;
            let name = format!("modules/{i:02}.ko");
            cpio.file(&name, &data);
            let params = drivers
                .iter()
                .find(|(name, _)| module.ends_with(&format!("/{name}.ko")))
                .map_or("", |(_, params)| params);
            init.push_str(&format!(
                "insmod /{name} {params} || echo INSMOD-FAILED {module}\n"
            ));
        }
        init.push_str(INIT_TAIL);
        cpio.file("init", init.as_bytes());
        let initrd = dir.0.join("initrd.cpio");
        std::fs::write(&initrd, cpio.finish()).map_err(|e| e.to_string())?;

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let mut child = Command::new(&req.qemu)
            .args(["-accel", "tcg", "-smp", "2", "-m", "1024", "-no-reboot"])
            .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
            .arg("-kernel")
            .arg(&req.kernel)
            .arg("-initrd")
            .arg(&initrd)
            .args([
                "-append",
                "console=ttyS0 rdinit=/init panic=-1 quiet loglevel=3",
            ])
            .args([
                "-nic",
                &format!("user,model=e1000,hostfwd=tcp:127.0.0.1:{port}-:8080"),
            ])
            .args([
                "-virtfs",
                "local,path=/,mount_tag=host,security_model=none,readonly=on",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", req.qemu.display()))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line).trim_end().to_owned();
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut guest = Guest {
            child,
            stdin,
            lines,
            console: Vec::new(),
            http: SocketAddr::from(([127, 0, 0, 1], port)),
            commands: 0,
            _dir: dir,
        };
        guest.wait_for("GUEST-READY", Duration::from_secs(180))?;
        Ok(guest)
    }

    fn wait_for(&mut self, marker: &str, timeout: Duration) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    eprintln!("guest| {line}");
                    self.console.push(line.clone());
                    if line.contains(marker) {
                        return Ok(got);
                    }
                    got.push(line);
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("no '{marker}' from the guest within {timeout:?}"));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("the guest stopped before '{marker}'"));
                }
            }
        }
    }

    /// A folder on the host, seen by the guest under `/host`.
    pub fn host_dir(&self) -> &Path {
        &self._dir.0
    }

    /// Runs `cmd` in the guest's shell and returns what it printed.
    pub fn sh(&mut self, cmd: &str) -> String {
        self.sh_within(cmd, Duration::from_secs(60))
    }

    pub fn sh_within(&mut self, cmd: &str, timeout: Duration) -> String {
        self.commands += 1;
        let n = self.commands;
        // The marker is computed by the shell, so an echoed command line
        // never matches it.
        let line = format!("{cmd}\necho \"@@done$(({n} * 1))@@\"\n");
        self.stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("guest shell gone: {e}"));
        let out = self
            .wait_for(&format!("@@done{n}@@"), timeout)
            .unwrap_or_else(|e| panic!("{e}: {cmd}"));
        out.join("\n")
    }

    /// Starts `mjpegd` from the host's build in the guest with `args`,
    /// listening on the forwarded port.
    pub fn start_mjpegd(&mut self, args: &str) {
        let bin = env!("CARGO_BIN_EXE_mjpegd");
        self.sh(&format!(
            "/host{bin} --listen 0.0.0.0:8080 {args} >/tmp/mjpegd.log 2>&1 & echo $! >/tmp/mjpegd.pid"
        ));
    }

    /// Stops the guest's mjpegd and returns its log.
    pub fn stop_mjpegd(&mut self) -> String {
        self.sh(
            "kill $(cat /tmp/mjpegd.pid); while kill -0 $(cat /tmp/mjpegd.pid) 2>/dev/null; do usleep 100000; done",
        );
        self.sh("cat /tmp/mjpegd.log")
    }

    /// `GET path` through the forward; `None` until something in the
    /// guest answers (the forward accepts even when nothing listens).
    pub fn get(&self, path: &str) -> Option<(u16, Vec<u8>)> {
        let mut io = TcpStream::connect_timeout(&self.http, Duration::from_secs(5)).ok()?;
        io.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        io.write_all(req.as_bytes()).ok()?;
        let mut all = Vec::new();
        io.read_to_end(&mut all).ok()?;
        let end = all.windows(4).position(|w| w == b"\r\n\r\n")?;
        let status = std::str::from_utf8(&all[..end])
            .ok()?
            .split(' ')
            .nth(1)?
            .parse()
            .ok()?;
        Some((status, all[end + 4..].to_vec()))
    }

    /// The first stream's `/status` entry, waiting up to `timeout` for the
    /// server to answer.
    pub fn status(&mut self, timeout: Duration) -> serde_json::Value {
        self.status_until(timeout, "/status", |_| true)
    }

    /// Polls `/status` until `check` holds; returns the last entry. On
    /// timeout it fails with the guest's logs.
    pub fn status_until(
        &mut self,
        timeout: Duration,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some((200, body)) = self.get("/status")
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
            {
                let st = v["streams"][0].clone();
                if check(&st) {
                    return st;
                }
                last = Some(st);
            }
            if Instant::now() >= deadline {
                let logs = self.sh("ps; tail -n 30 /tmp/*.log");
                panic!("{what}: not within {timeout:?}; last /status: {last:?}\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.stdin.write_all(b"poweroff -f\n");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const INIT_HEAD: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
"#;

/// After the modules: the host's root, the host's libraries where the
/// dynamic loader looks, the network, then the shell on the console.
const INIT_TAIL: &str = r#"mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose host /host || echo MOUNT-FAILED
ln -s /host/lib /lib
ln -s /host/lib64 /lib64
ln -s /host/usr /usr
ln -s /host/etc/ld.so.cache /etc/ld.so.cache
ln -s /host/etc/alternatives /etc/alternatives
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
stty -echo 2>/dev/null
echo GUEST-READY
exec sh
"#;
