//! The JSON form of a document. JSON has no infinities: serde writes every
//! non-finite number as `null`. So that an infinite loss stays apart from a
//! NaN one (and from an undefined ratio, also `null`), [`json_text`] adds a
//! `nonfinite` object after the document's own fields, naming each number
//! written as `null` that is an infinity, by its path (`value`,
//! `classes[3].loss_sum`), with `"inf"` or `"-inf"`. It is left out when
//! there is none, so the fields and types of finite reports do not change.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde::ser::{self, Impossible};

use super::{Document, Exporter};

/// The document as pretty-printed JSON.
pub struct Json;

impl Exporter for Json {
    fn render(&self, document: &dyn Document) -> String {
        document.json()
    }
}

/// The key of the marker object.
pub const NONFINITE: &str = "nonfinite";

/// `document` as pretty-printed JSON followed by a newline, with the
/// `nonfinite` marker object when it holds an infinity.
pub fn json_text<T: Serialize + ?Sized>(document: &T) -> String {
    #[derive(Serialize)]
    struct Marked<'a, T: ?Sized> {
        #[serde(flatten)]
        document: &'a T,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        nonfinite: BTreeMap<String, &'static str>,
    }
    let marked = Marked { document, nonfinite: infinities(document) };
    let mut text = serde_json::to_string_pretty(&marked).expect("a document always serialises");
    text.push('\n');
    text
}

/// The paths of the infinite numbers in `value`, each with `"inf"` or `"-inf"`.
pub fn infinities<T: Serialize + ?Sized>(value: &T) -> BTreeMap<String, &'static str> {
    let mut finder = Finder { path: String::new(), found: BTreeMap::new() };
    value.serialize(&mut finder).expect("the finder never fails");
    finder.found
}

/// Walks a value as serde serialises it, keeping the path of each
/// infinite float.
struct Finder {
    path: String,
    found: BTreeMap<String, &'static str>,
}

impl Finder {
    fn float(&mut self, x: f64) {
        if x.is_infinite() {
            self.found.insert(self.path.clone(), if x > 0.0 { "inf" } else { "-inf" });
        }
    }

    /// Runs `serialize` with `step` appended to the path.
    fn within<T: Serialize + ?Sized>(&mut self, step: Step<'_>, value: &T) -> Result<(), Never> {
        let len = self.path.len();
        match step {
            Step::Key(key) if len == 0 => self.path.push_str(key),
            Step::Key(key) => {
                self.path.push('.');
                self.path.push_str(key);
            }
            Step::Index(i) => {
                use std::fmt::Write;
                let _ = write!(self.path, "[{i}]");
            }
        }
        let result = value.serialize(&mut *self);
        self.path.truncate(len);
        result
    }
}

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The finder's error, which never happens.
#[derive(Debug)]
struct Never;

impl fmt::Display for Never {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unreachable")
    }
}

impl std::error::Error for Never {}

impl ser::Error for Never {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Never
    }
}

/// A sequence or a map being walked: the next index, or the last key.
struct Compound<'a> {
    finder: &'a mut Finder,
    index: usize,
    key: String,
}

impl<'a> Compound<'a> {
    fn new(finder: &'a mut Finder) -> Self {
        Compound { finder, index: 0, key: String::new() }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        let i = self.index;
        self.index += 1;
        self.finder.within(Step::Index(i), value)
    }
}

macro_rules! ignore {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, _: $ty) -> Result<(), Never> { Ok(()) })*
    };
}

impl<'a> ser::Serializer for &'a mut Finder {
    type Ok = ();
    type Error = Never;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    ignore!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_f32(self, x: f32) -> Result<(), Never> {
        self.float(x as f64);
        Ok(())
    }

    fn serialize_f64(self, x: f64) -> Result<(), Never> {
        self.float(x);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Never> {
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Never> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Never> {
        Ok(())
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Never> {
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        self.within(Step::Key(variant), value)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, Never> {
        Ok(Compound::new(self))
    }

    fn serialize_tuple(self, _: usize) -> Result<Compound<'a>, Never> {
        Ok(Compound::new(self))
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Never> {
        Ok(Compound::new(self))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Never> {
        Ok(Compound::new(self))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, Never> {
        Ok(Compound::new(self))
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Never> {
        Ok(Compound::new(self))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Never> {
        Ok(Compound::new(self))
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Never;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        self.element(value)
    }

    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Never;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        self.element(value)
    }

    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Never;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        self.element(value)
    }

    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = Never;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        self.element(value)
    }

    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Never;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Never> {
        self.key = key.serialize(KeyName).unwrap_or_default();
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        let key = std::mem::take(&mut self.key);
        self.finder.within(Step::Key(&key), value)
    }

    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Never;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Never> {
        self.finder.within(Step::Key(key), value)
    }

    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Never;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Never> {
        self.finder.within(Step::Key(key), value)
    }

    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

/// The text of a map key, as JSON writes it (strings, and integers as text).
struct KeyName;

macro_rules! key_as_text {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, v: $ty) -> Result<String, Never> { Ok(v.to_string()) })*
    };
}

impl ser::Serializer for KeyName {
    type Ok = String;
    type Error = Never;
    type SerializeSeq = Impossible<String, Never>;
    type SerializeTuple = Impossible<String, Never>;
    type SerializeTupleStruct = Impossible<String, Never>;
    type SerializeTupleVariant = Impossible<String, Never>;
    type SerializeMap = Impossible<String, Never>;
    type SerializeStruct = Impossible<String, Never>;
    type SerializeStructVariant = Impossible<String, Never>;

    key_as_text!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
    );

    fn serialize_bytes(self, _: &[u8]) -> Result<String, Never> {
        Err(Never)
    }

    fn serialize_none(self) -> Result<String, Never> {
        Err(Never)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<String, Never> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<String, Never> {
        Err(Never)
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<String, Never> {
        Err(Never)
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<String, Never> {
        Ok(variant.to_string())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, Never> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, Never> {
        Err(Never)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Never> {
        Err(Never)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Never> {
        Err(Never)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Never> {
        Err(Never)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Never> {
        Err(Never)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Never> {
        Err(Never)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Never> {
        Err(Never)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Never> {
        Err(Never)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row {
        loss_sum: Option<f64>,
        share: Option<f64>,
    }

    #[derive(Serialize)]
    struct Doc {
        value: Option<f64>,
        sum: f64,
        rows: Vec<Row>,
        named: BTreeMap<String, f64>,
        #[serde(flatten)]
        extra: BTreeMap<String, Vec<f64>>,
    }

    #[test]
    fn infinities_are_named_by_path_and_nan_is_not() {
        let doc = Doc {
            value: Some(f64::INFINITY),
            sum: f64::NAN,
            rows: vec![
                Row { loss_sum: Some(1.0), share: None },
                Row { loss_sum: Some(f64::NEG_INFINITY), share: Some(f64::NAN) },
            ],
            named: [("a".to_string(), f64::INFINITY)].into(),
            extra: [("flat".to_string(), vec![0.0, f64::INFINITY])].into(),
        };
        let text = json_text(&doc);
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["value"], serde_json::Value::Null);
        assert_eq!(json["sum"], serde_json::Value::Null);
        assert_eq!(
            json[NONFINITE],
            serde_json::json!({
                "value": "inf",
                "rows[1].loss_sum": "-inf",
                "named.a": "inf",
                "flat[1]": "inf",
            })
        );
        // The document's own fields come first, in their order.
        let at = |key: &str| text.find(&format!("\"{key}\":")).unwrap();
        assert!(at("value") < at("sum") && at("sum") < at("rows") && at("flat") < at(NONFINITE));
    }

    #[test]
    fn a_finite_document_has_no_marker() {
        let doc = Row { loss_sum: Some(1.0), share: None };
        assert_eq!(json_text(&doc), format!("{}\n", serde_json::to_string_pretty(&doc).unwrap()));
    }
}
