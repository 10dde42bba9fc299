//! Text from outside (workload messages, API errors, file contents) made
//! safe to show: cut to a size and stripped of control characters.

/// Cuts `s` to at most `max` bytes at a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Control characters escaped, so a workload's message cannot rewrite a terminal.
pub fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Outside text bounded for a report, a status field or a table cell:
/// control characters become spaces (so it never grows), then it is cut to
/// `max` bytes on a char boundary.
pub fn clean(s: &str, max: usize) -> String {
    let spaced: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(&spaced, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_never_grows_past_its_bound() {
        assert_eq!(clean("a\x1b[2J\nb", 64), "a [2J b");
        let long = "\u{7}".repeat(300);
        assert_eq!(clean(&long, 256).len(), 256);
        assert_eq!(clean("aé", 2), "a");
    }

    #[test]
    fn truncate_cuts_at_a_char_boundary() {
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("aé", 2), "a");
    }

    #[test]
    fn printable_escapes_control_characters() {
        assert_eq!(printable("a\x1b[2Jb\n"), "a\\u{1b}[2Jb\\n");
    }
}
