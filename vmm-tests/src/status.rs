//! The root `status` file as the emulator tests read it: one `key value...` line a fact.

use ninep_client::Client;

/// The root `status` file's text.
pub fn read(c: &Client) -> String {
    String::from_utf8(c.read_file("status").expect("read status")).expect("status is text")
}

/// The words after `key` on its line, joined by one space.
pub fn text(st: &str, key: &str) -> String {
    st.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(key)).then(|| w.collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| panic!("status has no {key}: {st:?}"))
}

/// `key`'s number: its first word, decimal or `0x` hex.
pub fn num(st: &str, key: &str) -> u64 {
    let v = text(st, key);
    let v = v.split_whitespace().next().unwrap_or_default();
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse(),
    }
    .unwrap_or_else(|_| panic!("status {key} is not a number: {st:?}"))
}
