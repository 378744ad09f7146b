//! The memory floor: the least work any tool must do to look at every value
//! of a float32 `.npy` file once. Maps the file, skips the header, sums the
//! values in float64 on one thread and prints the sum.
//!
//!     floor bench/data/ce_logits.npy

use std::fs::File;

use memmap2::Mmap;

/// Offset of the payload: magic, version, header length, header.
fn payload_offset(bytes: &[u8]) -> Result<usize, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not an .npy file".into());
    }
    let (len_at, len_size) = if bytes[6] == 1 { (8, 2) } else { (8, 4) };
    let mut len = 0usize;
    for (i, b) in bytes[len_at..len_at + len_size].iter().enumerate() {
        len |= (*b as usize) << (8 * i);
    }
    let start = len_at + len_size + len;
    let header = String::from_utf8_lossy(&bytes[len_at + len_size..start]);
    if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
        return Err(format!("expected C-order little-endian float32, found {header}"));
    }
    Ok(start)
}

fn main() -> Result<(), String> {
    let path = std::env::args_os().nth(1).ok_or("usage: floor FILE.npy")?;
    let file = File::open(&path).map_err(|e| e.to_string())?;
    let map = unsafe { Mmap::map(&file) }.map_err(|e| e.to_string())?;
    let payload = &map[payload_offset(&map)?..];

    // Eight independent accumulators, so the adds are not one serial chain.
    let mut lanes = [0f64; 8];
    let mut blocks = payload.chunks_exact(32);
    for block in &mut blocks {
        for (lane, value) in lanes.iter_mut().zip(block.chunks_exact(4)) {
            *lane += f32::from_le_bytes(value.try_into().unwrap()) as f64;
        }
    }
    let rest: f64 = blocks.remainder().chunks_exact(4).map(|v| f32::from_le_bytes(v.try_into().unwrap()) as f64).sum();
    println!("{}", lanes.iter().sum::<f64>() + rest);
    Ok(())
}
