//! A progress bar on stderr for long passes, shown only when stderr is a
//! terminal and the user did not ask for quiet.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Passes smaller than this many input elements finish before a bar helps.
const WORTH_A_BAR: u64 = 50_000_000;

pub struct Progress {
    bar: ProgressBar,
    per_unit: u64,
}

impl Progress {
    /// A bar over `units` units of `per_unit` elements each.
    pub fn new(units: u64, per_unit: u64, quiet: bool) -> Progress {
        let elements = units.saturating_mul(per_unit);
        let show = !quiet && elements >= WORTH_A_BAR && std::io::stderr().is_terminal();
        let bar = if show {
            let bar = ProgressBar::with_draw_target(Some(elements), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {bar:40} {percent:>3}% {human_pos}/{human_len} values, {eta}",
                )
                .expect("a valid template"),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress { bar, per_unit }
    }

    /// Records `units` finished units.
    pub fn advance(&self, units: u64) {
        self.bar.inc(units * self.per_unit);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// A bar over the shards of a run over several, with the bytes read so far;
/// shown only when stderr is a terminal and the user did not ask for quiet.
pub struct ShardProgress {
    bar: ProgressBar,
    bytes: std::cell::Cell<u64>,
}

impl ShardProgress {
    pub fn new(shards: u64, quiet: bool) -> ShardProgress {
        let bar = if !quiet && shards > 1 && std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(shards), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} shard {pos}/{len} {bar:30} {msg}, {eta}")
                    .expect("a valid template"),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        ShardProgress { bar, bytes: Default::default() }
    }

    /// Records a finished shard of `bytes` input bytes.
    pub fn advance(&self, bytes: u64) {
        self.bytes.set(self.bytes.get() + bytes);
        self.bar.set_message(format!("{} read", crate::input::size_text(self.bytes.get())));
        self.bar.inc(1);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
