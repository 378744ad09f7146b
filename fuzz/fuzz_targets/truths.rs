//! The SSD ground-truth reader. Only `loss::ssd::load_truths(&Spec, images)` is
//! public, and it reads a path, so each input is written to a file first:
//! the first byte picks the file's extension (bits 0-1), the key (bits 2-3)
//! and the batch size the other inputs would have (bits 4-7, 0 to 15: the
//! CLI always passes the batch of `--loc`); the rest is the file. Never a
//! panic, and every box it accepts is finite, not flipped and not empty.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use losscope::input::Spec;
use losscope::loss::ssd::load_truths;

/// A folder of this process's own under the temporary directory.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("losscope-fuzz-truths-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else { return };
    // An empty file is refused before it is read; keep the fuzzer on content.
    if file.is_empty() {
        return;
    }
    let extension = ["json", "npy", "npz", "bin"][(selector & 3) as usize];
    let key = match (selector >> 2) & 3 {
        0 | 1 => None,
        2 => Some("truths".to_string()),
        _ => Some("boxes".to_string()),
    };
    let path = scratch().join(format!("truths.{extension}"));
    std::fs::write(&path, file).expect("write the input");
    let images = Some(usize::from(selector >> 4));
    if let Ok(truths) = load_truths(&Spec { path, key }, images) {
        for image in &truths.images {
            for gt in image {
                let [xmin, ymin, xmax, ymax] = gt.corners;
                assert!(gt.corners.iter().all(|v| v.is_finite()), "{gt:?}");
                assert!(xmin < xmax && ymin < ymax, "{gt:?}");
            }
        }
    }
});
