//! Reading input arrays. A spec names a file and, for `.npz` files and JSON
//! objects, a member: `dump.npz:logits`. `.npy` payloads in native layout are
//! memory-mapped and read in place; everything else is decoded once into an
//! owned, native, C-order buffer.

mod json;
mod npy;
mod sources;
mod tensor;

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use crate::error::{Error, Origin, Result};
pub use sources::Sources;
use tensor::Storage;
pub use tensor::{Column, DType, Element, Tensor, Values, shape_text};

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
}

fn format_of(path: &Path, head: &[u8]) -> Format {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("npy") => Format::Npy,
        Some("npz") => Format::Npz,
        Some("json") => Format::Json,
        _ if npy::looks_like_npy(head) => Format::Npy,
        _ if head.starts_with(b"PK") => Format::Npz,
        _ => Format::Json,
    }
}

/// Loads the array a spec names, in the given role.
pub fn load(spec: &Spec, role: &str) -> Result<Tensor> {
    let origin = Origin::new(role, spec.text());
    let fail = |message: String| Error::input(&origin, message);
    let file = open(&spec.path).map_err(&fail)?;
    let mut head = [0u8; 8];
    let head_len = file.peek(&mut head);
    match format_of(&spec.path, &head[..head_len]) {
        Format::Npy => {
            if spec.key.is_some() {
                return Err(fail("an .npy file holds one array: drop the ':key'".into()));
            }
            load_npy(file.into_file(), origin)
        }
        Format::Npz => {
            let key = spec.key.as_deref().unwrap_or(role);
            load_npz_member(file.into_file(), key, origin)
        }
        Format::Json => {
            let text = file.read_all().map_err(&fail)?;
            load_json(&text, spec.key.as_deref(), origin)
        }
    }
}

/// The members a bundle (an `.npz` file or a JSON object) holds.
pub fn bundle_members(path: &Path) -> Result<Vec<String>> {
    let origin = Origin::new("bundle", path.display().to_string());
    let fail = |message: String| Error::input(&origin, message);
    let file = open(path).map_err(&fail)?;
    let mut head = [0u8; 8];
    let head_len = file.peek(&mut head);
    match format_of(path, &head[..head_len]) {
        Format::Npz => {
            let archive = zip_archive(file.into_file()).map_err(&fail)?;
            Ok(archive.file_names().map(|n| n.trim_end_matches(".npy").to_string()).collect())
        }
        Format::Json => {
            let text = file.read_all().map_err(&fail)?;
            if !json::is_object(&text) {
                return Err(fail("a bundle must be a JSON object of named arrays".into()));
            }
            Ok(json::members(&text).map_err(&fail)?.into_keys().collect())
        }
        Format::Npy => Err(fail(
            "an .npy file holds one array; pass it with --logits/--targets, or bundle arrays with np.savez"
                .into(),
        )),
    }
}

/// An opened input file, with the checks every format needs first.
struct Opened {
    file: File,
    len: u64,
}

fn open(path: &Path) -> std::result::Result<Opened, String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        _ => format!("cannot read: {e}"),
    })?;
    if meta.is_dir() {
        return Err("is a directory, not a file".into());
    }
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    if meta.len() == 0 {
        return Err("the file is empty".into());
    }
    Ok(Opened { file, len: meta.len() })
}

impl Opened {
    fn peek(&self, buf: &mut [u8]) -> usize {
        use std::os::unix::fs::FileExt;
        self.file.read_at(buf, 0).unwrap_or(0)
    }

    fn read_all(mut self) -> std::result::Result<Vec<u8>, String> {
        let mut text = Vec::with_capacity(self.len as usize);
        self.file.read_to_end(&mut text).map_err(|e| format!("cannot read: {e}"))?;
        Ok(text)
    }

    fn into_file(self) -> File {
        self.file
    }
}

fn load_npy(file: File, origin: Origin) -> Result<Tensor> {
    let fail = |message: String| Error::input(&origin, message);
    // SAFETY: the map is read-only and private to this process; as with every
    // memory-mapped reader, the file must not be truncated while it is read.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| fail(format!("cannot map: {e}")))?;
    #[cfg(unix)]
    let _ = map.advise(memmap2::Advice::Sequential);
    let layout = npy::parse(&map).map_err(&fail)?;
    if layout.dtype == DType::Bool {
        check_bools(&map[layout.data_offset..], &layout.shape, &origin)?;
    }
    let aligned = (map.as_ptr() as usize + layout.data_offset).is_multiple_of(layout.dtype.size());
    if layout.is_native() && aligned {
        let storage = Storage::Mapped { offset: layout.data_offset, len: layout.data_len, map };
        return Ok(Tensor::new(origin, layout.dtype, layout.shape, storage));
    }
    let column = npy::decode(&layout, &map[layout.data_offset..]);
    Ok(Tensor::new(origin, layout.dtype, layout.shape, Storage::Owned(column)))
}

fn zip_archive<R: Read + Seek>(reader: R) -> std::result::Result<zip::ZipArchive<R>, String> {
    zip::ZipArchive::new(reader).map_err(|e| format!("not a readable .npz (zip) archive: {e}"))
}

fn load_npz_member<R: Read + Seek>(reader: R, key: &str, origin: Origin) -> Result<Tensor> {
    let fail = |message: String| Error::input(&origin, message);
    let mut archive = zip_archive(reader).map_err(&fail)?;
    let name = [format!("{key}.npy"), key.to_string()]
        .into_iter()
        .find(|name| archive.index_for_name(name).is_some());
    let Some(name) = name else {
        let names: Vec<String> =
            archive.file_names().map(|n| n.trim_end_matches(".npy").to_string()).collect();
        return Err(fail(format!("no array named '{key}' (it holds: {})", names.join(", "))));
    };
    let mut member = archive.by_name(&name).map_err(|e| fail(format!("member '{name}': {e}")))?;
    // The declared size is only a hint and may lie; reserve a little and let
    // the buffer grow with the bytes that really arrive.
    let mut bytes = Vec::with_capacity(member.size().min(1 << 22) as usize);
    member.read_to_end(&mut bytes).map_err(|e| fail(format!("member '{name}': {e}")))?;
    decode_npy_image(&bytes, origin, Some(&name))
}

/// Decodes a whole `.npy` image held in memory into an owned tensor.
fn decode_npy_image(bytes: &[u8], origin: Origin, member: Option<&str>) -> Result<Tensor> {
    let fail = |message: String| match member {
        Some(name) => Error::input(&origin, format!("member '{name}': {message}")),
        None => Error::input(&origin, message),
    };
    let layout = npy::parse(bytes).map_err(fail)?;
    if layout.dtype == DType::Bool {
        check_bools(&bytes[layout.data_offset..], &layout.shape, &origin)?;
    }
    let column = npy::decode(&layout, &bytes[layout.data_offset..]);
    Ok(Tensor::new(origin, layout.dtype, layout.shape, Storage::Owned(column)))
}

/// The container of an in-memory file image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Npy,
    Npz,
    Json,
}

/// Reads an array from the bytes of a whole file: the member `key` of an
/// `.npz` or JSON object (the member named `role` when `key` is `None`), or
/// the only array of an `.npy` or JSON array. The same checks and messages
/// as for files; every element is copied.
pub fn from_bytes(bytes: &[u8], container: Container, key: Option<&str>, role: &str) -> Result<Tensor> {
    let origin = Origin::new(role, "<bytes>");
    match container {
        Container::Npy => decode_npy_image(bytes, origin, None),
        Container::Npz => load_npz_member(std::io::Cursor::new(bytes), key.unwrap_or(role), origin),
        Container::Json => load_json(bytes, key, origin),
    }
}

fn load_json(text: &[u8], key: Option<&str>, origin: Origin) -> Result<Tensor> {
    let fail = |message: String| Error::input(&origin, message);
    let array = if json::is_object(text) {
        let members = json::members(text).map_err(&fail)?;
        let key = key.unwrap_or(&origin.role);
        let Some(raw) = members.get(key) else {
            let names: Vec<&str> = members.keys().map(String::as_str).collect();
            return Err(fail(format!("no array named '{key}' (it holds: {})", names.join(", "))));
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

fn check_bools(payload: &[u8], shape: &[usize], origin: &Origin) -> Result<()> {
    match npy::first_invalid_bool(payload) {
        Some(i) => Err(Error::input(
            origin,
            format!(
                "bool element {} holds byte {}, not 0 or 1",
                crate::error::index_in(shape, i),
                payload[i]
            ),
        )),
        None => Ok(()),
    }
}
