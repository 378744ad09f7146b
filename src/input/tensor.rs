//! The in-memory form of every input array: native byte order, C order, one
//! of the NumPy element types, either memory-mapped in place or owned.

use half::{bf16, f16};

use super::guard::GuardedMap;
use crate::error::{Error, Origin, Result};

/// The element types losscope reads, named as NumPy names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    Bool,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F16,
    BF16,
    F32,
    F64,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::I8 | DType::U8 => 1,
            DType::I16 | DType::U16 | DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }
}

/// Runs `$body` with `$T` naming the Rust type of `$dtype`'s elements (`u8`
/// for bool), so that a reader is written once for every dtype.
macro_rules! with_element_type {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            DType::Bool | DType::U8 => with_element_type!(@as u8, $T => $body),
            DType::I8 => with_element_type!(@as i8, $T => $body),
            DType::I16 => with_element_type!(@as i16, $T => $body),
            DType::I32 => with_element_type!(@as i32, $T => $body),
            DType::I64 => with_element_type!(@as i64, $T => $body),
            DType::U16 => with_element_type!(@as u16, $T => $body),
            DType::U32 => with_element_type!(@as u32, $T => $body),
            DType::U64 => with_element_type!(@as u64, $T => $body),
            DType::F16 => with_element_type!(@as half::f16, $T => $body),
            DType::BF16 => with_element_type!(@as half::bf16, $T => $body),
            DType::F32 => with_element_type!(@as f32, $T => $body),
            DType::F64 => with_element_type!(@as f64, $T => $body),
        }
    };
    (@as $element:ty, $T:ident => $body:expr) => {{
        type $T = $element;
        $body
    }};
}
pub(crate) use with_element_type;

/// A numeric element that every per-example pass can read as f64.
pub trait Element: Copy + Send + Sync + bytemuck::Pod + 'static {
    fn to_f64(self) -> f64;
}

macro_rules! lossless_element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
lossless_element!(i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);

impl Element for f16 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
}

impl Element for bf16 {
    /// A bfloat16 is the top half of a float32: widened by a shift, which
    /// the compiler turns into vector code (the `half` crate's conversion
    /// branches on NaN and stays scalar). Exact for every value; a NaN stays
    /// a NaN.
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f32::from_bits((self.to_bits() as u32) << 16) as f64
    }
}

/// A borrowed, typed view of a tensor's elements. Booleans are validated to
/// be 0 or 1 on load and then read as `U8`.
#[derive(Clone, Copy)]
pub enum Values<'a> {
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
    F16(&'a [f16]),
    BF16(&'a [bf16]),
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// Runs `$body` with `$slice` bound to the typed slice inside a [`Values`],
/// so a generic kernel is chosen once per tensor, not once per element.
#[macro_export]
macro_rules! with_slice {
    ($values:expr, $slice:ident => $body:expr) => {
        match $values {
            $crate::input::Values::I8($slice) => $body,
            $crate::input::Values::I16($slice) => $body,
            $crate::input::Values::I32($slice) => $body,
            $crate::input::Values::I64($slice) => $body,
            $crate::input::Values::U8($slice) => $body,
            $crate::input::Values::U16($slice) => $body,
            $crate::input::Values::U32($slice) => $body,
            $crate::input::Values::U64($slice) => $body,
            $crate::input::Values::F16($slice) => $body,
            $crate::input::Values::BF16($slice) => $body,
            $crate::input::Values::F32($slice) => $body,
            $crate::input::Values::F64($slice) => $body,
        }
    };
}

impl Values<'_> {
    /// Element `i` as f64 (exact for every type but the largest 64-bit integers).
    #[inline]
    pub fn get(&self, i: usize) -> f64 {
        with_slice!(self, s => s[i].to_f64())
    }

    /// Element `i` as written: integers exactly, floats as f64 prints them.
    pub fn display(&self, i: usize) -> String {
        match self {
            Values::I8(s) => s[i].to_string(),
            Values::I16(s) => s[i].to_string(),
            Values::I32(s) => s[i].to_string(),
            Values::I64(s) => s[i].to_string(),
            Values::U8(s) => s[i].to_string(),
            Values::U16(s) => s[i].to_string(),
            Values::U32(s) => s[i].to_string(),
            Values::U64(s) => s[i].to_string(),
            Values::F16(_) | Values::BF16(_) | Values::F32(_) | Values::F64(_) => {
                let v = self.get(i);
                // 1e300 as written, not as its 301 digits.
                if v != 0.0 && !(1e-6..1e16).contains(&v.abs()) { format!("{v:e}") } else { v.to_string() }
            }
        }
    }

    /// Element `i` as an integer, when it is one: integer types always, floats
    /// only when they hold an integral value.
    #[inline]
    pub fn get_index(&self, i: usize) -> Option<i64> {
        self.index_at(i).ok()
    }

    /// Element `i` as an integer, or why it cannot be a class index.
    #[inline]
    pub fn index_at(&self, i: usize) -> Result<i64, NotAnIndex> {
        match self {
            Values::I8(s) => Ok(s[i] as i64),
            Values::I16(s) => Ok(s[i] as i64),
            Values::I32(s) => Ok(s[i] as i64),
            Values::I64(s) => Ok(s[i]),
            Values::U8(s) => Ok(s[i] as i64),
            Values::U16(s) => Ok(s[i] as i64),
            Values::U32(s) => Ok(s[i] as i64),
            Values::U64(s) => i64::try_from(s[i]).map_err(|_| NotAnIndex::TooLarge),
            Values::F16(_) | Values::BF16(_) | Values::F32(_) | Values::F64(_) => {
                let v = self.get(i);
                if !v.is_finite() {
                    Err(NotAnIndex::NotFinite)
                } else if v.fract() != 0.0 {
                    Err(NotAnIndex::NotInteger)
                } else if v.abs() >= 9.0e15 {
                    // Beyond 2^53 a float no longer holds every integer.
                    Err(NotAnIndex::TooLarge)
                } else {
                    Ok(v as i64)
                }
            }
        }
    }
}

/// Why an element is not a class index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAnIndex {
    /// NaN or an infinity.
    NotFinite,
    /// A float with a fractional part.
    NotInteger,
    /// An integral value too large for an index: uint64 beyond int64, a
    /// float of magnitude 9e15 or more.
    TooLarge,
}

impl NotAnIndex {
    /// What is wrong, after "label 1e300 at index `[0]` ".
    pub fn describe(self, classes: Option<usize>) -> String {
        match (self, classes) {
            (NotAnIndex::NotFinite, _) => "is not a class index (not a finite number)".into(),
            (NotAnIndex::NotInteger, _) => "is not a class index (not an integer)".into(),
            (NotAnIndex::TooLarge, Some(classes)) => {
                format!("is too large to be a class index (out of range for {classes} classes)")
            }
            (NotAnIndex::TooLarge, None) => "is too large to be a class index".into(),
        }
    }
}

/// Owned elements, for inputs that had to be decoded (npz members, JSON,
/// big-endian or Fortran-order files).
pub enum Column {
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// An element type a [`Column`] can own.
pub trait Owned: Element {
    fn into_column(values: Vec<Self>) -> Column;
}

macro_rules! owned_element {
    ($($t:ty => $variant:ident),*) => {$(
        impl Owned for $t {
            fn into_column(values: Vec<Self>) -> Column {
                Column::$variant(values)
            }
        }
    )*};
}
owned_element!(i8 => I8, i16 => I16, i32 => I32, i64 => I64, u8 => U8, u16 => U16, u32 => U32,
    u64 => U64, f16 => F16, bf16 => BF16, f32 => F32, f64 => F64);

impl Column {
    fn values(&self) -> Values<'_> {
        match self {
            Column::I8(v) => Values::I8(v),
            Column::I16(v) => Values::I16(v),
            Column::I32(v) => Values::I32(v),
            Column::I64(v) => Values::I64(v),
            Column::U8(v) => Values::U8(v),
            Column::U16(v) => Values::U16(v),
            Column::U32(v) => Values::U32(v),
            Column::U64(v) => Values::U64(v),
            Column::F16(v) => Values::F16(v),
            Column::BF16(v) => Values::BF16(v),
            Column::F32(v) => Values::F32(v),
            Column::F64(v) => Values::F64(v),
        }
    }
}

pub(crate) enum Storage {
    /// The payload read in place from a memory-mapped file: `len` bytes
    /// from `offset`, aligned for the element type.
    Mapped {
        map: GuardedMap,
        offset: usize,
        len: usize,
    },
    Owned(Column),
}

/// One input array with its provenance.
pub struct Tensor {
    pub origin: Origin,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Whether the payload is read in place from a memory map.
    pub mapped: bool,
    storage: Storage,
}

impl Tensor {
    pub(crate) fn new(origin: Origin, dtype: DType, shape: Vec<usize>, storage: Storage) -> Self {
        let mapped = matches!(storage, Storage::Mapped { .. });
        Tensor { origin, dtype, shape, mapped, storage }
    }

    /// [`Tensor::new`], after checking that every boolean is 0 or 1.
    pub(crate) fn checked(origin: Origin, dtype: DType, shape: Vec<usize>, storage: Storage) -> Result<Self> {
        let tensor = Tensor::new(origin, dtype, shape, storage);
        if let (DType::Bool, Values::U8(bytes)) = (dtype, tensor.values())
            && let Some(i) = bytes.iter().position(|&b| b > 1)
        {
            return Err(Error::input(
                &tensor.origin,
                format!(
                    "bool element {} holds byte {}, not 0 or 1",
                    crate::error::index_in(&tensor.shape, i),
                    bytes[i]
                ),
            ));
        }
        Ok(tensor)
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn values(&self) -> Values<'_> {
        match &self.storage {
            Storage::Owned(column) => column.values(),
            Storage::Mapped { map, offset, len, .. } => {
                let bytes = &map[*offset..*offset + *len];
                // Alignment was checked when the map was accepted.
                match self.dtype {
                    DType::Bool | DType::U8 => Values::U8(bytes),
                    DType::I8 => Values::I8(bytemuck::cast_slice(bytes)),
                    DType::I16 => Values::I16(bytemuck::cast_slice(bytes)),
                    DType::I32 => Values::I32(bytemuck::cast_slice(bytes)),
                    DType::I64 => Values::I64(bytemuck::cast_slice(bytes)),
                    DType::U16 => Values::U16(bytemuck::cast_slice(bytes)),
                    DType::U32 => Values::U32(bytemuck::cast_slice(bytes)),
                    DType::U64 => Values::U64(bytemuck::cast_slice(bytes)),
                    DType::F16 => Values::F16(bytemuck::cast_slice(bytes)),
                    DType::BF16 => Values::BF16(bytemuck::cast_slice(bytes)),
                    DType::F32 => Values::F32(bytemuck::cast_slice(bytes)),
                    DType::F64 => Values::F64(bytemuck::cast_slice(bytes)),
                }
            }
        }
    }

    /// All elements as f64: for the small arrays (weights) that are read often.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        with_slice!(self.values(), s => s.iter().map(|v| v.to_f64()).collect())
    }

    /// Lets go of the pages holding only elements `elements` of a mapped
    /// tensor (see `GuardedMap::release`); nothing for one in memory. The
    /// values read afterwards are the same.
    pub fn release(&self, elements: std::ops::Range<usize>) {
        if let Storage::Mapped { map, offset, len } = &self.storage {
            let size = self.dtype.size();
            let end = elements.end.saturating_mul(size).min(*len);
            let start = elements.start.saturating_mul(size).min(end);
            map.release(offset + start..offset + end);
        }
    }

    /// The shape as NumPy prints it, `[4, 3]`.
    pub fn shape_text(&self) -> String {
        shape_text(&self.shape)
    }
}

pub fn shape_text(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

impl Values<'_> {
    /// Copies `out.len()` elements, starting at `start` and `stride` apart,
    /// into `out` as f64. One type dispatch per call keeps the per-element
    /// loop monomorphic.
    #[inline(always)]
    pub fn copy_to_f64(&self, start: usize, stride: usize, out: &mut [f64]) {
        #[inline(always)]
        fn copy<T: Element>(s: &[T], start: usize, stride: usize, out: &mut [f64]) {
            if stride == 1 {
                let len = out.len();
                for (o, v) in out.iter_mut().zip(&s[start..start + len]) {
                    *o = v.to_f64();
                }
            } else {
                for (k, o) in out.iter_mut().enumerate() {
                    *o = s[start + k * stride].to_f64();
                }
            }
        }
        with_slice!(self, s => copy(s, start, stride, out))
    }
}

impl Column {
    pub fn dtype(&self) -> DType {
        match self {
            Column::I8(_) => DType::I8,
            Column::I16(_) => DType::I16,
            Column::I32(_) => DType::I32,
            Column::I64(_) => DType::I64,
            Column::U8(_) => DType::U8,
            Column::U16(_) => DType::U16,
            Column::U32(_) => DType::U32,
            Column::U64(_) => DType::U64,
            Column::F16(_) => DType::F16,
            Column::BF16(_) => DType::BF16,
            Column::F32(_) => DType::F32,
            Column::F64(_) => DType::F64,
        }
    }

    pub fn len(&self) -> usize {
        with_slice!(self.values(), s => s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Tensor {
    /// A one-dimensional float64 tensor from values typed on the command line.
    pub fn from_list(origin: Origin, values: Vec<f64>) -> Tensor {
        Tensor::new(origin, DType::F64, vec![values.len()], Storage::Owned(Column::F64(values)))
    }

    /// A tensor of `shape` holding `column` in C order; `None` when the
    /// lengths disagree.
    pub fn from_column(origin: Origin, shape: Vec<usize>, column: Column) -> Option<Tensor> {
        (shape.iter().product::<usize>() == column.len())
            .then(|| Tensor::new(origin, column.dtype(), shape, Storage::Owned(column)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bfloat16_widens_to_the_value_the_half_crate_gives() {
        for bits in 0..=u16::MAX {
            let value = bf16::from_bits(bits);
            let (ours, theirs) = (Element::to_f64(value), bf16::to_f64(value));
            assert!(
                ours.to_bits() == theirs.to_bits() || ours.is_nan() && theirs.is_nan(),
                "bits {bits:#06x}"
            );
        }
    }

    #[test]
    fn a_released_range_of_a_mapped_file_reads_the_same_values_again() {
        // An int64 .npy of 300,000 values, about 590 pages.
        let values: Vec<u64> = (0..300_000).map(|i| i * 7_919 % 1_000_003).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("values.npy");
        crate::output::indices_to_npy(&path, &values).unwrap();
        let sources = crate::input::Sources::new(None).unwrap();
        let tensor = sources.required(&[path.to_string_lossy().into_owned()], "logits").unwrap();
        assert!(tensor.mapped);
        let read =
            |t: &Tensor| with_slice!(t.values(), s => s.iter().map(|v| v.to_f64()).collect::<Vec<f64>>());
        let before = read(&tensor);
        assert_eq!(before, values.iter().map(|&v| v as f64).collect::<Vec<_>>());
        for range in [1_000..5_000, 70_001..150_003, 0..300_000, 299_999..400_000, 5..5] {
            tensor.release(range.clone());
            assert_eq!(read(&tensor), before, "after releasing {range:?}");
        }
        // A tensor in memory is left as it is.
        let owned = Tensor::from_list(Origin::new("weight", "w"), vec![1.5; 10_000]);
        owned.release(0..10_000);
        assert_eq!(read(&owned), vec![1.5; 10_000]);
    }
}
