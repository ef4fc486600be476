//! The tool's disks: virtio-blk's device model is the `virtio` crate's
//! ([`::virtio::blk`], shared with the kernel); here is its backend on an image file, as
//! vmx(1)'s -d serves one.

pub use ::virtio::blk::{
    Backend, Blk, IoError, F_FLUSH, F_RO, F_SEG_MAX, F_TOPOLOGY, SECTOR, SEG_MAX,
};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// An image file; its length is taken once, when opened.
pub struct FileDisk {
    f: File,
    len: u64,
}

impl FileDisk {
    pub fn open(path: &std::path::Path, readonly: bool) -> Result<FileDisk, String> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(!readonly)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let len = f
            .metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        Ok(FileDisk { f, len })
    }
}

impl Backend for FileDisk {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.f.read_exact_at(buf, off).map_err(|_| IoError)
    }
    fn write_at(&mut self, off: u64, data: &[u8]) -> Result<(), IoError> {
        self.f.write_all_at(data, off).map_err(|_| IoError)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.f.sync_data().map_err(|_| IoError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_file_backs_a_disk() {
        let path = std::env::temp_dir().join(format!("vmx-filedisk-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; 1024]).unwrap();
        let mut d = FileDisk::open(&path, false).unwrap();
        assert_eq!(d.size(), 1024);
        d.write_at(512, &[1, 2, 3]).unwrap();
        let mut b = [0u8; 4];
        d.read_at(511, &mut b).unwrap();
        assert_eq!(b, [7, 1, 2, 3]);
        assert_eq!(d.read_at(1022, &mut b), Err(IoError));
        d.flush().unwrap();
        drop(d);
        assert!(FileDisk::open(&path.with_extension("none"), true).is_err());
        let _ = std::fs::remove_file(&path);
    }
}
