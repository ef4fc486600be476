//! The hypervisor kernel: boots from Multiboot, owns the machine, and serves the 9P
//! namespace over its transports. Only `arch` holds `unsafe`.
//!
//! A library, so the host tests its hardware-free parts in place (`cargo test -p
//! hypervisor`); the kernel image is the thin `hypervisor` bin (kernel.rs) built for
//! `x86_64-unknown-none`, and only that target gets the entry point, the panic handler
//! and the global heap.
#![cfg_attr(target_os = "none", no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod acpi;
mod arch;
pub mod bootinfo;
pub mod cmdline;
mod console;
pub mod cpus;
mod drivers;
pub mod frames;
pub mod glyph;
mod le;
mod logger;
pub mod mailbox;
mod memory;
mod net;
pub mod screen;
pub mod server;
mod smp;
mod switch;
pub mod transport;

use alloc::boxed::Box;
use alloc::vec::Vec;
use bootinfo::Region;

pub const VERSION: &str = concat!("hypervisor ", env!("CARGO_PKG_VERSION"));

/// The kernel proper, entered from arch::boot in long mode on the boot stack.
fn kmain(magic: u32, info: u32) -> ! {
    logger::init(log::LevelFilter::Info);
    arch::init();
    log::info!("{VERSION} booting");
    let Some(boot) = bootinfo::from_loader(magic, info) else {
        log::error!("not loaded by Multiboot (magic {magic:#x})");
        arch::cpu::exit(false);
    };
    // The ACPI tables: the PM timer for the clock now, the MADT for the CPUs later.
    let firmware = arch::phys::firmware_bytes;
    if let Some(pa) = boot.rsdp() {
        acpi::set_loader_rsdp(pa);
    }
    let rsdp = acpi::find_rsdp(&firmware);
    match rsdp {
        Some((pa, src)) => log::info!("acpi: rsdp {pa:#x} from {}", src.name()),
        None => log::warn!("acpi: no rsdp"),
    }
    let pm = rsdp
        .and_then(|(r, _)| acpi::find_table(&firmware, r, b"FACP"))
        .and_then(acpi::pm_timer);
    arch::timer::init(pm);
    // The wall clock for file times: the RTC now, the timer's ticks after.
    let (rtc, boot_ticks) = (arch::rtc::read(), arch::timer::ticks());
    let boot_time = match rtc.decode() {
        Some(d) => {
            log::info!(
                "rtc {:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                d.year,
                d.mon,
                d.day,
                d.hour,
                d.min,
                d.sec
            );
            devvmx::clock::unix_seconds(&d).unwrap_or(0)
        }
        None => {
            log::warn!("rtc {rtc:?} holds no date: file times start at 1970");
            0
        }
    };
    let (kstart, kend) = arch::boot::kernel_range();
    let kernel = Region {
        start: kstart,
        end: kend,
    };
    let Some(heap) = memory::init(boot.regions(), &[kernel, boot.info]) else {
        log::error!("no room for the heap in {:?}", boot.regions());
        arch::cpu::exit(false);
    };
    arch::frame_source::install(memory::SOURCE);
    let cfg = cmdline::parse(boot.cmdline());
    log::set_max_level(cfg.log);
    log::info!(
        "{}: cmdline {:?}; kernel {kstart:#x}-{kend:#x}, heap {:#x}-{:#x}, {} of {} frames free",
        boot.loader,
        cmdline::redacted(boot.cmdline()),
        heap.start,
        heap.end,
        memory::free_frames(),
        memory::total_frames()
    );

    // The screen (it needs the heap): the log from here on, the address to mount on top.
    match console::init(boot.framebuffer) {
        Some(what) => log::info!("screen: the log on {what} too"),
        None => log::info!("screen: none to write on ({:?})", boot.framebuffer),
    }

    // Links are probed with interrupts off (drivers register their IRQ handlers).
    let mut links: Vec<Box<dyn transport::Link>> = Vec::new();
    if cfg.uart {
        if arch::uart::present() {
            arch::uart::init();
            links.push(Box::new(drivers::uart::Uart::default()));
        } else {
            log::warn!("no 16550 at COM1");
        }
    }
    if cfg.virtio {
        for port in drivers::virtio_console::probe() {
            links.push(Box::new(port));
        }
    }
    let nic = if cfg.net {
        let nic = drivers::probe_nic();
        if nic.is_none() {
            log::warn!("no NIC served (virtio-net, e1000): no 9P over TCP");
        }
        nic
    } else {
        None
    };
    arch::cpu::enable_interrupts();
    let ncpu = smp::start_aps(boot.regions(), &[kernel, boot.info], cfg.cpus);
    // Before the namespace: the selftest does its own VMXON and VMXOFF.
    if cfg.selftest_fault {
        arch::cpu::fault();
    }
    if cfg.selftest_vmx {
        arch::vmx::selftest::run();
    }

    let mut ns = devvmx::Namespace::new(
        arch::vmx::KernelHw::new()
            .with_router(smp::call)
            .with_wall_clock(boot_time, boot_ticks),
        devvmx::Config {
            owner: cfg.owner.clone(),
            version: VERSION,
        },
    );
    match ns.vms().vmx() {
        Ok(caps) => log::info!("vmx ok: {}", caps.describe()),
        Err(why) => log::warn!("vmx unavailable: {why}"),
    }
    let mut facts = devvmx::Facts {
        cpus: ncpu,
        ..Default::default()
    };
    facts
        .owners
        .set_secret(cfg.secret.as_ref().map(|s| s.0.clone()));
    ns.set_facts(facts);
    // VMs run on the other CPUs when any can run them; else here, between 9P requests.
    let vm_cpus = smp::vm_cpus();
    ns.vms_mut().set_cpus(&vm_cpus);
    for cpu in vm_cpus {
        if let Some(list) = ns.vms().run_list(cpu) {
            smp::give_vms(cpu, list);
        }
    }
    let mut listener = None;
    if let Some(nic) = nic {
        let addressing = match cfg.ip {
            Some((addr, prefix)) => net::Addressing::Static {
                addr,
                prefix,
                gw: cfg.gw,
            },
            None => net::Addressing::Dhcp,
        };
        log::info!(
            "{}: mac {:02x?}; 9P on TCP port {}",
            nic.model(),
            nic.mac(),
            cfg.port
        );
        let (nic, switch) = if cfg.switch {
            match switch::SwitchedNic::new(nic) {
                Ok(s) => {
                    log::info!("switch: the NIC is its uplink (promiscuous), the interface a port");
                    let sw = s.switch();
                    (Box::new(s) as Box<dyn drivers::nic::Nic>, Some(sw))
                }
                Err((nic, e)) => {
                    log::warn!("switch: {e}; the NIC serves the interface alone");
                    (nic, None)
                }
            }
        } else {
            (nic, None)
        };
        if let Some(sw) = &switch {
            // VM cards and client ports (`switch/clone`) join the NIC's switch.
            ns.set_switch(devvmx::HostSwitch {
                switch: sw.clone(),
                millis: arch::timer::millis,
            });
        }
        listener = Some(net::TcpListener::new(
            net::Stack::new(nic, addressing, cfg.port, cfg.echo_port),
            switch,
        ));
    }
    if ns.switch().is_none() {
        // Without `switch` (or a NIC) the VMs' cards still meet on a switch of their own:
        // guest to guest, nothing bridged.
        ns.set_switch(devvmx::HostSwitch::unbridged(arch::timer::millis));
    }
    let mut server = server::Server::new(ns, cfg.echo.clone());
    if let Some(l) = listener {
        server.add_listener(Box::new(l));
    }
    for link in links {
        server.add(link);
    }
    log::info!("ready; owner {}", cfg.owner);
    server.run()
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    log::error!("kernel panic: {info}");
    arch::cpu::exit(false)
}
