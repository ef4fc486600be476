//! The bundled demo guest (guest/demo.S), assembled by build.rs into a multiboot ELF.

/// The demo kernel image.
pub const IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/demo.elf"));
/// Where build.rs left it, for scripts that want a file.
pub const PATH: &str = concat!(env!("OUT_DIR"), "/demo.elf");
/// The first line it prints.
pub const GREETING: &str = "Hello from a guest over 9P!";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;
    use crate::loader::{self, BootArgs};

    #[test]
    fn demo_is_a_multiboot_elf() {
        assert!(IMAGE.starts_with(b"\x7fELF"));
        let l = Layout::new(64 << 20).unwrap();
        let img = loader::load(
            IMAGE,
            &l,
            &BootArgs {
                cmdline: "hello".into(),
                modules: vec![],
            },
        )
        .unwrap();
        assert_eq!(img.format, "multiboot");
        assert_eq!(img.entry(), 0x10000c);
        // The multiboot header is the first thing loaded, at 1 MiB.
        assert_eq!(img.read(0x100000, 4), 0x1bad_b002u32.to_le_bytes());
        let text = String::from_utf8_lossy(&img.read(0x100000, 0x1000)).into_owned();
        assert!(text.contains(GREETING));
        assert_eq!(std::fs::read(PATH).unwrap(), IMAGE);
    }
}
