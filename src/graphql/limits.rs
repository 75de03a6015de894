//! What a GraphQL request may cost, decided before async-graphql pays for it.
//!
//! async-graphql expands fragment spreads wherever it walks a document: its recursion-depth
//! check, every validation visitor and the complexity and depth calculations all visit a
//! fragment's selections once per spread. A ~1 KB document of fragments that each spread
//! the previous one twice therefore costs 2^levels before any limit says no. The checks
//! here are linear in the size of the text and of the parsed document, so they must run
//! first:
//!
//! 1. [`check_text`] on the raw query: a byte cap, then one lexical pass that counts tokens
//!    and bracket nesting and stops at the first cap exceeded. The nesting cap matters for
//!    the parser too: async-graphql's parser turns nested list and object values into
//!    values recursively and without a limit, so about 1 600 nested `[` (3 KB) overflow a
//!    2 MiB tokio worker stack in a release build, about 400 in a debug build, and a stack
//!    overflow aborts the whole process.
//! 2. Parse (async-graphql's parser is linear in the text: 10 000 / 100 000 / 400 000
//!    fields parse in 17 / 104 / 387 ms in a release build, and it refuses selection sets
//!    nested deeper than 64).
//! 3. [`check_document`] on the parsed document: the number of fields and selections, the
//!    field depth and async-graphql's "recursive depth" each operation has after fragment
//!    expansion, computed without expanding (every fragment is measured once and
//!    memoised), with fragment cycles and unknown fragments reported as errors.
//!
//! The HTTP layer (`http::graphql`) calls them before handing the parsed document to
//! async-graphql (whose own parse-time walk, `check_recursive_depth`, expands fragments too);
//! the schema's own depth and complexity limits ([`MAX_DEPTH`], [`MAX_COMPLEXITY`]) still
//! apply afterwards.

use std::collections::{HashMap, HashSet};
use std::fmt;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

/// Field depth the schema admits (`Schema::limit_depth`). graphql-js's and graphql-core's
/// `getIntrospectionQuery()` reach 15 (`__schema.types.fields.args.type` and nine levels of
/// `ofType`, then `name`); nothing outside introspection in this schema goes deeper than 3.
pub const MAX_DEPTH: usize = 16;

/// Complexity the schema admits (`Schema::limit_complexity`). Every field counts 1 unless
/// it declares otherwise, so this is the number of fields in the expanded query; the
/// introspection query with every option has 230 (4.3× room). It also bounds what a
/// query can fan out: 240 aliased `__schema { types { fields { name } } }` (complexity 960)
/// answer 375 KB in 17 ms (release build).
pub const MAX_COMPLEXITY: usize = 1_000;

/// async-graphql's own recursion-depth limit (its default, `limit_recursive_depth(32)`):
/// nesting of fields with selections, fragment spreads and inline fragments. The
/// introspection query reaches 17.
pub const MAX_RECURSIVE_DEPTH: usize = 32;

/// Caps on one request's query text and document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of query text (the introspection query is about 2 KB).
    pub max_bytes: usize,
    /// Lexical tokens (punctuators, names, numbers, strings) in the query text.
    pub max_tokens: usize,
    /// Nesting of `{`, `[` and `(` in the query text.
    pub max_nesting: usize,
    /// Fields in all the document's operations after fragment expansion.
    pub max_expanded_fields: usize,
    /// Field depth after fragment expansion.
    pub max_depth: usize,
    /// async-graphql's recursive depth after fragment expansion (see [`MAX_RECURSIVE_DEPTH`]).
    pub max_recursive_depth: usize,
}

impl Limits {
    /// The defaults. The introspection query with every option (graphql-js 16 and 17)
    /// measures 2 257 bytes, 184 tokens, nesting 10, 230 expanded fields, depth 15 and
    /// recursive depth 17: the caps leave 14×, 21×, 3.2×, 8.7×, 1.07× and 1.9× room. The
    /// expanded-field cap sits above [`MAX_COMPLEXITY`] so that the schema's complexity
    /// limit, which knows about per-field weights, is the one an ordinary large query meets;
    /// this one only has to keep async-graphql's fragment-expanding walks small (at most
    /// 2 000 fields × 33 levels of selections).
    pub const DEFAULT: Limits = Limits {
        max_bytes: 32 * 1024,
        max_tokens: 4_000,
        max_nesting: 32,
        max_expanded_fields: 2_000,
        max_depth: MAX_DEPTH,
        max_recursive_depth: MAX_RECURSIVE_DEPTH,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a query was refused before execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitError {
    /// The text is longer than `max_bytes`.
    TooLarge { bytes: usize, limit: usize },
    /// The text has more than `max_tokens` tokens (counting stopped there).
    TooManyTokens { limit: usize },
    /// Brackets nest deeper than `max_nesting` (scanning stopped there).
    NestedTooDeep { limit: usize },
    /// Too many fields after fragment expansion (`usize::MAX` means at least that many).
    TooManyFields { fields: usize, limit: usize },
    /// Fields nest too deep after fragment expansion.
    TooDeep { depth: usize, limit: usize },
    /// Fields, fragment spreads and inline fragments nest too deep after expansion.
    RecursionTooDeep { depth: usize, limit: usize },
    /// A fragment spreads itself, directly or through others.
    FragmentCycle { fragment: String },
    /// A spread names a fragment the document does not define.
    UnknownFragment { fragment: String },
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { bytes, limit } => {
                write!(f, "the query is {bytes} bytes long; the limit is {limit}")
            }
            Self::TooManyTokens { limit } => {
                write!(
                    f,
                    "the query has more than {limit} tokens; the limit is {limit}"
                )
            }
            Self::NestedTooDeep { limit } => write!(
                f,
                "the query nests brackets more than {limit} deep; the limit is {limit}"
            ),
            Self::TooManyFields { fields, limit } => {
                let at_least = if *fields == usize::MAX {
                    "at least "
                } else {
                    ""
                };
                write!(
                    f,
                    "the query has {at_least}{fields} fields after expanding fragments; \
                     the limit is {limit}"
                )
            }
            Self::TooDeep { depth, limit } => write!(
                f,
                "the query nests fields {depth} deep after expanding fragments; the limit is {limit}"
            ),
            Self::RecursionTooDeep { depth, limit } => write!(
                f,
                "the query nests fields and fragments {depth} deep; the limit is {limit}"
            ),
            Self::FragmentCycle { fragment } => {
                write!(f, "fragment `{fragment}` spreads itself (a fragment cycle)")
            }
            Self::UnknownFragment { fragment } => write!(f, "unknown fragment `{fragment}`"),
        }
    }
}

impl std::error::Error for LimitError {}

/// What one lexical pass over a query text found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextStats {
    /// Tokens: punctuators (`...` is one), names, numbers, strings and block strings.
    /// Whitespace, line terminators, commas, comments and a byte-order mark are not tokens.
    pub tokens: usize,
    /// Deepest nesting of `{`, `[` and `(` together.
    pub nesting: usize,
}

/// Checks the size, token count and bracket nesting of a query text: O(len) time, O(1)
/// memory, and it stops at the first cap exceeded.
pub fn check_text(query: &str, limits: &Limits) -> Result<(), LimitError> {
    if query.len() > limits.max_bytes {
        return Err(LimitError::TooLarge {
            bytes: query.len(),
            limit: limits.max_bytes,
        });
    }
    scan(query, limits.max_tokens, limits.max_nesting).map(|_| ())
}

/// Counts the tokens and bracket nesting of a whole query text (no caps; for logs and tests).
pub fn measure_text(query: &str) -> TextStats {
    // Neither cap can be exceeded, so this never falls back to the default.
    scan(query, usize::MAX, usize::MAX).unwrap_or_default()
}

fn scan(query: &str, max_tokens: usize, max_nesting: usize) -> Result<TextStats, LimitError> {
    let mut lexer = Lexer {
        bytes: query.as_bytes(),
        pos: 0,
    };
    let mut stats = TextStats::default();
    let mut depth = 0usize;
    while let Some(token) = lexer.next_token() {
        stats.tokens += 1;
        if stats.tokens > max_tokens {
            return Err(LimitError::TooManyTokens { limit: max_tokens });
        }
        match token {
            Token::Open => {
                depth += 1;
                if depth > max_nesting {
                    return Err(LimitError::NestedTooDeep { limit: max_nesting });
                }
                stats.nesting = stats.nesting.max(depth);
            }
            Token::Close => depth = depth.saturating_sub(1),
            Token::Other => {}
        }
    }
    Ok(stats)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// `{`, `[` or `(`.
    Open,
    /// `}`, `]` or `)`.
    Close,
    /// Anything else: a name, number, string, another punctuator, or a byte the GraphQL
    /// grammar does not allow here (each such byte counts as a token; the parser refuses
    /// the document anyway).
    Other,
}

/// The GraphQL lexical grammar (October 2021 spec, section 2.1), reduced to finding where
/// each token ends. Every step advances `pos`, so a pass is linear in the text.
struct Lexer<'a> {
    bytes: &'a [u8],
    pos: usize,
}

const BOM: &[u8] = "\u{feff}".as_bytes();

impl Lexer<'_> {
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    fn rest(&self) -> &[u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    fn next_token(&mut self) -> Option<Token> {
        self.skip_ignored();
        let first = self.peek(0)?;
        let token = match first {
            b'{' | b'[' | b'(' => {
                self.pos += 1;
                Token::Open
            }
            b'}' | b']' | b')' => {
                self.pos += 1;
                Token::Close
            }
            b'.' => {
                self.pos += if self.rest().starts_with(b"...") {
                    3
                } else {
                    1
                };
                Token::Other
            }
            b'"' => {
                if self.rest().starts_with(b"\"\"\"") {
                    self.block_string();
                } else {
                    self.string();
                }
                Token::Other
            }
            b'-' | b'0'..=b'9' => {
                self.number();
                Token::Other
            }
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                self.pos += 1;
                self.skip_while(|b| b == b'_' || b.is_ascii_alphanumeric());
                Token::Other
            }
            _ => {
                self.pos += 1;
                Token::Other
            }
        };
        Some(token)
    }

    /// Whitespace, line terminators, commas, comments and the byte-order mark.
    fn skip_ignored(&mut self) {
        while let Some(b) = self.peek(0) {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' | b',' => self.pos += 1,
                b'#' => self.skip_while(|b| b != b'\n' && b != b'\r'),
                _ if self.rest().starts_with(BOM) => self.pos += BOM.len(),
                _ => return,
            }
        }
    }

    fn skip_while(&mut self, keep: impl Fn(u8) -> bool) {
        while self.peek(0).is_some_and(&keep) {
            self.pos += 1;
        }
    }

    /// `"…"`: escapes skip the next byte; an unterminated string ends at the line's end.
    fn string(&mut self) {
        self.pos += 1;
        while let Some(b) = self.peek(0) {
            match b {
                b'"' => {
                    self.pos += 1;
                    return;
                }
                b'\\' => self.pos = (self.pos + 2).min(self.bytes.len()),
                b'\n' | b'\r' => return,
                _ => self.pos += 1,
            }
        }
    }

    /// `"""…"""`: only `\"""` escapes; it may span lines; unterminated runs to the end.
    fn block_string(&mut self) {
        self.pos += 3;
        while self.peek(0).is_some() {
            let rest = self.rest();
            if rest.starts_with(b"\\\"\"\"") {
                self.pos += 4;
            } else if rest.starts_with(b"\"\"\"") {
                self.pos += 3;
                return;
            } else {
                self.pos += 1;
            }
        }
    }

    /// `-? digits (. digits)? ([eE] [+-]? digits)?`; a lone `-` is a one-byte token.
    fn number(&mut self) {
        if self.peek(0) == Some(b'-') {
            self.pos += 1;
        }
        self.skip_while(|b| b.is_ascii_digit());
        if self.peek(0) == Some(b'.') && self.peek(1).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
            self.skip_while(|b| b.is_ascii_digit());
        }
        if matches!(self.peek(0), Some(b'e' | b'E')) {
            let digits_at = if matches!(self.peek(1), Some(b'+' | b'-')) {
                2
            } else {
                1
            };
            if self.peek(digits_at).is_some_and(|b| b.is_ascii_digit()) {
                self.pos += digits_at;
                self.skip_while(|b| b.is_ascii_digit());
            }
        }
    }
}

/// The size of a parsed document after fragment expansion, computed without expanding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DocumentStats {
    /// Fields, summed over the document's operations (async-graphql's complexity is also
    /// document-wide). Saturates at `usize::MAX`.
    pub fields: usize,
    /// Fields, fragment spreads and inline fragments, summed over operations: what a walk
    /// that expands fragments visits. Saturates at `usize::MAX`.
    pub selections: usize,
    /// The deepest field nesting of any operation (async-graphql's `limit_depth` measure).
    pub depth: usize,
    /// The deepest nesting of fields with selections, spreads and inline fragments of any
    /// operation (async-graphql's `limit_recursive_depth` measure).
    pub recursive_depth: usize,
}

/// Checks a parsed document's size after fragment expansion against `limits`:
/// O(size of the document) time however fragments multiply.
pub fn check_document(doc: &ExecutableDocument, limits: &Limits) -> Result<(), LimitError> {
    let stats = measure_document(doc)?;
    if stats.fields > limits.max_expanded_fields {
        return Err(LimitError::TooManyFields {
            fields: stats.fields,
            limit: limits.max_expanded_fields,
        });
    }
    if stats.depth > limits.max_depth {
        return Err(LimitError::TooDeep {
            depth: stats.depth,
            limit: limits.max_depth,
        });
    }
    if stats.recursive_depth > limits.max_recursive_depth {
        return Err(LimitError::RecursionTooDeep {
            depth: stats.recursive_depth,
            limit: limits.max_recursive_depth,
        });
    }
    Ok(())
}

/// Measures a parsed document after fragment expansion (see [`DocumentStats`]). Every
/// fragment, used or not, is measured exactly once, in dependency order found by an
/// iterative depth-first walk, so a long chain of fragments cannot exhaust the stack.
/// Fails on a fragment cycle or a spread of an undefined fragment.
pub fn measure_document(doc: &ExecutableDocument) -> Result<DocumentStats, LimitError> {
    let fragments = measure_fragments(doc)?;
    let mut stats = DocumentStats::default();
    for (_, operation) in doc.operations.iter() {
        let size = measure_set(&operation.node.selection_set.node, &fragments, 0)?;
        stats.fields = stats.fields.saturating_add(size.fields);
        stats.selections = stats.selections.saturating_add(size.selections);
        stats.depth = stats.depth.max(size.depth);
        stats.recursive_depth = stats.recursive_depth.max(size.recursive_depth);
    }
    Ok(stats)
}

/// Nesting of selection sets within one operation or fragment that [`measure_set`] and
/// [`collect_spreads`] follow by recursion. The parser refuses more than 64; this guards
/// documents built by other means.
const MAX_SELECTION_NESTING: usize = 128;

/// One selection set after expansion.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    fields: usize,
    selections: usize,
    depth: usize,
    recursive_depth: usize,
}

impl Size {
    fn absorb(&mut self, item: Size) {
        self.fields = self.fields.saturating_add(item.fields);
        self.selections = self.selections.saturating_add(item.selections);
        self.depth = self.depth.max(item.depth);
        self.recursive_depth = self.recursive_depth.max(item.recursive_depth);
    }
}

fn measure_fragments(doc: &ExecutableDocument) -> Result<HashMap<&str, Size>, LimitError> {
    // The fragments each fragment spreads, anywhere in its selection set.
    let mut spreads: HashMap<&str, Vec<&str>> = HashMap::with_capacity(doc.fragments.len());
    for (name, fragment) in &doc.fragments {
        let mut out = Vec::new();
        collect_spreads(&fragment.node.selection_set.node, &mut out, 0)?;
        spreads.insert(name.as_str(), out);
    }

    let mut done: HashMap<&str, Size> = HashMap::with_capacity(doc.fragments.len());
    let mut on_path: HashSet<&str> = HashSet::new();
    // (fragment, index of the next of its spreads to visit)
    let mut path: Vec<(&str, usize)> = Vec::new();
    for root in doc.fragments.keys() {
        let root = root.as_str();
        if done.contains_key(root) {
            continue;
        }
        path.push((root, 0));
        on_path.insert(root);
        while let Some((name, next)) = path.last_mut() {
            let name: &str = name;
            let children = spreads.get(name).map(Vec::as_slice).unwrap_or_default();
            if let Some(&child) = children.get(*next) {
                *next += 1;
                if done.contains_key(child) {
                    continue;
                }
                if on_path.contains(child) {
                    return Err(LimitError::FragmentCycle {
                        fragment: child.to_owned(),
                    });
                }
                if !spreads.contains_key(child) {
                    return Err(LimitError::UnknownFragment {
                        fragment: child.to_owned(),
                    });
                }
                on_path.insert(child);
                path.push((child, 0));
            } else {
                // Every fragment this one spreads is measured: measure it.
                let size = match doc.fragments.get(name) {
                    Some(fragment) => measure_set(&fragment.node.selection_set.node, &done, 0)?,
                    None => Size::default(),
                };
                done.insert(name, size);
                on_path.remove(name);
                path.pop();
            }
        }
    }
    Ok(done)
}

fn collect_spreads<'a>(
    set: &'a SelectionSet,
    out: &mut Vec<&'a str>,
    nesting: usize,
) -> Result<(), LimitError> {
    if nesting > MAX_SELECTION_NESTING {
        return Err(LimitError::NestedTooDeep {
            limit: MAX_SELECTION_NESTING,
        });
    }
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => {
                collect_spreads(&field.node.selection_set.node, out, nesting + 1)?;
            }
            Selection::FragmentSpread(spread) => {
                out.push(spread.node.fragment_name.node.as_str());
            }
            Selection::InlineFragment(inline) => {
                collect_spreads(&inline.node.selection_set.node, out, nesting + 1)?;
            }
        }
    }
    Ok(())
}

/// The size of `set` once expanded, given the sizes of the fragments it spreads.
fn measure_set(
    set: &SelectionSet,
    fragments: &HashMap<&str, Size>,
    nesting: usize,
) -> Result<Size, LimitError> {
    if nesting > MAX_SELECTION_NESTING {
        return Err(LimitError::NestedTooDeep {
            limit: MAX_SELECTION_NESTING,
        });
    }
    let mut total = Size::default();
    for selection in &set.items {
        let item = match &selection.node {
            Selection::Field(field) => {
                let children = &field.node.selection_set.node;
                if children.items.is_empty() {
                    Size {
                        fields: 1,
                        selections: 1,
                        depth: 1,
                        recursive_depth: 0,
                    }
                } else {
                    let inner = measure_set(children, fragments, nesting + 1)?;
                    Size {
                        fields: inner.fields.saturating_add(1),
                        selections: inner.selections.saturating_add(1),
                        depth: inner.depth.saturating_add(1),
                        recursive_depth: inner.recursive_depth.saturating_add(1),
                    }
                }
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                let inner = fragments
                    .get(name)
                    .ok_or_else(|| LimitError::UnknownFragment {
                        fragment: name.to_owned(),
                    })?;
                Size {
                    fields: inner.fields,
                    selections: inner.selections.saturating_add(1),
                    depth: inner.depth,
                    recursive_depth: inner.recursive_depth.saturating_add(1),
                }
            }
            Selection::InlineFragment(inline) => {
                let inner = measure_set(&inline.node.selection_set.node, fragments, nesting + 1)?;
                Size {
                    fields: inner.fields,
                    selections: inner.selections.saturating_add(1),
                    depth: inner.depth,
                    recursive_depth: inner.recursive_depth.saturating_add(1),
                }
            }
        };
        total.absorb(item);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::time::{Duration, Instant};

    use async_graphql::extensions::Analyzer;
    use async_graphql::parser::parse_query;
    use async_graphql::{EmptySubscription, Schema, Value};

    use super::*;
    use crate::graphql::{Mutation, Query, build};

    /// The queries graphql-js and graphql-core print (see each file's first line).
    const INTROSPECTION: &[(&str, &str)] = &[
        (
            "graphql16_default",
            include_str!("../../tests/fixtures/introspection_graphql16_default.graphql"),
        ),
        (
            "graphql16_all_options",
            include_str!("../../tests/fixtures/introspection_graphql16_all_options.graphql"),
        ),
        (
            "graphql17_default",
            include_str!("../../tests/fixtures/introspection_graphql17_default.graphql"),
        ),
        (
            "graphql17_all_options",
            include_str!("../../tests/fixtures/introspection_graphql17_all_options.graphql"),
        ),
        (
            "graphql_core32_all_options",
            include_str!("../../tests/fixtures/introspection_graphql_core32_all_options.graphql"),
        ),
    ];

    /// `fragment F0 on Query{leaf} fragment F1 on Query{...F0 ...F0} … query{...F<levels>}`:
    /// 2^levels copies of `leaf` once expanded.
    fn fragment_bomb(levels: usize, leaf: &str) -> String {
        let mut q = format!("fragment F0 on Query{{{leaf}}}");
        for i in 1..=levels {
            write!(q, " fragment F{i} on Query{{...F{p} ...F{p}}}", p = i - 1).unwrap();
        }
        write!(q, " query{{...F{levels}}}").unwrap();
        q
    }

    fn doc(query: &str) -> ExecutableDocument {
        parse_query(query).unwrap_or_else(|e| panic!("{query:?} does not parse: {e}"))
    }

    fn generous() -> Limits {
        Limits {
            max_bytes: usize::MAX,
            max_tokens: usize::MAX,
            max_nesting: usize::MAX,
            ..Limits::DEFAULT
        }
    }

    #[test]
    fn tokens_are_counted_per_the_graphql_lexical_grammar() {
        // (query, tokens, nesting)
        let cases: &[(&str, usize, usize)] = &[
            ("", 0, 0),
            ("{a}", 3, 1),
            ("{ a, b,, c }", 5, 1),
            (",,,\t\r\n  ", 0, 0),
            ("# only a comment", 0, 0),
            ("{a # b c d { { {\n}", 3, 1),
            ("{a # comment ended by CR\r b}", 4, 1),
            ("\u{feff}{a}", 3, 1),
            (r#"{a(x: "b c, d # e { [ ( ")}"#, 8, 2),
            (r#"{a(x: "escaped \" quote { ")}"#, 8, 2),
            (r#"{a(x: "backslash \\")}"#, 8, 2),
            (
                "{a(x: \"\"\"block\n{ [ \\\"\"\" still \"\" inside\"\"\")}",
                8,
                2,
            ),
            ("{a(x: \"\"\"\"\"\")}", 8, 2),
            ("{...F ... on Q {a}}", 10, 2),
            ("{a(x: -1.5e+3, y: 0, z: [1 2 3], w: 2E9, v: 0.25)}", 24, 3),
            ("query($v: [Int!]! = [1]) @d {a}", 20, 2),
            ("{a(x: \"unterminated", 6, 2),
            ("{a(x: \"unterminated\n) }", 8, 2),
            ("{a(x: \"\"\"unterminated } } }", 6, 2),
            ("_a1 B_2 __typename", 3, 0),
            ("{ a } }}} { b }", 9, 1),
            ("{a(x: \"汉字\")} ", 8, 2),
            ("- . .. ... ....", 7, 0),
            ("1e 1.a", 5, 0),
        ];
        for &(query, tokens, nesting) in cases {
            assert_eq!(
                measure_text(query),
                TextStats { tokens, nesting },
                "{query:?}"
            );
        }
    }

    #[test]
    fn check_text_caps_size_tokens_and_nesting() {
        let tiny_tokens = format!("{{{}}}", "a ".repeat(100_000));
        let commented = format!("{{a}}{}", "# x x x x x x x x x x\n".repeat(10_000));
        let long_string = format!("{{a(x: \"{}\")}}", "w ".repeat(10_000));
        let long_block = format!("{{a(x: \"\"\"{}\"\"\")}}", "w {\n".repeat(10_000));
        let nested = |n: usize| format!("{{a(x: {}1{})}}", "[".repeat(n), "]".repeat(n));
        let big = Limits {
            max_bytes: 1 << 20,
            ..Limits::DEFAULT
        };
        let cases: Vec<(&str, String, Limits, Result<(), LimitError>)> = vec![
            (
                "an ordinary query",
                "{ me { id identities { appId } } }".into(),
                Limits::DEFAULT,
                Ok(()),
            ),
            (
                "a text over max_bytes",
                " ".repeat(40_000),
                Limits::DEFAULT,
                Err(LimitError::TooLarge {
                    bytes: 40_000,
                    limit: 32 * 1024,
                }),
            ),
            (
                "many tiny tokens",
                tiny_tokens.clone(),
                big,
                Err(LimitError::TooManyTokens { limit: 4_000 }),
            ),
            (
                "the same within the byte cap",
                tiny_tokens[..20_000].to_owned(),
                Limits::DEFAULT,
                Err(LimitError::TooManyTokens { limit: 4_000 }),
            ),
            ("comments are not tokens", commented, big, Ok(())),
            ("a string is one token", long_string, big, Ok(())),
            ("a block string is one token", long_block, big, Ok(())),
            (
                "exactly max_tokens",
                format!("{{{}}}", "a ".repeat(3_998)),
                Limits::DEFAULT,
                Ok(()),
            ),
            (
                "one past max_tokens",
                format!("{{{}}}", "a ".repeat(3_999)),
                Limits::DEFAULT,
                Err(LimitError::TooManyTokens { limit: 4_000 }),
            ),
            // `{`, `(` and 30 `[`: 32 levels.
            (
                "nesting at max_nesting",
                nested(30),
                Limits::DEFAULT,
                Ok(()),
            ),
            (
                "nesting one past max_nesting",
                nested(31),
                Limits::DEFAULT,
                Err(LimitError::NestedTooDeep { limit: 32 }),
            ),
            // 10 000 nested lists overflow the parser's stack; they never reach it.
            (
                "nested lists that would crash the parser",
                nested(10_000),
                Limits::DEFAULT,
                Err(LimitError::NestedTooDeep { limit: 32 }),
            ),
        ];
        for (name, query, limits, expected) in cases {
            assert_eq!(check_text(&query, &limits), expected, "{name}");
        }
    }

    #[test]
    fn fragment_bombs_are_refused_without_expanding_them() {
        // (levels, leaf, fields after expansion)
        let cases: &[(usize, &str, usize)] = &[
            (24, "__typename", 1 << 24),
            (28, "__typename", 1 << 28),
            (28, "me{id}", 1 << 29),
            (62, "__typename", 1 << 62),
            (64, "__typename", usize::MAX),
            (1_000, "__typename", usize::MAX),
            (1_000, "me{id}", usize::MAX),
        ];
        for &(levels, leaf, fields) in cases {
            let query = fragment_bomb(levels, leaf);
            let parsed = doc(&query);
            let started = Instant::now();
            let stats = measure_document(&parsed).unwrap();
            let checked = check_document(&parsed, &Limits::DEFAULT);
            let elapsed = started.elapsed();
            println!(
                "bomb {levels:>4} levels, leaf {leaf:<10}: {} bytes, {stats:?}, check_document {elapsed:?}",
                query.len()
            );
            assert_eq!(stats.fields, fields, "{levels} {leaf}");
            assert_eq!(
                stats.recursive_depth,
                levels + 1 + usize::from(leaf != "__typename")
            );
            assert_eq!(
                checked,
                Err(LimitError::TooManyFields {
                    fields,
                    limit: 2_000
                }),
                "{levels} {leaf}"
            );
            // Linear work: microseconds. The bound only catches an exponential regression
            // at 24 levels (which took async-graphql 11 s); deeper bombs would never end.
            assert!(
                elapsed < Duration::from_secs(2),
                "{levels} levels took {elapsed:?}"
            );
        }
    }

    #[test]
    fn fragment_cycles_are_refused() {
        let cases: &[(&str, &str)] = &[
            ("itself", "fragment A on Query{...A} {...A}"),
            (
                "through another",
                "fragment A on Query{...B} fragment B on Query{__typename ...A} {...A}",
            ),
            (
                "through a field and an inline fragment",
                "fragment A on Query{me{... on User{...B}}} fragment B on User{id ...C} \
                 fragment C on User{identities{appId} ...B} {...A}",
            ),
            (
                "in fragments no operation uses",
                "fragment A on Query{...B} fragment B on Query{...A} {__typename}",
            ),
        ];
        for &(name, query) in cases {
            let parsed = doc(query);
            let err = check_document(&parsed, &Limits::DEFAULT).unwrap_err();
            assert!(
                matches!(err, LimitError::FragmentCycle { .. }),
                "{name}: {err:?}"
            );
            assert!(
                err.to_string().contains("a fragment cycle"),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn unknown_fragments_are_refused() {
        let cases: &[&str] = &[
            "{...Nope}",
            "{me{...Nope}}",
            "fragment A on Query{me{...Nope}} {...A}",
            "fragment A on Query{__typename} {...A ...Nope}",
        ];
        for &query in cases {
            assert_eq!(
                check_document(&doc(query), &Limits::DEFAULT),
                Err(LimitError::UnknownFragment {
                    fragment: "Nope".into()
                }),
                "{query}"
            );
        }
    }

    #[test]
    fn a_long_fragment_chain_is_measured_without_deep_recursion() {
        // F0{__typename} F1{...F0} … F20000{...F19999}: recursion per spread would need
        // 20 000 frames; the walk is iterative and runs on a 256 KiB stack.
        let mut query = String::from("fragment F0 on Query{__typename}");
        for i in 1..=20_000 {
            write!(query, " fragment F{i} on Query{{...F{}}}", i - 1).unwrap();
        }
        query.push_str(" {...F20000}");
        let parsed = doc(&query);
        let result = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                (
                    measure_document(&parsed),
                    check_document(&parsed, &generous()),
                )
            })
            .unwrap()
            .join()
            .unwrap();
        let (stats, checked) = result;
        assert_eq!(
            stats,
            Ok(DocumentStats {
                fields: 1,
                selections: 20_002,
                depth: 1,
                recursive_depth: 20_001,
            })
        );
        assert_eq!(
            checked,
            Err(LimitError::RecursionTooDeep {
                depth: 20_001,
                limit: 32
            })
        );
    }

    #[test]
    fn ordinary_queries_pass_with_their_exact_sizes() {
        // (query, fields, depth, recursive depth)
        let cases: &[(&str, usize, usize, usize)] = &[
            ("{__typename}", 1, 1, 0),
            (
                "{ me { id unionId identities { appId appKind openId } } }",
                7,
                3,
                2,
            ),
            (
                "query($u: String!) { user(unionId: $u) { ...U } } \
                 fragment U on User { id identities { ...I } } \
                 fragment I on Identity { appId openId subscribed }",
                6,
                3,
                4,
            ),
            (
                "mutation { loginWithCode(appId: \"wx1\", code: \"c\") { sessionToken \
                 user { ...U } identity { appId } } } fragment U on User { id unionId }",
                7,
                3,
                3,
            ),
            (
                "{ a: me { id } b: me { ... on User { id } } ...Q } fragment Q on Query { c: me { id } }",
                6,
                2,
                2,
            ),
            (
                "query A { me { id } } query B { me { id unionId } }",
                5,
                2,
                1,
            ),
        ];
        for &(query, fields, depth, recursive_depth) in cases {
            check_text(query, &Limits::DEFAULT).unwrap();
            let parsed = doc(query);
            let stats = measure_document(&parsed).unwrap();
            assert_eq!(
                (stats.fields, stats.depth, stats.recursive_depth),
                (fields, depth, recursive_depth),
                "{query}"
            );
            check_document(&parsed, &Limits::DEFAULT).unwrap();
        }
    }

    #[test]
    fn introspection_queries_fit_every_limit_with_room() {
        for &(name, query) in INTROSPECTION {
            let text = measure_text(query);
            let stats = measure_document(&doc(query)).unwrap();
            println!(
                "{name:<27} {:>5} bytes {:>4} tokens nesting {:>2}  {stats:?}",
                query.len(),
                text.tokens,
                text.nesting
            );
            check_text(query, &Limits::DEFAULT).unwrap();
            check_document(&doc(query), &Limits::DEFAULT).unwrap();
            let l = Limits::DEFAULT;
            assert!(query.len() * 10 <= l.max_bytes, "{name}");
            assert!(text.tokens * 10 <= l.max_tokens, "{name}");
            assert!(text.nesting * 2 <= l.max_nesting, "{name}");
            assert!(stats.fields * 4 <= MAX_COMPLEXITY, "{name}");
            assert!(stats.fields * 8 <= l.max_expanded_fields, "{name}");
            assert!(stats.depth < l.max_depth, "{name}");
            assert!(stats.recursive_depth + 8 <= l.max_recursive_depth, "{name}");
        }
    }

    fn errors_of(resp: &async_graphql::Response) -> Vec<String> {
        resp.errors.iter().map(|e| e.message.clone()).collect()
    }

    #[tokio::test]
    async fn introspection_queries_run_on_the_real_schema() {
        let schema = build(None);
        // The same schema with async-graphql's own complexity and depth reported.
        let analyzed = Schema::build(Query, Mutation, EmptySubscription)
            .extension(Analyzer)
            .finish();
        for &(name, query) in INTROSPECTION {
            let resp = schema.execute(query).await;
            assert!(resp.errors.is_empty(), "{name}: {:?}", errors_of(&resp));
            let data = resp.data.into_json().unwrap();
            let types = data["__schema"]["types"].as_array().unwrap();
            assert!(types.len() > 10, "{name}: {types:?}");
            assert!(
                types.iter().any(|t| t["name"] == "User"),
                "{name}: no User type"
            );

            let resp = analyzed.execute(query).await;
            let analyzer = resp.extensions.get("analyzer").unwrap();
            let Value::Object(analyzer) = analyzer else {
                panic!("{analyzer:?}");
            };
            let (complexity, depth) = (&analyzer["complexity"], &analyzer["depth"]);
            println!("{name:<27} complexity {complexity} depth {depth}");
            let stats = measure_document(&doc(query)).unwrap();
            assert_eq!(complexity, &Value::from(stats.fields), "{name}");
            assert_eq!(depth, &Value::from(stats.depth), "{name}");
        }
    }

    /// `{ __schema { types { fields { type { ofType { ofType … { name } … } } } } } }`,
    /// `depth` fields deep.
    fn deep_introspection(depth: usize) -> String {
        assert!(depth >= 5);
        let of_types = depth - 5;
        format!(
            "{{ __schema {{ types {{ fields {{ type {{ {} name {} }} }} }} }} }}",
            "ofType { ".repeat(of_types),
            "} ".repeat(of_types)
        )
    }

    /// `__schema { types { fields { type { ofType { fields { … } } } } } }` with `levels`
    /// `fields`: 3 × levels + 3 deep, and every level multiplies the answer.
    fn introspection_fan_out(levels: usize) -> String {
        let mut q = String::from("{ __schema { types { name ");
        for _ in 0..levels {
            q.push_str("fields { name type { ofType { name ");
        }
        for _ in 0..levels {
            q.push_str("} } }");
        }
        q.push_str("} } }");
        q
    }

    #[tokio::test]
    async fn the_schema_still_refuses_abusive_queries() {
        let schema = build(None);
        let wide = format!(
            "{{ {} }}",
            (0..600)
                .map(|i| format!("m{i}: me {{ id }}"))
                .collect::<String>()
        );
        let cases: Vec<(&str, String, Vec<&str>)> = vec![
            (
                "introspection at MAX_DEPTH",
                deep_introspection(MAX_DEPTH),
                vec![],
            ),
            (
                "introspection one field deeper than MAX_DEPTH",
                deep_introspection(MAX_DEPTH + 1),
                vec!["Query is nested too deep."],
            ),
            (
                "introspection fanning out three times",
                introspection_fan_out(3),
                vec![],
            ),
            (
                "introspection fanning out six times",
                introspection_fan_out(6),
                vec!["Query is nested too deep."],
            ),
            (
                "600 aliases of me { id }",
                wide,
                vec!["Query is too complex."],
            ),
        ];
        for (name, query, expected) in cases {
            let resp = schema.execute(query.as_str()).await;
            assert_eq!(errors_of(&resp), expected, "{name}");
        }
        let deeper = deep_introspection(MAX_DEPTH + 1);
        assert_eq!(
            check_document(&doc(&deeper), &Limits::DEFAULT),
            Err(LimitError::TooDeep {
                depth: 17,
                limit: 16
            })
        );
        // The bomb with a `me { id }` leaf: async-graphql alone refuses it as too complex,
        // but only after seconds of CPU; check_document refuses it first.
        let bomb = fragment_bomb(28, "me{id}");
        assert_eq!(
            check_document(&doc(&bomb), &Limits::DEFAULT),
            Err(LimitError::TooManyFields {
                fields: 1 << 29,
                limit: 2_000
            })
        );
    }
}
