//! JSON arrays and bundles through `input::from_bytes`, both without a key
//! (a bare array, or the member named after the role) and with the key
//! `logits`: never a panic, and an accepted array is rectangular.
#![no_main]

use libfuzzer_sys::fuzz_target;
use losscope::input::{Container, from_bytes};

fuzz_target!(|data: &[u8]| {
    for key in [None, Some("logits")] {
        if let Ok(tensor) = from_bytes(data, Container::Json, key, "logits") {
            let values = tensor.to_f64_vec();
            assert_eq!(values.len(), tensor.numel(), "shape {:?}", tensor.shape);
            std::hint::black_box(values.iter().sum::<f64>());
        }
    }
});
