//! Ground truths: per image, rows of `[xmin, ymin, xmax, ymax, label]` in
//! coordinates relative to the image, with 0-based labels that leave out the
//! background. Three layouts are read:
//!
//! - JSON: a list per image of rows (ragged), or such a list as a member of
//!   an object (`truths.json:boxes`, else the member `truths`);
//! - `.npy`, or an `.npz` member named by the spec: `[B, M, 5]` padded;
//! - `.npz` without a key, as `np.savez(f, *boxes)` writes it: `arr_0`,
//!   `arr_1`, … one `[M_b, 5]` array per image (`[0]` for an empty image).
//!
//! In every layout a row whose label is negative is padding and is dropped.
//! Rows are checked here (finite, not flipped, not empty, integral label);
//! the label's range is checked against the logits by the loss.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Origin, Result};
use crate::input::{self, Spec, Tensor};

use super::boxes::Corners;

/// One ground-truth box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroundTruth {
    pub corners: Corners,
    /// 0-based, without background: the matched prior's class is `label + 1`.
    pub label: usize,
    /// The box's row in the input, for messages (padding rows count).
    pub row: usize,
}

#[derive(Debug, Clone)]
pub struct Truths {
    pub origin: Origin,
    pub images: Vec<Vec<GroundTruth>>,
    /// Rows dropped because their label is negative.
    pub padding_rows: u64,
}

const ROLE: &str = "truths";
/// Labels are checked against the logits' classes later; this keeps the
/// conversion to an index exact.
const MAX_LABEL: f64 = 4_294_967_296.0;

/// Reads the ground truths a spec names.
///
/// `images`, when known, is the batch size of the other inputs: a padded
/// array is checked against it before one list per image is built, so a
/// header claiming 10^9 empty images is refused, not allocated.
pub fn load(spec: &Spec, images: Option<usize>) -> Result<Truths> {
    let origin = Origin::new(ROLE, spec.text());
    let extension = spec.path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("json") => {
            let text = input::read_text(&spec.path, &origin)?;
            from_json(&text, spec.key.as_deref(), origin)
        }
        Some("npz") if spec.key.is_none() => from_npz_members(&spec.path, origin, images),
        _ => from_padded_batch(&input::load(spec, ROLE)?, images),
    }
}

/// [`from_padded`], after checking the batch size when it is known.
fn from_padded_batch(tensor: &Tensor, images: Option<usize>) -> Result<Truths> {
    if let (Some(expected), Some(&batch)) = (images, tensor.shape.first())
        && batch != expected
    {
        return Err(Error::input(
            &tensor.origin,
            format!("holds {batch} images but the batch has {expected}"),
        ));
    }
    from_padded(tensor)
}

/// A list per image of rows, parsed from JSON text.
pub fn from_json(text: &[u8], key: Option<&str>, origin: Origin) -> Result<Truths> {
    let fail = |message: String| Error::input(&origin, message);
    let text = input::json_text(text).map_err(&fail)?;
    let document: Value = serde_json::from_slice(text).map_err(|e| fail(format!("not valid JSON: {e}")))?;
    let images = match &document {
        Value::Object(members) => {
            let key = key.unwrap_or(ROLE);
            members.get(key).ok_or_else(|| {
                let names: Vec<&str> = members.keys().map(String::as_str).collect();
                fail(format!("no member named '{key}' ({})", input::holdings(key, &names)))
            })?
        }
        _ if key.is_some() => {
            return Err(fail("the JSON document is a list, not an object: drop the ':key'".into()));
        }
        list => list,
    };
    let Value::Array(images) = images else {
        return Err(fail("expected a list with one list of boxes per image".into()));
    };
    let mut reader = Reader::new(origin.clone());
    for (image, rows) in images.iter().enumerate() {
        let Value::Array(rows) = rows else {
            return Err(fail(format!("image {image}: expected a list of boxes, found {}", kind(rows))));
        };
        let mut boxes = Vec::with_capacity(rows.len());
        for (row, value) in rows.iter().enumerate() {
            let numbers = json_row(value).ok_or_else(|| {
                fail(format!(
                    "image {image} box {row}: expected [xmin, ymin, xmax, ymax, label], found {value}"
                ))
            })?;
            reader.push(&mut boxes, image, row, numbers)?;
        }
        reader.images.push(boxes);
    }
    Ok(reader.finish())
}

fn json_row(value: &Value) -> Option<[f64; 5]> {
    let Value::Array(items) = value else { return None };
    let numbers: Vec<f64> = items.iter().map(Value::as_f64).collect::<Option<_>>()?;
    numbers.try_into().ok()
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A `[B, M, 5]` array, each image padded with negative-label rows.
pub fn from_padded(tensor: &Tensor) -> Result<Truths> {
    let shape = &tensor.shape;
    if shape.len() != 3 || shape[2] != 5 {
        return Err(Error::input(
            &tensor.origin,
            format!(
                "shape {} is not [B, M, 5] rows of [xmin, ymin, xmax, ymax, label] (an .npz of one array per image is read when no key is given)",
                tensor.shape_text()
            ),
        ));
    }
    let mut reader = Reader::new(tensor.origin.clone());
    let values = tensor.values();
    let mut row_values = [0.0; 5];
    for image in 0..shape[0] {
        let mut boxes = Vec::new();
        for row in 0..shape[1] {
            values.copy_to_f64((image * shape[1] + row) * 5, 1, &mut row_values);
            reader.push(&mut boxes, image, row, row_values)?;
        }
        reader.images.push(boxes);
    }
    Ok(reader.finish())
}

/// One array per image, named `arr_0`, `arr_1`, … as `np.savez(f, *boxes)`
/// writes them.
fn from_npz_members(path: &Path, origin: Origin, images: Option<usize>) -> Result<Truths> {
    let members = input::bundle_members(path)?;
    let count = members.len();
    let numbered = (0..count).all(|b| members.iter().any(|m| *m == format!("arr_{b}")));
    if !numbered {
        if members.iter().any(|m| m == ROLE) {
            return from_padded_batch(&input::load(&Spec::member(path, ROLE), ROLE)?, images);
        }
        return Err(Error::input(
            &origin,
            format!(
                "expected one array per image named arr_0 … arr_{} (np.savez(f, *boxes)), or a [B, M, 5] member named '{ROLE}'; it holds: {}",
                count.saturating_sub(1),
                input::listed(&members)
            ),
        ));
    }
    let mut reader = Reader::new(origin.clone());
    let mut row_values = [0.0; 5];
    for image in 0..count {
        let tensor = input::load(&Spec::member(path, &format!("arr_{image}")), ROLE)?;
        let rows = match tensor.shape.as_slice() {
            [0] | [0, _] => 0,
            [rows, 5] => *rows,
            _ => {
                return Err(Error::input(
                    &tensor.origin,
                    format!(
                        "image {image}: shape {} is not [M, 5] rows of [xmin, ymin, xmax, ymax, label]",
                        tensor.shape_text()
                    ),
                ));
            }
        };
        let values = tensor.values();
        let mut boxes = Vec::with_capacity(rows);
        for row in 0..rows {
            values.copy_to_f64(row * 5, 1, &mut row_values);
            reader.push(&mut boxes, image, row, row_values)?;
        }
        reader.images.push(boxes);
    }
    Ok(reader.finish())
}

/// Checks rows as they are read, whatever the layout.
struct Reader {
    origin: Origin,
    images: Vec<Vec<GroundTruth>>,
    padding_rows: u64,
}

impl Reader {
    fn new(origin: Origin) -> Reader {
        Reader { origin, images: Vec::new(), padding_rows: 0 }
    }

    fn push(
        &mut self,
        boxes: &mut Vec<GroundTruth>,
        image: usize,
        row: usize,
        values: [f64; 5],
    ) -> Result<()> {
        let fail =
            |message: String| Error::input(&self.origin, format!("image {image} box {row}: {message}"));
        let label = values[4];
        if !(label.is_finite() && label.fract() == 0.0) {
            return Err(fail(format!("label {label} is not an integer")));
        }
        if label < 0.0 {
            self.padding_rows += 1;
            return Ok(());
        }
        if label >= MAX_LABEL {
            return Err(fail(format!("label {label} is too large to be a class")));
        }
        let [xmin, ymin, xmax, ymax, _] = values;
        if let Some(v) = [xmin, ymin, xmax, ymax].into_iter().find(|v| !v.is_finite()) {
            return Err(fail(format!("coordinate {v} is not finite")));
        }
        if xmax < xmin || ymax < ymin {
            return Err(fail(format!(
                "box [{xmin}, {ymin}, {xmax}, {ymax}] is flipped: rows are [xmin, ymin, xmax, ymax, label]"
            )));
        }
        if xmax == xmin || ymax == ymin {
            return Err(fail(format!("box [{xmin}, {ymin}, {xmax}, {ymax}] has zero area")));
        }
        boxes.push(GroundTruth { corners: [xmin, ymin, xmax, ymax], label: label as usize, row });
        Ok(())
    }

    fn finish(self) -> Truths {
        Truths { origin: self.origin, images: self.images, padding_rows: self.padding_rows }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Truths> {
        from_json(text.as_bytes(), None, Origin::new(ROLE, "t.json"))
    }

    #[test]
    fn ragged_json_with_an_empty_image_and_padding() {
        let truths =
            parse("[[[0, 0, 0.5, 0.5, 0], [0.5, 0.5, 1, 0.875, 1]], [], [[0, 0, 1, 1, -1]]]").unwrap();
        assert_eq!(truths.images.len(), 3);
        assert_eq!(truths.images[0][1], GroundTruth { corners: [0.5, 0.5, 1.0, 0.875], label: 1, row: 1 });
        assert!(truths.images[1].is_empty() && truths.images[2].is_empty());
        assert_eq!(truths.padding_rows, 1);
        let member = from_json(b"{\"boxes\": [[]]}", Some("boxes"), Origin::new(ROLE, "t.json")).unwrap();
        assert_eq!(member.images.len(), 1);
    }

    #[test]
    fn bad_rows_name_image_and_box() {
        for (text, expected) in [
            (
                "[[], [[0, 0, 1, 1, 0], [0.5, 0, 0.2, 1, 0]]]",
                "image 1 box 1: box [0.5, 0, 0.2, 1] is flipped",
            ),
            ("[[[0, 0.5, 1, 0.5, 2]]]", "image 0 box 0: box [0, 0.5, 1, 0.5] has zero area"),
            ("[[[0, 0, 1, 1, 1.5]]]", "image 0 box 0: label 1.5 is not an integer"),
            (
                "[[[0, 0, 1, 1, 1e20]]]",
                "image 0 box 0: label 100000000000000000000 is too large to be a class",
            ),
            ("[[[0, 0, 1, 1]]]", "image 0 box 0: expected [xmin, ymin, xmax, ymax, label]"),
            ("[[[0, \"a\", 1, 1, 0]]]", "image 0 box 0: expected"),
            ("[[0, 0, 1, 1, 0]]", "image 0 box 0: expected [xmin, ymin, xmax, ymax, label], found 0"),
            ("[[], 5]", "image 1: expected a list of boxes, found a number"),
            ("{\"other\": []}", "no member named 'truths' (it holds: other)"),
        ] {
            let message = parse(text).unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
        }
    }
}
