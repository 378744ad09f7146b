//! Reading input arrays. A spec names a file and, for files that hold
//! several (`.npz`, `.safetensors`, `torch.save` files, JSON objects), a
//! member: `dump.npz:logits`, `run.pt:outputs.logits`. Payloads in native
//! layout (`.npy`, `.safetensors`, the storages of `torch.save` files) are
//! memory-mapped and read in place; everything else is decoded once into
//! an owned, native, C-order buffer. Only regular files are read, never
//! more than they hold or their headers declare (see docs/reliability.md).

mod archive;
mod file;
mod guard;
mod json;
mod names;
mod npy;
mod safetensors;
mod sources;
mod tensor;
mod torch;
mod view;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, Origin, Result};
use file::Opened;
pub use file::{CHANGED, MAX_TEXT_BYTES, size_text};
pub use guard::exit_on_truncated_input;
pub use names::{holdings, listed};
pub use sources::{Sources, expand};
use tensor::Storage;
pub use tensor::{Column, DType, Element, NotAnIndex, Tensor, Values, shape_text};

/// A file and, optionally, the member to take from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub path: PathBuf,
    pub key: Option<String>,
}

impl Spec {
    /// Splits `file:key` at the last colon, unless the whole text names an
    /// existing file.
    pub fn parse(text: &str) -> Spec {
        if !Path::new(text).exists()
            && let Some((path, key)) = text.rsplit_once(':')
            && !path.is_empty()
            && !key.is_empty()
            && !key.contains('/')
        {
            return Spec { path: path.into(), key: Some(key.to_string()) };
        }
        Spec { path: text.into(), key: None }
    }

    pub fn member(path: &Path, key: &str) -> Spec {
        Spec { path: path.to_path_buf(), key: Some(key.to_string()) }
    }

    pub fn text(&self) -> String {
        match &self.key {
            Some(key) => format!("{}:{key}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Npy,
    Npz,
    Json,
    Safetensors,
    Torch,
}

/// The format of an opened file: by its extension, else by its first bytes.
fn format_of(path: &Path, file: &Opened) -> Format {
    let mut buffer = [0u8; 16];
    let len = file.peek(&mut buffer);
    let head = &buffer[..len];
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("npy") => Format::Npy,
        Some("npz") => Format::Npz,
        Some("json") => Format::Json,
        Some("safetensors") => Format::Safetensors,
        Some("pt" | "pth") => Format::Torch,
        _ if npy::looks_like_npy(head) => Format::Npy,
        _ if head.starts_with(b"PK") => {
            let torch =
                archive::open(&file.file, "zip").is_ok_and(|archive| torch::is_torch_archive(&archive));
            if torch { Format::Torch } else { Format::Npz }
        }
        _ if safetensors::looks_like_safetensors(head, file.len) => Format::Safetensors,
        _ if torch::looks_like_pickle(head) => Format::Torch,
        _ => Format::Json,
    }
}

/// Loads the array a spec names, in the given role.
pub fn load(spec: &Spec, role: &str) -> Result<Tensor> {
    let origin = Origin::new(role, spec.text());
    let fail = |message: String| Error::input(&origin, message);
    let file = file::open(&spec.path).map_err(&fail)?;
    match format_of(&spec.path, &file) {
        Format::Npy => {
            if spec.key.is_some() {
                return Err(fail("an .npy file holds one array: drop the ':key'".into()));
            }
            load_npy(file, origin)
        }
        Format::Npz => {
            let key = spec.key.as_deref().unwrap_or(role);
            load_npz_member(file.file, key, origin)
        }
        Format::Json => {
            let text = file.read_text().map_err(&fail)?;
            load_json(json_text(&text).map_err(&fail)?, spec.key.as_deref(), origin)
        }
        format @ (Format::Safetensors | Format::Torch) => {
            let map = guard::map(&file.file, file.len, &origin).map_err(&fail)?;
            let (stored, view) = locate_view(&map, format, spec.key.as_deref(), role).map_err(&fail)?;
            view::tensor_in_map(map, stored, &view, origin)
        }
    }
}

/// Where the tensor `key` (else the one for `role`) is in the image of a
/// whole `.safetensors` or `torch.save` file.
fn locate_view(
    image: &[u8],
    format: Format,
    key: Option<&str>,
    role: &str,
) -> std::result::Result<(view::Stored, view::View), String> {
    match format {
        Format::Safetensors => safetensors::locate(image, key.unwrap_or(role)),
        _ => torch::locate(image, key, role),
    }
}

/// The whole of a text file (a report, a list of class names, JSON truths):
/// a regular file of at most [`MAX_TEXT_BYTES`], read once.
pub fn read_text(path: &Path, origin: &Origin) -> Result<Vec<u8>> {
    let fail = |message: String| Error::input(origin, message);
    file::open(path).map_err(fail)?.read_text().map_err(fail)
}

/// A JSON text as the parser takes it: without the UTF-8 byte-order mark
/// some editors and PowerShell write first, which JSON does not allow but
/// which says nothing about the content. A UTF-16 or UTF-32 text (its
/// byte-order mark) is refused with how to convert it.
pub fn json_text(text: &[u8]) -> std::result::Result<&[u8], String> {
    if let Some(rest) = text.strip_prefix(b"\xEF\xBB\xBF") {
        return Ok(rest);
    }
    let utf16 = text.starts_with(b"\xFF\xFE") || text.starts_with(b"\xFE\xFF");
    let utf32 = text.starts_with(b"\x00\x00\xFE\xFF");
    if utf16 || utf32 {
        let encoding = if utf32 || text.starts_with(b"\xFF\xFE\x00\x00") { "UTF-32" } else { "UTF-16" };
        return Err(format!(
            "starts with a {encoding} byte-order mark: JSON must be UTF-8; convert it with \
             iconv -f {encoding} -t UTF-8, or write it with encoding='utf-8'"
        ));
    }
    Ok(text)
}

/// Why an existing path cannot be read as an input, if it cannot: it is not
/// a regular file. `None` for a regular file, and for a path that does not
/// exist.
pub fn unreadable(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    (!meta.is_file()).then(|| file::not_regular(meta.file_type()))
}

/// The members a bundle (an `.npz` file or a JSON object) holds.
pub fn bundle_members(path: &Path) -> Result<Vec<String>> {
    let origin = Origin::new("bundle", path.display().to_string());
    let fail = |message: String| Error::input(&origin, message);
    let file = file::open(path).map_err(&fail)?;
    match format_of(path, &file) {
        format @ (Format::Safetensors | Format::Torch) => {
            let map = guard::map(&file.file, file.len, &origin).map_err(&fail)?;
            let names = if format == Format::Torch { torch::names(&map) } else { safetensors::names(&map) };
            names.map_err(&fail)
        }
        Format::Npz => {
            let archive = archive::open(file.file, ".npz").map_err(&fail)?;
            Ok(archive.file_names().map(|n| n.trim_end_matches(".npy").to_string()).collect())
        }
        Format::Json => {
            let bytes = file.read_text().map_err(&fail)?;
            let text = json_text(&bytes).map_err(&fail)?;
            if !json::is_object(text) {
                return Err(fail("a bundle must be a JSON object of named arrays".into()));
            }
            Ok(json::members(text).map_err(&fail)?.into_keys().collect())
        }
        Format::Npy => Err(fail(
            "an .npy file holds one array; pass it with --logits/--targets, or bundle arrays with np.savez"
                .into(),
        )),
    }
}

fn load_npy(file: Opened, origin: Origin) -> Result<Tensor> {
    let fail = |message: String| Error::input(&origin, message);
    let total = usize::try_from(file.len).map_err(|_| fail("is larger than can be addressed".into()))?;
    let mut head = vec![0u8; total.min(npy::MAX_PREFIX_BYTES)];
    let got = file.peek(&mut head);
    if got < head.len() {
        return Err(fail(format!("{CHANGED}: it shrank to {got} bytes")));
    }
    let layout = npy::parse_header(&head, Some(total)).map_err(&fail)?;
    if layout.is_native() && layout.data_offset.is_multiple_of(layout.dtype.size()) {
        let map = guard::map(&file.file, file.len, &origin).map_err(&fail)?;
        let storage = Storage::Mapped { offset: layout.data_offset, len: layout.data_len, map };
        return Tensor::checked(origin, layout.dtype, layout.shape, storage);
    }
    // Any other layout is decoded as it is read, through the page cache
    // rather than a map: the process then holds the decoded array only.
    let mut reader = &file.file;
    reader.seek(SeekFrom::Start(layout.data_offset as u64)).map_err(|e| fail(format!("cannot read: {e}")))?;
    let column = npy::decode(&layout, reader.take(layout.data_len as u64)).map_err(|e| match e {
        npy::DecodeError::Short { got } => {
            fail(format!("{CHANGED}: the payload ended after {got} of its {} bytes", layout.data_len))
        }
        e => fail(e.message(&layout, "the file holds")),
    })?;
    owned_tensor(origin, &layout, column)
}

/// A tensor of decoded elements, booleans checked.
fn owned_tensor(origin: Origin, layout: &npy::NpyLayout, column: Column) -> Result<Tensor> {
    Tensor::checked(origin, layout.dtype, layout.shape.clone(), Storage::Owned(column))
}

fn load_npz_member<R: Read + Seek>(mut reader: R, key: &str, origin: Origin) -> Result<Tensor> {
    let fail = |message: String| Error::input(&origin, message);
    let archive_len = reader.seek(SeekFrom::End(0)).map_err(|e| fail(format!("cannot read: {e}")))?;
    let mut archive = archive::open(reader, ".npz").map_err(&fail)?;
    let name = [format!("{key}.npy"), key.to_string()]
        .into_iter()
        .find(|name| archive.index_for_name(name).is_some());
    let Some(name) = name else {
        let names: Vec<&str> = archive.file_names().map(|n| n.trim_end_matches(".npy")).collect();
        return Err(fail(format!("no array named '{key}' ({})", holdings(key, &names))));
    };
    let mut member = archive.by_name(&name).map_err(|e| fail(format!("member '{name}': {e}")))?;
    let fail = |message: String| Error::input(&origin, format!("member '{name}': {message}"));
    // What the archive says the member holds, and the most its bytes in the
    // archive could inflate to: both only bound what is read below.
    let declared = member.size();
    let possible = member.compressed_size().min(archive_len).saturating_mul(archive::MAX_DEFLATE_RATIO);
    let mut head = Vec::with_capacity(npy::MAX_PREFIX_BYTES);
    let got = (&mut member)
        .take(npy::MAX_PREFIX_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(|e| fail(e.to_string()))?;
    // A member shorter than the prefix was read whole.
    let total = (got < npy::MAX_PREFIX_BYTES).then_some(got);
    let layout = npy::parse_header(&head, total).map_err(&fail)?;
    let needed = (layout.data_offset + layout.data_len) as u64;
    if total.is_none() {
        // Checked before the elements are allocated: a header may claim any
        // shape, the archive holds what it holds.
        let holds = |bytes: u64| bytes.saturating_sub(layout.data_offset as u64) as usize;
        layout.check_payload(holds(declared), "the member holds").map_err(&fail)?;
        if head.len() as u64 > needed {
            layout.check_payload(holds(head.len() as u64), "the member holds").map_err(&fail)?;
        }
        if needed > possible {
            return Err(fail(format!(
                "its header's shape {:?} of {} needs {needed} bytes, more than its {} bytes in the archive can hold",
                layout.shape,
                layout.dtype.name(),
                member.compressed_size()
            )));
        }
    }
    // The payload: what the prefix holds past the header, then the rest of
    // the member, never more than the header declares.
    let in_head = &head[layout.data_offset.min(head.len())..];
    let rest = (layout.data_len as u64).saturating_sub(in_head.len() as u64);
    let payload = in_head.chain((&mut member).take(rest));
    let column = npy::decode(&layout, payload).map_err(|e| fail(e.message(&layout, "the member holds")))?;
    owned_tensor(origin, &layout, column)
}

/// Decodes a whole `.npy` image held in memory into an owned tensor.
fn decode_npy_image(bytes: &[u8], origin: Origin) -> Result<Tensor> {
    let layout = npy::parse(bytes).map_err(|message| Error::input(&origin, message))?;
    let payload = &bytes[layout.data_offset..];
    let column = npy::decode(&layout, payload)
        .map_err(|e| Error::input(&origin, e.message(&layout, "the file holds")))?;
    owned_tensor(origin, &layout, column)
}

/// The container of an in-memory file image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Npy,
    Npz,
    Json,
    Safetensors,
    /// A `torch.save` archive.
    Torch,
}

/// Reads an array from the bytes of a whole file: the member `key` of an
/// `.npz` or JSON object (the member named `role` when `key` is `None`), or
/// the only array of an `.npy` or JSON array. The same checks and messages
/// as for files; every element is copied.
pub fn from_bytes(bytes: &[u8], container: Container, key: Option<&str>, role: &str) -> Result<Tensor> {
    let origin = Origin::new(role, "<bytes>");
    match container {
        Container::Npy => decode_npy_image(bytes, origin),
        Container::Npz => load_npz_member(std::io::Cursor::new(bytes), key.unwrap_or(role), origin),
        Container::Json => {
            let text = json_text(bytes).map_err(|message| Error::input(&origin, message))?;
            load_json(text, key, origin)
        }
        Container::Safetensors | Container::Torch => {
            let format = if container == Container::Torch { Format::Torch } else { Format::Safetensors };
            let (stored, view) =
                locate_view(bytes, format, key, role).map_err(|message| Error::input(&origin, message))?;
            view::tensor_in_image(bytes, stored, &view, origin)
        }
    }
}

fn load_json(text: &[u8], key: Option<&str>, origin: Origin) -> Result<Tensor> {
    let fail = |message: String| Error::input(&origin, message);
    let array = if json::is_object(text) {
        let members = json::members(text).map_err(&fail)?;
        let key = key.unwrap_or(&origin.role);
        let Some(raw) = members.get(key) else {
            let names: Vec<&str> = members.keys().map(String::as_str).collect();
            return Err(fail(format!("no array named '{key}' ({})", holdings(key, &names))));
        };
        json::parse_array(raw.get().as_bytes()).map_err(|e| fail(format!("member '{key}': {e}")))?
    } else {
        if key.is_some() {
            return Err(fail(
                "the JSON document is an array, not an object of named arrays: drop the ':key'".into(),
            ));
        }
        json::parse_array(text).map_err(&fail)?
    };
    Ok(Tensor::new(origin, array.dtype, array.shape, Storage::Owned(array.column)))
}
