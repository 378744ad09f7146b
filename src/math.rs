//! Numerical kernels of the per-example passes. The hot one is the sum of
//! `exp(x - m)` over a row of logits: written branch-free with four
//! independent accumulators, so the compiler vectorises it, and compiled a
//! second time for AVX2 (chosen at run time). Both builds perform the same
//! IEEE operations in the same order — no fused multiply-add — so they give
//! the same bits, on any machine.

/// ln 2 split so that `n · LN2_HI` is exact for |n| < 2^11.
const LN2_HI: f64 = 6.931_471_803_691_238e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
const LOG2_E: f64 = std::f64::consts::LOG2_E;
/// Adding and subtracting 1.5·2^52 rounds a double to the nearest integer.
const ROUND: f64 = 6_755_399_441_055_744.0;
/// Below this, exp(x) is under the smallest normal double; it is taken as 0
/// (the true value is below 2.3e-308, invisible next to any other term).
const SMALLEST: f64 = -708.39;

/// exp(x) for x ≤ 0 (and -inf, and NaN), within about one ulp.
#[inline(always)]
pub fn exp_nonpositive(x: f64) -> f64 {
    let clamped = x.max(SMALLEST);
    let shifted = clamped * LOG2_E + ROUND;
    let n = shifted - ROUND;
    // x = n·ln2 + r with |r| ≤ ln2/2.
    let r = (clamped - n * LN2_HI) - n * LN2_LO;
    // exp(r) - 1 by its Taylor series to degree 13 (error below 2e-17),
    // then 1 + that with a single rounding.
    let mut p = 1.0 / 6_227_020_800.0;
    p = p * r + 1.0 / 479_001_600.0;
    p = p * r + 1.0 / 39_916_800.0;
    p = p * r + 1.0 / 3_628_800.0;
    p = p * r + 1.0 / 362_880.0;
    p = p * r + 1.0 / 40_320.0;
    p = p * r + 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    let expm1 = r + (r * r) * p;
    // 2^n built in the exponent field; n ≥ -1022 thanks to the clamp.
    let bits = (shifted.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(1023)) << 52;
    let value = (1.0 + expm1) * f64::from_bits(bits);
    if x < SMALLEST {
        0.0
    } else if x.is_nan() {
        x
    } else {
        value
    }
}

#[inline(always)]
fn sum_exp_body(row: &[f64], shift: f64) -> f64 {
    let mut lanes = [0.0f64; 4];
    let mut chunks = row.chunks_exact(4);
    for chunk in &mut chunks {
        for k in 0..4 {
            lanes[k] += exp_nonpositive(chunk[k] - shift);
        }
    }
    for (k, &x) in chunks.remainder().iter().enumerate() {
        lanes[k] += exp_nonpositive(x - shift);
    }
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
}

/// The same operations as [`exp_nonpositive`] and [`sum_exp_body`], four
/// lanes at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sum_exp_avx2(row: &[f64], shift: f64) -> f64 {
    use std::arch::x86_64::*;
    const TAYLOR: [f64; 12] = [
        1.0 / 6_227_020_800.0,
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
    ];
    let mut chunks = row.chunks_exact(4);
    let mut acc = _mm256_setzero_pd();
    let shift_v = _mm256_set1_pd(shift);
    let smallest = _mm256_set1_pd(SMALLEST);
    let round = _mm256_set1_pd(ROUND);
    let round_bits = _mm256_set1_epi64x(ROUND.to_bits() as i64);
    let bias = _mm256_set1_epi64x(1023);
    let one = _mm256_set1_pd(1.0);
    for chunk in &mut chunks {
        // SAFETY: `chunk` holds exactly four f64; unaligned loads are allowed.
        let x = _mm256_sub_pd(unsafe { _mm256_loadu_pd(chunk.as_ptr()) }, shift_v);
        let clamped = _mm256_max_pd(x, smallest);
        let shifted = _mm256_add_pd(_mm256_mul_pd(clamped, _mm256_set1_pd(LOG2_E)), round);
        let n = _mm256_sub_pd(shifted, round);
        let r = _mm256_sub_pd(
            _mm256_sub_pd(clamped, _mm256_mul_pd(n, _mm256_set1_pd(LN2_HI))),
            _mm256_mul_pd(n, _mm256_set1_pd(LN2_LO)),
        );
        let mut p = _mm256_set1_pd(TAYLOR[0]);
        for &c in &TAYLOR[1..] {
            p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(c));
        }
        let expm1 = _mm256_add_pd(r, _mm256_mul_pd(_mm256_mul_pd(r, r), p));
        let exponent = _mm256_slli_epi64::<52>(_mm256_add_epi64(
            _mm256_sub_epi64(_mm256_castpd_si256(shifted), round_bits),
            bias,
        ));
        let value = _mm256_mul_pd(_mm256_add_pd(one, expm1), _mm256_castsi256_pd(exponent));
        let underflow = _mm256_cmp_pd::<_CMP_LT_OQ>(x, smallest);
        let value = _mm256_andnot_pd(underflow, value);
        let nan = _mm256_cmp_pd::<_CMP_UNORD_Q>(x, x);
        acc = _mm256_add_pd(acc, _mm256_blendv_pd(value, x, nan));
    }
    let mut lanes = [0.0f64; 4];
    // SAFETY: `lanes` holds four f64.
    unsafe { _mm256_storeu_pd(lanes.as_mut_ptr(), acc) };
    for (k, &x) in chunks.remainder().iter().enumerate() {
        lanes[k] += exp_nonpositive(x - shift);
    }
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
}

/// Σ exp(x - shift) over `row`, for a shift at least the row's maximum.
#[inline]
pub fn sum_exp(row: &[f64], shift: f64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { sum_exp_avx2(row, shift) };
    }
    sum_exp_body(row, shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f64, b: f64) -> u64 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs()
    }

    #[test]
    fn exp_is_within_two_ulps_of_the_libm_exp() {
        let mut worst = 0;
        let mut x = 0.0f64;
        while x > -708.0 {
            worst = worst.max(ulps(exp_nonpositive(x), x.exp()));
            x -= 0.000_731_3;
        }
        for k in 0..100_000 {
            let x = -(k as f64) * 1e-6;
            worst = worst.max(ulps(exp_nonpositive(x), x.exp()));
        }
        assert!(worst <= 2, "worst error {worst} ulps");
    }

    #[test]
    fn exp_edges() {
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-0.0), 1.0);
        assert_eq!(exp_nonpositive(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(-1000.0), 0.0);
        assert!(exp_nonpositive(f64::NAN).is_nan());
        assert!(exp_nonpositive(-708.0) > 0.0);
    }

    #[test]
    fn every_build_gives_the_same_bits() {
        let row: Vec<f64> = (0..1003).map(|i| -((i * 7919 % 1000) as f64) / 17.0).collect();
        let portable = sum_exp_body(&row, 0.5);
        assert_eq!(sum_exp(&row, 0.5).to_bits(), portable.to_bits());
        let exact: f64 = row.iter().map(|&x| (x - 0.5).exp()).sum();
        assert!((portable - exact).abs() <= 1e-14 * exact);
    }
}

/// The largest element of a non-empty row, and whether every element is
/// finite. With a NaN in the row the maximum is unspecified; callers treat
/// such rows as non-finite (their loss is NaN whatever the maximum).
#[inline]
pub fn max_and_finite(row: &[f64]) -> (f64, bool) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { max_and_finite_avx2(row) };
    }
    max_and_finite_body(row)
}

#[inline(always)]
fn max_and_finite_body(row: &[f64]) -> (f64, bool) {
    let mut max = [f64::NEG_INFINITY; 4];
    // x·0 is 0 for finite x and NaN for ±inf and NaN.
    let mut probe = [0.0f64; 4];
    let mut chunks = row.chunks_exact(4);
    for chunk in &mut chunks {
        for k in 0..4 {
            max[k] = if chunk[k] > max[k] { chunk[k] } else { max[k] };
            probe[k] += chunk[k] * 0.0;
        }
    }
    for (k, &x) in chunks.remainder().iter().enumerate() {
        max[k] = if x > max[k] { x } else { max[k] };
        probe[k] += x * 0.0;
    }
    let top = max.iter().fold(f64::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    (top, probe.iter().all(|p| *p == 0.0))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn max_and_finite_avx2(row: &[f64]) -> (f64, bool) {
    use std::arch::x86_64::*;
    let mut chunks = row.chunks_exact(4);
    let mut max = _mm256_set1_pd(f64::NEG_INFINITY);
    let mut probe = _mm256_setzero_pd();
    let zero = _mm256_setzero_pd();
    for chunk in &mut chunks {
        // SAFETY: `chunk` holds exactly four f64.
        let x = unsafe { _mm256_loadu_pd(chunk.as_ptr()) };
        max = _mm256_max_pd(x, max);
        probe = _mm256_add_pd(probe, _mm256_mul_pd(x, zero));
    }
    let mut lanes = [0.0f64; 4];
    let mut probes = [0.0f64; 4];
    // SAFETY: both arrays hold four f64.
    unsafe {
        _mm256_storeu_pd(lanes.as_mut_ptr(), max);
        _mm256_storeu_pd(probes.as_mut_ptr(), probe);
    }
    for (k, &x) in chunks.remainder().iter().enumerate() {
        lanes[k] = if x > lanes[k] { x } else { lanes[k] };
        probes[k] += x * 0.0;
    }
    let top = lanes.iter().fold(f64::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    (top, probes.iter().all(|p| *p == 0.0))
}

#[cfg(test)]
mod row_tests {
    use super::*;

    #[test]
    fn max_and_finiteness_of_rows() {
        for len in 1..13 {
            let row: Vec<f64> = (0..len).map(|i| ((i * 37) % 11) as f64 - 5.0).collect();
            let want = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(max_and_finite(&row), (want, true));
            assert_eq!(max_and_finite_body(&row), (want, true));
            for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                let mut with_bad = row.clone();
                with_bad[len / 2] = bad;
                assert!(!max_and_finite(&with_bad).1);
                assert!(!max_and_finite_body(&with_bad).1);
            }
        }
        let mut inf = vec![1.0; 9];
        inf[6] = f64::INFINITY;
        assert_eq!(max_and_finite(&inf).0, f64::INFINITY);
    }
}
