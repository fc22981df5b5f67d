//! CPC on text (van den Oord et al. 2018, §3.3): each sentence is encoded to z_t
//! (embedding → 1-D convolution + ReLU → mean over words), a GRU over consecutive
//! sentences gives c_t, and W_k c_t predicts z_{t+k}, k = 1..3, scored by InfoNCE against
//! the other sentences of the batch. This module is the modality (config, vocabulary,
//! network, passages); the loss is [`super::cpc_objective::Cpc`]'s, through
//! [`crate::contrastive::cpc::cpc_loss`], the audio and agent heads' code.

use std::path::Path;

use anyhow::{bail, Result};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rlcpc_envs::SeededRng;
use serde::{Deserialize, Serialize};

use super::cpc_objective::{Cpc, Encoded, Sequences};
use super::TrainSection;
use crate::checkpoint::keys;
use crate::checkpoint::Loaded;
use crate::config::Invalid;
use crate::config::Negatives;
use crate::contrastive::cpc::CpcSampling;
use crate::data::text::{self, Corpus, Vocab};
use crate::encoder_file::EncoderFile;
use crate::nn::encoders::{ContextSpec, EncoderSpec};
use crate::nn::gru::Gru;
use crate::nn::init::Init;
use crate::nn::text::SentenceEncoder;

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// Vocabulary size, `<pad>` and `<unk>` included (the most frequent words).
    pub vocab: usize,
    /// Words of a sentence kept for training (longer sentences are cut).
    pub max_words: usize,
    /// Consecutive sentences per training sequence (sequences stay inside a file).
    pub sequence: usize,
    /// `auto` (UTF-8, else Latin-1, said per file), `utf-8` or `latin-1`.
    pub encoding: crate::data::text::TextEncoding,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            vocab: 20_000,
            max_words: 40,
            sequence: 8,
            encoding: crate::data::text::TextEncoding::Auto,
        }
    }
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// Word embedding width (the paper: 620).
    pub embedding: usize,
    /// Words per convolution window.
    pub kernel: usize,
    /// Width of the sentence vectors z (the paper: 2400).
    pub features: usize,
    /// GRU width (the paper: 2400).
    pub context: usize,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            embedding: 128,
            kernel: 3,
            features: 256,
            context: 256,
        }
    }
}

/// `[cpc]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpcSection {
    /// Future sentences predicted, one W_k each (the paper: 3).
    pub horizon: usize,
    /// `both`: any sentence of the batch (the paper's "batch negatives"); `sequence`:
    /// other sentences of the same passage; `batch`: the same position of other passages.
    pub negatives: Negatives,
    pub num_negatives: usize,
}

impl Default for CpcSection {
    fn default() -> Self {
        CpcSection {
            horizon: 3,
            negatives: Negatives::Both,
            num_negatives: 16,
        }
    }
}

/// `configs/cpc-text.toml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextCpcConfig {
    /// The objective: `cpc` (Contrastive Predictive Coding; SimCLR and MoCo are for images).
    pub objective: super::ObjectiveKind,
    pub data: DataSection,
    pub model: ModelSection,
    pub cpc: CpcSection,
    pub train: TrainSection,
}

pub const PRESETS: [(&str, &str); 1] = [("cpc-text", include_str!("../../configs/cpc-text.toml"))];

impl super::TrainerConfig for TextCpcConfig {
    const PRESETS: &'static [(&'static str, &'static str)] = &PRESETS;

    fn validate(&self) -> Result<(), crate::config::Invalid> {
        self.objective.only_cpc("text")?;
        self.train.validate()?;
        let (d, m, c) = (&self.data, &self.model, &self.cpc);
        super::at_most(&[
            ("data.vocab", d.vocab, 10_000_000),
            ("data.max_words", d.max_words, 100_000),
            ("data.sequence", d.sequence, 100_000),
            ("model.embedding", m.embedding, 65_536),
            ("model.kernel", m.kernel, 1_024),
            ("model.features", m.features, 65_536),
            ("model.context", m.context, 65_536),
            ("cpc.num_negatives", c.num_negatives, 65_536),
        ])?;
        if d.vocab < 3 {
            return Err(Invalid::new(
                "data.vocab",
                format!("{} (at least 3: <pad>, <unk> and a word)", d.vocab),
            ));
        }
        if d.max_words == 0
            || m.embedding == 0
            || m.kernel == 0
            || m.features == 0
            || m.context == 0
        {
            return Err(Invalid::new(
                "data.max_words'/'model.embedding'/'model.kernel'/'model.features'/'model.context",
                "0",
            ));
        }
        if c.horizon == 0 || c.num_negatives == 0 {
            return Err(Invalid::new("cpc.horizon'/'cpc.num_negatives", "0"));
        }
        if d.sequence <= c.horizon {
            return Err(Invalid::new(
                "data.sequence",
                format!(
                    "{} (must exceed cpc.horizon = {} so that a sentence has a future to predict)",
                    d.sequence, c.horizon
                ),
            ));
        }
        if c.negatives == Negatives::Batch && self.train.batch < 2 {
            return Err(Invalid::new(
                "cpc.negatives",
                "\"batch\" needs train.batch ≥ 2",
            ));
        }
        if c.negatives == Negatives::Speaker {
            return Err(Invalid::new("cpc.negatives", "\"speaker\" is for audio"));
        }
        Ok(())
    }
}

impl TextCpcConfig {
    pub fn encoder_spec(&self, vocab: usize) -> EncoderSpec {
        EncoderSpec::Text {
            vocab,
            embedding: self.model.embedding,
            kernel: self.model.kernel,
            features: self.model.features,
        }
    }
}

/// The sentence encoder, the GRU over sentences, and the vocabulary they read.
pub struct TextNet {
    pub encoder: SentenceEncoder,
    pub gru: Gru,
    pub spec: EncoderSpec,
    pub context: ContextSpec,
    pub vocab: Vocab,
}

impl TextNet {
    fn parts(spec: &EncoderSpec) -> Result<(usize, usize, usize, usize)> {
        match spec {
            &EncoderSpec::Text {
                vocab,
                embedding,
                kernel,
                features,
            } => Ok((vocab, embedding, kernel, features)),
            other => bail!("{} is not a sentence encoder", other.describe()),
        }
    }

    fn hidden(ctx: &ContextSpec) -> Result<usize> {
        match ctx {
            ContextSpec::Gru { hidden, .. } => Ok(*hidden),
            other => bail!("the text context network is a GRU, not {other:?}"),
        }
    }

    pub fn init(spec: &EncoderSpec, ctx: &ContextSpec, init: &mut Init) -> Result<()> {
        let (v, e, k, f) = Self::parts(spec)?;
        SentenceEncoder::init(v, e, k, f, init, "encoder")?;
        Gru::init(f, Self::hidden(ctx)?, init, "context")?;
        Ok(())
    }

    pub fn new(spec: EncoderSpec, ctx: ContextSpec, vocab: Vocab, vb: VarBuilder) -> Result<Self> {
        let (v, e, k, f) = Self::parts(&spec)?;
        if vocab.len() != v {
            bail!("the vocabulary has {} words, the encoder {v}", vocab.len());
        }
        Ok(TextNet {
            encoder: SentenceEncoder::new(v, e, k, f, vb.pp("encoder"))?,
            gru: Gru::new(f, Self::hidden(&ctx)?, vb.pp("context"))?,
            spec,
            context: ctx,
            vocab,
        })
    }

    /// Fresh weights from `seed` (the random-init baseline).
    pub fn random(
        spec: EncoderSpec,
        ctx: ContextSpec,
        vocab: Vocab,
        seed: u64,
    ) -> Result<(Self, VarMap)> {
        let dev = Device::Cpu;
        let mut init = Init::new(seed, &dev);
        TextNet::init(&spec, &ctx, &mut init)?;
        let vb = VarBuilder::from_varmap(&init.varmap, DType::F32, &dev);
        Ok((TextNet::new(spec, ctx, vocab, vb)?, init.varmap))
    }

    /// Loads `encoder.safetensors` (or a checkpoint) of `rlcpc pretrain text`.
    pub fn load(path: &Path) -> Result<(Self, VarMap)> {
        Self::from_file(&EncoderFile::read(path)?)
    }

    /// The network of an encoder file already read.
    pub fn from_file(f: &EncoderFile) -> Result<(Self, VarMap)> {
        let ctx = f.context_spec()?;
        let words: Vec<String> = f.file.meta(keys::VOCAB)?;
        let (net, varmap) = TextNet::random(f.spec.clone(), ctx, Vocab::from_words(words), 0)
            .map_err(|e| f.mismatch(e.to_string()))?;
        f.load_into(&varmap, &["encoder.", "context."])?;
        Ok((net, varmap))
    }

    /// Sentence vectors z `[N, D]` of texts, each tokenised whole (no sentence split and
    /// no length cut), in batches of 64 texts of similar length.
    pub fn embed_texts(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.vocab.encode(&text::tokenize(t)))
            .collect();
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut out = vec![Vec::new(); ids.len()];
        for chunk in order.chunks(64) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
            let z = self.encoder.forward(&batch)?.to_vec2::<f32>()?;
            for (&i, row) in chunk.iter().zip(z) {
                out[i] = row;
            }
        }
        Ok(out)
    }

    /// Share of the words of `texts` outside the vocabulary.
    pub fn unknown_share(&self, texts: &[String]) -> f64 {
        let (mut unk, mut all) = (0usize, 0usize);
        for t in texts {
            let ids = self.vocab.encode(&text::tokenize(t));
            unk += ids.iter().filter(|&&w| w == text::UNK).count();
            all += ids.len();
        }
        unk as f64 / all.max(1) as f64
    }

    /// Context vectors: each text split into sentences, encoded, and read by the GRU;
    /// the last c_t.
    pub fn context_of_texts(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        texts
            .iter()
            .map(|t| {
                let mut sentences: Vec<Vec<u32>> = text::split_sentences(t)
                    .iter()
                    .map(|s| self.vocab.encode(&text::tokenize(s)))
                    .collect();
                if sentences.is_empty() {
                    sentences.push(vec![text::UNK]);
                }
                let refs: Vec<&[u32]> = sentences.iter().map(Vec::as_slice).collect();
                let z = self.encoder.forward(&refs)?.unsqueeze(0)?;
                let c = self.gru.forward(&z)?;
                let last = c.dim(1)? - 1;
                Ok(c.narrow(1, last, 1)?.flatten_all()?.to_vec1::<f32>()?)
            })
            .collect()
    }
}

/// The training objective: random passages of `sequence` consecutive sentences.
pub struct TextPassages {
    net: TextNet,
    /// Documents → sentences → word ids (cut to `max_words`).
    docs: Vec<Vec<Vec<u32>>>,
    /// (document, first sentence) of every passage.
    starts: Vec<(u32, u32)>,
    sequence: usize,
    rng: SeededRng,
    files: usize,
}

/// CPC on passages of sentences.
pub type TextCpc = Cpc<TextPassages>;

impl TextCpc {
    /// The network (seeded by `train.seed`) with W_1..W_K, on the passages of `corpus`,
    /// on `device`.
    pub fn new(cfg: &TextCpcConfig, corpus: &Corpus, device: &Device) -> Result<Self> {
        let mut init = Init::new(cfg.train.seed, device);
        let passages = TextPassages::new(cfg, corpus, &mut init)?;
        let sampling = CpcSampling::new(cfg.cpc.horizon, cfg.cpc.negatives, cfg.cpc.num_negatives);
        Cpc::on(passages, init, sampling)
    }
}

impl TextPassages {
    /// The vocabulary of `corpus`, its passages, and the network built into `init`.
    pub fn new(cfg: &TextCpcConfig, corpus: &Corpus, init: &mut Init) -> Result<Self> {
        let vocab = Vocab::build(
            corpus.documents.iter().flatten().map(Vec::as_slice),
            cfg.data.vocab,
        );
        let docs: Vec<Vec<Vec<u32>>> = corpus
            .documents
            .iter()
            .map(|d| {
                d.iter()
                    .map(|s| vocab.encode(&s[..s.len().min(cfg.data.max_words)]))
                    .collect()
            })
            .collect();
        let t = cfg.data.sequence;
        let starts: Vec<(u32, u32)> = docs
            .iter()
            .enumerate()
            .flat_map(|(i, d)| {
                (0..(d.len() + 1).saturating_sub(t)).map(move |s| (i as u32, s as u32))
            })
            .collect();
        if starts.is_empty() {
            bail!(
                "no file has {t} sentences in a row (data.sequence); the longest has {}",
                docs.iter().map(Vec::len).max().unwrap_or(0)
            );
        }
        let spec = cfg.encoder_spec(vocab.len());
        let ctx = ContextSpec::Gru {
            in_dim: cfg.model.features,
            hidden: cfg.model.context,
        };
        TextNet::init(&spec, &ctx, init)?;
        let vb = VarBuilder::from_varmap(&init.varmap, DType::F32, init.device());
        Ok(TextPassages {
            net: TextNet::new(spec, ctx, vocab, vb)?,
            docs,
            starts,
            sequence: t,
            rng: SeededRng::seed_from_u64(cfg.train.seed ^ 0x7E47_C9C0),
            files: corpus.files.len(),
        })
    }

    /// (vocabulary size, passages) trained on.
    pub fn sizes(&self) -> (usize, usize) {
        (self.net.vocab.len(), self.starts.len())
    }

    /// Share of training words outside the vocabulary.
    pub fn unknown_rate(&self) -> f64 {
        let (mut unk, mut all) = (0usize, 0usize);
        for s in self.docs.iter().flatten() {
            unk += s.iter().filter(|&&w| w == text::UNK).count();
            all += s.len();
        }
        unk as f64 / all.max(1) as f64
    }
}

impl Sequences for TextPassages {
    const NAME: &'static str = "text";

    /// Targets are sentence embeddings z (features wide), contexts the GRU's c.
    fn dims(&self) -> (usize, usize) {
        (self.net.spec.out_dim(), self.net.gru.hidden)
    }

    fn encode(&mut self, batch: usize) -> Result<Encoded> {
        let t = self.sequence;
        let mut sentences: Vec<&[u32]> = Vec::with_capacity(batch * t);
        for _ in 0..batch {
            let (d, s) = self.starts[self.rng.random_range(0..self.starts.len())];
            let doc = &self.docs[d as usize];
            sentences.extend(doc[s as usize..s as usize + t].iter().map(Vec::as_slice));
        }
        // z `[B, T, D]` (passage-major), c from the GRU; cpc_loss reads time-major.
        let z = self.net.encoder.forward(&sentences)?;
        let d = z.dim(1)?;
        let z = z.reshape((batch, t, d))?;
        let c = self.net.gru.forward(&z)?;
        let metrics = vec![(
            "z_norm_std".to_string(),
            super::normalized_std(&z.reshape(((), d))?)?,
        )];
        Ok(Encoded {
            z: z.transpose(0, 1)?.contiguous()?,
            c: c.transpose(0, 1)?.contiguous()?,
            first: vec![0f32; t * batch],
            groups: Vec::new(),
            samples: batch * t,
            metrics,
        })
    }

    fn rng(&mut self) -> &mut SeededRng {
        &mut self.rng
    }

    /// The embedding rows belong to the checkpoint's words: a corpus that gives another
    /// vocabulary cannot continue the run.
    fn check_resume(&self, ck: &Loaded) -> Result<()> {
        let words: Vec<String> = ck.meta(keys::VOCAB)?;
        if words != self.net.vocab.words {
            let first = words
                .iter()
                .zip(&self.net.vocab.words)
                .position(|(a, b)| a != b)
                .unwrap_or(words.len().min(self.net.vocab.words.len()));
            return Err(ck
                .mismatch(format!(
                    "its vocabulary ({} words) differs from this corpus's ({} words; first difference at rank {first}: '{}' vs '{}'): resume on the corpus the run was trained on",
                    words.len(),
                    self.net.vocab.words.len(),
                    words.get(first).map_or("", String::as_str),
                    self.net.vocab.words.get(first).map_or("", String::as_str)
                ))
                .into());
        }
        Ok(())
    }

    fn export_metadata(&self) -> Vec<(&'static str, String)> {
        let mut m = super::spec_metadata(&self.net.spec, &self.net.context);
        m.push((
            keys::VOCAB,
            serde_json::to_string(&self.net.vocab.words).expect("vocab"),
        ));
        m.push((keys::DATA_FILES, self.files.to_string()));
        m
    }
}
