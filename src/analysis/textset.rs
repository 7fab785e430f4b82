//! The first of many patterns, in priority order, that matches a text: what the text rules ask.
//!
//! One `RegexSet` of all patterns finds every pattern that matches, in one overlapping scan whose
//! lazy DFA has to build states for the union of hundreds of patterns on each new kind of text.
//! Here a literal prefilter does the scan instead: each pattern's possible prefixes (extracted
//! from its syntax) go into one Aho-Corasick automaton, and a text is tried only against the
//! patterns whose prefixes occur in it (plus the few with no usable prefix), lowest index first,
//! each pattern compiled on its own the first time it is needed. Same answer as the set, without
//! the set's overlapping search, and start-up only parses the patterns.

use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::bytes::{Regex, RegexBuilder};
use regex_syntax::hir::literal::{ExtractKind, Extractor};

/// The matching options every pattern is read with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PatternOptions {
    pub case_insensitive: bool,
    pub size_limit: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct FirstMatch {
    sources: Vec<String>,
    /// Each pattern compiled on its own, once, when first needed (or the compiler's error).
    compiled: Vec<OnceLock<Result<Regex, regex::Error>>>,
    options: PatternOptions,
    prefilter: AhoCorasick,
    /// For each prefilter literal, the patterns it may start.
    literal_patterns: Vec<Vec<u32>>,
    /// Patterns without a usable prefix: always tried.
    always: Vec<u64>,
}

/// A pattern that does not parse: its index and the parser's words.
#[derive(Debug)]
pub(crate) struct BadPattern {
    pub index: usize,
    pub error: regex::Error,
}

/// How much of each extracted prefix the prefilter keeps: shorter prefixes make a smaller
/// automaton (built at every start) but send more texts to the patterns. Measured by callgrind
/// (BENCHMARKS.md, session 13): 8 bytes cost 4% more over 1,650 mails, 20 saved less at start.
const PREFIX_LEN: usize = 14;

impl FirstMatch {
    /// Parses every pattern (a syntax error names the first bad one) and builds the prefilter.
    pub fn new(patterns: Vec<String>, options: PatternOptions) -> Result<Self, BadPattern> {
        let words = patterns.len().div_ceil(64);
        let mut always = vec![0u64; words];
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut literal_patterns: Vec<Vec<u32>> = Vec::new();
        let mut index_of: std::collections::HashMap<Vec<u8>, usize> =
            std::collections::HashMap::new();
        let mut extractor = Extractor::new();
        extractor.kind(ExtractKind::Prefix);
        for (index, pattern) in patterns.iter().enumerate() {
            let hir = regex_syntax::ParserBuilder::new()
                .unicode(false)
                .utf8(false)
                .build()
                .parse(pattern)
                .map_err(|e| BadPattern {
                    index,
                    error: regex::Error::Syntax(e.to_string()),
                })?;
            let seq = extractor.extract(&hir);
            let usable = seq
                .literals()
                .filter(|lits| !lits.is_empty() && lits.iter().all(|l| !l.as_bytes().is_empty()));
            match usable {
                // Texts are lower case (`first`'s contract): each literal once, in lower case.
                // Non-ASCII literals are bytes that must occur as written (the patterns match
                // bytes; case folding, where on, is ASCII only), so they serve as well.
                Some(lits) => {
                    for lit in lits {
                        // A prefix of a prefix still has to occur where the pattern matches; a
                        // short one keeps the automaton small (built at every start), and the
                        // pattern itself decides.
                        let bytes = lit.as_bytes();
                        let lower = bytes[..bytes.len().min(PREFIX_LEN)].to_ascii_lowercase();
                        let id = *index_of.entry(lower.clone()).or_insert_with(|| {
                            literals.push(lower);
                            literal_patterns.push(Vec::new());
                            literals.len() - 1
                        });
                        let list = &mut literal_patterns[id];
                        if list.last() != Some(&(index as u32)) {
                            list.push(index as u32);
                        }
                    }
                }
                _ => always[index / 64] |= 1 << (index % 64),
            }
        }
        // Built at every start, so kept small: no ASCII case folding (literals and texts are
        // both lower case already; folding would double the automaton), and a contiguous NFA
        // rather than a DFA (diagnostics are short, so the search automaton matters less).
        let prefilter = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .build(&literals)
            .map_err(|e| BadPattern {
                index: 0,
                error: regex::Error::Syntax(e.to_string()),
            })?;
        Ok(FirstMatch {
            compiled: patterns.iter().map(|_| OnceLock::new()).collect(),
            sources: patterns,
            options,
            prefilter,
            literal_patterns,
            always,
        })
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Pattern `index` as written.
    pub fn source(&self, index: usize) -> &str {
        &self.sources[index]
    }

    /// The lowest-index pattern that matches `text` (lower case, as the rules are written for
    /// it), if any.
    #[cfg(test)]
    pub fn first(&self, text: &[u8]) -> Option<usize> {
        self.first_where(text, |_| true)
    }

    /// The lowest-index pattern that matches `text` among those `applies` accepts.
    pub fn first_where(&self, text: &[u8], applies: impl Fn(usize) -> bool) -> Option<usize> {
        let mut candidates = self.always.clone();
        for found in self.prefilter.find_overlapping_iter(text) {
            for &pattern in &self.literal_patterns[found.pattern().as_usize()] {
                candidates[pattern as usize / 64] |= 1 << (pattern % 64);
            }
        }
        for (word_index, mut word) in candidates.into_iter().enumerate() {
            while word != 0 {
                let index = word_index * 64 + word.trailing_zeros() as usize;
                word &= word - 1;
                if applies(index) && self.regex(index).as_ref().is_ok_and(|r| r.is_match(text)) {
                    return Some(index);
                }
            }
        }
        None
    }

    /// The pattern compiled on its own (once); an error only if it is too large to compile,
    /// and then it never matches.
    fn regex(&self, index: usize) -> &Result<Regex, regex::Error> {
        self.compiled[index].get_or_init(|| {
            RegexBuilder::new(&self.sources[index])
                .case_insensitive(self.options.case_insensitive)
                .unicode(false)
                .size_limit(self.options.size_limit)
                .dfa_size_limit(self.options.size_limit)
                .build()
        })
    }

    /// Compiles every pattern now: the first that does not compile (too large), if any.
    pub fn compile_all(&self) -> Result<(), BadPattern> {
        (0..self.len()).try_for_each(|index| match self.regex(index) {
            Ok(_) => Ok(()),
            Err(error) => Err(BadPattern {
                index,
                error: error.clone(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::bytes::RegexSetBuilder;

    fn options() -> PatternOptions {
        PatternOptions {
            case_insensitive: false,
            size_limit: 64 << 20,
        }
    }

    #[test]
    fn the_lowest_index_that_matches_wins() {
        let patterns: Vec<String> = ["user unknown", "unknown", r"\bmailbox (?:is )?full", r"\d+"]
            .into_iter()
            .map(String::from)
            .collect();
        let first = FirstMatch::new(patterns.clone(), options()).unwrap();
        assert_eq!(first.first(b"550 user unknown"), Some(0));
        assert_eq!(first.first(b"unknown host"), Some(1));
        assert_eq!(first.first(b"the mailbox is full"), Some(2));
        assert_eq!(first.first(b"error 42"), Some(3));
        assert_eq!(first.first(b"nothing here"), None);
        assert_eq!(first.first(b""), None);
        // Passed over, the next pattern that matches decides.
        assert_eq!(first.first_where(b"550 user unknown", |i| i != 0), Some(1));
        assert_eq!(first.first_where(b"unknown 42", |i| i > 1), Some(3));
        assert_eq!(first.first_where(b"unknown", |i| i != 1), None);
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let patterns = vec!["fine".to_string(), "(unclosed".to_string()];
        let bad = FirstMatch::new(patterns.clone(), options()).unwrap_err();
        assert_eq!(bad.index, 1);
    }

    /// The shipped rules' patterns give the same answer as one `RegexSet` of them, on texts made
    /// of the patterns' own words and of the fixtures' and the real-MTA corpus' mails, whole and
    /// line by line.
    #[test]
    fn same_answers_as_a_regex_set() {
        let rules: toml::Value =
            toml::from_str(include_str!("../../config/bounce-rules.toml")).unwrap();
        let patterns: Vec<String> = rules["rule"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["patterns"].as_array().unwrap().iter())
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        let set = RegexSetBuilder::new(&patterns)
            .unicode(false)
            .size_limit(64 << 20)
            .build()
            .unwrap();
        let first = FirstMatch::new(patterns.clone(), options()).unwrap();
        let mut texts: Vec<String> = patterns
            .iter()
            .map(|p| p.replace(['\\', '(', ')', '?', ':', '[', ']', '|', '*', '+'], " "))
            .collect();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut stack = vec![root.join("tests/fixtures"), root.join("tests/corpus")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "eml") {
                    let text =
                        String::from_utf8_lossy(&std::fs::read(&path).unwrap()).to_lowercase();
                    texts.extend(text.lines().map(String::from));
                    texts.push(text);
                }
            }
        }
        let mut matched = 0;
        for text in &texts {
            let want = set.matches(text.as_bytes()).iter().next();
            assert_eq!(first.first(text.as_bytes()), want, "{text:?}");
            matched += usize::from(want.is_some());
        }
        assert!(matched > 2000, "the texts exercise the rules: {matched}");
    }
}
