//! Where a subcommand's arrays come from: a flag naming a file (or a member
//! of one), else the member of the positional bundle named after the role.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Origin, Result};

use super::{Spec, Tensor, bundle_members, holdings, load};

/// The arrays of a subcommand: from flags, else from the bundle. A flag may
/// be given more than once and may be a glob pattern; so may the bundle.
/// Each of its files is then a shard: the files of every flag are sorted by
/// path, the k-th of each makes shard k, and a flag with one file serves
/// every shard. [`Sources::select`] picks the shard the next reads are of.
pub struct Sources {
    bundles: Vec<String>,
    /// The selected shard's bundle and its members.
    bundle: Option<(PathBuf, Vec<String>)>,
    shard: usize,
    /// Each flag's files, by the texts given.
    files: RefCell<BTreeMap<Vec<String>, Vec<String>>>,
    /// The number of shards, and the flag whose files set it.
    shards: RefCell<Option<(usize, String)>>,
}

impl Sources {
    pub fn new(bundle: Option<&str>) -> Result<Self> {
        let bundles = match bundle {
            Some(text) => {
                if let Spec { key: Some(key), .. } = Spec::parse(text) {
                    return Err(Error::usage(format!(
                        "the bundle {text} names a member ':{key}'; a bundle is a whole file (.npz, .pt, .safetensors or JSON) \
                         (pick one array with --logits FILE:KEY)"
                    )));
                }
                expand(&[text.to_string()], "the bundle")?
            }
            None => Vec::new(),
        };
        let sources = Sources {
            bundles,
            bundle: None,
            shard: 0,
            files: RefCell::default(),
            shards: RefCell::default(),
        };
        if sources.bundles.len() > 1 {
            sources.shards.replace(Some((sources.bundles.len(), "the bundle".into())));
        }
        Ok(sources)
    }

    /// Picks shard `shard` for the reads that follow.
    pub fn select(&mut self, shard: usize) -> Result<()> {
        self.shard = shard;
        self.bundle = match self.bundles.get(shard).or(self.bundles.first()) {
            Some(text) => {
                let path = PathBuf::from(text);
                let members = bundle_members(&path)?;
                Some((path, members))
            }
            None => None,
        };
        Ok(())
    }

    /// The number of shards: known once the first shard's arrays are read.
    pub fn shards(&self) -> usize {
        self.shards.borrow().as_ref().map_or(1, |(count, _)| *count)
    }

    /// Every shard's first file: the bundle's, else those of the first flag
    /// with one per shard.
    pub fn shard_name(&self) -> String {
        match self.bundles.get(self.shard) {
            Some(bundle) => bundle.clone(),
            None => format!("shard {}", self.shard),
        }
    }

    /// The selected shard's file of a flag given as `texts`, or `None` when
    /// the flag was not given.
    fn pick(&self, texts: &[String], role: &str) -> Result<Option<String>> {
        if texts.is_empty() {
            return Ok(None);
        }
        let flag = format!("--{}", role.replace('_', "-"));
        let mut cache = self.files.borrow_mut();
        let files = match cache.get(texts) {
            Some(files) => files,
            None => {
                let files = expand(texts, &flag)?;
                cache.entry(texts.to_vec()).or_insert(files)
            }
        };
        if files.len() > 1 {
            let mut shards = self.shards.borrow_mut();
            match &*shards {
                Some((count, by)) if *count != files.len() => {
                    return Err(Error::usage(format!(
                        "{flag} names {} files but {by} names {count}: shards are paired by sorted path, \
                         one file of each per shard (or one file for all)",
                        files.len()
                    )));
                }
                Some(_) => {}
                None => *shards = Some((files.len(), flag)),
            }
        }
        Ok(Some(files.get(self.shard).unwrap_or(&files[0]).clone()))
    }

    /// The spec for `role`: the flag's, or the bundle member of that name.
    pub fn spec(&self, flag: &[String], role: &str) -> Result<Option<Spec>> {
        if let Some(text) = self.pick(flag, role)? {
            return Ok(Some(Spec::parse(&text)));
        }
        let Some((path, members)) = self.bundle.as_ref() else { return Ok(None) };
        Ok(members.iter().any(|m| m == role).then(|| Spec::member(path, role)))
    }

    /// The spec for `role`, which must be given one way or the other.
    pub fn required_spec(&self, flag: &[String], role: &str) -> Result<Spec> {
        self.spec(flag, role)?.ok_or_else(|| {
            let hint = match &self.bundle {
                Some((path, members)) => {
                    format!(
                        " ({} holds no array named '{role}'; {})",
                        path.display(),
                        holdings(role, members)
                    )
                }
                None => String::new(),
            };
            Error::usage(format!("no {role}: pass --{role} FILE or a bundle holding '{role}'{hint}"))
        })
    }

    pub fn required(&self, flag: &[String], role: &str) -> Result<Tensor> {
        load(&self.required_spec(flag, role)?, role)
    }

    /// An optional array that may also be typed inline: `1,2,0.5`.
    pub fn optional(&self, flag: &[String], role: &str) -> Result<Option<Tensor>> {
        let flag_name = format!("--{}", role.replace('_', "-"));
        if let [text] = flag
            && let Some(values) = inline_list(text, &flag_name)?
        {
            return Ok(Some(Tensor::from_list(Origin::new(role, flag_name), values)));
        }
        self.spec(flag, role)?.map(|spec| load(&spec, role)).transpose()
    }
}

/// The files that `texts` name, sorted by path: a text with a glob pattern
/// in its path (`dumps/*.npy`, `dumps/*.npz:logits`) stands for the files
/// it matches; any other text for itself.
pub fn expand(texts: &[String], flag: &str) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for text in texts {
        let spec = Spec::parse(text);
        let pattern = spec.path.to_string_lossy();
        if spec.path.exists() || !pattern.contains(['*', '?', '[']) {
            files.push(text.clone());
            continue;
        }
        let paths = glob::glob(&pattern)
            .map_err(|e| Error::usage(format!("{flag} {text}: not a valid pattern ({e})")))?;
        let before = files.len();
        for path in paths.flatten() {
            let path = path.display().to_string();
            files.push(match &spec.key {
                Some(key) => format!("{path}:{key}"),
                None => path,
            });
        }
        if files.len() == before {
            return Err(Error::usage(format!("{flag} {text}: no file matches the pattern")));
        }
    }
    if texts.len() > 1 {
        files.sort();
    }
    Ok(files)
}

/// Numbers typed on the command line, or `None` when the text names a file.
fn inline_list(text: &str, flag: &str) -> Result<Option<Vec<f64>>> {
    // `nan,1,1` and `inf` are lists too (refused by the weight checks with
    // the entry that is not finite), not files that do not exist.
    let first_is_a_number = text.split(',').next().is_some_and(|first| first.trim().parse::<f64>().is_ok());
    let looks_inline = !Path::new(text).exists()
        && !text.contains(['/', '\\', ':'])
        && (first_is_a_number
            || text.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.')));
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
