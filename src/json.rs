//! A JSON text written straight into one buffer, values as serde_json
//! writes them (no value tree, no serializer: at the size-optimized build a
//! generic serializer cost more than the rest of a status request).

use std::fmt::Write;
use std::time::SystemTime;

/// A JSON text being written: values as serde_json writes them.
pub struct Json(pub String);

impl Json {
    /// JSON text as it is (punctuation, keys).
    pub fn raw(&mut self, s: &str) {
        self.0.push_str(s);
    }

    pub fn str(&mut self, s: &str) {
        self.raw("\"");
        let plain = |b: u8| b >= 0x20 && b != b'"' && b != b'\\';
        if s.bytes().all(plain) {
            self.0.push_str(s);
        } else {
            for c in s.chars() {
                match c {
                    '"' => self.0.push_str("\\\""),
                    '\\' => self.0.push_str("\\\\"),
                    '\n' => self.0.push_str("\\n"),
                    '\r' => self.0.push_str("\\r"),
                    '\t' => self.0.push_str("\\t"),
                    '\u{8}' => self.0.push_str("\\b"),
                    '\u{c}' => self.0.push_str("\\f"),
                    c if (c as u32) < 0x20 => {
                        let _ = write!(self.0, "\\u{:04x}", c as u32);
                    }
                    c => self.0.push(c),
                }
            }
        }
        self.raw("\"");
    }

    pub fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.raw("null"),
        }
    }

    pub fn num(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        // Only ASCII digits were written.
        self.0
            .push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
    }

    pub fn int(&mut self, n: i64) {
        if n < 0 {
            self.raw("-");
        }
        self.num(n.unsigned_abs());
    }

    /// A wall time as an RFC 3339 string.
    pub fn time(&mut self, t: SystemTime) {
        self.raw("\"");
        crate::clock::push_rfc3339(&mut self.0, t);
        self.raw("\"");
    }

    pub fn opt_num(&mut self, n: Option<u64>) {
        match n {
            Some(n) => self.num(n),
            None => self.raw("null"),
        }
    }

    pub fn bool(&mut self, b: bool) {
        self.raw(if b { "true" } else { "false" });
    }

    /// A percentage with one decimal (`12.5`); `null` when unknown.
    pub fn opt_percent(&mut self, p: Option<f64>) {
        match p.filter(|p| p.is_finite()) {
            Some(p) => {
                let _ = write!(self.0, "{:.1}", p.clamp(0.0, 100.0));
            }
            None => self.raw("null"),
        }
    }
}
