//! Numerical kernels of the per-example passes. The hot one is the sum of
//! `exp(x - m)` over a row of logits. Each kernel is written once, over
//! eight f64 lanes (`lanes`), and compiled three times: for AVX-512, for
//! AVX2 with FMA, and as plain scalar code; the build is chosen at run time.
//! All three perform the same IEEE operations in the same order, fused
//! multiply-adds included (without FMA hardware `mul_add` is computed
//! exactly in software), so every machine gives the same bits.

mod lanes;

use lanes::Portable;
pub use lanes::{Lanes, Real};

/// ln 2 split so that `n · LN2_HI` is exact for |n| < 2^11.
const LN2_HI: f64 = 6.931_471_803_691_238e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
const LOG2_E: f64 = std::f64::consts::LOG2_E;
/// Adding and subtracting 1.5·2^52 rounds a double to the nearest integer.
const ROUND: f64 = 6_755_399_441_055_744.0;
/// Below this, exp(x) is under the smallest normal double; it is taken as 0
/// (the true value is below 2.3e-308, invisible next to any other term).
const SMALLEST: f64 = -708.39;
/// Every kernel works on this many lanes; sums are kept per lane (element
/// k of a row in lane k mod 8) and the lanes added pairwise at the end.
pub const LANES: usize = 8;

/// Σ c_k·x^k for k < 8 by Estrin's scheme: neighbouring terms are paired
/// with x, the pairs with x², and so on, so that the longest chain of
/// dependent multiply-adds is three long rather than seven. The lanes of a
/// vector loop are independent, but a long Horner chain is more than the
/// processor can overlap from one vector to the next.
#[inline(always)]
unsafe fn polynomial_8<V: Real>(x: V, c: &[V; 8]) -> V {
    // SAFETY: the caller runs where V's instructions exist.
    unsafe {
        // (Written out, with no closure or loop: a closure would not take
        // the vector instructions of the function it is inlined into.)
        let p0 = c[1].mul_add(x, c[0]);
        let p1 = c[3].mul_add(x, c[2]);
        let p2 = c[5].mul_add(x, c[4]);
        let p3 = c[7].mul_add(x, c[6]);
        let x2 = x.mul(x);
        let (q0, q1) = (p1.mul_add(x2, p0), p3.mul_add(x2, p2));
        q1.mul_add(x2.mul(x2), q0)
    }
}

/// Σ c_k·x^k for k < 11 by Estrin's scheme, four deep: the first eight
/// terms as [`polynomial_8`], plus x⁸ times the last three paired the same
/// way.
#[inline(always)]
unsafe fn polynomial_11<V: Real>(x: V, c: &[V; 11]) -> V {
    // SAFETY: the caller runs where V's instructions exist.
    unsafe {
        let low = polynomial_8(x, &[c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let x2 = x.mul(x);
        let high = c[10].mul_add(x2, c[9].mul_add(x, c[8]));
        let x4 = x2.mul(x2);
        high.mul_add(x4.mul(x4), low)
    }
}

/// exp(r) - 1 = r + r²·Σ r^k/(k+2)!: the Taylor series of [`exp`] to degree
/// 9 (error below 1e-17 for its |r| ≤ ln2/8).
const TAYLOR: [f64; 8] =
    [0.5, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0, 1.0 / 5_040.0, 1.0 / 40_320.0, 1.0 / 362_880.0];

/// 1/3, 1/5, …, 1/23: the series of atanh in [`ln_1p_unit`], to z^10 (error
/// below 2e-17 for the |s| ≤ 1/5 met there).
const ATANH: [f64; 11] = [
    1.0 / 3.0,
    1.0 / 5.0,
    1.0 / 7.0,
    1.0 / 9.0,
    1.0 / 11.0,
    1.0 / 13.0,
    1.0 / 15.0,
    1.0 / 17.0,
    1.0 / 19.0,
    1.0 / 21.0,
    1.0 / 23.0,
];

/// The constants of [`exp`] and [`ln_1p_unit`] in every lane.
///
/// Written as `V::splat(c)` at each use ([`Constants::literal`]), a constant
/// is a broadcast from the program's constants: these functions need more of
/// them than a machine of sixteen vector registers holds, so the compiler
/// broadcasts most of them again before every use (22 broadcasts and two
/// spills per eight lanes of the exponential, a fifth of its loop). Made
/// opaque to the optimiser ([`Constants::kept`]), the splatted values are
/// kept in memory once per kernel call and taken as memory operands of the
/// multiply-adds, at no instruction of their own; making them costs about
/// as much as 100 exponentials save, so a kernel called once per short row
/// takes them literal. The values, and so the bits of every result, are the
/// same either way.
#[derive(Clone, Copy)]
struct Constants<V> {
    smallest: V,
    four_log2_e: V,
    round: V,
    minus_ln2_hi_quarter: V,
    minus_ln2_lo_quarter: V,
    taylor: [V; 8],
    atanh: [V; 11],
}

impl<V: Real> Constants<V> {
    /// The constants as splats the compiler sees, folded in where they are
    /// used.
    ///
    /// # Safety
    /// The caller runs where V's instructions exist.
    #[inline(always)]
    unsafe fn literal() -> Self {
        // SAFETY: the caller runs where V's instructions exist.
        unsafe {
            Constants {
                smallest: V::splat(SMALLEST),
                four_log2_e: V::splat(4.0 * LOG2_E),
                round: V::splat(ROUND),
                minus_ln2_hi_quarter: V::splat(-LN2_HI / 4.0),
                minus_ln2_lo_quarter: V::splat(-LN2_LO / 4.0),
                taylor: splat_each(&TAYLOR),
                atanh: splat_each(&ATANH),
            }
        }
    }

    /// The constants kept in memory, for a kernel whose loop runs long
    /// enough to repay making them.
    ///
    /// # Safety
    /// The caller runs where V's instructions exist.
    #[inline(always)]
    unsafe fn kept() -> Self {
        // SAFETY: the caller runs where V's instructions exist.
        std::hint::black_box(unsafe { Self::literal() })
    }
}

/// The row length from which a one-row kernel keeps [`Constants`] in memory.
const KEEP_CONSTANTS_FROM: usize = 256;

/// Each value splatted, in a plain loop: a closure (`map`) would be built
/// apart from the kernel, without its vector instructions.
#[inline(always)]
unsafe fn splat_each<V: Real, const N: usize>(values: &[f64; N]) -> [V; N] {
    // SAFETY: the caller runs where V's instructions exist.
    unsafe {
        let mut out = [V::splat(0.0); N];
        let mut k = 0;
        while k < N {
            out[k] = V::splat(values[k]);
            k += 1;
        }
        out
    }
}

/// exp(x) for x ≤ 0 (and -inf, and NaN), within about one ulp, on one value
/// or on eight lanes.
#[inline(always)]
unsafe fn exp<V: Real>(x: V, k: &Constants<V>) -> V {
    // SAFETY: the caller runs where V's instructions exist.
    unsafe {
        // The clamp keeps a NaN (the x86 maximum returns its second operand
        // when either is NaN), which then runs through to the result.
        let clamped = k.smallest.max(x);
        let shifted = clamped.mul_add(k.four_log2_e, k.round);
        let n = shifted.sub(k.round);
        // x = n·ln2/4 + r with |r| ≤ ln2/8 (n·LN2_HI is exact).
        let r = n.mul_add(k.minus_ln2_lo_quarter, n.mul_add(k.minus_ln2_hi_quarter, clamped));
        let p = polynomial_8(r, &k.taylor);
        let expm1 = r.mul(r).mul_add(p, r);
        // 2^(n/4) · (1 + expm1) with one rounding; n ≥ -4088 thanks to the clamp.
        let scale = V::pow2_quarter(shifted);
        let value = expm1.mul_add(scale, scale);
        V::select(x.lt(k.smallest), V::splat(0.0), value)
    }
}

/// The kernels' exponential on one value, for the tests.
#[cfg(test)]
fn exp_nonpositive(x: f64) -> f64 {
    // SAFETY: scalar arithmetic only.
    unsafe { exp(x, &Constants::literal()) }
}

/// ln(1 + e) for 0 ≤ e ≤ 1 (and NaN), within about two ulps.
#[inline(always)]
unsafe fn ln_1p_unit<V: Real>(e: V, k: &Constants<V>) -> V {
    // SAFETY: the caller runs where V's instructions exist.
    unsafe {
        // For e ≥ 1/2, 1 + e = 2·(1 + f) with f = (e - 1)/2, which is exact.
        let big = e.ge(V::splat(0.5));
        let f = V::select(big, e.sub(V::splat(1.0)).mul(V::splat(0.5)), e);
        // ln(1 + f) = 2·atanh(s) = 2s·(1 + z/3 + z²/5 + …), s = f/(2 + f), z = s².
        let s = f.div(V::splat(2.0).add(f));
        let z = s.mul(s);
        let series = polynomial_11(z, &k.atanh);
        let two_s = s.add(s);
        let zero = V::splat(0.0);
        let tail = two_s.mul(z).mul_add(series, V::select(big, V::splat(LN2_LO), zero));
        V::select(big, V::splat(LN2_HI), zero).add(two_s.add(tail))
    }
}

/// The parts of the logistic function of x from one exponential
/// `e = exp(-|x|) ≤ 1`: `ln(1 + e)`, `σ(x)` and `σ(-x) = 1 - σ(x)`, each
/// within a few ulps for every x. The softplus functions follow without
/// cancellation: `-log σ(x) = ln(1 + e) + max(-x, 0)` and
/// `-log σ(-x) = ln(1 + e) + max(x, 0)`, sums of two terms that are never
/// negative; so does `1 - σ(x)`, which is `σ(-x)` itself.
#[inline(always)]
unsafe fn logistic<V: Real>(x: V, k: &Constants<V>) -> (V, V, V) {
    // SAFETY: the caller runs where V's instructions exist.
    unsafe {
        let zero = V::splat(0.0);
        let one = V::splat(1.0);
        let e = exp(zero.sub(x.abs()), k);
        let log1p = ln_1p_unit(e, k);
        let positive = x.ge(zero);
        let denominator = one.add(e);
        let p = V::select(positive, one, e).div(denominator);
        let q = V::select(positive, e, one).div(denominator);
        (log1p, p, q)
    }
}

/// The pairwise sum of the lanes, the same in every build.
#[inline(always)]
fn combine(lanes: [f64; LANES]) -> f64 {
    ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
}

/// Which build of the kernels this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Avx512,
    Avx2,
    Portable,
}

impl Level {
    /// The best build this CPU supports, worked out once per process.
    #[inline]
    pub fn detect() -> Level {
        static DETECTED: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(Level::probe)
    }

    fn probe() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512dq") && has!("avx512vl") && has!("avx2") && has!("fma") {
                return Level::Avx512;
            }
            if has!("avx2") && has!("fma") {
                return Level::Avx2;
            }
        }
        Level::Portable
    }
}

/// A loop over lanes, compiled once per [`Level`].
pub trait Kernel {
    type Output;
    /// # Safety
    /// The CPU must have `V`'s instructions, and the call must be inside a
    /// function built for them (as [`dispatch`] does) for them to inline.
    unsafe fn run<V: Lanes>(self) -> Self::Output;
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
unsafe fn run_avx512<K: Kernel>(kernel: K) -> K::Output {
    // SAFETY: this function is only called when the CPU has AVX-512.
    unsafe { kernel.run::<lanes::Avx512>() }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<K: Kernel>(kernel: K) -> K::Output {
    // SAFETY: this function is only called when the CPU has AVX2 and FMA.
    unsafe { kernel.run::<lanes::Avx2>() }
}

/// A loss or score as the rankings of the hardest examples compare it with
/// `total_cmp`: every NaN as the one positive NaN, above every number, as
/// torch's descending sort puts NaN first, and -0 equal to 0. The sign of a
/// NaN is not kept from one build to another (an operation may pass on
/// either operand's), and `total_cmp` puts a negative NaN below everything.
#[inline]
pub fn rank_key(score: f64) -> f64 {
    if score.is_nan() {
        f64::NAN
    } else if score == 0.0 {
        0.0
    } else {
        score
    }
}

/// Runs `work` built for the widest vectors this CPU has, for code that
/// takes no lanes itself but whose loops the compiler vectorises (copies,
/// scans, arithmetic formulas): built for the baseline CPU, they would take
/// two values at a time instead of four or eight. `work` should be an
/// `#[inline(always)]` closure calling an `#[inline(always)]` function, so
/// that the function's body is built here. The results are the same bits in
/// every build: the compiler reorders no floating-point operation and fuses
/// no multiply and add (`mul_add` is fused in every build).
#[inline]
pub fn widest<R>(work: impl FnOnce() -> R) -> R {
    widest_at(Level::detect(), work)
}

/// [`widest`] built for `level`, or for the best level below it that this
/// CPU has.
#[inline]
pub fn widest_at<R>(level: Level, work: impl FnOnce() -> R) -> R {
    struct Work<F>(F);
    impl<R, F: FnOnce() -> R> Kernel for Work<F> {
        type Output = R;
        #[inline(always)]
        unsafe fn run<V: Lanes>(self) -> R {
            (self.0)()
        }
    }
    dispatch(level, Work(work))
}

/// Runs `kernel` built for `level`, or for the best level below it that
/// this CPU has ([`Level::detect`]).
#[inline]
pub fn dispatch<K: Kernel>(level: Level, kernel: K) -> K::Output {
    let level = match (level, Level::detect()) {
        (Level::Avx512, Level::Avx512) => Level::Avx512,
        (Level::Avx512 | Level::Avx2, Level::Avx512 | Level::Avx2) => Level::Avx2,
        _ => Level::Portable,
    };
    match level {
        // SAFETY: the CPU has the instructions, checked above.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { run_avx512(kernel) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { run_avx2(kernel) },
        // SAFETY: plain scalar code runs anywhere.
        _ => unsafe { kernel.run::<Portable>() },
    }
}

/// The values of a row of `len` that fill whole vectors: the kernels' main
/// loops take these, eight at a time, and the rest as a padded tail.
#[inline(always)]
fn whole_vectors(len: usize) -> usize {
    len - len % LANES
}

/// The last `len % 8` values of a row, padded to eight lanes with `pad`.
#[inline(always)]
pub fn padded_tail<R: Row>(row: R, pad: f64) -> Option<[f64; LANES]> {
    let full = whole_vectors(row.len());
    (full < row.len())
        .then(|| std::array::from_fn(|k| if full + k < row.len() { row.at(full + k) } else { pad }))
}

/// [`padded_tail`] as a vector. The caller runs where V's instructions exist.
#[inline(always)]
unsafe fn tail_lanes<V: Lanes, R: Row>(row: R, pad: f64) -> Option<V> {
    let tail = padded_tail(row, pad)?;
    // SAFETY: as above; the tail is eight values.
    Some(unsafe { V::load(&tail) })
}

/// A row of logits as the kernels read it, eight values at a time, in
/// float64: a float64 row, or a narrower one (such as a mapped float32
/// file's, read in place) widened exactly as it is read. Either way the
/// kernels see the same values and give the same bits.
pub trait Row: Copy {
    fn len(self) -> usize;
    fn is_empty(self) -> bool {
        self.len() == 0
    }
    /// Value k, in float64.
    fn at(self, k: usize) -> f64;
    /// Values `range` of the row.
    fn part(self, range: std::ops::Range<usize>) -> Self;
    /// Eight values from `at` on.
    ///
    /// # Safety
    /// The caller runs where V's instructions exist, and `at + 8` is at most
    /// the row's length (see [`Lanes`]).
    unsafe fn lanes<V: Lanes>(self, at: usize) -> V;
}

/// A floating-point type whose values widen exactly to float64.
pub trait Float: Copy {
    fn widen(self) -> f64;
    /// The first eight values of `from`, widened.
    ///
    /// # Safety
    /// The caller runs where V's instructions exist, and `from` holds at
    /// least eight values (see [`Lanes`]).
    unsafe fn widen_lanes<V: Lanes>(from: &[Self]) -> V;
}

impl Float for f64 {
    #[inline(always)]
    fn widen(self) -> f64 {
        self
    }
    #[inline(always)]
    unsafe fn widen_lanes<V: Lanes>(from: &[f64]) -> V {
        // SAFETY: as this function's contract.
        unsafe { V::load(from) }
    }
}

impl Float for f32 {
    #[inline(always)]
    fn widen(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    unsafe fn widen_lanes<V: Lanes>(from: &[f32]) -> V {
        // SAFETY: as this function's contract.
        unsafe { V::load_f32(from) }
    }
}

impl Float for half::bf16 {
    #[inline(always)]
    fn widen(self) -> f64 {
        self.to_f64()
    }
    #[inline(always)]
    unsafe fn widen_lanes<V: Lanes>(from: &[half::bf16]) -> V {
        // SAFETY: as this function's contract.
        unsafe { V::load_bf16(from) }
    }
}

impl<T: Float> Row for &[T] {
    #[inline(always)]
    fn len(self) -> usize {
        <[T]>::len(self)
    }
    #[inline(always)]
    fn at(self, k: usize) -> f64 {
        self[k].widen()
    }
    #[inline(always)]
    fn part(self, range: std::ops::Range<usize>) -> Self {
        &self[range]
    }
    #[inline(always)]
    unsafe fn lanes<V: Lanes>(self, at: usize) -> V {
        // SAFETY: as this function's contract.
        unsafe { T::widen_lanes(&self[at..]) }
    }
}

struct SumExp<R> {
    row: R,
    shift: f64,
}

impl<R: Row> Kernel for SumExp<R> {
    type Output = f64;

    #[inline(always)]
    unsafe fn run<V: Lanes>(self) -> f64 {
        // SAFETY: the caller runs where V's instructions exist.
        unsafe {
            if self.row.len() >= KEEP_CONSTANTS_FROM {
                sum_exp_lanes(self.row, self.shift, &Constants::<V>::kept())
            } else {
                sum_exp_lanes(self.row, self.shift, &Constants::<V>::literal())
            }
        }
    }
}

/// [`SumExp`] with the given constants.
#[inline(always)]
unsafe fn sum_exp_lanes<V: Lanes, R: Row>(row: R, shift: f64, k: &Constants<V>) -> f64 {
    // SAFETY: the caller runs where V's instructions exist; each read starts
    // a whole vector before the row's end, or is the padded tail.
    unsafe {
        let shift = V::splat(shift);
        let mut acc = V::splat(0.0);
        let full = whole_vectors(row.len());
        for at in (0..full).step_by(LANES) {
            acc = acc.add(exp(row.lanes::<V>(at).sub(shift), k));
        }
        // exp(-inf) is exactly 0: padding leaves the other lanes as they are.
        if let Some(tail) = tail_lanes::<V, R>(row, f64::NEG_INFINITY) {
            acc = acc.add(exp(tail.sub(shift), k));
        }
        combine(acc.to_array())
    }
}

/// Σ exp(x - shift) over `row`, for a shift at least the row's maximum.
#[inline]
pub fn sum_exp<R: Row>(row: R, shift: f64) -> f64 {
    dispatch(Level::detect(), SumExp { row, shift })
}

struct ExpInto<'a, R> {
    row: R,
    shift: f64,
    out: &'a mut [f64],
}

impl<R: Row> Kernel for ExpInto<'_, R> {
    type Output = f64;

    #[inline(always)]
    unsafe fn run<V: Lanes>(self) -> f64 {
        let ExpInto { row, shift, out } = self;
        // SAFETY: the caller runs where V's instructions exist.
        unsafe {
            let tail = tail_lanes::<V, R>(row, f64::NEG_INFINITY);
            if row.len() >= KEEP_CONSTANTS_FROM {
                exp_row_into(row, shift, out, tail, &Constants::kept())
            } else {
                exp_row_into(row, shift, out, tail, &Constants::literal())
            }
        }
    }
}

/// [`ExpInto`] with the row's partial last vector given, padded with -inf.
#[inline(always)]
unsafe fn exp_row_into<V: Lanes, R: Row>(
    row: R,
    shift: f64,
    out: &mut [f64],
    tail: Option<V>,
    k: &Constants<V>,
) -> f64 {
    assert!(out.len() >= row.len());
    let full = whole_vectors(row.len());
    // SAFETY: the caller runs where V's instructions exist; each whole
    // vector lies within the row and so within `out`, and the last is
    // stored whole only where `out` has room for it.
    unsafe {
        let shift = V::splat(shift);
        let mut acc = V::splat(0.0);
        for at in (0..full).step_by(LANES) {
            let e = exp(row.lanes::<V>(at).sub(shift), k);
            e.store(&mut out[at..]);
            acc = acc.add(e);
        }
        if let Some(tail) = tail {
            let e = exp(tail.sub(shift), k);
            if out.len() >= full + LANES {
                // A padded buffer takes the whole vector: the padding's
                // terms are exp(-inf) = 0.
                e.store(&mut out[full..]);
            } else {
                out[full..row.len()].copy_from_slice(&e.to_array()[..row.len() - full]);
            }
            acc = acc.add(e);
        }
        combine(acc.to_array())
    }
}

/// Writes exp(x - shift) of every value of `row` into `out` and returns
/// their sum, the same bits as [`sum_exp`]. `out` is at least as long as
/// the row; one padded to a multiple of [`LANES`] ([`padded_len`]) takes
/// the last vector whole, its padding set to 0.
#[inline]
pub fn exp_into<R: Row>(row: R, shift: f64, out: &mut [f64]) -> f64 {
    dispatch(Level::detect(), ExpInto { row, shift, out })
}

/// The length of a buffer for [`exp_into`] and [`ln_sum_exp_into`] that
/// takes a row of `len` values in whole vectors.
pub fn padded_len(len: usize) -> usize {
    len.next_multiple_of(LANES)
}

/// What a sigmoid loss needs of each logit, one slice per part (see
/// [`SigmoidBuffers`]), each as long as the logits. The log-sigmoids are
/// softplus functions, `softplus(x) = ln(1 + e^x)`, taken as
/// `ln(1 + exp(-|x|))` plus the positive part of x: two terms that are
/// never negative, so each is exact to a few ulps for every finite x (at
/// x = -700, -log σ(-x) is e^-700, where `x - log σ(x)` would give 0).
struct SigmoidParts<'a> {
    p: &'a mut [f64],
    q: &'a mut [f64],
    minus_log_p: &'a mut [f64],
    minus_log_q: &'a mut [f64],
    bce: &'a mut [f64],
}

struct SigmoidPartsKernel<'a> {
    x: &'a [f64],
    t: &'a [f64],
    out: SigmoidParts<'a>,
}

/// The parts of eight logits `x` with targets `t`, from [`logistic`]; the
/// BCE with two products and a sum (no fused multiply-add), as the formula
/// is written.
#[inline(always)]
unsafe fn sigmoid_parts<V: Real>(x: V, t: V, k: &Constants<V>) -> [V; 5] {
    // SAFETY: the caller runs where V's instructions exist.
    unsafe {
        let zero = V::splat(0.0);
        let (l, p, q) = logistic(x, k);
        let minus_x = zero.sub(x);
        // softplus: the positive part of the argument, never hiding a NaN in l.
        let minus_log_p = l.add(V::select(zero.lt(minus_x), minus_x, zero));
        let minus_log_q = l.add(V::select(zero.lt(x), x, zero));
        let bce = t.mul(minus_log_p).add(V::splat(1.0).sub(t).mul(minus_log_q));
        [p, q, minus_log_p, minus_log_q, bce]
    }
}

impl Kernel for SigmoidPartsKernel<'_> {
    type Output = ();

    #[inline(always)]
    unsafe fn run<V: Lanes>(self) {
        let SigmoidPartsKernel { x, t, out } = self;
        let SigmoidParts { p, q, minus_log_p, minus_log_q, bce } = out;
        let n = x.len();
        assert!(t.len() == n && [&*p, &*q, &*minus_log_p, &*minus_log_q, &*bce].iter().all(|o| o.len() == n));
        let full = whole_vectors(n);
        // SAFETY: the caller runs where V's instructions exist; every slice
        // is as long as `x`, and each whole vector lies within it.
        unsafe {
            let k = Constants::kept();
            for at in (0..full).step_by(LANES) {
                let parts = sigmoid_parts(V::load(&x[at..]), V::load(&t[at..]), &k);
                for (part, to) in
                    parts.into_iter().zip([&mut *p, &mut *q, &mut *minus_log_p, &mut *minus_log_q, &mut *bce])
                {
                    part.store(&mut to[at..]);
                }
            }
            if let (Some(xs), Some(ts)) = (padded_tail(x, 0.0), padded_tail(t, 0.0)) {
                let parts = sigmoid_parts(V::load(&xs), V::load(&ts), &k);
                let rest = x.len() - full;
                for (part, to) in parts.into_iter().zip([p, q, minus_log_p, minus_log_q, bce]) {
                    to[full..].copy_from_slice(&part.to_array()[..rest]);
                }
            }
        }
    }
}

/// Room for the parts a sigmoid loss takes of up to `N` logits, reused
/// block after block: see [`SigmoidBuffers::fill`].
pub struct SigmoidBuffers<const N: usize> {
    /// σ(x).
    pub p: [f64; N],
    /// σ(-x).
    pub q: [f64; N],
    /// -log σ(x) = softplus(-x).
    pub minus_log_p: [f64; N],
    /// -log σ(-x) = softplus(x).
    pub minus_log_q: [f64; N],
    /// The plain BCE, `t·(-log σ(x)) + (1 - t)·(-log σ(-x))`.
    pub bce: [f64; N],
}

impl<const N: usize> SigmoidBuffers<N> {
    pub fn new() -> Self {
        SigmoidBuffers {
            p: [0.0; N],
            q: [0.0; N],
            minus_log_p: [0.0; N],
            minus_log_q: [0.0; N],
            bce: [0.0; N],
        }
    }

    /// Fills the first `x.len()` entries of each buffer with the parts of
    /// the logits `x` with their targets `t` (as long), in one pass, the
    /// same bits in every build. The kernel checks that `t` is as long.
    pub fn fill(&mut self, x: &[f64], t: &[f64]) {
        let n = x.len();
        let out = SigmoidParts {
            p: &mut self.p[..n],
            q: &mut self.q[..n],
            minus_log_p: &mut self.minus_log_p[..n],
            minus_log_q: &mut self.minus_log_q[..n],
            bce: &mut self.bce[..n],
        };
        dispatch(Level::detect(), SigmoidPartsKernel { x, t, out })
    }
}

impl<const N: usize> Default for SigmoidBuffers<N> {
    fn default() -> Self {
        Self::new()
    }
}

struct SumBelow<'a> {
    values: &'a [f64],
    bound: f64,
}

impl Kernel for SumBelow<'_> {
    type Output = f64;

    #[inline(always)]
    unsafe fn run<V: Lanes>(self) -> f64 {
        // SAFETY: the caller runs where V's instructions exist; the chunks
        // and the padded tail hold eight values each.
        unsafe {
            let (bound, zero) = (V::splat(self.bound), V::splat(0.0));
            let mut acc = zero;
            for chunk in self.values.chunks_exact(LANES) {
                let v = V::load(chunk);
                acc = acc.add(V::select(v.lt(bound), v, zero));
            }
            if let Some(tail) = padded_tail(self.values, 0.0) {
                let v = V::load(&tail);
                acc = acc.add(V::select(v.lt(bound), v, zero));
            }
            combine(acc.to_array())
        }
    }
}

/// The sum of the `values` below `bound`, in eight lanes, the same bits in
/// every build.
#[inline]
pub fn sum_below(values: &[f64], bound: f64) -> f64 {
    dispatch(Level::detect(), SumBelow { values, bound })
}

/// Below this, `Σ exp(x_c - m)` is one term 1 (the maximum) plus a rest
/// under 1/8, and `ln Σ` is taken as `ln_1p(rest)` from the rest summed on
/// its own. Above it, `ln Σ ≥ 0.117`, so the sum's few ulps of rounding stay
/// below 1e-14 of `ln Σ` relative (about C/8 ulps at worst for C classes).
pub const LN_SUM_DIRECT_BELOW: f64 = 1.125;

/// `ln Σ_c exp(x_c - max)` of a row whose `exp_sum` ([`sum_exp`]) is given,
/// within a few ulps relative also when the maximum dominates: then
/// `ln(exp_sum)` would lose every digit of the small rest (a row whose top
/// logit stands 20 above the others has a rest of 2e-9, of which `ln` of the
/// rounded sum keeps 7 digits), so the rest is summed again without the
/// maximum and its `ln_1p` taken. Log-probabilities `(x_c - max) - ln Σ` are
/// then exact for every class, and `1 - p_c = -expm1(log p_c)` too.
#[inline]
pub fn ln_sum_exp<R: Row>(row: R, max: f64, exp_sum: f64) -> f64 {
    // Every term is at most 1 and the maximum's is exactly 1: with the sum
    // below 2 the maximum is the row's only one. A NaN sum stays NaN.
    if exp_sum < LN_SUM_DIRECT_BELOW
        && let Some(top) = first_equal(row, max)
    {
        return (sum_exp(row.part(0..top), max) + sum_exp(row.part(top + 1..row.len()), max)).ln_1p();
    }
    exp_sum.ln()
}

/// [`ln_sum_exp`] of a row, with its terms `exp(x_c - max)` written to
/// `exps` (scratch, at least the row's length; [`padded_len`] is fastest) so
/// that a dominant maximum costs one more sum, not one more exponential per
/// class. The sum of the terms is [`sum_exp`]'s, to the bit, and is returned
/// beside the logarithm: `1 / sum` is the largest probability.
#[inline]
pub fn ln_sum_exp_into<R: Row>(row: R, max: f64, exps: &mut [f64]) -> (f64, f64) {
    // A long row's terms would stream through the caches to be read back
    // only for a dominant maximum: they are computed again in that case.
    let keep = row.len() <= KEEP_TERMS_UP_TO;
    let exp_sum = if keep { exp_into(row, max, exps) } else { sum_exp(row, max) };
    if exp_sum < LN_SUM_DIRECT_BELOW {
        if !keep {
            exp_into(row, max, exps);
        }
        // The maximum's term is exactly 1 and, with the sum below 2, the
        // only term that is not below 1: the rest is the sum of the others.
        return (sum_below(&exps[..row.len()], 1.0).ln_1p(), exp_sum);
    }
    // Also a NaN sum, which stays NaN.
    (exp_sum.ln(), exp_sum)
}

/// What a softmax needs of one row of logits, as [`softmax_rows`] gives it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RowSoftmax {
    pub max: f64,
    /// `Σ exp(x - max)`, [`sum_exp`]'s bits.
    pub exp_sum: f64,
    /// `ln Σ exp(x - max)`, [`ln_sum_exp_into`]'s bits.
    pub ln_sum: f64,
    /// The first maximum, as torch.argmax picks it (0 for a row with NaN),
    /// when it was looked for: [`softmax_rows`] always does.
    pub argmax: Option<usize>,
    /// Whether every value is finite.
    pub finite: bool,
}

struct SoftmaxRows<'a, T> {
    values: &'a [T],
    width: usize,
    terms: &'a mut [f64],
    out: &'a mut [RowSoftmax],
}

impl<T: Float> Kernel for SoftmaxRows<'_, T> {
    type Output = ();

    /// Each row reduced by the single-row kernels' steps, inlined here so
    /// that a row costs no call, with the row's partial last vector read once.
    #[inline(always)]
    unsafe fn run<V: Lanes>(self) {
        let SoftmaxRows { values, width, terms, out } = self;
        let full = whole_vectors(width);
        let has_tail = full < width;
        // SAFETY: the caller runs where V's instructions exist, and the
        // steps are built (and inlined) for the same lanes; whole vectors
        // are read within the row, or as the eight values `values.get`
        // gives, and `terms` holds a padded row (checked by `softmax_rows`).
        unsafe {
            // The lanes of a row's partial last vector that belong to the row.
            let lane: [f64; LANES] = std::array::from_fn(|k| k as f64);
            let in_row = V::load(&lane).lt(V::splat((width - full) as f64));
            let k = Constants::kept();
            for (first, (row, summary)) in (0..).step_by(width).zip(values.chunks_exact(width).zip(out)) {
                // The partial last vector is read whole while eight values
                // go on from it (the lanes past the row, the next row's, are
                // replaced by each step's padding below), and built from the
                // row otherwise, near the end of the values (its padding is
                // replaced the same way).
                let tail_at = first + full;
                let tail = match values.get(tail_at..tail_at + LANES) {
                    Some(lanes) => T::widen_lanes::<V>(lanes),
                    None => tail_lanes(row, 0.0).unwrap_or(V::splat(0.0)),
                };
                let mut scan = RowScan::<V>::new();
                for at in (0..full).step_by(LANES) {
                    scan.step(row.lanes::<V>(at));
                }
                let (max, finite) = scan.finish_with(has_tail.then_some(padded(tail, in_row, row.at(0))));
                let exp_tail = has_tail.then_some(padded(tail, in_row, f64::NEG_INFINITY));
                let exp_sum = exp_row_into(row, max, &mut *terms, exp_tail, &k);
                // As ln_sum_exp_into: with the sum below 2 the maximum's term
                // is the only one not below 1, and the rest is summed alone
                // (the padding's terms are 0, as a padded tail's would be).
                let ln_sum = if exp_sum < LN_SUM_DIRECT_BELOW {
                    SumBelow { values: &terms[..padded_len(width)], bound: 1.0 }.run::<V>().ln_1p()
                } else {
                    exp_sum.ln()
                };
                let equal_tail = has_tail.then_some(padded(tail, in_row, f64::NAN));
                let argmax = Some(first_equal_lanes(row, max, equal_tail).unwrap_or(0));
                *summary = RowSoftmax { max, exp_sum, ln_sum, argmax, finite };
            }
        }
    }
}

/// `tail` with its lanes outside `in_row` set to `pad`. The caller runs
/// where V's instructions exist.
#[inline(always)]
unsafe fn padded<V: Lanes>(tail: V, in_row: V::Mask, pad: f64) -> V {
    // SAFETY: the caller runs where V's instructions exist.
    unsafe { V::select(in_row, tail, V::splat(pad)) }
}

/// How many rows one [`softmax_rows`] call takes: enough that the call
/// costs nothing per row, few enough that the summaries stay in the cache.
pub const ROWS_PER_CALL: usize = 256;

/// The longest row [`softmax_rows`] is for: it keeps every row's terms, as
/// [`ln_sum_exp_into`] does up to this length.
pub const SHORT_ROW: usize = KEEP_TERMS_UP_TO;

/// [`RowSoftmax`] of each row of `values`, rows of `width` one after the
/// other, into `out` (one per row): many short rows in one call, each with
/// the bits [`max_and_finite`], [`ln_sum_exp_into`] and [`first_equal`]
/// give it alone. `terms` is scratch of at least [`padded_len`]`(width)`.
#[inline]
pub fn softmax_rows<T: Float>(values: &[T], width: usize, terms: &mut [f64], out: &mut [RowSoftmax]) {
    assert!(width > 0 && values.len() == width * out.len() && terms.len() >= padded_len(width));
    dispatch(Level::detect(), SoftmaxRows { values, width, terms, out })
}

/// The longest row whose terms [`ln_sum_exp_into`] keeps as it sums them:
/// 32 KiB of float64, the L1 data cache of the machines measured.
const KEEP_TERMS_UP_TO: usize = 4096;

/// The running maximum of a row, and the probe that tells whether every
/// value is finite: x·0 is 0 for finite x and NaN for ±inf and NaN.
struct RowScan<V> {
    max: V,
    probe: V,
}

impl<V: Lanes> RowScan<V> {
    #[inline(always)]
    unsafe fn new() -> Self {
        // SAFETY: the caller runs where V's instructions exist.
        unsafe { RowScan { max: V::splat(f64::NEG_INFINITY), probe: V::splat(0.0) } }
    }

    #[inline(always)]
    unsafe fn step(&mut self, x: V) {
        // SAFETY: the caller runs where V's instructions exist.
        unsafe {
            self.max = x.max(self.max);
            self.probe = self.probe.add(x.mul(V::splat(0.0)));
        }
    }

    /// Scans the row's last `len % 8` values (padding with a value of the
    /// row changes neither answer) and gives the row's maximum and finiteness.
    #[inline(always)]
    unsafe fn finish<R: Row>(self, row: R) -> (f64, bool) {
        // SAFETY: the caller runs where V's instructions exist.
        unsafe { self.finish_with(tail_lanes(row, row.at(0))) }
    }

    /// [`RowScan::finish`] with the row's partial last vector given, padded
    /// with one of the row's values.
    #[inline(always)]
    unsafe fn finish_with(mut self, tail: Option<V>) -> (f64, bool) {
        if let Some(tail) = tail {
            // SAFETY: the caller runs where V's instructions exist.
            unsafe { self.step(tail) };
        }
        let top = self.max.to_array().iter().fold(f64::NEG_INFINITY, |m, &x| if x > m { x } else { m });
        (top, self.probe.to_array().iter().all(|p| *p == 0.0))
    }
}

struct MaxAndFinite<R> {
    row: R,
}

impl<R: Row> Kernel for MaxAndFinite<R> {
    type Output = (f64, bool);

    #[inline(always)]
    unsafe fn run<V: Lanes>(self) -> (f64, bool) {
        // SAFETY: the caller runs where V's instructions exist; each whole
        // vector lies within the row.
        unsafe {
            let mut scan = RowScan::<V>::new();
            let full = whole_vectors(self.row.len());
            for at in (0..full).step_by(LANES) {
                scan.step(self.row.lanes::<V>(at));
            }
            scan.finish(self.row)
        }
    }
}

/// The largest element of a non-empty row, and whether every element is
/// finite. With a NaN in the row the maximum is unspecified; callers treat
/// such rows as non-finite (their loss is NaN whatever the maximum).
#[inline]
pub fn max_and_finite<R: Row>(row: R) -> (f64, bool) {
    dispatch(Level::detect(), MaxAndFinite { row })
}

struct WidenAndScan<'a, T> {
    from: &'a [T],
    out: &'a mut [f64],
}

impl<T: Float> Kernel for WidenAndScan<'_, T> {
    type Output = (f64, bool);

    #[inline(always)]
    unsafe fn run<V: Lanes>(self) -> (f64, bool) {
        let WidenAndScan { from, out } = self;
        assert_eq!(from.len(), out.len());
        let full = whole_vectors(from.len());
        // SAFETY: the caller runs where V's instructions exist; each whole
        // vector lies within `from` and so within `out`.
        unsafe {
            let mut scan = RowScan::<V>::new();
            for at in (0..full).step_by(LANES) {
                let x = from.lanes::<V>(at);
                x.store(&mut out[at..]);
                scan.step(x);
            }
            for (o, v) in out[full..from.len()].iter_mut().zip(&from[full..]) {
                *o = v.widen();
            }
            scan.finish(&out[..from.len()])
        }
    }
}

/// Widens `from` into `out` (as long) in one pass that also gives what
/// [`max_and_finite`] gives, the same answer: for a row that must be
/// copied, such as a bfloat16 one, whose kernels would otherwise widen it
/// again at every read.
#[inline]
pub fn widen_max_and_finite<T: Float>(from: &[T], out: &mut [f64]) -> (f64, bool) {
    dispatch(Level::detect(), WidenAndScan { from, out })
}

struct FirstEqual<R> {
    row: R,
    value: f64,
}

impl<R: Row> Kernel for FirstEqual<R> {
    type Output = Option<usize>;

    #[inline(always)]
    unsafe fn run<V: Lanes>(self) -> Option<usize> {
        let FirstEqual { row, value } = self;
        // SAFETY: the caller runs where V's instructions exist.
        unsafe { first_equal_lanes(row, value, tail_lanes::<V, R>(row, f64::NAN)) }
    }
}

/// [`FirstEqual`] with the row's partial last vector given, padded with NaN
/// (equal to nothing).
#[inline(always)]
unsafe fn first_equal_lanes<V: Lanes, R: Row>(row: R, value: f64, tail: Option<V>) -> Option<usize> {
    let full = whole_vectors(row.len());
    // SAFETY: the caller runs where V's instructions exist; each whole
    // vector lies within the row.
    unsafe {
        let wanted = V::splat(value);
        for at in (0..full).step_by(LANES) {
            let bits = V::bits(row.lanes::<V>(at).equal(wanted));
            if bits != 0 {
                return Some(at + bits.trailing_zeros() as usize);
            }
        }
        let bits = tail.map_or(0, |tail| V::bits(tail.equal(wanted)));
        (bits != 0).then(|| full + bits.trailing_zeros() as usize)
    }
}

/// The first index of `row` whose value equals `value`, eight values
/// compared at a time.
#[inline]
pub fn first_equal<R: Row>(row: R, value: f64) -> Option<usize> {
    dispatch(Level::detect(), FirstEqual { row, value })
}

struct QuotientsAtLeast<'a> {
    values: &'a mut [f64],
    divisor: f64,
    floors: &'a [f64],
}

impl Kernel for QuotientsAtLeast<'_> {
    type Output = Option<(usize, bool)>;

    #[inline(always)]
    unsafe fn run<V: Lanes>(self) -> Option<(usize, bool)> {
        let QuotientsAtLeast { values, divisor, floors } = self;
        let mut found: Option<(usize, bool)> = None;
        // SAFETY: the caller runs where V's instructions exist; the chunks
        // hold eight values each.
        unsafe {
            let divisor = V::splat(divisor);
            let blocks = values.chunks_exact_mut(LANES).zip(floors.chunks_exact(LANES));
            for (block, (chunk, floor)) in blocks.enumerate() {
                let quotient = V::load(chunk).div(divisor);
                quotient.store(chunk);
                let bits = V::bits(quotient.ge(V::load(floor)));
                // Most blocks have none: one branch, rarely taken.
                if bits != 0 {
                    found = Some(match found {
                        None => (block * LANES + bits.trailing_zeros() as usize, bits & (bits - 1) != 0),
                        Some((first, _)) => (first, true),
                    });
                }
            }
        }
        found
    }
}

/// Divides `values` by `divisor` in place and finds the quotients at least
/// their floor (`q_k >= floors[k]`, false for NaN): the first of them and
/// whether there are others, or `None`. Both slices are as long, a multiple
/// of [`LANES`] ([`padded_len`]; floors of +inf take nothing).
#[inline]
pub fn quotients_at_least(values: &mut [f64], divisor: f64, floors: &[f64]) -> Option<(usize, bool)> {
    assert!(values.len() == floors.len() && floors.len().is_multiple_of(LANES));
    dispatch(Level::detect(), QuotientsAtLeast { values, divisor, floors })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many doubles lie between `a` and `b`.
    pub(super) fn ulps(a: f64, b: f64) -> u64 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs()
    }

    #[test]
    fn exp_is_within_one_ulp_of_the_libm_exp() {
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
        assert!(worst <= 1, "worst error {worst} ulps");
    }

    #[test]
    fn the_quarter_powers_are_the_nearest_doubles() {
        for (k, &power) in lanes::QUARTER_POWERS.iter().enumerate() {
            // The entries were rounded from 200-bit values; libm's pow
            // rounds these four correctly too.
            assert_eq!(power, 2f64.powf(k as f64 / 4.0));
        }
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

    /// Every level (`dispatch` runs one this CPU lacks at the best it has).
    pub(super) fn levels() -> [Level; 3] {
        [Level::Avx512, Level::Avx2, Level::Portable]
    }

    #[test]
    fn every_build_finds_the_first_equal_value() {
        for len in [0, 1, 7, 8, 9, 17, 100] {
            let row: Vec<f64> = (0..len).map(|i| [0.0, -0.0, 3.0, 4.0, 3.0][(i * 3 + 1) % 5]).collect();
            for value in [0.0, 3.0, 4.0, 9.0, f64::NAN] {
                let expected = row.iter().position(|&x| x == value);
                for level in levels() {
                    assert_eq!(
                        dispatch(level, FirstEqual { row: &row[..], value }),
                        expected,
                        "{level:?}, {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_build_widens_and_scans_a_narrow_row_as_a_copy_would() {
        for len in [1, 7, 8, 9, 100, 1003] {
            for special in [None, Some(f32::NAN), Some(f32::INFINITY), Some(f32::NEG_INFINITY)] {
                let single: Vec<f32> = (0..len)
                    .map(|i| match special {
                        Some(value) if i == len / 2 => value,
                        _ => (i * 37 % 101) as f32 / 7.0 - 5.0,
                    })
                    .collect();
                let brain_float: Vec<half::bf16> = single.iter().map(|&x| half::bf16::from_f32(x)).collect();
                for level in levels() {
                    let mut out = vec![f64::NAN; len];
                    let scanned = dispatch(level, WidenAndScan { from: &single[..], out: &mut out });
                    let copy: Vec<f64> = single.iter().map(|&x| x as f64).collect();
                    assert_eq!(
                        out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                        copy.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                    );
                    assert_eq!(scanned.1, max_and_finite(&copy[..]).1, "{level:?}, {len}");
                    if scanned.1 {
                        assert_eq!(scanned, max_and_finite(&copy[..]));
                    }
                    let scanned = dispatch(level, WidenAndScan { from: &brain_float[..], out: &mut out });
                    let copy: Vec<f64> = brain_float.iter().map(|&x| x.to_f64()).collect();
                    assert_eq!(
                        out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                        copy.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                    );
                    assert_eq!(scanned.1, special.is_none(), "{level:?}, {len}");
                    if scanned.1 {
                        assert_eq!(scanned, max_and_finite(&copy[..]));
                    }
                }
            }
        }
    }

    #[test]
    fn every_build_divides_and_finds_the_quotients_at_least_their_floor() {
        for len in [0, 8, 16, 104] {
            let values: Vec<f64> =
                (0..len).map(|i| [0.3, 1.5, f64::NAN, 2.7, 0.9][(i * 3 + 1) % 5]).collect();
            for floor_of in [[0.3, 0.2, 0.5], [0.95, 0.6, 2.0], [2.0, 2.0, 2.0]] {
                let floors: Vec<f64> = (0..len).map(|i| floor_of[i % 3]).collect();
                let quotients: Vec<f64> = values.iter().map(|v| v / 3.0).collect();
                let at_least: Vec<usize> = (0..len).filter(|&k| quotients[k] >= floors[k]).collect();
                let expected = at_least.first().map(|&first| (first, at_least.len() > 1));
                for level in levels() {
                    let mut divided = values.clone();
                    let found = dispatch(
                        level,
                        QuotientsAtLeast { values: &mut divided, divisor: 3.0, floors: &floors },
                    );
                    assert_eq!(found, expected, "{level:?}, {len}");
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&divided), bits(&quotients), "{level:?}, {len}");
                }
            }
        }
    }

    #[test]
    fn every_build_gives_the_same_bits() {
        for len in [0, 1, 7, 8, 9, 100, 1003] {
            let row: Vec<f64> = (0..len).map(|i| -((i * 7919 % 1000) as f64) / 17.0).collect();
            let portable = dispatch(Level::Portable, SumExp { row: &row[..], shift: 0.5 });
            for level in levels() {
                let built = dispatch(level, SumExp { row: &row[..], shift: 0.5 });
                assert_eq!(built.to_bits(), portable.to_bits(), "{level:?}, {len} values");
            }
            let exact: f64 = row.iter().map(|&x| (x - 0.5).exp()).sum();
            assert!((portable - exact).abs() <= 1e-14 * exact);
            for level in levels() {
                let mut out = vec![0.0; len];
                let sum = dispatch(level, ExpInto { row: &row[..], shift: 0.5, out: &mut out });
                assert_eq!(sum.to_bits(), portable.to_bits());
                let each: Vec<u64> = row.iter().map(|&x| exp_nonpositive(x - 0.5).to_bits()).collect();
                assert_eq!(out.iter().map(|e| e.to_bits()).collect::<Vec<_>>(), each, "{level:?}");
                // A padded buffer: the same terms, then zeros.
                let mut padded = vec![f64::NAN; padded_len(len)];
                let sum = dispatch(level, ExpInto { row: &row[..], shift: 0.5, out: &mut padded });
                assert_eq!(sum.to_bits(), portable.to_bits());
                assert_eq!(padded[..len].iter().map(|e| e.to_bits()).collect::<Vec<_>>(), each);
                assert!(padded[len..].iter().all(|&e| e == 0.0), "{level:?}, {len} values");
            }
        }
    }
}

#[cfg(test)]
mod logistic_tests {
    use super::exp_nonpositive;
    use super::tests::{levels, ulps};
    use super::*;

    #[test]
    fn ln_1p_is_within_two_ulps_of_the_libm_one() {
        // SAFETY: scalar arithmetic only.
        let ln_1p = |e: f64| unsafe { ln_1p_unit(e, &Constants::literal()) };
        let mut worst = 0;
        for k in 0..=200_000 {
            for e in [k as f64 / 200_000.0, (k as f64 * 1e-3).exp() * 1e-300, 0.5 - k as f64 * 1e-17] {
                worst = worst.max(ulps(ln_1p(e), e.ln_1p()));
            }
        }
        assert!(worst <= 2, "worst error {worst} ulps");
        assert_eq!(ln_1p(0.0), 0.0);
        assert!(ln_1p(f64::NAN).is_nan());
    }

    #[test]
    fn sigmoid_parts_of_every_build_are_the_same_and_close_to_libm() {
        let x: Vec<f64> = (0..1003)
            .map(|i| ((i * 7919) % 2001) as f64 / 20.0 - 50.0)
            .chain([
                0.0,
                -0.0,
                1e-300,
                -800.0,
                800.0,
                -700.0,
                700.0,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NAN,
            ])
            .collect();
        // Targets of every kind: negatives, positives, and soft ones.
        let t: Vec<f64> = (0..x.len()).map(|k| [0.0, 1.0, 0.3][k % 3]).collect();
        let run = |level| {
            let mut parts: [Vec<f64>; 5] = std::array::from_fn(|_| vec![0.0; x.len()]);
            let [p, q, minus_log_p, minus_log_q, bce] = &mut parts;
            let out = SigmoidParts { p, q, minus_log_p, minus_log_q, bce };
            dispatch(level, SigmoidPartsKernel { x: &x, t: &t, out });
            parts
        };
        let parts = run(Level::Portable);
        let bits = |parts: &[Vec<f64>; 5]| parts.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
        for level in [Level::detect(), Level::Avx2] {
            assert_eq!(bits(&parts), bits(&run(level)), "{level:?}");
        }
        let [p, q, minus_log_p, minus_log_q, bce] = &parts;
        let near = |got: f64, want: f64| got == want || (got - want).abs() <= 4.0 * f64::EPSILON * want.abs();
        for (k, &v) in x.iter().enumerate() {
            if v.is_nan() {
                assert!([p, q, minus_log_p, minus_log_q, bce].iter().all(|part| part[k].is_nan()));
                continue;
            }
            let e = (-v.abs()).exp();
            let (want_p, want_q) =
                if v >= 0.0 { (1.0 / (1.0 + e), e / (1.0 + e)) } else { (e / (1.0 + e), 1.0 / (1.0 + e)) };
            assert!(near(p[k], want_p), "σ({v}) = {}", p[k]);
            assert!(near(q[k], want_q), "σ(-{v}) = {}", q[k]);
            if v.is_finite() {
                // -log σ(x) and -log σ(-x), each a sum of non-negative terms.
                assert!(near(minus_log_p[k], if v >= 0.0 { e.ln_1p() } else { -v + e.ln_1p() }), "at {v}");
                assert!(near(minus_log_q[k], if v >= 0.0 { v + e.ln_1p() } else { e.ln_1p() }), "at {v}");
                let want = t[k] * minus_log_p[k] + (1.0 - t[k]) * minus_log_q[k];
                assert_eq!(bce[k].to_bits(), want.to_bits(), "BCE at {v}");
            }
        }
        // The tails keep every digit: -log σ(700) = e^-700.
        let at = x.iter().position(|&v| v == 700.0).unwrap();
        assert!(near(minus_log_p[at], (-700f64).exp()));
    }

    #[test]
    fn log_sum_exp_keeps_the_rest_of_a_dominant_maximum() {
        for gap in [0.5, 2.0, 20.0, 38.0, 100.0, 700.0] {
            for classes in [2, 5, 9, 1000, KEEP_TERMS_UP_TO + 3] {
                let row: Vec<f64> = (0..classes)
                    .map(|c| if c == classes / 2 { gap } else { -((c % 7) as f64) / 8.0 })
                    .collect();
                let max = gap;
                // Summed compensated: a plain sum of thousands of terms is
                // off by more than the bound.
                let mut rest = crate::tally::Sum::default();
                row.iter().filter(|&&x| x != max).for_each(|&x| rest.add((x - max).exp()));
                let rest = rest.value();
                let got = ln_sum_exp(&row[..], max, sum_exp(&row[..], max));
                let want = rest.ln_1p();
                assert!(
                    (got - want).abs() <= 1e-14 * want.abs(),
                    "gap {gap}, {classes} classes: {got:e} vs {want:e}"
                );
                let mut exps = vec![0.0; classes];
                let (kept, exp_sum) = ln_sum_exp_into(&row[..], max, &mut exps);
                assert!(
                    (kept - want).abs() <= 1e-14 * want.abs(),
                    "gap {gap}, {classes} classes: {kept:e} vs {want:e}"
                );
                assert_eq!(exp_sum.to_bits(), sum_exp(&row[..], max).to_bits());
                // Long rows write their terms only when the maximum dominates.
                if classes <= KEEP_TERMS_UP_TO || exp_sum < LN_SUM_DIRECT_BELOW {
                    assert_eq!(
                        exps.iter().map(|e| e.to_bits()).collect::<Vec<_>>(),
                        row.iter().map(|&x| exp_nonpositive(x - max).to_bits()).collect::<Vec<_>>()
                    );
                }
                for level in levels() {
                    let built = dispatch(level, SumBelow { values: &row, bound: 0.5 });
                    assert_eq!(built.to_bits(), sum_below(&row, 0.5).to_bits());
                }
            }
        }
        // Two maxima: the sum is at least 2 and its log is taken as it is.
        let row = [3.0, 3.0, -1.0];
        assert_eq!(ln_sum_exp(&row[..], 3.0, sum_exp(&row[..], 3.0)), sum_exp(&row[..], 3.0).ln());
        assert!(ln_sum_exp(&[f64::NAN, 1.0][..], f64::NAN, f64::NAN).is_nan());
    }
}

#[cfg(test)]
mod row_tests {
    use super::*;

    #[test]
    fn every_build_reduces_many_short_rows_as_each_row_alone() {
        for width in [1, 3, 7, 8, 9, 16, 21, 24, 81] {
            let rows = 13;
            let mut x: Vec<f32> =
                (0..rows * width).map(|i| ((i * 37) % 23) as f32 / 3.0 - 4.0 + (i % 5) as f32).collect();
            // A dominant maximum, ties, and non-finite values in some rows.
            x[width + width / 2] = 60.0;
            x[2 * width] = 90.0;
            x[2 * width + width - 1] = 90.0;
            x[4 * width + width / 3] = f32::NAN;
            x[5 * width] = f32::INFINITY;
            x[6 * width + width - 1] = f32::NEG_INFINITY;
            // Non-finite values right after a finite row, which reads them
            // with its partial last vector.
            x[8 * width] = f32::INFINITY;
            x[10 * width] = f32::NAN;
            let wide: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let narrow: Vec<half::bf16> = x.iter().map(|&v| half::bf16::from_f32(v)).collect();
            let narrow_wide: Vec<f64> = narrow.iter().map(|v| v.to_f64()).collect();
            let alone = |values: &[f64]| -> Vec<RowSoftmax> {
                values
                    .chunks(width)
                    .map(|row| {
                        let (max, finite) = max_and_finite(row);
                        let mut terms = vec![0.0; padded_len(width)];
                        let (ln_sum, exp_sum) = ln_sum_exp_into(row, max, &mut terms);
                        let argmax = Some(first_equal(row, max).unwrap_or(0));
                        RowSoftmax { max, exp_sum, ln_sum, argmax, finite }
                    })
                    .collect()
            };
            // Every NaN alike: the sign and payload of a NaN are not kept
            // through optimisation (an optimised build may fold the one-row
            // reference differently), and no report shows them.
            let bit = |v: f64| if v.is_nan() { f64::NAN.to_bits() } else { v.to_bits() };
            let bits = |rows: &[RowSoftmax]| -> Vec<(u64, u64, u64, Option<usize>, bool)> {
                rows.iter().map(|r| (bit(r.max), bit(r.exp_sum), bit(r.ln_sum), r.argmax, r.finite)).collect()
            };
            for level in [Level::detect(), Level::Portable] {
                let mut terms = vec![0.0; padded_len(width)];
                let mut out = vec![RowSoftmax::default(); rows];
                dispatch(level, SoftmaxRows { values: &x[..], width, terms: &mut terms, out: &mut out });
                assert_eq!(bits(&out), bits(&alone(&wide)), "float32, width {width}, {level:?}");
                dispatch(level, SoftmaxRows { values: &wide[..], width, terms: &mut terms, out: &mut out });
                assert_eq!(bits(&out), bits(&alone(&wide)), "float64, width {width}, {level:?}");
                dispatch(level, SoftmaxRows { values: &narrow[..], width, terms: &mut terms, out: &mut out });
                assert_eq!(bits(&out), bits(&alone(&narrow_wide)), "bfloat16, width {width}, {level:?}");
            }
        }
    }

    #[test]
    fn max_and_finiteness_of_rows() {
        for len in 1..21 {
            let row: Vec<f64> = (0..len).map(|i| ((i * 37) % 11) as f64 - 5.0).collect();
            let want = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            for level in [Level::detect(), Level::Portable] {
                assert_eq!(dispatch(level, MaxAndFinite { row: &row[..] }), (want, true));
                for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                    let mut with_bad = row.clone();
                    with_bad[len / 2] = bad;
                    assert!(!dispatch(level, MaxAndFinite { row: &with_bad[..] }).1);
                }
            }
        }
        let mut inf = [1.0; 9];
        inf[6] = f64::INFINITY;
        assert_eq!(max_and_finite(&inf[..]).0, f64::INFINITY);
    }

    #[test]
    fn a_float32_row_read_in_place_gives_the_bits_of_its_widened_copy() {
        for len in [1, 7, 8, 9, 100, 4097, 5000] {
            for dominant in [false, true] {
                let row: Vec<f32> = (0..len)
                    .map(
                        |i| if dominant && i == len / 2 { 40.0 } else { ((i * 37) % 101) as f32 / 7.0 - 5.0 },
                    )
                    .collect();
                let wide: Vec<f64> = row.iter().map(|&x| x as f64).collect();
                let (narrow, wide) = (&row[..], &wide[..]);
                let (max, finite) = max_and_finite(narrow);
                assert_eq!((max, finite), max_and_finite(wide));
                assert_eq!(first_equal(narrow, max), first_equal(wide, max));
                assert_eq!(sum_exp(narrow, max).to_bits(), sum_exp(wide, max).to_bits());
                let (mut a, mut b) = (vec![0.0; padded_len(len)], vec![0.0; padded_len(len)]);
                let (ln_a, sum_a) = ln_sum_exp_into(narrow, max, &mut a);
                let (ln_b, sum_b) = ln_sum_exp_into(wide, max, &mut b);
                assert_eq!((ln_a.to_bits(), sum_a.to_bits()), (ln_b.to_bits(), sum_b.to_bits()), "{len}");
                assert_eq!(ln_sum_exp(narrow, max, sum_a).to_bits(), ln_sum_exp(wide, max, sum_b).to_bits());
            }
        }
    }
}
