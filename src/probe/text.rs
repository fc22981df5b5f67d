//! Text probes: a label of each text of a labelled set by k-fold cross-validation
//! (SentEval's protocol), from the sentence embedding z or the GRU's last c, next to a
//! random-init twin and a bag of words.

use anyhow::Result;
use rand::SeedableRng;
use rlcpc_envs::SeededRng;

use super::report::{FeatureSource, Report};
use super::{Features, Request};
use crate::data::text;
use crate::encoder_file::EncoderFile;
use crate::pretrain::text::TextNet;

/// `rlcpc probe` with a text encoder: labels of a labelled set by k-fold CV.
pub fn run(file: &EncoderFile, req: &Request) -> Result<Report> {
    let (encoder, data) = (&file.file.path, &req.data);
    let options = TextProbeOptions {
        features: match req.features {
            Some(FeatureSource::Context) => TextFeatures::Context,
            _ => TextFeatures::Encoder,
        },
        folds: req.folds,
        max: req.max_texts,
        baselines: req.baselines,
        iters: req.iters,
        seed: 0,
        bow_words: req.bow_words,
    };
    let (net, _vm) = TextNet::from_file(file)?;
    let set = text::load_labelled_with(data, req.encoding, req.strict)?;
    let mut notes = Vec::new();
    if let Some(first) = &set.first_empty {
        notes.push(format!(
            "note: {} entries with an empty text were left out (the first: {first}); --strict refuses them",
            set.empty
        ));
    }
    if set.latin1 {
        notes.push(format!(
            "note: '{}' is not valid UTF-8; read as Latin-1 (ISO-8859-1)",
            data.display()
        ));
    }
    let t0 = std::time::Instant::now();
    let (n, rows) = probe_text(&net, &encoder.display().to_string(), &set, &options)?;
    let unknown = net.unknown_share(&set.texts);
    let json_rows: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "features": r.features, "dim": r.dim, "train_acc": r.cv.train,
                "test_acc": r.cv.mean, "test_acc_sd": r.cv.std,
            })
        })
        .collect();
    let json = serde_json::json!({
        "probe": "text", "target": "class", "data": data, "encoder": encoder,
        "classes": set.classes.len(), "texts": n, "folds": options.folds,
        "latin1": set.latin1, "unknown_word_share": unknown,
        "rows": json_rows,
    });
    let head = vec![
        format!(
            "probe 'class' on {}: {} classes, {n} texts{}, {}-fold cross-validation, {:.1} s",
            data.display(),
            set.classes.len(),
            match (set.dropped, set.empty) {
                (0, 0) => String::new(),
                (d, 0) => format!(" ({d} without a class left out)"),
                (0, e) => format!(" ({e} with an empty text left out)"),
                (d, e) => format!(" ({d} without a class and {e} with an empty text left out)"),
            },
            options.folds,
            t0.elapsed().as_secs_f64()
        ),
        format!(
            "{:.1}% of the words are not in the encoder's {}-word vocabulary",
            100.0 * unknown,
            net.vocab.len()
        ),
    ];
    Ok(Report {
        head,
        label_width: 66,
        columns: vec![
            ("dim".into(), 5),
            ("train acc".into(), 10),
            ("test acc (± sd)".into(), 16),
        ],
        rows: rows
            .iter()
            .map(|r| {
                (
                    r.features.clone(),
                    vec![
                        r.dim.to_string(),
                        format!("{:.1}%", 100.0 * r.cv.train),
                        format!("{:>8.1}% ± {:>4.1}", 100.0 * r.cv.mean, 100.0 * r.cv.std),
                    ],
                )
            })
            .collect(),
        foot: Vec::new(),
        notes,
        json,
    })
}

/// Which text features a probe reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFeatures {
    /// z of the whole text (the sentence embedding).
    Encoder,
    /// The GRU's last c over the text's sentences.
    Context,
}

/// Settings of [`probe_text`].
pub struct TextProbeOptions {
    pub features: TextFeatures,
    /// Cross-validation folds (SentEval: 10).
    pub folds: usize,
    /// At most this many texts, drawn at random (seeded) when the set is larger.
    pub max: usize,
    pub baselines: bool,
    pub iters: usize,
    pub seed: u64,
    /// Vocabulary of the bag-of-words baseline: at most this many words.
    pub bow_words: usize,
}

/// One row of a text probe: mean (± std) test accuracy over the folds.
pub struct TextProbeRow {
    pub features: String,
    pub dim: usize,
    pub cv: super::CvScore,
}

/// Linear probe of the labels of `set` from `net`'s features, a random-init twin's and
/// a bag of words (binary, the words seen twice in the training folds), by k-fold
/// cross-validation. Returns (texts used, rows).
pub fn probe_text(
    net: &TextNet,
    name: &str,
    set: &text::Labelled,
    o: &TextProbeOptions,
) -> Result<(usize, Vec<TextProbeRow>)> {
    use rand::seq::SliceRandom;
    let mut idx: Vec<usize> = (0..set.texts.len()).collect();
    if idx.len() > o.max {
        idx.shuffle(&mut SeededRng::seed_from_u64(o.seed ^ 0x7E47));
        idx.truncate(o.max);
        idx.sort_unstable();
    }
    let texts: Vec<String> = idx.iter().map(|&i| set.texts[i].clone()).collect();
    let y: Vec<usize> = idx.iter().map(|&i| set.labels[i]).collect();
    let k = set.classes.len();
    let what = match o.features {
        TextFeatures::Encoder => "z of the whole text",
        TextFeatures::Context => "last c over its sentences",
    };
    let feats = |n: &TextNet| -> Result<Features> {
        Features::from_rows(match o.features {
            TextFeatures::Encoder => n.embed_texts(&texts)?,
            TextFeatures::Context => n.context_of_texts(&texts)?,
        })
    };
    let cv = |f: &Features| {
        super::cross_validate(&y, k, o.folds, o.seed, o.iters, |tr, te| {
            Ok((f.select(tr), f.select(te)))
        })
    };
    let mut rows = Vec::new();
    let f = feats(net)?;
    rows.push(TextProbeRow {
        features: format!("cpc ({name}), {what}"),
        dim: f.d,
        cv: cv(&f)?,
    });
    if o.baselines {
        let (random, _vm) = TextNet::random(
            net.spec.clone(),
            net.context.clone(),
            net.vocab.clone(),
            12345,
        )?;
        let f = feats(&random)?;
        rows.push(TextProbeRow {
            features: format!("random-init, same architecture and vocabulary, {what}"),
            dim: f.d,
            cv: cv(&f)?,
        });
        let tokens: Vec<Vec<String>> = texts.iter().map(|t| text::tokenize(t)).collect();
        let mut dims = Vec::new();
        let score = super::cross_validate(&y, k, o.folds, o.seed, o.iters, |tr, te| {
            let (a, b) = bag_of_words(&tokens, tr, te, o.bow_words)?;
            dims.push(a.d);
            Ok((a, b))
        })?;
        rows.push(TextProbeRow {
            features: format!(
                "bag of words (binary; the {} commonest words seen twice in training)",
                o.bow_words
            ),
            dim: dims.iter().sum::<usize>() / dims.len().max(1),
            cv: score,
        });
    }
    Ok((texts.len(), rows))
}

/// Binary bag-of-words features of `train` and `test` texts over the words that occur
/// at least twice in the training texts, the `max_words` most frequent of them (ties in
/// alphabetical order).
pub fn bag_of_words(
    tokens: &[Vec<String>],
    train: &[usize],
    test: &[usize],
    max_words: usize,
) -> Result<(Features, Features)> {
    let mut counts: std::collections::HashMap<&str, usize> = Default::default();
    for &i in train {
        for w in &tokens[i] {
            *counts.entry(w.as_str()).or_default() += 1;
        }
    }
    let mut frequent: Vec<(&str, usize)> = counts.into_iter().filter(|&(_, c)| c >= 2).collect();
    frequent.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut words: Vec<&str> = frequent
        .into_iter()
        .take(max_words)
        .map(|(w, _)| w)
        .collect();
    words.sort_unstable();
    let index: std::collections::HashMap<&str, usize> =
        words.iter().enumerate().map(|(i, &w)| (w, i)).collect();
    let rows = |idx: &[usize]| {
        Features::from_rows(
            idx.iter()
                .map(|&i| {
                    let mut r = vec![0f32; words.len().max(1)];
                    for w in &tokens[i] {
                        if let Some(&j) = index.get(w.as_str()) {
                            r[j] = 1.0;
                        }
                    }
                    r
                })
                .collect(),
        )
    };
    Ok((rows(train)?, rows(test)?))
}
