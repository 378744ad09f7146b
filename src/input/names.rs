//! Member names in messages: every reader that holds named arrays lists
//! them the same way when the one asked for is missing.

/// The most member names a message lists; the rest are counted.
const NAMES_LISTED: usize = 20;

/// Member names for a message: the first twenty and how many
/// more, or `nothing`.
pub fn listed<S: AsRef<str>>(names: &[S]) -> String {
    if names.is_empty() {
        return "nothing".into();
    }
    let shown: Vec<&str> = names.iter().take(NAMES_LISTED).map(AsRef::as_ref).collect();
    match names.len() - shown.len() {
        0 => shown.join(", "),
        more => format!("{} … {more} more", shown.join(", ")),
    }
}

/// What a file that lacks the member `key` holds instead, for its message:
/// `it holds: …`, and how to name arrays that `np.savez` numbered because
/// they were passed by position.
pub fn holdings<S: AsRef<str>>(key: &str, names: &[S]) -> String {
    let numbered = |name: &str| {
        name.strip_prefix("arr_").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut text = format!("it holds: {}", listed(names));
    if !names.is_empty() && names.iter().all(|n| numbered(n.as_ref())) {
        text.push_str(&format!(
            "; np.savez numbers the arrays it is given by position: name them, np.savez(f, {key}=…)"
        ));
    }
    text
}
