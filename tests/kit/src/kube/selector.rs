//! Label selectors: the `labelSelector` query syntax (as apimachinery's
//! `labels/selector.go` parses it) and `metav1.LabelSelector` objects
//! (`matchLabels` / `matchExpressions`), both evaluated against label maps.

use serde_json::{Map, Value};

use super::validation;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One requirement; a selector is their conjunction.
#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

/// A parsed selector; the empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Selector(Vec<Requirement>);

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Equals,
    DoubleEquals,
    NotEquals,
    Bang,
    In,
    NotIn,
    Open,
    Close,
    Comma,
    Greater,
    Less,
}

fn lex(s: &str) -> Vec<Token> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let (tok, len) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => (Token::Open, 1),
            ')' => (Token::Close, 1),
            ',' => (Token::Comma, 1),
            '>' => (Token::Greater, 1),
            '<' => (Token::Less, 1),
            '!' if next == Some('=') => (Token::NotEquals, 2),
            '!' => (Token::Bang, 1),
            '=' if next == Some('=') => (Token::DoubleEquals, 2),
            '=' => (Token::Equals, 1),
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !"!=(),<>".contains(chars[i])
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                out.push(match word.as_str() {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Ident(word),
                });
                continue;
            }
        };
        out.push(tok);
        i += len;
    }
    out
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn ident(&mut self, what: &str) -> Result<String, String> {
        match self.next() {
            Some(Token::Ident(s)) => Ok(s),
            other => Err(format!(
                "found '{}', expected: {what}",
                show(other.as_ref())
            )),
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        if self.peek() == Some(&Token::Bang) {
            self.pos += 1;
            let key = self.ident("identifier after '!'")?;
            return Ok(Requirement {
                key,
                op: Op::DoesNotExist,
                values: vec![],
            });
        }
        let key = self.ident("identifier")?;
        let op = match self.peek() {
            None | Some(Token::Comma) => {
                return Ok(Requirement {
                    key,
                    op: Op::Exists,
                    values: vec![],
                })
            }
            Some(Token::Equals | Token::DoubleEquals) => Op::Equals,
            Some(Token::NotEquals) => Op::NotEquals,
            Some(Token::In) => Op::In,
            Some(Token::NotIn) => Op::NotIn,
            Some(Token::Greater) => Op::GreaterThan,
            Some(Token::Less) => Op::LessThan,
            other => {
                return Err(format!(
                    "found '{}', expected: '=', '!=', '==', 'in', notin'",
                    show(other)
                ))
            }
        };
        self.pos += 1;
        let values = match op {
            Op::In | Op::NotIn => self.value_set()?,
            _ => match self.peek() {
                // `k=` selects an empty value.
                None | Some(Token::Comma) => vec![String::new()],
                _ => vec![self.ident("identifier")?],
            },
        };
        Ok(Requirement { key, op, values })
    }

    fn value_set(&mut self) -> Result<Vec<String>, String> {
        match self.next() {
            Some(Token::Open) => {}
            // No comma here in apimachinery's parseValues (selector.go).
            other => return Err(format!("found '{}' expected: '('", show(other.as_ref()))),
        }
        let mut values = Vec::new();
        loop {
            match self.next() {
                Some(Token::Ident(v)) => {
                    values.push(v);
                    match self.next() {
                        Some(Token::Comma) => continue,
                        Some(Token::Close) => break,
                        other => {
                            return Err(format!(
                                "found '{}', expected: ',' or ')'",
                                show(other.as_ref())
                            ))
                        }
                    }
                }
                Some(Token::Close) => break,
                other => {
                    return Err(format!(
                        "found '{}', expected: identifier",
                        show(other.as_ref())
                    ))
                }
            }
        }
        Ok(values)
    }
}

fn show(t: Option<&Token>) -> String {
    match t {
        None => "".into(),
        Some(Token::Ident(s)) => s.clone(),
        Some(Token::Equals) => "=".into(),
        Some(Token::DoubleEquals) => "==".into(),
        Some(Token::NotEquals) => "!=".into(),
        Some(Token::Bang) => "!".into(),
        Some(Token::In) => "in".into(),
        Some(Token::NotIn) => "notin".into(),
        Some(Token::Open) => "(".into(),
        Some(Token::Close) => ")".into(),
        Some(Token::Comma) => ",".into(),
        Some(Token::Greater) => ">".into(),
        Some(Token::Less) => "<".into(),
    }
}

impl Requirement {
    /// Validates key and values as `NewRequirement` does.
    fn validated(self) -> Result<Requirement, String> {
        if let Some(e) = validation::qualified_name(&self.key).first() {
            return Err(format!("key: Invalid value: \"{}\": {e}", self.key));
        }
        match self.op {
            Op::In | Op::NotIn if self.values.is_empty() => {
                return Err("values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty".into())
            }
            Op::GreaterThan | Op::LessThan if self.values[0].parse::<i64>().is_err() => {
                return Err(format!(
                    "values[0]: Invalid value: \"{}\": for 'Gt', 'Lt' operators, the value must be an integer",
                    self.values[0]
                ))
            }
            _ => {}
        }
        if !matches!(self.op, Op::GreaterThan | Op::LessThan) {
            for (i, v) in self.values.iter().enumerate() {
                if let Some(e) = validation::label_value(v).first() {
                    return Err(format!(
                        "values[{i}][{}]: Invalid value: \"{v}\": {e}",
                        self.key
                    ));
                }
            }
        }
        Ok(self)
    }

    fn matches(&self, labels: &Map<String, Value>) -> bool {
        let value = labels.get(&self.key).and_then(Value::as_str);
        let has = |v: &str| self.values.iter().any(|x| x == v);
        let num = |v: &str| v.parse::<i64>().ok();
        let bound = self.values.first().and_then(|v| num(v));
        match self.op {
            Op::Equals | Op::In => value.is_some_and(has),
            Op::NotEquals | Op::NotIn => !value.is_some_and(has),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
            Op::GreaterThan => matches!((value.and_then(num), bound), (Some(v), Some(b)) if v > b),
            Op::LessThan => matches!((value.and_then(num), bound), (Some(v), Some(b)) if v < b),
        }
    }
}

impl Selector {
    /// Parses the query-string form; the error text becomes a 400 message.
    pub fn parse(s: &str) -> Result<Selector, String> {
        let mut p = Parser {
            tokens: lex(s),
            pos: 0,
        };
        let mut reqs = Vec::new();
        while p.peek().is_some() {
            let r = p
                .requirement()
                .and_then(Requirement::validated)
                .map_err(|e| format!("unable to parse requirement: {e}"))?;
            reqs.push(r);
            match p.next() {
                None => break,
                Some(Token::Comma) if p.peek().is_some() => {}
                other => {
                    return Err(format!(
                        "found '{}', expected: ',' or 'end of string'",
                        show(other.as_ref())
                    ))
                }
            }
        }
        Ok(Selector(reqs))
    }

    /// Converts a `metav1.LabelSelector` object; `None` if it is malformed.
    pub fn from_label_selector(sel: &Value) -> Option<Selector> {
        let mut reqs = Vec::new();
        for (k, v) in sel
            .get("matchLabels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            reqs.push(Requirement {
                key: k.clone(),
                op: Op::Equals,
                values: vec![v.as_str()?.to_string()],
            });
        }
        for e in sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let op = match e.get("operator")?.as_str()? {
                "In" => Op::In,
                "NotIn" => Op::NotIn,
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                _ => return None,
            };
            let values = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            reqs.push(Requirement {
                key: e.get("key")?.as_str()?.to_string(),
                op,
                values: values
                    .map(|v| v.as_str().map(String::from))
                    .collect::<Option<_>>()?,
            });
        }
        Some(Selector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object's `metadata.labels` (absent = none) satisfy every requirement.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let empty = Map::new();
        let labels = labels.and_then(Value::as_object).unwrap_or(&empty);
        self.0.iter().all(|r| r.matches(labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn all_forms_match_as_documented() {
        let l = json!({"app": "web", "tier": "front"});
        let l = Some(&l);
        for (s, want) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("other!=x", true),
            ("app in (web, api)", true),
            ("app notin (web)", false),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier=back", false),
            ("app=web,tier in (front)", true),
        ] {
            assert_eq!(sel(s).matches(l), want, "{s}");
        }
    }

    #[test]
    fn malformed_selectors_are_errors() {
        for s in [
            "app=(",
            "in (a)",
            "app in a",
            "app in ()",
            "=x",
            "app=web,",
            "a b",
            "Bad Key=x",
            "app=-x-",
            "n>x",
        ] {
            assert!(Selector::parse(s).is_err(), "{s:?} should not parse");
        }
    }
}
