//! The spanned syntax tree. Every node keeps its byte span; broken regions of
//! the source survive as `Item::Error` / `Property` holes so later stages and
//! the language server still see the rest of the file.

use crate::diag::Span;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone, Default)]
pub struct File {
    pub imports: Vec<Import>,
    pub flows: Vec<Flow>,
    /// Comments in source order (used by the formatter and doc attachment).
    pub comments: Vec<Comment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub span: Span,
    pub text: String,
    pub kind: CommentKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentKind {
    Line,
    Doc,
    Block,
}

#[derive(Debug, Clone)]
pub struct Import {
    pub path: Expr,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Flow {
    pub doc: Option<String>,
    pub name: Ident,
    pub items: Vec<Item>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum Item {
    On(On),
    Input(Input),
    Secret(Secret),
    Let(Let),
    Task(Task),
    Try(Try),
    For(For),
    Assert(Assert),
    Output(Output),
    Concurrency(Concurrency),
    /// A region that did not parse; `name` is the name it seemed to declare
    /// (e.g. `task build = …`), so references to it do not cascade.
    Error(ErrorItem),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::On(x) => x.span,
            Item::Input(x) => x.span,
            Item::Secret(x) => x.span,
            Item::Let(x) => x.span,
            Item::Task(x) => x.span,
            Item::Try(x) => x.span,
            Item::For(x) => x.span,
            Item::Assert(x) => x.span,
            Item::Output(x) => x.span,
            Item::Concurrency(x) => x.span,
            Item::Error(x) => x.span,
        }
    }

    pub fn doc(&self) -> Option<&str> {
        match self {
            Item::Input(x) => x.doc.as_deref(),
            Item::Secret(x) => x.doc.as_deref(),
            Item::Let(x) => x.doc.as_deref(),
            Item::Task(x) => x.doc.as_deref(),
            Item::Output(x) => x.doc.as_deref(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct On {
    pub trigger: Ident,
    pub arg: Expr,
    /// `{ provider: github, inputs: { … } }`, when written.
    pub body: Option<Body>,
    pub span: Span,
}

/// `concurrency { key: …, limit: …, on_conflict: … }`.
#[derive(Debug, Clone)]
pub struct Concurrency {
    /// The `concurrency` keyword.
    pub keyword: Span,
    pub body: Body,
    pub span: Span,
}

/// The `{ name: value, … }` of a trigger or of `concurrency`.
#[derive(Debug, Clone)]
pub struct Body {
    pub props: Vec<Property>,
    /// From `{` to `}` (or to where the unclosed body ends).
    pub span: Span,
    /// False when the body ran into the next item or the end of the file.
    pub closed: bool,
}

impl Body {
    pub fn prop(&self, name: &str) -> Option<&Property> {
        self.props.iter().find(|p| p.name.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct Input {
    pub doc: Option<String>,
    pub name: Ident,
    pub ty: TypeExpr,
    pub default: Option<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Secret {
    pub doc: Option<String>,
    pub name: Ident,
    pub value: Expr,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Let {
    pub doc: Option<String>,
    pub name: Ident,
    pub ty: Option<TypeExpr>,
    pub value: Expr,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub doc: Option<String>,
    pub name: Ident,
    pub kind: Ident,
    pub props: Vec<Property>,
    /// Span of the `{ … }` body.
    pub body: Span,
    /// False when the body ran into the next item or the end of the file.
    pub closed: bool,
    pub span: Span,
}

impl Task {
    pub fn prop(&self, name: &str) -> Option<&Property> {
        self.props.iter().find(|p| p.name.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct Property {
    pub name: Ident,
    /// `None` for a property that did not parse (a hole).
    pub value: Option<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Block {
    pub items: Vec<Item>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Try {
    pub body: Block,
    pub catch: Option<Block>,
    pub finally: Option<Block>,
    /// Span of the `try` keyword.
    pub keyword: Span,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct For {
    pub var: Ident,
    pub iter: Expr,
    pub body: Block,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Assert {
    pub cond: Expr,
    pub message: Option<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Output {
    pub doc: Option<String>,
    pub name: Ident,
    pub value: Expr,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct ErrorItem {
    pub name: Option<Ident>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeExpr {
    Named(Ident),
    List(Box<TypeExpr>, Span),
    Map(Box<TypeExpr>, Span),
    Optional(Box<TypeExpr>, Span),
}

impl TypeExpr {
    pub fn span(&self) -> Span {
        match self {
            TypeExpr::Named(i) => i.span,
            TypeExpr::List(_, s) | TypeExpr::Map(_, s) | TypeExpr::Optional(_, s) => *s,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Str(Vec<StrPart>),
    Int(i64),
    Bool(bool),
    /// Milliseconds.
    Duration(u64),
    Name(String),
    Field(Box<Expr>, Ident),
    Call(Box<Expr>, Vec<Expr>),
    List(Vec<Expr>),
    Map(Vec<MapEntry>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Paren(Box<Expr>),
    /// An expression that could not be built (already diagnosed).
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StrPart {
    Text(String),
    Interp(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub struct MapEntry {
    pub key: String,
    pub key_span: Span,
    /// The key was written as a string (`"org.label": …`).
    pub quoted: bool,
    pub value: Expr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Coalesce,
    At,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Coalesce => "??",
            BinOp::At => "@",
        }
    }
}

impl Expr {
    /// The literal text of a string without interpolation.
    pub fn as_plain_str(&self) -> Option<String> {
        match &self.kind {
            ExprKind::Str(parts) => {
                let mut out = String::new();
                for p in parts {
                    match p {
                        StrPart::Text(t) => out.push_str(t),
                        StrPart::Interp(_) => return None,
                    }
                }
                Some(out)
            }
            _ => None,
        }
    }

    /// The depth of the expression tree, computed without recursion.
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(self, 1usize)];
        while let Some((e, d)) = stack.pop() {
            deepest = deepest.max(d);
            match &e.kind {
                ExprKind::Str(parts) => stack.extend(parts.iter().filter_map(|p| match p {
                    StrPart::Interp(x) => Some((x, d + 1)),
                    StrPart::Text(_) => None,
                })),
                ExprKind::Field(x, _) | ExprKind::Not(x) | ExprKind::Paren(x) => stack.push((x, d + 1)),
                ExprKind::Call(c, args) => {
                    stack.push((c, d + 1));
                    stack.extend(args.iter().map(|a| (a, d + 1)));
                }
                ExprKind::List(xs) => stack.extend(xs.iter().map(|x| (x, d + 1))),
                ExprKind::Map(es) => stack.extend(es.iter().map(|en| (&en.value, d + 1))),
                ExprKind::Binary(_, l, r) => {
                    stack.push((l, d + 1));
                    stack.push((r, d + 1));
                }
                _ => {}
            }
        }
        deepest
    }
}
