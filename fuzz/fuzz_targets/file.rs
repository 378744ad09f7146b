//! Input files through `input::load`, the path the CLI takes: the file is
//! opened and checked (a regular file, not empty), its header read with
//! `pread`, its payload memory-mapped or decoded as it is read, and JSON
//! read whole within the text limit (a byte-order mark skipped). The first
//! byte picks the extension (bits 0-1: npy, npz, json, or none, which is
//! sniffed) and the key (bit 2: none, or `logits`); the rest is written to
//! a scratch file. Never a panic, and an accepted array has exactly as many
//! elements as its shape says, each readable.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use losscope::input::{Spec, load};

/// A folder of this process's own under the temporary directory.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("losscope-fuzz-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else { return };
    let extension = ["npy", "npz", "json", "bin"][(selector & 3) as usize];
    let key = (selector & 4 != 0).then(|| "logits".to_string());
    let path = scratch().join(format!("input.{extension}"));
    // A new file each time: a map of the previous one may not outlive it.
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, file).expect("write the input");
    if let Ok(tensor) = load(&Spec { path, key }, "logits") {
        let values = tensor.to_f64_vec();
        assert_eq!(values.len(), tensor.numel(), "shape {:?}", tensor.shape);
        std::hint::black_box(values.iter().sum::<f64>());
    }
});
