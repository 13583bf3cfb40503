//! An XML well-formedness check for the documents the CLI writes (the demo's SVG timeline):
//! one root element, every tag closed in order, attribute values quoted, `<` never in text or
//! values, `&` only as an entity, no attribute twice on an element, no character XML forbids.
//! Shared by the unit tests in `src/` (through `#[path]`) and the tests of the binary.
// Each includer uses a part of this.
#![allow(dead_code)]

/// `Ok` when `doc` is well-formed, else what is wrong and at which byte.
pub fn check(doc: &str) -> Result<(), String> {
    let mut p = Parser { doc, at: 0 };
    p.skip_prolog()?;
    let mut stack: Vec<&str> = Vec::new();
    let mut roots = 0;
    while p.at < doc.len() {
        if p.rest().starts_with("<!--") {
            let end = p.rest()[4..]
                .find("-->")
                .ok_or_else(|| p.error("comment never closed"))?;
            p.at += 4 + end + 3;
        } else if p.rest().starts_with("</") {
            p.at += 2;
            let name = p.name()?;
            p.skip_space();
            p.expect(">")?;
            match stack.pop() {
                Some(open) if open == name => {}
                Some(open) => return Err(p.error(&format!("</{name}> closes <{open}>"))),
                None => return Err(p.error(&format!("</{name}> closes nothing"))),
            }
        } else if p.rest().starts_with('<') {
            p.at += 1;
            let name = p.name()?;
            if stack.is_empty() {
                roots += 1;
                if roots > 1 {
                    return Err(p.error("a second root element"));
                }
            }
            let self_closed = p.attributes()?;
            if !self_closed {
                stack.push(name);
            }
        } else {
            let end = p.rest().find('<').map_or(doc.len(), |i| p.at + i);
            let text = &doc[p.at..end];
            if stack.is_empty() && !text.trim().is_empty() {
                return Err(p.error("text outside the root element"));
            }
            p.escaped(text)?;
            p.at = end;
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("<{open}> is never closed"));
    }
    if roots == 0 {
        return Err("no root element".into());
    }
    Ok(())
}

struct Parser<'a> {
    doc: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.doc[self.at..]
    }

    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.at)
    }

    fn expect(&mut self, s: &str) -> Result<(), String> {
        if self.rest().starts_with(s) {
            self.at += s.len();
            Ok(())
        } else {
            Err(self.error(&format!("expected {s:?}")))
        }
    }

    fn skip_space(&mut self) -> bool {
        let rest = self.rest();
        let trimmed = rest.trim_start_matches([' ', '\t', '\n', '\r']);
        self.at += rest.len() - trimmed.len();
        rest.len() != trimmed.len()
    }

    fn skip_prolog(&mut self) -> Result<(), String> {
        if self.rest().starts_with("<?xml") {
            let end = self
                .rest()
                .find("?>")
                .ok_or_else(|| self.error("XML declaration never closed"))?;
            self.at += end + 2;
        }
        Ok(())
    }

    /// An element or attribute name (letters, digits, `-`, `_`, `.`, `:`; not starting with
    /// a digit, `-` or `.`).
    fn name(&mut self) -> Result<&'a str, String> {
        let rest = self.rest();
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
            .unwrap_or(rest.len());
        let name = &rest[..len];
        match name.chars().next() {
            Some(c) if c.is_alphabetic() || c == '_' || c == ':' => {
                self.at += len;
                Ok(name)
            }
            _ => Err(self.error("expected a name")),
        }
    }

    /// The attributes up to the end of a start tag; whether the tag closed itself (`/>`).
    fn attributes(&mut self) -> Result<bool, String> {
        let mut seen: Vec<&str> = Vec::new();
        loop {
            let spaced = self.skip_space();
            if self.rest().starts_with("/>") {
                self.at += 2;
                return Ok(true);
            }
            if self.rest().starts_with('>') {
                self.at += 1;
                return Ok(false);
            }
            if !spaced {
                return Err(self.error("expected a space before an attribute"));
            }
            let key = self.name()?;
            if seen.contains(&key) {
                return Err(self.error(&format!("attribute {key} twice")));
            }
            seen.push(key);
            self.skip_space();
            self.expect("=")?;
            self.skip_space();
            let quote = match self.rest().chars().next() {
                Some(q @ ('"' | '\'')) => q,
                _ => return Err(self.error("attribute value not quoted")),
            };
            self.at += 1;
            let end = self
                .rest()
                .find(quote)
                .ok_or_else(|| self.error("attribute value never closed"))?;
            let value = &self.rest()[..end];
            if value.contains('<') {
                return Err(self.error("'<' in an attribute value"));
            }
            self.escaped(value)?;
            self.at += end + 1;
        }
    }

    /// Text is escaped: `&` only starts an entity, and no character XML forbids appears.
    fn escaped(&self, text: &str) -> Result<(), String> {
        if let Some(c) = text.chars().find(|&c| {
            let n = c as u32;
            (n < 0x20 && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}'
        }) {
            return Err(self.error(&format!("character {c:?} is not allowed in XML")));
        }
        let mut rest = text;
        while let Some(i) = rest.find('&') {
            let after = &rest[i + 1..];
            let end = after
                .find(';')
                .ok_or_else(|| self.error("'&' without an entity"))?;
            let entity = &after[..end];
            let known = matches!(entity, "amp" | "lt" | "gt" | "quot" | "apos")
                || entity
                    .strip_prefix("#x")
                    .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
                || entity
                    .strip_prefix('#')
                    .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
            if !known {
                return Err(self.error(&format!("unknown entity &{entity};")));
            }
            rest = &after[end + 1..];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn accepts_a_small_document() {
        let doc = "<?xml version=\"1.0\"?>\n<svg a=\"1\" b='x &amp; y'>\n<!-- c -->\
                   <g><text>a &lt; b &#233; &#x41;</text><rect/></g></svg>\n";
        assert_eq!(check(doc), Ok(()));
    }

    #[test]
    fn rejects_what_is_not_well_formed() {
        let bad = [
            "<a><b></a></b>",
            "<a>",
            "</a>",
            "<a></a><b></b>",
            "<a>x < y</a>",
            "<a>x & y</a>",
            "<a>&nbsp;</a>",
            "<a b=1></a>",
            "<a b=\"<\"></a>",
            "<a b=\"1\" b=\"2\"></a>",
            "<a b=\"1\"c=\"2\"></a>",
            "<a>\u{1}</a>",
            "text<a></a>",
            "",
            "<1a></1a>",
            "<a b=\"1></a>",
        ];
        for doc in bad {
            assert!(check(doc).is_err(), "accepted {doc:?}");
        }
    }
}
