//! The Composite Schemas `FieldSelectionMap` of `@is(field:)` and
//! `@require(field:)`: `id`, `owner.id`, `{ a: x, b: y.z }`, `dim.{ w, h }`,
//! `parts[id]`, and `|` alternatives. Each map becomes a path value
//! (`$fields:` references inside literals), the same shape stitching paths
//! use, so one executor builds every argument.

use super::path::PathValue;

/// A map that does not parse, or uses a form this gateway does not take.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} (at character {offset} of `{text}`)")]
pub struct MapError {
    pub message: String,
    pub offset: usize,
    pub text: String,
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err<T>(&self, message: impl Into<String>) -> Result<T, MapError> {
        Err(MapError {
            message: message.into(),
            offset: self.pos,
            text: self.src.to_owned(),
        })
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.src[self.pos..].chars().next() {
            if c.is_whitespace() || c == ',' {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.src[self.pos..].chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn name(&mut self) -> Result<String, MapError> {
        self.skip_ws();
        let start = self.pos;
        for (i, c) in self.src[start..].char_indices() {
            let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
            if !ok {
                break;
            }
            self.pos = start + i + c.len_utf8();
        }
        if self.pos == start {
            return self.err("expected a field name");
        }
        Ok(self.src[start..self.pos].to_owned())
    }

    fn alternatives(&mut self) -> Result<Vec<PathValue>, MapError> {
        let mut out = vec![self.value(&[])?];
        while self.eat('|') {
            out.push(self.value(&[])?);
        }
        if self.peek().is_some() {
            return self.err("expected `|` or the end of the map");
        }
        Ok(out)
    }

    /// A value whose paths start at `scope` (`dim.{ w }` scopes `w` to `dim`).
    fn value(&mut self, scope: &[String]) -> Result<PathValue, MapError> {
        match self.peek() {
            Some('{') => self.object(scope),
            Some('<') => self.err("type conditions (`<Type>`) are not supported in selection maps"),
            Some(_) => {
                let mut path = scope.to_vec();
                path.push(self.name()?);
                loop {
                    if self.eat('.') {
                        if self.peek() == Some('{') {
                            return self.object(&path);
                        }
                        path.push(self.name()?);
                    } else if self.eat('[') {
                        // `parts[id]`: a list of each item's `id`; lists are walked.
                        let inner = self.value(&path)?;
                        if !self.eat(']') {
                            return self.err("expected `]`");
                        }
                        return match inner {
                            PathValue::Field(p) => Ok(PathValue::Field(p)),
                            _ => self.err("a list of input objects (`parts[{ ... }]`) is not supported; select one field per list"),
                        };
                    } else if self.peek() == Some('(') {
                        return self.err("field arguments are not supported in selection maps");
                    } else {
                        return Ok(PathValue::Field(path));
                    }
                }
            }
            None => self.err("expected a field name or `{`"),
        }
    }

    fn object(&mut self, scope: &[String]) -> Result<PathValue, MapError> {
        if !self.eat('{') {
            return self.err("expected `{`");
        }
        let mut fields = Vec::new();
        while !self.eat('}') {
            if self.peek().is_none() {
                return self.err("expected `}`");
            }
            let key = self.name()?;
            let value = if self.eat(':') {
                self.value(scope)?
            } else {
                let mut path = scope.to_vec();
                path.push(key.clone());
                PathValue::Field(path)
            };
            fields.push((key, value));
        }
        Ok(PathValue::Object(fields))
    }
}

/// Parses a selection map into its alternatives.
pub fn parse_map(src: &str) -> Result<Vec<PathValue>, MapError> {
    Parser { src, pos: 0 }.alternatives()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(p: &[&str]) -> PathValue {
        PathValue::Field(p.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn paths_objects_scopes_lists_and_alternatives() {
        assert_eq!(parse_map("id").unwrap(), vec![field(&["id"])]);
        assert_eq!(
            parse_map("address.id").unwrap(),
            vec![field(&["address", "id"])]
        );
        assert_eq!(
            parse_map("{ w: width, h: dim.height }").unwrap(),
            vec![PathValue::Object(vec![
                ("w".into(), field(&["width"])),
                ("h".into(), field(&["dim", "height"]))
            ])]
        );
        assert_eq!(
            parse_map("dim.{ width, height }").unwrap(),
            vec![PathValue::Object(vec![
                ("width".into(), field(&["dim", "width"])),
                ("height".into(), field(&["dim", "height"]))
            ])]
        );
        assert_eq!(
            parse_map("parts[id]").unwrap(),
            vec![field(&["parts", "id"])]
        );
        assert_eq!(
            parse_map("{ id } | { addressId: address.id }")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn unsupported_forms_say_so() {
        assert!(parse_map("<Book>.isbn")
            .unwrap_err()
            .message
            .contains("type conditions"));
        assert!(parse_map("parts[{ id }]")
            .unwrap_err()
            .message
            .contains("not supported"));
        assert!(parse_map("w(unit: X)")
            .unwrap_err()
            .message
            .contains("arguments"));
        assert!(parse_map("{ a: b").unwrap_err().message.contains("`}`"));
    }
}
