//! Cedar's errors (miette diagnostics with byte spans) → [`Diagnostic`]s with
//! the file and 1-based line:column.

use std::path::Path;

use super::Diagnostic;

/// A diagnostic for `file` without a position (e.g. the file cannot be read).
pub(super) fn whole_file(file: &Path, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        file: file.to_path_buf(),
        line: 0,
        column: 0,
        message: message.into(),
    }
}

/// A diagnostic for `file` at byte `offset` of `text`.
pub(super) fn at_offset(
    file: &Path,
    text: &str,
    offset: usize,
    message: impl Into<String>,
) -> Diagnostic {
    let (line, column) = line_column(text, offset);
    Diagnostic {
        file: file.to_path_buf(),
        line,
        column,
        message: message.into(),
    }
}

/// Appends `err` and every diagnostic related to it, each positioned by its
/// primary (else first) label, an offset into `text`.
///
/// Cedar reports several errors in one value through `related()` (e.g.
/// `ParseErrors`: the value itself stands for the first error).
pub(super) fn push_all(
    out: &mut Vec<Diagnostic>,
    file: &Path,
    text: &str,
    err: &dyn miette::Diagnostic,
) {
    let message = match err.help() {
        Some(help) => format!("{}; {help}", error_chain(err)),
        None => error_chain(err),
    };
    let offset = err.labels().and_then(|labels| {
        let labels: Vec<_> = labels.collect();
        labels
            .iter()
            .find(|label| label.primary())
            .or_else(|| labels.first())
            .map(|label| label.offset())
    });
    out.push(match offset {
        Some(offset) => at_offset(file, text, offset, message),
        None => whole_file(file, message),
    });
    if let Some(related) = err.related() {
        for related in related {
            push_all(out, file, text, related);
        }
    }
}

/// `err` and its sources, joined with `: ` (Cedar's top-level messages are
/// often generic, e.g. "entity does not conform to the schema"); a source
/// already quoted by its parent's message is not repeated.
pub(super) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_message = cause.to_string();
        if !message.contains(&cause_message) {
            message.push_str(": ");
            message.push_str(&cause_message);
        }
        source = cause.source();
    }
    message
}

/// 1-based line and column (in characters) of byte `offset` in `text`; an
/// offset past the end points just after the last character.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::line_column;

    #[test]
    fn line_column_counts_from_one_in_characters() {
        let text = "ab\nçd\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 1), (1, 2));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 5), (2, 2));
        assert_eq!(
            line_column(text, 4),
            (2, 1),
            "inside a character rounds down"
        );
        assert_eq!(line_column(text, 99), (3, 1));
    }
}
