//! The pipeline behind every subcommand: flags → checked settings → inputs →
//! loss → one pass into a tally → report → rendered output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use clap::CommandFactory;

use crate::cli::{
    BceArgs, CeArgs, Cli, Command, DiffArgs, FocalArgs, Format, ReportArgs, SsdArgs, SsdConfLoss, WeightsArgs,
};
use crate::diff::Tolerance;
use crate::error::{Error, Origin, Result, index_in};
use crate::format::{self, Document, Layout};
use crate::input::{self, Spec, Tensor};
use crate::loss::ssd::{self, ConfLoss, PriorSet, Priors, Ssd, SsdEvaluation, SsdParams};
use crate::loss::{
    Alpha, Bce, BceParams, CrossEntropy, CrossEntropyParams, Focal, FocalKind, FocalParams, PerExample,
};
use crate::output;
use crate::progress::Progress;
use crate::report::{
    self, Components, Detection, ForcedBox, Header, ImageRow, InputInfo, Matching, PriorGroup, PriorGroups,
    Report, finite,
};
use crate::tally::{self, Grouping, NonFinite, Tally, TallySettings};
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
        Command::Ce(args) => ce(args),
        Command::Bce(args) => bce(args),
        Command::Focal(args) => focal(args),
        Command::Ssd(args) => ssd(args),
        Command::Weights(args) => weights(args),
        Command::Diff(args) => diff(args),
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

fn weights(args: WeightsArgs) -> Result<Outcome> {
    if let Some(path) = &args.output {
        output::check_destination(path)?;
    }
    let targets = input::load(&Spec::parse(&args.targets), "targets")?;
    let params = WeightsParams {
        scheme: args.scheme,
        beta: args.beta,
        ignore_index: args.ignore_index,
        classes: args.classes,
        class_names: args.class_names.as_deref().map(read_class_names).transpose()?,
    };
    let report = crate::weights::suggest(&targets, &params)?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    write(&report, args.format, Layout::default(), args.output.as_deref())?;
    Ok(Outcome::Ok)
}

fn diff(args: DiffArgs) -> Result<Outcome> {
    if !(args.rtol >= 0.0 && args.atol >= 0.0) {
        return Err(Error::usage("--rtol and --atol must be non-negative"));
    }
    if let Some(path) = &args.output {
        output::check_destination(path)?;
    }
    let tolerance = Tolerance { rtol: args.rtol, atol: args.atol };
    let report = crate::diff::compare(&args.baseline, &args.current, &tolerance, &args.only)?;
    write(&report, args.format, Layout::default(), args.output.as_deref())?;
    Ok(if report.differences.is_empty() { Outcome::Ok } else { Outcome::CheckFailed })
}

/// Renders `document` and writes it to the file, or to stdout.
fn write(document: &dyn Document, format: Format, layout: Layout, output: Option<&Path>) -> Result<()> {
    let text = format::exporter(format, layout).render(document);
    match output {
        Some(path) => output::to_file(path, &text),
        None => output::to_stdout(&text),
    }
}

/// The report flags, checked.
struct ReportSettings {
    analysis: Analysis,
    format: Format,
    output: Option<PathBuf>,
    layout: Layout,
    expect: Option<Expectation>,
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
        }
    }
}

struct Expectation {
    value: f64,
    rtol: f64,
    atol: f64,
}

impl ReportSettings {
    fn new(args: ReportArgs) -> Result<Self> {
        if !(0.0..=1.0).contains(&args.easy_threshold) {
            return Err(Error::usage(format!("--easy-threshold {} is outside [0, 1]", args.easy_threshold)));
        }
        if args.bins == 0 || args.bins > 1000 {
            return Err(Error::usage(format!("--bins {} is outside 1..=1000", args.bins)));
        }
        if args.top == Some(0) {
            return Err(Error::usage("--top must be at least 1"));
        }
        if args.threads == Some(0) {
            return Err(Error::usage("--threads must be at least 1"));
        }
        let expect = match args.expect {
            Some(value) if !value.is_finite() => {
                return Err(Error::usage(format!("--expect {value} is not a finite number")));
            }
            Some(value) => {
                if !(args.rtol >= 0.0 && args.atol >= 0.0) {
                    return Err(Error::usage("--rtol and --atol must be non-negative"));
                }
                Some(Expectation { value, rtol: args.rtol, atol: args.atol })
            }
            None => None,
        };
        if let Some(path) = &args.output {
            output::check_destination(path)?;
        }
        let class_names = args.class_names.as_deref().map(read_class_names).transpose()?;
        Ok(ReportSettings {
            analysis: Analysis {
                class_names,
                easy_threshold: args.easy_threshold,
                bins: args.bins,
                allow_nonfinite: args.allow_nonfinite,
                quiet: args.quiet,
                threads: args.threads,
            },
            format: args.format,
            output: args.output,
            layout: Layout { top: args.top },
            expect,
        })
    }
}

/// Class names from a file (a JSON list of strings, or one name per line) or
/// an inline comma-separated list.
fn read_class_names(text: &str) -> Result<Vec<String>> {
    let path = Path::new(text);
    let origin = Origin::new("class names", text);
    if !path.is_file() {
        // A mistyped file name must not become the name of class 0.
        let looks_like_a_path =
            text.contains(['/', '\\']) || path.extension().is_some() && !text.contains(',');
        if looks_like_a_path {
            return Err(Error::input(&origin, "no such file (an inline list is comma-separated: a,b,c)"));
        }
        return Ok(text.split(',').map(|s| s.trim().to_string()).collect());
    }
    let content =
        std::fs::read_to_string(path).map_err(|e| Error::input(&origin, format!("cannot read: {e}")))?;
    if content.trim_start().starts_with('[') {
        return serde_json::from_str(&content)
            .map_err(|e| Error::input(&origin, format!("not a JSON list of strings: {e}")));
    }
    Ok(content.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect())
}

/// The arrays of a subcommand: from flags, else from the bundle.
struct Sources {
    bundle: Option<(PathBuf, Vec<String>)>,
}

impl Sources {
    fn new(bundle: Option<&str>) -> Result<Self> {
        let bundle = match bundle {
            Some(text) => {
                if let Spec { key: Some(key), .. } = Spec::parse(text) {
                    return Err(Error::usage(format!(
                        "the bundle {text} names a member ':{key}'; a bundle is a whole .npz or JSON file \
                         (pick one array with --logits FILE:KEY)"
                    )));
                }
                let path = PathBuf::from(text);
                let members = input::bundle_members(&path)?;
                Some((path, members))
            }
            None => None,
        };
        Ok(Sources { bundle })
    }

    /// The spec for `role`: the flag's, or the bundle member of that name.
    fn spec(&self, flag: Option<&str>, role: &str) -> Option<Spec> {
        if let Some(text) = flag {
            return Some(Spec::parse(text));
        }
        let (path, members) = self.bundle.as_ref()?;
        members.iter().any(|m| m == role).then(|| Spec::member(path, role))
    }

    fn required(&self, flag: Option<&str>, role: &str) -> Result<Tensor> {
        let spec = self.spec(flag, role).ok_or_else(|| {
            let hint = match &self.bundle {
                Some((path, _)) => format!(" ({} holds no array named '{role}')", path.display()),
                None => String::new(),
            };
            Error::usage(format!("no {role}: pass --{role} FILE or a bundle holding '{role}'{hint}"))
        })?;
        input::load(&spec, role)
    }

    /// An optional array that may also be typed inline: `1,2,0.5`.
    fn optional(&self, flag: Option<&str>, role: &str) -> Result<Option<Tensor>> {
        let flag_name = format!("--{}", role.replace('_', "-"));
        if let Some(text) = flag
            && let Some(values) = inline_list(text, &flag_name)?
        {
            return Ok(Some(Tensor::from_list(Origin::new(role, flag_name), values)));
        }
        self.spec(flag, role).map(|spec| input::load(&spec, role)).transpose()
    }
}

/// Numbers typed on the command line, or `None` when the text names a file.
fn inline_list(text: &str, flag: &str) -> Result<Option<Vec<f64>>> {
    let looks_inline = !Path::new(text).exists()
        && !text.contains(['/', '\\', ':'])
        && text.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.'));
    if !looks_inline {
        return Ok(None);
    }
    text.split(',')
        .enumerate()
        .map(|(i, part)| {
            part.trim().parse::<f64>().map_err(|_| {
                Error::usage(format!("{flag} {text}: entry {i} ('{}') is not a number", part.trim()))
            })
        })
        .collect::<Result<Vec<f64>>>()
        .map(Some)
}

/// A weight as the report records it: its values when they are few (an
/// inline list, one per class), else where it came from; inputs[] has both.
fn recorded(weight: Option<&Tensor>) -> Value {
    match weight {
        Some(w) if w.numel() <= 1024 => json!(w.to_f64_vec()),
        Some(w) => json!(w.origin.spec),
        None => Value::Null,
    }
}

/// The header of a report on `inputs` without detection sections.
fn header(
    loss: &'static str,
    parameters: BTreeMap<String, Value>,
    inputs: &[&Tensor],
    warnings: Vec<String>,
) -> Header {
    Header { loss, parameters, inputs: describe(inputs), class_names: None, warnings, detection: None }
}

fn describe(tensors: &[&Tensor]) -> Vec<InputInfo> {
    tensors
        .iter()
        .map(|t| InputInfo {
            role: t.origin.role.clone(),
            source: t.origin.spec.clone(),
            shape: t.shape.clone(),
            dtype: t.dtype.name().into(),
            memory_mapped: t.mapped,
        })
        .collect()
}

fn ce(args: CeArgs) -> Result<Outcome> {
    let settings = ReportSettings::new(args.report)?;
    check_label_smoothing(args.label_smoothing)?;
    let sources = Sources::new(args.bundle.as_deref())?;
    let logits = sources.required(args.logits.as_deref(), "logits")?;
    let targets = sources.required(args.targets.as_deref(), "targets")?;
    let weight = sources.optional(args.weight.as_deref(), "weight")?;
    let weight_values = match &weight {
        Some(w) if w.shape.len() != 1 => {
            return Err(Error::input(
                &w.origin,
                format!("shape {} is not one weight per class", w.shape_text()),
            ));
        }
        Some(w) => Some((w.to_f64_vec(), w.origin.clone())),
        None => None,
    };
    let params = CrossEntropyParams {
        weight: weight_values,
        ignore_index: args.ignore_index,
        label_smoothing: args.label_smoothing,
        reduction: args.reduction,
        class_axis: args.class_axis,
    };
    let loss = CrossEntropy::new(&logits, &targets, &params)?;
    let mut parameters = BTreeMap::new();
    parameters.insert("reduction".into(), json!(args.reduction.name()));
    parameters.insert("ignore_index".into(), json!(args.ignore_index));
    parameters.insert("label_smoothing".into(), json!(args.label_smoothing));
    parameters.insert("weight".into(), params.weight.as_ref().map_or(Value::Null, |(w, _)| json!(w)));
    parameters.insert("class_axis".into(), json!(loss.layout().axis));
    parameters.insert("target_mode".into(), json!(loss.target_mode()));
    let mut inputs = vec![&logits, &targets];
    inputs.extend(weight.as_ref());
    let header = header("ce", parameters, &inputs, loss.warnings.clone());
    finish(&loss, (&logits, &targets), header, settings, false)
}

fn bce(args: BceArgs) -> Result<Outcome> {
    let settings = ReportSettings::new(args.report)?;
    let sources = Sources::new(args.bundle.as_deref())?;
    let logits = sources.required(args.logits.as_deref(), "logits")?;
    let targets = sources.required(args.targets.as_deref(), "targets")?;
    let weight = sources.optional(args.weight.as_deref(), "weight")?;
    let pos_weight = sources.optional(args.pos_weight.as_deref(), "pos_weight")?;
    let params = BceParams {
        weight: weight.as_ref(),
        pos_weight: pos_weight.as_ref(),
        reduction: args.reduction,
        class_axis: args.class_axis,
    };
    let loss = Bce::new(&logits, &targets, &params)?;
    let mut parameters = BTreeMap::new();
    parameters.insert("reduction".into(), json!(args.reduction.name()));
    parameters.insert("class_axis".into(), json!(loss.class_axis()));
    parameters.insert("weight".into(), recorded(weight.as_ref()));
    parameters.insert("pos_weight".into(), recorded(pos_weight.as_ref()));
    let mut inputs = vec![&logits, &targets];
    inputs.extend(weight.as_ref());
    inputs.extend(pos_weight.as_ref());
    let header = header("bce", parameters, &inputs, Vec::new());
    finish(&loss, (&logits, &targets), header, settings, true)
}

fn focal(args: FocalArgs) -> Result<Outcome> {
    let settings = ReportSettings::new(args.report)?;
    check_label_smoothing(args.label_smoothing)?;
    let sources = Sources::new(args.bundle.as_deref())?;
    let logits = sources.required(args.logits.as_deref(), "logits")?;
    let targets = sources.required(args.targets.as_deref(), "targets")?;
    let weight = sources.optional(args.weight.as_deref(), "weight")?;
    let alpha = match args.alpha.as_deref() {
        // A per-class α may sit in an array file.
        Some(text) if Path::new(&Spec::parse(text).path).is_file() => {
            let tensor = input::load(&Spec::parse(text), "alpha")?;
            Some(Alpha::PerClass(tensor.to_f64_vec()))
        }
        Some(text) => Some(text.parse::<Alpha>()?),
        None => None,
    };
    let params = FocalParams {
        preset: args.preset,
        gamma: args.gamma,
        alpha,
        reduction: args.reduction,
        normalize: args.normalize,
        avg_factor: args.avg_factor,
        class_balancing: args.class_balancing,
        label_smoothing: args.label_smoothing,
        background: args.background,
        background_class: args.background_class,
        class_axis: args.class_axis,
        weight: weight.as_ref().map(|w| (w.to_f64_vec(), w.origin.clone())),
        ..FocalParams::new(args.kind)
    };
    let loss = Focal::new(&logits, &targets, &params)?;
    let mut inputs = vec![&logits, &targets];
    inputs.extend(weight.as_ref());
    let header = header("focal", loss.parameters(), &inputs, loss.warnings.clone());
    let with_positives = loss.grouping() == Grouping::PositivesNegatives && args.kind == FocalKind::Sigmoid;
    finish(&loss, (&logits, &targets), header, settings, with_positives)
}

fn ssd(args: SsdArgs) -> Result<Outcome> {
    let settings = ReportSettings::new(args.report)?;
    let sources = Sources::new(args.bundle.as_deref())?;
    let loc = sources.required(args.loc.as_deref(), "loc")?;
    let conf = sources.required(args.conf.as_deref(), "conf")?;
    let priors = match args.priors.as_deref() {
        Some(name) if PriorSet::from_name(name).is_some() => {
            Priors::builtin(PriorSet::from_name(name).expect("checked just above"))
        }
        flag => Priors::from_tensor(&sources.required(flag, "priors")?)?,
    };
    let truths_spec = sources
        .spec(args.truths.as_deref(), "truths")
        .ok_or_else(|| Error::usage("no truths: pass --truths FILE or a bundle holding 'truths'"))?;
    let truths = ssd::load_truths(&truths_spec, loc.shape.first().copied())?;
    let [v0, v1] = args.variance[..] else {
        return Err(Error::usage(format!("--variance takes two numbers, not {}", args.variance.len())));
    };
    let params = SsdParams {
        preset: args.preset,
        overlap_threshold: args.overlap,
        variances: [v0, v1],
        neg_pos_ratio: args.neg_pos,
        mining: !args.no_mining,
        loc_weight: args.loc_weight,
        conf_loss: match args.conf_loss {
            SsdConfLoss::Ce => ConfLoss::CrossEntropy,
            SsdConfLoss::Focal => ConfLoss::SoftmaxFocal { alpha: args.alpha, gamma: args.gamma },
        },
        zero_positives: args.zero_positives,
    };
    let loss = in_pool(settings.analysis.threads, || Ssd::new(&loc, &conf, &priors, &truths, &params))??;
    let evaluation = loss.evaluation();
    let mut parameters = BTreeMap::new();
    parameters.insert("preset".into(), json!(args.preset.name()));
    parameters.insert("priors".into(), json!(args.priors.as_deref().unwrap_or("bundle")));
    parameters.insert("overlap".into(), json!(args.overlap));
    parameters.insert("variance".into(), json!(params.variances));
    parameters.insert("neg_pos".into(), json!(args.neg_pos));
    parameters.insert("mining".into(), json!(params.mining));
    parameters.insert("loc_weight".into(), json!(args.loc_weight));
    parameters.insert("conf_loss".into(), json!(params.conf_loss.name()));
    if let ConfLoss::SoftmaxFocal { alpha, gamma } = params.conf_loss {
        parameters.insert("alpha".into(), json!(alpha));
        parameters.insert("gamma".into(), json!(gamma));
    }
    parameters.insert("zero_positives".into(), json!(format!("{:?}", args.zero_positives).to_lowercase()));
    let mut inputs = describe(&[&loc, &conf]);
    inputs.push(InputInfo {
        role: "truths".into(),
        source: truths_spec.text(),
        // Every box of every image, as [xmin, ymin, xmax, ymax, label] rows.
        shape: vec![truths.images.iter().map(Vec::len).sum(), 5],
        dtype: "float64".into(),
        memory_mapped: false,
    });
    let header = Header {
        loss: "ssd",
        parameters,
        inputs,
        class_names: None,
        warnings: evaluation.warnings.clone(),
        detection: Some(detection(evaluation, params.loc_weight)),
    };
    finish(&loss, (&conf, &loc), header, settings, true)
}

/// The SSD sections of the report, from the evaluation.
fn detection(e: &SsdEvaluation, loc_weight: f64) -> Detection {
    let share = |part: f64, whole: f64| (whole != 0.0).then(|| part / whole).and_then(finite);
    let conf_total = e.conf_sum;
    let group = |g: &ssd::Group| PriorGroup {
        count: g.count,
        conf_sum: finite(g.conf_sum.value()),
        conf_share: share(g.conf_sum.value(), conf_total),
    };
    let total = e.conf_sum + loc_weight * e.loc_sum;
    Detection {
        components: Components {
            loc: finite(e.loc),
            conf: finite(e.conf),
            loc_sum: finite(e.loc_sum),
            conf_sum: finite(e.conf_sum),
            loc_weight,
            num_pos: e.num_pos,
            num_neg: e.num_neg,
            n_images: e.n_images as u64,
        },
        groups: PriorGroups {
            positives: group(&e.groups.positives),
            mined_negatives: group(&e.groups.mined_negatives),
            unmined_negatives: group(&e.groups.unmined_negatives),
            positives_counted_twice: group(&e.groups.positives_counted_twice),
        },
        images: e
            .images
            .iter()
            .enumerate()
            .map(|(image, f)| ImageRow {
                image,
                boxes: f.boxes as u64,
                positives: f.positives,
                mined_negatives: f.mined_negatives,
                loc_sum: finite(f.loc_sum),
                conf_sum: finite(f.conf_sum),
                loss_share: share(f.conf_sum + loc_weight * f.loc_sum, total),
            })
            .collect(),
        matching: Matching {
            boxes: e.matching.boxes as u64,
            forced_only: e
                .matching
                .forced_only
                .iter()
                .map(|f| ForcedBox { image: f.image, box_index: f.box_row, best_iou: f.best_iou })
                .collect(),
            displaced: e
                .matching
                .displaced
                .iter()
                .map(|d| report::DisplacedBox {
                    image: d.image,
                    box_index: d.box_row,
                    prior: d.prior,
                    taken_by: d.taken_by,
                })
                .collect(),
            priors_per_box: e.matching.priors_per_box.map(|s| report::Spread {
                min: s.min as u64,
                median: s.median,
                max: s.max as u64,
            }),
            never_mined: e.never_mined.map(|n| report::NeverMined { float64: n.float64, float32: n.float32 }),
        },
        class_loc_sums: e.classes.iter().map(|c| c.loc_sum.value()).collect(),
        class_positives: e.classes.iter().map(|c| c.positives).collect(),
    }
}

/// Label smoothing ε must lie in [0, 1], as PyTorch requires.
fn check_label_smoothing(eps: f64) -> Result<()> {
    if (0.0..=1.0).contains(&eps) {
        Ok(())
    } else {
        Err(Error::usage(format!("--label-smoothing {eps} is outside [0, 1]")))
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

/// The shared tail of every subcommand: the pass, the report, the output.
fn finish(
    loss: &dyn PerExample,
    (logits, targets): (&Tensor, &Tensor),
    header: Header,
    settings: ReportSettings,
    with_positives: bool,
) -> Result<Outcome> {
    let report = analyse(loss, logits, targets, header, &settings.analysis, with_positives)?;
    deliver(&report, &settings)
}

/// Runs the per-example pass of `loss` and builds its report. `logits` and
/// `targets` are the arrays non-finite values are reported against;
/// `with_positives` adds the positive/negative columns of elementwise losses.
pub fn analyse(
    loss: &dyn PerExample,
    logits: &Tensor,
    targets: &Tensor,
    mut header: Header,
    settings: &Analysis,
    with_positives: bool,
) -> Result<Report> {
    let tally = pass(loss, settings)?;
    for (operand, tensor) in [logits, targets].into_iter().enumerate() {
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
    if let Some(names) = &settings.class_names {
        if names.len() != loss.classes() {
            header.warnings.push(format!("{} class names given for {} classes", names.len(), loss.classes()));
        }
        header.class_names = Some(names.clone());
    }
    if loss.units() == 0 {
        header.warnings.push("the input holds no examples (a mean of nothing is NaN, as in PyTorch)".into());
    } else if tally.ignored > 0 && tally.classes.iter().all(|c| c.all.count == 0) {
        header.warnings.push("every target is ignored (a mean of nothing is NaN, as in PyTorch)".into());
    }
    let totals = loss.totals(&tally);
    Ok(Report::build(header, totals, tally, with_positives))
}

fn pass(loss: &dyn PerExample, settings: &Analysis) -> Result<Tally> {
    let tally_settings = TallySettings {
        classes: loss.classes(),
        easy_threshold: settings.easy_threshold,
        bins: settings.bins,
        grouping: loss.grouping(),
    };
    let progress = Progress::new(loss.units() as u64, loss.unit_cost() as u64, settings.quiet);
    let work = || {
        tally::run(loss.units(), loss.unit_cost(), &tally_settings, &|n| progress.advance(n), |range, t| {
            loss.eval(range, t)
        })
    };
    let tally = in_pool(settings.threads, work)?;
    progress.finish();
    Ok(tally)
}

fn deliver(report: &Report, settings: &ReportSettings) -> Result<Outcome> {
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    write(report, settings.format, settings.layout, settings.output.as_deref())?;
    let Some(expect) = &settings.expect else {
        return Ok(Outcome::Ok);
    };
    let tolerance = expect.atol + expect.rtol * expect.value.abs();
    match report.value {
        Some(value) if (value - expect.value).abs() <= tolerance => Ok(Outcome::Ok),
        value => {
            let shown = value.map_or_else(|| "NaN".to_string(), |v| v.to_string());
            eprintln!(
                "losscope: check failed: value {shown} differs from the expected {} by more than {tolerance:e} (rtol {}, atol {})",
                expect.value, expect.rtol, expect.atol
            );
            Ok(Outcome::CheckFailed)
        }
    }
}
