//! Byte offsets ↔ LSP positions. LSP counts columns in UTF-16 code units;
//! the compiler's spans are bytes of UTF-8 text.

use tower_lsp_server::ls_types::{Position, Range};

use kflow_compiler::Span;

/// Where each line starts, for one version of a text.
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    pub fn position(&self, text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let column = text[self.starts[line]..offset].encode_utf16().count();
        Position::new(line as u32, column as u32)
    }

    pub fn range(&self, text: &str, span: Span) -> Range {
        Range::new(self.position(text, span.start), self.position(text, span.end))
    }

    /// The byte offset of a position; a column past the end of its line
    /// means the line's end (as the protocol says), a line past the end of
    /// the text its end, and a column inside a surrogate pair the character's
    /// start.
    pub fn offset(&self, text: &str, pos: Position) -> usize {
        let Some(&start) = self.starts.get(pos.line as usize) else {
            return text.len();
        };
        let end = self
            .starts
            .get(pos.line as usize + 1)
            .map_or(text.len(), |&next| next - 1);
        let line = text[start..end].strip_suffix('\r').unwrap_or(&text[start..end]);
        let mut units = 0u32;
        for (i, c) in line.char_indices() {
            units += c.len_utf16() as u32;
            if units > pos.character {
                return start + i;
            }
        }
        start + line.len()
    }

    /// The span of a range (its ends in order).
    pub fn span(&self, text: &str, range: Range) -> Span {
        let (a, b) = (self.offset(text, range.start), self.offset(text, range.end));
        Span::new(a.min(b), a.max(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_utf16_units() {
        // 🚀 is two UTF-16 units and four bytes; 構 one unit and three bytes.
        let text = "a🚀構b\nx";
        let idx = LineIndex::new(text);
        let b = text.find('b').unwrap();
        assert_eq!(idx.position(text, b), Position::new(0, 4));
        assert_eq!(idx.offset(text, Position::new(0, 4)), b);
        assert_eq!(idx.offset(text, Position::new(0, 3)), text.find('構').unwrap());
        // Inside the surrogate pair: the emoji's start.
        assert_eq!(idx.offset(text, Position::new(0, 2)), 1);
        assert_eq!(idx.offset(text, Position::new(0, 99)), b + 1);
        assert_eq!(idx.offset(text, Position::new(1, 0)), text.len() - 1);
        assert_eq!(idx.offset(text, Position::new(7, 0)), text.len());
        assert_eq!(idx.position(text, text.len()), Position::new(1, 1));
    }

    #[test]
    fn crlf_line_ends_are_not_columns() {
        let text = "ab\r\ncd";
        let idx = LineIndex::new(text);
        assert_eq!(idx.offset(text, Position::new(0, 5)), 2);
        assert_eq!(idx.position(text, 4), Position::new(1, 0));
    }
}
