//! `.npz` archives through `input::from_bytes`, member `logits`: never a
//! panic, and an accepted array has as many elements as its shape says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use losscope::input::{Container, from_bytes};

fuzz_target!(|data: &[u8]| {
    if let Ok(tensor) = from_bytes(data, Container::Npz, Some("logits"), "logits") {
        let values = tensor.to_f64_vec();
        assert_eq!(values.len(), tensor.numel(), "shape {:?}", tensor.shape);
        std::hint::black_box(values.iter().sum::<f64>());
    }
});
