//! Text for CPC on sentences (van den Oord et al. 2018, §3.3): running text split into
//! sentences, words, a vocabulary; and labelled sentences for probes.
//!
//! - [`split_sentences`]: a rule-based splitter. A sentence ends at `.`, `!`, `?` or `…`
//!   (closing quotes and brackets stay with it) followed by white space and a word that
//!   does not start in lower case, except after a known abbreviation (`Mr.`, `e.g.`,
//!   `St.`, …) or a single-letter initial (`J. Smith`); a blank line always ends one.
//! - [`tokenize`]: lower-cased words (inner apostrophes kept: `don't`), numbers, and each
//!   punctuation mark as its own token.
//! - [`Vocab`]: the most frequent words of a corpus, with `<pad>` = 0 and `<unk>` = 1.
//! - [`load_corpus`]: plain-text files (a file, or every `*.txt` under a directory), one
//!   document per file; training sequences never cross documents.
//! - [`load_labelled`]: `label<TAB>text` (or `label text`) lines, or a JSON list of
//!   `{"text": ..., "class": ...}` (entries whose class is null are dropped and counted).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Words whose trailing period does not end a sentence (compared in lower case,
/// without the final period).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "messrs", "dr", "prof", "rev", "hon", "st", "sr", "jr", "capt", "col",
    "gen", "lt", "sgt", "maj", "gov", "sen", "rep", "pres", "supt", "mt", "ft", "no", "nos", "vol",
    "vols", "ch", "chap", "fig", "figs", "p", "pp", "ed", "eds", "vs", "etc", "e.g", "i.e", "cf",
    "viz", "al", "approx", "inc", "ltd", "co", "corp", "dept", "jan", "feb", "mar", "apr", "jun",
    "jul", "aug", "sep", "sept", "oct", "nov", "dec", "a.m", "p.m", "u.s", "u.k", "d.c", "esq",
    "wm", "geo", "chas", "jas", "thos",
];

const TERMINATORS: &[char] = &['.', '!', '?', '…'];
const CLOSERS: &[char] = &['"', '\'', '”', '’', '»', ')', ']'];
const OPENERS: &[char] = &['"', '\'', '“', '‘', '«', '(', '['];

/// Splits running text into sentences (white space inside each collapsed to one space).
pub fn split_sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for paragraph in paragraphs(text) {
        let chars: Vec<char> = paragraph.chars().collect();
        let mut start = 0;
        let mut i = 0;
        while i < chars.len() {
            if !TERMINATORS.contains(&chars[i]) {
                i += 1;
                continue;
            }
            let term_start = i;
            while i < chars.len() && TERMINATORS.contains(&chars[i]) {
                i += 1;
            }
            let lone_period = i - term_start == 1 && chars[term_start] == '.';
            while i < chars.len() && CLOSERS.contains(&chars[i]) {
                i += 1;
            }
            let end = i;
            if end < chars.len() && !chars[end].is_whitespace() {
                continue; // "3.5", "U.S.A", "end.Next" stay whole
            }
            let next = chars[end..].iter().find(|c| !c.is_whitespace());
            if next.is_some_and(|c| c.is_lowercase()) {
                continue; // "“Oh!” she said", "e.g. the"
            }
            if lone_period && is_abbreviation(&chars[start..term_start]) {
                continue;
            }
            push_sentence(&mut out, &chars[start..end]);
            start = end;
        }
        push_sentence(&mut out, &chars[start..]);
    }
    out
}

/// The text split at blank lines, each paragraph's white space collapsed.
fn paragraphs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        for w in line.split_whitespace() {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(w);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Whether the word right before a lone period (the end of `before`) is an abbreviation
/// or a single-letter initial.
fn is_abbreviation(before: &[char]) -> bool {
    let word_start = before
        .iter()
        .rposition(|c| c.is_whitespace())
        .map_or(0, |p| p + 1);
    let word: String = before[word_start..]
        .iter()
        .skip_while(|c| OPENERS.contains(c))
        .collect::<String>()
        .to_lowercase();
    let letters = word.chars().filter(|c| c.is_alphabetic()).count();
    // A lone capital is an initial ("J. Smith"), except the pronoun ("so did I.").
    (letters == 1 && word != "i" && word.chars().all(|c| c.is_alphabetic()))
        || ABBREVIATIONS.contains(&word.as_str())
}

fn push_sentence(out: &mut Vec<String>, chars: &[char]) {
    let s: String = chars.iter().collect();
    let s = s.trim();
    if s.chars().any(|c| c.is_alphanumeric()) {
        out.push(s.to_string());
    }
}

/// Lower-cased word and punctuation tokens.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &ch) in chars.iter().enumerate() {
        let ch = if ch == '’' { '\'' } else { ch };
        if ch.is_alphanumeric() {
            word.extend(ch.to_lowercase());
        } else if ch == '\''
            && !word.is_empty()
            && chars.get(i + 1).is_some_and(|c| c.is_alphabetic())
        {
            word.push('\'');
        } else {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            if !ch.is_whitespace() {
                out.push(ch.to_string());
            }
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// A word vocabulary: index 0 pads, 1 stands for every word not in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocab {
    pub words: Vec<String>,
    index: HashMap<String, u32>,
}

pub const PAD: u32 = 0;
pub const UNK: u32 = 1;

impl Vocab {
    /// The `size − 2` most frequent tokens of `sentences` (ties in alphabetical order)
    /// after `<pad>` and `<unk>`.
    pub fn build<'a>(sentences: impl IntoIterator<Item = &'a [String]>, size: usize) -> Vocab {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for s in sentences {
            for w in s {
                *counts.entry(w.as_str()).or_default() += 1;
            }
        }
        let mut by_count: Vec<(&str, u64)> = counts.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let words = ["<pad>", "<unk>"]
            .into_iter()
            .chain(by_count.into_iter().map(|(w, _)| w))
            .take(size.max(2))
            .map(String::from)
            .collect();
        Vocab::from_words(words)
    }

    pub fn from_words(words: Vec<String>) -> Vocab {
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        Vocab { words, index }
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    pub fn id(&self, word: &str) -> u32 {
        self.index.get(word).copied().unwrap_or(UNK)
    }

    pub fn encode(&self, tokens: &[String]) -> Vec<u32> {
        tokens.iter().map(|t| self.id(t)).collect()
    }
}

/// How text files are decoded.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum TextEncoding {
    /// UTF-8 where the file is valid UTF-8, else Latin-1 (said in the output).
    #[default]
    Auto,
    /// UTF-8 only: a file with an invalid byte is refused.
    #[value(name = "utf-8")]
    #[serde(rename = "utf-8")]
    Utf8,
    /// ISO-8859-1: every byte is the character of the same number.
    #[value(name = "latin-1")]
    #[serde(rename = "latin-1")]
    Latin1,
}

/// Decodes a text file's bytes; returns the text and whether it was read as Latin-1.
/// Refuses what looks binary (NUL bytes, or more than 1% control characters other than
/// tab, newline, carriage return and form feed), naming `path`.
pub fn decode_text(bytes: &[u8], enc: TextEncoding, path: &Path) -> Result<(String, bool)> {
    let (text, latin1) = match (enc, std::str::from_utf8(bytes)) {
        (TextEncoding::Utf8 | TextEncoding::Auto, Ok(t)) => (t.to_string(), false),
        (TextEncoding::Utf8, Err(e)) => bail!(
            "{}: not valid UTF-8 (byte {}); pass the encoding (latin-1, or auto)",
            path.display(),
            e.valid_up_to()
        ),
        (TextEncoding::Latin1, _) | (TextEncoding::Auto, Err(_)) => {
            (bytes.iter().map(|&b| b as char).collect(), true)
        }
    };
    let control = text
        .chars()
        .filter(|&c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0c'))
        .count();
    if text.contains('\0') || control * 100 > text.chars().count().max(1) {
        bail!(
            "{}: does not look like text ({control} control characters in {} bytes)",
            path.display(),
            bytes.len()
        );
    }
    Ok((text, latin1))
}

/// Running text: documents (one per file), each a list of tokenised sentences.
#[derive(Debug)]
pub struct Corpus {
    pub files: Vec<PathBuf>,
    pub documents: Vec<Vec<Vec<String>>>,
    /// Files that were not UTF-8 and were read as Latin-1.
    pub latin1: Vec<PathBuf>,
}

impl Corpus {
    pub fn sentences(&self) -> usize {
        self.documents.iter().map(Vec::len).sum()
    }
}

/// Reads `path` (a text file, or every `*.txt` file under a directory, sorted), UTF-8
/// or else Latin-1.
pub fn load_corpus(path: &Path) -> Result<Corpus> {
    load_corpus_with(path, TextEncoding::Auto)
}

/// [`load_corpus`] with the files' encoding.
pub fn load_corpus_with(path: &Path, enc: TextEncoding) -> Result<Corpus> {
    let files = if path.is_dir() {
        let v: Vec<PathBuf> =
            super::walk_files(path, |p| p.extension().is_some_and(|x| x == "txt"))
                .with_context(|| format!("{}: cannot list", path.display()))?
                .into_iter()
                .map(|p| path.join(p))
                .collect();
        if v.is_empty() {
            bail!("{}: no .txt files in this directory", path.display());
        }
        v
    } else if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        bail!("{}: no such file or directory", path.display());
    };
    let mut documents = Vec::with_capacity(files.len());
    let mut latin1 = Vec::new();
    for f in &files {
        let bytes = crate::checkpoint::read_bounded(f, 4 << 30)
            .with_context(|| format!("{}: cannot read", f.display()))?;
        let (text, l1) = decode_text(&bytes, enc, f)?;
        if l1 {
            latin1.push(f.clone());
        }
        let doc: Vec<Vec<String>> = split_sentences(&text)
            .iter()
            .map(|s| tokenize(s))
            .filter(|t| !t.is_empty())
            .collect();
        documents.push(doc);
    }
    let corpus = Corpus {
        files,
        documents,
        latin1,
    };
    if corpus.sentences() == 0 {
        bail!("{}: no sentences in the text", path.display());
    }
    Ok(corpus)
}

/// Labelled texts for a probe.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub texts: Vec<String>,
    pub labels: Vec<usize>,
    pub classes: Vec<String>,
    /// Entries without a class (JSON `null`), left out.
    pub dropped: usize,
    /// Entries with an empty text, left out, and where the first was (`file:line` or
    /// `file: entry i`).
    pub empty: usize,
    pub first_empty: Option<String>,
    /// Read as Latin-1 (not valid UTF-8).
    pub latin1: bool,
}

/// Reads labelled texts: a JSON list of `{"text", "class"}` objects, or lines of
/// `label<TAB>text` (any whitespace separates when the line has no tab); UTF-8, else
/// Latin-1. Entries with an empty text (a line `0 `: some published sets have one) are
/// left out and counted.
pub fn load_labelled(path: &Path) -> Result<Labelled> {
    load_labelled_with(path, TextEncoding::Auto, false)
}

/// [`load_labelled`] with the file's encoding; `strict` refuses an empty text, naming
/// the entry, instead of leaving it out.
pub fn load_labelled_with(path: &Path, enc: TextEncoding, strict: bool) -> Result<Labelled> {
    if path.is_dir() {
        bail!(
            "{}: is a directory; labelled texts are one file (`label<TAB>text` lines or a JSON list)",
            path.display()
        );
    }
    let bytes = crate::checkpoint::read_bounded(path, 4 << 30)
        .with_context(|| format!("{}: cannot read labelled texts", path.display()))?;
    let (raw, latin1) = decode_text(&bytes, enc, path)?;
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut dropped = 0;
    let (mut empty, mut first_empty) = (0, None);
    let mut skip = |what: String| -> Result<()> {
        if strict {
            bail!("{what} (--strict refuses it; without --strict it is left out)");
        }
        empty += 1;
        first_empty.get_or_insert(what);
        Ok(())
    };
    if raw.trim_start().starts_with('{') {
        bail!(
            "{}: a JSON object; expected a JSON list of {{\"text\", \"class\"}} objects (or `label<TAB>text` lines)",
            path.display()
        );
    }
    if raw.trim_start().starts_with('[') {
        let v: Vec<serde_json::Value> = serde_json::from_str(&raw)
            .with_context(|| format!("{}: not a JSON list", path.display()))?;

        for (i, item) in v.iter().enumerate() {
            let text = item
                .get("text")
                .and_then(|t| t.as_str())
                .with_context(|| format!("{}: entry {i} has no string \"text\"", path.display()))?;
            let class = match item.get("class") {
                None => bail!("{}: entry {i} has no \"class\"", path.display()),
                Some(serde_json::Value::Null) => {
                    dropped += 1;
                    continue;
                }
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            if text.trim().is_empty() {
                skip(format!(
                    "{}: entry {i} has an empty \"text\"",
                    path.display()
                ))?;
                continue;
            }
            pairs.push((class, text.to_string()));
        }
    } else {
        for (i, line) in raw.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (label, text) = line
                .split_once('\t')
                .or_else(|| line.trim_start().split_once(char::is_whitespace))
                .with_context(|| {
                    format!(
                        "{}:{}: expected `label<TAB>text`, got {line:?}",
                        path.display(),
                        i + 1
                    )
                })?;
            if text.trim().is_empty() {
                skip(format!(
                    "{}:{}: empty text for label {:?}",
                    path.display(),
                    i + 1,
                    label.trim()
                ))?;
                continue;
            }
            pairs.push((label.trim().to_string(), text.trim().to_string()));
        }
    }
    if pairs.is_empty() {
        bail!("{}: no labelled texts", path.display());
    }
    let labels: Vec<&str> = pairs.iter().map(|(l, _)| l.as_str()).collect();
    let (classes, labels) = super::encode_labels(&labels);
    if classes.len() < 2 {
        bail!(
            "{}: only one class ({:?}); a probe needs two or more",
            path.display(),
            classes[0]
        );
    }
    Ok(Labelled {
        texts: pairs.into_iter().map(|(_, t)| t).collect(),
        labels,
        classes,
        dropped,
        empty,
        first_empty,
        latin1,
    })
}
