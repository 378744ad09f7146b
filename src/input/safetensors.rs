//! `.safetensors` files: an 8-byte little-endian header length, a JSON
//! header giving each tensor's dtype, shape and byte range, then the bytes,
//! little-endian and in C order. The `safetensors` crate parses and checks
//! the header over the whole file's bytes (a memory map, or a buffer).

use std::collections::BTreeMap;

use safetensors::tensor::TensorInfo;
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use super::names::holdings;
use super::tensor::DType;
use super::view::{Stored, View};

/// The bytes before the header: its length.
const LENGTH_BYTES: usize = 8;

/// Whether a file's first bytes look like a safetensors file: a header
/// length within the file, then a JSON object.
pub fn looks_like_safetensors(head: &[u8], file_len: u64) -> bool {
    match head.first_chunk::<LENGTH_BYTES>() {
        Some(length) => head.get(LENGTH_BYTES) == Some(&b'{') && u64::from_le_bytes(*length) < file_len,
        None => false,
    }
}

/// The tensors' names, in the order their bytes are stored.
pub fn names(bytes: &[u8]) -> Result<Vec<String>, String> {
    Ok(stored_names(&parse(bytes)?))
}

/// Where the tensor `key` lies in a file's `bytes`, and how its elements
/// sit there. The error is the message part.
pub fn locate(bytes: &[u8], key: &str) -> Result<(Stored, View), String> {
    let file = parse(bytes)?;
    let Ok(tensor) = file.tensor(key) else {
        return Err(format!("no array named '{key}' ({})", holdings(key, &stored_names(&file))));
    };
    let member = |message: String| format!("member '{key}': {message}");
    let dtype = element_type(tensor.dtype()).map_err(member)?;
    let data = tensor.data();
    let start = data.as_ptr() as usize - bytes.as_ptr() as usize;
    let view = View::contiguous(dtype, tensor.shape().to_vec());
    view.check_fits(data.len()).map_err(member)?;
    Ok((Stored::Region(start..start + data.len()), view))
}

fn parse(bytes: &[u8]) -> Result<SafeTensors<'_>, String> {
    SafeTensors::deserialize(bytes).map_err(|e| describe(e, bytes))
}

fn stored_names(file: &SafeTensors<'_>) -> Vec<String> {
    let mut named: Vec<(usize, &str)> =
        file.iter().map(|(name, tensor)| (tensor.data().as_ptr() as usize, name)).collect();
    named.sort();
    named.into_iter().map(|(_, name)| name.to_string()).collect()
}

/// The dtypes losscope reads, and why it reads no other.
fn element_type(dtype: Dtype) -> Result<DType, String> {
    Ok(match dtype {
        Dtype::BOOL => DType::Bool,
        Dtype::U8 => DType::U8,
        Dtype::I8 => DType::I8,
        Dtype::I16 => DType::I16,
        Dtype::U16 => DType::U16,
        Dtype::I32 => DType::I32,
        Dtype::U32 => DType::U32,
        Dtype::I64 => DType::I64,
        Dtype::U64 => DType::U64,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        Dtype::C64 => return Err("dtype C64 (complex) is not supported: save the real part".into()),
        other => {
            return Err(format!(
                "dtype {other} is not supported (expected bool, int, uint or float of 16 bits or more): \
                 save it as float32, bfloat16 or float16"
            ));
        }
    })
}

/// The message for a file the crate refuses.
fn describe(error: SafeTensorError, bytes: &[u8]) -> String {
    let declared = bytes.first_chunk::<LENGTH_BYTES>().map(|length| u64::from_le_bytes(*length));
    match error {
        SafeTensorError::HeaderTooSmall => {
            "not a .safetensors file: shorter than the 8 bytes that give its header's length".into()
        }
        SafeTensorError::HeaderTooLarge | SafeTensorError::InvalidHeaderLength => format!(
            "not a readable .safetensors file: its header length {} does not fit the {} bytes that follow",
            declared.unwrap_or(0),
            bytes.len().saturating_sub(LENGTH_BYTES)
        ),
        SafeTensorError::InvalidHeader(e) => format!("unparsable header: not UTF-8 text ({e})"),
        SafeTensorError::InvalidHeaderDeserialization(e) => format!("unparsable header: {e}"),
        SafeTensorError::InvalidOffset(name) => {
            format!("member '{name}': its data offsets do not start where the previous tensor's end")
        }
        SafeTensorError::ValidationOverflow => "a tensor's shape is larger than can be addressed".into(),
        SafeTensorError::MetadataIncompleteBuffer => format!(
            "the tensors' data offsets do not end where the file does ({} bytes after the header): \
             a truncated or padded file",
            bytes.len().saturating_sub(LENGTH_BYTES + declared.unwrap_or(0) as usize)
        ),
        SafeTensorError::TensorInvalidInfo | SafeTensorError::MisalignedSlice => {
            match mismatched_tensor(bytes, declared.unwrap_or(0) as usize) {
                Some(name) => format!("member '{name}': its data offsets do not hold its shape of its dtype"),
                None => "a tensor's data offsets do not hold its shape of its dtype".into(),
            }
        }
        other => format!("not a readable .safetensors file: {other}"),
    }
}

/// The first tensor whose byte range is not the size its shape and dtype
/// need, which the crate's error leaves unnamed.
fn mismatched_tensor(bytes: &[u8], header_len: usize) -> Option<String> {
    let header = bytes.get(LENGTH_BYTES..LENGTH_BYTES.checked_add(header_len)?)?;
    let entries: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header).ok()?;
    let mut infos: Vec<(String, TensorInfo)> = entries
        .into_iter()
        .filter_map(|(name, value)| Some((name, serde_json::from_value(value).ok()?)))
        .collect();
    infos.sort_by_key(|(_, info)| info.data_offsets);
    infos.into_iter().find_map(|(name, info)| {
        let (start, end) = info.data_offsets;
        let bits = info.shape.iter().try_fold(info.dtype.bitsize(), |acc, &d| acc.checked_mul(d));
        let fits =
            bits.is_some_and(|bits| bits.is_multiple_of(8) && Some(bits / 8) == end.checked_sub(start));
        (!fits).then_some(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file image: the header's length, the header, the data.
    fn image(header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    const TWO: &str = r#"{"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]}}"#;

    #[test]
    fn tensors_are_found_by_name_and_listed_in_stored_order() {
        let bytes = image(TWO, &[0u8; 12]);
        assert!(looks_like_safetensors(&bytes, bytes.len() as u64));
        assert_eq!(names(&bytes).unwrap(), ["b", "a"]);
        let (Stored::Region(region), view) = locate(&bytes, "a").unwrap() else { panic!("in place") };
        assert_eq!(region, 8 + TWO.len() + 8..8 + TWO.len() + 12);
        assert_eq!((view.dtype, view.shape), (DType::BF16, vec![1, 2]));
        assert_eq!(locate(&bytes, "c").err().unwrap(), "no array named 'c' (it holds: b, a)");
    }

    #[test]
    fn what_is_not_read_is_named() {
        let float8 = image(r#"{"x":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#, &[0, 0]);
        let error = locate(&float8, "x").err().unwrap();
        assert!(error.starts_with("member 'x': dtype F8_E4M3 is not supported"), "{error}");
        let short = image(r#"{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, &[0; 8]);
        let error = locate(&short, "x").err().unwrap();
        assert_eq!(error, "member 'x': its data offsets do not hold its shape of its dtype");
        let truncated = image(TWO, &[0u8; 10]);
        assert!(locate(&truncated, "a").err().unwrap().contains("a truncated or padded file"));
        assert!(!looks_like_safetensors(b"\xff\xff\xff\xff\xff\xff\xff\x7f{", 100));
    }
}
