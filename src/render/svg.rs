//! The flame graph SVG, drawn by inferno.

use super::folded::folded_stacks;
use super::{is_diff, RenderError};
use crate::model::Profile;
use inferno::flamegraph::{from_lines, Options};

/// An interactive flame graph (SVG with JavaScript) of the profile, drawn by
/// inferno from the [`folded`](super::folded) stacks; `title` is its title,
/// the sample unit its count name. Colors are derived from the frame names,
/// so the output is deterministic.
///
/// - Negative values cannot be drawn: in a profile that is not a diff, a path
///   whose summed value is 0 or negative is left out, and the subtitle says
///   how many were.
/// - A diff gives a differential flame graph: widths are the compared side's
///   values, red frames grew and blue ones shrank against the base. Paths
///   only in the base have no width, as in `difffolded.pl`.
/// - When nothing is left to draw (no samples, or all values ≤ 0), the result
///   is a small valid SVG saying "no samples" under the title.
pub fn svg(p: &Profile, title: &str) -> Result<Vec<u8>, RenderError> {
    let diff = is_diff(p);
    let mut lines = Vec::new();
    let mut width = 0i64;
    let mut dropped = 0usize;
    for (stack, v) in folded_stacks(p) {
        let stack = guard(&stack);
        if diff {
            let (base, cmp) = (v.base.max(0), v.v.max(0));
            if base > 0 || cmp > 0 {
                width = width.saturating_add(cmp);
                lines.push(format!("{stack} {base} {cmp}"));
            }
        } else if v.v > 0 {
            width = width.saturating_add(v.v);
            lines.push(format!("{stack} {}", v.v));
        } else if v.v < 0 {
            dropped += 1;
        }
    }
    if width == 0 {
        return Ok(empty_svg(title));
    }
    let count_name = match p.profile_type.sample_unit.as_str() {
        "" => "samples".to_string(),
        unit => unit.to_string(),
    };
    let subtitle = if diff {
        Some("Differential: width = compared, red = grew, blue = shrank vs. base".to_string())
    } else if dropped > 0 {
        Some(format!("{dropped} stacks with negative values left out"))
    } else {
        None
    };
    // `Options` is non-exhaustive: no struct expression.
    let mut opt = Options::default();
    opt.title = title.to_string();
    opt.subtitle = subtitle;
    opt.count_name = count_name;
    opt.hash = true;
    opt.deterministic = true;
    let mut out = Vec::new();
    from_lines(&mut opt, lines.iter().map(String::as_str), &mut out)?;
    Ok(out)
}

/// Keeps inferno from misreading a folded stack: a trailing ` 123` would be
/// taken for a count column and a leading `# ` for a comment, so that space
/// becomes a no-break space.
fn guard(stack: &str) -> String {
    let mut s = stack.to_string();
    if let Some(i) = s.rfind(' ') {
        let tail = &s[i + 1..];
        if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit() || c == '.') {
            s.replace_range(i..i + 1, "\u{a0}");
        }
    }
    if s.starts_with("# ") {
        s.replace_range(1..2, "\u{a0}");
    }
    s
}

/// A valid SVG with the title and a "no samples" message.
fn empty_svg(title: &str) -> Vec<u8> {
    let title: String = title
        .chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&apos;".to_string(),
            c if c.is_control() => " ".to_string(),
            c => c.to_string(),
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"1200\" height=\"80\" xmlns=\"http://www.w3.org/2000/svg\">\
         <text x=\"600\" y=\"24\" text-anchor=\"middle\" font-size=\"17\">{title}</text>\
         <text x=\"600\" y=\"56\" text-anchor=\"middle\" font-size=\"12\">no samples</text>\
         </svg>\n"
    )
    .into_bytes()
}
