//! Key paths (`issuers[0].jwks.refresh`) → where they are written in the
//! YAML text, so that problems found after parsing (a missing file, a rule
//! across keys, a claim the schema lacks) still print `file:line:col`.
//!
//! The text is read a second time with the YAML event parser under
//! serde-saphyr (no second YAML library): a mapping entry is located at its
//! key, a list item at the item. Key paths are written as [`Problem`] keys
//! are: `a.b`, `a[0]`, the root's keys without a leading dot.
//!
//! [`Problem`]: super::problem::Problem

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Options, Parser, Span};

/// A 1-based line and column (in characters) in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// Where each key path of a YAML document is written.
#[derive(Debug, Default)]
pub struct KeyPositions {
    keys: HashMap<String, Position>,
    /// The text of scalar values, by key path (for messages that quote them).
    scalars: HashMap<String, String>,
}

impl KeyPositions {
    /// Reads `text`; a syntax error ends the walk, keeping what came before.
    /// Only the first document is read (wisp reads only one).
    pub fn of(text: &str) -> KeyPositions {
        let mut options = Options::default();
        options.emit_comments = false;
        let mut events = Parser::new_from_str_with_options(text, options)
            .map_while(Result::ok)
            .filter(|(event, _)| {
                matches!(
                    event,
                    Event::Scalar(..)
                        | Event::SequenceStart(..)
                        | Event::SequenceEnd
                        | Event::MappingStart(..)
                        | Event::MappingEnd
                        | Event::Alias(_)
                        | Event::DocumentEnd
                )
            });
        let mut positions = KeyPositions::default();
        if let Some((event, _)) = events.next() {
            positions.walk(event, "", &mut events);
        }
        positions
    }

    /// Where `key` is written, if it is.
    pub fn exact(&self, key: &str) -> Option<Position> {
        self.keys.get(key).copied()
    }

    /// Where `key` is written or, for a key that is not (a missing required
    /// key), its nearest written ancestor.
    pub fn find(&self, key: &str) -> Option<Position> {
        let mut key = key;
        loop {
            if let Some(position) = self.exact(key) {
                return Some(position);
            }
            key = parent(key)?;
        }
    }

    /// The scalar written at `key` (e.g. `orders` in `audiences: orders`).
    pub fn scalar(&self, key: &str) -> Option<&str> {
        self.scalars.get(key).map(String::as_str)
    }

    /// Records the node starting with `event` (already taken) at `path`.
    fn walk<'a>(
        &mut self,
        event: Event<'a>,
        path: &str,
        events: &mut impl Iterator<Item = Item<'a>>,
    ) {
        match event {
            Event::MappingStart(..) => {
                while let Some((key, key_span)) = events.next() {
                    let child = match key {
                        Event::MappingEnd | Event::DocumentEnd => return,
                        Event::Scalar(name, ..) => join(path, &name),
                        // A list or map as a key: not a key path wisp uses.
                        other => {
                            self.walk(other, "\u{0}", events);
                            "\u{0}".to_owned()
                        }
                    };
                    self.keys
                        .entry(child.clone())
                        .or_insert(position(&key_span));
                    match events.next() {
                        Some((value, _)) => self.walk(value, &child, events),
                        None => return,
                    }
                }
            }
            Event::SequenceStart(..) => {
                let mut index = 0;
                while let Some((item, span)) = events.next() {
                    if matches!(item, Event::SequenceEnd | Event::DocumentEnd) {
                        return;
                    }
                    let child = format!("{path}[{index}]");
                    self.keys.entry(child.clone()).or_insert(position(&span));
                    self.walk(item, &child, events);
                    index += 1;
                }
            }
            Event::Scalar(value, ..) => {
                self.scalars.insert(path.to_owned(), value.into_owned());
            }
            _ => {}
        }
    }
}

type Item<'a> = (Event<'a>, Span);

fn position(span: &Span) -> Position {
    Position {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `a.b[2]` → `a.b`, `a.b` → `a`, `a` → none.
fn parent(key: &str) -> Option<&str> {
    if let Some(stem) = key.strip_suffix(']') {
        return stem.rfind('[').map(|open| &key[..open]);
    }
    key.rfind('.').map(|dot| &key[..dot])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Option<Position> {
        Some(Position { line, column })
    }

    const TEXT: &str = "\
# comment
upstream:
  address: 127.0.0.1:1   # trailing
issuers:
  - name: k8s
    jwks: { discovery: true, refresh: 1m }
    audiences: [orders, 'billing']
    claims:
      pod_uid: /kubernetes.io/pod/uid
  - { name: b, audiences: orders }
routes: { public: [/healthz] }
";

    #[test]
    fn locates_block_and_flow_keys_and_list_items() {
        let positions = KeyPositions::of(TEXT);
        assert_eq!(positions.exact("upstream"), at(2, 1));
        assert_eq!(positions.exact("upstream.address"), at(3, 3));
        assert_eq!(positions.exact("issuers[0]"), at(5, 5));
        assert_eq!(positions.exact("issuers[0].name"), at(5, 5));
        assert_eq!(positions.exact("issuers[0].jwks.refresh"), at(6, 30));
        assert_eq!(positions.exact("issuers[0].audiences[1]"), at(7, 25));
        assert_eq!(positions.exact("issuers[0].claims.pod_uid"), at(9, 7));
        assert_eq!(positions.exact("issuers[1].audiences"), at(10, 16));
        assert_eq!(positions.exact("routes.public[0]"), at(11, 20));
    }

    #[test]
    fn a_missing_key_is_found_at_its_nearest_written_ancestor() {
        let positions = KeyPositions::of(TEXT);
        assert_eq!(positions.exact("issuers[1].issuer"), None);
        assert_eq!(positions.find("issuers[1].issuer"), at(10, 5));
        assert_eq!(positions.find("issuers[0].jwks.file"), at(6, 5));
        assert_eq!(positions.find("upstream.tls.ca"), at(2, 1));
        assert_eq!(positions.find("listen"), None);
    }

    #[test]
    fn keeps_scalar_values_for_messages() {
        let positions = KeyPositions::of(TEXT);
        assert_eq!(positions.scalar("issuers[1].audiences"), Some("orders"));
        assert_eq!(positions.scalar("issuers[0].audiences[1]"), Some("billing"));
        assert_eq!(positions.scalar("issuers[0].audiences"), None);
    }

    #[test]
    fn stops_at_a_syntax_error_keeping_what_came_before() {
        let positions = KeyPositions::of("listen: x\nupstream: [\n");
        assert_eq!(positions.exact("listen"), at(1, 1));
        assert_eq!(KeyPositions::of("").find("a"), None);
    }

    #[test]
    fn parent_strips_one_segment() {
        assert_eq!(parent("a.b[2]"), Some("a.b"));
        assert_eq!(parent("a.b"), Some("a"));
        assert_eq!(parent("a[0]"), Some("a"));
        assert_eq!(parent("a"), None);
    }
}
