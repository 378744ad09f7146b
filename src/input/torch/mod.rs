//! `torch.save` files, in the zip format of torch 1.6 and later: a folder
//! holding `data.pkl`, the pickle of the saved object, and `data/<key>`,
//! the bytes of each storage the pickle names. Members are stored
//! uncompressed and aligned, so a storage is read in place from the map of
//! the whole file. The pickle is read by the restricted unpickler in
//! `pickle.rs`, which builds tensors and plain containers and runs nothing.
//!
//! A tensor is named by a path through nested dicts, lists and tuples,
//! `a.b.0`; without one, a file holding one tensor gives it, and a dict
//! gives its member named after the role.

mod pickle;

use std::io::{Cursor, Read};

use super::archive;
use super::file::size_text;
use super::names::{holdings, listed};
use super::view::{Stored, View};
use pickle::{Elements, Id, Object, Pickle, TensorRecord, unpickle};

/// The largest `data.pkl` read. A tensor takes about 150 bytes of pickle,
/// so this is some 100,000 tensors; the objects built from a pickle take
/// up to 40 bytes for each of its bytes.
const MAX_PICKLE_BYTES: u64 = 16 << 20;

/// The start of a file written with `_use_new_zipfile_serialization=False`:
/// a pickled magic number.
const LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";

type Archive<'a> = zip::ZipArchive<archive::Budgeted<Cursor<&'a [u8]>>>;

/// Whether a zip archive is laid out as `torch.save` writes one.
pub fn is_torch_archive<R: Read + std::io::Seek>(archive: &zip::ZipArchive<R>) -> bool {
    archive.file_names().any(|name| pickle_prefix(name).is_some())
}

/// Whether a file's first bytes are a pickle's (a legacy `torch.save`
/// file, or a pickle written another way).
pub fn looks_like_pickle(head: &[u8]) -> bool {
    matches!(head, [0x80, 2..=5, ..])
}

/// The folder of `<folder>/data.pkl`.
fn pickle_prefix(name: &str) -> Option<&str> {
    let prefix = name.strip_suffix("data.pkl")?;
    let folder = prefix.strip_suffix('/').unwrap_or(prefix);
    (!folder.contains('/') && (prefix.is_empty() || prefix.ends_with('/'))).then_some(prefix)
}

/// The tensor that `key`, or else `role`, names in the image of a whole
/// `torch.save` file: where its storage is and how it views it. The error
/// is the message part.
pub fn locate(bytes: &[u8], key: Option<&str>, role: &str) -> Result<(Stored, View), String> {
    let (mut archive, prefix) = open(bytes)?;
    let pickle = read_pickle(&mut archive, &prefix)?;
    let (path, tensor) = select(&pickle, key, role)?;
    let member = |message: String| match &path {
        Some(path) => format!("member '{path}': {message}"),
        None => message,
    };
    let dtype = match &tensor.elements {
        Elements::Read(dtype) => *dtype,
        Elements::Unread(name) => {
            let fix = if name.contains("complex") { "save t.real" } else { "save t.float()" };
            let what = path.as_ref().map_or("the tensor".to_string(), |path| format!("member '{path}'"));
            return Err(format!(
                "{what} is a {name} tensor, which losscope does not read (it reads bool, integer and \
                 floating-point tensors): {fix}"
            ));
        }
    };
    let big_endian = big_endian(&mut archive, &prefix)?;
    let view = View {
        dtype,
        shape: tensor.shape.clone(),
        strides: tensor.strides.clone(),
        offset: tensor.offset,
        big_endian,
    };
    let name = format!("{prefix}data/{}", tensor.storage.key);
    let storage = storage_bytes(&mut archive, &name, bytes.len()).map_err(member)?;
    view.check_fits(storage.len()).map_err(|e| member(format!("storage {}: {e}", tensor.storage.key)))?;
    Ok((storage, view))
}

/// The names of the top-level dict of a `torch.save` file, which a bundle
/// looks its arrays up in.
pub fn names(bytes: &[u8]) -> Result<Vec<String>, String> {
    let (mut archive, prefix) = open(bytes)?;
    let pickle = read_pickle(&mut archive, &prefix)?;
    match pickle.get(pickle.root) {
        Object::Dict(entries) => Ok(key_names(&pickle, entries)),
        Object::Tensor(_) => Err(
            "holds one tensor, not a dict of named tensors: pass it with a flag (--logits FILE), or save a \
             bundle with torch.save({'logits': logits, 'targets': targets}, f)"
                .into(),
        ),
        other => Err(format!(
            "holds {}, not a dict of named tensors: save a bundle with torch.save({{'logits': logits, \
             'targets': targets}}, f)",
            other.kind()
        )),
    }
}

/// Opens the archive and finds the folder its pickle is in; explains a
/// file that is not a `torch.save` zip archive.
fn open(bytes: &[u8]) -> Result<(Archive<'_>, String), String> {
    if bytes.starts_with(LEGACY_MAGIC) {
        return Err("is a torch.save file in the legacy format (torch before 1.6, or \
                    _use_new_zipfile_serialization=False), which losscope does not read: load it and save \
                    it again with torch 1.6 or later, torch.save(torch.load(f), f)"
            .into());
    }
    if looks_like_pickle(bytes) {
        return Err("is a bare Python pickle, not a torch.save archive: save tensors with torch.save, e.g. \
                    torch.save({'logits': t}, f)"
            .into());
    }
    if !bytes.starts_with(b"PK") {
        return Err(
            "not a torch.save file: it is neither a zip archive (torch 1.6 and later) nor a pickle".into()
        );
    }
    let archive = archive::open(Cursor::new(bytes), "torch.save")?;
    let Some(prefix) = archive.file_names().find_map(pickle_prefix).map(str::to_string) else {
        return Err("is a zip archive without data.pkl, not a torch.save file".into());
    };
    Ok((archive, prefix))
}

/// Reads and unpickles `data.pkl`.
fn read_pickle(archive: &mut Archive<'_>, prefix: &str) -> Result<Pickle, String> {
    let name = format!("{prefix}data.pkl");
    let bytes = small_member(archive, &name, MAX_PICKLE_BYTES)?;
    unpickle(&bytes).map_err(|e| e.to_string())
}

/// Whether the storages are big-endian, as the member `byteorder` (written
/// since torch 2.1) says; files without it are little-endian.
fn big_endian(archive: &mut Archive<'_>, prefix: &str) -> Result<bool, String> {
    let name = format!("{prefix}byteorder");
    if archive.index_for_name(&name).is_none() {
        return Ok(false);
    }
    match small_member(archive, &name, 16)?.as_slice() {
        b"little" => Ok(false),
        b"big" => Ok(true),
        other => {
            Err(format!("its byteorder member says {:?}, not little or big", String::from_utf8_lossy(other)))
        }
    }
}

/// The whole of a member of at most `limit` bytes.
fn small_member(archive: &mut Archive<'_>, name: &str, limit: u64) -> Result<Vec<u8>, String> {
    let mut member = archive.by_name(name).map_err(|e| format!("{name}: {e}"))?;
    let declared = member.size();
    if declared > limit {
        return Err(format!(
            "{name} is {}, more than the {} losscope reads of it",
            size_text(declared),
            size_text(limit)
        ));
    }
    check_inflation(name, declared, member.compressed_size())?;
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(declared as usize)
        .map_err(|_| format!("cannot allocate {} for {name}", size_text(declared)))?;
    (&mut member).take(declared).read_to_end(&mut bytes).map_err(|e| format!("{name}: {e}"))?;
    if (bytes.len() as u64) < declared {
        return Err(format!(
            "{name} holds {} bytes, less than the {declared} its header declares",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Refuses a member whose declared size its compressed bytes cannot hold.
fn check_inflation(name: &str, declared: u64, compressed: u64) -> Result<(), String> {
    if declared > compressed.saturating_mul(archive::MAX_DEFLATE_RATIO) {
        return Err(format!(
            "{name} declares {declared} bytes, more than its {compressed} bytes in the archive can hold"
        ));
    }
    Ok(())
}

/// Where the bytes of the storage member `name` are: in place when it is
/// stored, as `torch.save` stores it, else inflated into a buffer.
fn storage_bytes(archive: &mut Archive<'_>, name: &str, file_len: usize) -> Result<Stored, String> {
    let Some(index) = archive.index_for_name(name) else {
        return Err(format!("its storage {name} is missing from the archive"));
    };
    let member = archive.by_index_raw(index).map_err(|e| format!("{name}: {e}"))?;
    let declared = member.size();
    if member.compression() == zip::CompressionMethod::Stored {
        let start = member.data_start();
        let end = start
            .checked_add(declared)
            .filter(|&end| end <= file_len as u64 && declared == member.compressed_size());
        return match end {
            Some(end) => Ok(Stored::Region(start as usize..end as usize)),
            None => Err(format!(
                "its storage {name} declares {declared} bytes from byte {start}, past the end of the {file_len}-byte file"
            )),
        };
    }
    drop(member);
    small_member(archive, name, u64::MAX).map(Stored::Inflated)
}

/// The tensor `key` names, or else the one the file holds, or its member
/// named `role`; with the path that names it, for messages.
fn select<'p>(
    pickle: &'p Pickle,
    key: Option<&str>,
    role: &str,
) -> Result<(Option<String>, &'p TensorRecord), String> {
    let (path, id) = match key {
        Some(key) if matches!(pickle.get(pickle.root), Object::Tensor(_)) => {
            return Err(format!("holds one tensor, with no members to name: drop the ':{key}'"));
        }
        Some(key) => (key, resolve(pickle, key)?),
        None => match pickle.get(pickle.root) {
            Object::Tensor(tensor) => return Ok((None, tensor)),
            Object::Dict(_) => (role, resolve(pickle, role)?),
            Object::List(items) | Object::Tuple(items) => {
                return Err(format!(
                    "holds {} of {}, not a tensor or a dict of named tensors: name an item with ':0' after the file name",
                    pickle.get(pickle.root).kind(),
                    items.len()
                ));
            }
            other => {
                return Err(format!(
                    "holds {}, not tensors: save tensors, e.g. torch.save({{'logits': t}}, f)",
                    other.kind()
                ));
            }
        },
    };
    match pickle.get(id) {
        Object::Tensor(tensor) => Ok((Some(path.to_string()), tensor)),
        Object::Dict(entries) => {
            let names = key_names(pickle, entries);
            let example = names.first().map(|first| format!(", e.g. '{path}.{first}'")).unwrap_or_default();
            Err(format!(
                "member '{path}' is a dict holding {}, not a tensor: name one of its members{example}",
                listed(&names)
            ))
        }
        Object::List(items) | Object::Tuple(items) => Err(format!(
            "member '{path}' is {} of {}, not a tensor: name one of its items, e.g. '{path}.0'",
            pickle.get(id).kind(),
            items.len()
        )),
        other => Err(format!("member '{path}' is {}, not a tensor", other.describe())),
    }
}

/// Follows a path of dict keys and list indices, `a.b.0`, from the root.
/// A dict key may itself hold dots (`fc.weight` in a state dict): the
/// longest key that matches is taken.
fn resolve(pickle: &Pickle, path: &str) -> Result<Id, String> {
    let mut at = pickle.root;
    let mut done = 0;
    loop {
        let rest = &path[done..];
        let parent = if done == 0 { "it".to_string() } else { format!("'{}'", &path[..done - 1]) };
        let missing = |why: String| format!("no array named '{path}' ({parent} {why})");
        let (step, next) = match pickle.get(at) {
            Object::Dict(entries) => {
                let candidates = std::iter::once(rest.len()).chain(rest.rmatch_indices('.').map(|(i, _)| i));
                let found = candidates.into_iter().find_map(|end| {
                    let key = &rest[..end];
                    entries
                        .iter()
                        .rev()
                        .find(|(k, _)| key_matches(pickle.get(*k), key))
                        .map(|&(_, value)| (end, value))
                });
                match found {
                    Some(found) => found,
                    None if done == 0 => {
                        return Err(format!(
                            "no array named '{path}' ({})",
                            holdings(path, &key_names(pickle, entries))
                        ));
                    }
                    None => return Err(missing(format!("holds: {}", listed(&key_names(pickle, entries))))),
                }
            }
            Object::List(items) | Object::Tuple(items) => {
                let end = rest.find('.').unwrap_or(rest.len());
                match rest[..end].parse::<usize>().ok().and_then(|index| items.get(index)) {
                    Some(&item) => (end, item),
                    None => return Err(missing(format!("is {} of {}", pickle.get(at).kind(), items.len()))),
                }
            }
            other => return Err(missing(format!("is {}", other.kind()))),
        };
        at = next;
        if step == rest.len() {
            return Ok(at);
        }
        done += step + 1;
    }
}

/// Whether a dict key is the text of a path step: a string, or an int.
fn key_matches(key: &Object, text: &str) -> bool {
    match key {
        Object::Str(s) => s == text,
        Object::Int(i) => text.parse::<i64>().is_ok_and(|t| t == *i),
        _ => false,
    }
}

/// The keys a path can name, each once, in the order they were first set.
fn key_names(pickle: &Pickle, entries: &[(Id, Id)]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (key, _) in entries {
        let name = match pickle.get(*key) {
            Object::Str(s) => s.clone(),
            Object::Int(i) => i.to_string(),
            _ => continue,
        };
        if seen.insert(name.clone()) {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pickle.dumps({'fc.weight': 1, 'a': {'b': [2, 3], 7: 'x'}}, protocol=2)`.
    const NESTED: &[u8] = b"\x80\x02}q\x00(X\t\x00\x00\x00fc.weightq\x01K\x01X\x01\x00\x00\x00aq\x02}q\x03(X\x01\x00\x00\x00bq\x04]q\x05(K\x02K\x03eK\x07X\x01\x00\x00\x00xq\x06uu.";

    fn value_at(pickle: &Pickle, path: &str) -> Result<String, String> {
        resolve(pickle, path).map(|id| pickle.get(id).describe())
    }

    #[test]
    fn paths_follow_keys_with_dots_indices_and_int_keys() {
        let pickle = unpickle(NESTED).unwrap();
        assert_eq!(value_at(&pickle, "fc.weight").unwrap(), "an int (1)");
        assert_eq!(value_at(&pickle, "a.b.1").unwrap(), "an int (3)");
        assert_eq!(value_at(&pickle, "a.7").unwrap(), "a str (\"x\")");
        assert_eq!(value_at(&pickle, "a.c").unwrap_err(), "no array named 'a.c' ('a' holds: b, 7)");
        assert_eq!(value_at(&pickle, "a.b.2").unwrap_err(), "no array named 'a.b.2' ('a.b' is a list of 2)");
        assert_eq!(
            value_at(&pickle, "fc.weight.0").unwrap_err(),
            "no array named 'fc.weight.0' ('fc.weight' is an int)"
        );
        assert_eq!(value_at(&pickle, "b").unwrap_err(), "no array named 'b' (it holds: fc.weight, a)");
    }

    #[test]
    fn a_member_that_is_not_a_tensor_says_what_it_is() {
        let pickle = unpickle(NESTED).unwrap();
        let error = |key: &str| select(&pickle, Some(key), "logits").err().unwrap();
        assert_eq!(
            error("a"),
            "member 'a' is a dict holding b, 7, not a tensor: name one of its members, e.g. 'a.b'"
        );
        assert_eq!(
            error("a.b"),
            "member 'a.b' is a list of 2, not a tensor: name one of its items, e.g. 'a.b.0'"
        );
        assert_eq!(error("a.b.0"), "member 'a.b.0' is an int (2), not a tensor");
        assert_eq!(
            select(&pickle, None, "logits").err().unwrap(),
            "no array named 'logits' (it holds: fc.weight, a)"
        );
    }

    #[test]
    fn files_that_are_not_zip_archives_are_named_for_what_they_are() {
        let message = |bytes: &[u8]| open(bytes).err().unwrap();
        assert!(message(LEGACY_MAGIC).contains("legacy format"));
        assert!(message(NESTED).contains("bare Python pickle"));
        assert!(message(b"hello").contains("neither a zip archive"));
    }
}
