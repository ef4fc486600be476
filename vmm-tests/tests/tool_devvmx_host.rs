//! The tool's whole 9P path against the real #X device logic on the host: devvmx's
//! Namespace over its TestHw double (scripted VM exits), served by the ninep engine on a
//! unix socket pair. Checks that segment creation, clone, map, the image upload, go
//! with registers, wait lines and the exit handlers fit devvmx exactly.

mod devvmx_host;

use devvmx::testhw::{Exit, TestHw};
use devvmx::vmcs::GUEST_RIP;
use devvmx_host::*;
use ninep_client::{dm, om};
use vmm_tests::fixtures::{run_options, Capture as W};
use vmx::layout::Layout;
use vmx::loader;
use vmx::run::Outcome;
use vmx::session;

#[test]
fn a_scripted_guest_through_devvmx() {
    let (ns, report, out, log) = run_script(false);
    assert_eq!(report.outcome, Ok(Outcome::Halted { pc: 0x1006 }), "{log}");
    assert!(!report.kernel_devices);
    assert_eq!(&out[..], b"OK");
    assert!(log.contains("loading 5.9 KiB of 5.9 KiB (100%)"), "{log}");

    // Each go's pc reached the guest: 0x1000 (first), +1, +1, +2 (cpuid), +1 (in).
    let ns = ns.lock().unwrap();
    let rips: Vec<u64> = ns.hw().entries.iter().map(|e| e.rip).collect();
    assert_eq!(rips, [0x1000, 0x1001, 0x1002, 0x1004, 0x1005]);
    assert_eq!(ns.hw().field(ns.hw().entries[0].vmcs, GUEST_RIP), 0x1005);
    // The VM is gone (ctl opened ORCLOSE) and so is the segment.
    assert_eq!(ns.vm_count(), 0);
    drop(ns);
    // Round trips: out exits 2 each (wait + go), cpuid 3 (regs read), hlt 2 (wait + regs
    // for flags). The go is pipelined: it travels with the wait read, so an out costs
    // one round trip of latency and a cpuid two.
    let s = &report.stats.by_reason;
    assert_eq!(s["io"], (3, 6, 3), "{:?}", s);
    assert_eq!(s[".cpuid"], (1, 3, 2), "{:?}", s);
    assert_eq!(s[".hlt"], (1, 2, 2), "{:?}", s);
}

#[test]
fn the_same_guest_with_the_devices_in_the_kernel() {
    let (ns, report, out, log) = run_script(true);
    assert_eq!(report.outcome, Ok(Outcome::Halted { pc: 0x1006 }), "{log}");
    assert!(report.kernel_devices, "{log}");
    assert!(log.contains("PC devices in the hypervisor"), "{log}");
    // COM1's bytes came through cons, all of them before the run ended.
    assert_eq!(&out[..], b"OK");
    // The kernel answered the port accesses: two entries for the client's exits only.
    let ns = ns.lock().unwrap();
    let rips: Vec<u64> = ns.hw().entries.iter().map(|e| e.rip).collect();
    assert_eq!(rips, [0x1000, 0x1001, 0x1002, 0x1004, 0x1005]);
    assert_eq!(ns.vm_count(), 0);
    drop(ns);
    let s = &report.stats.by_reason;
    assert_eq!(s.get("io"), None, "{:?}", s);
    assert_eq!(s.get(".cpuid"), None, "{:?}", s);
    assert_eq!(s[".hlt"], (1, 2, 2), "{:?}", s);
    assert_eq!(report.inkernel, Some([3, 0, 0, 1]));
    // The stop at the cpuid cost the console nothing: "OK" came in the drain at the end,
    // one read and the empty one after it.
    assert_eq!(s["(cons)"], (1, 1, 1), "{:?}", s);
    assert_eq!(s["(cons/empty)"], (1, 1, 1), "{:?}", s);
}

#[test]
fn the_tools_disk_sits_on_the_kernels_pci_bus_and_its_bar_stays_the_tools() {
    let disk = vmx::virtio::blk::Blk::new(Box::new(vec![0u8; 4096]), false, "d");
    let exits = vec![
        io32(0xcf8, false, 0x8000_0800), // 00:01.0
        io32(0xcfc, true, 0),
        io32(0xcf8, false, 0x8000_0810), // its BAR
        io32(0xcfc, true, 0),
        io32(0xcf8, false, 0x8000_0804),     // its command register
        out16(0xcfc, 1), // I/O decoding on, as a driver turns it on before it touches the BAR
        io32(vmx::virtio::IO_BASE, true, 0), // host features: the tool's device
        hlt(),
    ];
    let devices = session::Devices {
        disks: vec![disk],
        ..Default::default()
    };
    let (ns, report, _, log) = run_with(true, exits, devices);
    assert_eq!(report.outcome, Ok(Outcome::Halted { pc: 0x1008 }), "{log}");
    assert!(
        log.contains("PC devices in the hypervisor, PCI configuration space too"),
        "{log}"
    );
    let ns = ns.lock().unwrap();
    let ax: Vec<u64> = ns.hw().entries.iter().map(|e| e.ax & 0xffff_ffff).collect();
    // The configuration reads were the kernel's (no entry of the client's between), the
    // BAR's the tool's: virtio-blk's FLUSH and SEG_MAX features.
    assert_eq!(ax[2], 0x1001_1af4, "{ax:x?}");
    assert_eq!(ax[4], u64::from(vmx::virtio::IO_BASE) | 1, "{ax:x?}");
    let features =
        vmx::virtio::blk::F_FLUSH | vmx::virtio::blk::F_SEG_MAX | vmx::virtio::blk::F_TOPOLOGY;
    assert_eq!(ax[7], u64::from(features), "{ax:x?}");
    drop(ns);
    let s = &report.stats.by_reason;
    // One exit came to the tool for the six configuration accesses and the BAR's read.
    assert_eq!(s.get("io"), None, "{s:?}");
    assert_eq!(s["io/virtio"].0, 1, "{s:?}");
}

/// Linux's probe of COM2, read for read (pcdev's script), then a hlt: its exits, and
/// which `in`s they were.
fn com2_probe() -> (Vec<Exit>, Vec<usize>, &'static [u32]) {
    use pcdev::script::{Op, SCRIPTS};
    let s = SCRIPTS
        .iter()
        .find(|s| s.name.starts_with("com2:"))
        .unwrap();
    let (mut exits, mut ins) = (Vec::new(), Vec::new());
    for op in s.ops {
        match *op {
            Op::Out(p, 1, v) => exits.push(io(p, false, v.into())),
            Op::In(p, 1) => {
                ins.push(exits.len());
                exits.push(io(p, true, 0xabcd));
            }
            _ => unreachable!("{op:?}"),
        }
    }
    exits.push(hlt());
    (exits, ins, s.reads)
}

#[test]
fn com2_unwired_here_is_the_kernels_and_wired_with_c_the_tools() {
    let (exits, ins, reads) = com2_probe();
    let n = exits.len() as u64 - 1;
    let (ns, report, _, log) = run_with(true, exits.clone(), Default::default());
    assert_eq!(
        report.outcome,
        Ok(Outcome::Halted { pc: 0x1001 + n }),
        "{log}"
    );
    assert!(log.contains(", COM2 (unconnected) too"), "{log}");
    // Not one exit of the probe reached the tool: the kernel read what the script says.
    let s = &report.stats.by_reason;
    assert_eq!(s.get("io"), None, "{s:?}");
    assert_eq!(report.inkernel.map(|c| c[0]), Some(n));
    let ns = ns.lock().unwrap();
    let e = &ns.hw().entries;
    let got: Vec<u32> = ins.iter().map(|&i| (e[i + 1].ax & 0xff) as u32).collect();
    assert_eq!(got, reads);
    drop(ns);

    // With -C COM2 is the tool's: every access an exit, the same reads.
    let wired = session::Devices {
        com2: Some((None, Box::new(std::io::sink()))),
        ..Default::default()
    };
    let (ns, report, _, log) = run_with(true, exits, wired);
    assert!(!log.contains("COM2"), "{log}");
    assert_eq!(report.stats.by_reason["io"].0, n, "{log}");
    let ns = ns.lock().unwrap();
    let e = &ns.hw().entries;
    let got: Vec<u32> = ins.iter().map(|&i| (e[i + 1].ax & 0xff) as u32).collect();
    assert_eq!(got, reads);
}

/// Sets up a VM as the tool does, then loses the connection (a killed tool): returns the
/// namespace after the server let go of the session.
fn lose_a_tool_mid_run() -> Ns {
    let (ns, server, client, link) = connect(TestHw::new(4096));
    let layout = Layout::new(4 << 20).unwrap();
    let vm = vmx::vmfs::NinepVm::create(
        client,
        "lost",
        layout.segment_size(),
        &layout.map_text("lost"),
    )
    .unwrap();
    assert_eq!(ns.lock().unwrap().vm_count(), 1);
    assert!(ns.lock().unwrap().segment_refs("lost") > 0);
    // The process dies: no clunks, the link just goes.
    link.shutdown(std::net::Shutdown::Both).unwrap();
    server.join().unwrap();
    std::mem::forget(vm);
    ns
}

#[test]
fn a_killed_tool_ends_its_vm() {
    let ns = lose_a_tool_mid_run();
    assert_eq!(ns.lock().unwrap().vm_count(), 0);
}

/// The tool keeps its segment's ctl open ORCLOSE for the run; a server that removes a
/// segment when such a fid is clunked (devvmx's extension of segment(3)) then returns all of a killed tool's memory.
#[test]
fn a_killed_tool_leaves_no_segment() {
    let ns = lose_a_tool_mid_run();
    let ns = ns.lock().unwrap();
    assert_eq!(ns.vm_count(), 0);
    assert_eq!(ns.segment_refs("lost"), 0, "the segment outlived the tool");
}

/// `-n switch`: the tool asks for the card with `pci net` after its own devices; the
/// kernel places it after the tool's disk (00:02.0, BAR 0xc040, line 11), joins it to
/// its switch, and answers the guest's accesses to it (none comes to the tool); its port
/// leaves the switch with the VM at the end of the run.
#[test]
fn a_switch_card_is_the_kernels_after_the_tools_devices() {
    let disk = vmx::virtio::blk::Blk::new(Box::new(vec![0u8; 4096]), false, "d");
    let exits = vec![
        io32(0xcf8, false, 0x8000_1000), // 00:02.0
        io32(0xcfc, true, 0),
        io32(0xcf8, false, 0x8000_1010), // its BAR
        io32(0xcfc, true, 0),
        io32(0xcf8, false, 0x8000_103c), // its line
        io32(0xcfc, true, 0),
        io32(0xcf8, false, 0x8000_1004),
        out16(0xcfc, 1),                // I/O decoding on
        io(0xc040 + 0x14 + 5, true, 0), // the MAC's last byte
        hlt(),
    ];
    let devices = session::Devices {
        disks: vec![disk],
        switch_nets: vec![[2, 0, 0, 0, 0, 0x0c]],
        ..Default::default()
    };
    let (ns, report, _, log) = run_with(true, exits, devices);
    assert_eq!(report.outcome, Ok(Outcome::Halted { pc: 0x100a }), "{log}");
    let ns = ns.lock().unwrap();
    let ax: Vec<u64> = ns.hw().entries.iter().map(|e| e.ax & 0xffff_ffff).collect();
    assert_eq!(ax[2], 0x1000_1af4, "virtio-net at 00:02.0: {ax:x?}");
    assert_eq!(ax[4], 0xc041, "{ax:x?}");
    assert_eq!(ax[6] & 0xff, 11, "{ax:x?}");
    assert_eq!(ax[9] & 0xff, 0x0c, "{ax:x?}");
    let st = ns.switch().unwrap().switch.lock().status().to_string();
    assert!(
        !st.contains(" guest "),
        "the card's port left with the VM: {st}"
    );
    drop(ns);
    assert_eq!(report.stats.by_reason.get("io/virtio"), None);
}

/// An image file of `len` bytes of `fill`, named for this test.
fn image(name: &str, len: usize, fill: u8) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("vmx-kdisk-{name}-{}", std::process::id()));
    std::fs::write(&p, vec![fill; len]).unwrap();
    p
}

/// `-d seg:FILE` and `-d FILE` on a hypervisor that serves disks: the first image goes
/// into a segment of its own and becomes the kernel's disk 0 (`pci blk seg`), the second
/// a queue disk (`pci blk queue`) whose `blkq` the tool serves. The scripted guest
/// drives disk 0 as a virtio driver would (I/O decoding on, status, the queue's page,
/// notify) with one write request of a sector: the kernel serves it from the segment,
/// and at the end the tool writes the changed page (`blkdirty`) back into the file,
/// which then holds the guest's sector and nothing else new; the disks' segment is gone.
#[test]
fn kernel_disks_a_segment_written_back_and_a_queue_served() {
    use vmx::virtio::legacy::{R_QUEUE_NOTIFY, R_QUEUE_PFN, R_QUEUE_SEL, R_STATUS};
    let seg = image("seg", 8192, 0x11);
    let q = image("queue", 4096, 0x22);
    // Guest memory from 0x1000: code, then at 0x20000 the queue (descriptors, available
    // ring at +0x800, used ring at +0x1000), at 0x22000 the request: header, data, status.
    let mut mem = vec![0x90u8; 0x23000];
    let at = |a: usize| a - 0x1000;
    let desc = |m: &mut Vec<u8>, i: usize, addr: u64, len: u32, flags: u16, next: u16| {
        let o = at(0x20000) + 16 * i;
        m[o..o + 8].copy_from_slice(&addr.to_le_bytes());
        m[o + 8..o + 12].copy_from_slice(&len.to_le_bytes());
        m[o + 12..o + 14].copy_from_slice(&flags.to_le_bytes());
        m[o + 14..o + 16].copy_from_slice(&next.to_le_bytes());
    };
    mem[at(0x20000)..at(0x22000)].fill(0);
    desc(&mut mem, 0, 0x22000, 16, 1, 1); // header: NEXT
    desc(&mut mem, 1, 0x22100, 512, 1, 2); // data the device reads: NEXT
    desc(&mut mem, 2, 0x22400, 1, 2, 0); // status: WRITE
    mem[at(0x20800) + 2] = 1; // avail idx 1, ring[0] = 0
    mem[at(0x22000)..at(0x22000) + 16].fill(0);
    mem[at(0x22000)] = 1; // VIRTIO_BLK_T_OUT
    mem[at(0x22000) + 8] = 1; // sector 1
    mem[at(0x22100)..at(0x22300)].fill(0xa5);
    mem[at(0x22400)] = 0xff;
    let bar = 0xc000u16; // disk 0's home (DEVIATIONS.md)
    let exits = vec![
        io32(0xcf8, false, 0x8000_0804), // 00:01.0's command register
        out16(0xcfc, 1),                 // I/O decoding on
        io(bar + R_STATUS, false, 3),
        out16(bar + R_QUEUE_SEL, 0),
        io32(bar + R_QUEUE_PFN, false, 0x20),
        io(bar + R_STATUS, false, 7),
        out16(bar + R_QUEUE_NOTIFY, 0),
        hlt(),
    ];
    let mut hw = TestHw::new(4096);
    hw.exits.extend(exits);
    let (ns, server, client, _) = connect(hw);
    let layout = Layout::new(4 << 20).unwrap();
    let img = loader::load_raw(&mem, 0x1000, &layout).unwrap();
    let (out, log) = (W::default(), W::default());
    let devices = session::Devices {
        kdisks: vec![
            vmx::kdisk::Spec::parse(&format!("seg:{}", seg.display())),
            vmx::kdisk::Spec::parse(&q.display().to_string()),
        ],
        ..Default::default()
    };
    let opts = run_options("vm.kd", out.clone(), log.clone(), true, devices);
    let report = session::run(client, &layout, &img, opts).unwrap();
    server.join().unwrap();
    let log = log.text();
    assert!(
        matches!(report.outcome, Ok(Outcome::Halted { .. })),
        "{:?} {log}",
        report.outcome
    );
    assert!(
        log.contains("in segment vm.kd.d0 (in-kernel virtio-blk), 8.0 KiB sent"),
        "{log}"
    );
    assert!(log.contains("served here through the VM's blkq"), "{log}");
    let c = report.kdisks.expect("the kernel's disks");
    // Two pages uploaded; one written back.
    assert_eq!(c.load.bytes, 8192, "{c:?}");
    assert_eq!(c.save.bytes, 4096, "{c:?}");
    let got = std::fs::read(&seg).unwrap();
    assert_eq!(got.len(), 8192);
    assert!(got[..512].iter().all(|&b| b == 0x11));
    assert!(got[512..1024].iter().all(|&b| b == 0xa5));
    assert!(got[1024..].iter().all(|&b| b == 0x11));
    let ns = ns.lock().unwrap();
    assert_eq!(ns.vm_count(), 0);
    assert_eq!(ns.segment_refs("vm.kd.d0"), 0);
    drop(ns);
    assert!(std::fs::read(&q).unwrap().iter().all(|&b| b == 0x22));
    let _ = std::fs::remove_file(&seg);
    let _ = std::fs::remove_file(&q);
}

/// Without the hypervisor's devices (as against 9front's #X) `-d` disks are the tool's
/// own virtio-blk, said so once.
#[test]
fn kernel_disks_fall_back_to_the_tools_own() {
    let p = image("fallback", 4096, 0);
    let devices = session::Devices {
        kdisks: vec![vmx::kdisk::Spec::parse(&format!("seg:{}", p.display()))],
        ..Default::default()
    };
    let (_, report, out, log) = run_with(false, script(), devices);
    assert_eq!(report.outcome, Ok(Outcome::Halted { pc: 0x1006 }), "{log}");
    assert_eq!(&out[..], b"OK");
    assert!(log.contains("-d disks are the tool's virtio-blk"), "{log}");
    assert!(report.kdisks.is_none());
    let _ = std::fs::remove_file(&p);
}

/// The tool's bulk transfers (`vmx::pipe`) on the engine at the bulk msize: 5 MiB
/// written in 1 MiB messages with 4 in flight (two windows, so two round trips of
/// latency), then read back as ranges the same way.
#[test]
fn bulk_transfers_send_full_messages_a_window_at_a_time() {
    use vmx::pipe::{read_ranges, Trips, Writer, WINDOW};
    let (_ns, server, client, _) = connect_msize(TestHw::new(4096), ninep_client::BULK_MSIZE);
    assert_eq!(client.max_io(), ninep_client::BULK_IO);
    drop(
        client
            .create("segment", "bulk", dm::DIR | 0o777, om::READ)
            .unwrap(),
    );
    let ctl = client
        .open("segment/bulk/ctl", om::WRITE | om::TRUNC | om::RCLOSE)
        .unwrap();
    ctl.write_str("va 0x10000000 0x600000 sticky").unwrap();
    let data = client.open("segment/bulk/data", om::RDWR).unwrap();
    let bytes: Vec<u8> = (0..5 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut w = Writer::new(&client, &data);
    w.write(0x1000, &bytes).unwrap();
    assert_eq!(
        w.finish().unwrap(),
        Trips {
            sent: 5,
            latency_bound: 2
        }
    );
    assert_eq!(WINDOW, 4);
    let ranges = [(0x1000u64, 3u64 << 20), (0x400000, 0x1000), (0x1000, 10)];
    let mut got = Vec::new();
    let trips = read_ranges(&client, &data, &ranges, &mut |at, b| {
        got.push((at, b.to_vec()));
        Ok(())
    })
    .unwrap();
    assert_eq!(trips.sent, 5);
    let at = |off: u64| &bytes[(off - 0x1000) as usize..];
    let mut want = Vec::new();
    for (off, len) in ranges {
        for i in 0..len.div_ceil(1 << 20) {
            let o = off + (i << 20);
            let n = (len - (i << 20)).min(1 << 20) as usize;
            want.push((o, at(o)[..n].to_vec()));
        }
    }
    assert!(
        got == want,
        "{:?}",
        got.iter().map(|g| (g.0, g.1.len())).collect::<Vec<_>>()
    );
    // Past the segment's end: the read says where.
    let e = read_ranges(&client, &data, &[(0x5ff000, 0x2000)], &mut |_, _| Ok(())).unwrap_err();
    assert!(e.contains("end of file"), "{e}");
    drop(data);
    ctl.clunk().unwrap();
    drop(client);
    server.join().unwrap();
}
