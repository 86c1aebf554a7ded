//! SVG dimensions from the root element's `width`/`height`, else its `viewBox`, read with
//! quick-xml's pull parser up to the root element and no further. quick-xml expands no
//! entity it was not told of and fetches nothing; a DOCTYPE that declares entities
//! (billion laughs, external entities) is refused outright, so no value depends on one.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Events (declaration, comments, DOCTYPE, ...) read before the root element at most.
const MAX_PROLOG_EVENTS: usize = 256;

/// The displayed size in CSS pixels (rounded, at least 1), or why it cannot be read.
pub fn size(data: &[u8]) -> Result<(u32, u32), String> {
    let mut reader = Reader::from_reader(data);
    for _ in 0..MAX_PROLOG_EVENTS {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) => return root(&e),
            Ok(Event::DocType(d)) if d.windows(8).any(|w| w.eq_ignore_ascii_case(b"<!ENTITY")) => {
                return Err("the SVG declares entities in its DOCTYPE: not read".to_owned());
            }
            Ok(Event::Eof) => return Err("no root element".to_owned()),
            Ok(_) => {}
            Err(e) => return Err(format!("not well-formed XML: {e}")),
        }
    }
    Err(format!("no root element in the first {MAX_PROLOG_EVENTS} XML events"))
}

fn root(e: &BytesStart) -> Result<(u32, u32), String> {
    if e.local_name().as_ref() != b"svg" {
        return Err("the root element is not <svg>".to_owned());
    }
    let (mut width, mut height, mut view_box) = (None, None, None);
    for attr in e.attributes().with_checks(false).flatten() {
        let value = std::str::from_utf8(&attr.value).unwrap_or("");
        match attr.key.local_name().as_ref() {
            b"width" => width = length(value),
            b"height" => height = length(value),
            b"viewBox" => view_box = parse_view_box(value),
            _ => {}
        }
    }
    let (w, h) = match (width, height, view_box) {
        (Some(w), Some(h), _) => (w, h),
        (Some(w), None, Some((vw, vh))) => (w, w * vh / vw),
        (None, Some(h), Some((vw, vh))) => (h * vw / vh, h),
        (_, _, Some(v)) => v,
        _ => return Err("no usable width and height or viewBox on <svg>".to_owned()),
    };
    let px = |v: f64| (v.round() as u32).max(1); // `as` saturates: no overflow
    Ok((px(w), px(h)))
}

/// An absolute SVG length in CSS pixels (96 per inch); percentages and font-relative units
/// depend on where the picture is shown, so they say nothing here.
fn length(value: &str) -> Option<f64> {
    let value = value.trim();
    let split = value.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let n: f64 = number.trim().parse().ok()?;
    let scale = match unit.trim() {
        "" | "px" => 1.0,
        "in" => 96.0,
        "cm" => 96.0 / 2.54,
        "mm" => 96.0 / 25.4,
        "pt" => 96.0 / 72.0,
        "pc" => 16.0,
        _ => return None,
    };
    Some(n * scale).filter(|v| v.is_finite() && *v > 0.0)
}

fn parse_view_box(value: &str) -> Option<(f64, f64)> {
    let parts: Vec<f64> = value
        .split(|c: char| c.is_ascii_whitespace() || c == ',')
        .filter(|p| !p.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    match parts[..] {
        [_, _, w, h] if w.is_finite() && h.is_finite() && w > 0.0 && h > 0.0 => Some((w, h)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_height_or_view_box() {
        let s = |t: &str| size(t.as_bytes());
        assert_eq!(s(r#"<svg xmlns="http://www.w3.org/2000/svg" width="120" height="80px"/>"#), Ok((120, 80)));
        assert_eq!(s(r#"<?xml version="1.0"?><svg viewBox="0 0 300 150"></svg>"#), Ok((300, 150)));
        assert_eq!(s(r#"<svg width="100%" height="100%" viewBox="0,0,40,30"/>"#), Ok((40, 30)));
        assert_eq!(s(r#"<svg width="1in" viewBox="0 0 2 1"/>"#), Ok((96, 48)));
        assert_eq!(
            s(
                r#"<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd"><svg width="5" height="6"/>"#
            ),
            Ok((5, 6))
        );
        assert!(s(r#"<svg width="1e999" height="2"/>"#).is_err());
        assert!(s(r#"<html><svg width="1" height="1"/></html>"#).is_err());
        assert!(s("<svg").is_err());
    }

    #[test]
    fn entities_are_refused_not_expanded() {
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><svg width="&lol2;" height="1"/>"#;
        assert!(size(laughs.as_bytes()).unwrap_err().contains("entities"));
        let external =
            r#"<!DOCTYPE svg [<!ENTITY w SYSTEM "http://169.254.169.254/latest">]><svg width="&w;" height="1"/>"#;
        assert!(size(external.as_bytes()).unwrap_err().contains("entities"));
        // An undeclared entity is only text that does not parse as a length.
        assert!(size(br#"<svg width="&w;" height="&h;"/>"#).is_err());
    }
}
