//! The screen console's pure parts: the text grid (title, log that wraps and scrolls, only
//! changed cells drawn) and the glyph painter (cells into 32-bit pixels laid out RGB or BGR
//! with a pitch, and read back).

use hypervisor::bootinfo::{Channel, RgbLayout};
use hypervisor::glyph::{Buffer, Painter, PixelFormat, Rgb};
use hypervisor::screen::{Grid, Style};
use std::collections::BTreeMap;

/// Flushes `g`, returning the cells it drew.
fn drawn(g: &mut Grid) -> BTreeMap<(usize, usize), (u8, Style)> {
    let mut cells = BTreeMap::new();
    g.flush(|row, col, ch, style| {
        assert!(
            cells.insert((row, col), (ch, style)).is_none(),
            "cell {row},{col} drawn twice"
        );
    });
    cells
}

#[test]
fn the_grid_scrolls_the_log_under_its_title_and_draws_only_what_changed() {
    let mut g = Grid::new(8, 4).expect("a grid");
    assert!(Grid::new(8, 1).is_none() && Grid::new(0, 4).is_none());
    // The first flush draws every cell, blank as they are.
    assert_eq!(drawn(&mut g).len(), 32);
    assert!(drawn(&mut g).is_empty());

    g.set_title("hv: 9P on tcp!10.0.2.15!564");
    g.write("one\ntwo\n");
    assert_eq!(g.text(), ["hv: 9P o", "one     ", "two     ", "        "]);
    let cells = drawn(&mut g);
    assert_eq!(cells[&(0, 0)], (b'h', Style::Title));
    assert_eq!(cells[&(1, 0)], (b'o', Style::Text));
    // "hv: 9P o" but its two blanks, then "one" and "two".
    assert_eq!(cells.len(), 6 + 3 + 3);

    // Past the last row the log moves up; a line longer than a row wraps; bytes that are
    // not printable ASCII show as '?'.
    g.write("three\nabcdefghij\u{7}\n");
    assert_eq!(g.text(), ["hv: 9P o", "abcdefgh", "ij?     ", "        "]);
    let cells = drawn(&mut g);
    // Only the cells whose character changed: the title stays as drawn.
    assert!(cells.keys().all(|&(row, _)| row > 0));
    assert_eq!(cells[&(2, 2)], (b'?', Style::Text));
    assert!(!cells.contains_key(&(3, 0)), "row 3 was blank and is blank");
}

fn layout(red: u8, green: u8, blue: u8) -> RgbLayout {
    let ch = |shift| Channel { shift, bits: 8 };
    RgbLayout {
        red: ch(red),
        green: ch(green),
        blue: ch(blue),
    }
}

const WHITE: Rgb = Rgb(0xff, 0xff, 0xff);
const BLUE: Rgb = Rgb(0, 0, 0x80);

#[test]
fn pixel_formats_put_each_channel_where_the_screen_says() {
    // GOP's usual BGRX (red at bit 16: bytes B, G, R in memory) and RGBX (red at bit 0).
    let bgrx = PixelFormat::new(&layout(16, 8, 0)).unwrap();
    let rgbx = PixelFormat::new(&layout(0, 8, 16)).unwrap();
    assert_eq!(bgrx.encode(Rgb(1, 2, 3)).to_le_bytes(), [3, 2, 1, 0]);
    assert_eq!(rgbx.encode(Rgb(1, 2, 3)).to_le_bytes(), [1, 2, 3, 0]);
    // 5- or 6-bit channels (16-bit screens) are not drawn on.
    let mut l = layout(11, 5, 0);
    l.red.bits = 5;
    assert_eq!(PixelFormat::new(&l), None);
}

#[test]
fn the_painter_picks_a_font_for_the_screen_and_fits_cells() {
    let f = PixelFormat::new(&layout(16, 8, 0)).unwrap();
    let p = Painter::new(1280, 800, f).unwrap();
    assert_eq!((p.cell, p.cols, p.rows), ((7, 16), 182, 50));
    // Larger screens get a larger font while it leaves 40 rows.
    assert_eq!(Painter::new(1920, 1080, f).unwrap().cell.1, 24);
    assert_eq!(Painter::new(3840, 2160, f).unwrap().cell.1, 32);
    assert_eq!(Painter::new(640, 480, f).unwrap().cell.1, 16);
    assert!(Painter::new(5, 480, f).is_none());
}

#[test]
fn painted_text_reads_back_in_either_channel_order_and_stays_inside_its_cells() {
    for f in [layout(16, 8, 0), layout(0, 8, 16)] {
        let f = PixelFormat::new(&f).unwrap();
        // 100 x 40 pixels with a pitch of 480 bytes (80 bytes past each row's pixels).
        let p = Painter::new(100, 40, f).unwrap();
        let (w, h) = p.cell;
        let mut buf = Buffer::new(100, 40, 480);
        buf.bytes.fill(0xee);
        p.clear(&mut buf, 100, 40, BLUE);
        let text = b"tcp!10.0.2.15!564";
        for (col, &ch) in text.iter().enumerate() {
            p.draw(&mut buf, 1, col, ch, WHITE, BLUE);
        }
        let back: Vec<u8> = (0..text.len())
            .map(|col| p.read(&buf, 1, col, WHITE, BLUE).unwrap_or(b'#'))
            .collect();
        assert_eq!(back[..p.cols], text[..p.cols]);
        // Row 0 is clear: spaces; in other colours it reads as nothing.
        assert_eq!(p.read(&buf, 0, 0, WHITE, BLUE), Some(b' '));
        assert_eq!(p.read(&buf, 1, 0, BLUE, WHITE), None);
        // The glyph's strokes are blended towards the foreground, the rest is background.
        let px: Vec<u32> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, h + y)))
            .map(|(x, y)| buf.pixel(x, y))
            .collect();
        let bg = f.encode(BLUE);
        assert!(px.contains(&bg) && px.iter().any(|&p| p != bg));
        // The bytes past each row's pixels (the pitch's padding) are untouched.
        assert!((0..40).all(|y| buf.bytes[y * 480 + 400..(y + 1) * 480]
            .iter()
            .all(|&b| b == 0xee)));
        // Cells past the grid are not drawn.
        let before = buf.bytes.clone();
        p.draw(&mut buf, p.rows, 0, b'x', WHITE, BLUE);
        p.draw(&mut buf, 0, p.cols, b'x', WHITE, BLUE);
        assert!(buf.bytes == before);
    }
}
