//! Tensors that are views into stored bytes, as `torch.save` and
//! `.safetensors` files hold them: an element type, a shape, strides and an
//! offset, all in elements, over a region of a file. A view that covers its
//! elements in C order, native byte order and aligned is read in place from
//! the memory-mapped file; any other is gathered once into an owned C-order
//! buffer.

use std::ops::Range;

use super::guard::GuardedMap;
use super::tensor::{Column, DType, Owned, Storage, with_element_type};
use super::{Tensor, size_text};
use crate::error::{Error, Origin, Result};

/// How a tensor's elements sit in a region of bytes.
#[derive(Debug, Clone)]
pub struct View {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Elements between neighbours along each axis.
    pub strides: Vec<usize>,
    /// The first element's place in the region, in elements.
    pub offset: usize,
    /// The bytes are big-endian.
    pub big_endian: bool,
}

impl View {
    /// A view of every element of a region, in C order and little-endian.
    pub fn contiguous(dtype: DType, shape: Vec<usize>) -> View {
        let strides = c_strides(&shape);
        View { dtype, shape, strides, offset: 0, big_endian: false }
    }

    fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the elements follow one another in C order (an axis of
    /// length 1 may have any stride, as PyTorch leaves it).
    fn is_c_contiguous(&self) -> bool {
        let mut expected = 1usize;
        for (&len, &stride) in self.shape.iter().zip(&self.strides).rev() {
            if len != 1 && stride != expected {
                return false;
            }
            expected = expected.saturating_mul(len);
        }
        true
    }

    /// Checks that every element lies inside a region of `region_len`
    /// bytes; the error is the message part.
    pub fn check_fits(&self, region_len: usize) -> Result<(), String> {
        let size = self.dtype.size();
        let addressable = self
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d.max(1)))
            .and_then(|n| n.checked_mul(size))
            .is_some_and(|bytes| bytes <= isize::MAX as usize);
        if !addressable {
            return Err(format!(
                "shape {:?} of {} is larger than can be addressed",
                self.shape,
                self.dtype.name()
            ));
        }
        if self.numel() == 0 {
            return Ok(());
        }
        let last =
            self.shape.iter().zip(&self.strides).try_fold(self.offset, |acc, (&len, &stride)| {
                acc.checked_add((len - 1).checked_mul(stride)?)
            });
        let needed = last.and_then(|last| last.checked_add(1)?.checked_mul(size));
        match needed {
            Some(needed) if needed <= region_len => Ok(()),
            _ => Err(format!(
                "its view (offset {}, shape {:?}, strides {:?}) of {} reaches past the {} its storage holds",
                self.offset,
                self.shape,
                self.strides,
                self.dtype.name(),
                size_text(region_len as u64)
            )),
        }
    }
}

/// The strides of a C-order array of `shape`, in elements.
pub fn c_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for axis in (0..shape.len().saturating_sub(1)).rev() {
        strides[axis] = strides[axis + 1].saturating_mul(shape[axis + 1]);
    }
    strides
}

/// Where a view's bytes are: a region of the file, or a buffer they were
/// inflated into (a compressed archive member).
pub enum Stored {
    Region(Range<usize>),
    Inflated(Vec<u8>),
}

impl Stored {
    pub fn len(&self) -> usize {
        match self {
            Stored::Region(region) => region.len(),
            Stored::Inflated(buffer) => buffer.len(),
        }
    }
}

/// The tensor `view` describes in `stored` bytes of the mapped file, read
/// in place where it can be. The view must fit ([`View::check_fits`]).
pub fn tensor_in_map(map: GuardedMap, stored: Stored, view: &View, origin: Origin) -> Result<Tensor> {
    let region = match stored {
        Stored::Region(region) => region,
        Stored::Inflated(buffer) => return gathered(&buffer, view, origin),
    };
    let size = view.dtype.size();
    // An empty view's offset may point anywhere; a non-empty one fits.
    let start = region.start + if view.numel() == 0 { 0 } else { view.offset * size };
    let native = view.big_endian == cfg!(target_endian = "big") || size == 1;
    if native && view.is_c_contiguous() && start.is_multiple_of(size) {
        let storage = Storage::Mapped { map, offset: start, len: view.numel() * size };
        return Tensor::checked(origin, view.dtype, view.shape.clone(), storage);
    }
    gathered(&map[region], view, origin)
}

/// The tensor `view` describes in `stored` bytes of the file image
/// `image`, copied. The view must fit.
pub fn tensor_in_image(image: &[u8], stored: Stored, view: &View, origin: Origin) -> Result<Tensor> {
    match stored {
        Stored::Region(region) => gathered(&image[region], view, origin),
        Stored::Inflated(buffer) => gathered(&buffer, view, origin),
    }
}

fn gathered(bytes: &[u8], view: &View, origin: Origin) -> Result<Tensor> {
    let column = gather(bytes, view).map_err(|message| Error::input(&origin, message))?;
    Tensor::checked(origin, view.dtype, view.shape.clone(), Storage::Owned(column))
}

/// The elements of `view` in `bytes`, native and in C order.
fn gather(bytes: &[u8], view: &View) -> Result<Column, String> {
    with_element_type!(view.dtype, T => gather_typed::<T>(bytes, view).map(T::into_column))
}

fn gather_typed<T: Owned>(bytes: &[u8], view: &View) -> Result<Vec<T>, String> {
    let numel = view.numel();
    let mut out: Vec<T> = Vec::new();
    out.try_reserve_exact(numel).map_err(|_| {
        format!(
            "cannot allocate {} for shape {:?} of {}: not enough memory",
            size_text((numel * size_of::<T>()) as u64),
            view.shape,
            view.dtype.name()
        )
    })?;
    if numel == 0 {
        return Ok(out);
    }
    let read = |element: usize| -> T {
        let at = element * size_of::<T>();
        let mut value: T = bytemuck::pod_read_unaligned(&bytes[at..at + size_of::<T>()]);
        if view.big_endian != cfg!(target_endian = "big") {
            bytemuck::bytes_of_mut(&mut value).reverse();
        }
        value
    };
    if view.is_c_contiguous() {
        out.extend((view.offset..view.offset + numel).map(read));
        return Ok(out);
    }
    // Walk the multi-index in C order; the innermost axis is a strided run.
    let rank = view.shape.len();
    let (inner_len, inner_stride) = (view.shape[rank - 1], view.strides[rank - 1]);
    let mut index = vec![0usize; rank - 1];
    let mut row_start = view.offset;
    loop {
        out.extend((0..inner_len).map(|k| read(row_start + k * inner_stride)));
        let mut axis = rank - 1;
        loop {
            if axis == 0 {
                return Ok(out);
            }
            axis -= 1;
            index[axis] += 1;
            row_start += view.strides[axis];
            if index[axis] < view.shape[axis] {
                break;
            }
            row_start -= view.shape[axis] * view.strides[axis];
            index[axis] = 0;
        }
    }
}
