//! `rlcpc probe`: linear probes of a frozen encoder ([`crate::probe`]).

use std::path::PathBuf;

use crate::config::LearnerPath;
use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    /// An encoder file (encoder.safetensors of a trainer, `rlcpc export-encoder`), an
    /// agent checkpoint, or a run directory (its encoder, else its checkpoint).
    #[arg(long, value_name = "PATH")]
    encoder: PathBuf,
    /// An audio directory, a directory written by `rlcpc record`, an image set, or a
    /// labelled text file (`label<TAB>text` lines or a JSON list of {text, class}).
    #[arg(long, value_name = "PATH")]
    data: PathBuf,
    /// Audio: the label to predict (speaker, digit, or a manifest column) [default:
    /// speaker]; trajectories: `state` (every true-state variable) or one variable's
    /// name [default: state].
    #[arg(long)]
    target: Option<String>,
    /// How the test set is drawn [default: as the encoder was trained, else utterance].
    #[arg(long, value_enum)]
    split: Option<crate::data::SplitBy>,
    /// Share held out for testing [default: the encoder's, else 0.2].
    #[arg(long)]
    test_fraction: Option<f64>,
    /// Seed of the split [default: the encoder's, else 0].
    #[arg(long)]
    split_seed: Option<u64>,
    /// Pool context vectors (audio c_t, image c_{i,j}; the paper) or encoder outputs z
    /// [default: context; text: encoder, the sentence embedding z of the whole text;
    /// text context: the GRU's last c over the text's sentences].
    #[arg(long, value_enum)]
    features: Option<crate::probe::FeatureSource>,
    /// Audio: how labels are read from the corpus.
    #[arg(long, value_enum, default_value = "auto")]
    layout: crate::data::audio::Layout,
    /// Skip the random-init and MFCC / raw-observation baselines.
    #[arg(long)]
    no_baselines: bool,
    /// Stop at the first unreadable audio file or image, or labelled text with an empty
    /// text, instead of leaving it out (with a note that counts them).
    #[arg(long)]
    strict: bool,
    /// Full-batch optimiser iterations of each logistic regression.
    #[arg(long, default_value_t = 500)]
    iters: usize,
    /// `--target phone`: at most this many training (and test) frames, drawn at random.
    #[arg(long, default_value_t = 10_000)]
    max_frames: usize,
    /// Images: at most this many training (and test) images, drawn at random.
    #[arg(long, default_value_t = 10_000)]
    max_images: usize,
    /// Text: cross-validation folds on a labelled set (SentEval: 10).
    #[arg(long, default_value_t = 10)]
    folds: usize,
    /// Text: at most this many labelled texts, drawn at random.
    #[arg(long, default_value_t = 5_000)]
    max_texts: usize,
    /// Text: the bag-of-words baseline keeps at most this many words (the commonest
    /// of those seen twice in the training folds).
    #[arg(long, default_value_t = 2_000)]
    bow_words: usize,
    /// Text: encoding of the labelled file (auto: UTF-8, else Latin-1, as said in the
    /// output).
    #[arg(long, value_enum, default_value = "auto")]
    encoding: crate::data::text::TextEncoding,
    /// Print one JSON object (the setting and every row) instead of the table.
    #[arg(long)]
    json: bool,
    /// Images: average the features over GxG cells of the patch grid and
    /// concatenate them (1: one mean over the whole image, the paper's pooling).
    #[arg(long, default_value_t = 2, value_name = "G")]
    pool_grid: usize,
    /// Images: train the probes on this share of the training part's labels (e.g. `1%`,
    /// `10%`, `100%`), drawn per class (stratified, seeded by --label-seed), before
    /// --max-images applies; the test part is unchanged. CPC-v2's label-efficiency setting.
    #[arg(long, value_name = "SHARE", value_parser = parse_share)]
    labels: Option<f64>,
    /// Images: seed of the --labels draw and of the images --max-images keeps (another
    /// seed draws another subset; the test part stays the encoder's).
    #[arg(long, default_value_t = 0)]
    label_seed: u64,
    /// Images (SimCLR, MoCo): probe with a --split-seed or --test-fraction that puts
    /// images the encoder trained on into the test part (refused without this flag).
    #[arg(long)]
    allow_overlap: bool,
    /// Whole-image encoders (SimCLR, MoCo): also fine-tune the encoder with a linear
    /// classifier for this many Adam steps of 128 labelled images, next to the same
    /// network trained from scratch with the same budget (0: off).
    #[arg(long, default_value_t = 0, value_name = "STEPS")]
    fine_tune: usize,
    /// Image encoders: how the encoder runs for the features (SimCLR's and MoCo's f,
    /// CPC's patch encoder) and for fine-tuning: `auto` or `lean` on host slices (the
    /// trainers' default), `candle` through candle's autograd (the reference)
    #[arg(long, value_enum, default_value_t = LearnerPath::Auto)]
    learner: LearnerPath,
    /// Audio: fit on 80% of the training files and test on the other 20% (by utterance,
    /// seeded by the split's seed), never reading the test files: for choosing a recipe
    /// or a setting without tuning on the test set
    #[arg(long)]
    validation: bool,
}

/// `10%` or `0.1` → 0.1, in (0, 1].
fn parse_share(s: &str) -> Result<f64, String> {
    let (v, pct) = match s.strip_suffix('%') {
        Some(p) => (p.trim().parse::<f64>(), true),
        None => (s.trim().parse::<f64>(), false),
    };
    let v = v.map_err(|_| format!("'{s}' is not a share such as 10% or 0.1"))?;
    let v = if pct { v / 100.0 } else { v };
    if !(v > 0.0 && v <= 1.0) {
        return Err(format!("'{s}' must be above 0% and at most 100%"));
    }
    Ok(v)
}

pub fn run(args: Args) -> Result<()> {
    let report = crate::probe::run(&crate::probe::Request {
        encoder: args.encoder,
        data: args.data,
        target: args.target,
        split: args.split,
        test_fraction: args.test_fraction,
        split_seed: args.split_seed,
        features: args.features,
        layout: args.layout,
        baselines: !args.no_baselines,
        strict: args.strict,
        iters: args.iters,
        max_frames: args.max_frames,
        max_images: args.max_images,
        pool_grid: args.pool_grid,
        labels: args.labels,
        label_seed: args.label_seed,
        allow_overlap: args.allow_overlap,
        fine_tune: args.fine_tune,
        learner: args.learner,
        validation: args.validation,
        folds: args.folds,
        max_texts: args.max_texts,
        bow_words: args.bow_words,
        encoding: args.encoding,
    })?;
    report.print(args.json);
    Ok(())
}
