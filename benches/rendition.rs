//! Where a rendition frame's time goes, per 1280x720 source frame: the
//! scaled decode into planes, the resize and the encode, for 640- and
//! 320-wide variants, and the whole path beside `jpeg-decoder`'s.
//!
//! ```sh
//! cargo bench --bench rendition                # a frame of /tmp/frames/720p
//!                                              # (decode_planes_moving: all of them)
//! FRAME=path/to/frame.jpg cargo bench --bench rendition
//! ```

use divan::{Bencher, black_box};
use mjpegd::encode;
use mjpegd::rendition::decode;
use mjpegd::rendition::planes::Planes;
use mjpegd::rendition::scale;
use std::path::PathBuf;
use std::sync::OnceLock;

fn main() {
    println!("source frame: {} bytes", frame().len());
    // Encoded twice in a row, as the timed loops do: the same bytes unless
    // the backend's output depends on what it encoded before.
    for width in WIDTHS {
        let height = width * 9 / 16;
        let d = decode::decode(frame(), width, height).expect("decodes");
        let planes = Planes::from_decoded(&d, width, height);
        let size = || encode::encode_planes(&planes, 75).map_or(0, |j| j.len());
        let (first, next) = (size(), size());
        println!("encode_planes {width}x{height} q75: JPEG bytes first {first}, next {next}");
    }
    divan::main();
}

/// The first of [`frames`].
fn frame() -> &'static [u8] {
    &frames()[0]
}

/// `$FRAME` alone, or every JPEG of /tmp/frames/720p (the benchmark's
/// frames) in name order. `decode_planes_moving` decodes a different one
/// each time, as a stream does: one frame decoded over and over lets the
/// CPU learn its bits by heart (branch prediction) and reads too fast.
fn frames() -> &'static [Vec<u8>] {
    static FRAMES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        let paths: Vec<PathBuf> = match std::env::var_os("FRAME") {
            Some(path) => vec![path.into()],
            None => {
                let mut names: Vec<PathBuf> = std::fs::read_dir("/tmp/frames/720p")
                    .expect("/tmp/frames/720p (bench/renditions.sh makes it) or FRAME=")
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                names.sort();
                names
            }
        };
        assert!(!paths.is_empty(), "no frames in /tmp/frames/720p");
        paths
            .iter()
            .map(|path| std::fs::read(path).expect("reads the frame"))
            .collect()
    })
}

const WIDTHS: [usize; 2] = [640, 320];

#[divan::bench(args = WIDTHS)]
fn decode_planes(b: Bencher, width: usize) {
    b.bench(|| decode::decode(black_box(frame()), width, width * 9 / 16).expect("decodes"));
}

#[divan::bench(args = WIDTHS)]
fn decode_planes_moving(b: Bencher, width: usize) {
    let all = frames();
    let mut next = 0;
    b.bench_local(|| {
        next = (next + 1) % all.len();
        decode::decode(black_box(&all[next]), width, width * 9 / 16).expect("decodes")
    });
}

#[divan::bench(args = WIDTHS)]
fn encode_planes(b: Bencher, width: usize) {
    let d = decode::decode(frame(), width, width * 9 / 16).expect("decodes");
    let planes = Planes::from_decoded(&d, width, width * 9 / 16);
    b.bench(|| encode::encode_planes(black_box(&planes), 75).expect("encodes"));
}

#[divan::bench(args = WIDTHS)]
fn whole_rendition(b: Bencher, width: usize) {
    let h = (width * 9 / 16) as u16;
    b.bench(|| scale::render(black_box(frame()), width as u16, h, 75).expect("renders"));
}

#[divan::bench(args = WIDTHS)]
fn jpeg_decoder_scaled_rgb(b: Bencher, width: usize) {
    b.bench(|| {
        let mut d = jpeg_decoder::Decoder::new(black_box(frame()));
        d.scale(width as u16, (width * 9 / 16) as u16)
            .expect("scales");
        d.decode().expect("decodes")
    });
}
