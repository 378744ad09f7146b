//! The raw command line, as clap parses it. Nothing here is validated beyond
//! types; `run` turns it into checked settings before any loss sees it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::loss::ssd::{Preset as SsdPreset, ZeroPositives};
use crate::loss::{FocalKind, FocalPreset, Normalize, Reduction};
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Cross entropy over class logits, as F.cross_entropy
    Ce(CeArgs),
    /// Binary cross entropy with logits, as F.binary_cross_entropy_with_logits
    Bce(BceArgs),
    /// Focal loss in a chosen framework's convention, beside the plain CE/BCE
    Focal(FocalArgs),
    /// The SSD MultiBox loss: matching, encoding, Smooth L1, hard negative mining
    Ssd(SsdArgs),
    /// Class counts of a target file and the class weights they suggest
    Weights(WeightsArgs),
    /// Compare two JSON reports; exit 1 when a number moved beyond the tolerance
    Diff(DiffArgs),
    /// Print a shell completion script
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff)
    Man,
}

#[derive(Debug, Args)]
pub struct SsdArgs {
    /// A bundle (.npz or JSON object) holding arrays named loc, conf, priors and
    /// truths; flags override its members
    #[arg(value_name = "BUNDLE")]
    pub bundle: Option<String>,
    /// Predicted offsets [B, P, 4] (FILE or FILE:KEY)
    #[arg(long, value_name = "SPEC")]
    pub loc: Option<String>,
    /// Class logits [B, P, C], class 0 = background
    #[arg(long, value_name = "SPEC")]
    pub conf: Option<String>,
    /// Priors [P, 4] as (cx, cy, w, h), or a built-in set: ssd300-voc, ssd300-coco
    #[arg(long, value_name = "SPEC|SET")]
    pub priors: Option<String>,
    /// Ground truths per image, rows [xmin, ymin, xmax, ymax, label] with 0-based labels:
    /// JSON lists, .npy [B, M, 5] padded with label < 0, or .npz with one array per image
    #[arg(long, value_name = "SPEC")]
    pub truths: Option<String>,
    /// Whose semantics to reproduce
    #[arg(long, value_enum, default_value_t = SsdPreset::SsdPytorch)]
    pub preset: SsdPreset,
    /// IoU at or above which a prior matches a box
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
    pub overlap: f64,
    /// Centre and size variances of the box encoding
    #[arg(long, value_name = "V0,V1", default_value = "0.1,0.2", value_delimiter = ',')]
    pub variance: Vec<f64>,
    /// Mined negatives per positive, per image
    #[arg(long, default_value_t = 3.0, allow_negative_numbers = true)]
    pub neg_pos: f64,
    /// Count every prior instead of mining hard negatives
    #[arg(long)]
    pub no_mining: bool,
    /// α, the weight of the localisation loss
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub loc_weight: f64,
    /// The confidence loss; with mining, negatives are ranked by it
    #[arg(long, value_enum, default_value_t = SsdConfLoss::Ce)]
    pub conf_loss: SsdConfLoss,
    /// Focal confidence loss: α on every class alike
    #[arg(long, default_value_t = 0.25, allow_negative_numbers = true)]
    pub alpha: f64,
    /// Focal confidence loss: γ
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true)]
    pub gamma: f64,
    /// The loss when no prior is positive: 0 as the SSD paper says, or NaN as ssd.pytorch gives
    #[arg(long, value_enum, default_value_t = ZeroPositives::Zero)]
    pub zero_positives: ZeroPositives,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// The confidence loss of the SSD loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SsdConfLoss {
    /// Softmax cross entropy
    Ce,
    /// Softmax focal loss -α(1 - p_y)^γ log p_y
    Focal,
}

#[derive(Debug, Args)]
pub struct WeightsArgs {
    /// Class indices of any integer dtype (FILE or FILE:KEY)
    #[arg(long, value_name = "SPEC")]
    pub targets: String,
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
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write to this file (atomically) instead of stdout
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
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
    /// Write the comparison to this file (atomically) instead of stdout
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CeArgs {
    /// A bundle (.npz or JSON object) holding arrays named logits, targets and,
    /// optionally, weight; flags override its members
    #[arg(value_name = "BUNDLE")]
    pub bundle: Option<String>,
    /// Logits [N, C], [N, C, d1, …] or class-last with --class-axis -1 (FILE or FILE:KEY)
    #[arg(long, value_name = "SPEC")]
    pub logits: Option<String>,
    /// Class indices (any integer dtype) or float probabilities shaped like the logits
    #[arg(long, value_name = "SPEC")]
    pub targets: Option<String>,
    /// Per-class weights: an inline list (1,2,0.5) or an array file
    #[arg(long, value_name = "LIST|SPEC", allow_hyphen_values = true)]
    pub weight: Option<String>,
    /// Targets equal to this are skipped, as PyTorch's ignore_index
    #[arg(long, default_value_t = -100, allow_negative_numbers = true)]
    pub ignore_index: i64,
    /// Label smoothing ε in [0, 1]
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub label_smoothing: f64,
    /// How the per-example losses are reduced to the value
    #[arg(long, value_enum, default_value_t = Reduction::Mean)]
    pub reduction: Reduction,
    /// The axis of the classes [default: 1, as PyTorch; 0 for a single example]
    #[arg(long, allow_negative_numbers = true)]
    pub class_axis: Option<i64>,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Debug, Args)]
pub struct BceArgs {
    /// A bundle (.npz or JSON object) holding arrays named logits, targets and,
    /// optionally, weight and pos_weight; flags override its members
    #[arg(value_name = "BUNDLE")]
    pub bundle: Option<String>,
    /// Logits of any shape (FILE or FILE:KEY)
    #[arg(long, value_name = "SPEC")]
    pub logits: Option<String>,
    /// Targets of the logits' shape, 0/1 or soft
    #[arg(long, value_name = "SPEC")]
    pub targets: Option<String>,
    /// Weights broadcast to the logits: an inline list or an array file
    #[arg(long, value_name = "LIST|SPEC", allow_hyphen_values = true)]
    pub weight: Option<String>,
    /// Positive-class weights broadcast along the last axis: an inline list or an array file
    #[arg(long, value_name = "LIST|SPEC", allow_hyphen_values = true)]
    pub pos_weight: Option<String>,
    /// How the per-element losses are reduced to the value
    #[arg(long, value_enum, default_value_t = Reduction::Mean)]
    pub reduction: Reduction,
    /// The axis whose index is the class in the per-class table [default: the last]
    #[arg(long, allow_negative_numbers = true)]
    pub class_axis: Option<i64>,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Debug, Args)]
pub struct FocalArgs {
    /// A bundle (.npz or JSON object) holding arrays named logits, targets and,
    /// optionally, weight; flags override its members
    #[arg(value_name = "BUNDLE")]
    pub bundle: Option<String>,
    /// Logits (FILE or FILE:KEY): [N, C] or [N, C, d1, …]; class-last with --class-axis -1
    #[arg(long, value_name = "SPEC")]
    pub logits: Option<String>,
    /// Sigmoid: float targets shaped like the logits, or class indices per row
    /// (expanded to one-hot); softmax: class indices
    #[arg(long, value_name = "SPEC")]
    pub targets: Option<String>,
    /// One sigmoid per element, or one softmax per row
    #[arg(long, value_enum, default_value_t = FocalKind::Sigmoid)]
    pub kind: FocalKind,
    /// Whose convention to reproduce [default: torchvision for sigmoid, kornia for softmax]
    #[arg(long, value_enum)]
    pub preset: Option<FocalPreset>,
    /// The focusing parameter γ ≥ 0 [default: 2]
    #[arg(long, allow_negative_numbers = true)]
    pub gamma: Option<f64>,
    /// α in [0, 1], `none` to switch it off, or (softmax) a per-class list or file [default: the preset's]
    #[arg(long, value_name = "ALPHA", allow_hyphen_values = true)]
    pub alpha: Option<String>,
    /// How the per-element losses are reduced [default: mean]
    #[arg(long, value_enum)]
    pub reduction: Option<Reduction>,
    /// The mean's divisor instead of the preset's: elements, rows, positives or a number
    #[arg(long, value_name = "DIVISOR", allow_negative_numbers = true)]
    pub normalize: Option<Normalize>,
    /// mmdet's avg_factor: the mean is sum / (F + 1.1920929e-07)
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    pub avg_factor: Option<f64>,
    /// Keras binary focal: apply α (Keras ignores it otherwise)
    #[arg(long)]
    pub class_balancing: bool,
    /// Keras label smoothing ε in [0, 1]
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub label_smoothing: f64,
    /// Sigmoid class-index targets: the label meaning "no class" [default: -1 and C]
    #[arg(long, allow_negative_numbers = true)]
    pub background: Option<i64>,
    /// Softmax: the background class; targets of other classes are positives
    #[arg(long, value_name = "K")]
    pub background_class: Option<usize>,
    /// The axis of the classes [default: the last for sigmoid, 1 for softmax]
    #[arg(long, allow_negative_numbers = true)]
    pub class_axis: Option<i64>,
    /// Per-class weights on the target class (kornia, mmcv, uniform): a list or an array file
    #[arg(long, value_name = "LIST|SPEC", allow_hyphen_values = true)]
    pub weight: Option<String>,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Markdown,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the report to this file (atomically) instead of stdout
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Class names: a file (one per line, or a JSON list) or an inline list a,b,c
    #[arg(long, value_name = "FILE|LIST")]
    pub class_names: Option<String>,
    /// Examples with p_t above this are easy
    #[arg(long, default_value_t = 0.5)]
    pub easy_threshold: f64,
    /// Bins of the p_t histogram
    #[arg(long, default_value_t = 10)]
    pub bins: usize,
    /// Show only the N classes (and, for ssd, images) with the largest share (table and markdown)
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Exit 1 when the value differs from this
    #[arg(long, value_name = "VALUE", allow_negative_numbers = true)]
    pub expect: Option<f64>,
    /// Relative tolerance of --expect
    #[arg(long, default_value_t = 1e-6, requires = "expect", allow_negative_numbers = true)]
    pub rtol: f64,
    /// Absolute tolerance of --expect
    #[arg(long, default_value_t = 0.0, requires = "expect", allow_negative_numbers = true)]
    pub atol: f64,
    /// Compute even when logits hold NaN or infinities (the loss may then be NaN)
    #[arg(long)]
    pub allow_nonfinite: bool,
    /// No progress bar
    #[arg(short, long)]
    pub quiet: bool,
    /// Worker threads [default: one per core]; results do not depend on it
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}
