//! Where a subcommand's arrays come from: a flag naming a file (or a member
//! of one), else the member of the positional bundle named after the role.

use std::path::{Path, PathBuf};

use crate::error::{Error, Origin, Result};

use super::{Spec, Tensor, bundle_members, load};

/// The arrays of a subcommand: from flags, else from the bundle.
pub struct Sources {
    bundle: Option<(PathBuf, Vec<String>)>,
}

impl Sources {
    pub fn new(bundle: Option<&str>) -> Result<Self> {
        let bundle = match bundle {
            Some(text) => {
                if let Spec { key: Some(key), .. } = Spec::parse(text) {
                    return Err(Error::usage(format!(
                        "the bundle {text} names a member ':{key}'; a bundle is a whole file (.npz, .pt, .safetensors or JSON) \
                         (pick one array with --logits FILE:KEY)"
                    )));
                }
                let path = PathBuf::from(text);
                let members = bundle_members(&path)?;
                Some((path, members))
            }
            None => None,
        };
        Ok(Sources { bundle })
    }

    /// The spec for `role`: the flag's, or the bundle member of that name.
    pub fn spec(&self, flag: Option<&str>, role: &str) -> Option<Spec> {
        if let Some(text) = flag {
            return Some(Spec::parse(text));
        }
        let (path, members) = self.bundle.as_ref()?;
        members.iter().any(|m| m == role).then(|| Spec::member(path, role))
    }

    /// The spec for `role`, which must be given one way or the other.
    pub fn required_spec(&self, flag: Option<&str>, role: &str) -> Result<Spec> {
        self.spec(flag, role).ok_or_else(|| {
            let hint = match &self.bundle {
                Some((path, _)) => format!(" ({} holds no array named '{role}')", path.display()),
                None => String::new(),
            };
            Error::usage(format!("no {role}: pass --{role} FILE or a bundle holding '{role}'{hint}"))
        })
    }

    pub fn required(&self, flag: Option<&str>, role: &str) -> Result<Tensor> {
        load(&self.required_spec(flag, role)?, role)
    }

    /// An optional array that may also be typed inline: `1,2,0.5`.
    pub fn optional(&self, flag: Option<&str>, role: &str) -> Result<Option<Tensor>> {
        let flag_name = format!("--{}", role.replace('_', "-"));
        if let Some(text) = flag
            && let Some(values) = inline_list(text, &flag_name)?
        {
            return Ok(Some(Tensor::from_list(Origin::new(role, flag_name), values)));
        }
        self.spec(flag, role).map(|spec| load(&spec, role)).transpose()
    }
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
