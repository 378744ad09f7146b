//! Eight f64 lanes, three ways: one AVX-512 register, two AVX2 registers, or
//! a plain array. The kernels in the parent module are written once over
//! [`Real`] and [`Lanes`]; every operation here is the same IEEE operation
//! in each implementation, so each build of a kernel gives the same bits.
//!
//! The methods are `unsafe` because the vector implementations use
//! instructions the CPU must have: they may only run inside a function built
//! for those instructions (see `dispatch`), where they are inlined. That one
//! rule is the safety contract of every method below.
#![allow(clippy::missing_safety_doc)]

use half::bf16;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Eight bfloat16 values as eight float32: each one's bits moved to the
/// top half of a 32-bit lane.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn widen_bf16(from: &[bf16]) -> __m256 {
    // SAFETY: the caller checked that eight values are there and runs where
    // AVX2 exists; unaligned loads are allowed.
    unsafe {
        let halves = _mm_loadu_si128(from.as_ptr().cast());
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(halves), 16))
    }
}

/// Arithmetic on one value or on eight lanes.
pub trait Real: Copy {
    type Mask: Copy;
    unsafe fn splat(x: f64) -> Self;
    unsafe fn add(self, other: Self) -> Self;
    unsafe fn sub(self, other: Self) -> Self;
    unsafe fn mul(self, other: Self) -> Self;
    unsafe fn div(self, other: Self) -> Self;
    /// `self · b + c` with one rounding.
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;
    /// `self` if it is greater than `other`, else `other` (so `other` when
    /// either is NaN), as the x86 max instruction.
    unsafe fn max(self, other: Self) -> Self;
    /// `self` if it is less than `other`, else `other`.
    unsafe fn min(self, other: Self) -> Self;
    unsafe fn abs(self) -> Self;
    /// The largest integer not above `self`.
    unsafe fn floor(self) -> Self;
    unsafe fn lt(self, other: Self) -> Self::Mask;
    unsafe fn ge(self, other: Self) -> Self::Mask;
    /// Equal (NaN equals nothing).
    unsafe fn equal(self, other: Self) -> Self::Mask;
    /// `yes` where `mask` is set, `no` elsewhere.
    unsafe fn select(mask: Self::Mask, yes: Self, no: Self) -> Self;
    /// 2^(n/4) for the integer n in the low bits of `rounded` (a value
    /// `n + 1.5·2^52`), -4088 ≤ n ≤ 0: `QUARTER_POWERS[n mod 4]` with
    /// ⌊n/4⌋ added to its exponent, so within half an ulp.
    unsafe fn pow2_quarter(rounded: Self) -> Self;
}

/// 2^(j/4) for j = 0…3, each the double nearest to it.
pub const QUARTER_POWERS: [f64; 4] =
    [1.0, 1.189_207_115_002_721, std::f64::consts::SQRT_2, 1.681_792_830_507_429];

/// The bits of `rounded` that hold n (mod 2^14, enough for n ≥ -4096)
/// moved so that ⌊n/4⌋ fills the exponent field: adding them to a double's
/// bits multiplies it by 2^⌊n/4⌋ (two's complement wraps as it should).
const EXPONENT_SHIFT: i32 = 50;
const EXPONENT_FIELD: u64 = 0xFFF0_0000_0000_0000;

/// Eight lanes, read from and written to slices.
///
/// # Safety
/// Besides running where the type's instructions exist, a caller of
/// `load`, `load_f32`, `load_bf16` and `store` passes a slice of at least
/// eight values. Only debug builds check the length: these calls sit in the
/// innermost loops, where a check per call was 4% of the instructions of a
/// pass, and every loop already knows its bound.
pub trait Lanes: Real {
    /// Reads eight values from the start of `from`.
    unsafe fn load(from: &[f64]) -> Self;
    /// Reads eight f32 values from the start of `from`, widened exactly.
    unsafe fn load_f32(from: &[f32]) -> Self;
    /// Reads eight bfloat16 values from the start of `from`, widened
    /// exactly: a bfloat16 is the top half of a float32.
    unsafe fn load_bf16(from: &[bf16]) -> Self;
    /// Writes the eight lanes to the start of `to`.
    unsafe fn store(self, to: &mut [f64]);
    /// Writes the bits of the eight lanes rounded to float32 (to nearest,
    /// as `as f32` rounds) to the start of `to`.
    unsafe fn store_f32_bits(self, to: &mut [u32]);
    /// Writes the eight lanes, whole numbers within the range of i32, as
    /// i32 to the start of `to`.
    unsafe fn store_whole(self, to: &mut [i32]);
    fn to_array(self) -> [f64; 8];
    /// The mask as bits, bit k for lane k.
    unsafe fn bits(mask: Self::Mask) -> u32;
}

impl Real for f64 {
    type Mask = bool;

    #[inline(always)]
    unsafe fn splat(x: f64) -> Self {
        x
    }
    #[inline(always)]
    unsafe fn add(self, other: Self) -> Self {
        self + other
    }
    #[inline(always)]
    unsafe fn sub(self, other: Self) -> Self {
        self - other
    }
    #[inline(always)]
    unsafe fn mul(self, other: Self) -> Self {
        self * other
    }
    #[inline(always)]
    unsafe fn div(self, other: Self) -> Self {
        self / other
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        f64::mul_add(self, b, c)
    }
    #[inline(always)]
    unsafe fn max(self, other: Self) -> Self {
        if self > other { self } else { other }
    }
    #[inline(always)]
    unsafe fn min(self, other: Self) -> Self {
        if self < other { self } else { other }
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        f64::abs(self)
    }
    #[inline(always)]
    unsafe fn floor(self) -> Self {
        f64::floor(self)
    }
    #[inline(always)]
    unsafe fn lt(self, other: Self) -> bool {
        self < other
    }
    #[inline(always)]
    unsafe fn ge(self, other: Self) -> bool {
        self >= other
    }
    #[inline(always)]
    unsafe fn equal(self, other: Self) -> bool {
        self == other
    }
    #[inline(always)]
    unsafe fn select(mask: bool, yes: Self, no: Self) -> Self {
        if mask { yes } else { no }
    }
    #[inline(always)]
    unsafe fn pow2_quarter(rounded: Self) -> Self {
        let bits = rounded.to_bits();
        let scale = (bits << EXPONENT_SHIFT) & EXPONENT_FIELD;
        f64::from_bits(QUARTER_POWERS[(bits & 3) as usize].to_bits().wrapping_add(scale))
    }
}

/// The portable build: eight scalars.
#[derive(Clone, Copy)]
pub struct Portable([f64; 8]);

impl Portable {
    #[inline(always)]
    fn map(self, f: impl Fn(f64) -> f64) -> Self {
        Portable(self.0.map(f))
    }

    #[inline(always)]
    fn zip(self, other: Self, f: impl Fn(f64, f64) -> f64) -> Self {
        Portable(std::array::from_fn(|k| f(self.0[k], other.0[k])))
    }
}

impl Real for Portable {
    type Mask = [bool; 8];

    #[inline(always)]
    unsafe fn splat(x: f64) -> Self {
        Portable([x; 8])
    }
    #[inline(always)]
    unsafe fn add(self, other: Self) -> Self {
        self.zip(other, |a, b| a + b)
    }
    #[inline(always)]
    unsafe fn sub(self, other: Self) -> Self {
        self.zip(other, |a, b| a - b)
    }
    #[inline(always)]
    unsafe fn mul(self, other: Self) -> Self {
        self.zip(other, |a, b| a * b)
    }
    #[inline(always)]
    unsafe fn div(self, other: Self) -> Self {
        self.zip(other, |a, b| a / b)
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        Portable(std::array::from_fn(|k| f64::mul_add(self.0[k], b.0[k], c.0[k])))
    }
    #[inline(always)]
    unsafe fn max(self, other: Self) -> Self {
        self.zip(other, |a, b| if a > b { a } else { b })
    }
    #[inline(always)]
    unsafe fn min(self, other: Self) -> Self {
        self.zip(other, |a, b| if a < b { a } else { b })
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        self.map(f64::abs)
    }
    #[inline(always)]
    unsafe fn floor(self) -> Self {
        self.map(f64::floor)
    }
    #[inline(always)]
    unsafe fn lt(self, other: Self) -> [bool; 8] {
        std::array::from_fn(|k| self.0[k] < other.0[k])
    }
    #[inline(always)]
    unsafe fn ge(self, other: Self) -> [bool; 8] {
        std::array::from_fn(|k| self.0[k] >= other.0[k])
    }
    #[inline(always)]
    unsafe fn equal(self, other: Self) -> [bool; 8] {
        std::array::from_fn(|k| self.0[k] == other.0[k])
    }
    #[inline(always)]
    unsafe fn select(mask: [bool; 8], yes: Self, no: Self) -> Self {
        Portable(std::array::from_fn(|k| if mask[k] { yes.0[k] } else { no.0[k] }))
    }
    #[inline(always)]
    unsafe fn pow2_quarter(rounded: Self) -> Self {
        // SAFETY: scalar arithmetic only.
        rounded.map(|r| unsafe { <f64 as Real>::pow2_quarter(r) })
    }
}

impl Lanes for Portable {
    #[inline(always)]
    unsafe fn load(from: &[f64]) -> Self {
        Portable(std::array::from_fn(|k| from[k]))
    }
    #[inline(always)]
    unsafe fn load_f32(from: &[f32]) -> Self {
        Portable(std::array::from_fn(|k| from[k] as f64))
    }
    #[inline(always)]
    unsafe fn load_bf16(from: &[bf16]) -> Self {
        Portable(std::array::from_fn(|k| from[k].to_f64()))
    }
    #[inline(always)]
    unsafe fn store(self, to: &mut [f64]) {
        to[..8].copy_from_slice(&self.0);
    }
    #[inline(always)]
    unsafe fn store_f32_bits(self, to: &mut [u32]) {
        for (to, x) in to[..8].iter_mut().zip(self.0) {
            *to = (x as f32).to_bits();
        }
    }
    #[inline(always)]
    unsafe fn store_whole(self, to: &mut [i32]) {
        for (to, x) in to[..8].iter_mut().zip(self.0) {
            *to = x as i32;
        }
    }
    #[inline(always)]
    fn to_array(self) -> [f64; 8] {
        self.0
    }
    #[inline(always)]
    unsafe fn bits(mask: [bool; 8]) -> u32 {
        (0..8).fold(0, |bits, k| bits | (mask[k] as u32) << k)
    }
}

/// The AVX-512 build: one 512-bit register.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct Avx512(__m512d);

#[cfg(target_arch = "x86_64")]
impl Real for Avx512 {
    type Mask = __mmask8;

    #[inline(always)]
    unsafe fn splat(x: f64) -> Self {
        unsafe { Avx512(_mm512_set1_pd(x)) }
    }
    #[inline(always)]
    unsafe fn add(self, other: Self) -> Self {
        unsafe { Avx512(_mm512_add_pd(self.0, other.0)) }
    }
    #[inline(always)]
    unsafe fn sub(self, other: Self) -> Self {
        unsafe { Avx512(_mm512_sub_pd(self.0, other.0)) }
    }
    #[inline(always)]
    unsafe fn mul(self, other: Self) -> Self {
        unsafe { Avx512(_mm512_mul_pd(self.0, other.0)) }
    }
    #[inline(always)]
    unsafe fn div(self, other: Self) -> Self {
        unsafe { Avx512(_mm512_div_pd(self.0, other.0)) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        unsafe { Avx512(_mm512_fmadd_pd(self.0, b.0, c.0)) }
    }
    #[inline(always)]
    unsafe fn max(self, other: Self) -> Self {
        unsafe { Avx512(_mm512_max_pd(self.0, other.0)) }
    }
    #[inline(always)]
    unsafe fn min(self, other: Self) -> Self {
        unsafe { Avx512(_mm512_min_pd(self.0, other.0)) }
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        unsafe { Avx512(_mm512_abs_pd(self.0)) }
    }
    #[inline(always)]
    unsafe fn floor(self) -> Self {
        unsafe { Avx512(_mm512_roundscale_pd::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(self.0)) }
    }
    #[inline(always)]
    unsafe fn lt(self, other: Self) -> __mmask8 {
        unsafe { _mm512_cmp_pd_mask::<_CMP_LT_OQ>(self.0, other.0) }
    }
    #[inline(always)]
    unsafe fn ge(self, other: Self) -> __mmask8 {
        unsafe { _mm512_cmp_pd_mask::<_CMP_GE_OQ>(self.0, other.0) }
    }
    #[inline(always)]
    unsafe fn equal(self, other: Self) -> __mmask8 {
        unsafe { _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(self.0, other.0) }
    }
    #[inline(always)]
    unsafe fn select(mask: __mmask8, yes: Self, no: Self) -> Self {
        unsafe { Avx512(_mm512_mask_blend_pd(mask, no.0, yes.0)) }
    }
    #[inline(always)]
    unsafe fn pow2_quarter(rounded: Self) -> Self {
        unsafe {
            let bits = _mm512_castpd_si512(rounded.0);
            // The permute reads the low three bits of n: the table twice.
            let [a, b, c, d] = QUARTER_POWERS;
            let power = _mm512_permutexvar_pd(bits, _mm512_setr_pd(a, b, c, d, a, b, c, d));
            let scale = _mm512_and_si512(
                _mm512_slli_epi64::<{ EXPONENT_SHIFT as u32 }>(bits),
                _mm512_set1_epi64(EXPONENT_FIELD as i64),
            );
            Avx512(_mm512_castsi512_pd(_mm512_add_epi64(_mm512_castpd_si512(power), scale)))
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl Lanes for Avx512 {
    #[inline(always)]
    unsafe fn load(from: &[f64]) -> Self {
        debug_assert!(from.len() >= 8);
        // SAFETY: the caller passes eight values; unaligned loads are allowed.
        unsafe { Avx512(_mm512_loadu_pd(from.as_ptr())) }
    }
    #[inline(always)]
    unsafe fn load_f32(from: &[f32]) -> Self {
        debug_assert!(from.len() >= 8);
        // SAFETY: as above.
        unsafe { Avx512(_mm512_cvtps_pd(_mm256_loadu_ps(from.as_ptr()))) }
    }
    #[inline(always)]
    unsafe fn load_bf16(from: &[bf16]) -> Self {
        debug_assert!(from.len() >= 8);
        // SAFETY: as above; a bf16 is a u16 in memory.
        unsafe { Avx512(_mm512_cvtps_pd(widen_bf16(from))) }
    }
    #[inline(always)]
    unsafe fn store(self, to: &mut [f64]) {
        debug_assert!(to.len() >= 8);
        // SAFETY: as above.
        unsafe { _mm512_storeu_pd(to.as_mut_ptr(), self.0) }
    }
    #[inline(always)]
    unsafe fn store_f32_bits(self, to: &mut [u32]) {
        debug_assert!(to.len() >= 8);
        // SAFETY: as above; the conversion rounds by the default mode, to nearest.
        unsafe { _mm256_storeu_ps(to.as_mut_ptr().cast(), _mm512_cvtpd_ps(self.0)) }
    }
    #[inline(always)]
    unsafe fn store_whole(self, to: &mut [i32]) {
        debug_assert!(to.len() >= 8);
        // SAFETY: as above; whole numbers convert exactly.
        unsafe { _mm256_storeu_si256(to.as_mut_ptr().cast(), _mm512_cvttpd_epi32(self.0)) }
    }
    #[inline(always)]
    fn to_array(self) -> [f64; 8] {
        // SAFETY: a 512-bit register is eight f64.
        unsafe { std::mem::transmute::<__m512d, [f64; 8]>(self.0) }
    }
    #[inline(always)]
    unsafe fn bits(mask: __mmask8) -> u32 {
        mask as u32
    }
}

/// The AVX2 build: lanes 0–3 and 4–7 in two 256-bit registers.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct Avx2(__m256d, __m256d);

#[cfg(target_arch = "x86_64")]
macro_rules! both {
    ($f:ident($($a:expr),*)) => {
        Avx2($f($($a.0),*), $f($($a.1),*))
    };
}

#[cfg(target_arch = "x86_64")]
impl Real for Avx2 {
    type Mask = (__m256d, __m256d);

    #[inline(always)]
    unsafe fn splat(x: f64) -> Self {
        unsafe { Avx2(_mm256_set1_pd(x), _mm256_set1_pd(x)) }
    }
    #[inline(always)]
    unsafe fn add(self, other: Self) -> Self {
        unsafe { both!(_mm256_add_pd(self, other)) }
    }
    #[inline(always)]
    unsafe fn sub(self, other: Self) -> Self {
        unsafe { both!(_mm256_sub_pd(self, other)) }
    }
    #[inline(always)]
    unsafe fn mul(self, other: Self) -> Self {
        unsafe { both!(_mm256_mul_pd(self, other)) }
    }
    #[inline(always)]
    unsafe fn div(self, other: Self) -> Self {
        unsafe { both!(_mm256_div_pd(self, other)) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        unsafe { both!(_mm256_fmadd_pd(self, b, c)) }
    }
    #[inline(always)]
    unsafe fn max(self, other: Self) -> Self {
        unsafe { both!(_mm256_max_pd(self, other)) }
    }
    #[inline(always)]
    unsafe fn min(self, other: Self) -> Self {
        unsafe { both!(_mm256_min_pd(self, other)) }
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        unsafe {
            let sign = _mm256_set1_pd(-0.0);
            Avx2(_mm256_andnot_pd(sign, self.0), _mm256_andnot_pd(sign, self.1))
        }
    }
    #[inline(always)]
    unsafe fn floor(self) -> Self {
        unsafe { both!(_mm256_floor_pd(self)) }
    }
    #[inline(always)]
    unsafe fn lt(self, other: Self) -> Self::Mask {
        unsafe {
            (_mm256_cmp_pd::<_CMP_LT_OQ>(self.0, other.0), _mm256_cmp_pd::<_CMP_LT_OQ>(self.1, other.1))
        }
    }
    #[inline(always)]
    unsafe fn ge(self, other: Self) -> Self::Mask {
        unsafe {
            (_mm256_cmp_pd::<_CMP_GE_OQ>(self.0, other.0), _mm256_cmp_pd::<_CMP_GE_OQ>(self.1, other.1))
        }
    }
    #[inline(always)]
    unsafe fn equal(self, other: Self) -> Self::Mask {
        unsafe {
            (_mm256_cmp_pd::<_CMP_EQ_OQ>(self.0, other.0), _mm256_cmp_pd::<_CMP_EQ_OQ>(self.1, other.1))
        }
    }
    #[inline(always)]
    unsafe fn select(mask: Self::Mask, yes: Self, no: Self) -> Self {
        unsafe { Avx2(_mm256_blendv_pd(no.0, yes.0, mask.0), _mm256_blendv_pd(no.1, yes.1, mask.1)) }
    }
    #[inline(always)]
    unsafe fn pow2_quarter(rounded: Self) -> Self {
        // SAFETY: as every method here.
        unsafe { Avx2(quarter_power(rounded.0), quarter_power(rounded.1)) }
    }
}

/// [`Real::pow2_quarter`] on four lanes. (A function, not a closure: only
/// an always-inlined function takes the vector instructions of its caller.)
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn quarter_power(rounded: __m256d) -> __m256d {
    // SAFETY: the caller runs where AVX2 exists.
    unsafe {
        let [a, b, c, d] = QUARTER_POWERS;
        let bits = _mm256_castpd_si256(rounded);
        // Each permute picks by bit 1 of its index, here n's bit 0, from a
        // pair of entries; n's bit 1 picks the pair.
        let index = _mm256_add_epi64(bits, bits);
        let low = _mm256_permutevar_pd(_mm256_setr_pd(a, b, a, b), index);
        let high = _mm256_permutevar_pd(_mm256_setr_pd(c, d, c, d), index);
        let power = _mm256_blendv_pd(low, high, _mm256_castsi256_pd(_mm256_slli_epi64::<62>(bits)));
        let scale = _mm256_and_si256(
            _mm256_slli_epi64::<EXPONENT_SHIFT>(bits),
            _mm256_set1_epi64x(EXPONENT_FIELD as i64),
        );
        _mm256_castsi256_pd(_mm256_add_epi64(_mm256_castpd_si256(power), scale))
    }
}

#[cfg(target_arch = "x86_64")]
impl Lanes for Avx2 {
    #[inline(always)]
    unsafe fn load(from: &[f64]) -> Self {
        debug_assert!(from.len() >= 8);
        // SAFETY: the caller passes eight values; unaligned loads are allowed.
        unsafe { Avx2(_mm256_loadu_pd(from.as_ptr()), _mm256_loadu_pd(from.as_ptr().add(4))) }
    }
    #[inline(always)]
    unsafe fn load_f32(from: &[f32]) -> Self {
        debug_assert!(from.len() >= 8);
        // SAFETY: as above.
        unsafe {
            Avx2(
                _mm256_cvtps_pd(_mm_loadu_ps(from.as_ptr())),
                _mm256_cvtps_pd(_mm_loadu_ps(from.as_ptr().add(4))),
            )
        }
    }
    #[inline(always)]
    unsafe fn load_bf16(from: &[bf16]) -> Self {
        debug_assert!(from.len() >= 8);
        // SAFETY: as above; a bf16 is a u16 in memory.
        unsafe {
            let single = widen_bf16(from);
            Avx2(
                _mm256_cvtps_pd(_mm256_castps256_ps128(single)),
                _mm256_cvtps_pd(_mm256_extractf128_ps(single, 1)),
            )
        }
    }
    #[inline(always)]
    unsafe fn store(self, to: &mut [f64]) {
        debug_assert!(to.len() >= 8);
        // SAFETY: as above.
        unsafe {
            _mm256_storeu_pd(to.as_mut_ptr(), self.0);
            _mm256_storeu_pd(to.as_mut_ptr().add(4), self.1);
        }
    }
    #[inline(always)]
    unsafe fn store_f32_bits(self, to: &mut [u32]) {
        debug_assert!(to.len() >= 8);
        // SAFETY: as above; the conversion rounds by the default mode, to nearest.
        unsafe {
            _mm_storeu_ps(to.as_mut_ptr().cast(), _mm256_cvtpd_ps(self.0));
            _mm_storeu_ps(to.as_mut_ptr().add(4).cast(), _mm256_cvtpd_ps(self.1));
        }
    }
    #[inline(always)]
    unsafe fn store_whole(self, to: &mut [i32]) {
        debug_assert!(to.len() >= 8);
        // SAFETY: as above; whole numbers convert exactly.
        unsafe {
            _mm_storeu_si128(to.as_mut_ptr().cast(), _mm256_cvttpd_epi32(self.0));
            _mm_storeu_si128(to.as_mut_ptr().add(4).cast(), _mm256_cvttpd_epi32(self.1));
        }
    }
    #[inline(always)]
    fn to_array(self) -> [f64; 8] {
        // SAFETY: a 256-bit register is four f64.
        let [low, high] =
            [self.0, self.1].map(|half| unsafe { std::mem::transmute::<__m256d, [f64; 4]>(half) });
        std::array::from_fn(|k| if k < 4 { low[k] } else { high[k - 4] })
    }
    #[inline(always)]
    unsafe fn bits(mask: Self::Mask) -> u32 {
        unsafe { (_mm256_movemask_pd(mask.0) | _mm256_movemask_pd(mask.1) << 4) as u32 }
    }
}
