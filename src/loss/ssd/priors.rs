//! Priors (default boxes): read from a `[P, 4]` array of `(cx, cy, w, h)`,
//! or generated for SSD300 exactly as ssd.pytorch's `PriorBox` does.

use crate::error::{Error, Origin, Result, index_in};
use crate::input::Tensor;

use super::boxes::{CenterSize, Corners, point_form};
use super::matching::PriorColumns;

const ROLE: &str = "priors";

/// The built-in prior sets: ssd.pytorch's SSD300 configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PriorSet {
    /// `data/config.py: voc` (8732 priors).
    Ssd300Voc,
    /// `data/config.py: coco` (8732 priors).
    Ssd300Coco,
}

/// The fields of a `PriorBox` configuration.
struct PriorConfig {
    image_size: f64,
    feature_maps: [usize; 6],
    steps: [f64; 6],
    min_sizes: [f64; 6],
    max_sizes: [f64; 6],
    aspect_ratios: [&'static [f64]; 6],
}

const SSD300_FEATURE_MAPS: [usize; 6] = [38, 19, 10, 5, 3, 1];
const SSD300_STEPS: [f64; 6] = [8.0, 16.0, 32.0, 64.0, 100.0, 300.0];
const SSD300_ASPECT_RATIOS: [&[f64]; 6] = [&[2.0], &[2.0, 3.0], &[2.0, 3.0], &[2.0, 3.0], &[2.0], &[2.0]];

impl PriorSet {
    /// Every built-in set.
    pub const ALL: [PriorSet; 2] = [PriorSet::Ssd300Voc, PriorSet::Ssd300Coco];

    pub fn name(self) -> &'static str {
        match self {
            PriorSet::Ssd300Voc => "ssd300-voc",
            PriorSet::Ssd300Coco => "ssd300-coco",
        }
    }

    /// The set a name on the command line stands for, if it is one.
    pub fn from_name(name: &str) -> Option<PriorSet> {
        PriorSet::ALL.into_iter().find(|set| set.name() == name)
    }

    fn config(self) -> PriorConfig {
        let (min_sizes, max_sizes) = match self {
            PriorSet::Ssd300Voc => {
                ([30.0, 60.0, 111.0, 162.0, 213.0, 264.0], [60.0, 111.0, 162.0, 213.0, 264.0, 315.0])
            }
            PriorSet::Ssd300Coco => {
                ([21.0, 45.0, 99.0, 153.0, 207.0, 261.0], [45.0, 99.0, 153.0, 207.0, 261.0, 315.0])
            }
        };
        PriorConfig {
            image_size: 300.0,
            feature_maps: SSD300_FEATURE_MAPS,
            steps: SSD300_STEPS,
            min_sizes,
            max_sizes,
            aspect_ratios: SSD300_ASPECT_RATIOS,
        }
    }

    /// `PriorBox(cfg).forward()`: cells row by row, per cell the small square,
    /// the large square, then each aspect ratio and its inverse. The Python
    /// floats are stored as float32 (`torch.Tensor(mean)`) and clipped to
    /// [0, 1], so the values here are float32 values.
    fn generate(self) -> Vec<CenterSize> {
        let cfg = self.config();
        let mut priors = Vec::new();
        for (k, &cells) in cfg.feature_maps.iter().enumerate() {
            let f_k = cfg.image_size / cfg.steps[k];
            let s_k = cfg.min_sizes[k] / cfg.image_size;
            let s_k_prime = (s_k * (cfg.max_sizes[k] / cfg.image_size)).sqrt();
            for i in 0..cells {
                for j in 0..cells {
                    let cx = (j as f64 + 0.5) / f_k;
                    let cy = (i as f64 + 0.5) / f_k;
                    priors.push([cx, cy, s_k, s_k]);
                    priors.push([cx, cy, s_k_prime, s_k_prime]);
                    for &ratio in cfg.aspect_ratios[k] {
                        let r = ratio.sqrt();
                        priors.push([cx, cy, s_k * r, s_k / r]);
                        priors.push([cx, cy, s_k / r, s_k * r]);
                    }
                }
            }
        }
        for prior in &mut priors {
            for v in prior.iter_mut() {
                *v = (*v as f32).clamp(0.0, 1.0) as f64;
            }
        }
        priors
    }
}

/// The priors of one evaluation, in both forms the references use.
#[derive(Debug, Clone)]
pub struct Priors {
    /// The array read, or the built-in set's name as the spec.
    pub origin: Origin,
    centers: Vec<CenterSize>,
    corners: Vec<Corners>,
    columns: PriorColumns,
}

impl Priors {
    pub fn builtin(set: PriorSet) -> Priors {
        Priors::from_centers(Origin::new(ROLE, set.name()), set.generate())
    }

    /// Priors from a `[P, 4]` array of `(cx, cy, w, h)`; every value must be
    /// finite and every size positive (a zero size divides by zero in encode).
    pub fn from_tensor(tensor: &Tensor) -> Result<Priors> {
        let origin = &tensor.origin;
        if tensor.shape.len() != 2 || tensor.shape[1] != 4 {
            return Err(Error::input(
                origin,
                format!("shape {} is not [P, 4] priors (cx, cy, w, h)", tensor.shape_text()),
            ));
        }
        if tensor.shape[0] == 0 {
            return Err(Error::input(origin, "holds no priors"));
        }
        let values = tensor.values();
        let mut centers = Vec::with_capacity(tensor.shape[0]);
        for j in 0..tensor.shape[0] {
            let mut prior = [0.0; 4];
            values.copy_to_f64(4 * j, 1, &mut prior);
            if let Some(k) = prior.iter().position(|v| !v.is_finite()) {
                return Err(Error::input(
                    origin,
                    format!(
                        "prior {j}: value {} at {} is not finite",
                        prior[k],
                        index_in(&tensor.shape, 4 * j + k)
                    ),
                ));
            }
            if !(prior[2] > 0.0 && prior[3] > 0.0) {
                return Err(Error::input(
                    origin,
                    format!("prior {j}: size {} × {} is not positive", prior[2], prior[3]),
                ));
            }
            centers.push(prior);
        }
        Ok(Priors::from_centers(origin.clone(), centers))
    }

    fn from_centers(origin: Origin, centers: Vec<CenterSize>) -> Priors {
        let corners: Vec<Corners> = centers.iter().map(point_form).collect();
        let columns = PriorColumns::new(&corners);
        Priors { origin, centers, corners, columns }
    }

    pub fn len(&self) -> usize {
        self.centers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.centers.is_empty()
    }

    /// `(cx, cy, w, h)`, as given.
    pub fn centers(&self) -> &[CenterSize] {
        &self.centers
    }

    /// `point_form` of the centres: what both references match against.
    pub fn corners(&self) -> &[Corners] {
        &self.corners
    }

    /// The corners coordinate by coordinate, for matching.
    pub fn columns(&self) -> &PriorColumns {
        &self.columns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssd300_sets_have_8732_priors_in_prior_box_order() {
        for set in [PriorSet::Ssd300Voc, PriorSet::Ssd300Coco] {
            let priors = Priors::builtin(set);
            assert_eq!(priors.len(), 8732);
            assert_eq!(PriorSet::from_name(set.name()), Some(set));
        }
        let voc = Priors::builtin(PriorSet::Ssd300Voc);
        let c = voc.centers();
        // First cell of the 38×38 map: 4 priors, then the next cell along x.
        let f = (0.5f64 / 37.5) as f32 as f64;
        assert_eq!(c[0], [f, f, (0.1f32) as f64, (0.1f32) as f64]);
        assert_eq!(c[1][2], ((0.1f64 * 0.2).sqrt() as f32) as f64);
        assert_eq!(c[2][2], ((0.1 * 2f64.sqrt()) as f32) as f64);
        assert_eq!(c[4][0], (1.5f64 / 37.5) as f32 as f64);
        // The last prior is the 1×1 map's, clipped to 1 in its long side.
        assert_eq!(c[8731], [0.5, 0.5, ((264.0f64 / 300.0) / 2f64.sqrt()) as f32 as f64, 1.0]);
        assert!(c.iter().flatten().all(|&v| (0.0..=1.0).contains(&v)));
    }
}
