//! The binary as the scratch image runs it, as far as that can be checked
//! where Docker cannot run. `.ci/static.sh` builds it with crt-static and
//! names it in WM_STATIC_BIN (without it, the kit runs that script itself,
//! `wm_testkit::provision`); this test checks that it is a static ELF (no
//! interpreter, no shared libraries) and starts it in an otherwise empty
//! root directory (chroot: no shell, no libraries, no /etc, no /proc), where
//! it must serve, reach the fake Kubernetes API over HTTPS by IP with the CA
//! file from its root, reach the fake backend, and stop cleanly on SIGTERM.
//!
//! Skipped (with a message) where the static binary cannot be built (no
//! static glibc) or chroot is not permitted, except under CI=true, where
//! both are failures.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use wm_testkit::node::{FakeNode, TEST_ADDRESS};
use wm_testkit::proc::{skip_outside_ci, wait_for, Manager, TempDir, TEST_KEY};

/// The binary's path inside the empty root.
const BIN_IN_ROOT: &str = "/workload-manager";

fn static_bin() -> Option<PathBuf> {
    match wm_testkit::provision::static_binary() {
        Ok(p) => Some(p),
        Err(why) => {
            skip_outside_ci(&format!("WM_STATIC_BIN is not set and {why}"));
            None
        }
    }
}

// ---------------------------------------------------------------- ELF

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

/// What an ELF64 little-endian file's program headers say about linking.
#[derive(Debug, Default)]
struct Linking {
    /// The PT_INTERP path (the dynamic loader the kernel would start first).
    interpreter: Option<String>,
    /// The number of DT_NEEDED entries (shared libraries) in PT_DYNAMIC. A
    /// static-pie has a PT_DYNAMIC for its own relocations, but none of these.
    needed: usize,
}

fn bytes<const N: usize>(b: &[u8], at: usize) -> Result<[u8; N], String> {
    at.checked_add(N)
        .and_then(|end| b.get(at..end))
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| format!("truncated: {N} bytes at offset {at} of {}", b.len()))
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, String> {
    bytes(b, at).map(u16::from_le_bytes)
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    bytes(b, at).map(u32::from_le_bytes)
}

fn usize_at(b: &[u8], at: usize) -> Result<usize, String> {
    let v = bytes(b, at).map(u64::from_le_bytes)?;
    usize::try_from(v).map_err(|_| format!("offset {v} does not fit"))
}

/// Reads the ELF header and every program header; PT_DYNAMIC is scanned up
/// to DT_NULL.
fn elf_linking(b: &[u8]) -> Result<Linking, String> {
    if b.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("not an ELF file".into());
    }
    if b.get(4) != Some(&2) {
        return Err(format!("not ELF64 (EI_CLASS {:?})", b.get(4)));
    }
    if b.get(5) != Some(&1) {
        return Err(format!("not little-endian (EI_DATA {:?})", b.get(5)));
    }
    let e_type = u16_at(b, 16)?;
    if e_type != 2 && e_type != 3 {
        return Err(format!("not an executable (e_type {e_type})"));
    }
    let phoff = usize_at(b, 32)?;
    let phentsize = usize::from(u16_at(b, 54)?);
    let phnum = usize::from(u16_at(b, 56)?);
    if phentsize != 56 || phnum == 0 || phnum == 0xffff {
        return Err(format!(
            "unexpected program headers: {phnum} of {phentsize} bytes"
        ));
    }
    let mut linking = Linking::default();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let (offset, size) = (usize_at(b, ph + 8)?, usize_at(b, ph + 32)?);
        let segment = offset
            .checked_add(size)
            .and_then(|end| b.get(offset..end))
            .ok_or_else(|| format!("program header {i} points outside the file"))?;
        match u32_at(b, ph)? {
            PT_INTERP => {
                let path = segment.split(|&c| c == 0).next().unwrap_or_default();
                linking.interpreter = Some(String::from_utf8_lossy(path).into_owned());
            }
            PT_DYNAMIC => {
                for entry in segment.chunks_exact(16) {
                    match u64::from_le_bytes(entry[..8].try_into().expect("8 bytes")) {
                        DT_NULL => break,
                        DT_NEEDED => linking.needed += 1,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(linking)
}

/// The check can fail: this test program itself is an ordinary dynamically
/// linked executable (runs without WM_STATIC_BIN).
#[test]
#[cfg(all(target_os = "linux", not(target_feature = "crt-static")))]
fn the_elf_check_sees_a_dynamic_executable() {
    let exe = std::env::current_exe().expect("this test's executable");
    let linking = elf_linking(&std::fs::read(&exe).expect("read it")).expect("an ELF64 LE file");
    assert!(
        linking.interpreter.is_some() && linking.needed > 0,
        "{}: {linking:?}",
        exe.display()
    );
    assert!(elf_linking(b"#!/bin/sh\n").is_err());
}

// ---------------------------------------------------------------- empty root

/// Makes `cmd` run with `root` as its root directory and `/` as its working
/// directory: chroot(2), and where that is not permitted (not root, or root
/// without CAP_SYS_CHROOT), chroot in a new user and mount namespace, which
/// an unprivileged process may create where the kernel allows it. No shell
/// is involved: the program is exec'd by its path inside the root.
fn confine(cmd: &mut Command, root: &Path) {
    let root = CString::new(root.as_os_str().as_bytes()).expect("no NUL in the path");
    // SAFETY: between fork and exec only async-signal-safe system calls run,
    // on memory prepared before the fork; nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            if libc::chroot(root.as_ptr()) != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EPERM) {
                    return Err(e);
                }
                if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0
                    || libc::chroot(root.as_ptr()) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::chdir(c"/".as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// An empty directory holding only the binary and, under /sa, copies of the
/// fake API's token and CA: no /etc, /lib, /proc, /dev or shell.
fn empty_root(bin: &Path, node: &FakeNode) -> TempDir {
    let root = TempDir::new("static-root");
    let copy = |from: &Path, to: &str| {
        let dest = root.0.join(to.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().expect("a parent")).expect("mkdir");
        std::fs::copy(from, &dest)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), dest.display()));
    };
    copy(bin, BIN_IN_ROOT);
    copy(&node.kube.token_file(), "/sa/token");
    copy(&node.kube.ca_file(), "/sa/ca.crt");
    root
}

/// `/workload-manager --version` in the root, or `None` when chroot is not
/// permitted here (a failure under CI=true).
fn version_in(root: &Path) -> Option<String> {
    let mut cmd = Command::new(BIN_IN_ROOT);
    cmd.arg("--version").env_clear().stdin(Stdio::null());
    confine(&mut cmd, root);
    match cmd.output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "--version in the empty root: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
        }
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let why = format!(
                "cannot run the binary in an empty root here ({e}): this test needs root \
                 (CAP_SYS_CHROOT) or unprivileged user namespaces"
            );
            skip_outside_ci(&why);
            None
        }
        Err(e) => panic!("starting {BIN_IN_ROOT} in {}: {e}", root.display()),
    }
}

#[test]
fn the_static_binary_runs_in_an_empty_root() {
    let Some(bin) = static_bin() else { return };
    let elf =
        std::fs::read(&bin).unwrap_or_else(|e| panic!("WM_STATIC_BIN {}: {e}", bin.display()));
    let linking = elf_linking(&elf).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    assert_eq!(
        linking.interpreter,
        None,
        "{} has an ELF interpreter: it is dynamically linked",
        bin.display()
    );
    assert_eq!(
        linking.needed,
        0,
        "{} needs shared libraries",
        bin.display()
    );

    let node = FakeNode::new();
    // One desired workload: creating its Deployment takes HTTPS to the API
    // server and signed HTTP to the backend, both from inside the root.
    node.want(&[("web", "1.4.0")]);
    let root = empty_root(&bin, &node);
    let Some(version) = version_in(&root.0) else {
        return;
    };
    assert_eq!(
        version,
        format!("workload-manager {}", env!("CARGO_PKG_VERSION"))
    );

    let mut cmd = Command::new(BIN_IN_ROOT);
    cmd.env_clear()
        .env("NODE_SYSTEM_ENDPOINT", node.backend.url())
        .env("NODE_PRIVATE_KEY", TEST_KEY)
        .env("WM_LISTEN", "127.0.0.1:0")
        .env("WM_NAMESPACE", "edge")
        .env("WM_KUBE_API_URL", node.kube.url())
        .env("WM_KUBE_TOKEN_FILE", "/sa/token")
        .env("WM_KUBE_CA_FILE", "/sa/ca.crt")
        .env("WM_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    confine(&mut cmd, &root.0);
    let mut m = Manager::spawn(cmd);
    let log = |m: &Manager| m.log().join("\n");

    let healthz = m.get("/healthz");
    assert_eq!(
        (healthz.status, healthz.body.trim()),
        (200, "ok"),
        "{}",
        log(&m)
    );
    // The API server answered: TLS by IP, verified with /sa/ca.crt, token from /sa/token.
    wait_for("/readyz 200", Duration::from_secs(20), || {
        (m.get("/readyz").status == 200).then_some(())
    });
    let status = wait_for("leadership", Duration::from_secs(20), || {
        let v = m.get("/v1/status").json();
        (v["manager"]["leader"] == true).then_some(v)
    });
    let holder = status["manager"]["leaseHolder"]
        .as_str()
        .unwrap_or_default();
    assert!(!holder.is_empty(), "{status}");
    let lease = node
        .kube
        .lease("workload-manager")
        .expect("the Lease exists");
    assert_eq!(lease["spec"]["holderIdentity"], holder, "{lease}");

    wait_for("the Deployment web", Duration::from_secs(20), || {
        node.kube.deployment("web")
    });
    let desired = node
        .backend
        .log()
        .into_iter()
        .find(|r| r.method == "GET" && r.path.ends_with("/workloads"))
        .expect("the backend saw the desired-state GET");
    assert_eq!(
        (desired.status, desired.verified),
        (Some(200), true),
        "{desired:?}"
    );
    assert!(
        desired
            .address()
            .is_some_and(|a| a.eq_ignore_ascii_case(TEST_ADDRESS)),
        "{desired:?}"
    );
    assert!(
        node.backend.wait_for_applied(1, Duration::from_secs(10)),
        "the applied version reached the backend:\n{}",
        log(&m)
    );

    m.signal(libc::SIGTERM);
    let exit = m.wait_exit(Duration::from_secs(10));
    assert!(exit.success(), "exit on SIGTERM: {exit}\n{}", log(&m));
    // On the way out it reported and released the Lease.
    assert!(!node.backend.reports().is_empty(), "a final report");
    let lease = node.kube.lease("workload-manager").expect("the Lease");
    assert_eq!(lease["spec"]["holderIdentity"], "", "released: {lease}");
    // Nothing was refused: every backend request authenticated, and the
    // token from /sa/token was accepted on every API call.
    for r in node.backend.log() {
        assert!(r.verified, "{r:?}");
    }
    for r in node.kube.log() {
        assert!(
            !matches!(r.status, Some(401 | 403)),
            "{} {} -> {:?}",
            r.method,
            r.path,
            r.status
        );
    }
}
