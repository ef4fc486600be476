//! The whole chain under Bochs: the hypervisor boots from its ISO, serves 9P on COM1, and
//! the tool runs the bundled demo guest on it: segment, VM, image upload, exits, the
//! emulated UART, PIC and PIT, an MSR and debug registers, and the done port, once with
//! every device in the tool and once with them in the hypervisor (its `devices` message). The guest's output is
//! asserted line by line, and the 9P round trips by exit reason are printed.

use std::sync::mpsc::channel;

use std::time::Duration;
use vmm_tests::emu::{Machine, Opts};
use vmm_tests::fixtures::{run_options, Capture as Buf};
use vmx::layout::Layout;
use vmx::loader::{self, BootArgs};
use vmx::run::Outcome;
use vmx::session;

#[test]
fn demo_guest_runs_over_9p_under_bochs() {
    let m = Machine::vtx(Opts {
        virtio_ports: 0,
        ..Opts::default()
    });
    for kernel in [false, true] {
        demo_through_the_library(&m, kernel);
    }

    // The same through the command line, on a new connection to the same hypervisor.
    let vmx = |args: &[&str]| {
        let out = std::process::Command::new(vmm_tests::fixtures::tool::vmx())
            .arg("-a")
            .arg(Machine::dial_string(&m.uart_path()))
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run vmx");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        eprintln!("--- vmx {} ---\n{stdout}{stderr}", args.join(" "));
        assert!(
            out.status.success(),
            "vmx failed: {stdout}\n{stderr}\n{}",
            m.diagnostics()
        );
        (stdout, stderr)
    };
    let (stdout, stderr) = vmx(&["--demo", "--stats", "hello", "again"]);
    assert!(stdout.starts_with(vmx::demo::GREETING), "{stdout}");
    assert!(stdout.contains("command line: \"hello again\""), "{stdout}");
    assert!(stdout.contains("Goodbye"), "{stdout}");
    assert!(stderr.contains("vmx: guest done, status 0"), "{stderr}");
    assert!(stderr.contains("round trips"), "{stderr}");

    // Without pipelining nor in-kernel devices, for the comparison (figures printed, not
    // asserted).
    let (_, stderr) = vmx(&[
        "--demo",
        "--stats",
        "--no-pipeline",
        "--no-kernel-devices",
        "unpipelined",
    ]);
    let io = stderr
        .lines()
        .find(|l| l.starts_with("io "))
        .expect("an io row");
    let f: Vec<&str> = io.split_whitespace().collect();
    assert_eq!(f[4], f[2], "every round trip is waited for: {io}");
}

/// One run of the demo guest through the library, the PC devices in the tool or (when
/// `kernel`) in the hypervisor: the same output either way.
fn demo_through_the_library(m: &Machine, kernel: bool) {
    let client = m.client("eve", "");
    // Wait reads block for as long as the guest runs; the watchdog below bounds the test.
    client.set_timeout(None);
    let layout = Layout::new(64 << 20).unwrap();
    let img = loader::load(
        vmx::demo::IMAGE,
        &layout,
        &BootArgs {
            cmdline: "hello 9P".into(),
            modules: vec![],
        },
    )
    .unwrap();
    let (out, log) = (Buf::default(), Buf::default());
    let (tx, rx) = channel();
    std::thread::spawn({
        let (out, log) = (out.clone(), log.clone());
        move || {
            let opts = run_options("demo", out, log, kernel, Default::default());
            let _ = tx.send(session::run(client, &layout, &img, opts));
        }
    });
    let report = match rx.recv_timeout(Duration::from_secs(600)) {
        Ok(r) => r.unwrap_or_else(|e| panic!("{e}\n{}\n{}", log.text(), m.diagnostics())),
        Err(_) => panic!(
            "the demo did not finish in 10 minutes\noutput:\n{}\nlog:\n{}\n{}",
            out.text(),
            log.text(),
            m.diagnostics()
        ),
    };
    let text = out.text();
    eprintln!(
        "--- guest output (devices in the {}) ---\n{text}--- tool ---\n{}--- 9P round trips ---\n{}in the hypervisor (port accesses, halts, interrupts, cpuid/MSR/DR accesses): {:?}",
        if kernel { "hypervisor" } else { "tool" },
        log.text(),
        report.stats.report(),
        report.inkernel
    );
    assert_eq!(
        report.outcome,
        Ok(Outcome::Done(0)),
        "output:\n{text}\nlog:\n{}\n{}",
        log.text(),
        m.diagnostics()
    );
    assert_eq!(report.kernel_devices, kernel);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], vmx::demo::GREETING);
    assert_eq!(lines[1], "memory: 64 MiB (multiboot mem_upper)");
    assert_eq!(lines[2], "command line: \"hello 9P\"");
    assert_eq!(lines[3], "cpu: GenuineIntel");
    // SYSENTER_ESP (kept for the guest), DR0 and DR7 read back as written.
    assert_eq!(
        lines[4],
        "msr: 12345678 9abcdef0, dr0: 00c0ffee, dr7: 00000700"
    );
    assert!(
        lines[5].starts_with("rtc: ") && lines[5].ends_with(" UTC"),
        "{}",
        lines[5]
    );
    assert_eq!(lines[6], "3 timer interrupts from the PIT through the PIC");
    assert_eq!(lines[7], "Goodbye: halting via port 0xf4.");
    let s = &report.stats.by_reason;
    if kernel {
        // The PIC, PIT, UART and RTC answered inside: no io exit but the done port's,
        // no *ack lines; the three timer interrupts were the kernel's.
        assert_eq!(s.get("io").map(|x| x.0), Some(1), "{s:?}");
        assert_eq!(s.get("*ack"), None, "{s:?}");
        let c = report.inkernel.expect("the hypervisor's counts");
        // cpuid, wrmsr, rdmsr, four mov dr.
        assert!(c[0] > 200 && c[2] >= 3 && c[3] >= 7, "{c:?}");
        // The CPU the guest saw is the real one's (Bochs's): the vendor line says so.
        // The MSR and the debug registers were the hypervisor's too.
        for r in [".cpuid", ".rdmsr", ".wrmsr", ".movdr"] {
            assert_eq!(s.get(r), None, "{r}: {s:?}");
        }
    } else {
        // Three timer interrupts were posted and acknowledged.
        assert_eq!(s.get("*ack").map(|x| x.0), Some(3));
        // The tool answered the MSR and the debug registers.
        for (r, n) in [(".rdmsr", 1), (".wrmsr", 1), (".movdr", 4)] {
            assert_eq!(s.get(r).map(|x| x.0), Some(n), "{r}: {s:?}");
        }
        assert!(s.get("io").is_some_and(|x| x.0 > 200), "{s:?}");
        assert_eq!(report.inkernel, None);
    }
    // Pipelined: every io exit cost at least two round trips (wait read and go; the
    // last, the done port, has no go; an EOI may add an `irq`) but the tool waited for
    // one, the wait read that carried the go's answer with it.
    let (n, trips, bound) = s["io"];
    assert!(trips >= 2 * n - 1, "{}", report.stats.report());
    assert_eq!(bound, n, "{}", report.stats.report());
}
