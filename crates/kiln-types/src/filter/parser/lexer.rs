//! A hand-rolled, context-driven lexer for the filter language.
//!
//! The grammar is small enough that the parser asks the [`Cursor`] for the kind of token it
//! expects next (a key, a comparator, a value, a keyword); this avoids ambiguities such as
//! `metrics.a=-1` (is `-1` part of the key?) that a context-free tokenizer would have to solve.

use crate::filter::{Comparator, FilterError};

/// A key as written: `prefix.name`, `` prefix.`quoted name` `` or a bare (possibly quoted) name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawKey {
    /// The entity prefix (`metrics`, `tag`, ...) as written; `None` for a bare name.
    pub(super) prefix: Option<String>,
    /// The name after the prefix, with quotes removed.
    pub(super) name: String,
    /// The key exactly as written, for error messages.
    pub(super) text: String,
}

/// A value as written, before it is checked against the key it is compared with.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Literal {
    /// A number; `text` is the literal as written (used where a string key accepts a number).
    Number { value: f64, text: String },
    /// A 'single-quoted' string, unescaped.
    Str(String),
    /// A parenthesised list of strings (numbers keep their literal text).
    List(Vec<String>),
}

/// Characters of an unquoted identifier (key or keyword).
fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':')
}

/// Characters of a symbolic comparator such as `<=` or `!=`.
fn is_operator_char(c: char) -> bool {
    matches!(c, '=' | '!' | '<' | '>')
}

/// Characters that end an unquoted value (a number or a bare word).
fn ends_bare_value(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | ',' | '\'' | '"' | '`')
}

/// The error for a clause that is not `<key> <comparator> <value>` (OR, parentheses, ...).
pub(super) fn invalid_clause(token: &str) -> FilterError {
    FilterError(format!("Invalid clause(s) in filter string: '{token}'"))
}

/// A position in the input string.
#[derive(Debug)]
pub(super) struct Cursor<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    /// The unread input.
    pub(super) fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    pub(super) fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Consume characters while `pred` holds and return them.
    fn take_while(&mut self, pred: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c: char| !pred(c)).unwrap_or(rest.len());
        self.pos += len;
        rest.get(..len).unwrap_or("")
    }

    pub(super) fn skip_ws(&mut self) {
        self.take_while(char::is_whitespace);
    }

    pub(super) fn at_end(&self) -> bool {
        self.rest().is_empty()
    }

    /// The unquoted identifier at the cursor, without consuming it.
    pub(super) fn peek_ident(&self) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c: char| !is_ident_char(c)).unwrap_or(rest.len());
        rest.get(..len).unwrap_or("")
    }

    /// Consume the identifier at the cursor if it equals `keyword` (case-insensitively).
    pub(super) fn eat_keyword(&mut self, keyword: &str) -> bool {
        let word = self.peek_ident();
        let matched = word.eq_ignore_ascii_case(keyword);
        if matched {
            self.pos += word.len();
        }
        matched
    }

    /// The token at the cursor as text, for error messages: a word, a parenthesis, or the run of
    /// non-blank characters.
    pub(super) fn peek_token_text(&self) -> &'a str {
        let rest = self.rest();
        match rest.chars().next() {
            Some(c @ ('(' | ')')) => rest.get(..c.len_utf8()).unwrap_or(rest),
            Some(c) if c.is_ascii_alphabetic() => self.peek_ident(),
            _ => rest.split(char::is_whitespace).next().unwrap_or(rest),
        }
    }

    /// Read a key: `prefix.name`, `` prefix.`name` ``, `prefix."name"`, `name`, `` `name` ``.
    pub(super) fn read_key(&mut self) -> Result<RawKey, FilterError> {
        let start = self.pos;
        let (prefix, name) = match self.peek() {
            Some(q @ ('`' | '"')) => (None, self.read_quoted_name(q)?),
            Some(c) if is_ident_char(c) => self.read_unquoted_key()?,
            _ => {
                return Err(FilterError(format!(
                    "Invalid filter key at '{}': expected an identifier",
                    self.peek_token_text()
                )))
            }
        };
        let text = self.src.get(start..self.pos).unwrap_or("").to_string();
        self.check_key_end(&text)?;
        if name.is_empty() {
            return Err(FilterError(format!(
                "Invalid filter key '{text}': the name is empty"
            )));
        }
        Ok(RawKey { prefix, name, text })
    }

    /// Read an unquoted key, possibly followed by a quoted name after `prefix.`.
    fn read_unquoted_key(&mut self) -> Result<(Option<String>, String), FilterError> {
        let ident = self.take_while(is_ident_char);
        if let Some(prefix) = ident.strip_suffix('.') {
            if let Some(q @ ('`' | '"')) = self.peek() {
                let name = self.read_quoted_name(q)?;
                return Ok((Some(prefix.to_string()), name));
            }
        }
        Ok(match ident.split_once('.') {
            Some((prefix, name)) => (Some(prefix.to_string()), name.to_string()),
            None => (None, ident.to_string()),
        })
    }

    /// A key must be followed by a blank, a symbolic comparator or the end of input.
    fn check_key_end(&self, key: &str) -> Result<(), FilterError> {
        match self.peek() {
            Some(c) if !c.is_whitespace() && !is_operator_char(c) => Err(FilterError(format!(
                "Invalid filter key '{key}{}': unexpected characters after the key",
                self.peek_token_text()
            ))),
            _ => Ok(()),
        }
    }

    /// Read a name quoted with `quote` (a backtick or double quote); a doubled quote is a
    /// literal quote character.
    fn read_quoted_name(&mut self, quote: char) -> Result<String, FilterError> {
        let start = self.pos;
        self.bump();
        let mut name = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(FilterError(format!(
                        "Unterminated quoted key {}",
                        self.src.get(start..).unwrap_or("")
                    )))
                }
                Some(c) if c == quote && self.peek() == Some(quote) => {
                    self.bump();
                    name.push(quote);
                }
                Some(c) if c == quote => return Ok(name),
                Some(c) => name.push(c),
            }
        }
    }

    /// Read a comparator: a symbol (`=`, `!=`, `<>`, `<`, `<=`, `>`, `>=`) or a keyword
    /// (`LIKE`, `ILIKE`, `IN`, `NOT IN`, `IS NULL`, `IS NOT NULL`), keywords case-insensitive.
    pub(super) fn read_comparator(&mut self) -> Result<Comparator, FilterError> {
        match self.peek() {
            None => Err(FilterError(
                "Invalid filter string: a clause is missing its comparator".to_string(),
            )),
            Some(c) if is_operator_char(c) => {
                let symbol = self.take_while(is_operator_char);
                symbol_comparator(symbol).ok_or_else(|| invalid_comparator(symbol))
            }
            Some(c) if c.is_ascii_alphabetic() => self.read_keyword_comparator(),
            Some(_) => Err(invalid_comparator(self.peek_token_text())),
        }
    }

    /// Read a keyword comparator, including the two-word and three-word ones.
    fn read_keyword_comparator(&mut self) -> Result<Comparator, FilterError> {
        let first = self.take_while(|c| c.is_ascii_alphabetic());
        match first.to_ascii_uppercase().as_str() {
            "LIKE" => Ok(Comparator::Like),
            "ILIKE" => Ok(Comparator::ILike),
            "IN" => Ok(Comparator::In),
            "NOT" => self.read_keyword_tail(first, &["IN"], Comparator::NotIn),
            "IS" => {
                self.skip_ws();
                if self.eat_word("NULL") {
                    Ok(Comparator::IsNull)
                } else {
                    self.read_keyword_tail(first, &["NOT", "NULL"], Comparator::IsNotNull)
                }
            }
            _ => Err(invalid_comparator(first)),
        }
    }

    /// Expect the words `tail` (each after blanks) to complete a comparator starting with
    /// `first`, returning `comparator` if they all follow.
    fn read_keyword_tail(
        &mut self,
        first: &str,
        tail: &[&str],
        comparator: Comparator,
    ) -> Result<Comparator, FilterError> {
        let mut seen = first.to_string();
        for word in tail {
            self.skip_ws();
            if !self.eat_word(word) {
                seen.push(' ');
                seen.push_str(self.peek_token_text());
                return Err(invalid_comparator(seen.trim_end()));
            }
            seen.push(' ');
            seen.push_str(word);
        }
        Ok(comparator)
    }

    /// Consume the alphabetic word at the cursor if it equals `word` (case-insensitively).
    fn eat_word(&mut self, word: &str) -> bool {
        let rest = self.rest();
        let len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let matched = rest
            .get(..len)
            .is_some_and(|w| w.eq_ignore_ascii_case(word));
        if matched {
            self.pos += len;
        }
        matched
    }

    /// Read a value: a number, a 'single-quoted' string or a parenthesised list.
    pub(super) fn read_literal(&mut self) -> Result<Literal, FilterError> {
        match self.peek() {
            None => Err(FilterError(
                "Invalid filter string: a clause is missing its value".to_string(),
            )),
            // MLflow takes "double-quoted" (and `backticked`) values as strings too, and its
            // older docs show them: `params.model = "LogisticRegression"`.
            Some(q @ ('\'' | '"' | '`')) => Ok(Literal::Str(self.read_string(q)?)),
            Some('(') => Ok(Literal::List(self.read_list()?)),
            Some(_) => self.read_number(),
        }
    }

    /// Read a string quoted with `quote`. A doubled quote and a backslash before the quote are
    /// a literal quote, `\\` a literal backslash; any other backslash is kept as is (so LIKE
    /// escapes such as `\%` survive).
    fn read_string(&mut self, quote: char) -> Result<String, FilterError> {
        let start = self.pos;
        self.bump();
        let mut value = String::new();
        loop {
            match (self.bump(), self.peek()) {
                (None, _) => {
                    return Err(FilterError(format!(
                        "Unterminated string literal {}",
                        self.src.get(start..).unwrap_or("")
                    )))
                }
                (Some(c), Some(next)) if c == quote && next == quote => {
                    value.extend(self.bump());
                }
                (Some('\\'), Some(next)) if next == quote || next == '\\' => {
                    value.extend(self.bump());
                }
                (Some(c), _) if c == quote => return Ok(value),
                (Some(c), _) => value.push(c),
            }
        }
    }

    /// Read `( item, item, ... )` where each item is a string or a number.
    fn read_list(&mut self) -> Result<Vec<String>, FilterError> {
        self.bump();
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if items.is_empty() && self.peek() == Some(')') {
                return Err(FilterError(
                    "Invalid filter string: a value list must not be empty".to_string(),
                ));
            }
            items.push(self.read_list_item()?);
            self.skip_ws();
            match self.bump() {
                Some(',') => continue,
                Some(')') => return Ok(items),
                _ => {
                    return Err(FilterError(
                        "Invalid value list: expected ',' or ')' after an item".to_string(),
                    ))
                }
            }
        }
    }

    fn read_list_item(&mut self) -> Result<String, FilterError> {
        match self.read_literal()? {
            Literal::Str(s) => Ok(s),
            Literal::Number { text, .. } => Ok(text),
            Literal::List(_) => Err(FilterError(
                "Invalid value list: lists cannot be nested".to_string(),
            )),
        }
    }

    /// Read a number (`1`, `-2.5`, `.5`, `1e-3`); anything else unquoted is an error.
    fn read_number(&mut self) -> Result<Literal, FilterError> {
        let text = self.take_while(|c| !ends_bare_value(c));
        let value = if is_number(text) {
            text.parse::<f64>().ok()
        } else {
            None
        };
        match value {
            Some(value) => Ok(Literal::Number {
                value,
                text: text.to_string(),
            }),
            None => Err(FilterError(format!(
                "Invalid value '{}': expected a number or a quoted string",
                if text.is_empty() {
                    self.peek_token_text()
                } else {
                    text
                }
            ))),
        }
    }
}

/// Whether `text` is `[+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?`.
fn is_number(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (unsigned.get(..i).unwrap_or(""), unsigned.get(i + 1..)),
        None => (unsigned, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = all_digits(int) && all_digits(frac) && !(int.is_empty() && frac.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
        !digits.is_empty() && all_digits(digits)
    });
    mantissa_ok && exponent_ok
}

/// The comparator for a symbol, if it is one.
fn symbol_comparator(symbol: &str) -> Option<Comparator> {
    Some(match symbol {
        "=" => Comparator::Eq,
        "!=" | "<>" => Comparator::Ne,
        "<" => Comparator::Lt,
        "<=" => Comparator::Le,
        ">" => Comparator::Gt,
        ">=" => Comparator::Ge,
        _ => return None,
    })
}

/// The error for text in comparator position that is not a comparator.
fn invalid_comparator(text: &str) -> FilterError {
    FilterError(format!(
        "Invalid comparator '{text}' not one of ['=', '!=', '<>', '<', '<=', '>', '>=', \
         'LIKE', 'ILIKE', 'IN', 'NOT IN', 'IS NULL', 'IS NOT NULL']"
    ))
}

#[cfg(test)]
mod tests {
    use super::is_number;

    #[test]
    fn number_shapes() {
        for ok in [
            "1", "-1", "+1", "1.5", "1.", ".5", "-.5", "1e3", "1E-3", "2.5e+10",
        ] {
            assert!(is_number(ok), "{ok}");
        }
        for bad in [
            "", "-", ".", "e3", "1e", "1e+", "inf", "NaN", "0x1", "1.2.3", "1-2",
        ] {
            assert!(!is_number(bad), "{bad}");
        }
    }
}
