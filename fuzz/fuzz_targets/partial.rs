//! Partial reports as `losscope merge` reads them: any bytes must give a
//! partial or an error, never a panic, and a partial that is read must turn
//! into a report that renders.
#![no_main]

use libfuzzer_sys::fuzz_target;
use losscope::format::{Format, Layout, exporter};
use losscope::partial::Partial;

fuzz_target!(|data: &[u8]| {
    let Ok(partial) = Partial::from_bytes(data) else { return };
    let report = partial.into_report();
    let _ = exporter(Format::Json, Layout::default(), None).render(&report);
});
