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

use rayon::prelude::*;
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
/// The layout's version; a file of another version is refused. Version 2
/// keeps eight copies of each difficulty cell (version 1 kept four).
pub const FORMAT_VERSION: u32 = 2;

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

/// The fields of [`Partial`] up to its shards: what ordering the parts of a
/// merge needs, read without the rest (the fields before the shards are
/// read past, not used).
#[derive(Deserialize)]
struct Head {
    _version: String,
    _loss: String,
    _parameters: String,
    _class_names: Option<Vec<String>>,
    _positives_per_class: bool,
    _example_kind: ExampleKind,
    _example_shape: Vec<usize>,
    shards: Vec<Shard>,
}

/// The encoded state after the magic bytes and a known format version.
fn body_of(bytes: &[u8]) -> std::result::Result<&[u8], String> {
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
    Ok(body)
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
        let partial: Partial = postcard::from_bytes(body_of(bytes)?)
            .map_err(|e| format!("the partial report is damaged ({e})"))?;
        partial.check()?;
        Ok(partial)
    }

    /// Reads the shards a partial file covers: the start of its encoding.
    fn read_shards(path: &Path) -> Result<Vec<Shard>> {
        let origin = Origin::new("partial", path.display().to_string());
        let bytes = input::read_text(path, &origin)?;
        let head = body_of(&bytes).and_then(|body| {
            postcard::take_from_bytes::<Head>(body)
                .map_err(|e| format!("the partial report is damaged ({e})"))
        });
        match head {
            Ok((head, _)) if !head.shards.is_empty() => Ok(head.shards),
            Ok(_) => Err(Error::input(&origin, "it covers no shard")),
            Err(message) => Err(Error::input(&origin, message)),
        }
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
        self.reducer.check(total, self.tally.settings.classes)?;
        if let Some(noted) = self.tally.findings.hardest.sorted().iter().find(|n| n.index >= total) {
            return Err(format!("a hardest example's index {} is past its {total} examples", noted.index));
        }
        Ok(())
    }

    /// Merges partials covering different shards into one, in the order of
    /// the shards' paths whatever the order given.
    pub fn merge(parts: Vec<(String, Partial)>) -> Result<Partial> {
        let plan =
            MergePlan::new(parts.iter().map(|(name, part)| (name.clone(), part.shards.clone())).collect())?;
        let mut parts: Vec<Option<(String, Partial)>> = parts.into_iter().map(Some).collect();
        plan.fold(|k| Ok(parts[k].take().expect("each part is folded once")))
    }

    /// Merges the partial files `paths`, reading one at a time in the
    /// order of their shards, so that memory holds two partials at most.
    pub fn merge_files(paths: &[String]) -> Result<Partial> {
        let heads = paths
            .par_iter()
            .map(|path| Ok((path.clone(), Partial::read_shards(Path::new(path))?)))
            .collect::<Result<Vec<_>>>()?;
        let plan = MergePlan::new(heads)?;
        plan.fold(|k| Ok((paths[k].clone(), Partial::read(Path::new(&paths[k]))?)))
    }

    /// Moves the hardest examples of this part's shards to the places
    /// `new_first` gives the shards in a new concatenation.
    fn renumber(&mut self, new_first: &BTreeMap<Vec<String>, u64>) {
        // Each shard's first index here and in the concatenation, looked up
        // once per shard rather than once per example moved.
        let moves: Vec<(u64, u64)> = starts(&self.shards)
            .into_iter()
            .map(|(key, first)| (first, new_first[&key.into_iter().map(String::from).collect::<Vec<_>>()]))
            .collect();
        let new_index = |index: u64| {
            let (old, new) = moves[moves.partition_point(|&(first, _)| first <= index) - 1];
            new + (index - old)
        };
        self.tally.findings.hardest.renumber(new_index);
        self.reducer.renumber(new_index);
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

/// The order in which partials merge, and where each shard goes in the
/// concatenation.
struct MergePlan {
    /// Names of the parts, as given.
    names: Vec<String>,
    /// The parts' indices, in the order of their first shards' paths.
    order: Vec<usize>,
    /// Every shard, in path order.
    shards: Vec<Shard>,
    /// Each shard's key and its first example's place in the concatenation.
    new_first: BTreeMap<Vec<String>, u64>,
}

impl MergePlan {
    /// Plans the merge of parts covering `shards` each; refuses a shard
    /// covered twice.
    fn new(parts: Vec<(String, Vec<Shard>)>) -> Result<MergePlan> {
        if parts.is_empty() {
            return Err(Error::usage("merge: no partial reports given"));
        }
        let mut owner: BTreeMap<Vec<&str>, &str> = BTreeMap::new();
        for (name, shards) in &parts {
            for shard in shards {
                if let Some(earlier) = owner.insert(shard.key(), name) {
                    return Err(Error::usage(format!(
                        "merge: shard {} is in both {earlier} and {name}: merge each shard once",
                        shard.name()
                    )));
                }
            }
        }
        let mut order: Vec<usize> = (0..parts.len()).collect();
        order.sort_by(|&a, &b| parts[a].1[0].key().cmp(&parts[b].1[0].key()));
        let mut shards: Vec<Shard> = parts.iter().flat_map(|(_, s)| s.iter().cloned()).collect();
        shards.sort_by(|a, b| a.key().cmp(&b.key()));
        let new_first = starts(&shards)
            .into_iter()
            .map(|(key, first)| (key.into_iter().map(String::from).collect(), first))
            .collect();
        Ok(MergePlan { names: parts.into_iter().map(|(name, _)| name).collect(), order, shards, new_first })
    }

    /// Merges the parts that `part(k)` gives, in the planned order.
    fn fold(self, mut part: impl FnMut(usize) -> Result<(String, Partial)>) -> Result<Partial> {
        let (_, mut merged) = part(self.order[0])?;
        merged.renumber(&self.new_first);
        let mut seen: BTreeSet<String> = merged.warnings.iter().cloned().collect();
        for &k in &self.order[1..] {
            let (_, mut other) = part(k)?;
            let refuse = |what: String| Error::usage(format!("merge: {} {what}", self.names[k]));
            merged.check_compatible(&other).map_err(refuse)?;
            other.renumber(&self.new_first);
            merged.reducer.merge(&other.reducer).map_err(refuse)?;
            merged.tally.merge(&other.tally);
            merged.example_shape[0] += other.example_shape[0];
            for warning in other.warnings {
                if seen.insert(warning.clone()) {
                    merged.warnings.push(warning);
                }
            }
        }
        merged.shards = self.shards;
        Ok(merged)
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
    header.sections = reducer.sections();
    header.warnings.extend(reducer.warnings());
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
