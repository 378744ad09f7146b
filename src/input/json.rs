//! JSON tensors: a nested rectangular array of numbers, or an object whose
//! members are such arrays. Parsed straight into one flat buffer; the first
//! array seen at each depth fixes that dimension and every later one must
//! agree, so a ragged array is reported at the element that breaks the shape.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::tensor::{Column, DType};

/// A decoded JSON array: integers when every number was written as one.
pub struct JsonArray {
    pub shape: Vec<usize>,
    pub column: Column,
    pub dtype: DType,
}

/// Parses a document that is itself an array.
pub fn parse_array(text: &[u8]) -> Result<JsonArray, String> {
    let mut flat = Flat::default();
    let mut de = serde_json::Deserializer::from_slice(text);
    Level { flat: &mut flat, depth: 0 }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| e.to_string())?;
    Ok(flat.finish())
}

/// Whether the document is an object (a bundle of named arrays).
pub fn is_object(text: &[u8]) -> bool {
    text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// The members of an object document, each kept as raw text until asked for.
pub fn members(text: &[u8]) -> Result<BTreeMap<String, Box<RawValue>>, String> {
    serde_json::from_slice(text).map_err(|e| e.to_string())
}

#[derive(Default)]
struct Flat {
    /// The length fixed for each depth, by the first array that closed there.
    dims: Vec<Option<usize>>,
    /// The depth at which numbers sit, fixed by the first number.
    rank: Option<usize>,
    /// The position of the element being read, for messages.
    path: Vec<usize>,
    numbers: Numbers,
}

/// Numbers read so far: integers kept exact until the first float.
enum Numbers {
    Integers(Vec<i128>),
    Floats(Vec<f64>),
}

impl Default for Numbers {
    fn default() -> Self {
        Numbers::Integers(Vec::new())
    }
}

impl Numbers {
    fn push_integer(&mut self, v: i128) {
        match self {
            Numbers::Integers(ints) => ints.push(v),
            Numbers::Floats(floats) => floats.push(v as f64),
        }
    }

    fn push_float(&mut self, v: f64) {
        if let Numbers::Integers(ints) = self {
            *self = Numbers::Floats(ints.iter().map(|&i| i as f64).collect());
        }
        if let Numbers::Floats(floats) = self {
            floats.push(v);
        }
    }
}

impl Flat {
    /// int64 when every integer fits, uint64 when they are non-negative and
    /// fit that, float64 otherwise.
    fn finish(self) -> JsonArray {
        let shape: Vec<usize> = self.dims.iter().map_while(|d| *d).collect();
        let column = match self.numbers {
            Numbers::Integers(ints) => {
                if let Ok(v) = ints.iter().map(|&i| i64::try_from(i)).collect::<Result<Vec<_>, _>>() {
                    Column::I64(v)
                } else if let Ok(v) = ints.iter().map(|&i| u64::try_from(i)).collect::<Result<Vec<_>, _>>() {
                    Column::U64(v)
                } else {
                    Column::F64(ints.iter().map(|&i| i as f64).collect())
                }
            }
            Numbers::Floats(floats) => Column::F64(floats),
        };
        JsonArray { shape, dtype: column.dtype(), column }
    }

    fn here(&self) -> String {
        let parts: Vec<String> = self.path.iter().map(|p| p.to_string()).collect();
        format!("[{}]", parts.join(", "))
    }
}

struct Level<'a> {
    flat: &'a mut Flat,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Level<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a nested array of numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Level { flat, depth } = self;
        if flat.rank.is_some_and(|rank| depth >= rank) {
            return Err(de::Error::custom(format!(
                "ragged array: element {} is an array where a number was expected",
                flat.here()
            )));
        }
        if depth >= 32 {
            return Err(de::Error::custom("arrays nested deeper than 32 levels"));
        }
        flat.path.push(0);
        let mut count = 0usize;
        while seq.next_element_seed(Level { flat: &mut *flat, depth: depth + 1 })?.is_some() {
            count += 1;
            *flat.path.last_mut().expect("pushed above") = count;
        }
        flat.path.pop();
        if flat.dims.len() <= depth {
            flat.dims.resize(depth + 1, None);
        }
        match flat.dims[depth] {
            Some(len) if len != count => Err(de::Error::custom(format!(
                "ragged array: element {} has {count} entries where {len} were expected",
                flat.here()
            ))),
            Some(_) => Ok(()),
            None => {
                flat.dims[depth] = Some(count);
                Ok(())
            }
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.number(|numbers| numbers.push_integer(v as i128))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.number(|numbers| numbers.push_integer(v as i128))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.number(|numbers| numbers.push_float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        Err(self.not_a_number(&format!("the string {v:?}")))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        Err(self.not_a_number(&format!("the boolean {v}")))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(self.not_a_number("null"))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _map: A) -> Result<(), A::Error> {
        Err(self.not_a_number("an object"))
    }
}

impl Level<'_> {
    fn number<E: de::Error>(self, push: impl FnOnce(&mut Numbers)) -> Result<(), E> {
        let Level { flat, depth } = self;
        let arrays_here = flat.dims.get(depth).is_some_and(|d| d.is_some());
        if arrays_here || flat.rank.is_some_and(|rank| rank != depth) {
            return Err(E::custom(format!(
                "ragged array: element {} is a number where an array was expected",
                flat.here()
            )));
        }
        flat.rank = Some(depth);
        push(&mut flat.numbers);
        Ok(())
    }

    fn not_a_number<E: de::Error>(self, what: &str) -> E {
        E::custom(format!("element {} is {what}, not a number", self.flat.here()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape_of(text: &str) -> Result<Vec<usize>, String> {
        parse_array(text.as_bytes()).map(|a| a.shape)
    }

    #[test]
    fn shapes_of_rectangular_arrays() {
        assert_eq!(shape_of("[[1, 2], [3, 4], [5, 6]]").unwrap(), vec![3, 2]);
        assert_eq!(shape_of("[1.5]").unwrap(), vec![1]);
        assert_eq!(shape_of("[]").unwrap(), vec![0]);
        assert_eq!(shape_of("[[], []]").unwrap(), vec![2, 0]);
        assert_eq!(shape_of("[[[1], [2]], [[3], [4]]]").unwrap(), vec![2, 2, 1]);
    }

    #[test]
    fn integers_stay_integers_until_a_float_appears() {
        assert_eq!(parse_array(b"[1, 2]").unwrap().dtype, DType::I64);
        assert_eq!(parse_array(b"[1, 2.5]").unwrap().dtype, DType::F64);
    }

    #[test]
    fn ragged_and_non_numeric_arrays_name_the_element() {
        let err = shape_of("[[1, 2], [3]]").unwrap_err();
        assert!(err.contains("element [1] has 1 entries where 2 were expected"), "{err}");
        let err = shape_of("[[1, 2], 3]").unwrap_err();
        assert!(err.contains("element [1] is a number"), "{err}");
        let err = shape_of("[1, [2]]").unwrap_err();
        assert!(err.contains("element [1] is an array"), "{err}");
        let err = shape_of("[[1, \"a\"]]").unwrap_err();
        assert!(err.contains("element [0, 1] is the string \"a\""), "{err}");
        assert!(shape_of("[[1, 2], [3,").unwrap_err().contains("EOF"));
    }
}
