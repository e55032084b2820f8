//! A strict JSON (RFC 8259) reader that keeps where every value lies in the text.
//!
//! The structural merge needs more than a value: it copies untouched values byte for byte (so a
//! number keeps `1.50`, a string keeps its escapes) and it reads the file's style (indentation,
//! separators) from the text. Scalars are kept as their exact text and compared as text. Objects
//! with a repeated key and nesting deeper than [`MAX_DEPTH`] are refused, so the merge never has
//! to guess which of two keys counts, and a deep document cannot exhaust the stack: a refused
//! document is merged line by line instead.

use std::ops::Range;

/// The deepest nesting of arrays and objects the reader accepts.
pub const MAX_DEPTH: usize = 128;

/// A parsed JSON value and the byte range of its text.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    pub span: Range<usize>,
    pub value: Value<'a>,
}

#[derive(Debug, Clone)]
pub enum Value<'a> {
    /// A string, number, `true`, `false` or `null`, as written.
    Scalar(&'a str),
    Array(Vec<Node<'a>>),
    Object(Vec<Member<'a>>),
}

/// One `"key": value` of an object.
#[derive(Debug, Clone)]
pub struct Member<'a> {
    /// The key as written, quotes and escapes included.
    pub raw_key: &'a str,
    /// The key's decoded text: what identifies the member.
    pub key: String,
    pub node: Node<'a>,
}

impl Node<'_> {
    /// Equality of content: scalars by text, objects member by member in order, arrays element
    /// by element; whitespace does not count.
    pub fn same(&self, other: &Node<'_>) -> bool {
        match (&self.value, &other.value) {
            (Value::Scalar(a), Value::Scalar(b)) => a == b,
            (Value::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.same(b))
            }
            (Value::Object(a), Value::Object(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(a, b)| a.key == b.key && a.node.same(&b.node))
            }
            _ => false,
        }
    }
}

/// Why a text is not JSON the merge can work on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub offset: usize,
}

/// A whole document: one value with optional whitespace around it.
#[derive(Debug, Clone)]
pub struct Document<'a> {
    pub text: &'a str,
    pub root: Node<'a>,
}

pub fn parse(text: &str) -> Result<Document<'_>, ParseError> {
    let mut reader = Reader { text, at: 0 };
    reader.skip_whitespace();
    let root = reader.value(0)?;
    reader.skip_whitespace();
    if reader.at != text.len() {
        return Err(reader.error());
    }
    Ok(Document { text, root })
}

struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn error(&self) -> ParseError {
        ParseError { offset: self.at }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), ParseError> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node<'a>, ParseError> {
        let start = self.at;
        let value = match self.peek() {
            Some(b'{') => self.object(depth + 1)?,
            Some(b'[') => self.array(depth + 1)?,
            Some(b'"') => {
                self.string()?;
                Value::Scalar(&self.text[start..self.at])
            }
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                Value::Scalar(&self.text[start..self.at])
            }
            _ => {
                let rest = &self.text[start..];
                let literal = ["true", "false", "null"]
                    .into_iter()
                    .find(|literal| rest.starts_with(literal))
                    .ok_or_else(|| self.error())?;
                self.at += literal.len();
                Value::Scalar(literal)
            }
        };
        Ok(Node {
            span: start..self.at,
            value,
        })
    }

    fn object(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.error());
        }
        self.at += 1;
        let mut members: Vec<Member<'a>> = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Value::Object(members));
        }
        let mut keys = std::collections::HashSet::new();
        loop {
            self.skip_whitespace();
            let key_start = self.at;
            let key = self.string()?;
            if !keys.insert(key.clone()) {
                return Err(ParseError { offset: key_start });
            }
            let raw_key = &self.text[key_start..self.at];
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            let node = self.value(depth)?;
            members.push(Member { raw_key, key, node });
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.error()),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.error());
        }
        self.at += 1;
        let mut elements = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Value::Array(elements));
        }
        loop {
            self.skip_whitespace();
            elements.push(self.value(depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Value::Array(elements));
                }
                _ => return Err(self.error()),
            }
        }
    }

    /// Reads a string and returns its decoded text.
    fn string(&mut self) -> Result<String, ParseError> {
        self.expect(b'"')?;
        let mut decoded = String::new();
        loop {
            let rest = &self.text[self.at..];
            let Some(character) = rest.chars().next() else {
                return Err(self.error());
            };
            match character {
                '"' => {
                    self.at += 1;
                    return Ok(decoded);
                }
                '\\' => {
                    self.at += 1;
                    let escaped = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.at += 1;
                            let unit = self.hex4()?;
                            // A surrogate pair is two escapes; a lone surrogate decodes to the
                            // replacement character (as many readers do) but stays in the text.
                            let code = if (0xD800..0xDC00).contains(&unit)
                                && self.text[self.at..].starts_with("\\u")
                            {
                                let save = self.at;
                                self.at += 2;
                                let low = self.hex4()?;
                                if (0xDC00..0xE000).contains(&low) {
                                    0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                                } else {
                                    self.at = save;
                                    unit
                                }
                            } else {
                                unit
                            };
                            decoded.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
                            continue;
                        }
                        _ => return Err(self.error()),
                    };
                    self.at += 1;
                    decoded.push(escaped);
                }
                control if (control as u32) < 0x20 => return Err(self.error()),
                other => {
                    self.at += other.len_utf8();
                    decoded.push(other);
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let digits = self
            .text
            .get(self.at..self.at + 4)
            .filter(|digits| digits.bytes().all(|byte| byte.is_ascii_hexdigit()))
            .ok_or_else(|| self.error())?;
        let value = u32::from_str_radix(digits, 16).map_err(|_| self.error())?;
        self.at += 4;
        Ok(value)
    }

    fn number(&mut self) -> Result<(), ParseError> {
        let digits = |reader: &mut Self| {
            let start = reader.at;
            while matches!(reader.peek(), Some(b'0'..=b'9')) {
                reader.at += 1;
            }
            reader.at - start
        };
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.error()),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return Err(self.error());
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if digits(self) == 0 {
                return Err(self.error());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_json_and_keeps_scalars_as_written() {
        let document = parse(" {\"a\": [1.50, -0, 2e+3, true, null, \"\\u00e9\\n\"]} \n").unwrap();
        let Value::Object(members) = &document.root.value else {
            panic!("not an object");
        };
        let Value::Array(elements) = &members[0].node.value else {
            panic!("not an array");
        };
        let texts: Vec<&str> = elements
            .iter()
            .map(|node| match node.value {
                Value::Scalar(text) => text,
                _ => panic!("not a scalar"),
            })
            .collect();
        assert_eq!(
            texts,
            ["1.50", "-0", "2e+3", "true", "null", "\"\\u00e9\\n\""]
        );
        assert_eq!(document.root.span, 1..document.text.len() - 2);
    }

    #[test]
    fn refuses_what_is_not_json_or_is_ambiguous() {
        for text in [
            "",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "1.",
            "-",
            "\"\u{1}\"",
            "\"\\x\"",
            "tru",
            "{\"a\":1,\"a\":2}",
            "{\"a\":1,\"\\u0061\":2}",
            "1 2",
            "\u{feff}{}",
        ] {
            assert!(parse(text).is_err(), "{text:?} was accepted");
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&deep).is_ok());
        let deeper = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(parse(&deeper).is_err());
    }
}
