//! The screen console: where the loader left a VGA text screen (BIOS boots), the log
//! scrolls on it below a title line that keeps the address to mount once the network has
//! one, so a PC without a serial line shows it. Lossy by design: a line written while
//! another CPU (or an interrupted writer) holds the screen is skipped, never waited for.

use crate::arch::cpu::without_interrupts;
use crate::arch::vga::TextScreen;
use crate::bootinfo::Framebuffer;
use alloc::vec;
use alloc::vec::Vec;
use spin::Mutex;

/// Light grey on black, and the title's black on light grey.
const TEXT: u8 = 0x07;
const TITLE: u8 = 0x70;

struct Console {
    screen: TextScreen,
    /// What each row below the title shows, so scrolling rewrites rows from here.
    rows: Vec<Vec<u8>>,
    /// The row being written (an index into `rows`) and its column.
    col: usize,
}

static CONSOLE: Mutex<Option<Console>> = Mutex::new(None);

/// Takes over the loader's screen, if it is text; whether there is a console.
pub fn init(fb: Option<Framebuffer>) -> bool {
    let Some(screen) = fb.as_ref().and_then(TextScreen::new) else {
        return false;
    };
    if screen.rows < 2 {
        return false;
    }
    let rows = vec![Vec::new(); screen.rows - 1];
    let c = Console {
        screen,
        rows,
        col: 0,
    };
    c.redraw();
    without_interrupts(|| *CONSOLE.lock() = Some(c));
    set_title(crate::VERSION);
    true
}

/// The title line (the first row).
pub fn set_title(text: &str) {
    with(|c| {
        let b = text.as_bytes();
        for col in 0..c.screen.cols {
            let ch = b.get(col).copied().unwrap_or(b' ');
            c.screen.put(0, col, printable(ch), TITLE);
        }
    });
}

/// Writes `s` below the title, scrolling as lines fill.
pub fn write(s: &str) {
    with(|c| {
        for &b in s.as_bytes() {
            c.byte(b);
        }
    });
}

fn with(f: impl FnOnce(&mut Console)) {
    without_interrupts(|| {
        if let Some(mut g) = CONSOLE.try_lock() {
            if let Some(c) = g.as_mut() {
                f(c);
            }
        }
    })
}

fn printable(b: u8) -> u8 {
    if (0x20..0x7f).contains(&b) {
        b
    } else {
        b'?'
    }
}

impl Console {
    fn byte(&mut self, b: u8) {
        if b == b'\n' || self.col == self.screen.cols {
            self.newline();
            if b == b'\n' {
                return;
            }
        }
        let last = self.rows.len() - 1;
        self.rows[last].push(printable(b));
        self.screen.put(last + 1, self.col, printable(b), TEXT);
        self.col += 1;
    }

    fn newline(&mut self) {
        self.rows.remove(0);
        self.rows.push(Vec::new());
        self.col = 0;
        self.redraw();
    }

    fn redraw(&self) {
        for (r, line) in self.rows.iter().enumerate() {
            for col in 0..self.screen.cols {
                let ch = line.get(col).copied().unwrap_or(b' ');
                self.screen.put(r + 1, col, ch, TEXT);
            }
        }
    }
}
