//! Words as PostgreSQL's `to_tsvector` sees them, so the embedded store's full-text index holds
//! the lexemes PostgreSQL's `tsv` holds and both backends rank alike.
//!
//! PostgreSQL's side (`backend/postgres/schema.rs`): the text with [`WORD_BREAKS`] turned into
//! spaces, parsed by the default parser, then the `english` configuration (Snowball English
//! stemming, the Snowball stop words; words with digits kept as written) or `simple` (lower
//! case only). This module does the same in Rust: the same breaks, the parser's tags
//! (`<stdin>`, `<a href="x">`) and entities (`&amp;`) left out as PostgreSQL leaves them out,
//! runs of letters and digits as words, the same stop words and the same stemmer (Snowball's
//! English, from `rust-stemmers`). FTS5 then indexes the lexemes as they are (`unicode61`,
//! nothing folded). Its own `porter` tokenizer is another algorithm (Porter, and it leaves words
//! under three letters alone): "us" and "uses" were one word there and two on PostgreSQL.
//!
//! A stop word becomes [`STOP`], which no lexeme equals, so it counts in the length as a
//! position does in PostgreSQL and never matches ("own" is a stop word, "owning" has the lexeme
//! `own`). Stop words after a column's last lexeme are left out: PostgreSQL's length of a row
//! is its last position, and `title || content` shifts the content's positions by the title's
//! last one.

use std::sync::LazyLock;

use rust_stemmers::{Algorithm, Stemmer};

use crate::search_mode::WORD_BREAKS;

/// What a stop word is indexed as: `_` is a word character of the FTS5 table's tokenizer
/// (`tokenchars '_'`) and never part of a lexeme, which holds letters and digits only.
pub(super) const STOP: &str = "_";

static ENGLISH: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));

/// PostgreSQL's `english` stop words (`tsearch_data/english.stop`, the Snowball list): no
/// lexeme under the `english` configuration, as in PostgreSQL, so "tent for rainy weekends"
/// does not match every document with "for". They still take a position (count in a
/// document's length).
const ENGLISH_STOP_WORDS: [&str; 127] = [
    "i",
    "me",
    "my",
    "myself",
    "we",
    "our",
    "ours",
    "ourselves",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "he",
    "him",
    "his",
    "himself",
    "she",
    "her",
    "hers",
    "herself",
    "it",
    "its",
    "itself",
    "they",
    "them",
    "their",
    "theirs",
    "themselves",
    "what",
    "which",
    "who",
    "whom",
    "this",
    "that",
    "these",
    "those",
    "am",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "have",
    "has",
    "had",
    "having",
    "do",
    "does",
    "did",
    "doing",
    "a",
    "an",
    "the",
    "and",
    "but",
    "if",
    "or",
    "because",
    "as",
    "until",
    "while",
    "of",
    "at",
    "by",
    "for",
    "with",
    "about",
    "against",
    "between",
    "into",
    "through",
    "during",
    "before",
    "after",
    "above",
    "below",
    "to",
    "from",
    "up",
    "down",
    "in",
    "out",
    "on",
    "off",
    "over",
    "under",
    "again",
    "further",
    "then",
    "once",
    "here",
    "there",
    "when",
    "where",
    "why",
    "how",
    "all",
    "any",
    "both",
    "each",
    "few",
    "more",
    "most",
    "other",
    "some",
    "such",
    "no",
    "nor",
    "not",
    "only",
    "own",
    "same",
    "so",
    "than",
    "too",
    "very",
    "s",
    "t",
    "can",
    "will",
    "just",
    "don",
    "should",
    "now",
];

/// One word of a text: a stop word (a position without a lexeme) or a lexeme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Word {
    Stop,
    Lexeme(String),
}

/// The length of the tag PostgreSQL's parser sees at the start of `s` (which starts with `<`):
/// `<`, an optional `/ ? !`, a letter, then letters, digits, `_`, blanks, `=`, `?` and quoted
/// values up to `>`. `None` when `s` does not start with one (`<a, b>`, `< a>`, `<1>`).
fn tag_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices().skip(1).peekable();
    if let Some(&(_, '/' | '?' | '!')) = chars.peek() {
        chars.next();
    }
    if !chars.next().is_some_and(|(_, c)| c.is_ascii_alphabetic()) {
        return None;
    }
    let mut quote: Option<char> = None;
    for (i, c) in chars {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '>') => return Some(i + 1),
            (None, '"' | '\'') => quote = Some(c),
            (None, c) if c.is_ascii_alphanumeric() || c == '_' || c == '=' || c == '?' || c.is_whitespace() => {}
            (None, _) => return None,
        }
    }
    None
}

/// The length of the entity at the start of `s` (which starts with `&`): `&name;`, `&#65;` or
/// `&#x41;`.
fn entity_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let (digits, start): (fn(&u8) -> bool, usize) = match (b.get(1), b.get(2)) {
        (Some(b'#'), Some(b'x' | b'X')) => (u8::is_ascii_hexdigit, 3),
        (Some(b'#'), _) => (u8::is_ascii_digit, 2),
        _ => (u8::is_ascii_alphabetic, 1),
    };
    let n = b.get(start..).unwrap_or_default().iter().take_while(|c| digits(c)).count();
    (n > 0 && b.get(start + n) == Some(&b';')).then_some(start + n + 1)
}

/// The words of `text`, in order, under the `english` configuration (stop words, stemming) or
/// `simple` (lower case only).
pub(super) fn words(text: &str, english: bool) -> Vec<Word> {
    let text: String = text.chars().map(|c| if WORD_BREAKS.contains(c) { ' ' } else { c }).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        let skip = match c {
            '<' => tag_len(&text[i..]),
            '&' => entity_len(&text[i..]),
            _ => None,
        };
        if let Some(n) = skip {
            i += n;
            continue;
        }
        if !c.is_alphanumeric() {
            i += c.len_utf8();
            continue;
        }
        let n = text[i..].find(|c: char| !c.is_alphanumeric()).unwrap_or(text.len() - i);
        let word = text[i..i + n].to_lowercase();
        i += n;
        out.push(if !english || word.chars().any(char::is_numeric) {
            Word::Lexeme(word)
        } else if ENGLISH_STOP_WORDS.contains(&word.as_str()) {
            Word::Stop
        } else {
            Word::Lexeme(ENGLISH.stem(&word).into_owned())
        });
    }
    out
}

/// What the FTS5 table indexes for a column's `text`: its lexemes and stop words ([`STOP`]) in
/// order, space-separated, without the stop words after the last lexeme.
pub(super) fn indexed(text: &str, english: bool) -> String {
    let mut words = words(text, english);
    while words.last() == Some(&Word::Stop) {
        words.pop();
    }
    let mut out = String::with_capacity(text.len());
    for w in &words {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(match w {
            Word::Stop => STOP,
            Word::Lexeme(l) => l,
        });
    }
    out
}

/// A query's lexemes, each once, in order (stop words left out).
pub(super) fn query_lexemes(text: &str, english: bool) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    words(text, english)
        .into_iter()
        .filter_map(|w| match w {
            Word::Lexeme(l) if seen.insert(l.clone()) => Some(l),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lexemes PostgreSQL 15's `to_tsvector('english', ...)` gives for the same text (after the
    /// word breaks), written down from `ts_debug` on this project's server.
    #[test]
    fn lexemes_are_postgresqls() {
        let text = "<stdin> x<y> a <a b> <b c=\"d\"> &amp; foo_bar don't mp3 Café naïve 3rd x2y USES us Running <lambda>! os.path.join e-mail <a, b>";
        let lexemes = query_lexemes(text, true);
        assert_eq!(
            lexemes,
            [
                "x", "foo", "bar", "mp3", "café", "naïv", "3rd", "x2y", "use", "us", "run", "os", "path", "join", "e",
                "mail", "b"
            ]
        );
        assert_eq!(indexed("What to look for", true), "_ _ look", "stop words count, trailing ones do not");
        assert_eq!(indexed("The tents are TENTS", false), "the tents are tents");
        assert_eq!(query_lexemes("owning own", true), ["own"], "a stop word has no lexeme, a stem may equal one");
        assert_eq!(indexed("own owning", true), "_ own");
    }
}
