//! vmx: runs a guest on the hypervisor's #X device over 9P, as 9front's vmx(1) runs one
//! on a local #X.

use clap::Parser;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use vmx::layout::{parse_size, parse_u64, Layout};
use vmx::loader::{self, BootArgs, Module};
use vmx::run::Outcome;
use vmx::session::{self, Options};

/// Run a guest on the 9P hypervisor, emulating its PC devices here.
///
/// vmx connects to the hypervisor's 9P service, creates a memory segment and a VM (the
/// #X device: vmx/clone, regs, map, wait), loads the kernel, and runs the exit loop:
/// every I/O port access, cpuid, hlt and MSR access of the guest comes back here as a
/// wait line and is answered with a `go`. COM1 is wired to this terminal.
///
/// Kernels: multiboot (ELF, or any format with the a.out-kludge header fields), Linux
/// bzImage (boot protocol 2.06 or newer; the first -m module is the initrd), or a raw
/// binary with --raw.
#[derive(Parser, Debug)]
#[command(
    name = "vmx",
    version,
    after_help = "Examples:\n  vmx -a tcp!localhost!5640 --demo\n  vmx -a unix!/tmp/hv.sock -M 256M -m initrd.cpio.gz vmlinuz console=ttyS0\n  vmx -a tcp!localhost!5640 --raw 0x1000 guest.bin\n  vmx -a tcp!localhost!5640 -M 256M --busybox /bin/busybox vmlinuz console=ttyS0\n  vmx -a unix!/tmp/hv.sock -M 128M -d root.img -m initrd vmlinuz console=ttyS0 root=/dev/vda\n  vmx -a unix!/tmp/hv.sock -n listen!unix!/tmp/lan.sock ...   (a second vmx: -n unix!/tmp/lan.sock)\n  vmx -a unix!/tmp/hv.sock -n tap!tap0 ...   (the host's side: ip addr add 10.9.0.1/24 dev tap0)\n  vmx -a unix!/tmp/hv.sock --bios -M 128M -d disk.img   (SeaBIOS boots the disk)\n  vmx -a unix!/tmp/hv.sock --bios -M 128M -m initrd vmlinuz console=ttyS0   (SeaBIOS boots the kernel, as QEMU's -kernel)\n\nThe guest ends the run by writing its exit status to port 0xf4."
)]
struct Args {
    /// Hypervisor 9P address as a Plan 9 dial string: tcp!HOST!PORT or unix!/PATH
    /// (default: $VMX_ADDR).
    #[arg(short = 'a', long = "addr", env = "VMX_ADDR", value_name = "DIAL")]
    addr: Option<String>,

    /// Attach name: the root's, `""`; over TCP the owner appends the hypervisor's secret,
    /// `!SECRET` (default: $VMX_ANAME).
    #[arg(short = 'A', long = "aname", env = "VMX_ANAME", default_value = "")]
    aname: String,

    /// User name to attach as (the hypervisor's owner may open vmx/clone).
    #[arg(short = 'u', long, default_value = "eve")]
    user: String,

    /// Guest memory, with an optional K, M or G suffix.
    #[arg(short = 'M', long = "mem", default_value = "64M", value_name = "SIZE")]
    mem: String,

    /// A boot module: multiboot modules in order, or the Linux initrd. Repeatable.
    #[arg(short = 'm', long = "module", value_name = "FILE")]
    modules: Vec<PathBuf>,

    /// COM1: `stdio` (the default) for this terminal, or IN[,OUT] files as vmx(1)'s -c
    /// (an empty IN means no input).
    #[arg(
        short = 'c',
        long = "com1",
        default_value = "stdio",
        value_name = "IN[,OUT]"
    )]
    com1: String,

    /// COM2 (0x2f8, IRQ 3): IN[,OUT] files as vmx(1)'s -C (an empty IN means no input;
    /// no -C: COM2 is there, unconnected, the hypervisor's where it has in-kernel `com2`).
    #[arg(short = 'C', long = "com2", value_name = "IN[,OUT]")]
    com2: Option<String>,

    /// A virtio-blk disk backed by this image file (`ro:FILE`: read-only). Repeatable:
    /// the disks are /dev/vda, /dev/vdb, ... in a Linux guest. Where the hypervisor
    /// serves disks (`pci blk`), it runs the device and the tool serves the file's
    /// blocks through the VM's queue file; `seg:FILE` puts the whole image in the
    /// hypervisor's memory instead (uploaded first, the changed pages written back at
    /// the end). Elsewhere the tool runs the device itself (seg: then changes nothing).
    #[arg(short = 'd', long = "disk", value_name = "[ro:][seg:]FILE")]
    disks: Vec<String>,

    /// A virtio-net card on a stream socket carrying Ethernet frames in QEMU's
    /// `-netdev stream` framing (4-byte big-endian length, then the frame):
    /// `unix!/PATH` or `tcp!HOST!PORT` connects to a peer (QEMU with
    /// `-netdev stream,server=on,...`, or another vmx), `listen!unix!/PATH` or
    /// `listen!tcp!HOST!PORT` waits for one before the guest starts. Or `tap!NAME`: the
    /// Linux TAP device NAME, the guest's frames on the host's side of it (made with
    /// `ip tuntap add NAME mode tap user YOU`, then `ip addr add`/`ip link set NAME up`;
    /// as root, a NAME that does not exist is made and goes away with the tool). Prefix
    /// `mac=XX:XX:XX:XX:XX:XX,` to choose the address (default 52:54:00 and bytes of the
    /// process ID). Repeatable; the cards follow the disks on the PCI bus. Where the
    /// hypervisor serves virtio-net on its Ethernet switch (`pci net`, `switch/clone`),
    /// the card is its own and the tool pumps frames between a port of that switch and
    /// the link: only frames for the link (broadcast, unknown or learned behind it)
    /// cross the connection; the guest also reaches the hypervisor's other VMs (and its
    /// LAN when it bridges one). Elsewhere the tool runs the card. LINK `switch`: a card
    /// the hypervisor serves itself on its switch with no link here (its in-kernel PCI
    /// bus needed), placed after the tool's devices; its frames never reach the tool.
    #[arg(short = 'n', long = "net", value_name = "[mac=MAC,]LINK")]
    nets: Vec<String>,

    /// Load KERNEL as a flat binary at this guest-physical address and start there (flat
    /// 32-bit protected mode).
    #[arg(long, value_name = "ADDR")]
    raw: Option<String>,

    /// Make the Linux initrd here: a busybox initramfs (this static busybox binary, e.g.
    /// from Debian's busybox-static) whose /init starts a shell on the console.
    #[arg(long, value_name = "BUSYBOX")]
    busybox: Option<PathBuf>,

    /// Boot firmware instead of a kernel: FILE (default /usr/share/seabios/bios.bin,
    /// Debian's `seabios`) is a BIOS ROM, mapped read-only below 4 GiB and its last
    /// 128 KiB at 0xe0000; the guest starts at the reset vector in real mode and the
    /// firmware boots from the -d disks. QEMU's fw_cfg device tells it the memory size
    /// and its serial console (COM1). With a KERNEL (after another flag, or --bios=FILE)
    /// the firmware boots that instead, as QEMU's -kernel: fw_cfg offers the kernel, the
    /// -m initrd and the ARGS, and QEMU's option ROM linuxboot_dma.bin loads them.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = vmx::firmware::DEFAULT_BIOS)]
    bios: Option<PathBuf>,

    /// Run the bundled demo guest instead of KERNEL.
    #[arg(long)]
    demo: bool,

    /// Print the path of the bundled demo guest image and exit.
    #[arg(long)]
    demo_path: bool,

    /// Print 9P round trips by exit reason when the guest stops: all of them, and those
    /// the tool had to wait for (latency-bound), with the wall time.
    #[arg(long)]
    stats: bool,

    /// Wait for the reply to every `go`, `irq` and `exc` before reading the next exit,
    /// instead of sending it together with the `wait` read (for comparison with --stats).
    #[arg(long)]
    no_pipeline: bool,

    /// Report every unknown port, MSR and cpuid leaf, not only the first of each.
    #[arg(short = 'D', long)]
    debug: bool,

    /// Emulate every PC device here, even when the hypervisor offers to run the PIC, PIT,
    /// COM1, RTC, keyboard controller and quiet ports itself (by default it does, and
    /// COM1 then comes through the VM's cons file).
    #[arg(long)]
    no_kernel_devices: bool,

    /// Serve the -d disks with the tool's own virtio-blk even when the hypervisor offers
    /// to run them (its `pci blk`; by default it does, the tool serving the file's blocks
    /// through the VM's queue file, or the image in a segment with `seg:`).
    #[arg(long)]
    no_kernel_disks: bool,

    /// Run the -n cards on links (unix, tcp, tap) with the tool's own virtio-net even when
    /// the hypervisor offers to run them on its switch (`pci net` and a `switch/clone`
    /// port per link; by default it does). `-n switch` cards are the hypervisor's either
    /// way.
    #[arg(long)]
    no_kernel_nets: bool,

    /// Log every wait line read and ctl command written to this file.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,

    /// Name of the memory segment to create (default vm.PID).
    #[arg(long, value_name = "NAME")]
    segment: Option<String>,

    /// The kernel image.
    #[arg(value_name = "KERNEL")]
    kernel: Option<PathBuf>,

    /// Kernel command line arguments (joined with spaces).
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    args: Vec<String>,
}

fn main() -> ExitCode {
    let a = Args::parse();
    if a.demo_path {
        println!("{}", vmx::demo::PATH);
        return ExitCode::SUCCESS;
    }
    match run(a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vmx: {e}");
            ExitCode::from(1)
        }
    }
}

fn read(p: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn run(a: Args) -> Result<ExitCode, String> {
    let mem = parse_size(&a.mem)?;
    let mut layout = Layout::new(mem)?;
    if let Some(rom) = &a.bios {
        if a.demo || a.raw.is_some() || a.busybox.is_some() || a.modules.len() > 1 {
            return Err(
                "--bios boots the firmware, which boots the disks or a KERNEL with at most one -m (its initrd): no --demo, --raw or --busybox"
                    .into(),
            );
        }
        if a.kernel.is_none() && !a.modules.is_empty() {
            return Err("--bios: -m is a kernel's initrd, and no KERNEL is given".into());
        }
        let data = read(rom)?;
        vmx::firmware::check_rom(&data).map_err(|e| {
            if vmx::loader::linux::is_bzimage(&data) {
                format!(
                    "{}: a Linux kernel, not a BIOS ROM: --bios takes the word after it as its ROM; put the kernel after another flag or write --bios=ROM",
                    rom.display()
                )
            } else {
                format!("{}: {e}", rom.display())
            }
        })?;
        layout = layout.with_rom(data.len() as u64)?;
        let img =
            vmx::firmware::load(&data, &layout).map_err(|e| format!("{}: {e}", rom.display()))?;
        let linux = match &a.kernel {
            Some(k) => {
                let initrd = match a.modules.first() {
                    Some(p) => read(p)?,
                    None => Vec::new(),
                };
                let option_rom = vmx::firmware::linuxboot::read_rom(std::path::Path::new(
                    vmx::firmware::linuxboot::DEFAULT_ROM,
                ))?;
                let split =
                    vmx::firmware::linuxboot::split(&read(k)?, &initrd, &a.args.join(" "), &layout)
                        .map_err(|e| format!("{}: {e}", k.display()))?;
                Some((split, option_rom))
            }
            None => None,
        };
        let fwcfg = vmx::firmware::fw_cfg(
            &layout,
            linux
                .as_ref()
                .map(|(k, rom)| vmx::firmware::KernelBoot { kernel: k, rom }),
        )?;
        eprintln!(
            "vmx: {}: firmware, {}, reset vector in real mode, {} of memory",
            rom.display(),
            vmx::upload::human(data.len() as f64),
            vmx::upload::human(mem as f64)
        );
        return boot(&a, &layout, &img, Some(fwcfg));
    }
    // With --demo every positional word is a kernel argument.
    let (kernel, name, cmdline) = if a.demo {
        let mut args: Vec<String> = a.kernel.iter().map(|p| p.display().to_string()).collect();
        args.extend(a.args.iter().cloned());
        (
            vmx::demo::IMAGE.to_vec(),
            "demo".to_string(),
            args.join(" "),
        )
    } else {
        let k = a
            .kernel
            .as_ref()
            .ok_or("no kernel given (see --help, or try --demo)")?;
        (read(k)?, k.display().to_string(), a.args.join(" "))
    };
    let modules = a
        .modules
        .iter()
        .map(|p| {
            let name = p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            Ok(Module {
                name,
                data: read(p)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut modules = modules;
    if let Some(b) = &a.busybox {
        let script = "echo; echo 'vmx: busybox initramfs'; exec sh";
        modules.push(Module {
            name: "initramfs".into(),
            data: vmx::cpio::busybox_initramfs(&read(b)?, script),
        });
    }
    let args = BootArgs { cmdline, modules };
    let img = match &a.raw {
        Some(addr) => {
            let addr = parse_u64(addr).ok_or_else(|| format!("--raw: bad address {addr:?}"))?;
            loader::load_raw(&kernel, addr, &layout)
        }
        None => loader::load(&kernel, &layout, &args),
    }
    .map_err(|e| format!("{name}: {e}"))?;
    eprintln!(
        "vmx: {name}: {} image, {} to load, entry {:#x}, {} of memory",
        img.format,
        vmx::upload::human(img.bytes() as f64),
        img.entry(),
        vmx::upload::human(mem as f64)
    );
    boot(&a, &layout, &img, None)
}

/// Runs a loaded image (with fw_cfg for firmware) and reports how the guest ended.
fn boot(
    a: &Args,
    layout: &Layout,
    img: &loader::Image,
    fwcfg: Option<pcdev::fwcfg::FwCfg>,
) -> Result<ExitCode, String> {
    let addr = a
        .addr
        .clone()
        .ok_or("no hypervisor address: give -a DIAL or set VMX_ADDR")?;
    let mut devices = devices(a)?;
    devices.fwcfg = fwcfg;
    let client =
        ninep_client::Client::dial_msize(&addr, &a.user, &a.aname, ninep_client::BULK_MSIZE)
            .map_err(|e| format!("dial {addr}: {e}"))?;
    let (input, out) = wire_com(&a.com1, "-c")?;
    let opts = Options {
        segment: a
            .segment
            .clone()
            .unwrap_or_else(|| format!("vm.{}", std::process::id())),
        out,
        input,
        log: Box::new(std::io::stderr()),
        tty: std::io::stderr().is_terminal(),
        debug: a.debug,
        trace: match &a.trace {
            Some(p) => Some(Box::new(std::io::LineWriter::new(
                std::fs::File::create(p).map_err(|e| format!("--trace {}: {e}", p.display()))?,
            ))),
            None => None,
        },
        kernel_devices: !a.no_kernel_devices,
        pipeline: !a.no_pipeline,
        devices,
    };
    let report = session::run(client, layout, img, opts)?;
    let _ = std::io::stdout().flush();
    let code = match report.outcome {
        Ok(Outcome::Done(v)) => {
            eprintln!("vmx: guest done, status {v}");
            ExitCode::from(v)
        }
        Ok(Outcome::Reset) => {
            eprintln!("vmx: guest reset the machine");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Halted { pc }) => {
            eprintln!("vmx: guest halted with interrupts disabled at pc {pc:#x}");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Unhandled(report)) => {
            eprint!("{report}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("vmx: {e}");
            ExitCode::from(1)
        }
    };
    if a.stats {
        eprint!(
            "vmx: 9P round trips by exit reason (wait read + handling + go{}; (cons): console reads with output, (cons/empty): those that found the VM stopped and everything read; (load): set-up and upload):\n{}",
            if a.no_pipeline { "" } else { ", go pipelined" },
            report.stats.report()
        );
        if let Some(c) = report.inkernel {
            eprintln!(
                "vmx: answered in the hypervisor: {} port accesses, {} halts, {} interrupts, {} cpuid, MSR and debug register accesses",
                c[0], c[1], c[2], c[3]
            );
        }
        if let Some(c) = &report.netlinks {
            eprintln!(
                "vmx: -n links through the hypervisor's switch: {} frames to the links, {} from them ({} dropped here), {} reads and writes of the switch ports",
                c.to_links, c.from_links, c.dropped, c.trips
            );
        }
    }
    Ok(code)
}

/// Opens the disks, connects the network cards, wires COM2.
fn devices(a: &Args) -> Result<session::Devices<'static>, String> {
    use vmx::virtio::net;
    let mut d = session::Devices::default();
    for spec in &a.disks {
        // Checked here, before the tool dials: one line for a missing or unusable file.
        let spec = vmx::kdisk::Spec::parse(spec);
        if a.no_kernel_disks {
            d.disks.push(spec.tool_disk()?);
        } else {
            spec.open()?;
            d.kdisks.push(spec);
        }
    }
    let pid = std::process::id();
    for (i, spec) in a.nets.iter().enumerate() {
        let spec = net::Spec::parse(spec)?;
        let mac = spec
            .mac
            .unwrap_or([0x52, 0x54, 0x00, (pid >> 8) as u8, pid as u8, i as u8]);
        if spec.addr == net::Addr::Switch {
            d.switch_nets.push(mac);
            continue;
        }
        if spec.listen {
            eprintln!("vmx: -n: waiting for a peer on {}", spec.addr);
        }
        let (link, source) = spec.open()?;
        let card = vmx::knet::Card {
            mac,
            link,
            source,
            name: spec.addr.to_string(),
        };
        if a.no_kernel_nets {
            d.nets.push(card.tool());
        } else {
            d.links.push(card);
        }
    }
    if let Some(c) = &a.com2 {
        if c == "stdio" {
            return Err("-C: COM2 takes files (IN[,OUT]); the terminal is COM1's".into());
        }
        d.com2 = Some(wire_com(c, "-C")?);
    }
    Ok(d)
}

type Com1 = session::Serial<'static>;

/// Connects COM1 (or COM2) to the terminal or to files; `flag` names it in errors.
fn wire_com(spec: &str, flag: &str) -> Result<Com1, String> {
    if spec == "stdio" {
        return Ok((
            Some(Box::new(std::io::stdin())),
            Box::new(std::io::stdout()),
        ));
    }
    let (i, o) = spec.split_once(',').unwrap_or((spec, spec));
    let input: Option<Box<dyn Read + Send>> = if i.is_empty() {
        None
    } else {
        Some(Box::new(
            std::fs::File::open(i).map_err(|e| format!("{flag} {i}: {e}"))?,
        ))
    };
    let output: Box<dyn Write> = if o.is_empty() {
        Box::new(std::io::sink())
    } else {
        Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(o)
                .map_err(|e| format!("{flag} {o}: {e}"))?,
        )
    };
    Ok((input, output))
}
