//! Partial reports: the whole mergeable state of a run over part of the
//! data (`--partial`), and their merge (`losscope merge`, and a run over
//! several shards). Merging the partials of any split of the data, in any
//! order, gives the report of one pass over the concatenation: the shards
//! are put in the order of their sources' paths, counts add up exactly, and
//! the sums are merged as compensated or plain sums (docs/distributed.md
//! states the bounds).
//!
//! A partial file is the 16 bytes `losscope-partial`, the format version as
//! a little-endian u32, then [`Partial`] in postcard's encoding.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Origin, Result};
use crate::input;
use crate::loss::{self, Reducer};
use crate::report::{Header, InputInfo, Report, ShardSpan};
use crate::tally::Tally;
use crate::tally::findings::ExampleKind;

/// The first bytes of every partial file.
pub const MAGIC: &[u8; 16] = b"losscope-partial";
/// The layout's version; a file of another version is refused.
pub const FORMAT_VERSION: u32 = 1;

/// The mergeable state of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Partial {
    /// The losscope version that wrote it: partials of two versions do not merge.
    pub version: String,
    /// The loss's subcommand.
    pub loss: String,
    /// The resolved parameters, as JSON text.
    pub parameters: String,
    pub class_names: Option<Vec<String>>,
    pub positives_per_class: bool,
    pub example_kind: ExampleKind,
    /// The example axes of the concatenation of the shards.
    pub example_shape: Vec<usize>,
    /// The shards covered, in concatenation order.
    pub shards: Vec<Shard>,
    /// The warnings of the shards, each once.
    pub warnings: Vec<String>,
    pub reducer: Reducer,
    pub tally: Tally,
}

/// One shard: the arrays read and how many examples they hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shard {
    pub inputs: Vec<InputInfo>,
    pub examples: u64,
}

impl Shard {
    /// What orders the shards and tells them apart: their sources' paths.
    fn key(&self) -> Vec<&str> {
        self.inputs.iter().map(|input| input.source.as_str()).collect()
    }

    fn name(&self) -> String {
        self.inputs.first().map_or_else(|| "(no input)".to_string(), |input| input.source.clone())
    }
}

impl Partial {
    /// The state of a finished pass over one shard. Its warnings are the
    /// shard's own; those about the totals are worked out at the end.
    pub fn of_shard(header: Header, reducer: Reducer, tally: Tally) -> Partial {
        let examples = header.example_shape.iter().product::<usize>() as u64;
        Partial {
            version: env!("CARGO_PKG_VERSION").into(),
            loss: header.loss.into(),
            parameters: Value::from(serde_json::Map::from_iter(header.parameters)).to_string(),
            class_names: header.class_names,
            positives_per_class: header.positives_per_class,
            example_kind: header.example_kind,
            example_shape: header.example_shape,
            shards: vec![Shard { inputs: header.inputs, examples }],
            warnings: header.warnings,
            reducer,
            tally,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        // Every field is of a type postcard encodes.
        bytes.extend(postcard::to_stdvec(self).expect("a partial always encodes"));
        bytes
    }

    /// Reads and checks a partial file.
    pub fn read(path: &Path) -> Result<Partial> {
        let origin = Origin::new("partial", path.display().to_string());
        let bytes = input::read_text(path, &origin)?;
        Partial::from_bytes(&bytes).map_err(|message| Error::input(&origin, message))
    }

    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Partial, String> {
        let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
            return Err("not a losscope partial report (write one with --partial -o FILE)".into());
        };
        let Some((version, body)) = rest.split_first_chunk::<4>() else {
            return Err("the partial report ends inside its header".into());
        };
        let version = u32::from_le_bytes(*version);
        if version != FORMAT_VERSION {
            return Err(format!(
                "partial format version {version}, but this losscope reads version {FORMAT_VERSION}: \
                 write the partials again with this version"
            ));
        }
        let partial: Partial =
            postcard::from_bytes(body).map_err(|e| format!("the partial report is damaged ({e})"))?;
        partial.check()?;
        Ok(partial)
    }

    /// Checks what the rest of the program relies on, so that a damaged or
    /// forged file is refused here rather than misread later.
    fn check(&self) -> std::result::Result<(), String> {
        if loss::presentation(&self.loss).is_none() {
            return Err(format!("unknown loss '{}'", self.loss));
        }
        if !serde_json::from_str::<Value>(&self.parameters).is_ok_and(|p| p.is_object()) {
            return Err("its parameters are not a JSON object".into());
        }
        if self.shards.is_empty() {
            return Err("it covers no shard".into());
        }
        self.tally.check_layout()?;
        let examples = self.shards.iter().try_fold(0u64, |n, s| n.checked_add(s.examples));
        let shape = self.example_shape.iter().try_fold(1u64, |n, &len| n.checked_mul(len as u64));
        if examples.is_none() || examples != shape {
            return Err(format!(
                "its shards hold {} examples, but its example shape {:?} holds {}",
                examples.map_or_else(|| "too many".into(), |n| n.to_string()),
                self.example_shape,
                shape.map_or_else(|| "too many".into(), |n| n.to_string())
            ));
        }
        let total = examples.unwrap_or(0);
        if let Some(noted) = self.tally.findings.hardest.sorted().iter().find(|n| n.index >= total) {
            return Err(format!("a hardest example's index {} is past its {total} examples", noted.index));
        }
        Ok(())
    }

    /// Merges partials covering different shards into one, in the order of
    /// the shards' paths whatever the order given.
    pub fn merge(mut parts: Vec<(String, Partial)>) -> Result<Partial> {
        let mut owner: BTreeMap<Vec<&str>, &str> = BTreeMap::new();
        for (name, part) in &parts {
            for shard in &part.shards {
                if let Some(earlier) = owner.insert(shard.key(), name) {
                    return Err(Error::usage(format!(
                        "merge: shard {} is in both {earlier} and {name}: merge each shard once",
                        shard.name()
                    )));
                }
            }
        }
        parts.sort_by(|a, b| a.1.shards[0].key().cmp(&b.1.shards[0].key()));
        let mut parts = parts.into_iter();
        let Some((_, mut merged)) = parts.next() else {
            return Err(Error::usage("merge: no partial reports given"));
        };
        for (name, part) in parts {
            merged.absorb(part).map_err(|what| Error::usage(format!("merge: {name} {what}")))?;
        }
        Ok(merged)
    }

    /// Adds `other`'s shards after this one's and renumbers the hardest
    /// examples for the new order.
    fn absorb(&mut self, other: Partial) -> std::result::Result<(), String> {
        self.check_compatible(&other)?;
        self.reducer.merge(&other.reducer)?;
        let mut shards: Vec<Shard> = self.shards.iter().chain(&other.shards).cloned().collect();
        shards.sort_by(|a, b| a.key().cmp(&b.key()));
        let new_first: BTreeMap<Vec<&str>, u64> = starts(&shards).into_iter().collect();
        let renumber = |tally: &mut Tally, old: &[Shard]| {
            let old_starts = starts(old);
            tally.findings.hardest.renumber(|index| {
                let at = old_starts.partition_point(|(_, first)| *first <= index) - 1;
                let (key, first) = &old_starts[at];
                new_first[key] + (index - first)
            });
        };
        let mut theirs = other.tally;
        renumber(&mut self.tally, &self.shards);
        renumber(&mut theirs, &other.shards);
        self.tally.merge(&theirs);
        self.example_shape[0] += other.example_shape[0];
        for warning in other.warnings {
            if !self.warnings.contains(&warning) {
                self.warnings.push(warning);
            }
        }
        self.shards = shards;
        Ok(())
    }

    /// Why `other` cannot be merged into this one, if it cannot.
    fn check_compatible(&self, other: &Partial) -> std::result::Result<(), String> {
        let differ = |what: &str, mine: &dyn std::fmt::Debug, theirs: &dyn std::fmt::Debug| {
            Err(format!("differs in {what}: {theirs:?}, where the others have {mine:?}"))
        };
        if self.version != other.version {
            return differ("losscope version", &self.version, &other.version);
        }
        if self.loss != other.loss {
            return differ("loss", &self.loss, &other.loss);
        }
        if self.parameters != other.parameters {
            let mine: BTreeMap<String, Value> = serde_json::from_str(&self.parameters).unwrap_or_default();
            let theirs: BTreeMap<String, Value> = serde_json::from_str(&other.parameters).unwrap_or_default();
            let keys: BTreeSet<&String> = mine.keys().chain(theirs.keys()).collect();
            if let Some(key) = keys.into_iter().find(|k| mine.get(*k) != theirs.get(*k)) {
                return Err(format!(
                    "differs in parameter {key}: {}, where the others have {}",
                    theirs.get(key).map_or_else(|| "none".into(), Value::to_string),
                    mine.get(key).map_or_else(|| "none".into(), Value::to_string)
                ));
            }
        }
        if self.tally.settings.classes != other.tally.settings.classes {
            return differ(
                "its number of classes",
                &self.tally.settings.classes,
                &other.tally.settings.classes,
            );
        }
        if self.example_shape.len() != other.example_shape.len()
            || self.example_shape.get(1..) != other.example_shape.get(1..)
            || self.example_shape.is_empty()
        {
            return differ("the shape of its examples", &self.example_shape, &other.example_shape);
        }
        if self.class_names != other.class_names {
            return differ("class names", &self.class_names, &other.class_names);
        }
        if !self.tally.settings.same_layout(&other.tally.settings) {
            return Err(
                "differs in its report settings (--examples, --bins, --easy-threshold or --calibration-bins)"
                    .into(),
            );
        }
        Ok(())
    }

    /// The final report.
    pub fn into_report(self) -> Report {
        let (loss, presentation) =
            loss::presentation(&self.loss).expect("a checked partial names a known loss");
        let parameters = serde_json::from_str(&self.parameters).unwrap_or_default();
        let inputs = self.shards.iter().flat_map(|s| s.inputs.iter().cloned()).collect();
        let header = Header {
            parameters,
            inputs,
            class_names: self.class_names,
            warnings: self.warnings,
            positives_per_class: self.positives_per_class,
            example_kind: self.example_kind,
            example_shape: self.example_shape,
            shards: starts(&self.shards)
                .into_iter()
                .zip(&self.shards)
                .map(|((_, first), shard)| ShardSpan { source: shard.name(), first })
                .collect(),
            ..Header::new(loss, presentation)
        };
        conclude(header, &self.reducer, self.tally)
    }
}

/// Each shard's key and the flat index of its first example.
fn starts(shards: &[Shard]) -> Vec<(Vec<&str>, u64)> {
    let mut first = 0;
    shards
        .iter()
        .map(|shard| {
            let start = first;
            first += shard.examples;
            (shard.key(), start)
        })
        .collect()
}

/// The report of a finished tally: the totals, and the warnings about them.
pub fn conclude(mut header: Header, reducer: &Reducer, tally: Tally) -> Report {
    let totals = reducer.totals(&tally);
    let counted: u64 = tally.classes.iter().map(|c| c.all.count).sum();
    if header.example_shape.iter().product::<usize>() == 0 {
        header.warnings.push("the input holds no examples (a mean of nothing is NaN, as in PyTorch)".into());
    } else if tally.ignored > 0 && counted == 0 {
        header.warnings.push(if totals.value.is_nan() {
            "every target is ignored (a mean of nothing is NaN, as in PyTorch)".into()
        } else {
            "every target is ignored: the sum and the value are 0".into()
        });
    }
    Report::build(header, totals, tally)
}
