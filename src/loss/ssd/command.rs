//! `losscope ssd`: the flags, the arrays they name, and the report parts of
//! the SSD MultiBox loss.

use std::collections::BTreeMap;

use clap::{Args, ValueEnum};
use serde_json::json;

use crate::error::{Error, Origin, Result};
use crate::input::{self, Sources, Spec, Tensor};
use crate::report::{InputInfo, Presentation};
use crate::settings::ReportArgs;

use super::super::{Loss, Prepared, describe};
use super::truths::{Truths, load as load_truths};
use super::{ConfLoss, Keep, Preset, PriorSet, Priors, Ssd, SsdParams, ZeroPositives};

/// The SSD MultiBox loss: matching, encoding, Smooth L1, hard negative mining
#[derive(Debug, Args)]
pub struct SsdArgs {
    /// A bundle (.npz or JSON object) holding arrays named loc, conf, priors and
    /// truths; flags override its members
    #[arg(value_name = "BUNDLE")]
    pub bundle: Option<String>,
    /// Predicted offsets [B, P, 4] (FILE or FILE:KEY)
    #[arg(long, value_name = "SPEC")]
    pub loc: Vec<String>,
    /// Class logits [B, P, C], class 0 = background
    #[arg(long, value_name = "SPEC")]
    pub conf: Vec<String>,
    /// Priors [P, 4] as (cx, cy, w, h), or a built-in set: ssd300-voc, ssd300-coco
    #[arg(long, value_name = "SPEC|SET")]
    pub priors: Option<String>,
    /// Ground truths per image, rows [xmin, ymin, xmax, ymax, label] with 0-based labels:
    /// JSON lists, .npy [B, M, 5] padded with label < 0, or .npz with one array per image
    #[arg(long, value_name = "SPEC")]
    pub truths: Vec<String>,
    /// Whose semantics to reproduce
    #[arg(long, value_enum, default_value_t = Preset::SsdPytorch)]
    pub preset: Preset,
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

/// The arrays of an SSD loss.
pub struct SsdInputs {
    loc: Tensor,
    conf: Tensor,
    priors: Priors,
    truths: Truths,
    /// Where the truths came from, as the user gave it.
    truths_source: String,
}

impl SsdArgs {
    fn params(&self) -> Result<SsdParams> {
        let [v0, v1] = self.variance[..] else {
            return Err(Error::usage(format!("--variance takes two numbers, not {}", self.variance.len())));
        };
        Ok(SsdParams {
            preset: self.preset,
            overlap_threshold: self.overlap,
            variances: [v0, v1],
            neg_pos_ratio: self.neg_pos,
            mining: !self.no_mining,
            loc_weight: self.loc_weight,
            conf_loss: match self.conf_loss {
                SsdConfLoss::Ce => ConfLoss::CrossEntropy,
                SsdConfLoss::Focal => ConfLoss::SoftmaxFocal { alpha: self.alpha, gamma: self.gamma },
            },
            zero_positives: self.zero_positives,
        })
    }
}

impl Loss for SsdArgs {
    const NAME: &'static str = "ssd";
    const PRESENTATION: Presentation =
        Presentation { title: "SSD MultiBox loss", show_ignored: false, gradient_norm_table: true };
    type Inputs = SsdInputs;

    fn shared(&self) -> (&ReportArgs, Option<&str>) {
        (&self.report, self.bundle.as_deref())
    }

    fn read(&self, sources: &Sources) -> Result<SsdInputs> {
        let loc = sources.required(&self.loc, "loc")?;
        let conf = sources.required(&self.conf, "conf")?;
        let priors = match self.priors.as_deref() {
            Some(text) => match PriorSet::from_name(text) {
                Some(set) => Priors::builtin(set),
                None => {
                    let spec = Spec::parse(text);
                    if !spec.path.exists() {
                        // Neither a file nor a built-in set: list the sets.
                        let sets: Vec<&str> = PriorSet::ALL.iter().map(|set| set.name()).collect();
                        return Err(Error::input(
                            &Origin::new("priors", text),
                            format!(
                                "no such file, and not a built-in prior set (the built-in sets are {})",
                                sets.join(", ")
                            ),
                        ));
                    }
                    Priors::from_tensor(&input::load(&spec, "priors")?)?
                }
            },
            None => Priors::from_tensor(&sources.required(&[], "priors")?)?,
        };
        let truths_spec = sources.required_spec(&self.truths, "truths")?;
        let truths = load_truths(&truths_spec, loc.shape.first().copied())?;
        Ok(SsdInputs { loc, conf, priors, truths, truths_source: truths_spec.text() })
    }

    fn prepare<'a>(&'a self, inputs: &'a SsdInputs) -> Result<Prepared<'a>> {
        let SsdInputs { loc, conf, priors, truths, truths_source } = inputs;
        let params = self.params()?;
        let keep = Keep { hardest: self.report.examples, records: self.report.per_example.is_some() };
        let loss = Ssd::keeping(loc, conf, priors, truths, &params, keep)?;
        let mut parameters = BTreeMap::new();
        parameters.insert("preset".into(), json!(self.preset.name()));
        parameters.insert("priors".into(), json!(self.priors.as_deref().unwrap_or("bundle")));
        parameters.insert("overlap".into(), json!(self.overlap));
        parameters.insert("variance".into(), json!(params.variances));
        parameters.insert("neg_pos".into(), json!(self.neg_pos));
        parameters.insert("mining".into(), json!(params.mining));
        parameters.insert("loc_weight".into(), json!(self.loc_weight));
        parameters.insert("conf_loss".into(), json!(params.conf_loss.name()));
        if let ConfLoss::SoftmaxFocal { alpha, gamma } = params.conf_loss {
            parameters.insert("alpha".into(), json!(alpha));
            parameters.insert("gamma".into(), json!(gamma));
        }
        parameters
            .insert("zero_positives".into(), json!(format!("{:?}", self.zero_positives).to_lowercase()));
        let mut described = describe([loc, conf]);
        described.push(InputInfo {
            role: "truths".into(),
            source: truths_source.clone(),
            // Every box of every image, as [xmin, ymin, xmax, ymax, label] rows.
            shape: vec![truths.images.iter().map(Vec::len).sum(), 5],
            dtype: "float64".into(),
            memory_mapped: false,
        });
        Ok(Prepared {
            parameters,
            inputs: described,
            // The tally reports the confidence logits' non-finite values.
            operands: [conf, loc],
            warnings: truths_warnings(truths),
            positives_per_class: true,
            pass: Box::new(loss),
        })
    }
}

/// What the ground truths themselves tell the user.
fn truths_warnings(truths: &Truths) -> Vec<String> {
    let largest = truths.images.iter().flatten().flat_map(|t| t.corners).fold(f64::NEG_INFINITY, f64::max);
    if largest > 2.0 {
        vec![format!(
            "box coordinates reach {largest}: ground truths should be relative to the image size (0 to 1), like the priors"
        )]
    } else {
        Vec::new()
    }
}
