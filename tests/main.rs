//! The integration tests: one binary, one module per concern.

mod util;

mod bad_input;
mod charts;
mod conventions;
mod diff;
mod distributed;
mod docs;
mod examples;
mod focal;
mod formats;
mod fuzz_regressions;
mod inputs;
mod output;
mod parity;
mod properties;
mod reliability_inputs;
mod reliability_outputs;
mod schema;
mod ssd;
mod weights;
