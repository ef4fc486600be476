//! A guest no one here wrote: Debian's memtest86+ (`memtest86+x64.bin`, a bzImage) run
//! by the `vmx` binary on the hypervisor under Bochs, its screen on COM1
//! (`console=ttyS0,115200`). It calibrates the TSC against PIT channel 2 (port 0x61), polls
//! the keyboard controller (port 0x64) and COM1 for keys, and redraws its screen on the
//! serial line every two seconds of TSC time; the test waits for the screen of a running
//! pass (the header, test #0's name) and then for the pass to reach a later test, which
//! takes the two-second redraws, so memtest's TSC calibration against the PIT held.
//!
//! Slow (Bochs), so ignored by default:
//! `cargo test -p vmm-tests --test tool_memtest_bochs -- --ignored --nocapture`. The guest's console
//! goes to $VMX_MEMTEST_LOG.kernel or .tool (default $TMPDIR/vmx-memtest-bochs-PID) as it arrives, and
//! every wait line and ctl command to the same name with `.trace` added. Two tests: the
//! PC devices in the hypervisor, and in the tool (`--no-kernel-devices`, on the guest's
//! clock from the exit lines).
//!
//! Needs Debian's memtest86+ package (`scripts/setup` installs it: /boot/memtest86+x64.bin);
//! `$VMX_TEST_MEMTEST` names another image.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vmm_tests::emu::{Machine, Opts};

fn memtest_image() -> PathBuf {
    let p = std::env::var_os("VMX_TEST_MEMTEST")
        .map_or_else(|| PathBuf::from("/boot/memtest86+x64.bin"), PathBuf::from);
    assert!(
        p.exists(),
        "no {}: run scripts/setup (it installs Debian's memtest86+) or set VMX_TEST_MEMTEST",
        p.display()
    );
    p
}

/// memtest's serial screen with the escape sequences taken out, so the text of one screen
/// row reads as it does on the screen.
fn plain(raw: &[u8]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == 0x1b && raw.get(i + 1) == Some(&b'[') {
            // CSI: parameters and intermediates, then one final byte in 0x40..=0x7e.
            i += 2;
            while i < raw.len() && !(0x40..=0x7e).contains(&raw[i]) {
                i += 1;
            }
            i += 1;
            s.push('\n');
            continue;
        }
        s.push(char::from(raw[i]));
        i += 1;
    }
    s
}

/// The screen's "Test #" field shows a test after #0 (" #4  [Moving inversions, ...").
fn later_test(t: &str) -> bool {
    t.lines().any(|l| {
        let l = l.trim_start();
        l.strip_prefix('#').is_some_and(|r| {
            let n: String = r.chars().take_while(char::is_ascii_digit).collect();
            n.parse::<u32>().is_ok_and(|n| n >= 1) && r[n.len()..].starts_with("  [")
        })
    })
}

#[test]
#[ignore]
fn memtest_runs_a_pass_under_bochs() {
    memtest_pass(true);
}

/// The same with the PC devices in the tool (`--no-kernel-devices`): they run on the
/// guest's clock, which the hypervisor puts on every exit line (its `clock` extension).
#[test]
#[ignore]
fn memtest_runs_a_pass_with_the_tools_devices() {
    memtest_pass(false);
}

fn memtest_pass(kernel_devices: bool) {
    let image = memtest_image();
    let m = Machine::vtx(Opts {
        virtio_ports: 0,
        mem_mb: 256,
        ips: 4_000_000,
        ..Opts::default()
    });
    let which = if kernel_devices { "kernel" } else { "tool" };
    let path = match std::env::var("VMX_MEMTEST_LOG") {
        Ok(p) => format!("{p}.{which}"),
        Err(_) => std::env::temp_dir()
            .join(format!("vmx-memtest-bochs-{}.{which}", std::process::id()))
            .display()
            .to_string(),
    };
    let mut cmd = Command::new(vmm_tests::fixtures::tool::vmx());
    cmd.arg("-a")
        .arg(Machine::dial_string(&m.uart_path()))
        .args(["-M", "32M", "--stats", "-D", "--trace"])
        .arg(format!("{path}.trace"));
    if !kernel_devices {
        cmd.arg("--no-kernel-devices");
    }
    let mut child = cmd
        .arg(&image)
        .arg("console=ttyS0,115200")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vmx");
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let mut file = std::fs::File::create(&path).unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn({
        let out = out.clone();
        move || {
            let mut b = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut b) {
                out.lock().unwrap().extend_from_slice(&b[..n]);
                let _ = file.write_all(&b[..n]);
            }
        }
    });
    std::thread::spawn({
        let err = err.clone();
        move || {
            let mut b = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut b) {
                err.lock().unwrap().extend_from_slice(&b[..n]);
            }
        }
    });
    let text = || plain(&out.lock().unwrap());
    let log = || String::from_utf8_lossy(&err.lock().unwrap()).into_owned();

    let start = Instant::now();
    let limit = Duration::from_secs(
        std::env::var("VMX_MEMTEST_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3600),
    );
    let mut seen = None;
    let mut first_test = None;
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "vmx ended ({status}) before memtest ran a test:\n{}\n--- vmx ---\n{}\n{}",
                text(),
                log(),
                m.diagnostics()
            );
        }
        let t = text();
        if seen.is_none() && t.contains("Memtest86+") {
            seen = Some(start.elapsed());
            eprintln!("memtest's screen after {:?}", start.elapsed());
        }
        if first_test.is_none() && t.contains("[Address test, walking ones") {
            first_test = Some(start.elapsed());
            eprintln!("test #0 running after {:?}", start.elapsed());
        }
        if later_test(&t) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let elapsed = start.elapsed();
    // Killing the tool ends the VM (its clone fid is ORCLOSE).
    let _ = child.kill();
    let _ = child.wait();
    let t = text();
    eprintln!("after {elapsed:?}:\n{t}\n--- vmx ---\n{}", log());
    assert!(
        t.contains("[Address test, walking ones") && later_test(&t),
        "memtest did not get past test #0 in {limit:?}:\n{t}\n--- vmx ---\n{}\n{}",
        log(),
        m.diagnostics()
    );
    // The header and the pass's status lines came first, on the same screen.
    for want in [
        "Memtest86+ v",
        "Memory  :",
        "Pass:  0",
        "Errors: 0",
        "CLK/Temp: ",
    ] {
        assert!(t.contains(want), "no {want:?} in:\n{t}");
    }
    // The clock it measured: N/A when its TSC calibration against PIT channel 2 failed.
    assert!(
        !t.contains("CLK/Temp: N/A"),
        "memtest measured no CPU clock:\n{t}"
    );
}
