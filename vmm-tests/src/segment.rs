//! Segments as the emulator tests make and use them over 9P.

use ninep_client::{dm, om, Client, File};

/// Creates `segment/NAME` (any user may use it), sizes it to `len` bytes at 0x10000000,
/// `sticky` (its memory stays while it exists, mapped or not), and opens its data to read
/// and write.
pub fn sticky(c: &Client, name: &str, len: u64) -> File {
    create(c, name, &format!("va 0x10000000 {len:#x} sticky"))
}

/// 256 KiB of a pattern written to a new 1 MiB segment `name` and read back in the
/// client's largest reads: the bulk of the data crosses the link both ways, and comes back
/// unchanged. Its data file, open.
pub fn bulk_round_trip(c: &Client, name: &str) -> File {
    let data = create(c, name, "va 0x10000000 0x100000");
    let bytes: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    data.write_all_at(0, &bytes).expect("write 256 KiB");
    let mut back = Vec::new();
    while back.len() < bytes.len() {
        let chunk = data
            .read_at(back.len() as u64, c.max_io())
            .expect("read back");
        assert!(!chunk.is_empty());
        back.extend_from_slice(&chunk);
    }
    back.truncate(bytes.len());
    assert!(back == bytes, "segment data came back changed");
    data
}

/// `segment/NAME` created, its ctl written `va`, and its data opened to read and write.
fn create(c: &Client, name: &str, va: &str) -> File {
    c.create("segment", name, dm::DIR | 0o777, om::READ)
        .expect("create a segment");
    c.open(&format!("segment/{name}/ctl"), om::WRITE)
        .and_then(|ctl| ctl.write_str(va))
        .expect("size the segment");
    c.open(&format!("segment/{name}/data"), om::RDWR)
        .expect("open the segment's data")
}
