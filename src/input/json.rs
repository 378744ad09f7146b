//! JSON tensors: a nested rectangular array of numbers, or an object whose
//! members are such arrays. Parsed straight into one flat, typed buffer
//! (8 bytes a number, sized once from the text); the first array seen at
//! each depth fixes that dimension and every later one must agree, so a
//! ragged array is reported at the element that breaks the shape.

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
    // Every number but the last of each array is followed by a comma, so
    // the commas bound the count: the buffer is allocated once, and a
    // document too large for memory is refused here rather than midway.
    let bound = text.iter().filter(|&&b| b == b',').count() + 1;
    if let Numbers::I64(ints) = &mut flat.numbers {
        ints.try_reserve_exact(bound)
            .map_err(|_| format!("cannot allocate memory for up to {bound} numbers"))?;
    }
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

/// The members of an object document, each left as its raw text (borrowed,
/// not copied) until asked for.
pub fn members(text: &[u8]) -> Result<BTreeMap<String, &RawValue>, String> {
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
    /// Whether a negative integer was read (it rules out uint64).
    negative_seen: bool,
}

/// Numbers read so far, exact while they are integers: int64 while every
/// integer fits, uint64 once one exceeds int64 and none is negative,
/// float64 from the first float (or an integer neither type holds). A
/// change of type converts the numbers in place.
enum Numbers {
    I64(Vec<i64>),
    U64(Vec<u64>),
    F64(Vec<f64>),
}

impl Default for Numbers {
    fn default() -> Self {
        Numbers::I64(Vec::new())
    }
}

impl Numbers {
    fn push_integer(&mut self, v: i128, negative_seen: bool) {
        match self {
            Numbers::I64(ints) => match i64::try_from(v) {
                Ok(v) => ints.push(v),
                // Larger than int64: uint64 holds it unless a negative came first.
                Err(_) if !negative_seen && v > 0 => {
                    let ints = std::mem::take(ints);
                    *self = Numbers::U64(ints.into_iter().map(|i| i as u64).collect());
                    self.push_integer(v, negative_seen);
                }
                Err(_) => {
                    self.make_floats();
                    self.push_integer(v, negative_seen);
                }
            },
            Numbers::U64(ints) => match u64::try_from(v) {
                Ok(v) => ints.push(v),
                Err(_) => {
                    self.make_floats();
                    self.push_integer(v, negative_seen);
                }
            },
            Numbers::F64(floats) => floats.push(v as f64),
        }
    }

    fn push_float(&mut self, v: f64) {
        self.make_floats();
        if let Numbers::F64(floats) = self {
            floats.push(v);
        }
    }

    /// Converts the numbers so far to float64, in the buffer they are in.
    fn make_floats(&mut self) {
        *self = match std::mem::take(self) {
            Numbers::I64(ints) => Numbers::F64(ints.into_iter().map(|i| i as f64).collect()),
            Numbers::U64(ints) => Numbers::F64(ints.into_iter().map(|i| i as f64).collect()),
            floats => floats,
        };
    }
}

impl Flat {
    fn finish(self) -> JsonArray {
        let shape: Vec<usize> = self.dims.iter().map_while(|d| *d).collect();
        let column = match self.numbers {
            Numbers::I64(v) => Column::I64(v),
            Numbers::U64(v) => Column::U64(v),
            Numbers::F64(v) => Column::F64(v),
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
        self.number(|flat| {
            flat.negative_seen |= v < 0;
            flat.numbers.push_integer(v as i128, flat.negative_seen)
        })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.number(|flat| flat.numbers.push_integer(v as i128, flat.negative_seen))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.number(|flat| flat.numbers.push_float(v))
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
    fn number<E: de::Error>(self, push: impl FnOnce(&mut Flat)) -> Result<(), E> {
        let Level { flat, depth } = self;
        let arrays_here = flat.dims.get(depth).is_some_and(|d| d.is_some());
        if arrays_here || flat.rank.is_some_and(|rank| rank != depth) {
            return Err(E::custom(format!(
                "ragged array: element {} is a number where an array was expected",
                flat.here()
            )));
        }
        flat.rank = Some(depth);
        push(flat);
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

    fn values(text: &str) -> (DType, Vec<f64>) {
        let array = parse_array(text.as_bytes()).unwrap();
        let tensor = crate::input::Tensor::from_column(
            crate::error::Origin::new("t", "t"),
            array.shape.clone(),
            array.column,
        )
        .unwrap();
        (array.dtype, tensor.to_f64_vec())
    }

    #[test]
    fn integers_take_the_narrowest_type_that_holds_them_all() {
        let big = u64::MAX;
        assert_eq!(values(&format!("[1, {big}]")), (DType::U64, vec![1.0, big as f64]));
        // A negative rules out uint64, before or after the large value.
        assert_eq!(values(&format!("[-1, {big}]")), (DType::F64, vec![-1.0, big as f64]));
        assert_eq!(values(&format!("[{big}, -1]")), (DType::F64, vec![big as f64, -1.0]));
        assert_eq!(values(&format!("[{big}, 0.5]")), (DType::F64, vec![big as f64, 0.5]));
        assert_eq!(values("[-5, 7, 0.5, 3]"), (DType::F64, vec![-5.0, 7.0, 0.5, 3.0]));
        assert_eq!(values("[[-9223372036854775808]]").0, DType::I64);
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
