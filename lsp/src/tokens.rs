//! Semantic tokens: the lexer's tokens, classified with what the checker
//! knows (which names are inputs, tasks, …) and where kinds and types go.

use std::collections::HashMap;

use kflow_compiler::analysis::{Analysis, SymKind};
use kflow_compiler::functions;
use kflow_compiler::types::{ENUM_WORDS, SEVERITIES};
use tower_lsp_server::ls_types::{SemanticToken, SemanticTokenModifier, SemanticTokenType, SemanticTokensLegend};

use crate::document::Snapshot;
use kflow_compiler::grammar::keywords::is_keyword;

use crate::lexer::{lex, Tok, Token};

const TYPES: &[SemanticTokenType] = &[
    SemanticTokenType::KEYWORD,
    SemanticTokenType::TYPE,
    SemanticTokenType::CLASS,
    SemanticTokenType::PARAMETER,
    SemanticTokenType::VARIABLE,
    SemanticTokenType::FUNCTION,
    SemanticTokenType::PROPERTY,
    SemanticTokenType::METHOD,
    SemanticTokenType::ENUM_MEMBER,
    SemanticTokenType::STRING,
    SemanticTokenType::NUMBER,
    SemanticTokenType::COMMENT,
    SemanticTokenType::OPERATOR,
];

#[derive(Clone, Copy)]
enum T {
    Keyword,
    Type,
    Class,
    Parameter,
    Variable,
    Function,
    Property,
    Method,
    EnumMember,
    String,
    Number,
    Comment,
    Operator,
}

const DECLARATION: u32 = 1;
const READONLY: u32 = 2;
const DOCUMENTATION: u32 = 4;
const DEFAULT_LIBRARY: u32 = 8;

pub fn legend() -> SemanticTokensLegend {
    SemanticTokensLegend {
        token_types: TYPES.to_vec(),
        token_modifiers: vec![
            SemanticTokenModifier::DECLARATION,
            SemanticTokenModifier::READONLY,
            SemanticTokenModifier::DOCUMENTATION,
            SemanticTokenModifier::DEFAULT_LIBRARY,
        ],
    }
}

pub fn tokens(snap: &Snapshot, analysis: &Analysis) -> Vec<SemanticToken> {
    let src = snap.text.as_str();
    // Symbol names by their start: declarations and uses.
    let mut names: HashMap<usize, (SymKind, bool)> = HashMap::new();
    for flow in &analysis.flows {
        for s in &flow.symbols {
            names.insert(s.span.start, (s.kind, true));
        }
        for r in &flow.references {
            names.insert(r.span.start, (flow.symbols[r.symbol].kind, false));
        }
    }
    let lexed = lex(src);
    let code: Vec<&Token> = lexed
        .tokens
        .iter()
        .filter(|t| !matches!(t.tok, Tok::Comment | Tok::DocComment))
        .collect();
    let mut classes: Vec<(Token, T, u32)> = Vec::new();
    let (mut in_kind, mut in_type) = (false, false);
    for (i, t) in code.iter().enumerate() {
        let text = t.text(src);
        let prev = |n: usize| i.checked_sub(n).map(|j| code[j].text(src));
        let next = code.get(i + 1).map(|t| t.text(src));
        if t.tok != Tok::Ident && text != "." && text != "<" && text != ">" && text != "?" {
            in_kind = false;
        }
        if in_type && (text == "=" || text == "}" || (i > 0 && src[code[i - 1].end..t.start].contains('\n'))) {
            in_type = false;
        }
        let class = match t.tok {
            Tok::Str => Some((T::String, 0)),
            Tok::Number => Some((T::Number, 0)),
            Tok::Op => Some((T::Operator, 0)),
            Tok::Ident => {
                if prev(1) == Some("=") && prev(3) == Some("task") {
                    in_kind = true;
                }
                if prev(1) == Some(":") && matches!(prev(3), Some("input" | "let")) {
                    in_type = true;
                }
                if is_keyword(text) && next != Some(":") {
                    Some((T::Keyword, 0))
                } else if in_kind {
                    Some((T::Class, 0))
                } else if in_type {
                    Some((T::Type, 0))
                } else if let Some(&(kind, decl)) = names.get(&t.start) {
                    let ty = match kind {
                        SymKind::Input => T::Parameter,
                        SymKind::Task => T::Function,
                        _ => T::Variable,
                    };
                    let readonly = if matches!(kind, SymKind::Secret | SymKind::Let) {
                        READONLY
                    } else {
                        0
                    };
                    Some((ty, if decl { DECLARATION } else { 0 } | readonly))
                } else if prev(1) == Some(".") {
                    Some((if next == Some("(") { T::Method } else { T::Property }, 0))
                } else if next == Some(":") {
                    Some((T::Property, 0))
                } else if next == Some("(") && functions::function(text).is_some() {
                    Some((T::Function, DEFAULT_LIBRARY))
                } else if SEVERITIES.contains(&text) || ENUM_WORDS.contains(&text) {
                    Some((T::EnumMember, 0))
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some((class, mods)) = class {
            classes.push((**t, class, mods));
        }
    }
    for t in lexed
        .tokens
        .iter()
        .filter(|t| matches!(t.tok, Tok::Comment | Tok::DocComment))
    {
        let mods = if t.tok == Tok::DocComment { DOCUMENTATION } else { 0 };
        classes.push((*t, T::Comment, mods));
    }
    classes.sort_by_key(|(t, _, _)| t.start);
    encode(snap, &classes)
}

/// Relative positions in UTF-16 units, one token per line piece (clients
/// need not support tokens spanning lines).
fn encode(snap: &Snapshot, classes: &[(Token, T, u32)]) -> Vec<SemanticToken> {
    let src = snap.text.as_str();
    let mut out = Vec::with_capacity(classes.len());
    let (mut last_line, mut last_col) = (0u32, 0u32);
    for (t, class, mods) in classes {
        let mut start = t.start;
        for piece in src[t.start..t.end].split_inclusive('\n') {
            let text = piece.trim_end_matches(['\n', '\r']);
            let pos = snap.index.position(src, start);
            start += piece.len();
            let length = text.encode_utf16().count() as u32;
            if length == 0 {
                continue;
            }
            let delta_line = pos.line - last_line;
            let delta_start = if delta_line == 0 {
                pos.character - last_col
            } else {
                pos.character
            };
            out.push(SemanticToken {
                delta_line,
                delta_start,
                length,
                token_type: *class as u32,
                token_modifiers_bitset: *mods,
            });
            last_line = pos.line;
            last_col = pos.character;
        }
    }
    out
}
