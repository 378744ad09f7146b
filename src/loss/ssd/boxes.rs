//! Box geometry as the references compute it: corner and centre forms, IoU
//! without an epsilon, the two encodings of a matched box against its prior,
//! and Smooth L1.

/// `[xmin, ymin, xmax, ymax]`.
pub type Corners = [f64; 4];
/// `[cx, cy, w, h]`.
pub type CenterSize = [f64; 4];

/// ssd.pytorch's `point_form`: centre-size to corners.
pub fn point_form(b: &CenterSize) -> Corners {
    [b[0] - b[2] / 2.0, b[1] - b[3] / 2.0, b[0] + b[2] / 2.0, b[1] + b[3] / 2.0]
}

/// `(xmax - xmin) · (ymax - ymin)`, unclamped.
pub fn area(b: &Corners) -> f64 {
    (b[2] - b[0]) * (b[3] - b[1])
}

/// Intersection over union as ssd.pytorch's `jaccard` and torchvision's
/// `box_iou` compute it (the same operations): no epsilon, so the caller
/// keeps zero-area boxes out; 0 for disjoint boxes. Matching computes it
/// eight priors at a time; this one pair at a time is what the tests
/// hold that to.
#[cfg(test)]
pub fn iou(a: &Corners, b: &Corners) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    if inter == 0.0 {
        return 0.0;
    }
    inter / (area(a) + area(b) - inter)
}

/// ssd.pytorch's `encode`: the centre offset in units of `variances[0]` ×
/// the prior's size, and the log size ratio over `variances[1]`.
pub fn encode_ssd_pytorch(truth: &Corners, prior: &CenterSize, variances: [f64; 2]) -> [f64; 4] {
    let dx = ((truth[0] + truth[2]) / 2.0 - prior[0]) / (variances[0] * prior[2]);
    let dy = ((truth[1] + truth[3]) / 2.0 - prior[1]) / (variances[0] * prior[3]);
    let dw = ((truth[2] - truth[0]) / prior[2]).ln() / variances[1];
    let dh = ((truth[3] - truth[1]) / prior[3]).ln() / variances[1];
    [dx, dy, dw, dh]
}

/// torchvision's `encode_boxes` with `weights` `(wx, wy, ww, wh)`: sizes and
/// centres are taken from the corner-form anchor, as torchvision stores it.
pub fn encode_torchvision(truth: &Corners, anchor: &Corners, weights: [f64; 4]) -> [f64; 4] {
    let anchor_w = anchor[2] - anchor[0];
    let anchor_h = anchor[3] - anchor[1];
    let anchor_cx = anchor[0] + 0.5 * anchor_w;
    let anchor_cy = anchor[1] + 0.5 * anchor_h;
    let truth_w = truth[2] - truth[0];
    let truth_h = truth[3] - truth[1];
    let truth_cx = truth[0] + 0.5 * truth_w;
    let truth_cy = truth[1] + 0.5 * truth_h;
    [
        weights[0] * (truth_cx - anchor_cx) / anchor_w,
        weights[1] * (truth_cy - anchor_cy) / anchor_h,
        weights[2] * (truth_w / anchor_w).ln(),
        weights[3] * (truth_h / anchor_h).ln(),
    ]
}

/// `F.smooth_l1_loss` of one difference with β = 1, as both references call it.
pub fn smooth_l1(difference: f64) -> f64 {
    let z = difference.abs();
    if z < 1.0 { 0.5 * z * z } else { z - 0.5 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_overlapping_disjoint_and_nested_boxes() {
        let a = [0.0, 0.0, 0.5, 0.5];
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[0.25, 0.0, 0.75, 0.5]), 0.125 / 0.375);
        assert_eq!(iou(&a, &[0.5, 0.5, 1.0, 1.0]), 0.0);
        assert_eq!(iou(&a, &[0.6, 0.0, 1.0, 0.5]), 0.0);
        assert_eq!(iou(&[0.0, 0.0, 1.0, 1.0], &a), 0.25);
    }

    #[test]
    fn point_form_of_a_centre_size_box() {
        assert_eq!(point_form(&[0.5, 0.25, 0.5, 0.25]), [0.25, 0.125, 0.75, 0.375]);
    }

    #[test]
    fn encodings_of_the_golden_case() {
        // §5: box [.5,.5,1,.875] on prior (.75,.75,.5,.5) gives [0, -1.25, 0, ln(.75)/.2].
        let truth = [0.5, 0.5, 1.0, 0.875];
        let prior = [0.75, 0.75, 0.5, 0.5];
        let ssd = encode_ssd_pytorch(&truth, &prior, [0.1, 0.2]);
        assert_eq!(ssd[0], 0.0);
        assert!((ssd[1] + 1.25).abs() < 1e-15);
        assert_eq!(ssd[2], 0.0);
        assert!((ssd[3] - 0.75f64.ln() / 0.2).abs() < 1e-15);
        let tv = encode_torchvision(&truth, &point_form(&prior), [10.0, 10.0, 5.0, 5.0]);
        for k in 0..4 {
            assert!((tv[k] - ssd[k]).abs() < 1e-14, "{tv:?} vs {ssd:?}");
        }
    }

    #[test]
    fn smooth_l1_switches_at_one() {
        assert_eq!(smooth_l1(0.5), 0.125);
        assert_eq!(smooth_l1(-0.5), 0.125);
        assert_eq!(smooth_l1(1.0), 0.5);
        assert_eq!(smooth_l1(-3.0), 2.5);
    }
}
