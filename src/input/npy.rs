//! `.npy` parsing: the header is checked against the bytes that are really
//! there before anything is allocated, the dtype is taken from the header,
//! native C-order payloads are used in place, and any other payload is
//! decoded once, as it is read, into the buffer the array keeps.

use std::io::Read;

use bytemuck::Pod;
use ndarray_npy::npy::header::{Header, Layout};

use super::tensor::{Column, DType, Owned, with_element_type};

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

/// The most bytes a header can take, preamble included: enough to read it
/// from a file or a stream before anything else.
pub const MAX_PREFIX_BYTES: usize = 12 + MAX_HEADER_BYTES;

/// Parses and checks the header of an `.npy` image held whole in `bytes`.
/// The error text is the message part only; the caller adds the file and
/// the array.
pub fn parse(bytes: &[u8]) -> Result<NpyLayout, String> {
    parse_header(bytes, Some(bytes.len()))
}

/// Parses and checks the header at the start of `head`, the first bytes of
/// an image of `total` bytes (at least [`MAX_PREFIX_BYTES`] of them, or all
/// of them). With `total` unknown (a stream), the payload's length is left
/// for the reader to check.
pub fn parse_header(head: &[u8], total: Option<usize>) -> Result<NpyLayout, String> {
    if head.is_empty() {
        return Err("the file is empty".into());
    }
    if !head.starts_with(MAGIC) {
        return Err("not an .npy file: the magic bytes \\x93NUMPY are missing".into());
    }
    let (header_len, header_start) = match head.get(6) {
        Some(1) if head.len() >= 10 => (u16::from_le_bytes([head[8], head[9]]) as usize, 10),
        Some(2 | 3) if head.len() >= 12 => {
            let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
            (len as usize, 12)
        }
        Some(major @ 1..=3) => {
            return Err(format!(
                "truncated header: {} bytes are too few for a version {major} header",
                head.len()
            ));
        }
        Some(major) => return Err(format!("unsupported .npy format version {major}")),
        None => return Err("truncated header".into()),
    };
    let data_offset = header_start + header_len;
    let truncated = |has: usize| {
        format!("truncated header: it declares {header_len} bytes but the file has {}", has - header_start)
    };
    if let Some(total) = total
        && data_offset > total
    {
        return Err(truncated(total));
    }
    if header_len > MAX_HEADER_BYTES {
        return Err(format!(
            "unparsable header: {header_len} bytes, more than the {MAX_HEADER_BYTES} NumPy itself reads"
        ));
    }
    // The caller passes at least MAX_PREFIX_BYTES, or every byte there is.
    if data_offset > head.len() {
        return Err(truncated(head.len()));
    }
    // NumPy writes a flat dict whose values nest two or three levels at most;
    // the header parser takes time exponential in the nesting depth, so a
    // deeper header is refused before it is parsed.
    let mut depth = 0usize;
    for &byte in &head[header_start..data_offset] {
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
        Header::from_reader(&mut &head[..data_offset]).map_err(|e| format!("unparsable header: {e}"))?;
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
    let layout =
        NpyLayout { dtype, order, fortran: header.layout == Layout::Fortran, shape, data_offset, data_len };
    if let Some(total) = total {
        layout.check_payload(total - data_offset, "the file holds")?;
    }
    Ok(layout)
}

impl NpyLayout {
    /// Checks that `available` payload bytes (`holder` says where: "the file
    /// holds") are exactly what the shape needs.
    pub fn check_payload(&self, available: usize, holder: &str) -> Result<(), String> {
        let (shape, name, data_len) = (&self.shape, self.dtype.name(), self.data_len);
        if available < data_len {
            return Err(format!(
                "truncated payload: shape {shape:?} of {name} needs {data_len} bytes, {holder} {available}"
            ));
        }
        if available > data_len {
            return Err(format!(
                "{} unexpected bytes after the payload of shape {shape:?} {name}",
                available - data_len
            ));
        }
        Ok(())
    }
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
        // ml_dtypes' bfloat16 is saved as an anonymous two-byte void: the
        // header says nothing that tells it from any other two bytes.
        "V2" => {
            return Err(format!(
                "dtype '{descr}' is untyped 2-byte data, as NumPy saves bfloat16 (ml_dtypes), and nothing \
                 in the file says it is bfloat16: save t.float() (or a.astype(np.float32)), or keep \
                 bfloat16 in a .safetensors or torch.save file"
            ));
        }
        c if c.starts_with('V') => {
            return Err(format!("dtype '{descr}' is untyped (void) data: save a plain numeric array"));
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

/// Why a payload could not be decoded.
#[derive(Debug)]
pub enum DecodeError {
    /// The payload ended after `got` of its bytes.
    Short { got: usize },
    /// Reading it failed.
    Read(std::io::Error),
    /// Its elements could not be allocated.
    Memory,
}

impl DecodeError {
    /// The message part, for a payload that was expected to be whole.
    pub fn message(&self, layout: &NpyLayout, holder: &str) -> String {
        match self {
            DecodeError::Short { got } => format!(
                "truncated payload: shape {:?} of {} needs {} bytes, {holder} {got}",
                layout.shape,
                layout.dtype.name(),
                layout.data_len
            ),
            DecodeError::Read(e) => format!("cannot read: {e}"),
            DecodeError::Memory => format!(
                "cannot allocate {} bytes for shape {:?} of {}: not enough memory",
                layout.data_len,
                layout.shape,
                layout.dtype.name()
            ),
        }
    }
}

/// Bytes read at a time from a Fortran-order payload.
const BLOCK_BYTES: usize = 1 << 16;

/// Reads the payload of `layout` from `payload` into native, C-order owned
/// elements. Exactly `data_len` bytes are read, never more, and each lands
/// once in the one buffer the result is made of, whatever the byte order
/// and memory order: the elements are never held twice.
pub fn decode(layout: &NpyLayout, payload: impl Read) -> Result<Column, DecodeError> {
    Ok(with_element_type!(layout.dtype, T => T::into_column(decode_typed::<T>(layout, payload)?)))
}

fn decode_typed<T: Pod>(layout: &NpyLayout, mut payload: impl Read) -> Result<Vec<T>, DecodeError> {
    let numel: usize = layout.shape.iter().product();
    let mut out: Vec<T> = Vec::new();
    out.try_reserve_exact(numel).map_err(|_| DecodeError::Memory)?;
    out.resize(numel, T::zeroed());
    let swap = layout.order == ByteOrder::Big && cfg!(target_endian = "little") && size_of::<T>() > 1;
    if !layout.fortran || layout.shape.len() <= 1 {
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut out);
        let got = fill(&mut payload, bytes).map_err(DecodeError::Read)?;
        if got < bytes.len() {
            return Err(DecodeError::Short { got });
        }
        if swap {
            for x in out.iter_mut() {
                bytemuck::bytes_of_mut(x).reverse();
            }
        }
        return Ok(out);
    }
    // Fortran order: the first axis varies fastest. The elements are read in
    // blocks and each is put at its C-order place, found by walking the
    // multi-index.
    let shape = &layout.shape;
    let mut strides = vec![1usize; shape.len()];
    for axis in (0..shape.len() - 1).rev() {
        strides[axis] = strides[axis + 1] * shape[axis + 1];
    }
    let mut index = vec![0usize; shape.len()];
    let mut at = 0usize;
    let size = size_of::<T>();
    let mut block = vec![0u8; BLOCK_BYTES / size * size];
    let mut done = 0usize;
    while done < numel {
        let want = ((numel - done) * size).min(block.len());
        let got = fill(&mut payload, &mut block[..want]).map_err(DecodeError::Read)?;
        if got < want {
            return Err(DecodeError::Short { got: done * size + got });
        }
        for element in block[..want].chunks_exact(size) {
            let mut value: T = bytemuck::pod_read_unaligned(element);
            if swap {
                bytemuck::bytes_of_mut(&mut value).reverse();
            }
            out[at] = value;
            for axis in 0..shape.len() {
                index[axis] += 1;
                at += strides[axis];
                if index[axis] < shape[axis] {
                    break;
                }
                at -= shape[axis] * strides[axis];
                index[axis] = 0;
            }
        }
        done += want / size;
    }
    Ok(out)
}

/// Reads into `buf` until it is full or the reader ends; returns the bytes read.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
