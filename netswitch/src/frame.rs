//! Ethernet addresses and the part of a frame the switch reads: destination and source.

use core::fmt;

/// An Ethernet (EUI-48) address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// A group address (multicast, broadcast included): the I/G bit, the least
    /// significant bit of the first octet.
    pub const fn is_group(self) -> bool {
        self.0[0] & 1 != 0
    }

    /// Parses the text [`Display`](fmt::Display) writes: six pairs of hex digits
    /// separated by colons, `XX:XX:XX:XX:XX:XX`.
    pub fn parse(s: &str) -> Option<Mac> {
        let mut m = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut m {
            let p = parts.next()?;
            if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            *b = u8::from_str_radix(p, 16).ok()?;
        }
        parts.next().is_none().then_some(Mac(m))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Destination, source and type: the header every frame starts with.
pub const HEADER_LEN: usize = 14;
/// The longest frame taken, without its FCS: 1500 bytes of payload, the header and one
/// 802.1Q tag.
pub const MAX_FRAME: usize = 1500 + HEADER_LEN + 4;

/// A frame's destination and source, or None for a frame shorter than the header or
/// longer than [`MAX_FRAME`].
pub fn addresses(frame: &[u8]) -> Option<(Mac, Mac)> {
    if !(HEADER_LEN..=MAX_FRAME).contains(&frame.len()) {
        return None;
    }
    let mac = |at: usize| {
        let mut m = [0u8; 6];
        m.copy_from_slice(&frame[at..at + 6]);
        Mac(m)
    };
    Some((mac(0), mac(6)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn group_bit_and_text() {
        assert!(Mac::BROADCAST.is_group());
        assert!(Mac([0x01, 0, 0x5e, 0, 0, 1]).is_group());
        assert!(Mac([0x33, 0x33, 0, 0, 0, 1]).is_group());
        assert!(!Mac([0x02, 0, 0, 0, 0, 1]).is_group());
        assert_eq!(
            Mac([0x52, 0x54, 0, 0x12, 0x34, 0xab]).to_string(),
            "52:54:00:12:34:ab"
        );
    }

    #[test]
    fn parse_takes_what_display_writes() {
        let m = Mac([0x52, 0x54, 0, 0x12, 0x34, 0xab]);
        assert_eq!(Mac::parse(&m.to_string()), Some(m));
        assert_eq!(Mac::parse("52:54:00:12:34:AB"), Some(m));
        for bad in [
            "",
            "52:54:00:12:34",
            "52:54:00:12:34:ab:cd",
            "52:54:00:12:34:a",
            "52:54:00:12:34:abc",
            "52:54:00:12:34:+a",
            "52:54:00:12:34:0g",
            "52-54-00-12-34-ab",
        ] {
            assert_eq!(Mac::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn addresses_need_a_whole_header_and_no_more_than_the_longest_frame() {
        let mut f = [0u8; 60];
        f[..6].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        f[6..12].copy_from_slice(&[7, 8, 9, 10, 11, 12]);
        assert_eq!(
            addresses(&f),
            Some((Mac([1, 2, 3, 4, 5, 6]), Mac([7, 8, 9, 10, 11, 12])))
        );
        assert_eq!(addresses(&f[..13]), None);
        assert!(addresses(&f[..14]).is_some());
        assert!(addresses(&[0u8; MAX_FRAME]).is_some());
        assert_eq!(addresses(&[0u8; MAX_FRAME + 1]), None);
    }
}
