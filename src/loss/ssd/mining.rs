//! Hard-negative mining: how many priors to take, and which.

use crate::math::rank_key;

/// The number of priors `rank < ratio · positives` admits, as the references
/// compare an integer rank with that product; ssd.pytorch caps it at P - 1.
pub fn negatives_to_mine(ratio: f64, positives: usize, priors: usize, cap_below_priors: bool) -> usize {
    let admitted = (ratio * positives as f64).ceil() as usize;
    let cap = if cap_below_priors { priors.saturating_sub(1) } else { priors };
    admitted.min(cap)
}

/// Marks in `mined` the `count` priors with the largest `scores`; ties go to
/// the lower prior index (torch's sort leaves them unspecified). Linear time:
/// a selection, not a sort. `keys` is scratch space.
pub fn mark_hardest(scores: &[f64], count: usize, keys: &mut Vec<(f64, u32)>, mined: &mut [bool]) {
    mined.fill(false);
    if count >= scores.len() {
        mined.fill(true);
        return;
    }
    if count == 0 {
        return;
    }
    keys.clear();
    keys.extend(scores.iter().enumerate().map(|(j, &s)| (rank_key(s), j as u32)));
    select_hardest(keys, count);
    for &(_, j) in &keys[..count] {
        mined[j as usize] = true;
    }
}

/// The order of `(score, prior)` keys whose scores went through
/// [`rank_key`], hardest first: the larger score (NaN above all), then the
/// lower prior.
pub fn harder(a: &(f64, u32), b: &(f64, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Moves the `count` hardest of `keys` ([`harder`]) to its front, in no
/// particular order: a selection in linear time, not a sort.
pub fn select_hardest(keys: &mut [(f64, u32)], count: usize) {
    if count > 0 && count < keys.len() {
        keys.select_nth_unstable_by(count - 1, harder);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hardest(scores: &[f64], count: usize) -> Vec<usize> {
        let mut mined = vec![false; scores.len()];
        mark_hardest(scores, count, &mut Vec::new(), &mut mined);
        (0..scores.len()).filter(|&j| mined[j]).collect()
    }

    #[test]
    fn picks_the_largest_scores_lower_index_on_ties() {
        let scores = [0.5, 2.0, 0.0, 2.0, f64::NEG_INFINITY, 1.0];
        assert_eq!(hardest(&scores, 0), Vec::<usize>::new());
        assert_eq!(hardest(&scores, 1), [1]);
        assert_eq!(hardest(&scores, 3), [1, 3, 5]);
        assert_eq!(hardest(&scores, 5), [0, 1, 2, 3, 5]);
        assert_eq!(hardest(&scores, 9), [0, 1, 2, 3, 4, 5]);
        assert_eq!(hardest(&[f64::NAN, 3.0, -0.0, 0.0], 2), [0, 1]);
        assert_eq!(hardest(&[1.0, -0.0, 0.0], 2), [0, 1]);
        assert_eq!(hardest(&[3.0, -f64::NAN, 1.0], 1), [1]);
    }

    #[test]
    fn ssd_pytorch_caps_at_p_minus_one_torchvision_does_not() {
        assert_eq!(negatives_to_mine(3.0, 2, 8732, true), 6);
        assert_eq!(negatives_to_mine(3.0, 3, 8, true), 7);
        assert_eq!(negatives_to_mine(3.0, 3, 8, false), 8);
        assert_eq!(negatives_to_mine(3.0, 0, 8, true), 0);
        assert_eq!(negatives_to_mine(2.5, 3, 100, true), 8);
        assert_eq!(negatives_to_mine(3.0, 1, 1, true), 0);
    }
}
