//! The driver behind every subcommand. A loss runs the same pipeline,
//! whichever it is: checked settings → its arrays → its pass → one tally →
//! the report → the rendered output. Nothing here knows a particular loss.

use clap::CommandFactory;

use crate::cli::{Cli, Command, DiffArgs, WeightsArgs};
use crate::error::{Error, Result, index_in};
use crate::format::{self, Document};
use crate::input::{self, Sources, Spec, Tensor};
use crate::label_issues;
use crate::loss::{Driver, Loss, PerExample, Prepared, Reducer};
use crate::output::{self, ArrayFile, Sink};
use crate::partial::{self, Partial};
use crate::progress::{Progress, ShardProgress};
use crate::report::{Header, InputInfo, Report};
use crate::settings::{self, Analysis, Delivery, MergeArgs, ReportSettings, Tolerance};
use crate::tally::findings::{ExampleKind, FindingSettings, linspace_edges};
use crate::tally::{self, NonFinite, Tally, TallySettings};
use crate::weights::WeightsParams;

/// How a run ended, when it did not end in an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// `--expect` was given and the value is outside the tolerance.
    CheckFailed,
}

pub fn run(cli: Cli) -> Result<Outcome> {
    match cli.command {
        Command::Loss(command) => command.dispatch(Evaluate),
        Command::Weights(args) => weights(args),
        Command::Diff(args) => diff(args),
        Command::Merge(args) => merge(args),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "losscope", &mut script);
            output::to_stdout(&String::from_utf8_lossy(&script))?;
            Ok(Outcome::Ok)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| Error::Output { path: "stdout".into(), message: e.to_string() })?;
            output::to_stdout(&String::from_utf8_lossy(&page))?;
            Ok(Outcome::Ok)
        }
    }
}

/// Runs a loss subcommand from its flags to its output.
struct Evaluate;

impl Driver for Evaluate {
    type Output = Result<Outcome>;

    fn run<L: Loss>(self, args: L) -> Result<Outcome> {
        let (shared, bundle) = args.shared();
        let settings = ReportSettings::new(shared)?;
        args.check()?;
        let mut sources = Sources::new(bundle)?;
        let mut parts = Vec::new();
        let mut progress = None;
        let mut shard = 0;
        // The number of shards is known once the first shard's flags are read.
        while shard < sources.shards() {
            sources.select(shard)?;
            let inputs = args.read(&sources)?;
            let several = sources.shards() > 1;
            if several && shard == 0 {
                settings.check_shards(sources.shards())?;
                progress = Some(ShardProgress::new(sources.shards() as u64, settings.analysis.quiet));
            }
            let prepared = in_pool(settings.analysis.threads, || args.prepare(&inputs))??;
            let (header, reducer, tally) = examine::<L>(prepared, &settings.analysis)?;
            if !several && !settings.partial {
                return deliver(&partial::conclude(header, &reducer, tally), &settings);
            }
            if let Some(progress) = &progress {
                progress.advance(file_bytes(&header.inputs));
            }
            parts.push((sources.shard_name(), Partial::of_shard(header, reducer, tally)));
            shard += 1;
        }
        if let Some(progress) = &progress {
            progress.finish();
        }
        let merged = Partial::merge(parts)?;
        if settings.partial {
            let path = settings.delivery.output.as_deref().expect("--partial requires --output");
            output::bytes_to_file(path, &merged.to_bytes())?;
            return Ok(Outcome::Ok);
        }
        deliver(&merged.into_report(), &settings)
    }
}

/// The size of the files that `inputs` were read from, each file once.
fn file_bytes(inputs: &[InputInfo]) -> u64 {
    let files: std::collections::BTreeSet<_> = inputs.iter().map(|i| Spec::parse(&i.source).path).collect();
    files.iter().filter_map(|path| std::fs::metadata(path).ok()).map(|m| m.len()).sum()
}

/// Merges partial reports into a report, or into one partial again.
fn merge(args: MergeArgs) -> Result<Outcome> {
    let settings = ReportSettings::merging(&args)?;
    let mut paths = Vec::new();
    for text in &args.parts {
        paths.extend(input::expand(std::slice::from_ref(text), "merge")?);
    }
    let merged = Partial::merge_files(&paths)?;
    if settings.partial {
        let path = settings.delivery.output.as_deref().expect("--partial requires --output");
        output::bytes_to_file(path, &merged.to_bytes())?;
        return Ok(Outcome::Ok);
    }
    deliver(&merged.into_report(), &settings)
}

fn weights(args: WeightsArgs) -> Result<Outcome> {
    let delivery = Delivery::of(&args.output, Default::default())?;
    let beta = settings::beta(args.beta)?;
    let mut sources = Sources::new(args.bundle.as_deref())?;
    sources.select(0)?;
    let targets = sources.required(args.targets.as_slice(), "targets")?;
    let params = WeightsParams {
        scheme: args.scheme,
        beta,
        ignore_index: args.ignore_index,
        classes: args.classes,
        class_names: args.class_names.as_deref().map(settings::class_names).transpose()?,
    };
    let report = crate::weights::suggest(&targets, &params)?;
    for warning in &report.warnings {
        output::to_stderr(&format!("warning: {warning}"));
    }
    write(&report, &delivery)?;
    Ok(Outcome::Ok)
}

fn diff(args: DiffArgs) -> Result<Outcome> {
    let tolerance = Tolerance::new(args.rtol, args.atol)?;
    let delivery = Delivery::new(args.format, Default::default(), args.chart, args.output)?;
    let report = crate::diff::compare(&args.baseline, &args.current, &tolerance, &args.only)?;
    write(&report, &delivery)?;
    Ok(if report.differences.is_empty() { Outcome::Ok } else { Outcome::CheckFailed })
}

/// Renders `document` and writes it to the file, or to stdout.
fn write(document: &dyn Document, delivery: &Delivery) -> Result<()> {
    if let Some(name) = &delivery.chart {
        let charts = document.charts();
        if !charts.iter().any(|c| c.name == name) {
            let names: Vec<&str> = charts.iter().map(|c| c.name).collect();
            return Err(Error::usage(format!(
                "--chart {name}: this report has no such chart (it has: {})",
                names.join(", ")
            )));
        }
    }
    let text = format::exporter(delivery.format, delivery.layout, delivery.chart.as_deref()).render(document);
    match &delivery.output {
        Some(path) => output::to_file(path, &text),
        None => output::to_stdout(&text),
    }
}

/// Runs `work` in a pool of `threads` threads, or in the global pool.
fn in_pool<T: Send>(threads: Option<usize>, work: impl FnOnce() -> T + Send) -> Result<T> {
    match threads {
        Some(n) => Ok(rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| Error::usage(format!("--threads {n}: {e}")))?
            .install(work)),
        None => Ok(work()),
    }
}

/// Runs the pass of a prepared loss `L`: its header, reducer and tally.
fn examine<L: Loss>(prepared: Prepared, settings: &Analysis) -> Result<(Header, Reducer, Tally)> {
    let Prepared { pass, parameters, inputs, operands, warnings, positives_per_class } = prepared;
    let header =
        Header { parameters, inputs, warnings, positives_per_class, ..Header::new(L::NAME, L::PRESENTATION) };
    let reducer = pass.reducer();
    let (header, tally) = tally_pass(pass.as_ref(), operands, header, settings)?;
    Ok((header, reducer, tally))
}

/// Runs the per-example pass of `pass` and builds its report. `operands`
/// are the arrays non-finite values are reported against.
pub fn analyse(
    pass: &dyn PerExample,
    operands: [&Tensor; 2],
    header: Header,
    settings: &Analysis,
) -> Result<Report> {
    let (header, tally) = tally_pass(pass, operands, header, settings)?;
    Ok(partial::conclude(header, &pass.reducer(), tally))
}

/// The mergeable state of the per-example pass of `pass`, as `--partial`
/// writes it; `header.inputs` name the shard.
pub fn partial_of(
    pass: &dyn PerExample,
    operands: [&Tensor; 2],
    header: Header,
    settings: &Analysis,
) -> Result<Partial> {
    let (header, tally) = tally_pass(pass, operands, header, settings)?;
    Ok(Partial::of_shard(header, pass.reducer(), tally))
}

/// Runs the per-example pass of `pass` into a tally, with what the report
/// says of the inputs, and the second pass and files asked for.
fn tally_pass(
    pass: &dyn PerExample,
    operands: [&Tensor; 2],
    mut header: Header,
    settings: &Analysis,
) -> Result<(Header, Tally)> {
    // A loss with its own layout writes its file after the pass; the others'
    // losses go from the tally into the file as they are computed.
    let own_layout = settings.per_example.as_deref().filter(|_| pass.writes_own_per_example());
    let mut per_example = match (&settings.per_example, own_layout) {
        (Some(path), None) => Some(ArrayFile::create(path, &pass.example_shape())?),
        _ => None,
    };
    // With nothing reading the inputs after the pass, each chunk lets go of
    // the operands' pages it has read.
    let read_once = !settings.label_issues && own_layout.is_none();
    let released = if read_once { read_in_turn(pass, operands) } else { Vec::new() };
    let tally = run_pass(pass, settings, per_example.as_mut().map(ArrayFile::sink), &released)?;
    for (operand, tensor) in operands.into_iter().enumerate() {
        let NonFinite { count, first } = tally.nonfinite[operand];
        let Some(first) = first else { continue };
        let what = format!(
            "{count} non-finite values (NaN or ±inf), the first at index {}",
            index_in(&tensor.shape, first)
        );
        if !settings.allow_nonfinite {
            return Err(Error::input(
                &tensor.origin,
                format!("{what}; pass --allow-nonfinite to compute anyway"),
            ));
        }
        header.warnings.push(format!("{} hold {what}", tensor.origin.role));
    }
    if let (Some(first), targets) = (tally.outside_unit.first, operands[1]) {
        header.warnings.push(format!(
            "{} hold {} values outside [0, 1], the first {} at index {}: they are read as soft targets (if they mark elements to leave out, pass --ignore-index)",
            targets.origin.role,
            tally.outside_unit.count,
            targets.values().display(first),
            index_in(&targets.shape, first)
        ));
    }
    if let Some(names) = &settings.class_names {
        if names.len() != pass.classes() {
            header.warnings.push(format!("{} class names given for {} classes", names.len(), pass.classes()));
        }
        header.class_names = Some(names.clone());
    }
    header.example_kind = pass.example_kind();
    header.example_shape = pass.example_shape();
    if settings.label_issues {
        find_label_issues(pass, &tally, settings, &mut header)?;
    }
    if let Some(file) = per_example {
        file.finish()?;
    }
    if let Some(path) = own_layout {
        pass.write_per_example(path).transpose()?;
    }
    Ok((header, tally))
}

/// Confident learning's second pass, for a softmax loss with class-index
/// targets; the suspects go into the header and, if asked, to a file.
fn find_label_issues(
    pass: &dyn PerExample,
    tally: &Tally,
    settings: &Analysis,
    header: &mut Header,
) -> Result<()> {
    let Some(rows) = pass.softmax_rows() else {
        header.warnings.push(
            "label issues are found for softmax losses with class-index targets: none were looked for".into(),
        );
        return Ok(());
    };
    let thresholds = label_issues::thresholds(tally);
    let suspects = in_pool(settings.threads, || label_issues::find(rows, pass.classes(), &thresholds))?;
    if let Some(path) = &settings.suspects_out {
        let indices: Vec<u64> = suspects.iter().map(|s| s.flat_index).collect();
        output::indices_to_npy(path, &indices)?;
    }
    header.suspects = Some(suspects);
    header.suspects_listed = settings.examples;
    Ok(())
}

/// The operands whose elements split evenly among the pass's units, each
/// with its elements per unit: unit u reads (mostly) elements
/// `[u·n, (u+1)·n)` of each, as every loss whose units follow the arrays'
/// order does. Where a unit reads others too, letting go of a chunk's
/// share only makes a later read map a page again.
fn read_in_turn<'a>(pass: &dyn PerExample, operands: [&'a Tensor; 2]) -> Vec<(&'a Tensor, usize)> {
    let units = pass.units();
    let in_turn = |t: &&Tensor| t.mapped && units > 0 && t.numel() > 0 && t.numel().is_multiple_of(units);
    operands.into_iter().filter(in_turn).map(|t| (t, t.numel() / units)).collect()
}

/// Runs the pass; after each chunk, lets go of its share of `released`
/// (tensors with their elements per unit).
fn run_pass(
    pass: &dyn PerExample,
    settings: &Analysis,
    per_example: Option<Sink>,
    released: &[(&Tensor, usize)],
) -> Result<Tally> {
    let kind = pass.example_kind();
    let tally_settings = TallySettings {
        classes: pass.classes(),
        easy_threshold: settings.easy_threshold,
        bins: settings.bins,
        grouping: pass.grouping(),
        findings: FindingSettings {
            kind,
            examples: settings.examples,
            calibration_edges: linspace_edges(settings.calibration_bins),
            confusion: kind == ExampleKind::Row,
            classes: pass.classes(),
        },
        per_example,
    };
    let progress = Progress::new(pass.units() as u64, pass.unit_cost() as u64, settings.quiet);
    let work = || {
        tally::run(pass.units(), pass.unit_cost(), &tally_settings, &|n| progress.advance(n), |range, t| {
            pass.eval(range.clone(), t);
            for &(tensor, per_unit) in released {
                tensor.release(range.start * per_unit..range.end * per_unit);
            }
        })
    };
    let tally = in_pool(settings.threads, work)?;
    progress.finish();
    Ok(tally)
}

fn deliver(report: &Report, settings: &ReportSettings) -> Result<Outcome> {
    for warning in &report.warnings {
        output::to_stderr(&format!("warning: {warning}"));
    }
    write(report, &settings.delivery)?;
    let Some(expect) = &settings.expect else {
        return Ok(Outcome::Ok);
    };
    match report.value {
        Some(value) if expect.tolerance.holds(expect.value, value) => Ok(Outcome::Ok),
        value => {
            let shown = value.map_or_else(|| "NaN".to_string(), |v| v.to_string());
            let t = expect.tolerance;
            output::to_stderr(&format!(
                "losscope: check failed: value {shown} differs from the expected {} by more than {:e} (rtol {}, atol {})",
                expect.value,
                t.allowed(expect.value),
                t.rtol,
                t.atol
            ));
            Ok(Outcome::CheckFailed)
        }
    }
}
