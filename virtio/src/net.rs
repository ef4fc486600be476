//! virtio-net (virtio 1.x, 5.1): the header before every frame in a buffer, the longest
//! frame a card takes, and (with `alloc`) the device side of a legacy card ([`device`])
//! and its port on a switch ([`port`]).

use virtio_spec as spec;

#[cfg(feature = "alloc")]
pub mod device;
#[cfg(feature = "alloc")]
pub mod port;

/// The longest frame a card takes or delivers (no FCS, room for a VLAN tag): Ethernet's,
/// as the switch its frames may cross counts it.
pub const MAX_FRAME: usize = netswitch::MAX_FRAME;

/// `virtio_net_hdr` as a VERSION_1 device uses it (flags, gso_type, hdr_len, gso_size,
/// csum_start, csum_offset, num_buffers): 12 bytes.
pub const HDR_LEN: usize = core::mem::size_of::<spec::net::Hdr>();

/// The legacy (0.9.5) header without mergeable receive buffers: no `num_buffers`.
pub const LEGACY_HDR_LEN: usize = HDR_LEN - 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths() {
        assert_eq!((HDR_LEN, LEGACY_HDR_LEN), (12, 10));
        assert_eq!(MAX_FRAME, 1518);
    }
}
