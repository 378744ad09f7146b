//! The validation layer: raw flags in, checked settings out, before any file
//! is read or any loss sees them. Each rule is checked here once, with one
//! message that names the flag; the modules past this point speak of
//! values, not of flags.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::{Error, Origin, Result};
use crate::format::{Format, Layout};
use crate::output;

/// Where a document goes and in what form: the flags of every command that
/// writes one.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[arg(long, value_name = "NAME", help = CHART_HELP)]
    pub chart: Option<String>,
    /// Write the report to this file (atomically) instead of stdout
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `--expect` and its tolerance: the flags of every command that checks a value.
#[derive(Debug, Clone, Args)]
pub struct ExpectArgs {
    /// Exit 1 when the value differs from this
    #[arg(long, value_name = "VALUE", allow_negative_numbers = true)]
    pub expect: Option<f64>,
    /// Relative tolerance of --expect
    #[arg(long, default_value_t = 1e-6, requires = "expect", allow_negative_numbers = true)]
    pub rtol: f64,
    /// Absolute tolerance of --expect
    #[arg(long, default_value_t = 0.0, requires = "expect", allow_negative_numbers = true)]
    pub atol: f64,
}

/// The flags every loss subcommand shares: how the report is computed and
/// where it goes.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    /// Class names: a file (one per line, or a JSON list) or an inline list a,b,c
    #[arg(long, value_name = "FILE|LIST")]
    pub class_names: Option<String>,
    /// Examples with p_t above this are easy
    #[arg(long, default_value_t = 0.5)]
    pub easy_threshold: f64,
    /// Bins of the p_t histogram
    #[arg(long, default_value_t = 10)]
    pub bins: usize,
    /// Rows of the class table (and of ssd's image table) to show, largest share first, or all;
    /// in table, markdown and html (JSON holds every row)
    #[arg(long, value_name = "N|all", default_value = "20")]
    pub top: Top,
    #[command(flatten)]
    pub expect: ExpectArgs,
    /// Compute even when logits hold NaN or infinities (the loss may then be NaN)
    #[arg(long)]
    pub allow_nonfinite: bool,
    /// No progress bar
    #[arg(short, long)]
    pub quiet: bool,
    /// Worker threads [default: one per core]; results do not depend on it
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// List the K examples with the largest loss (0: none)
    #[arg(long, value_name = "K", default_value_t = 10)]
    pub examples: usize,
    /// Write every example's loss to this .npy file (float64, PyTorch's reduction='none' layout)
    #[arg(long, value_name = "PATH")]
    pub per_example: Option<PathBuf>,
    /// Bins of the calibration figures (confidence against accuracy)
    #[arg(long, value_name = "N", default_value_t = 15)]
    pub calibration_bins: usize,
    /// Find suspected label errors by confident learning (softmax losses; a second pass)
    #[arg(long)]
    pub label_issues: bool,
    /// Write the flat indices of every suspected label error to this .npy file (int64), least
    /// self-confident first; implies --label-issues
    #[arg(long, value_name = "PATH")]
    pub suspects_out: Option<PathBuf>,
    /// Write the run's mergeable state to -o FILE instead of a report, for `losscope merge`
    #[arg(long, requires = "output", conflicts_with_all = ["expect", "label_issues", "suspects_out", "chart"])]
    pub partial: bool,
}

/// `--top`: how many rows of a ranked table a person is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Top {
    Rows(usize),
    All,
}

impl std::str::FromStr for Top {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Top, String> {
        if text.eq_ignore_ascii_case("all") {
            return Ok(Top::All);
        }
        text.parse().map(Top::Rows).map_err(|_| "a number of rows, or all".to_string())
    }
}

/// The flags of `losscope merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Partial report files, or quoted glob patterns ('parts/*.lsp')
    #[arg(required = true, value_name = "PARTIAL")]
    pub parts: Vec<String>,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Rows of the class table to show, largest share first, or all; in table, markdown and
    /// html (JSON holds every row)
    #[arg(long, value_name = "N|all", default_value = "20")]
    pub top: Top,
    /// Write the merged partial state to -o FILE instead of a report (merges form a tree)
    #[arg(long, requires = "output", conflicts_with_all = ["expect", "chart"])]
    pub partial: bool,
    #[command(flatten)]
    pub expect: ExpectArgs,
}

/// The most hardest examples `--examples` may ask for: each is a line of the
/// table and an entry of the JSON report, which is for reading, not for
/// every example (that is `--per-example`).
pub const MAX_EXAMPLES: usize = 100_000;

/// The most worker threads `--threads` may ask for: more than the cores of
/// the largest machines, and far more than a pass can use, since it is cut
/// into at most [`crate::tally::MAX_CHUNKS`] chunks. A larger count is a
/// typo, and used to start threads until the system refused.
pub const MAX_THREADS: usize = 1024;

/// The report flags, checked.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    pub analysis: Analysis,
    pub delivery: Delivery,
    /// `--expect`: the value the report must have.
    pub expect: Option<Expectation>,
    /// Whether the run writes its partial state instead of a report.
    pub partial: bool,
}

/// How a pass runs and its report is assembled: everything but delivery.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub class_names: Option<Vec<String>>,
    pub easy_threshold: f64,
    pub bins: usize,
    pub allow_nonfinite: bool,
    pub quiet: bool,
    /// Worker threads; `None` uses one per core. Results do not depend on it.
    pub threads: Option<usize>,
    /// How many hardest examples the report lists.
    pub examples: usize,
    /// Bins of the calibration figures.
    pub calibration_bins: usize,
    /// Where every example's loss goes, when it is written.
    pub per_example: Option<PathBuf>,
    /// Whether to look for suspected label errors.
    pub label_issues: bool,
    /// Where the suspects' flat indices go, when they are written.
    pub suspects_out: Option<PathBuf>,
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            class_names: None,
            easy_threshold: 0.5,
            bins: 10,
            allow_nonfinite: false,
            quiet: true,
            threads: None,
            examples: 10,
            calibration_bins: 15,
            per_example: None,
            label_issues: false,
            suspects_out: None,
        }
    }
}

/// The help of `--chart`: every chart name, and which reports have it.
pub const CHART_HELP: &str = "The chart to write with --format svg: classes, p_t, concentration, calibration \
                              (every loss); confusion (ce, softmax focal, ssd); groups, images (ssd); weights \
                              (weights); diff (diff)";

/// Where and how a document is written.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub format: Format,
    pub layout: Layout,
    /// The chart `--format svg` writes.
    pub chart: Option<String>,
    /// The file to write; `None` is stdout.
    pub output: Option<PathBuf>,
}

impl Delivery {
    /// The delivery the output flags ask for.
    pub fn of(args: &OutputArgs, layout: Layout) -> Result<Self> {
        Delivery::new(args.format, layout, args.chart.clone(), args.output.clone())
    }

    /// Checks, before any work, that the output can be written.
    pub fn new(
        format: Format,
        layout: Layout,
        chart: Option<String>,
        output: Option<PathBuf>,
    ) -> Result<Self> {
        match (format, &chart) {
            (Format::Svg, None) => {
                return Err(Error::usage("--format svg writes one chart: name it with --chart NAME"));
            }
            (Format::Svg, Some(_)) | (_, None) => {}
            (_, Some(name)) => {
                return Err(Error::usage(format!(
                    "--chart {name} is for --format svg (html shows every chart)"
                )));
            }
        }
        if let Some(path) = &output {
            output::check_destination(path)?;
        }
        let width = if format == Format::Table && output.is_none() { output::terminal_width() } else { None };
        Ok(Delivery { format, layout: Layout { width, ..layout }, chart, output })
    }
}

/// `--top`: the rows a ranked table shows, `None` for all.
fn top_rows(top: Top) -> Result<Option<usize>> {
    match top {
        Top::Rows(0) => Err(Error::usage("--top must be at least 1 (or all)")),
        Top::Rows(rows) => Ok(Some(rows)),
        Top::All => Ok(None),
    }
}

impl ExpectArgs {
    /// `--expect` with its tolerance, checked.
    fn checked(&self) -> Result<Option<Expectation>> {
        match self.expect {
            Some(value) if !value.is_finite() => {
                Err(Error::usage(format!("--expect {value} is not a finite number")))
            }
            Some(value) => Ok(Some(Expectation { value, tolerance: Tolerance::new(self.rtol, self.atol)? })),
            None => Ok(None),
        }
    }
}

/// A value a report must match.
#[derive(Debug, Clone, Copy)]
pub struct Expectation {
    pub value: f64,
    pub tolerance: Tolerance,
}

/// How far a number may move: `|current - reference| <= atol + rtol · |reference|`.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

impl Tolerance {
    /// Checks `--rtol` and `--atol`: finite and not negative. An infinite
    /// tolerance would pass any number (and `inf · 0` is NaN, which passes
    /// none), so it is refused rather than given a meaning.
    pub fn new(rtol: f64, atol: f64) -> Result<Self> {
        for (flag, x) in [("--rtol", rtol), ("--atol", atol)] {
            if !(x.is_finite() && x >= 0.0) {
                return Err(Error::usage(format!("{flag} {x} is not a finite number ≥ 0")));
            }
        }
        Ok(Tolerance { rtol, atol })
    }

    /// The largest difference allowed from `reference`.
    pub fn allowed(&self, reference: f64) -> f64 {
        self.atol + self.rtol * reference.abs()
    }

    pub fn holds(&self, reference: f64, current: f64) -> bool {
        (current - reference).abs() <= self.allowed(reference)
    }
}

impl ReportSettings {
    /// The settings of `losscope merge`: its delivery and check; the
    /// analysis is the partials'.
    pub fn merging(args: &MergeArgs) -> Result<Self> {
        let layout = Layout { top: top_rows(args.top)?, width: None };
        Ok(ReportSettings {
            analysis: Analysis::default(),
            delivery: Delivery::of(&args.output, layout)?,
            expect: args.expect.checked()?,
            partial: args.partial,
        })
    }

    /// Checks the flags that need every example in one pass, once a run
    /// turns out to read several shards.
    pub fn check_shards(&self, shards: usize) -> Result<()> {
        let one_pass = [
            (self.analysis.label_issues, "--label-issues and --suspects-out need"),
            (self.analysis.per_example.is_some(), "--per-example writes one array of"),
        ];
        match one_pass.iter().find(|(given, _)| *given) {
            Some((_, what)) => Err(Error::usage(format!(
                "{what} every example in one pass, but the inputs name {shards} shards: run each shard on its own"
            ))),
            None => Ok(()),
        }
    }

    pub fn new(args: &ReportArgs) -> Result<Self> {
        if !(0.0..=1.0).contains(&args.easy_threshold) {
            return Err(Error::usage(format!("--easy-threshold {} is outside [0, 1]", args.easy_threshold)));
        }
        if args.bins == 0 || args.bins > 1000 {
            return Err(Error::usage(format!("--bins {} is outside 1..=1000", args.bins)));
        }
        let top = top_rows(args.top)?;
        if args.examples > MAX_EXAMPLES {
            return Err(Error::usage(format!(
                "--examples {} is more than the {MAX_EXAMPLES} a report lists; write every example's loss with --per-example",
                args.examples
            )));
        }
        if args.calibration_bins == 0 || args.calibration_bins > 1000 {
            return Err(Error::usage(format!(
                "--calibration-bins {} is outside 1..=1000",
                args.calibration_bins
            )));
        }
        for path in [&args.per_example, &args.suspects_out].into_iter().flatten() {
            output::check_destination(path)?;
        }
        if args.threads == Some(0) {
            return Err(Error::usage("--threads must be at least 1"));
        }
        if let Some(threads) = args.threads
            && threads > MAX_THREADS
        {
            return Err(Error::usage(format!(
                "--threads {threads} is above the limit of {MAX_THREADS}: a pass is cut into at most {} \
                 chunks, so more threads never work at once (and results do not depend on --threads)",
                crate::tally::MAX_CHUNKS
            )));
        }
        let expect = args.expect.checked()?;
        let delivery = Delivery::of(&args.output, Layout { top, width: None })?;
        let class_names = args.class_names.as_deref().map(class_names).transpose()?;
        Ok(ReportSettings {
            analysis: Analysis {
                class_names,
                easy_threshold: args.easy_threshold,
                bins: args.bins,
                allow_nonfinite: args.allow_nonfinite,
                quiet: args.quiet,
                threads: args.threads,
                examples: args.examples,
                calibration_bins: args.calibration_bins,
                per_example: args.per_example.clone(),
                label_issues: args.label_issues || args.suspects_out.is_some(),
                suspects_out: args.suspects_out.clone(),
            },
            delivery,
            partial: args.partial,
            expect,
        })
    }
}

/// Class names from a file (a JSON list of strings, or one name per line) or
/// an inline comma-separated list.
pub fn class_names(text: &str) -> Result<Vec<String>> {
    let path = Path::new(text);
    let origin = Origin::new("class names", text);
    if let Some(problem) = crate::input::unreadable(path) {
        return Err(Error::input(&origin, problem));
    }
    if !path.is_file() {
        // A mistyped file name must not become the name of class 0.
        let looks_like_a_path =
            text.contains(['/', '\\']) || path.extension().is_some() && !text.contains(',');
        if looks_like_a_path {
            return Err(Error::input(&origin, "no such file (an inline list is comma-separated: a,b,c)"));
        }
        return Ok(text.split(',').map(|s| s.trim().to_string()).collect());
    }
    let bytes = crate::input::read_text(path, &origin)?;
    let fail = |message: String| Error::input(&origin, message);
    let text = crate::input::json_text(&bytes).map_err(fail)?;
    let content = std::str::from_utf8(text).map_err(|e| fail(format!("not UTF-8 text: {e}")))?;
    if content.trim_start().starts_with('[') {
        return serde_json::from_str(content)
            .map_err(|e| Error::input(&origin, format!("not a JSON list of strings: {e}")));
    }
    Ok(content.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect())
}

/// `--beta` of the effective-number weights: in (0, 1).
pub fn beta(beta: f64) -> Result<f64> {
    if beta > 0.0 && beta < 1.0 {
        Ok(beta)
    } else {
        Err(Error::usage(format!("--beta {beta} is outside (0, 1)")))
    }
}

/// `--label-smoothing`: ε in [0, 1], as PyTorch and Keras require.
pub fn label_smoothing(eps: f64) -> Result<f64> {
    if (0.0..=1.0).contains(&eps) {
        Ok(eps)
    } else {
        Err(Error::usage(format!("--label-smoothing {eps} is outside [0, 1]")))
    }
}
