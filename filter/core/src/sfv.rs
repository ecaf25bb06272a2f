//! The slice of RFC 8941 (Structured Field Values) the verdict header needs: parsing a List
//! (items and inner lists, with parameters) strictly, and serialising Strings and Tokens.
//! Parsing never panics and rejects anything RFC 8941 rejects.

/// A bare item.
#[derive(Clone, Debug, PartialEq)]
pub enum BareItem {
    Integer(i64),
    Decimal(f64),
    String(String),
    Token(String),
    ByteSeq(Vec<u8>),
    Boolean(bool),
}

impl BareItem {
    pub fn as_token(&self) -> Option<&str> {
        match self {
            BareItem::Token(t) => Some(t),
            _ => None,
        }
    }

    pub fn as_string(&self) -> Option<&str> {
        match self {
            BareItem::String(s) => Some(s),
            _ => None,
        }
    }
}

/// One member of a List: an item (or an inner list, whose items are not kept) with parameters,
/// and the member's own text so it can be passed on unchanged.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// `None` for an inner list.
    pub item: Option<BareItem>,
    pub params: Vec<(String, BareItem)>,
    pub text: String,
}

impl Member {
    pub fn param(&self, key: &str) -> Option<&BareItem> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Why a field value was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed;

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn list(&mut self) -> Result<Vec<Member>, Malformed> {
        let mut members = Vec::new();
        self.skip_sp();
        while self.peek().is_some() {
            let start = self.pos;
            let item = if self.peek() == Some(b'(') {
                self.inner_list()?;
                None
            } else {
                Some(self.bare_item()?)
            };
            let params = self.parameters()?;
            let text = String::from_utf8_lossy(self.input.get(start..self.pos).ok_or(Malformed)?);
            members.push(Member {
                item,
                params,
                text: text.into_owned(),
            });
            self.skip_ows();
            match self.bump() {
                None => return Ok(members),
                Some(b',') => {}
                Some(_) => return Err(Malformed),
            }
            self.skip_ows();
            if self.peek().is_none() {
                return Err(Malformed); // trailing comma
            }
        }
        Ok(members)
    }

    fn inner_list(&mut self) -> Result<(), Malformed> {
        self.bump(); // '('
        loop {
            self.skip_sp();
            if self.peek() == Some(b')') {
                self.pos += 1;
                return Ok(());
            }
            self.bare_item()?;
            self.parameters()?;
            match self.peek() {
                Some(b' ' | b')') => {}
                _ => return Err(Malformed),
            }
        }
    }

    fn parameters(&mut self) -> Result<Vec<(String, BareItem)>, Malformed> {
        let mut params: Vec<(String, BareItem)> = Vec::new();
        while self.peek() == Some(b';') {
            self.pos += 1;
            self.skip_sp();
            let key = self.key()?;
            let value = if self.peek() == Some(b'=') {
                self.pos += 1;
                self.bare_item()?
            } else {
                BareItem::Boolean(true)
            };
            // RFC 8941: a repeated key overwrites the earlier value.
            if let Some(slot) = params.iter_mut().find(|(k, _)| *k == key) {
                slot.1 = value;
            } else {
                params.push((key, value));
            }
        }
        Ok(params)
    }

    fn key(&mut self) -> Result<String, Malformed> {
        let start = self.pos;
        match self.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => self.pos += 1,
            _ => return Err(Malformed),
        }
        while matches!(self.peek(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c))
        {
            self.pos += 1;
        }
        self.slice_str(start)
    }

    fn slice_str(&self, start: usize) -> Result<String, Malformed> {
        let bytes = self.input.get(start..self.pos).ok_or(Malformed)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn bare_item(&mut self) -> Result<BareItem, Malformed> {
        match self.peek() {
            Some(c) if c == b'-' || c.is_ascii_digit() => self.number(),
            Some(b'"') => self.string(),
            Some(b':') => self.byte_seq(),
            Some(b'?') => self.boolean(),
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => self.token(),
            _ => Err(Malformed),
        }
    }

    fn number(&mut self) -> Result<BareItem, Malformed> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let digits_start = self.pos;
        let mut dot = None;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                self.pos += 1;
            } else if c == b'.' && dot.is_none() {
                dot = Some(self.pos);
                self.pos += 1;
            } else {
                break;
            }
        }
        let len = self.pos - digits_start;
        let digits = self.input.get(start..self.pos).ok_or(Malformed)?;
        match dot {
            None if (1..=15).contains(&len) => {
                let n = i64::try_from(digit_value(digits)).map_err(|_| Malformed)?;
                Ok(BareItem::Integer(if negative { -n } else { n }))
            }
            Some(d)
                if d > digits_start
                    && d - digits_start <= 12
                    && (1..=3).contains(&(self.pos - d - 1)) =>
            {
                // At most 15 digits: the integer is exact in an f64 and one correctly rounded
                // division by an exact power of ten gives what `str::parse` gives (without
                // pulling core's general float parser and its tables into the module).
                let scale = [10.0, 100.0, 1000.0]
                    .get(self.pos - d - 2)
                    .copied()
                    .ok_or(Malformed)?;
                let magnitude = digit_value(digits) as f64 / scale;
                Ok(BareItem::Decimal(if negative {
                    -magnitude
                } else {
                    magnitude
                }))
            }
            _ => Err(Malformed),
        }
    }

    fn string(&mut self) -> Result<BareItem, Malformed> {
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                Some(b'\\') => match self.bump() {
                    Some(c @ (b'"' | b'\\')) => out.push(char::from(c)),
                    _ => return Err(Malformed),
                },
                Some(b'"') => return Ok(BareItem::String(out)),
                Some(c) if (0x20..0x7f).contains(&c) => out.push(char::from(c)),
                _ => return Err(Malformed),
            }
        }
    }

    fn token(&mut self) -> Result<BareItem, Malformed> {
        let start = self.pos;
        self.pos += 1;
        while matches!(self.peek(), Some(c) if is_tchar(c) || c == b':' || c == b'/') {
            self.pos += 1;
        }
        Ok(BareItem::Token(self.slice_str(start)?))
    }

    fn byte_seq(&mut self) -> Result<BareItem, Malformed> {
        self.bump();
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || b"+/=".contains(&c)) {
            self.pos += 1;
        }
        let raw = self.input.get(start..self.pos).ok_or(Malformed)?.to_vec();
        match self.bump() {
            // Kept as the base64 text: the plugin never needs the decoded bytes.
            Some(b':') => Ok(BareItem::ByteSeq(raw)),
            _ => Err(Malformed),
        }
    }

    fn boolean(&mut self) -> Result<BareItem, Malformed> {
        self.bump();
        match self.bump() {
            Some(b'1') => Ok(BareItem::Boolean(true)),
            Some(b'0') => Ok(BareItem::Boolean(false)),
            _ => Err(Malformed),
        }
    }
}

/// The decimal value of the ASCII digits in `text` (any other byte is skipped; callers pass
/// at most 15 digits).
fn digit_value(text: &[u8]) -> u64 {
    text.iter()
        .filter(|c| c.is_ascii_digit())
        .fold(0, |n, c| n * 10 + u64::from(c - b'0'))
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Parses an RFC 8941 List. An empty value is an empty list.
pub fn parse_list(input: &[u8]) -> Result<Vec<Member>, Malformed> {
    Parser { input, pos: 0 }.list()
}

/// Serialises `text` as an sf-string: printable ASCII only (others become `?`), escaped,
/// at most `max` characters of content.
pub fn push_string(out: &mut String, text: &str, max: usize) {
    out.push('"');
    for c in text.chars().take(max) {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
}

/// True when `text` can be written as an sf-token.
pub fn is_token(text: &str) -> bool {
    let mut bytes = text.bytes();
    matches!(bytes.next(), Some(c) if c.is_ascii_alphabetic() || c == b'*')
        && bytes.all(|c| is_tchar(c) || c == b':' || c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn parses_members_with_parameters() {
        let list =
            parse_list(br#"l4;class=connect_refused;hop="a.b";attempts=3, l7;class=app_error"#)
                .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].item, Some(BareItem::Token("l4".into())));
        assert_eq!(list[0].param("hop"), Some(&BareItem::String("a.b".into())));
        assert_eq!(list[0].param("attempts"), Some(&BareItem::Integer(3)));
        assert_eq!(list[1].text, "l7;class=app_error");
    }

    #[test]
    fn rejects_what_rfc8941_rejects() {
        for bad in [
            &b"l4,"[..],
            b"l4;class=",
            b"\"open",
            b"l4;Class=x",
            b"1234567890123456",
            b"l4 l7",
            b"(a b",
            b"?2",
            b":abc",
            b"l4;x=\"\xff\"",
        ] {
            assert_eq!(
                parse_list(bad),
                Err(Malformed),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn accepts_inner_lists_decimals_and_booleans() {
        let list = parse_list(b"(a b);q=1.5, ?1, :aGk=:, *tok/x").unwrap();
        assert_eq!(list.len(), 4);
        assert!(list[0].item.is_none());
        assert_eq!(list[0].param("q"), Some(&BareItem::Decimal(1.5)));
    }

    #[test]
    fn numbers_read_as_str_parse_reads_them() {
        for text in [
            "0",
            "-0",
            "7",
            "-42",
            "999999999999999",
            "-999999999999999",
            "0.1",
            "-0.0",
            "1.5",
            "0.125",
            "123456789012.999",
            "-123456789012.001",
            "3.14",
            "2.675",
            "0.3",
            "9.99",
        ] {
            let item = parse_list(text.as_bytes()).unwrap()[0].item.clone();
            let expected = if text.contains('.') {
                BareItem::Decimal(text.parse().unwrap())
            } else {
                BareItem::Integer(text.parse().unwrap())
            };
            assert_eq!(item, Some(expected), "{text}");
            if let Some(BareItem::Decimal(d)) = item {
                assert_eq!(
                    d.to_bits(),
                    text.parse::<f64>().unwrap().to_bits(),
                    "{text}"
                );
            }
        }
        for scale in 0..3 {
            for n in (0..200_000u64).step_by(7) {
                let text = match scale {
                    0 => format!("{}.{}", n / 10, n % 10),
                    1 => format!("{}.{:02}", n / 100, n % 100),
                    _ => format!("{}.{:03}", n / 1000, n % 1000),
                };
                let Some(BareItem::Decimal(d)) = parse_list(text.as_bytes()).unwrap()[0].item
                else {
                    panic!("{text}")
                };
                assert_eq!(
                    d.to_bits(),
                    text.parse::<f64>().unwrap().to_bits(),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn strings_are_escaped_and_bounded() {
        let mut out = String::new();
        push_string(&mut out, "a\"b\\c\u{7}é", 100);
        assert_eq!(out, r#""a\"b\\c??""#);
        let mut short = String::new();
        push_string(&mut short, "abcdef", 3);
        assert_eq!(short, "\"abc\"");
        assert!(parse_list(out.as_bytes()).is_ok());
    }
}
