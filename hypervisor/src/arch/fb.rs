//! A linear framebuffer of 32-bit pixels (UEFI's GOP screen, as GRUB leaves it in the
//! Multiboot2 framebuffer tag): spans of pixels copied into a row in place. What the pixels
//! show is drawn above arch (glyph.rs); this only puts them on the screen.
#![allow(unsafe_code)]

use super::vga::{Framebuffer, FramebufferKind};

/// The screen's pixels, mapped.
pub struct LinearFb {
    addr: u64,
    /// Bytes per row.
    pitch: u64,
    pub width: usize,
    pub height: usize,
}

/// Screens larger than this (in either direction) are not believed.
const MAX_SIDE: u32 = 16384;

impl LinearFb {
    /// The screen `fb` describes, if it is 32-bit RGB and can be mapped (above 4 GiB it is
    /// mapped uncached here, like a BAR).
    pub fn new(fb: &Framebuffer) -> Option<LinearFb> {
        let ok = matches!(fb.kind, FramebufferKind::Rgb(_))
            && fb.bpp == 32
            && fb.addr != 0
            && fb.addr.is_multiple_of(4)
            && (1..=MAX_SIDE).contains(&fb.width)
            && (1..=MAX_SIDE).contains(&fb.height)
            && u64::from(fb.pitch) >= 4 * u64::from(fb.width)
            && fb.pitch.is_multiple_of(4);
        let size = u64::from(fb.pitch) * u64::from(fb.height);
        if !ok || !super::paging::map_mmio(fb.addr, size) {
            return None;
        }
        Some(LinearFb {
            addr: fb.addr,
            pitch: u64::from(fb.pitch),
            width: fb.width as usize,
            height: fb.height as usize,
        })
    }

    /// Puts `px` on row `y` from column `x`; what falls outside the screen is dropped.
    pub fn write(&self, x: usize, y: usize, px: &[u32]) {
        if y >= self.height || x >= self.width {
            return;
        }
        let n = px.len().min(self.width - x);
        let at = self.addr + y as u64 * self.pitch + 4 * x as u64;
        // SAFETY: `at` .. `at + 4n` lies in row `y` of the framebuffer the loader described
        // (checked above against its width and height; `new` checked the pitch and mapped
        // it all), device memory that holds only what is shown and that only the console,
        // under its lock, writes; `at` is 4-aligned as the base and pitch are.
        unsafe { core::ptr::copy_nonoverlapping(px.as_ptr(), at as *mut u32, n) }
    }
}
