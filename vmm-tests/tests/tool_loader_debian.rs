//! The tool's Linux loader on the real Debian kernel `scripts/setup` unpacks (the loader's
//! own unit tests in vmx/src/loader/linux.rs use synthetic bzImages).

use vmm_tests::fixtures::{images, need};
use vmx::layout::Layout;
use vmx::loader::linux::{parse_header, CMDLINE, ZERO_PAGE};
use vmx::loader::{load as load_any, BootArgs, Module};

#[test]
fn debian_bzimage() {
    let path = need(images::debian_kernel());
    let k = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let h = parse_header(&k).unwrap();
    // Debian 12 kernels speak boot protocol 2.15 and are relocatable bzImages.
    assert!(h.version >= 0x20f, "version {:#x}", h.version);
    assert_eq!(h.code32_start, 0x100000);
    assert!(h.setup_sects >= 4);
    assert!(
        h.init_size as usize > k.len(),
        "init_size {:#x}",
        h.init_size
    );
    assert!(h.cmdline_size >= 255);
    let l = Layout::new(256 << 20).unwrap();
    let a = BootArgs {
        cmdline: "console=ttyS0 earlyprintk=serial".into(),
        modules: vec![Module {
            name: "initrd".into(),
            data: vec![0x30; 4096],
        }],
    };
    let img = load_any(&k, &l, &a).unwrap();
    assert_eq!(img.format, "linux");
    assert_eq!(img.entry(), 0x100000);
    let setup = (usize::from(h.setup_sects) + 1) * 512;
    assert_eq!(img.read(0x100000, 64), k[setup..setup + 64]);
    let last = (k.len() - setup - 1) as u64;
    assert_eq!(img.byte_at(0x100000 + last), k.last().copied());
    let zp = img.read(ZERO_PAGE, 4096);
    // The header is copied; the loader's own fields (0x1fa..0x230) are set.
    assert_eq!(zp[0x1f1..0x1fa], k[0x1f1..0x1fa]);
    assert_eq!(zp[0x230..h.header_end], k[0x230..h.header_end]);
    assert_eq!(img.read(CMDLINE, 33), b"console=ttyS0 earlyprintk=serial\0");
    assert_ne!(u32::from_le_bytes(zp[0x218..0x21c].try_into().unwrap()), 0);
    // Too little memory for its init_size is refused with a clear message.
    let e = load_any(&k, &Layout::new(16 << 20).unwrap(), &BootArgs::default()).unwrap_err();
    assert!(e.0.contains("not enough memory"), "{e}");
}
