//! Text from untrusted input (tensor and pipeline names, error messages that
//! quote them) made safe to print: control characters are escaped, so a name
//! cannot move the cursor, recolour or retitle the user's terminal.

/// `text` with every control character written as an escape (`\n`, `\u{1b}`).
pub fn safe(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::safe;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(safe("conv1.weight"), "conv1.weight");
        assert_eq!(safe("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(safe("x\ny\r\t"), "x\\ny\\r\\t");
        assert_eq!(safe("é ü"), "é ü");
    }
}
