//! The `@delegate(path:)` language: `a(x: $arguments:x).b(y: $fields:id, z: 3)`.
//!
//! A real lexer, so string literals with dots, floats, negative numbers,
//! lists and objects all parse, and `$arguments:`/`$fields:`/`$variables:`
//! may stand anywhere a value may, nested in lists and objects too.

use std::fmt;

/// One segment of a delegation path: a remote field and its arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub name: String,
    /// `None` when the segment has no parentheses: the client's arguments pass through.
    pub arguments: Option<Vec<(String, PathValue)>>,
}

/// An argument value in a path.
#[derive(Clone, Debug, PartialEq)]
pub enum PathValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Enum(String),
    List(Vec<PathValue>),
    Object(Vec<(String, PathValue)>),
    /// `$arguments:NAME`: an argument of the field being resolved.
    Argument(String),
    /// `$fields:NAME` or `$fields:a.b.c`: a field of the parent object, or a
    /// field below one (lists on the way are walked).
    Field(Vec<String>),
    /// `$variables:NAME`: a variable of the client's operation.
    Variable(String),
}

impl PathValue {
    /// Calls `f` for every `$...:` reference inside this value.
    pub fn visit_refs<'a>(&'a self, f: &mut impl FnMut(&'a PathValue)) {
        match self {
            PathValue::List(items) => items.iter().for_each(|v| v.visit_refs(f)),
            PathValue::Object(fields) => fields.iter().for_each(|(_, v)| v.visit_refs(f)),
            PathValue::Argument(_) | PathValue::Field(_) | PathValue::Variable(_) => f(self),
            _ => {}
        }
    }

    pub fn has_refs(&self) -> bool {
        let mut any = false;
        self.visit_refs(&mut |_| any = true);
        any
    }
}

/// A syntax error in a path, with the character offset where it was found.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message} (at character {offset} of the path)")]
pub struct PathError {
    pub message: String,
    pub offset: usize,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Name(String),
    Int(i64),
    Float(f64),
    Str(String),
    Ref(RefKind, Vec<String>),
    Punct(char),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum RefKind {
    Arguments,
    Fields,
    Variables,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn err<T>(&self, offset: usize, message: impl Into<String>) -> Result<T, PathError> {
        Err(PathError {
            message: message.into(),
            offset,
        })
    }

    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn tokens(mut self) -> Result<Vec<(usize, Token)>, PathError> {
        let mut out = Vec::new();
        while let Some(c) = self.peek_char() {
            let start = self.pos;
            match c {
                ' ' | '\t' | '\n' | '\r' | ',' => self.pos += 1,
                '(' | ')' | '[' | ']' | '{' | '}' | ':' | '.' => {
                    // A dot followed by a digit is not a float here: floats need a leading digit.
                    self.pos += 1;
                    out.push((start, Token::Punct(c)));
                }
                '"' => out.push((start, self.string()?)),
                '$' => out.push((start, self.reference()?)),
                '-' | '0'..='9' => out.push((start, self.number()?)),
                c if c == '_' || c.is_ascii_alphabetic() => {
                    let name = self.name();
                    out.push((start, Token::Name(name)));
                }
                other => return self.err(start, format!("unexpected character `{other}`")),
            }
        }
        Ok(out)
    }

    fn name(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek_char() {
            if c == '_' || c.is_ascii_alphanumeric() {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.src[start..self.pos].to_string()
    }

    fn reference(&mut self) -> Result<Token, PathError> {
        let start = self.pos;
        self.pos += 1;
        let kind = match self.name().as_str() {
            "arguments" => RefKind::Arguments,
            "fields" => RefKind::Fields,
            "variables" => RefKind::Variables,
            other => {
                return self.err(
                    start,
                    format!("unknown reference `${other}`; use $arguments:NAME, $fields:NAME or $variables:NAME"),
                )
            }
        };
        if self.peek_char() != Some(':') {
            return self.err(self.pos, "expected `:` and a name after the reference kind");
        }
        self.pos += 1;
        let name = self.name();
        if name.is_empty() {
            return self.err(self.pos, "expected a name after `:`");
        }
        let mut names = vec![name];
        // `$fields:owner.id`: inside parentheses a dot after a reference can
        // only continue it (segments are separated outside them).
        while kind == RefKind::Fields && self.peek_char() == Some('.') {
            self.pos += 1;
            let next = self.name();
            if next.is_empty() {
                return self.err(self.pos, "expected a field name after `.` in `$fields:`");
            }
            names.push(next);
        }
        Ok(Token::Ref(kind, names))
    }

    fn number(&mut self) -> Result<Token, PathError> {
        let start = self.pos;
        let bytes = self.src.as_bytes();
        let mut end = self.pos;
        if bytes.get(end) == Some(&b'-') {
            end += 1;
        }
        let digits_start = end;
        while bytes.get(end).is_some_and(|b| b.is_ascii_digit()) {
            end += 1;
        }
        if end == digits_start {
            return self.err(start, "expected digits after `-`");
        }
        let mut is_float = false;
        if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(|b| b.is_ascii_digit()) {
            is_float = true;
            end += 1;
            while bytes.get(end).is_some_and(|b| b.is_ascii_digit()) {
                end += 1;
            }
        }
        if matches!(bytes.get(end), Some(b'e' | b'E')) {
            is_float = true;
            end += 1;
            if matches!(bytes.get(end), Some(b'+' | b'-')) {
                end += 1;
            }
            let exp_start = end;
            while bytes.get(end).is_some_and(|b| b.is_ascii_digit()) {
                end += 1;
            }
            if end == exp_start {
                return self.err(start, "expected digits in the exponent");
            }
        }
        let text = &self.src[start..end];
        self.pos = end;
        if is_float {
            text.parse()
                .map(Token::Float)
                .or_else(|_| self.err(start, format!("`{text}` is not a number")))
        } else {
            text.parse()
                .map(Token::Int)
                .or_else(|_| self.err(start, format!("`{text}` does not fit a 64-bit integer")))
        }
    }

    fn string(&mut self) -> Result<Token, PathError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek_char() else {
                return self.err(start, "unterminated string");
            };
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(Token::Str(out)),
                '\\' => {
                    let Some(e) = self.peek_char() else {
                        return self.err(start, "unterminated string");
                    };
                    self.pos += 1;
                    match e {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        '/' => out.push('/'),
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'u' => {
                            let hex = self.src.get(self.pos..self.pos + 4).unwrap_or("");
                            let code = u32::from_str_radix(hex, 16).ok().and_then(char::from_u32);
                            match code {
                                Some(ch) if hex.len() == 4 => {
                                    out.push(ch);
                                    self.pos += 4;
                                }
                                _ => return self.err(self.pos, "bad \\u escape"),
                            }
                        }
                        other => {
                            return self.err(self.pos - 1, format!("unknown escape `\\{other}`"))
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    len: usize,
}

impl Parser {
    fn offset(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map(|(o, _)| *o)
            .unwrap_or(self.len)
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, PathError> {
        Err(PathError {
            message: message.into(),
            offset: self.offset(),
        })
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Token::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_name(&mut self, what: &str) -> Result<String, PathError> {
        match self.peek() {
            Some(Token::Name(n)) => {
                let n = n.clone();
                self.pos += 1;
                Ok(n)
            }
            _ => self.err(format!("expected {what}")),
        }
    }

    fn path(&mut self) -> Result<Vec<Segment>, PathError> {
        let mut segments = vec![self.segment()?];
        while self.eat('.') {
            segments.push(self.segment()?);
        }
        if self.pos < self.tokens.len() {
            return self.err("expected `.` and another segment, or the end of the path");
        }
        Ok(segments)
    }

    fn segment(&mut self) -> Result<Segment, PathError> {
        let name = self.expect_name("a field name")?;
        let arguments = if self.eat('(') {
            let mut args = Vec::new();
            while !self.eat(')') {
                if self.peek().is_none() {
                    return self.err("expected `)`");
                }
                let arg = self.expect_name("an argument name")?;
                if !self.eat(':') {
                    return self.err(format!("expected `:` after argument `{arg}`"));
                }
                if args.iter().any(|(a, _)| *a == arg) {
                    return self.err(format!("argument `{arg}` is given twice"));
                }
                args.push((arg, self.value()?));
            }
            Some(args)
        } else {
            None
        };
        Ok(Segment { name, arguments })
    }

    fn value(&mut self) -> Result<PathValue, PathError> {
        let Some(tok) = self.next() else {
            return self.err("expected a value");
        };
        Ok(match tok {
            Token::Int(i) => PathValue::Int(i),
            Token::Float(f) => PathValue::Float(f),
            Token::Str(s) => PathValue::String(s),
            Token::Ref(RefKind::Arguments, n) => PathValue::Argument(n.join(".")),
            Token::Ref(RefKind::Fields, n) => PathValue::Field(n),
            Token::Ref(RefKind::Variables, n) => PathValue::Variable(n.join(".")),
            Token::Name(n) => match n.as_str() {
                "true" => PathValue::Bool(true),
                "false" => PathValue::Bool(false),
                "null" => PathValue::Null,
                _ => PathValue::Enum(n),
            },
            Token::Punct('[') => {
                let mut items = Vec::new();
                while !self.eat(']') {
                    if self.peek().is_none() {
                        return self.err("expected `]`");
                    }
                    items.push(self.value()?);
                }
                PathValue::List(items)
            }
            Token::Punct('{') => {
                let mut fields = Vec::new();
                while !self.eat('}') {
                    if self.peek().is_none() {
                        return self.err("expected `}`");
                    }
                    let name = self.expect_name("a field name in the object")?;
                    if !self.eat(':') {
                        return self.err(format!("expected `:` after `{name}`"));
                    }
                    fields.push((name, self.value()?));
                }
                PathValue::Object(fields)
            }
            Token::Punct(c) => {
                self.pos -= 1;
                return self.err(format!("expected a value, found `{c}`"));
            }
        })
    }
}

/// Parses a delegation path.
pub fn parse_path(src: &str) -> Result<Vec<Segment>, PathError> {
    let tokens = Lexer { src, pos: 0 }.tokens()?;
    if tokens.is_empty() {
        return Err(PathError {
            message: "the path is empty".into(),
            offset: 0,
        });
    }
    Parser {
        tokens,
        pos: 0,
        len: src.len(),
    }
    .path()
}

impl fmt::Display for PathValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathValue::Null => f.write_str("null"),
            PathValue::Bool(b) => write!(f, "{b}"),
            PathValue::Int(i) => write!(f, "{i}"),
            PathValue::Float(x) => write!(f, "{x:?}"),
            PathValue::String(s) => write!(f, "{}", serde_json::Value::String(s.clone())),
            PathValue::Enum(e) => f.write_str(e),
            PathValue::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            PathValue::Object(fields) => {
                f.write_str("{")?;
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
            PathValue::Argument(n) => write!(f, "$arguments:{n}"),
            PathValue::Field(n) => write!(f, "$fields:{}", n.join(".")),
            PathValue::Variable(n) => write!(f, "$variables:{n}"),
        }
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(args) = &self.arguments {
            f.write_str("(")?;
            for (i, (k, v)) in args.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{k}: {v}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(p: &[Segment]) -> String {
        p.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(".")
    }

    #[test]
    fn parses_segments_and_references() {
        let p = parse_path("a(x: $arguments:x).b(y: $fields:id, z: 3)").unwrap();
        assert_eq!(show(&p), "a(x: $arguments:x).b(y: $fields:id, z: 3)");
        assert_eq!(
            p[0].arguments.as_ref().unwrap()[0].1,
            PathValue::Argument("x".into())
        );
    }

    #[test]
    fn segment_without_parentheses_passes_arguments_through() {
        let p = parse_path("pipeline").unwrap();
        assert_eq!(p.len(), 1);
        assert!(p[0].arguments.is_none());
        let p = parse_path("pipeline()").unwrap();
        assert_eq!(p[0].arguments.as_deref(), Some(&[][..]));
    }

    #[test]
    fn literals_with_dots_floats_lists_and_objects() {
        let p = parse_path(
            r#"search(q: "a.b(c)", ratio: -1.5e3, n: -2, tags: [{key: "k.1", value: $fields:v}], level: ERROR, on: true, x: null).items"#,
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        let args = p[0].arguments.as_ref().unwrap();
        assert_eq!(args[0].1, PathValue::String("a.b(c)".into()));
        assert_eq!(args[1].1, PathValue::Float(-1500.0));
        assert_eq!(args[2].1, PathValue::Int(-2));
        assert_eq!(
            args[3].1,
            PathValue::List(vec![PathValue::Object(vec![
                ("key".into(), PathValue::String("k.1".into())),
                ("value".into(), PathValue::Field(vec!["v".into()])),
            ])])
        );
        assert_eq!(args[4].1, PathValue::Enum("ERROR".into()));
        assert_eq!(args[5].1, PathValue::Bool(true));
        assert_eq!(args[6].1, PathValue::Null);
        assert!(args[3].1.has_refs());
        assert!(!args[0].1.has_refs());
    }

    #[test]
    fn field_references_may_name_a_nested_path() {
        let p = parse_path("owner(id: $fields:owner.id, o: {k: $fields:a.b.c}).pets").unwrap();
        let args = p[0].arguments.as_ref().unwrap();
        assert_eq!(
            args[0].1,
            PathValue::Field(vec!["owner".into(), "id".into()])
        );
        assert_eq!(
            show(&p),
            "owner(id: $fields:owner.id, o: {k: $fields:a.b.c}).pets"
        );
        assert_eq!(p[1].name, "pets");
        let e = parse_path("a(x: $fields:owner.)").unwrap_err();
        assert!(e.message.contains("after `.`"), "{e}");
    }

    #[test]
    fn string_escapes() {
        let p = parse_path(r#"f(s: "q\"\\\n\u00e9")"#).unwrap();
        assert_eq!(
            p[0].arguments.as_ref().unwrap()[0].1,
            PathValue::String("q\"\\\né".into())
        );
    }

    #[test]
    fn errors_say_where() {
        let e = parse_path("a(x: $argument:x)").unwrap_err();
        assert!(e.message.contains("unknown reference `$argument`"), "{e}");
        assert_eq!(e.offset, 5);
        let e = parse_path("a(x 1)").unwrap_err();
        assert!(e.message.contains("expected `:` after argument `x`"), "{e}");
        let e = parse_path("a.").unwrap_err();
        assert!(e.message.contains("expected a field name"), "{e}");
        let e = parse_path("a(x: \"open)").unwrap_err();
        assert!(e.message.contains("unterminated string"), "{e}");
        let e = parse_path("a(x: 1, x: 2)").unwrap_err();
        assert!(e.message.contains("given twice"), "{e}");
        let e = parse_path("").unwrap_err();
        assert!(e.message.contains("empty"), "{e}");
        let e = parse_path("a b").unwrap_err();
        assert!(e.message.contains("end of the path"), "{e}");
    }
}
