//! losscope: evaluate loss functions on tensors dumped from training code,
//! with the reference implementations' exact semantics, and show where the
//! loss comes from.
//!
//! Data flows one way: [`input`] reads arrays, a [`loss`] validates them and
//! evaluates examples into a [`tally`], the tally becomes a [`report`], and a
//! [`format`](mod@format) renders it.

pub mod cli;
pub mod concentration;
pub mod diff;
pub mod error;
pub mod format;
pub mod input;
pub mod label_issues;
pub mod loss;
pub mod math;
pub mod output;
pub mod partial;
pub mod progress;
pub mod report;
pub mod run;
pub mod settings;
pub mod tally;
pub mod weights;

pub use run::{Outcome, run};
