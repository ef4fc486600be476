//! The tool's `devices` message (an extension of #X, devvmx/DEVIATIONS.md): the devices
//! it asks the hypervisor to run, and how it steps down for a hypervisor that has only
//! some of them.

/// The devices the tool always asks for (the RTC's clock is appended): all but COM2,
/// [`KERNEL_PCI`] and the done and debug ports, which stay here; and the CPU's cpuid and
/// VMCS-held MSRs, answered from the real CPU the guest runs on.
pub const KERNEL_DEVICES: &str = "devices pic pit uart kbd quiet cpu rtc";
/// PCI configuration space, asked for with the rest where the hypervisor has it: the
/// tool's virtio functions then go on the kernel's bus (`pci add`), their BARs still the
/// tool's.
pub const KERNEL_PCI: &str = "pci";
/// COM2 connected to nothing (no -C): the hypervisor's, where it has it, so a guest's
/// probe of it (Linux's 8250 driver: 21 port accesses at boot) costs no round trips.
pub const KERNEL_COM2: &str = "com2";

/// The devices beyond [`KERNEL_DEVICES`] the tool wants, in the order it asks:
/// [`KERNEL_PCI`], and [`KERNEL_COM2`] unless COM2 is wired here (`com2_wired`, -C).
pub fn optional(com2_wired: bool) -> Vec<&'static str> {
    let mut v = vec![KERNEL_PCI];
    if !com2_wired {
        v.push(KERNEL_COM2);
    }
    v
}

/// The `devices` message with the RTC's clock at `wall` (Unix seconds) and `words`.
pub fn line(wall: u64, words: &[&str]) -> String {
    let mut s = format!("{KERNEL_DEVICES}={wall}");
    for w in words {
        s.push(' ');
        s.push_str(w);
    }
    s
}

/// Asks for the devices through `send` (which writes a `devices` message: Ok(false) when
/// the hypervisor has no in-kernel devices, 9front's #X), with as many of the `optional`
/// words as it has: an `unknown device WORD` answer for one of them drops it and asks
/// again. None: the devices stay here; else the optional words the hypervisor took.
pub fn ask(
    wall: u64,
    optional: &[&'static str],
    mut send: impl FnMut(&str) -> Result<bool, String>,
) -> Result<Option<Vec<&'static str>>, String> {
    let mut words = optional.to_vec();
    loop {
        match send(&line(wall, &words)) {
            Ok(true) => return Ok(Some(words)),
            Ok(false) => return Ok(None),
            Err(e) => {
                let unknown = words
                    .iter()
                    .position(|w| e.ends_with(&format!("unknown device {w}")));
                match unknown {
                    Some(i) => {
                        words.remove(i);
                    }
                    None => return Err(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hypervisor that knows `has` beyond the basic devices (None: 9front's #X); the
    /// messages it was sent.
    fn hv(
        has: Option<&[&str]>,
        wall: u64,
        com2_wired: bool,
    ) -> (Result<Option<Vec<&'static str>>, String>, Vec<String>) {
        let mut sent = Vec::new();
        let r = ask(wall, &optional(com2_wired), |msg| {
            sent.push(msg.to_string());
            let Some(has) = has else { return Ok(false) };
            let words: Vec<&str> = msg.split(' ').skip(1).collect();
            for w in words {
                let basic = KERNEL_DEVICES.split(' ').skip(1).any(|b| w.starts_with(b));
                if !basic && !has.contains(&w) {
                    return Err(format!("ctl: unknown device {w}"));
                }
            }
            Ok(true)
        });
        (r, sent)
    }

    #[test]
    fn the_line_names_com2_only_when_it_is_not_wired_here() {
        assert_eq!(
            line(7, &optional(false)),
            "devices pic pit uart kbd quiet cpu rtc=7 pci com2"
        );
        assert_eq!(
            line(7, &optional(true)),
            "devices pic pit uart kbd quiet cpu rtc=7 pci"
        );
    }

    #[test]
    fn a_hypervisor_with_everything_takes_it_at_once() {
        let (r, sent) = hv(Some(&["pci", "com2"]), 5, false);
        assert_eq!(r, Ok(Some(vec!["pci", "com2"])));
        assert_eq!(sent, ["devices pic pit uart kbd quiet cpu rtc=5 pci com2"]);
        // With -C COM2 is not asked for.
        let (r, sent) = hv(Some(&["pci", "com2"]), 5, true);
        assert_eq!(r, Ok(Some(vec!["pci"])));
        assert_eq!(sent.len(), 1);
    }

    #[test]
    fn unknown_devices_are_dropped_one_by_one() {
        let (r, sent) = hv(Some(&["pci"]), 5, false);
        assert_eq!(r, Ok(Some(vec!["pci"])));
        assert_eq!(
            sent,
            [
                "devices pic pit uart kbd quiet cpu rtc=5 pci com2",
                "devices pic pit uart kbd quiet cpu rtc=5 pci",
            ]
        );
        let (r, sent) = hv(Some(&[]), 5, false);
        assert_eq!(r, Ok(Some(vec![])));
        assert_eq!(
            sent.last().unwrap(),
            "devices pic pit uart kbd quiet cpu rtc=5"
        );
        assert_eq!(sent.len(), 3);
    }

    #[test]
    fn no_in_kernel_devices_or_another_error() {
        assert_eq!(hv(None, 5, false).0, Ok(None));
        let r = ask(5, &optional(false), |_| Err("ctl: VM running".to_string()));
        assert_eq!(r, Err("ctl: VM running".to_string()));
        // An unknown device the tool did not offer to drop is an error too.
        let r = ask(5, &optional(false), |_| {
            Err("ctl: unknown device kbd".to_string())
        });
        assert_eq!(r, Err("ctl: unknown device kbd".to_string()));
    }
}
