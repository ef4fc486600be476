//! A writer for the "newc" cpio format the Linux kernel unpacks as its initramfs, so a
//! busybox initramfs can be made without a cpio binary.

/// One entry of the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
    /// A character device node (e.g. dev/console, 5:1).
    Char {
        path: String,
        mode: u32,
        major: u32,
        minor: u32,
    },
}

fn header(out: &mut Vec<u8>, ino: u32, mode: u32, size: usize, rdev: (u32, u32), name: &str) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        1, // nlink
        0, // mtime
        size as u32,
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad(out);
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// The archive of `entries`, in order, with the trailer.
pub fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        let (path, mode, data, rdev): (&str, u32, &[u8], (u32, u32)) = match e {
            Entry::Dir { path, mode } => (path, 0o040000 | mode, &[], (0, 0)),
            Entry::File { path, mode, data } => (path, 0o100000 | mode, data, (0, 0)),
            Entry::Symlink { path, target } => (path, 0o120777, target.as_bytes(), (0, 0)),
            Entry::Char {
                path,
                mode,
                major,
                minor,
            } => (path, 0o020000 | mode, &[], (*major, *minor)),
        };
        header(
            &mut out,
            ino,
            mode,
            data.len(),
            rdev,
            path.trim_start_matches('/'),
        );
        out.extend_from_slice(data);
        pad(&mut out);
    }
    header(&mut out, 0, 0, 0, (0, 0), "TRAILER!!!");
    out
}

/// A minimal busybox initramfs: /bin/busybox, /dev/console, and /init running `script`
/// (a shell script run by busybox's sh after /proc, /sys and the applet links exist).
pub fn busybox_initramfs(busybox: &[u8], script: &str) -> Vec<u8> {
    let init = format!(
        "#!/bin/busybox sh\n/bin/busybox mkdir -p /proc /sys /tmp /sbin /usr/bin /usr/sbin\n\
         /bin/busybox mount -t proc proc /proc\n/bin/busybox mount -t sysfs sysfs /sys\n\
         /bin/busybox --install -s\nexport PATH=/bin:/sbin:/usr/bin:/usr/sbin\n{script}\n"
    );
    archive(&[
        Entry::Dir {
            path: "bin".into(),
            mode: 0o755,
        },
        Entry::Dir {
            path: "dev".into(),
            mode: 0o755,
        },
        Entry::Char {
            path: "dev/console".into(),
            mode: 0o600,
            major: 5,
            minor: 1,
        },
        Entry::File {
            path: "bin/busybox".into(),
            mode: 0o755,
            data: busybox.to_vec(),
        },
        Entry::Symlink {
            path: "bin/sh".into(),
            target: "busybox".into(),
        },
        Entry::File {
            path: "init".into(),
            mode: 0o755,
            data: init.into_bytes(),
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let a = archive(&[Entry::File {
            path: "/init".into(),
            mode: 0o755,
            data: b"hi".to_vec(),
        }]);
        assert!(a.starts_with(b"07070100000001000081ed"));
        // Header 110 bytes + "init\0" (115) padded to 116, then 2 data bytes padded to 4.
        assert_eq!(&a[110..115], b"init\0");
        assert_eq!(&a[116..118], b"hi");
        assert_eq!(&a[120..126], b"070701");
        assert!(a.windows(10).any(|w| w == b"TRAILER!!!"));
        assert_eq!(a.len() % 4, 0);
        // Size field of the file entry.
        assert_eq!(&a[54..62], b"00000002");
    }

    #[test]
    fn device_nodes_and_links() {
        let a = archive(&[
            Entry::Char {
                path: "dev/console".into(),
                mode: 0o600,
                major: 5,
                minor: 1,
            },
            Entry::Symlink {
                path: "bin/sh".into(),
                target: "busybox".into(),
            },
        ]);
        let h = std::str::from_utf8(&a[..110]).unwrap();
        assert_eq!(&h[14..22], "00002180"); // S_IFCHR | 0600
        assert_eq!(&h[78..86], "00000005");
        assert_eq!(&h[86..94], "00000001");
        assert!(a.windows(7).any(|w| w == b"busybox"));
    }
}
