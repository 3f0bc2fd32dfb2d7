//! Escaping text for HTML. Every string a page shows that came from a
//! request or from stored profiles (function, file and label names are
//! written by whoever pushed a profile) goes through [`escape`].

use std::fmt::Write;

/// `s` as HTML text or a quoted attribute value: `& < > " '` become
/// character references, so nothing in `s` can open a tag or end an
/// attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A query string of `pairs`, escaped for an attribute (`href`, `src`).
pub fn query_attr<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    escape(&q.finish())
}

/// Appends `<tag>escaped text</tag>`.
pub fn push_elem(out: &mut String, tag: &str, text: &str) {
    // Writing to a String cannot fail.
    let _ = write!(out, "<{tag}>{}</{tag}>", escape(text));
}

/// Appends `text` as an error paragraph.
pub fn push_error(out: &mut String, text: &str) {
    let _ = write!(out, "<p class=\"error\">{}</p>", escape(text));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_escapes_text() {
        let evil = r#"<img src=x onerror="alert(1)">'&"#;
        let e = escape(evil);
        assert_eq!(
            e,
            "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&#39;&amp;"
        );
        assert!(!e.contains(['<', '>', '"', '\'']));
        assert_eq!(escape("plain ünïcode"), "plain ünïcode");
        assert_eq!(
            query_attr([("q", "{a=\"<b>\"}")]),
            "q=%7Ba%3D%22%3Cb%3E%22%7D"
        );
    }
}
