//! Text CPC's data and sentence encoder: the sentence splitter on abbreviations,
//! initials, quotes and numbers; tokens; the vocabulary; labelled-set formats and their
//! errors; the encoder against its formula; k-fold cross-validation and bag of words.

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use rand::{Rng, SeedableRng};
use rlcpc::data::text::{load_corpus, load_labelled, split_sentences, tokenize, Vocab, UNK};
use rlcpc::nn::init::Init;
use rlcpc::nn::text::SentenceEncoder;
use rlcpc::probe::{cross_validate, Features};
use rlcpc_envs::SeededRng;

#[test]
fn sentences_split_at_ends_but_not_at_abbreviations_initials_or_numbers() {
    let t = "Mr. Smith paid $3.50 for it. He left at 5 p.m. on Monday! \
             Did J. R. Hartley write it? “Stop!” she cried. Then he said, “Go home.” \
             And so on... The end\n\nA new paragraph without a period\nstill ends here.";
    let got = split_sentences(t);
    assert_eq!(
        got,
        vec![
            "Mr. Smith paid $3.50 for it.",
            "He left at 5 p.m. on Monday!",
            "Did J. R. Hartley write it?",
            "“Stop!” she cried.",
            "Then he said, “Go home.”",
            "And so on...",
            "The end",
            "A new paragraph without a period still ends here.",
        ]
    );
    // "I" ends a sentence; e.g. does not.
    assert_eq!(
        split_sentences("So did I. Then we went, e.g. to Rome. Fine."),
        vec!["So did I.", "Then we went, e.g. to Rome.", "Fine."]
    );
}

#[test]
fn tokens_are_lower_case_words_and_punctuation() {
    assert_eq!(
        tokenize("Don’t stop, John! It's 42."),
        vec!["don't", "stop", ",", "john", "!", "it's", "42", "."]
    );
    assert_eq!(tokenize("'quoted'"), vec!["'", "quoted", "'"]);
}

#[test]
fn the_vocabulary_keeps_the_most_frequent_words() {
    let s: Vec<Vec<String>> = ["b a c a", "a b d"].iter().map(|x| tokenize(x)).collect();
    let v = Vocab::build(s.iter().map(Vec::as_slice), 4);
    assert_eq!(v.words, vec!["<pad>", "<unk>", "a", "b"]);
    assert_eq!(v.encode(&tokenize("a b c zebra")), vec![2, 3, UNK, UNK]);
    // Ties go in alphabetical order: c and d appear once each.
    let v = Vocab::build(s.iter().map(Vec::as_slice), 10);
    assert_eq!(v.words[4..], ["c", "d"]);
}

#[test]
fn labelled_sets_load_from_json_and_lines_and_name_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("s.json");
    std::fs::write(
        &json,
        r#"[{"text":"Great phone.","class":1},{"text":"Awful.","class":0},{"text":"","class":null}]"#,
    )
    .unwrap();
    let l = load_labelled(&json).unwrap();
    assert_eq!(l.texts, vec!["Great phone.", "Awful."]);
    assert_eq!(
        (l.labels.clone(), l.classes.clone(), l.dropped),
        (vec![1, 0], vec!["0".into(), "1".into()], 1)
    );
    let tsv = dir.path().join("f.tsv");
    std::fs::write(&tsv, "science\tE = mc^2 and more.\nlove All you need.\n\n").unwrap();
    let l = load_labelled(&tsv).unwrap();
    assert_eq!(l.classes, vec!["love", "science"]);
    assert_eq!(l.texts, vec!["E = mc^2 and more.", "All you need."]);
    assert_eq!(l.labels, vec![1, 0]);
    std::fs::write(&tsv, "a\tx\nnoseparator\n").unwrap();
    let e = load_labelled(&tsv).unwrap_err().to_string();
    assert!(e.contains("f.tsv:2") && e.contains("label<TAB>text"), "{e}");
    std::fs::write(&tsv, "a\tx\na\ty\n").unwrap();
    assert!(load_labelled(&tsv)
        .unwrap_err()
        .to_string()
        .contains("only one class"));
    std::fs::write(&json, r#"[{"text":"x"}]"#).unwrap();
    assert!(load_labelled(&json)
        .unwrap_err()
        .to_string()
        .contains("no \"class\""));
}

#[test]
fn a_corpus_is_one_document_per_text_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("a.txt"), "One. Two.").unwrap();
    std::fs::write(dir.path().join("sub/b.txt"), "Three! Four? Five.").unwrap();
    std::fs::write(dir.path().join("notes.md"), "Ignored.").unwrap();
    let c = load_corpus(dir.path()).unwrap();
    assert_eq!(c.files.len(), 2);
    assert_eq!(
        c.documents.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(c.documents[1][0], vec!["three", "!"]);
    let empty = tempfile::tempdir().unwrap();
    assert!(load_corpus(empty.path())
        .unwrap_err()
        .to_string()
        .contains("no .txt files"));
    assert!(load_corpus(&empty.path().join("missing")).is_err());
}

#[test]
fn the_sentence_encoder_is_embedding_conv_relu_mean() {
    let dev = Device::Cpu;
    let (v, e, k, d) = (7, 3, 2, 4);
    let mut init = Init::new(2, &dev);
    SentenceEncoder::init(v, e, k, d, &mut init, "enc").unwrap();
    let vb = VarBuilder::from_varmap(&init.varmap, DType::F32, &dev);
    let enc = SentenceEncoder::new(v, e, k, d, vb.pp("enc")).unwrap();
    let get = |n: &str| {
        init.varmap.data().lock().unwrap()[n]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let (emb, w, b) = (
        get("enc.embedding.weight"),
        get("enc.conv.weight"),
        get("enc.conv.bias"),
    );
    let sentences: Vec<Vec<u32>> = vec![vec![2, 3, 4, 5], vec![6], vec![1, 2]];
    let refs: Vec<&[u32]> = sentences.iter().map(Vec::as_slice).collect();
    let got = enc.forward(&refs).unwrap().to_vec2::<f32>().unwrap();
    for (s, row) in sentences.iter().zip(&got) {
        // Positions t with every word inside the sentence (one, padded, if too short).
        let mut ids = s.clone();
        ids.resize(ids.len().max(k), 0);
        let positions = (s.len() + 1).saturating_sub(k).max(1);
        for o in 0..d {
            let mut acc = 0f64;
            for t in 0..positions {
                let mut h = b[o] as f64;
                for j in 0..k {
                    for c in 0..e {
                        // PyTorch Conv1d weight [D, E, k].
                        h +=
                            w[(o * e + c) * k + j] as f64 * emb[ids[t + j] as usize * e + c] as f64;
                    }
                }
                acc += h.max(0.0);
            }
            let want = acc / positions as f64;
            assert!(
                (row[o] as f64 - want).abs() < 1e-5,
                "{s:?} feature {o}: {} vs {want}",
                row[o]
            );
        }
    }
}

#[test]
fn cross_validation_scores_separable_classes_high_and_noise_at_chance() {
    let mut rng = SeededRng::seed_from_u64(3);
    let n = 300;
    let y: Vec<usize> = (0..n).map(|i| i % 3).collect();
    let rows: Vec<Vec<f32>> = y
        .iter()
        .map(|&c| {
            (0..5)
                .map(|j| if j == c { 2.0 } else { 0.0 } + rng.random_range(-0.5..0.5))
                .collect()
        })
        .collect();
    let f = Features::from_rows(rows).unwrap();
    let mut seen = vec![0usize; n];
    let s = cross_validate(&y, 3, 10, 0, 200, |tr, te| {
        assert_eq!(tr.len() + te.len(), n);
        assert!(
            te.iter().all(|i| !tr.contains(i)),
            "test items leak into training"
        );
        te.iter().for_each(|&i| seen[i] += 1);
        Ok((f.select(tr), f.select(te)))
    })
    .unwrap();
    assert!(
        seen.iter().all(|&c| c == 1),
        "every item is tested exactly once"
    );
    assert!(s.mean > 0.97 && s.lambdas.len() == 10, "{s:?}");
    let noise: Vec<usize> = (0..n).map(|_| rng.random_range(0..3)).collect();
    let s = cross_validate(&noise, 3, 10, 0, 200, |tr, te| {
        Ok((f.select(tr), f.select(te)))
    })
    .unwrap();
    assert!(s.mean < 0.45, "{s:?}");
    assert!(cross_validate(&y[..5], 3, 10, 0, 10, |tr, te| Ok((
        f.select(tr),
        f.select(te)
    )))
    .is_err());
}

#[test]
fn bag_of_words_vocabulary_comes_from_training_texts_only() {
    use rlcpc::probe::text::bag_of_words;
    let tokens: Vec<Vec<String>> = [
        "good good film",
        "bad film",
        "film film",
        "unseen words here",
    ]
    .iter()
    .map(|t| tokenize(t))
    .collect();
    let (a, b) = bag_of_words(&tokens, &[0, 1, 2], &[3], 10).unwrap();
    // Seen twice in training: "film" (4×) and "good" (2×); "bad" once.
    assert_eq!(a.d, 2);
    assert_eq!(a.row(0), &[1.0, 1.0]);
    assert_eq!(a.row(1), &[1.0, 0.0]);
    assert_eq!(b.row(0), &[0.0, 0.0]);
    // Capped at one word: the commonest, "film".
    let (a, _) = bag_of_words(&tokens, &[0, 1, 2], &[3], 1).unwrap();
    assert_eq!((a.d, a.row(1)), (1, &[1.0][..]));
}
