//! What the screen console shows, as text: a title row (the address to mount, once the
//! network has one) over the log, which wraps at the right edge and scrolls up a row at a
//! time. Pure: [`Grid::flush`] hands out only the cells that changed since they were last
//! drawn, so a scroll or a new title costs the cells it changes, whatever draws them
//! (VGA text cells or painted glyphs, console.rs).

use crate::glyph::Rgb;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// How a row looks: the log's light grey on black, or the title's black on light grey.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Text,
    Title,
}

impl Style {
    /// The VGA text attribute.
    pub const fn vga(self) -> u8 {
        match self {
            Style::Text => 0x07,
            Style::Title => 0x70,
        }
    }

    /// The foreground and background colours on a framebuffer.
    pub const fn colours(self) -> (Rgb, Rgb) {
        const GREY: Rgb = Rgb(0xaa, 0xaa, 0xaa);
        const BLACK: Rgb = Rgb(0, 0, 0);
        match self {
            Style::Text => (GREY, BLACK),
            Style::Title => (BLACK, GREY),
        }
    }

    /// Row 0 is the title.
    pub const fn of_row(row: usize) -> Style {
        if row == 0 {
            Style::Title
        } else {
            Style::Text
        }
    }
}

/// Marks a cell whose content on the screen is unknown (never a printable character).
const UNKNOWN: u8 = 0;

pub struct Grid {
    pub cols: usize,
    /// Every row's characters, the title's first; the last row is the one being written.
    want: Vec<Vec<u8>>,
    /// What each cell on the screen shows now.
    shown: Vec<Vec<u8>>,
    /// The column the next character of the log goes to.
    col: usize,
}

/// What a character shows as: printable ASCII itself, anything else `?`.
fn printable(b: u8) -> u8 {
    if (0x20..0x7f).contains(&b) {
        b
    } else {
        b'?'
    }
}

impl Grid {
    /// A blank grid of `cols` x `rows` (a title and at least one row of log); the first
    /// flush draws every cell.
    pub fn new(cols: usize, rows: usize) -> Option<Grid> {
        (cols >= 1 && rows >= 2).then(|| Grid {
            cols,
            want: vec![vec![b' '; cols]; rows],
            shown: vec![vec![UNKNOWN; cols]; rows],
            col: 0,
        })
    }

    pub fn rows(&self) -> usize {
        self.want.len()
    }

    /// Sets the title row (cut at the right edge).
    pub fn set_title(&mut self, text: &str) {
        let b = text.as_bytes();
        for (col, cell) in self.want[0].iter_mut().enumerate() {
            *cell = b.get(col).map_or(b' ', |&c| printable(c));
        }
    }

    /// Appends `s` to the log: a newline, or a full row, moves the rows up one.
    pub fn write(&mut self, s: &str) {
        for &b in s.as_bytes() {
            if b == b'\n' || self.col == self.cols {
                self.scroll();
                if b == b'\n' {
                    continue;
                }
            }
            let last = self.want.len() - 1;
            self.want[last][self.col] = printable(b);
            self.col += 1;
        }
    }

    fn scroll(&mut self) {
        let mut top = self.want.remove(1);
        top.fill(b' ');
        self.want.push(top);
        self.col = 0;
    }

    /// Hands `put(row, col, ch, style)` every cell that differs from what was drawn.
    pub fn flush(&mut self, mut put: impl FnMut(usize, usize, u8, Style)) {
        for (row, (want, shown)) in self.want.iter().zip(self.shown.iter_mut()).enumerate() {
            if want == shown {
                continue;
            }
            for (col, (&w, s)) in want.iter().zip(shown.iter_mut()).enumerate() {
                if w != *s {
                    put(row, col, w, Style::of_row(row));
                    *s = w;
                }
            }
        }
    }

    /// The rows as text, the title's first (trailing blanks kept).
    pub fn text(&self) -> Vec<String> {
        self.want
            .iter()
            .map(|r| r.iter().map(|&b| char::from(b)).collect())
            .collect()
    }
}
