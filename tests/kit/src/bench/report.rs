//! Rows of the result table and the one printer for them.

use std::fmt::Write as _;

/// One line of the result table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// What was measured, with the method in a few words.
    pub what: String,
    /// The figure as printed, unit included.
    pub value: String,
    /// The target as printed (`< 3.5 MiB`), or empty for figures without one.
    pub target: String,
    /// Whether the target is met; `None` for figures without a target.
    pub ok: Option<bool>,
}

impl Row {
    /// A figure that must stay below `limit` (both in `unit`).
    pub fn below(what: &str, value: f64, limit: f64, unit: &str, decimals: usize) -> Row {
        Row {
            what: what.to_string(),
            value: format!("{} {unit}", num(value, decimals)),
            target: format!("< {} {unit}", plain(limit)),
            ok: Some(value.is_finite() && value < limit),
        }
    }

    /// A figure that must reach at least `limit` (both in `unit`).
    pub fn at_least(what: &str, value: f64, limit: f64, unit: &str, decimals: usize) -> Row {
        Row {
            what: what.to_string(),
            value: format!("{} {unit}", num(value, decimals)),
            target: format!("≥ {} {unit}", plain(limit)),
            ok: Some(value.is_finite() && value >= limit),
        }
    }

    /// A figure without a target.
    pub fn info(what: &str, value: impl Into<String>) -> Row {
        Row {
            what: what.to_string(),
            value: value.into(),
            target: String::new(),
            ok: None,
        }
    }

    /// A measurement that could not be made, with the reason as its value.
    pub fn failed(what: &str, why: &str, target: &str) -> Row {
        Row {
            what: what.to_string(),
            value: format!("not measured: {why}"),
            target: target.to_string(),
            ok: Some(false),
        }
    }
}

/// `value` with `decimals` places and thousands separators in the integer part.
pub fn num(value: f64, decimals: usize) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let text = format!("{:.*}", decimals, value.abs());
    let (int, frac) = text
        .split_once('.')
        .map_or((text.as_str(), ""), |(i, f)| (i, f));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if value < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// A target as written by a person: `30,000`, `3.5`, `0.01`.
fn plain(limit: f64) -> String {
    if limit.fract() == 0.0 {
        num(limit, 0)
    } else {
        limit.to_string()
    }
}

/// The rows as a markdown table (`|` in cells escaped).
pub fn table(rows: &[Row]) -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out = String::from("| what | value | target | met |\n|---|---:|---:|:---:|\n");
    for r in rows {
        let ok = match r.ok {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {ok} |",
            cell(&r.what),
            cell(&r.value),
            cell(&r.target)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(num(1234567.891, 1), "1,234,567.9");
        assert_eq!(num(999.0, 0), "999");
        assert_eq!(num(0.004, 3), "0.004");
        assert_eq!(num(-1500.0, 0), "-1,500");
    }

    #[test]
    fn rows_judge_their_targets() {
        assert_eq!(Row::below("size", 3.2, 3.5, "MiB", 2).ok, Some(true));
        assert_eq!(Row::below("size", 3.5, 3.5, "MiB", 2).ok, Some(false));
        assert_eq!(
            Row::at_least("rps", 30_000.0, 30_000.0, "req/s", 0).ok,
            Some(true)
        );
        assert_eq!(Row::below("x", f64::NAN, 1.0, "ms", 1).ok, Some(false));
        let t = table(&[
            Row::below("a|b", 1.0, 2.0, "ms", 1),
            Row::info("threads", "3"),
        ]);
        assert!(t.contains("| a\\|b | 1.0 ms | < 2 ms | yes |"), "{t}");
        assert!(t.contains("| threads | 3 |  |  |"), "{t}");
    }
}
