//! The tool's virtio devices under random rings and random register traffic (here, not
//! in vmx/tests: the virtqueue test driver is a fixture the shipped tool does not carry;
//! the harness builds the tool with its `testing` feature).

use fuzz::runner::Rng;

/// Virtio devices under random rings and random register traffic: requests served,
/// devices stopped with a reason, never a panic.
#[test]
fn virtio_devices_never_panic() {
    use vmx::virtio::testing::{Driver, Ram};
    use vmx::virtio::{blk, net, Device, Kind, QUEUE_SIZE};
    struct Sink;
    impl net::Link for Sink {
        fn send(&mut self, _: &[u8]) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut r = Rng(0x7669_7274_696f);
    let below = |r: &mut Rng, n: u64| r.next_u64() % n.max(1);
    let lim = 1u64 << 20;
    for round in 0..300 {
        let kind = if round % 2 == 0 {
            Kind::Blk(blk::Blk::new(
                Box::new(vec![0u8; 8192]),
                round % 4 == 0,
                "t",
            ))
        } else {
            Kind::Net(net::Net::new([2, 0, 0, 0, 0, 1], Box::new(Sink)))
        };
        let mut d = Device::new(kind, 10);
        let mut ram = Ram::new(lim as usize);
        for q in 0..2 {
            d.write(0x0e, 2, q, &mut ram, lim);
            d.write(0x08, 4, 16 + 16 * q, &mut ram, lim);
        }
        d.write(0x12, 1, 7, &mut ram, lim);
        // Well-formed chains with random contents and lengths, then random bytes over
        // the rings themselves.
        let mut drv = Driver::new(QUEUE_SIZE, 16);
        for _ in 0..below(&mut r, 6) {
            let bufs: Vec<(u64, u32, bool)> = (0..below(&mut r, 4) + 1)
                .map(|_| {
                    (
                        below(&mut r, lim + 0x2000),
                        below(&mut r, 0x3000) as u32,
                        below(&mut r, 2) == 1,
                    )
                })
                .collect();
            drv.offer(&mut ram, &bufs);
        }
        for _ in 0..below(&mut r, 40) {
            let at = 16 * 4096 + below(&mut r, 3 * 4096) as usize;
            ram.b[at] = r.next_u64() as u8;
        }
        for _ in 0..40 {
            let off = below(&mut r, 0x40) as u16;
            let size = [1u8, 2, 4][below(&mut r, 3) as usize];
            if below(&mut r, 2) == 0 {
                d.read(off, size);
            } else {
                d.write(off, size, r.next_u64() as u32, &mut ram, lim);
            }
            if below(&mut r, 4) == 0 {
                d.write(0x10, 2, below(&mut r, 3) as u32, &mut ram, lim);
            }
            if let Kind::Net(n) = &mut d.kind {
                n.receive(vec![0xab; below(&mut r, 2000) as usize]);
                d.notify(0, &mut ram, lim);
            }
        }
    }
}
