//! The VGA text screen the BIOS and GRUB leave (Multiboot2 framebuffer tag, EGA text):
//! cells of a character byte and an attribute byte, written in place.
#![allow(unsafe_code)]

/// What a Multiboot2 framebuffer tag says of the screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framebuffer {
    pub addr: u64,
    /// Bytes per row (text: per row of cells).
    pub pitch: u32,
    /// Pixels, or text columns.
    pub width: u32,
    /// Pixels, or text rows.
    pub height: u32,
    pub bpp: u8,
    pub kind: FramebufferKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramebufferKind {
    Indexed,
    /// Direct colour: where red, green and blue lie in a pixel.
    Rgb(RgbLayout),
    /// VGA text: two bytes a cell (character, attribute).
    EgaText,
}

/// An RGB pixel's channels (the tag's colour information).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RgbLayout {
    pub red: Channel,
    pub green: Channel,
    pub blue: Channel,
}

/// One channel of a pixel: its lowest bit's position and its width in bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    pub shift: u8,
    pub bits: u8,
}

/// A text screen's cells.
pub struct TextScreen {
    addr: u64,
    pitch: u64,
    pub cols: usize,
    pub rows: usize,
}

impl TextScreen {
    /// The screen `fb` describes, if it is EGA text lying in the identity map's low 4 GiB.
    pub fn new(fb: &Framebuffer) -> Option<TextScreen> {
        let (cols, rows) = (fb.width as usize, fb.height as usize);
        let size = u64::from(fb.pitch) * rows as u64;
        let ok = fb.kind == FramebufferKind::EgaText
            && fb.addr != 0
            && (1..=256).contains(&cols)
            && (1..=128).contains(&rows)
            && u64::from(fb.pitch) >= 2 * cols as u64
            && fb.addr.checked_add(size)? <= super::paging::LOW;
        ok.then_some(TextScreen {
            addr: fb.addr,
            pitch: u64::from(fb.pitch),
            cols,
            rows,
        })
    }

    /// Puts `ch` with colour `attr` at `row`, `col` (outside the screen: nothing).
    pub fn put(&self, row: usize, col: usize, ch: u8, attr: u8) {
        if row >= self.rows || col >= self.cols {
            return;
        }
        let at = self.addr + row as u64 * self.pitch + 2 * col as u64;
        // SAFETY: `at` is a cell inside the text buffer the loader described (checked in
        // `new` to lie in the identity-mapped low 4 GiB), device memory that holds only
        // what is shown; an aligned 16-bit store.
        unsafe { core::ptr::write_volatile(at as *mut u16, u16::from(attr) << 8 | u16::from(ch)) }
    }
}
