use super::{Document, Exporter};

/// The document as pretty-printed JSON.
pub struct Json;

impl Exporter for Json {
    fn render(&self, document: &dyn Document) -> String {
        document.json()
    }
}
