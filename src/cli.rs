//! The raw command line, as clap parses it. Nothing here is validated beyond
//! types; [`crate::settings`] and each loss turn it into checked settings
//! before any pass sees it. The loss subcommands come from the loss
//! registry ([`LossCommand`]), each with the argument type its module owns.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::format::Format;
use crate::loss::LossCommand;
use crate::settings::{CHART_HELP, MergeArgs, OutputArgs};
use crate::weights::Scheme;

#[derive(Debug, Parser)]
#[command(
    name = "losscope",
    version,
    about = "Evaluate loss functions on dumped tensors and show where the loss comes from",
    long_about = "Evaluate loss functions on tensors dumped from training code (.npy, .npz, JSON) \
                  with PyTorch's exact semantics, computed in float64, and show where the loss \
                  comes from: per class, easy versus hard examples, and how concentrated it is.",
    help_expected = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// One `Command` is parsed per run: the size of its largest variant costs
// nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Loss(LossCommand),
    /// Class counts of a target file and the class weights they suggest
    Weights(WeightsArgs),
    /// Compare two JSON reports; exit 1 when a number moved beyond the tolerance
    Diff(DiffArgs),
    /// Merge partial reports (written with --partial) into the report of all their data
    Merge(MergeArgs),
    /// Print a shell completion script
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff)
    Man,
}

#[derive(Debug, Args)]
pub struct WeightsArgs {
    /// A bundle (.npz or JSON object) holding an array named targets; --targets overrides it
    #[arg(value_name = "BUNDLE")]
    pub bundle: Option<String>,
    /// Class indices, or [N, C] one-hot or probability rows (FILE or FILE:KEY)
    #[arg(long, value_name = "SPEC")]
    pub targets: Option<String>,
    /// The scheme of the torch.tensor line
    #[arg(long, value_enum, default_value_t = Scheme::Inverse)]
    pub scheme: Scheme,
    /// β of the effective-number scheme, in (0, 1)
    #[arg(long, default_value_t = 0.999)]
    pub beta: f64,
    /// Targets equal to this are not counted
    #[arg(long, default_value_t = -100, allow_negative_numbers = true)]
    pub ignore_index: i64,
    /// The number of classes [default: the largest label + 1]
    #[arg(long, value_name = "C")]
    pub classes: Option<usize>,
    /// Class names: a file (one per line, or a JSON list) or an inline list a,b,c
    #[arg(long, value_name = "FILE|LIST")]
    pub class_names: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The stored report to compare against
    pub baseline: PathBuf,
    /// The report of this run
    pub current: PathBuf,
    /// Relative tolerance, against the baseline's value
    #[arg(long, default_value_t = 1e-6, allow_negative_numbers = true)]
    pub rtol: f64,
    /// Absolute tolerance
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub atol: f64,
    /// Compare only these fields and what lies under them (value,classes,difficulty.easy)
    #[arg(long, value_delimiter = ',', value_name = "FIELDS")]
    pub only: Vec<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[arg(long, value_name = "NAME", help = CHART_HELP)]
    pub chart: Option<String>,
    /// Write the comparison to this file (atomically) instead of stdout
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}
