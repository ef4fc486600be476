//! The screen console: the log scrolls on the screen the loader left, below a title line
//! that keeps the address to mount once the network has one, so a PC without a serial line
//! shows it. A VGA text screen (BIOS boots) takes the characters as cells; a linear RGB
//! framebuffer (UEFI boots) gets them painted as glyphs (glyph.rs). What to show is
//! screen.rs's grid; only the cells that changed are drawn. Lossy by design: a line
//! written while another CPU (or an interrupted writer) holds the screen is skipped, never
//! waited for.

use crate::arch::cpu::without_interrupts;
use crate::arch::fb::LinearFb;
use crate::arch::vga::TextScreen;
use crate::bootinfo::{Framebuffer, FramebufferKind};
use crate::glyph::{Painter, PixelFormat, Surface};
use crate::screen::{Grid, Style};
use alloc::format;
use alloc::string::String;
use spin::Mutex;

impl Surface for LinearFb {
    fn write(&mut self, x: usize, y: usize, px: &[u32]) {
        LinearFb::write(self, x, y, px);
    }
}

enum Screen {
    Text(TextScreen),
    Pixels(LinearFb, Painter),
}

impl Screen {
    /// The screen `fb` describes, and its grid's columns and rows.
    fn new(fb: &Framebuffer) -> Option<(Screen, usize, usize)> {
        if let Some(t) = TextScreen::new(fb) {
            let (cols, rows) = (t.cols, t.rows);
            return Some((Screen::Text(t), cols, rows));
        }
        let FramebufferKind::Rgb(layout) = fb.kind else {
            return None;
        };
        let format = PixelFormat::new(&layout)?;
        let mut lfb = LinearFb::new(fb)?;
        let p = Painter::new(lfb.width, lfb.height, format)?;
        let (width, height) = (lfb.width, lfb.height);
        p.clear(&mut lfb, width, height, Style::Text.colours().1);
        Some((Screen::Pixels(lfb, p), p.cols, p.rows))
    }

    fn put(&mut self, row: usize, col: usize, ch: u8, style: Style) {
        match self {
            Screen::Text(t) => t.put(row, col, ch, style.vga()),
            Screen::Pixels(fb, p) => {
                let (fg, bg) = style.colours();
                p.draw(fb, row, col, ch, fg, bg);
            }
        }
    }
}

struct Console {
    screen: Screen,
    grid: Grid,
}

impl Console {
    fn flush(&mut self) {
        let screen = &mut self.screen;
        self.grid
            .flush(|row, col, ch, style| screen.put(row, col, ch, style));
    }
}

static CONSOLE: Mutex<Option<Console>> = Mutex::new(None);

/// Takes over the loader's screen, if it is VGA text or 32-bit RGB; what it is, for the
/// log.
pub fn init(fb: Option<Framebuffer>) -> Option<String> {
    let (screen, cols, rows) = Screen::new(fb.as_ref()?)?;
    let grid = Grid::new(cols, rows)?;
    let what = match &screen {
        Screen::Text(_) => format!("the text screen ({cols}x{rows})"),
        Screen::Pixels(lfb, p) => format!(
            "the {}x{} framebuffer ({cols}x{rows} cells of {}x{})",
            lfb.width, lfb.height, p.cell.0, p.cell.1
        ),
    };
    without_interrupts(|| *CONSOLE.lock() = Some(Console { screen, grid }));
    set_title(crate::VERSION);
    Some(what)
}

/// The title line (the first row).
pub fn set_title(text: &str) {
    with(|c| c.grid.set_title(text));
}

/// Writes `s` below the title, scrolling as lines fill.
pub fn write(s: &str) {
    with(|c| c.grid.write(s));
}

fn with(f: impl FnOnce(&mut Console)) {
    without_interrupts(|| {
        if let Some(mut g) = CONSOLE.try_lock() {
            if let Some(c) = g.as_mut() {
                f(c);
                c.flush();
            }
        }
    })
}
