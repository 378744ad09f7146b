//! A restricted unpickler for the `data.pkl` of a `torch.save` archive. It
//! understands the opcodes of pickle protocols 2 to 5 that describe plain
//! values, tuples, lists and dicts, and a short list of globals: the
//! functions PyTorch rebuilds tensors and parameters with, the storage and
//! dtype types they name, and `collections.OrderedDict`. It never runs
//! anything: a call to a known global is read as the record it stands for,
//! and any other global refuses the file, naming it.
//!
//! Objects live in one arena and refer to each other by index, as Python's
//! objects refer to each other by reference: the memo, a dict filled after
//! it was memoized and a list that holds itself all work without copies,
//! and nothing here recurses. Every opcode adds at most one object, so what
//! is built is bounded by the length of the pickle.

use std::collections::HashMap;

use super::super::tensor::DType;

/// An object's index in the arena.
pub type Id = usize;

/// A Python object, as far as a tensor file may hold one.
#[derive(Debug, Clone)]
pub enum Object {
    None,
    Bool(bool),
    Int(i64),
    /// An int beyond 64 bits: read, never used.
    BigInt,
    Float(f64),
    Str(String),
    /// A bytes object, by its length: nothing reads its content.
    Bytes(usize),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    /// Keys and values in insertion order; a later key replaces an equal
    /// earlier one when looked up.
    Dict(Vec<(Id, Id)>),
    /// A global from the allowed list, not yet called.
    Global(Global),
    /// A storage, as `torch.save`'s persistent id names it.
    Storage(Box<StorageRecord>),
    Tensor(Box<TensorRecord>),
}

impl Object {
    /// What the object is, for messages: "a dict", "an int".
    pub fn kind(&self) -> &'static str {
        match self {
            Object::None => "None",
            Object::Bool(_) => "a bool",
            Object::Int(_) | Object::BigInt => "an int",
            Object::Float(_) => "a float",
            Object::Str(_) => "a str",
            Object::Bytes(_) => "a bytes object",
            Object::Tuple(_) => "a tuple",
            Object::List(_) => "a list",
            Object::Dict(_) => "a dict",
            Object::Global(_) => "a reference to a Python type or function",
            Object::Storage(_) => "a storage",
            Object::Tensor(_) => "a tensor",
        }
    }
}

impl Object {
    /// What the object is, with its value where it is a short one: "an
    /// int (3)", for a message about a member that is not a tensor.
    pub fn describe(&self) -> String {
        let value = match self {
            Object::Bool(true) => "True".to_string(),
            Object::Bool(false) => "False".to_string(),
            Object::Int(value) => value.to_string(),
            Object::Float(value) => format!("{value:?}"),
            Object::Str(text) if text.chars().count() <= 40 => format!("{text:?}"),
            Object::Bytes(len) => format!("{len} bytes"),
            _ => return self.kind().to_string(),
        };
        format!("{} ({value})", self.kind())
    }
}

/// The element type of a storage or a tensor: one losscope reads, or the
/// name of one it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elements {
    Read(DType),
    Unread(String),
}

/// What a storage's persistent id says: the archive member holding its
/// bytes, and their element type (`None` for an untyped storage, whose
/// tensor gives the type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRecord {
    pub key: String,
    pub elements: Option<Elements>,
}

/// A tensor: a view of a storage, in elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRecord {
    pub storage: StorageRecord,
    pub elements: Elements,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
}

/// The globals a tensor file may name.
#[derive(Debug, Clone, PartialEq)]
pub enum Global {
    OrderedDict,
    /// `torch._utils._rebuild_tensor`, `_v2` and `_v3`: the argument that
    /// holds the dtype, for `_v3`.
    RebuildTensor {
        dtype_argument: Option<usize>,
    },
    RebuildParameter,
    /// `torch._tensor._rebuild_from_type_v2(func, type, args, state)`.
    RebuildFromType,
    /// `torch.Tensor` and `torch.nn.Parameter`, as the type above names them.
    TensorType,
    /// `torch.Size`, a tuple.
    Size,
    /// `_codecs.encode`, with which protocol 2 writes bytes.
    Encode,
    StorageType(Option<Elements>),
    Dtype(Elements),
}

/// The result of unpickling: the arena and the object the pickle returns.
pub struct Pickle {
    pub objects: Vec<Object>,
    pub root: Id,
}

impl Pickle {
    pub fn get(&self, id: Id) -> &Object {
        &self.objects[id]
    }
}

/// Why a pickle was not read. `Refused` is a file that holds something
/// other than tensors and containers; `Damaged` one that is not a pickle
/// as `torch.save` writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickleError {
    Refused(String),
    Damaged { at: usize, what: String },
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PickleError::Refused(message) => f.write_str(message),
            PickleError::Damaged { at, what } => write!(f, "data.pkl is damaged at byte {at}: {what}"),
        }
    }
}

/// The hint every refusal ends with.
const SAVE_TENSORS: &str = "save tensors, e.g. torch.save({'logits': t}, f)";

/// Unpickles `bytes`, building only tensors, storages and plain values.
pub fn unpickle(bytes: &[u8]) -> Result<Pickle, PickleError> {
    Machine::new(bytes).run()
}

struct Machine<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Where the current opcode starts, for messages.
    op_at: usize,
    objects: Vec<Object>,
    stack: Vec<Id>,
    /// Stack heights at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Id>,
    /// The shared immutable objects, made once.
    none: Id,
    empty_tuple: Id,
    truth: [Id; 2],
}

impl<'a> Machine<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let objects = vec![Object::None, Object::Tuple(Vec::new()), Object::Bool(false), Object::Bool(true)];
        Machine {
            bytes,
            at: 0,
            op_at: 0,
            objects,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            none: 0,
            empty_tuple: 1,
            truth: [2, 3],
        }
    }

    fn damaged<T>(&self, what: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError::Damaged { at: self.op_at, what: what.into() })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        match self.bytes.get(self.at..).and_then(|rest| rest.get(..n)) {
            Some(slice) => {
                self.at += n;
                Ok(slice)
            }
            None => self.damaged(format!("it ends inside an argument of {n} bytes")),
        }
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let slice = self.take(N)?;
        Ok(slice.try_into().expect("take returns N bytes"))
    }

    fn u8(&mut self) -> Result<usize, PickleError> {
        Ok(self.take_array::<1>()?[0] as usize)
    }

    fn u32(&mut self) -> Result<usize, PickleError> {
        Ok(u32::from_le_bytes(self.take_array()?) as usize)
    }

    /// A length that must fit in what is left of the pickle.
    fn length(&mut self, declared: u64) -> Result<usize, PickleError> {
        let left = (self.bytes.len() - self.at) as u64;
        if declared > left {
            return self.damaged(format!("it declares {declared} bytes where {left} are left"));
        }
        Ok(declared as usize)
    }

    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.bytes[self.at..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return self.damaged("a global's name has no end of line");
        };
        self.at += end + 1;
        match std::str::from_utf8(&rest[..end]) {
            Ok(text) => Ok(text),
            Err(_) => self.damaged("a global's name is not UTF-8"),
        }
    }

    fn add(&mut self, object: Object) -> Id {
        self.objects.push(object);
        self.objects.len() - 1
    }

    fn push_new(&mut self, object: Object) {
        let id = self.add(object);
        self.stack.push(id);
    }

    fn pop(&mut self) -> Result<Id, PickleError> {
        if self.stack.len() <= self.marks.last().copied().unwrap_or(0) {
            return self.damaged("an opcode takes more from the stack than it holds");
        }
        Ok(self.stack.pop().expect("the stack is not empty"))
    }

    fn top(&self) -> Result<Id, PickleError> {
        match self.stack.last() {
            Some(&id) if self.stack.len() > self.marks.last().copied().unwrap_or(0) => Ok(id),
            _ => self.damaged("an opcode needs an object and the stack holds none"),
        }
    }

    /// Everything pushed since the last MARK, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Id>, PickleError> {
        let Some(height) = self.marks.pop() else {
            return self.damaged("an opcode needs a MARK and there is none");
        };
        Ok(self.stack.split_off(height))
    }

    fn str_of(&self, id: Id) -> Option<&str> {
        match &self.objects[id] {
            Object::Str(text) => Some(text),
            _ => None,
        }
    }

    fn run(mut self) -> Result<Pickle, PickleError> {
        loop {
            self.op_at = self.at;
            let Some(&op) = self.bytes.get(self.at) else {
                return self.damaged("it ends before its STOP opcode (a truncated file)");
            };
            self.at += 1;
            match op {
                b'.' => {
                    let root = self.pop()?;
                    return Ok(Pickle { objects: self.objects, root });
                }
                0x80 => {
                    let protocol = self.u8()?;
                    if !(2..=5).contains(&protocol) {
                        return self
                            .damaged(format!("pickle protocol {protocol}, where torch.save writes 2 to 5"));
                    }
                }
                0x95 => {
                    self.take(8)?;
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let id = self.top()?;
                    self.stack.push(id);
                }
                b'N' => self.stack.push(self.none),
                0x88 => self.stack.push(self.truth[1]),
                0x89 => self.stack.push(self.truth[0]),
                b'J' => {
                    let value = i32::from_le_bytes(self.take_array()?);
                    self.push_new(Object::Int(value.into()));
                }
                b'K' => {
                    let value = self.u8()?;
                    self.push_new(Object::Int(value as i64));
                }
                b'M' => {
                    let value = u16::from_le_bytes(self.take_array()?);
                    self.push_new(Object::Int(value.into()));
                }
                0x8a => {
                    let n = self.u8()?;
                    self.long(n)?;
                }
                0x8b => {
                    let declared = i32::from_le_bytes(self.take_array()?);
                    if declared < 0 {
                        return self.damaged("a LONG4 of negative length");
                    }
                    let n = self.length(declared as u64)?;
                    self.long(n)?;
                }
                b'G' => {
                    let value = f64::from_be_bytes(self.take_array()?);
                    self.push_new(Object::Float(value));
                }
                b'X' => {
                    let n = self.u32()?;
                    self.text(n as u64)?;
                }
                0x8c => {
                    let n = self.u8()?;
                    self.text(n as u64)?;
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.take_array()?);
                    self.text(n)?;
                }
                b'B' => {
                    let n = self.u32()?;
                    self.bytes_object(n as u64)?;
                }
                b'C' => {
                    let n = self.u8()?;
                    self.bytes_object(n as u64)?;
                }
                0x8e => {
                    let n = u64::from_le_bytes(self.take_array()?);
                    self.bytes_object(n)?;
                }
                b')' => self.stack.push(self.empty_tuple),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_new(Object::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push_new(Object::Tuple(items));
                }
                b']' => self.push_new(Object::List(Vec::new())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push_new(Object::List(items));
                }
                b'a' => {
                    let item = self.pop()?;
                    self.extend_list(vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend_list(items)?;
                }
                b'}' => self.push_new(Object::Dict(Vec::new())),
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.push_new(Object::Dict(pairs));
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.extend_dict(vec![(key, value)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.extend_dict(pairs)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let global = allowed_global(module, name)?;
                    self.push_new(Object::Global(global));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(module), Some(name)) = (self.str_of(module), self.str_of(name)) else {
                        return self.damaged("STACK_GLOBAL needs two strings");
                    };
                    let global = allowed_global(module, name)?;
                    self.push_new(Object::Global(global));
                }
                b'R' => {
                    let arguments = self.pop()?;
                    let callable = self.pop()?;
                    let result = self.call(callable, arguments)?;
                    self.push_new(result);
                }
                0x81 => {
                    let arguments = self.pop()?;
                    let class = self.pop()?;
                    let result = self.new_object(class, arguments)?;
                    self.push_new(result);
                }
                0x92 => {
                    let _keywords = self.pop()?;
                    let arguments = self.pop()?;
                    let class = self.pop()?;
                    let result = self.new_object(class, arguments)?;
                    self.push_new(result);
                }
                b'b' => {
                    // The state of an OrderedDict (a state dict's `_metadata`)
                    // or of a parameter: attributes, which hold no tensor data.
                    self.pop()?;
                    let target = self.top()?;
                    if !matches!(self.objects[target], Object::Dict(_) | Object::Tensor(_)) {
                        return self
                            .damaged(format!("BUILD sets the state of {}", self.objects[target].kind()));
                    }
                }
                b'Q' => {
                    let id = self.pop()?;
                    let storage = self.storage(id)?;
                    self.push_new(Object::Storage(Box::new(storage)));
                }
                b'q' => {
                    let index = self.u8()?;
                    self.put(index as u32)?;
                }
                b'r' => {
                    let index = u32::from_le_bytes(self.take_array()?);
                    self.put(index)?;
                }
                0x94 => {
                    let index = u32::try_from(self.memo.len()).unwrap_or(u32::MAX);
                    self.put(index)?;
                }
                b'h' => {
                    let index = self.u8()?;
                    self.get(index as u32)?;
                }
                b'j' => {
                    let index = u32::from_le_bytes(self.take_array()?);
                    self.get(index)?;
                }
                other => {
                    return self.damaged(format!("opcode 0x{other:02x} is not one torch.save writes"));
                }
            }
        }
    }

    fn long(&mut self, n: usize) -> Result<(), PickleError> {
        let digits = self.take(n)?;
        let object = if n <= 8 {
            // Two's complement, little-endian, sign-extended to 64 bits.
            let fill = if digits.last().is_some_and(|&b| b & 0x80 != 0) { 0xff } else { 0 };
            let mut word = [fill; 8];
            word[..n].copy_from_slice(digits);
            Object::Int(i64::from_le_bytes(word))
        } else {
            Object::BigInt
        };
        self.push_new(object);
        Ok(())
    }

    fn text(&mut self, declared: u64) -> Result<(), PickleError> {
        let n = self.length(declared)?;
        let raw = self.take(n)?;
        match std::str::from_utf8(raw) {
            Ok(text) => {
                self.push_new(Object::Str(text.to_string()));
                Ok(())
            }
            Err(_) => self.damaged("a string is not UTF-8"),
        }
    }

    fn bytes_object(&mut self, declared: u64) -> Result<(), PickleError> {
        let n = self.length(declared)?;
        self.take(n)?;
        self.push_new(Object::Bytes(n));
        Ok(())
    }

    fn pairs(&self, items: Vec<Id>) -> Result<Vec<(Id, Id)>, PickleError> {
        if !items.len().is_multiple_of(2) {
            return self.damaged("a dict's items are not key-value pairs");
        }
        Ok(items.chunks_exact(2).map(|pair| (pair[0], pair[1])).collect())
    }

    fn extend_list(&mut self, items: Vec<Id>) -> Result<(), PickleError> {
        let target = self.top()?;
        let Object::List(list) = &mut self.objects[target] else {
            return self.damaged(format!("APPEND to {}", self.objects[target].kind()));
        };
        list.extend(items);
        Ok(())
    }

    fn extend_dict(&mut self, pairs: Vec<(Id, Id)>) -> Result<(), PickleError> {
        let target = self.top()?;
        let Object::Dict(entries) = &mut self.objects[target] else {
            return self.damaged(format!("SETITEM on {}", self.objects[target].kind()));
        };
        entries.extend(pairs);
        Ok(())
    }

    fn put(&mut self, index: u32) -> Result<(), PickleError> {
        let id = self.top()?;
        self.memo.insert(index, id);
        Ok(())
    }

    fn get(&mut self, index: u32) -> Result<(), PickleError> {
        match self.memo.get(&index) {
            Some(&id) => {
                self.stack.push(id);
                Ok(())
            }
            None => self.damaged(format!("memo entry {index} is read before it is written")),
        }
    }

    fn tuple(&self, id: Id) -> Option<&[Id]> {
        match &self.objects[id] {
            Object::Tuple(items) => Some(items),
            _ => None,
        }
    }

    fn int(&self, id: Id) -> Option<i64> {
        match self.objects[id] {
            Object::Int(value) => Some(value),
            _ => None,
        }
    }

    /// A persistent id: `('storage', storage_type, key, location, numel)`.
    fn storage(&self, id: Id) -> Result<StorageRecord, PickleError> {
        let record =
            self.tuple(id).filter(|items| items.len() == 5 && self.str_of(items[0]) == Some("storage"));
        let Some(&[_, storage_type, key, _, _]) = record else {
            return self.damaged("a persistent id is not a ('storage', type, key, location, size) record");
        };
        let Object::Global(Global::StorageType(elements)) = &self.objects[storage_type] else {
            return self.damaged("a storage record does not name a storage type");
        };
        let Some(key) = self.str_of(key) else {
            return self.damaged("a storage record's key is not a string");
        };
        Ok(StorageRecord { key: key.to_string(), elements: elements.clone() })
    }

    /// The object a call to a known global stands for, built without
    /// running anything.
    fn call(&self, callable: Id, arguments: Id) -> Result<Object, PickleError> {
        let Some(arguments) = self.tuple(arguments) else {
            return self.damaged("a call's arguments are not a tuple");
        };
        let Object::Global(global) = &self.objects[callable] else {
            return self.damaged(format!("a call to {}", self.objects[callable].kind()));
        };
        match global {
            Global::OrderedDict if arguments.is_empty() => Ok(Object::Dict(Vec::new())),
            Global::RebuildTensor { dtype_argument } => self.rebuild_tensor(arguments, *dtype_argument),
            Global::RebuildParameter => match arguments.first() {
                Some(&data) if matches!(self.objects[data], Object::Tensor(_)) => {
                    Ok(self.objects[data].clone())
                }
                _ => self.damaged("a parameter is rebuilt from something other than a tensor"),
            },
            Global::RebuildFromType => {
                let &[function, class, inner, _state] = arguments else {
                    return self.damaged("_rebuild_from_type_v2 takes four arguments");
                };
                let is_tensor_type = matches!(self.objects[class], Object::Global(Global::TensorType));
                let is_rebuild =
                    matches!(self.objects[function], Object::Global(Global::RebuildTensor { .. }));
                if !is_tensor_type || !is_rebuild {
                    return self.damaged("_rebuild_from_type_v2 rebuilds something other than a tensor");
                }
                self.call(function, inner)
            }
            Global::Size => match arguments {
                [items] if self.tuple(*items).is_some() => Ok(self.objects[*items].clone()),
                _ => self.damaged("torch.Size is made from something other than a tuple"),
            },
            Global::Encode => match arguments {
                [text, encoding] if self.str_of(*encoding) == Some("latin1") => match self.str_of(*text) {
                    // Protocol 2 writes bytes as their latin-1 text.
                    Some(text) => Ok(Object::Bytes(text.chars().count())),
                    None => self.damaged("_codecs.encode of something other than a string"),
                },
                _ => self.damaged("_codecs.encode with other than latin1"),
            },
            _ => self.damaged("a call to a type that takes no such arguments"),
        }
    }

    /// `_rebuild_tensor(storage, offset, size, stride, …)`; `_v3` adds the
    /// dtype as argument `dtype_argument`.
    fn rebuild_tensor(&self, arguments: &[Id], dtype_argument: Option<usize>) -> Result<Object, PickleError> {
        let [storage, offset, size, stride, ..] = *arguments else {
            return self.damaged("a tensor record has fewer than four arguments");
        };
        let Object::Storage(storage) = &self.objects[storage] else {
            return self.damaged("a tensor record names no storage");
        };
        let elements = match dtype_argument {
            Some(index) => match arguments.get(index).map(|&id| &self.objects[id]) {
                Some(Object::Global(Global::Dtype(elements))) => elements.clone(),
                _ => return self.damaged("a tensor record's dtype is not a torch dtype"),
            },
            None => match &storage.elements {
                Some(elements) => elements.clone(),
                None => return self.damaged("a tensor of an untyped storage has no dtype"),
            },
        };
        let offset = self.int(offset).and_then(|v| usize::try_from(v).ok());
        let shape = self.sizes(size);
        let strides = self.sizes(stride);
        match (offset, shape, strides) {
            (Some(offset), Some(shape), Some(strides)) if shape.len() == strides.len() => {
                let storage = (**storage).clone();
                Ok(Object::Tensor(Box::new(TensorRecord { storage, elements, offset, shape, strides })))
            }
            _ => self.damaged(
                "a tensor record's offset, size or stride is not a count, or size and stride differ in length",
            ),
        }
    }

    /// A tuple of non-negative ints.
    fn sizes(&self, id: Id) -> Option<Vec<usize>> {
        self.tuple(id)?.iter().map(|&item| self.int(item).and_then(|v| usize::try_from(v).ok())).collect()
    }

    /// `cls.__new__(cls, *args)`: only an empty OrderedDict is built so.
    fn new_object(&self, class: Id, arguments: Id) -> Result<Object, PickleError> {
        match (&self.objects[class], self.tuple(arguments)) {
            (Object::Global(Global::OrderedDict), Some([])) => Ok(Object::Dict(Vec::new())),
            _ => self.damaged(format!("NEWOBJ of {}", self.objects[class].kind())),
        }
    }
}

/// The globals a tensor file may name; any other refuses the file.
fn allowed_global(module: &str, name: &str) -> Result<Global, PickleError> {
    let global = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2") => {
            Global::RebuildTensor { dtype_argument: None }
        }
        ("torch._utils", "_rebuild_tensor_v3") => Global::RebuildTensor { dtype_argument: Some(6) },
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => Global::RebuildParameter,
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromType,
        ("torch", "Tensor") | ("torch.nn.parameter", "Parameter") => Global::TensorType,
        ("torch", "Size") => Global::Size,
        ("_codecs", "encode") => Global::Encode,
        ("torch.storage", "UntypedStorage") => Global::StorageType(None),
        ("torch", name) => match (storage_elements(name), dtype_elements(name)) {
            (Some(elements), _) => Global::StorageType(Some(elements)),
            (None, Some(elements)) => Global::Dtype(elements),
            (None, None) => return Err(refusal(module, name)),
        },
        _ => return Err(refusal(module, name)),
    };
    Ok(global)
}

/// The element type of a typed storage class, `torch.FloatStorage`.
fn storage_elements(name: &str) -> Option<Elements> {
    let dtype = match name {
        "BoolStorage" => DType::Bool,
        "ByteStorage" => DType::U8,
        "CharStorage" => DType::I8,
        "ShortStorage" => DType::I16,
        "IntStorage" => DType::I32,
        "LongStorage" => DType::I64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "ComplexFloatStorage" => return Some(Elements::Unread("complex64".into())),
        "ComplexDoubleStorage" => return Some(Elements::Unread("complex128".into())),
        // QInt8Storage, QUInt4x2Storage, …: the quantized types.
        _ if name.starts_with('Q') => {
            return Some(Elements::Unread(name.strip_suffix("Storage")?.to_ascii_lowercase()));
        }
        _ => return None,
    };
    Some(Elements::Read(dtype))
}

/// The element type a torch dtype names, `torch.float32`.
fn dtype_elements(name: &str) -> Option<Elements> {
    let dtype = match name {
        "bool" => DType::Bool,
        "uint8" => DType::U8,
        "int8" => DType::I8,
        "int16" => DType::I16,
        "uint16" => DType::U16,
        "int32" => DType::I32,
        "uint32" => DType::U32,
        "int64" => DType::I64,
        "uint64" => DType::U64,
        "float16" => DType::F16,
        "bfloat16" => DType::BF16,
        "float32" => DType::F32,
        "float64" => DType::F64,
        _ => {
            let sub_byte = |prefix: &str| {
                name.strip_prefix(prefix)
                    .is_some_and(|bits| matches!(bits, "1" | "2" | "3" | "4" | "5" | "6" | "7"))
            };
            let unread = ["complex", "bcomplex", "float8_", "float4_", "qint", "quint", "bits"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
                || name == "bit"
                || sub_byte("int")
                || sub_byte("uint");
            return unread.then(|| Elements::Unread(name.to_string()));
        }
    };
    Some(Elements::Read(dtype))
}

/// Why a global that is not on the list refuses the file.
fn refusal(module: &str, name: &str) -> PickleError {
    let qualified = format!("{module}.{name}");
    let message = if module == "torch._utils" && name.starts_with("_rebuild_") {
        let what = match name {
            "_rebuild_qtensor" => "a quantized tensor (save t.dequantize())",
            "_rebuild_sparse_tensor" | "_rebuild_sparse_csr" => "a sparse tensor (save t.to_dense())",
            "_rebuild_meta_tensor_no_storage" => "a tensor on the meta device, which holds no values",
            "_rebuild_nested_tensor" => "a nested tensor (save its tensors one by one)",
            _ => "a kind of tensor other than a dense one",
        };
        format!("holds {what}, built by {qualified}: losscope reads dense tensors; {SAVE_TENSORS}")
    } else if module.starts_with("__torch__") {
        format!(
            "holds the TorchScript object {qualified} (a torch.jit.save archive), not tensors: {SAVE_TENSORS}"
        )
    } else if module.starts_with("numpy") {
        format!(
            "holds a NumPy object ({qualified}), not tensors (none of it was run): save torch.from_numpy(a), \
             or the array with np.save"
        )
    } else {
        format!("holds a Python object of type {qualified}, not tensors (none of it was run): {SAVE_TENSORS}")
    };
    PickleError::Refused(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pickle.dumps({'a': [1, (2, None)]}, protocol=2)`.
    const NESTED: &[u8] = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01]q\x02(K\x01K\x02N\x86q\x03es.";

    #[test]
    fn plain_containers_are_built() {
        let pickle = unpickle(NESTED).expect("a plain pickle");
        let Object::Dict(entries) = pickle.get(pickle.root) else { panic!("a dict") };
        let (key, value) = entries[0];
        assert!(matches!(pickle.get(key), Object::Str(s) if s == "a"));
        let Object::List(items) = pickle.get(value) else { panic!("a list") };
        assert!(matches!(pickle.get(items[0]), Object::Int(1)));
        let Object::Tuple(pair) = pickle.get(items[1]) else { panic!("a tuple") };
        assert!(matches!(pickle.get(pair[1]), Object::None));
    }

    #[test]
    fn a_call_to_an_unknown_global_is_refused_by_name() {
        // pickle.dumps of an object whose __reduce__ returns (os.system, ('true',)).
        let pickle = b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.";
        let error = unpickle(pickle).err().expect("refused");
        assert!(matches!(&error, PickleError::Refused(m) if m.contains("type posix.system")), "{error}");
    }

    #[test]
    fn an_object_is_small_whatever_it_holds() {
        // What a pickle builds is bounded by its length times this.
        assert!(size_of::<Object>() <= 32, "{}", size_of::<Object>());
    }

    #[test]
    fn a_list_may_hold_itself() {
        // l = []; l.append(l); pickle.dumps(l, protocol=2)
        let pickle = unpickle(b"\x80\x02]q\x00h\x00a.").expect("a cyclic list");
        let Object::List(items) = pickle.get(pickle.root) else { panic!("a list") };
        assert_eq!(items, &[pickle.root]);
    }

    #[test]
    fn longs_are_sign_extended() {
        for (bytes, value) in [
            (&b"\x8a\x01\xff"[..], -1i64),
            (b"\x8a\x02\x00\x80", -32768),
            (b"\x8a\x03\x00\x80\x00", 32768),
            (b"\x8a\x00", 0),
        ] {
            let mut pickle = b"\x80\x02".to_vec();
            pickle.extend_from_slice(bytes);
            pickle.push(b'.');
            let got = unpickle(&pickle).expect("an int");
            assert!(matches!(got.get(got.root), Object::Int(v) if *v == value), "{bytes:?}");
        }
    }

    #[test]
    fn damage_is_named_with_its_place() {
        let cases: [(&[u8], &str); 5] = [
            (b"\x80\x02", "before its STOP"),
            (b"\x80\x02X\xff\xff\xff\x00", "declares 16777215 bytes"),
            (b"\x80\x02h\x05.", "memo entry 5"),
            (b"\x80\x02s.", "takes more from the stack"),
            (b"\x80\x02K\x01K\x02a.", "APPEND to an int"),
        ];
        for (bytes, expected) in cases {
            let error = unpickle(bytes).err().expect("damaged").to_string();
            assert!(error.contains(expected), "{bytes:?}: {error}");
        }
    }
}
