//! The shared harness of fleethub's property-based fuzz tests (`docs/testing.md`, "Fuzzing"):
//! every crate's `tests/fuzz_*.rs` replays its committed corpus in `tests/fuzz-corpus/<target>/`
//! first, then feeds generated and mutated inputs to its parsers. This crate holds what they
//! share: the case count (`FLEETHUB_FUZZ_CASES`, default 256; `scripts/fuzz.sh` runs more), the
//! corpus readers and the mutated-text strategy. It is a dev-dependency only.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::Config;

/// The number of cases when `FLEETHUB_FUZZ_CASES` is unset or not a number.
pub const DEFAULT_CASES: u32 = 256;

/// The proptest configuration of every fuzz target: `FLEETHUB_FUZZ_CASES` cases, no failure
/// persistence files (a failure prints its minimal input; add it to the corpus by hand).
pub fn config() -> Config {
    let cases = std::env::var("FLEETHUB_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// The files of `{manifest_dir}/tests/fuzz-corpus/{target}/`, sorted by name. Panics (the
/// test fails) when the folder is missing or holds fewer than `min` files.
pub fn corpus_files(manifest_dir: &str, target: &str, min: usize) -> Vec<PathBuf> {
    let dir = Path::new(manifest_dir)
        .join("tests/fuzz-corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= min,
        "{}: corpus too small ({} files, at least {min} expected)",
        dir.display(),
        files.len()
    );
    files
}

/// The text corpus of `target` (see [`corpus_files`]): each file's content, in name order.
pub fn text_corpus(manifest_dir: &str, target: &str, min: usize) -> Vec<String> {
    corpus_files(manifest_dir, target, min)
        .into_iter()
        .map(|p| {
            std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("{}: not UTF-8 text: {e}", p.display()))
        })
        .collect()
}

/// The byte corpus of `target` (see [`corpus_files`]): (file name, content), in name order.
pub fn byte_corpus(manifest_dir: &str, target: &str, min: usize) -> Vec<(String, Vec<u8>)> {
    corpus_files(manifest_dir, target, min)
        .into_iter()
        .map(|p| {
            let name = p.file_name().expect("file").to_string_lossy().into_owned();
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, bytes)
        })
        .collect()
}

/// How [`text_input`] mutates corpus entries.
#[derive(Debug, Clone, Copy)]
pub struct Mutations {
    /// The longest soup of fragments (in fragments).
    pub soup_len: usize,
    /// The most fragments spliced into one corpus entry (at least 1).
    pub splices: usize,
    /// Whether a mutated entry may also lose its tail.
    pub truncate: bool,
}

/// Text inputs for a parser: the corpus entries as they are, arbitrary strings, soups of the
/// `fragments` the grammar is made of, and corpus entries with fragments spliced in (and, with
/// `truncate`, a tail cut off).
pub fn text_input(
    corpus: Vec<String>,
    fragments: &'static [&'static str],
    mutations: Mutations,
) -> impl Strategy<Value = String> {
    let Mutations {
        soup_len,
        splices,
        truncate,
    } = mutations;
    prop_oneof![
        select(corpus.clone()),
        any::<String>(),
        prop::collection::vec(select(fragments), 0..soup_len).prop_map(|v| v.concat()),
        (
            select(corpus),
            prop::collection::vec(
                (any::<prop::sample::Index>(), select(fragments)),
                1..=splices.max(1)
            ),
            any::<prop::sample::Index>(),
            any::<bool>(),
        )
            .prop_map(move |(mut s, edits, cut, cut_it)| {
                for (at, f) in edits {
                    let i = floor_char_boundary(&s, at.index(s.len() + 1));
                    s.insert_str(i, f);
                }
                if truncate && cut_it {
                    let i = floor_char_boundary(&s, cut.index(s.len() + 1));
                    s.truncate(i);
                }
                s
            }),
    ]
}

/// The largest char boundary of `s` at or below `i`.
pub fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    #[test]
    fn floor_char_boundary_never_splits_a_character() {
        let s = "a€b";
        assert_eq!(floor_char_boundary(s, 0), 0);
        assert_eq!(floor_char_boundary(s, 2), 1);
        assert_eq!(floor_char_boundary(s, 3), 1);
        assert_eq!(floor_char_boundary(s, 4), 4);
        assert_eq!(floor_char_boundary(s, 99), s.len());
    }

    #[test]
    fn text_input_yields_corpus_entries_and_mutations_of_them() {
        let corpus = vec!["devices/d1/messages/events/".to_string()];
        let strategy = text_input(
            corpus.clone(),
            &["XX"],
            Mutations {
                soup_len: 4,
                splices: 2,
                truncate: false,
            },
        );
        let mut runner = TestRunner::deterministic();
        let (mut verbatim, mut spliced) = (0, 0);
        for _ in 0..400 {
            let v = strategy.new_tree(&mut runner).expect("tree").current();
            verbatim += usize::from(v == corpus[0]);
            spliced += usize::from(v != corpus[0] && v.replace("XX", "") == corpus[0]);
        }
        assert!(verbatim > 0, "corpus entries are replayed");
        assert!(spliced > 0, "corpus entries are mutated");
    }

    #[test]
    fn missing_corpus_folder_fails_loudly() {
        let r = std::panic::catch_unwind(|| corpus_files(env!("CARGO_MANIFEST_DIR"), "none", 1));
        assert!(r.is_err());
    }
}
