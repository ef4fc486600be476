//! Text cells as pixels: each character a cell of Noto Sans Mono's pre-rasterised glyphs
//! (`noto-sans-mono-bitmap`), its coverage blended from the background to the foreground
//! colour and packed into 32-bit pixels as the screen lays out red, green and blue. Pure:
//! the pixels go to a [`Surface`] (the kernel's is the framebuffer, arch/fb.rs; tests use
//! a [`Buffer`]), and a `Buffer` can be read back into characters.

use crate::bootinfo::RgbLayout;
use alloc::vec;
use alloc::vec::Vec;
use noto_sans_mono_bitmap::{
    get_raster, get_raster_width, FontWeight, RasterHeight, RasterizedChar,
};

/// A colour: red, green, blue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

/// Where painted pixels go: `px` on row `y` from column `x` (clipped at the edge).
pub trait Surface {
    fn write(&mut self, x: usize, y: usize, px: &[u32]);
}

/// How a colour becomes a 32-bit pixel: each channel's 8 bits at its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelFormat {
    shifts: [u8; 3],
}

impl PixelFormat {
    /// The format of `layout`, if its channels are 8 bits each within 32 bits.
    pub fn new(layout: &RgbLayout) -> Option<PixelFormat> {
        let chans = [layout.red, layout.green, layout.blue];
        chans
            .iter()
            .all(|c| c.bits == 8 && c.shift <= 24)
            .then_some(PixelFormat {
                shifts: chans.map(|c| c.shift),
            })
    }

    pub fn encode(&self, c: Rgb) -> u32 {
        let [r, g, b] = self.shifts;
        u32::from(c.0) << r | u32::from(c.1) << g | u32::from(c.2) << b
    }
}

/// The font sizes built in, largest first.
const SIZES: [RasterHeight; 3] = [
    RasterHeight::Size32,
    RasterHeight::Size24,
    RasterHeight::Size16,
];
/// The largest font that still gives this many rows is used (else the smallest).
const MIN_ROWS: usize = 40;
const WEIGHT: FontWeight = FontWeight::Regular;
/// A cell's width is at most this (Noto's 32-pixel raster is 16 wide).
const MAX_CELL_WIDTH: usize = 32;

/// Paints character cells on a screen of a given size and pixel format.
#[derive(Clone, Copy, Debug)]
pub struct Painter {
    format: PixelFormat,
    size: RasterHeight,
    /// A cell's width and height in pixels.
    pub cell: (usize, usize),
    /// The cells that fit on the screen: columns, rows.
    pub cols: usize,
    pub rows: usize,
}

impl Painter {
    /// A painter for a `width` x `height` pixel screen: the largest font that leaves
    /// `MIN_ROWS` rows. None where not one cell fits.
    pub fn new(width: usize, height: usize, format: PixelFormat) -> Option<Painter> {
        let size = SIZES
            .into_iter()
            .find(|s| height / s.val() >= MIN_ROWS)
            .unwrap_or(SIZES[SIZES.len() - 1]);
        let cell = (get_raster_width(WEIGHT, size), size.val());
        let (cols, rows) = (width / cell.0, height / cell.1);
        (cols > 0 && rows > 0 && cell.0 <= MAX_CELL_WIDTH).then_some(Painter {
            format,
            size,
            cell,
            cols,
            rows,
        })
    }

    /// The pixel for coverage `i` (0: background, 255: foreground).
    fn blend(&self, i: u8, fg: Rgb, bg: Rgb) -> u32 {
        let mix = |f: u8, b: u8| {
            let (f, b, i) = (u32::from(f), u32::from(b), u32::from(i));
            ((f * i + b * (255 - i) + 127) / 255) as u8
        };
        self.format
            .encode(Rgb(mix(fg.0, bg.0), mix(fg.1, bg.1), mix(fg.2, bg.2)))
    }

    /// `ch`'s glyph; a character the font lacks is drawn as `?`.
    fn glyph(&self, ch: u8) -> Option<RasterizedChar> {
        get_raster(char::from(ch), WEIGHT, self.size).or_else(|| get_raster('?', WEIGHT, self.size))
    }

    /// The pixel at (`x`, `y`) of glyph `g`'s cell.
    fn cell_pixel(&self, g: Option<&RasterizedChar>, x: usize, y: usize, fg: Rgb, bg: Rgb) -> u32 {
        self.blend(g.and_then(|g| g.pixel(x, y)).unwrap_or(0), fg, bg)
    }

    /// Paints `ch` in `fg` on `bg` in the cell at `row`, `col` (outside the grid: nothing).
    pub fn draw(&self, s: &mut impl Surface, row: usize, col: usize, ch: u8, fg: Rgb, bg: Rgb) {
        if row >= self.rows || col >= self.cols {
            return;
        }
        let (w, h) = self.cell;
        let g = self.glyph(ch);
        let mut line = [0u32; MAX_CELL_WIDTH];
        for y in 0..h {
            for (x, px) in line[..w].iter_mut().enumerate() {
                *px = self.cell_pixel(g.as_ref(), x, y, fg, bg);
            }
            s.write(col * w, row * h + y, &line[..w]);
        }
    }

    /// Fills a `width` x `height` screen with `bg` (the margins past the last cells too).
    pub fn clear(&self, s: &mut impl Surface, width: usize, height: usize, bg: Rgb) {
        let line = vec![self.format.encode(bg); width];
        for y in 0..height {
            s.write(0, y, &line);
        }
    }

    /// The printable character painted in `fg` on `bg` at `row`, `col` of `buf`, if the
    /// cell holds exactly one.
    pub fn read(&self, buf: &Buffer, row: usize, col: usize, fg: Rgb, bg: Rgb) -> Option<u8> {
        let (w, h) = self.cell;
        let (x0, y0) = (col * w, row * h);
        if row >= self.rows || col >= self.cols || x0 + w > buf.width || y0 + h > buf.height {
            return None;
        }
        (0x20..0x7f).find(|&ch| {
            let g = self.glyph(ch);
            (0..h).all(|y| {
                (0..w)
                    .all(|x| buf.pixel(x0 + x, y0 + y) == self.cell_pixel(g.as_ref(), x, y, fg, bg))
            })
        })
    }
}

/// Pixels in memory, rows `pitch` bytes apart, each pixel 32 bits little-endian (as a
/// PC's framebuffer holds them).
pub struct Buffer {
    pub width: usize,
    pub height: usize,
    pub pitch: usize,
    pub bytes: Vec<u8>,
}

impl Buffer {
    /// A black buffer; `pitch` is at least `4 * width`.
    pub fn new(width: usize, height: usize, pitch: usize) -> Buffer {
        let pitch = pitch.max(4 * width);
        Buffer {
            width,
            height,
            pitch,
            bytes: vec![0; pitch * height],
        }
    }

    /// The pixel at (`x`, `y`); 0 outside.
    pub fn pixel(&self, x: usize, y: usize) -> u32 {
        if x >= self.width || y >= self.height {
            return 0;
        }
        let at = y * self.pitch + 4 * x;
        u32::from_le_bytes([
            self.bytes[at],
            self.bytes[at + 1],
            self.bytes[at + 2],
            self.bytes[at + 3],
        ])
    }
}

impl Surface for Buffer {
    fn write(&mut self, x: usize, y: usize, px: &[u32]) {
        if y >= self.height || x >= self.width {
            return;
        }
        let n = px.len().min(self.width - x);
        let at = y * self.pitch + 4 * x;
        for (i, p) in px[..n].iter().enumerate() {
            self.bytes[at + 4 * i..at + 4 * i + 4].copy_from_slice(&p.to_le_bytes());
        }
    }
}
