//! Text corpora and labelled texts: decoding (UTF-8, Latin-1, binary refused), sentence
//! splitting and tokenising, and the labelled-lines reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rlcpc::data::text::{
    decode_text, load_corpus_with, load_labelled_with, split_sentences, tokenize, TextEncoding,
};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let enc = [TextEncoding::Auto, TextEncoding::Utf8, TextEncoding::Latin1][kind as usize % 3];
    let path = common::file("corpus.txt", bytes);
    if let Ok((text, _)) = decode_text(bytes, enc, &path) {
        for s in split_sentences(&text) {
            let _ = tokenize(&s);
        }
    }
    let _ = load_corpus_with(&path, enc);
    let _ = load_labelled_with(&path, enc, kind % 2 == 0);
});
