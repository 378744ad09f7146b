//! `.npy` parsing: the header is checked against the bytes that are really
//! there before anything is allocated, the dtype is taken from the header,
//! and native C-order payloads are used in place.

use half::f16;
use ndarray::{ArrayView, IxDyn, ShapeBuilder};
use ndarray_npy::npy::header::{Header, Layout};

use super::tensor::{Column, DType};

const MAGIC: &[u8] = b"\x93NUMPY";
/// The longest header read, as NumPy's own `max_header_size`: a plain
/// array's header is under 200 bytes, and the header parser slows with
/// every bracket of a long one.
const MAX_HEADER_BYTES: usize = 10_000;
/// Bracket nesting a header may have: a structured dtype's list of tuples
/// needs three; this leaves room.
const MAX_HEADER_NESTING: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Little,
    Big,
}

/// What the header says, plus where the payload starts.
#[derive(Debug)]
pub struct NpyLayout {
    pub dtype: DType,
    pub order: ByteOrder,
    pub fortran: bool,
    pub shape: Vec<usize>,
    pub data_offset: usize,
    pub data_len: usize,
}

impl NpyLayout {
    /// Whether the payload can be used exactly as stored.
    pub fn is_native(&self) -> bool {
        let native_order = cfg!(target_endian = "little") == (self.order == ByteOrder::Little);
        (native_order || self.dtype.size() == 1) && (!self.fortran || self.shape.len() <= 1)
    }
}

pub fn looks_like_npy(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Parses and checks the header of an `.npy` image. The error text is the
/// message part only; the caller adds the file and the array.
pub fn parse(bytes: &[u8]) -> Result<NpyLayout, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    if !bytes.starts_with(MAGIC) {
        return Err("not an .npy file: the magic bytes \\x93NUMPY are missing".into());
    }
    let (header_len, header_start) = match bytes.get(6) {
        Some(1) if bytes.len() >= 10 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        Some(2 | 3) if bytes.len() >= 12 => {
            let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (len as usize, 12)
        }
        Some(major @ 1..=3) => {
            return Err(format!(
                "truncated header: {} bytes are too few for a version {major} header",
                bytes.len()
            ));
        }
        Some(major) => return Err(format!("unsupported .npy format version {major}")),
        None => return Err("truncated header".into()),
    };
    let data_offset = header_start + header_len;
    if data_offset > bytes.len() {
        return Err(format!(
            "truncated header: it declares {header_len} bytes but the file has {}",
            bytes.len() - header_start
        ));
    }
    if header_len > MAX_HEADER_BYTES {
        return Err(format!(
            "unparsable header: {header_len} bytes, more than the {MAX_HEADER_BYTES} NumPy itself reads"
        ));
    }
    // NumPy writes a flat dict whose values nest two or three levels at most;
    // the header parser takes time exponential in the nesting depth, so a
    // deeper header is refused before it is parsed.
    let mut depth = 0usize;
    for &byte in &bytes[header_start..data_offset] {
        match byte {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_HEADER_NESTING {
            return Err(format!(
                "unparsable header: brackets nested deeper than {MAX_HEADER_NESTING} levels"
            ));
        }
    }
    let header =
        Header::from_reader(&mut &bytes[..data_offset]).map_err(|e| format!("unparsable header: {e}"))?;
    let (dtype, order) = parse_descr(&header)?;
    let shape = header.shape;
    // Every dimension must be addressable with the others, even when a zero
    // elsewhere makes the array empty: products of trailing axes are taken
    // later (strides, class layouts) and must not overflow.
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d.max(1)))
        .and_then(|n| n.checked_mul(dtype.size()))
        // Array libraries (ndarray among them) address at most isize::MAX bytes.
        .filter(|&bytes| bytes <= isize::MAX as usize)
        .ok_or_else(|| format!("shape {shape:?} of {} is larger than can be addressed", dtype.name()))?;
    let numel: usize = shape.iter().product();
    let data_len = numel * dtype.size();
    let available = bytes.len() - data_offset;
    if available < data_len {
        return Err(format!(
            "truncated payload: shape {shape:?} of {} needs {data_len} bytes, the file holds {available}",
            dtype.name()
        ));
    }
    if available > data_len {
        return Err(format!(
            "{} unexpected bytes after the payload of shape {shape:?} {}",
            available - data_len,
            dtype.name()
        ));
    }
    Ok(NpyLayout { dtype, order, fortran: header.layout == Layout::Fortran, shape, data_offset, data_len })
}

fn parse_descr(header: &Header) -> Result<(DType, ByteOrder), String> {
    let Some(descr) = header.type_descriptor.as_string() else {
        return Err(format!(
            "structured dtype {} is not supported: save a plain numeric array",
            header.type_descriptor
        ));
    };
    let (order_char, code) = match descr.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
        _ => ('|', descr.as_str()),
    };
    let dtype = match code {
        "b1" | "?" => DType::Bool,
        "i1" | "b" => DType::I8,
        "i2" => DType::I16,
        "i4" => DType::I32,
        "i8" => DType::I64,
        "u1" | "B" => DType::U8,
        "u2" => DType::U16,
        "u4" => DType::U32,
        "u8" => DType::U64,
        "f2" | "e" => DType::F16,
        "f4" | "f" => DType::F32,
        "f8" | "d" => DType::F64,
        "O" => {
            return Err("object arrays (dtype=object) are not supported: save a numeric array".into());
        }
        c if c.starts_with('c') => {
            return Err(format!("complex dtype '{descr}' is not supported: save the real part"));
        }
        _ => {
            return Err(format!("dtype '{descr}' is not supported (expected bool, int, uint or float)"));
        }
    };
    let order = if order_char == '>' { ByteOrder::Big } else { ByteOrder::Little };
    Ok((dtype, order))
}

/// Copies a payload into native, C-order owned elements.
pub fn decode(layout: &NpyLayout, payload: &[u8]) -> Column {
    let swap = layout.order == ByteOrder::Big && cfg!(target_endian = "little");
    macro_rules! typed {
        ($t:ty, $variant:ident) => {{
            let mut v: Vec<$t> = bytemuck::pod_collect_to_vec(payload);
            if swap {
                for x in v.iter_mut() {
                    let bytes = bytemuck::bytes_of_mut(x);
                    bytes.reverse();
                }
            }
            Column::$variant(c_order(v, &layout.shape, layout.fortran))
        }};
    }
    match layout.dtype {
        DType::Bool | DType::U8 => Column::U8(c_order(payload.to_vec(), &layout.shape, layout.fortran)),
        DType::I8 => typed!(i8, I8),
        DType::I16 => typed!(i16, I16),
        DType::I32 => typed!(i32, I32),
        DType::I64 => typed!(i64, I64),
        DType::U16 => typed!(u16, U16),
        DType::U32 => typed!(u32, U32),
        DType::U64 => typed!(u64, U64),
        DType::F16 => typed!(f16, F16),
        DType::F32 => typed!(f32, F32),
        DType::F64 => typed!(f64, F64),
    }
}

fn c_order<T: Clone>(data: Vec<T>, shape: &[usize], fortran: bool) -> Vec<T> {
    if !fortran || shape.len() <= 1 {
        return data;
    }
    let view = ArrayView::from_shape(IxDyn(shape).f(), &data)
        .expect("the payload length was checked against the shape");
    view.as_standard_layout().into_owned().into_raw_vec_and_offset().0
}

/// The index of the first boolean byte that is neither 0 nor 1.
pub fn first_invalid_bool(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b > 1)
}
