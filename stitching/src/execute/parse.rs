//! A subgraph's answer, parsed into the arena.
//!
//! Written here rather than taken from a crate, as measured: `sonic-rs`
//! through serde, and `simd-json`'s tape turned into [`Value`]s, each spent
//! about a third of the `nested` execution's instructions on parsing (the
//! execute bench), most of it in the visitor calls or in the second pass
//! over the tape. Parsing straight into arena values needs neither.
//!
//! It reads JSON as `serde_json` reads it: the same numbers (`-0` is a float,
//! integers past 64 bits are floats, a float out of range is an error), the
//! same strictness (no trailing commas, no control characters in strings, no
//! lone surrogates), and UTF-8 checked once for the whole text. Nesting is
//! bounded, so an answer cannot exhaust the stack.

use std::fmt;

use serde_json::Number;

use super::tree::{Alloc, Map, Value};

/// Objects and lists nested deeper than this are an error.
const MAX_DEPTH: u32 = 254;

/// Why an answer is not JSON, and where.
#[derive(Debug)]
pub(crate) struct ParseError {
    what: &'static str,
    line: usize,
    column: usize,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.what, self.line, self.column
        )
    }
}

impl std::error::Error for ParseError {}

/// `text` as a `str`, or where its first byte that is not UTF-8 is.
/// Checked with SIMD: answers are tens of kilobytes.
pub(crate) fn utf8(text: &[u8]) -> Result<&str, ParseError> {
    simdutf8::basic::from_utf8(text).map_err(|_| {
        let at = std::str::from_utf8(text).map_or_else(|e| e.valid_up_to(), |_| 0);
        error_at(text, at, "bytes that are not UTF-8")
    })
}

/// Parses `text` (strings are slices of it, so it lives as long as the
/// arena), each object with `room` free entries after its own.
pub(super) fn parse<'h>(
    text: &'h str,
    alloc: &Alloc<'h>,
    room: usize,
) -> Result<Value<'h>, ParseError> {
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        depth: 0,
        failure: "",
        alloc,
        room,
        // Sized from the answer's length, so that the stacks seldom grow
        // while it is read (a list of N objects holds N items at once).
        entries: Vec::with_capacity((text.len() / 256).clamp(8, 64)),
        items: Vec::with_capacity((text.len() / 64).clamp(8, 256)),
    };
    let value = parser.value::<false>("").and_then(|()| {
        parser.skip_whitespace();
        match parser.items.pop() {
            Some(value) if parser.pos == parser.bytes.len() => Ok(value),
            _ => Err(parser.fail("trailing characters")),
        }
    });
    value.map_err(|Failed| error_at(parser.bytes, parser.pos, parser.failure))
}

/// Parsing stopped: the parser holds why and where. Small, so a result is
/// no larger than its value.
struct Failed;

type Parsed<T> = Result<T, Failed>;

/// `what` at byte `at` of `text`, as a line and column.
fn error_at(text: &[u8], at: usize, what: &'static str) -> ParseError {
    let before = &text[..at.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    ParseError { what, line, column }
}

/// Bytes that end the plain run of a string: its closing quote, an escape,
/// or a control character (an error).
static STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// How many bytes `text` starts with that a JSON string holds as they are
/// (no quote, backslash or control character): eight at a time while
/// eight are left. Parsing a string asks.
#[inline(always)]
pub(crate) fn plain_len(text: &[u8]) -> usize {
    let mut words = text.chunks_exact(8);
    let mut len = 0;
    for word in &mut words {
        let stops = stops(u64::from_le_bytes(word.try_into().unwrap_or_default()));
        if stops != 0 {
            return len + (stops.trailing_zeros() / 8) as usize;
        }
        len += 8;
    }
    let rest = words.remainder();
    len + rest
        .iter()
        .take_while(|&&b| !STRING_STOP[b as usize])
        .count()
}

/// Whether a string needs no escaping as JSON (`plain_len` is its
/// length): a word at a time, the last word overlapping the one before
/// rather than a byte at a time for the tail (a 36-byte id has four).
#[inline(always)]
pub(crate) fn is_plain(text: &[u8]) -> bool {
    let Some(last) = text.len().checked_sub(8) else {
        return !text.iter().any(|&b| STRING_STOP[b as usize]);
    };
    let word = |at: usize| u64::from_le_bytes(text[at..at + 8].try_into().unwrap_or_default());
    (0..last).step_by(8).all(|at| stops(word(at)) == 0) && stops(word(last)) == 0
}

/// The high bit of each byte of `word` that ends a plain run (a quote, a
/// backslash or a control character). Exact for the lowest such byte, which
/// is all a reader needs: a borrow can only mark bytes above a true one.
fn stops(word: u64) -> u64 {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    zero_in(word ^ (ONES * u64::from(b'"')))
        | zero_in(word ^ (ONES * u64::from(b'\\')))
        | below_space
}

struct Parser<'h, 'a> {
    text: &'h str,
    bytes: &'h [u8],
    pos: usize,
    depth: u32,
    /// Why parsing stopped, at `pos`.
    failure: &'static str,
    alloc: &'a Alloc<'h>,
    /// Entries and items of the objects and lists being parsed, as stacks:
    /// each is moved into a slice of its size (and an object's `room`)
    /// when complete.
    entries: Vec<(&'h str, Value<'h>)>,
    items: Vec<Value<'h>>,
    /// Free entries each object gets after its own (see
    /// `Value::parse`).
    room: usize,
}

impl<'h> Parser<'h, '_> {
    #[cold]
    fn fail(&mut self, what: &'static str) -> Failed {
        self.failure = what;
        Failed
    }

    /// The next byte, or 0 at the end (never valid where a byte is read).
    fn peek(&self) -> u8 {
        self.bytes.get(self.pos).copied().unwrap_or(0)
    }

    /// The next byte that is not whitespace, moved to. Answers are mostly
    /// compact: one look says there is nothing to skip.
    #[inline(always)]
    fn token(&mut self) -> u8 {
        let b = self.peek();
        if b > b' ' {
            return b;
        }
        self.skip_whitespace();
        self.peek()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), b' ' | b'\n' | b'\r' | b'\t') {
            self.pos += 1;
        }
    }

    /// A value, pushed where it belongs: with `key` onto the entries of
    /// the object being parsed (`ENTRY`), or onto the items of the list.
    /// Values are pushed, not returned, so that each is written once where
    /// it lands: a returned value was copied through the stack, and the
    /// wide loads of that copy stalled on its narrow stores (a third of
    /// the parser's time, as measured). Only objects and lists are calls
    /// of their own, so parsing a scalar costs no call.
    #[inline(always)]
    fn value<const ENTRY: bool>(&mut self, key: &'h str) -> Parsed<()> {
        let value = match self.token() {
            b'"' => {
                self.pos += 1;
                Value::String(self.string()?)
            }
            b'{' => return self.nested(key, Self::object::<ENTRY>),
            b'[' => return self.nested(key, Self::array::<ENTRY>),
            b't' => self.literal("true", Value::Bool(true))?,
            b'f' => self.literal("false", Value::Bool(false))?,
            b'n' => self.literal("null", Value::Null)?,
            b'-' | b'0'..=b'9' => Value::Number(self.number()?),
            0 if self.pos == self.bytes.len() => {
                return Err(self.fail("the text ends where a value should be"))
            }
            _ => return Err(self.fail("expected a value")),
        };
        self.put::<ENTRY>(key, value);
        Ok(())
    }

    #[inline(always)]
    fn put<const ENTRY: bool>(&mut self, key: &'h str, value: Value<'h>) {
        if ENTRY {
            self.entries.push((key, value));
        } else {
            self.items.push(value);
        }
    }

    /// Parses an object or a list one level deeper, within the bound.
    fn nested(&mut self, key: &'h str, parse: fn(&mut Self, &'h str) -> Parsed<()>) -> Parsed<()> {
        if self.depth == MAX_DEPTH {
            return Err(self.fail("nesting deeper than 254 levels"));
        }
        self.depth += 1;
        self.pos += 1;
        parse(self, key)?;
        self.depth -= 1;
        Ok(())
    }

    #[inline(never)]
    fn object<const ENTRY: bool>(&mut self, key: &'h str) -> Parsed<()> {
        if self.token() == b'}' {
            self.pos += 1;
            self.put::<ENTRY>(key, Value::Object(Map::new()));
            return Ok(());
        }
        let start = self.entries.len();
        loop {
            if self.token() != b'"' {
                return Err(self.fail("expected a key"));
            }
            self.pos += 1;
            let name = self.string()?;
            if self.token() != b':' {
                return Err(self.fail("expected `:`"));
            }
            self.pos += 1;
            self.value::<true>(name)?;
            match self.token() {
                b',' => self.pos += 1,
                b'}' => break,
                _ => return Err(self.fail("expected `,` or `}`")),
            }
        }
        self.pos += 1;
        // Moved one by one into a slice filled once. With four-word values
        // a slice swap (defaults written, then swapped) was faster, as
        // moves went through the stack and stalled; with three-word ones
        // the moves are in registers, and the swap's extra pass costs more
        // (execute bench: 0.9% fewer instructions for `nested`, 1.5%
        // less time).
        let parsed = &mut self.entries[start..];
        let Ok(len) = u32::try_from(parsed.len()) else {
            return Err(self.fail("an object of more than 4294967295 entries"));
        };
        let n = parsed.len();
        let mut moved = parsed.iter_mut();
        let entries = self.alloc.alloc_slice_fill_with(n + self.room, |_| {
            moved.next().map(std::mem::take).unwrap_or_default()
        });
        self.entries.truncate(start);
        self.put::<ENTRY>(key, Value::Object(Map::from_entries(entries, len)));
        Ok(())
    }

    #[inline(never)]
    fn array<const ENTRY: bool>(&mut self, key: &'h str) -> Parsed<()> {
        if self.token() == b']' {
            self.pos += 1;
            self.put::<ENTRY>(key, Value::Array(Default::default()));
            return Ok(());
        }
        let start = self.items.len();
        loop {
            self.value::<false>("")?;
            match self.token() {
                b',' => self.pos += 1,
                b']' => break,
                _ => return Err(self.fail("expected `,` or `]`")),
            }
        }
        self.pos += 1;
        let parsed = &mut self.items[start..];
        let n = parsed.len();
        let mut moved = parsed.iter_mut();
        let items = self
            .alloc
            .alloc_slice_fill_with(n, |_| moved.next().map(std::mem::take).unwrap_or_default());
        self.items.truncate(start);
        self.put::<ENTRY>(key, Value::Array(items));
        Ok(())
    }

    fn literal(&mut self, word: &str, value: Value<'h>) -> Parsed<Value<'h>> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.fail("expected a value"))
        }
    }

    /// A string's text, from just after its opening quote: a slice of the
    /// answer, or a copy when it has escapes.
    #[inline(always)]
    fn string(&mut self) -> Parsed<&'h str> {
        let start = self.pos;
        self.skip_plain();
        match self.peek() {
            b'"' => {
                let s = &self.text[start..self.pos];
                self.pos += 1;
                Ok(s)
            }
            b'\\' => self.escaped(start),
            _ if self.pos == self.bytes.len() => Err(self.fail("a string that does not end")),
            _ => Err(self.fail("a control character in a string")),
        }
    }

    /// Moves past bytes that need nothing done.
    #[inline(always)]
    fn skip_plain(&mut self) {
        self.pos += plain_len(&self.bytes[self.pos..]);
    }

    /// The rest of a string with escapes, from `start`, copied unescaped.
    #[cold]
    #[inline(never)]
    fn escaped(&mut self, start: usize) -> Parsed<&'h str> {
        let mut out = String::from(&self.text[start..self.pos]);
        loop {
            match self.peek() {
                b'"' => {
                    self.pos += 1;
                    return Ok(self.alloc.alloc_str(&out));
                }
                b'\\' => {
                    self.pos += 1;
                    out.push(self.escape()?);
                }
                _ if self.pos == self.bytes.len() => {
                    return Err(self.fail("a string that does not end"))
                }
                _ => return Err(self.fail("a control character in a string")),
            }
            let run = self.pos;
            self.skip_plain();
            out.push_str(&self.text[run..self.pos]);
        }
    }

    /// One escape, from just after its backslash.
    fn escape(&mut self) -> Parsed<char> {
        let c = match self.peek() {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                self.pos += 1;
                return self.unicode_escape();
            }
            _ => return Err(self.fail("an invalid escape")),
        };
        self.pos += 1;
        Ok(c)
    }

    /// `XXXX` of `\uXXXX`, or a surrogate pair `XXXX\uXXXX`.
    fn unicode_escape(&mut self) -> Parsed<char> {
        let high = self.hex4()?;
        let code = match high {
            0xD800..=0xDBFF => {
                if !self.bytes[self.pos..].starts_with(b"\\u") {
                    return Err(self.fail("a lone leading surrogate in a `\\u` escape"));
                }
                self.pos += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(self.fail("a leading surrogate without its trailing one"));
                }
                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.fail("a lone trailing surrogate in a `\\u` escape")),
            _ => high,
        };
        char::from_u32(code).ok_or_else(|| self.fail("an invalid `\\u` escape"))
    }

    fn hex4(&mut self) -> Parsed<u32> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.fail("a `\\u` escape without four hex digits"))?;
        let mut code = 0;
        for &d in digits {
            let digit = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.fail("a `\\u` escape without four hex digits"))?;
            code = code * 16 + digit;
        }
        self.pos += 4;
        Ok(code)
    }

    /// A number as `serde_json` reads it: integers that fit 64 bits as
    /// integers (but `-0`), everything else as a finite float.
    #[inline(never)]
    fn number(&mut self) -> Parsed<Number> {
        let start = self.pos;
        let negative = self.peek() == b'-';
        if negative {
            self.pos += 1;
        }
        let mut magnitude: Option<u64> = Some(0);
        match self.peek() {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                while let d @ b'0'..=b'9' = self.peek() {
                    magnitude = magnitude
                        .and_then(|m| m.checked_mul(10))
                        .and_then(|m| m.checked_add(u64::from(d - b'0')));
                    self.pos += 1;
                }
            }
            _ => return Err(self.fail("expected a digit")),
        }
        let mut integer = true;
        if self.peek() == b'.' {
            self.pos += 1;
            self.digits()?;
            integer = false;
        }
        if matches!(self.peek(), b'e' | b'E') {
            self.pos += 1;
            if matches!(self.peek(), b'+' | b'-') {
                self.pos += 1;
            }
            self.digits()?;
            integer = false;
        }
        let number = match (integer, magnitude, negative) {
            (true, Some(m), false) => Some(Number::from(m)),
            (true, Some(m), true) if m != 0 && m <= 1 << 63 => {
                Some(Number::from((m as i64).wrapping_neg()))
            }
            _ => self.text[start..self.pos]
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64),
        };
        number.ok_or_else(|| self.fail("a number out of range"))
    }

    /// One digit or more.
    fn digits(&mut self) -> Parsed<()> {
        if !self.peek().is_ascii_digit() {
            return Err(self.fail("expected a digit"));
        }
        while self.peek().is_ascii_digit() {
            self.pos += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execute::tree::Arena;

    /// `text` checked, copied into the arena and parsed.
    fn parse<'h>(text: &[u8], alloc: &Alloc<'h>, room: usize) -> Result<Value<'h>, ParseError> {
        super::parse(alloc.alloc_str(utf8(text)?), alloc, room)
    }

    fn read(text: &str) -> Result<String, String> {
        let arena = Arena::new();
        let alloc = arena.get();
        parse(text.as_bytes(), &alloc, 0)
            .map(|v| v.to_string())
            .map_err(|e| e.to_string())
    }

    /// The eight-at-a-time scan stops at the first quote, backslash or
    /// control character wherever it falls in a word, and nowhere else.
    #[test]
    fn strings_end_at_their_first_quote_escape_or_control_wherever_it_falls() {
        for len in 0..24 {
            for at in 0..len {
                for (stop, escaped) in [("\\\"", "\""), ("\\\\", "\\"), ("\\n", "\n"), ("é", "é")]
                {
                    let mut raw = "x".repeat(len);
                    raw.replace_range(at..at + 1, stop);
                    let text = format!("[\"{raw}\",\"{raw}\"]");
                    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(read(&text).unwrap(), expected.to_string(), "{text}");
                    assert!(expected[0].as_str().unwrap().contains(escaped));
                }
                let mut raw = "y".repeat(len);
                raw.replace_range(at..at + 1, "\u{1}");
                assert!(read(&format!("\"{raw}\"")).is_err(), "{raw:?}");
            }
        }
    }

    /// The word-at-a-time check of a whole string says what the scan
    /// says, for a byte that needs escaping anywhere in any length.
    #[test]
    fn strings_need_escaping_where_the_scan_stops_short_of_their_end() {
        for len in 0..40 {
            let plain = vec![b'x'; len];
            assert!(is_plain(&plain));
            for at in 0..len {
                for stop in [b'"', b'\\', b'\n', 0x1f, 0x00, 0x20, 0x7f, 0xc3] {
                    let mut text = plain.clone();
                    text[at] = stop;
                    assert_eq!(is_plain(&text), plain_len(&text) == len, "{text:?}");
                }
            }
        }
    }

    #[test]
    fn unicode_escapes_read_as_characters_and_lone_surrogates_are_errors() {
        assert_eq!(read(r#""\u00e9\ud83d\ude00\/""#).unwrap(), "\"é😀/\"");
        for (text, why) in [
            (r#""\ud83d""#, "a lone leading surrogate"),
            (r#""\ude00x""#, "a lone trailing surrogate"),
            (
                r#""\ud83d\u0041""#,
                "a leading surrogate without its trailing one",
            ),
            (r#""\u12""#, "a `\\u` escape without four hex digits"),
            (r#""\x""#, "an invalid escape"),
        ] {
            let error = read(text).unwrap_err();
            assert!(error.starts_with(why), "{text}: {error}");
        }
    }

    /// An answer that is not JSON says what is wrong and where, so the
    /// subgraph's owner can find it.
    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(
            read("{\"a\":1,}").unwrap_err(),
            "expected a key at line 1 column 8"
        );
        assert_eq!(
            read("{\n  \"a\": [1 2]\n}").unwrap_err(),
            "expected `,` or `]` at line 2 column 11"
        );
        assert_eq!(
            read("[\"ok\", \"\u{7f}\", \"a\u{2}\"]").unwrap_err(),
            "a control character in a string at line 1 column 15"
        );
        assert_eq!(
            read("{} x").unwrap_err(),
            "trailing characters at line 1 column 4"
        );
        assert_eq!(
            read("[").unwrap_err(),
            "the text ends where a value should be at line 1 column 2"
        );
        let arena = Arena::new();
        let error = parse(b"[\"ab\xffc\"]", &arena.get(), 0).unwrap_err();
        assert_eq!(
            error.to_string(),
            "bytes that are not UTF-8 at line 1 column 5"
        );
    }

    /// Answers broken at random (seeded, so a failure repeats) parse
    /// exactly when serde_json parses them, to the same value, and none
    /// makes the parser panic.
    #[test]
    fn broken_answers_fail_where_serde_json_fails_and_never_panic() {
        let answers = [
            r#"{"data":{"a":[1,-2.5e3,"x\"y\u00e9",null,true,false],"b":{"c":{},"d":[]}}}"#,
            r#"[{"id":"p1","name":"pipeline p1","tags":[{"key":"k","value":"v"}]},{"id":"p2"}]"#,
            r#"{"n":[0,-0,12345678901234567890,1e-7,3.25],"s":"\ud83d\ude00 tab\t"}"#,
        ];
        let pieces = [
            "{", "}", "[", "]", ",", ":", "\"", "\\", "0", "-", "e", ".", " ", "\u{1}", "é", "nul",
            "true", "\\u", "d8",
        ];
        let mut rng = fastrand::Rng::with_seed(10);
        for round in 0..20_000 {
            let mut text = answers[rng.usize(..answers.len())].as_bytes().to_vec();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..=text.len());
                match rng.u8(..3) {
                    0 if at < text.len() => {
                        text.remove(at);
                    }
                    1 => {
                        let piece = pieces[rng.usize(..pieces.len())];
                        text.splice(at..at, piece.bytes());
                    }
                    _ if at < text.len() => text[at] = rng.u8(..),
                    _ => {}
                }
            }
            let arena = Arena::new();
            let ours = parse(&text, &arena.get(), 0).map(|v| serde_json::to_value(&v).unwrap());
            let theirs = serde_json::from_slice::<serde_json::Value>(&text);
            let shown = String::from_utf8_lossy(&text);
            match (ours, theirs) {
                (Ok(a), Ok(b)) => assert!(same(&a, &b), "{round}: {shown}: {a} against {b}"),
                (Err(_), Err(_)) => {}
                (a, b) => panic!("{round}: {shown}: ours {a:?}, serde_json {b:?}"),
            }
        }
    }

    /// JSON equality, floats within rounding (serde_json's float parsing
    /// may differ from the standard library's in the last bit).
    fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
        use serde_json::Value as V;
        match (a, b) {
            (V::Number(x), V::Number(y)) if x.is_f64() || y.is_f64() => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
            }
            (V::Array(x), V::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
            }
            (V::Object(x), V::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
            }
            _ => a == b,
        }
    }
}
