//! The restricted unpickler of `torch.save` files, through
//! `input::from_bytes(…, Container::Torch, …)`: the input after its first
//! byte is the archive's `data.pkl`, stored beside a 64-byte storage
//! `archive/data/0` in an archive written here, so every mutation reaches
//! the unpickler rather than the zip reader. The first byte picks the key:
//! none, `logits` or `logits.0`. Never a panic, and an accepted tensor has
//! as many elements as its shape says, each readable.
#![no_main]

use std::io::{Cursor, Write};

use libfuzzer_sys::fuzz_target;
use losscope::input::{Container, from_bytes};
use zip::CompressionMethod;
use zip::write::{SimpleFileOptions, ZipWriter};

/// A `torch.save`-shaped archive around `pickle`.
fn archive(pickle: &[u8]) -> Vec<u8> {
    let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    writer.start_file("archive/data.pkl", stored).expect("a member");
    writer.write_all(pickle).expect("written to memory");
    writer.start_file("archive/data/0", stored).expect("a member");
    writer.write_all(&[0x3f; 64]).expect("written to memory");
    writer.finish().expect("an archive").into_inner()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, pickle)) = data.split_first() else { return };
    let key = [None, Some("logits"), Some("logits.0")][selector as usize % 3];
    if let Ok(tensor) = from_bytes(&archive(pickle), Container::Torch, key, "logits") {
        let values = tensor.to_f64_vec();
        assert_eq!(values.len(), tensor.numel(), "shape {:?}", tensor.shape);
        std::hint::black_box(values.iter().sum::<f64>());
    }
});
