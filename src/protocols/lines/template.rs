//! Command line templates such as `D {linear.x:.3} {angular.z:.3}`: literal text with
//! field placeholders and Rust-style format specs (`+`, `0`, width, `.precision`).

use crate::messages::{Message, Scalar};
use std::fmt::Write;
use thiserror::Error;

/// Why a template in a robot file cannot be used. The text is what `botbus check` shows.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum TemplateError {
    #[error("unmatched `}}` at byte {at}; write `}}}}` for a literal brace")]
    Unmatched { at: usize },
    #[error("unclosed `{{` at byte {at}")]
    Unclosed { at: usize },
    #[error("empty placeholder at byte {at}")]
    EmptyPlaceholder { at: usize },
    #[error("must be one line; the newline is appended when writing")]
    MultiLine,
    #[error("bad format spec `:{spec}`; use e.g. `:.3`, `:8.2`, `:+06.1`")]
    BadSpec { spec: String },
    #[error("precision {precision} in `:{spec}` is more than 17 digits")]
    Precision { precision: usize, spec: String },
    #[error("width {width} in `:{spec}` is more than 64")]
    Width { width: usize, spec: String },
}

/// Why a command cannot be written through its template. The text is the command's ack.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RenderError {
    #[error("template field `{path}` has no value")]
    NoValue { path: String },
    /// A newline in a value would become a second command on the wire.
    #[error("`{path}` contains a control character")]
    ControlCharacter { path: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Field { path: String, spec: Spec },
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Spec {
    plus: bool,
    zero: bool,
    width: usize,
    precision: Option<usize>,
}

impl Template {
    /// Parses a template; `{{` and `}}` are literal braces.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        // Inside a placeholder too: the template is written to the robot file on one line.
        if text.contains(['\n', '\r']) {
            return Err(TemplateError::MultiLine);
        }
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => return Err(TemplateError::Unmatched { at: i }),
                '{' => {
                    let rest = &text[i + 1..];
                    let end = rest.find('}').ok_or(TemplateError::Unclosed { at: i })?;
                    let inner = &rest[..end];
                    for _ in 0..inner.chars().count() + 1 {
                        chars.next();
                    }
                    let (path, spec) = match inner.split_once(':') {
                        Some((p, s)) => (p.trim(), parse_spec(s)?),
                        None => (inner.trim(), Spec::default()),
                    };
                    if path.is_empty() {
                        return Err(TemplateError::EmptyPlaceholder { at: i });
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Field {
                        path: path.to_string(),
                        spec,
                    });
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        Ok(Template {
            source: text.to_string(),
            parts,
        })
    }

    /// The template as written in the robot file.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The field paths the template reads.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field { path, .. } => Some(path.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Renders `msg` and appends `\n`. Bools render as `1`/`0`, which microcontrollers parse.
    pub fn render(&self, msg: &Message, out: &mut String) -> Result<(), RenderError> {
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field { path, spec } => {
                    let v = msg
                        .get_path(path)
                        .ok_or_else(|| RenderError::NoValue { path: path.clone() })?;
                    // A newline in a value would become a second command on the wire.
                    if let Scalar::Str(text) = &v {
                        if text.chars().any(char::is_control) {
                            return Err(RenderError::ControlCharacter { path: path.clone() });
                        }
                    }
                    format_scalar(&v, *spec, out);
                }
            }
        }
        out.push('\n');
        Ok(())
    }
}

fn parse_spec(s: &str) -> Result<Spec, TemplateError> {
    let bad = || TemplateError::BadSpec { spec: s.into() };
    let mut spec = Spec::default();
    let mut rest = s;
    if let Some(r) = rest.strip_prefix('+') {
        spec.plus = true;
        rest = r;
    }
    if let Some(r) = rest.strip_prefix('0') {
        spec.zero = true;
        rest = r;
    }
    let (w, p) = match rest.split_once('.') {
        Some((w, p)) => (w, Some(p)),
        None => (rest, None),
    };
    if !w.is_empty() {
        spec.width = w.parse().map_err(|_| bad())?;
    }
    if let Some(p) = p {
        let n: usize = p.parse().map_err(|_| bad())?;
        if n > 17 {
            return Err(TemplateError::Precision {
                precision: n,
                spec: s.into(),
            });
        }
        spec.precision = Some(n);
    }
    if spec.width > 64 {
        return Err(TemplateError::Width {
            width: spec.width,
            spec: s.into(),
        });
    }
    Ok(spec)
}

fn format_scalar(v: &Scalar, spec: Spec, out: &mut String) {
    let body = match (v, spec.precision) {
        (Scalar::Float(f), Some(p)) => format!("{f:.p$}"),
        // Exactly, not through an f64: above 2^53 that would send a neighbouring number.
        (Scalar::Int(i), Some(0)) => format!("{i}"),
        (Scalar::Int(i), Some(p)) => format!("{i}.{:0<p$}", ""),
        (Scalar::Float(f), None) => format!("{f}"),
        (Scalar::Int(i), None) => format!("{i}"),
        (Scalar::Bool(b), _) => (if *b { "1" } else { "0" }).to_string(),
        (Scalar::Str(s), _) => s.clone(),
    };
    let numeric = matches!(v, Scalar::Float(_) | Scalar::Int(_));
    let body = if spec.plus && numeric && !body.starts_with('-') {
        format!("+{body}")
    } else {
        body
    };
    let pad = spec.width.saturating_sub(body.chars().count());
    if pad == 0 {
        out.push_str(&body);
    } else if spec.zero && numeric {
        let (sign, digits) = match body.chars().next() {
            Some(c @ ('+' | '-')) => (Some(c), &body[1..]),
            _ => (None, &body[..]),
        };
        if let Some(c) = sign {
            out.push(c);
        }
        out.extend(std::iter::repeat_n('0', pad));
        out.push_str(digits);
    } else {
        let _ = write!(out, "{:>w$}", body, w = spec.width);
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::MessageType;

    fn twist(x: f64, z: f64) -> Message {
        let mut m = MessageType::Twist.new_message();
        m.set_path("linear.x", &Scalar::Float(x)).unwrap();
        m.set_path("angular.z", &Scalar::Float(z)).unwrap();
        m
    }

    #[test]
    fn renders_fields_with_precision_and_appends_newline() {
        let t = Template::parse("D {linear.x:.3} {angular.z:.3}").unwrap();
        let mut s = String::new();
        t.render(&twist(0.5, -0.1), &mut s).unwrap();
        assert_eq!(s, "D 0.500 -0.100\n");
        assert_eq!(t.paths().collect::<Vec<_>>(), vec!["linear.x", "angular.z"]);
    }

    #[test]
    fn width_sign_and_zero_padding() {
        let t = Template::parse("{{{linear.x:+07.2}}} {angular.z:6}").unwrap();
        let mut s = String::new();
        t.render(&twist(1.5, -2.0), &mut s).unwrap();
        assert_eq!(s, "{+001.50}     -2\n");
    }

    /// Found by fuzzing: an integer with a precision went through an f64, so 2^54 + 1
    /// reached the device as 2^54.
    #[test]
    fn integers_render_exactly_whatever_the_precision() {
        let t = Template::parse("{a:.0} {a:.2} {a:+024.1}").unwrap();
        let mut m = MessageType::Map.new_message();
        m.set_path("a", &Scalar::Int(18_014_398_509_481_985))
            .unwrap();
        let mut s = String::new();
        t.render(&m, &mut s).unwrap();
        assert_eq!(
            s,
            "18014398509481985 18014398509481985.00 +000018014398509481985.0\n"
        );
    }

    #[test]
    fn values_with_control_characters_are_not_rendered() {
        let t = Template::parse("S {data}").unwrap();
        let mut m = MessageType::String.new_message();
        m.set_path("data", &Scalar::Str("hi\nD 9 9".into()))
            .unwrap();
        let mut s = String::new();
        assert_eq!(
            t.render(&m, &mut s).unwrap_err().to_string(),
            "`data` contains a control character"
        );
    }

    #[test]
    fn bad_templates_are_explained() {
        let err = |t: &str| Template::parse(t).unwrap_err().to_string();
        assert_eq!(err("D {linear.x"), "unclosed `{` at byte 2");
        assert_eq!(
            err("D }"),
            "unmatched `}` at byte 2; write `}}` for a literal brace"
        );
        assert_eq!(
            err("D {linear.x:.q}"),
            "bad format spec `:.q`; use e.g. `:.3`, `:8.2`, `:+06.1`"
        );
        assert_eq!(err("D {}"), "empty placeholder at byte 2");
        assert_eq!(
            err("D {x:.18}"),
            "precision 18 in `:.18` is more than 17 digits"
        );
        assert_eq!(err("D {x:65}"), "width 65 in `:65` is more than 64");
        assert_eq!(
            err("D 1\nD 2"),
            "must be one line; the newline is appended when writing"
        );
        // Inside a placeholder too (found by fuzzing).
        assert_eq!(
            err("D {\nlinear.x}"),
            "must be one line; the newline is appended when writing"
        );
    }
}
