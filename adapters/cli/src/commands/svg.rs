//! A small SVG writer: elements with attributes and text, escaped as XML requires, so that any
//! name or token we are given ends up as text and never as markup.

use std::fmt::Write;

/// An SVG document being written; elements are closed in the order they were opened.
pub struct Svg {
    out: String,
    open: Vec<&'static str>,
}

impl Svg {
    /// A document of `width` × `height` pixels, its root element open.
    pub fn new(width: f64, height: f64) -> Svg {
        let mut svg = Svg {
            out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            open: Vec::new(),
        };
        svg.open(
            "svg",
            &[
                ("xmlns", "http://www.w3.org/2000/svg".into()),
                ("width", num(width)),
                ("height", num(height)),
                ("viewBox", format!("0 0 {} {}", num(width), num(height))),
                ("font-family", "monospace".into()),
            ],
        );
        svg
    }

    /// Opens element `name`; its children follow until [`Svg::close`].
    pub fn open(&mut self, name: &'static str, attrs: &[(&str, String)]) {
        self.start_tag(name, attrs);
        self.out.push_str(">\n");
        self.open.push(name);
    }

    /// Closes the element opened last (nothing when none is open).
    pub fn close(&mut self) {
        if let Some(name) = self.open.pop() {
            let _ = writeln!(self.out, "</{name}>");
        }
    }

    /// An element without children.
    pub fn empty(&mut self, name: &'static str, attrs: &[(&str, String)]) {
        self.start_tag(name, attrs);
        self.out.push_str("/>\n");
    }

    /// An element holding only `text`.
    pub fn text(&mut self, name: &'static str, attrs: &[(&str, String)], text: &str) {
        self.start_tag(name, attrs);
        self.out.push('>');
        escape_into(&mut self.out, text);
        let _ = writeln!(self.out, "</{name}>");
    }

    /// The document, every open element closed.
    pub fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.close();
        }
        self.out
    }

    fn start_tag(&mut self, name: &str, attrs: &[(&str, String)]) {
        self.out.push('<');
        self.out.push_str(name);
        for (key, value) in attrs {
            self.out.push(' ');
            self.out.push_str(key);
            self.out.push_str("=\"");
            escape_into(&mut self.out, value);
            self.out.push('"');
        }
    }
}

/// A coordinate or size with at most two decimals (enough for pixels, and short).
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "0".into();
    }
    let rounded = (v * 100.0).round() / 100.0;
    // `-0` would be valid SVG but reads oddly.
    if rounded == 0.0 {
        return "0".into();
    }
    format!("{rounded}")
}

/// Appends `text` escaped for XML text and attribute values. Characters XML 1.0 does not allow
/// at all (most control characters, and the non-characters U+FFFE and U+FFFF) become U+FFFD.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::well_formed;

    #[test]
    fn markup_in_text_and_attributes_stays_text() {
        let mut svg = Svg::new(10.0, 10.0);
        svg.text("text", &[("class", "a\"b<c".into())], "x < y & \"z\" \u{1}");
        let doc = svg.finish();
        assert!(doc.contains("class=\"a&quot;b&lt;c\""), "{doc}");
        assert!(
            doc.contains(">x &lt; y &amp; &quot;z&quot; \u{FFFD}</text>"),
            "{doc}"
        );
        well_formed::check(&doc).expect("well-formed");
    }

    #[test]
    fn finish_closes_what_is_open() {
        let mut svg = Svg::new(1.0, 2.0);
        svg.open("g", &[]);
        svg.empty("rect", &[("width", num(1.5))]);
        let doc = svg.finish();
        assert!(doc.trim_end().ends_with("</g>\n</svg>"), "{doc}");
        well_formed::check(&doc).expect("well-formed");
    }

    #[test]
    fn numbers_are_short_and_finite() {
        assert_eq!(num(1.0), "1");
        assert_eq!(num(1.234_567), "1.23");
        assert_eq!(num(-0.001), "0");
        assert_eq!(num(f64::NAN), "0");
        assert_eq!(num(f64::INFINITY), "0");
    }
}
