//! Suspected label errors by confident learning (Northcutt et al. 2021), as
//! `cleanlab.filter.find_label_issues(labels, pred_probs,
//! filter_by='confident_learning', return_indices_ranked_by='self_confidence')`
//! finds them from `pred_probs` = the softmax of the logits.
//!
//! Each class k has a threshold t_k, the mean probability of k over the
//! examples labelled k (from the first pass). A second pass reads every row
//! again: class k is confident for a row when p_k ≥ t_k − 1e-6; with one
//! confident class that class is the row's likely true label, with several
//! its argmax, with none the row is not judged. A row whose likely label is
//! not its given label is a candidate, unless the model's argmax (with its
//! label's probability raised by 1e-6) is the given label after all. The
//! suspects are ranked by self-confidence, p of the given label, lowest
//! first; ties by the lower flat index (cleanlab leaves ties unordered).

use std::ops::Range;

use rayon::prelude::*;

use crate::loss::{SoftmaxRows, first_max};
use crate::report::Suspect;
use crate::tally::{Accumulate, Tally, chunks};

/// cleanlab's margin for "at least the threshold" and for "the model agrees".
const MARGIN: f64 = 1e-6;
/// cleanlab's floor of a threshold.
const THRESHOLD_FLOOR: f64 = 2e-6;
/// The threshold of a class no example is labelled with: unreachable.
const ABSENT: f64 = 2.0;

/// Each class's threshold: the mean p_t of the examples labelled with it.
pub fn thresholds(tally: &Tally) -> Vec<f64> {
    tally
        .classes
        .iter()
        .map(|c| match c.all.count {
            0 => ABSENT,
            n => (c.p_t.value() / n as f64).max(THRESHOLD_FLOOR),
        })
        .collect()
}

/// The suspects of `rows`, least self-confident first.
pub fn find(rows: &dyn SoftmaxRows, classes: usize, thresholds: &[f64]) -> Vec<Suspect> {
    let ranges = chunks(rows.rows(), classes);
    let mut suspects: Vec<Suspect> =
        ranges.into_par_iter().flat_map_iter(|range| judge(rows, range, classes, thresholds)).collect();
    suspects.sort_by(|a, b| {
        a.self_confidence.total_cmp(&b.self_confidence).then(a.flat_index.cmp(&b.flat_index))
    });
    suspects
}

fn judge(rows: &dyn SoftmaxRows, range: Range<usize>, classes: usize, thresholds: &[f64]) -> Vec<Suspect> {
    // Class k is confident when p_k ≥ t_k − MARGIN: the floors once, not
    // per row, padded to whole vectors with floors no probability reaches.
    let mut floors: Vec<f64> = thresholds.iter().map(|t| t - MARGIN).collect();
    floors.resize(crate::math::padded_len(classes), f64::INFINITY);
    let mut scratch = vec![0.0; classes];
    let mut terms = vec![0.0; floors.len()];
    let mut found = Vec::new();
    for i in range {
        let Some(given) = rows.label(i) else { continue };
        let sum = rows.exps(i, &mut scratch, &mut terms);
        // The softmax probabilities, p = exp(x - max) / Σ, in place.
        let confident = crate::math::quotients_at_least(&mut terms, sum, &floors);
        let p = &mut terms[..classes];
        // With one confident class it is the likely label, with several the argmax.
        let likely = match confident {
            None => continue,
            Some((only, false)) => only,
            Some((_, true)) => first_max(p),
        };
        if likely == given {
            continue;
        }
        // The model agrees with the label after all, within the margin.
        let argmax = first_max(p);
        let self_confidence = p[given];
        p[given] += MARGIN;
        if first_max(p) == given {
            continue;
        }
        found.push(Suspect {
            flat_index: i as u64,
            given: given as u32,
            suggested: argmax as u32,
            self_confidence,
        });
    }
    found
}
