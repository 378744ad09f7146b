//! The memory floor: the least work any tool must do to look at every value
//! of its input files once. Maps each file, finds its values, sums them in
//! float64 with one thread per core (or `--threads N`) and prints the sum.
//!
//!     floor [--threads N] FILE...
//!
//! Values by format: a `.npy` payload by its dtype (floats and integers;
//! 2-byte types as their raw bits); every tensor of a `.safetensors` file by
//! its dtype (BF16 widened to float32 as losscope does); any other file (the
//! SSD truths' JSON) byte by byte.

use std::fs::File;

use memmap2::Mmap;

/// How the bytes of one stretch are read as numbers.
#[derive(Clone, Copy)]
enum Kind {
    F32,
    F64,
    Bf16,
    I64,
    I32,
    U16,
    U8,
}

impl Kind {
    fn size(self) -> usize {
        match self {
            Kind::F64 | Kind::I64 => 8,
            Kind::F32 | Kind::I32 => 4,
            Kind::Bf16 | Kind::U16 => 2,
            Kind::U8 => 1,
        }
    }

    /// The kind of a `.npy` dtype (`<f4`) or a `.safetensors` one (`F32`);
    /// 2-byte numbers other than bfloat16 are summed as their raw bits.
    fn named(name: &str) -> Option<Kind> {
        const NAMES: [(Kind, &[&str]); 7] = [
            (Kind::F32, &["<f4", "F32"]),
            (Kind::F64, &["<f8", "F64"]),
            (Kind::Bf16, &["BF16"]),
            (Kind::I64, &["<i8", "<u8", "I64", "U64"]),
            (Kind::I32, &["<i4", "<u4", "I32", "U32"]),
            (Kind::U16, &["<f2", "<i2", "<u2", "F16", "I16", "U16"]),
            (Kind::U8, &["|b1", "|i1", "|u1", "BOOL", "I8", "U8"]),
        ];
        NAMES.iter().find(|(_, names)| names.contains(&name)).map(|(kind, _)| *kind)
    }

    /// The value of one element (`bytes.len() == self.size()`).
    #[inline(always)]
    fn value(self, b: &[u8]) -> f64 {
        match self {
            Kind::F32 => f32::from_le_bytes(b.try_into().unwrap()) as f64,
            Kind::F64 => f64::from_le_bytes(b.try_into().unwrap()),
            Kind::Bf16 => f32::from_bits((u16::from_le_bytes(b.try_into().unwrap()) as u32) << 16) as f64,
            Kind::I64 => i64::from_le_bytes(b.try_into().unwrap()) as f64,
            Kind::I32 => i32::from_le_bytes(b.try_into().unwrap()) as f64,
            Kind::U16 => u16::from_le_bytes(b.try_into().unwrap()) as f64,
            Kind::U8 => b[0] as f64,
        }
    }
}

/// A stretch of one mapped file holding values of one kind.
struct Stretch<'a> {
    bytes: &'a [u8],
    kind: Kind,
}

fn little_endian(bytes: &[u8]) -> usize {
    bytes.iter().rev().fold(0, |n, b| (n << 8) | *b as usize)
}

/// The payload of an `.npy` file: magic, version, header length, header.
fn npy(bytes: &[u8]) -> Result<Vec<Stretch<'_>>, String> {
    let len_size = if bytes[6] == 1 { 2 } else { 4 };
    let start = 8 + len_size + little_endian(&bytes[8..8 + len_size]);
    let header = String::from_utf8_lossy(&bytes[8 + len_size..start]);
    let descr = header.split("'descr':").nth(1).and_then(|s| s.split('\'').nth(1)).unwrap_or("");
    let kind = Kind::named(descr).ok_or_else(|| format!("unsupported .npy dtype in {header}"))?;
    Ok(vec![Stretch { bytes: &bytes[start..], kind }])
}

/// Every tensor of a `.safetensors` file, by the dtypes and offsets of its
/// header (read with a few string splits: the header is flat JSON).
fn safetensors(bytes: &[u8]) -> Result<Vec<Stretch<'_>>, String> {
    let start = 8 + little_endian(&bytes[..8]);
    let header = std::str::from_utf8(&bytes[8..start]).map_err(|e| e.to_string())?;
    let data = &bytes[start..];
    let mut stretches = Vec::new();
    for entry in header.split("\"dtype\"").skip(1) {
        let dtype = entry.split('"').nth(1).unwrap_or("");
        let kind = Kind::named(dtype).ok_or_else(|| format!("unsupported safetensors dtype {dtype}"))?;
        let offsets = entry.split("\"data_offsets\"").nth(1).ok_or("no data_offsets")?;
        let inside = offsets.split('[').nth(1).and_then(|s| s.split(']').next()).ok_or("bad data_offsets")?;
        let mut ends = inside.split(',').map(|s| s.trim().parse::<usize>());
        let (Some(Ok(from)), Some(Ok(to))) = (ends.next(), ends.next()) else {
            return Err(format!("bad data_offsets [{inside}]"));
        };
        stretches.push(Stretch { bytes: &data[from..to], kind });
    }
    Ok(stretches)
}

fn stretches(bytes: &[u8]) -> Result<Vec<Stretch<'_>>, String> {
    if bytes.len() >= 10 && &bytes[..6] == b"\x93NUMPY" {
        npy(bytes)
    } else if bytes.len() >= 9 && bytes[8] == b'{' && bytes[..8].iter().rev().take(4).all(|b| *b == 0) {
        safetensors(bytes)
    } else {
        Ok(vec![Stretch { bytes, kind: Kind::U8 }])
    }
}

/// Sums one stretch with eight independent accumulators, so that the adds
/// are not one serial chain.
fn sum(bytes: &[u8], kind: Kind) -> f64 {
    let size = kind.size();
    let mut lanes = [0f64; 8];
    let mut blocks = bytes.chunks_exact(8 * size);
    for block in &mut blocks {
        for (lane, value) in lanes.iter_mut().zip(block.chunks_exact(size)) {
            *lane += kind.value(value);
        }
    }
    let rest: f64 = blocks.remainder().chunks_exact(size).map(|v| kind.value(v)).sum();
    lanes.iter().sum::<f64>() + rest
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1).peekable();
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if args.peek().map(String::as_str) == Some("--threads") {
        args.next();
        threads = args
            .next()
            .and_then(|n| n.parse().ok())
            .filter(|n| *n > 0)
            .ok_or("--threads takes a positive number")?;
    }
    let paths: Vec<String> = args.collect();
    if paths.is_empty() {
        return Err("usage: floor [--threads N] FILE...".into());
    }
    let mut maps = Vec::new();
    for path in &paths {
        let file = File::open(path).map_err(|e| format!("{path}: {e}"))?;
        maps.push(unsafe { Mmap::map(&file) }.map_err(|e| format!("{path}: {e}"))?);
    }
    // Cut every stretch into pieces of about 1 MiB, dealt out to the threads
    // in turn, so that each thread gets an even share of every file.
    const PIECE: usize = 1 << 20;
    let mut pieces = Vec::new();
    for (map, path) in maps.iter().zip(&paths) {
        for s in stretches(map).map_err(|e| format!("{path}: {e}"))? {
            let piece = PIECE / s.kind.size() * s.kind.size();
            pieces.extend(s.bytes.chunks(piece).map(|bytes| (bytes, s.kind)));
        }
    }
    let total: f64 = std::thread::scope(|scope| {
        let pieces = &pieces;
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    pieces.iter().skip(t).step_by(threads).map(|(b, k)| sum(b, *k)).sum::<f64>()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    println!("{total}");
    Ok(())
}
