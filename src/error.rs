//! The one error type of the library. Every variant ends the process with exit
//! code 2; a failed `--expect` check is not an error but an outcome (exit 1).

use std::fmt;

/// Where a problem sits: the role an array plays ("logits", "targets", …) and
/// the text the user gave for it ("dump.npz:logits").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub role: String,
    pub spec: String,
}

impl Origin {
    pub fn new(role: impl Into<String>, spec: impl Into<String>) -> Self {
        Origin { role: role.into(), spec: spec.into() }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.spec, self.role)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Flags that cannot work, alone or together.
    #[error("{0}")]
    Usage(String),
    /// An input that cannot be read, or that breaks the loss's contract.
    #[error("{origin}: {message}")]
    Input { origin: Origin, message: String },
    /// The report could not be written.
    #[error("{path}: {message}")]
    Output { path: String, message: String },
}

impl Error {
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage(message.into())
    }

    pub fn input(origin: &Origin, message: impl Into<String>) -> Self {
        Error::Input { origin: origin.clone(), message: message.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Formats a flat element index as the multi-index of `shape`, so messages
/// point at `[3, 1]` rather than at `10`.
pub fn index_in(shape: &[usize], flat: usize) -> String {
    let parts: Vec<String> = unravel(shape, flat).iter().map(|p| p.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// A flat element index as the multi-index of `shape` (the flat index alone
/// for one axis or none).
pub fn unravel(shape: &[usize], flat: usize) -> Vec<usize> {
    if shape.len() <= 1 {
        return vec![flat];
    }
    let mut rest = flat;
    let mut parts = vec![0; shape.len()];
    for (axis, &len) in shape.iter().enumerate().rev() {
        let len = len.max(1);
        parts[axis] = rest % len;
        rest /= len;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_index_follows_c_order() {
        assert_eq!(index_in(&[4, 3], 10), "[3, 1]");
        assert_eq!(index_in(&[2, 3, 4], 23), "[1, 2, 3]");
        assert_eq!(index_in(&[5], 4), "[4]");
    }
}
