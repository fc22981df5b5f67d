//! The view-based objectives on images: SimCLR (Chen et al. 2020) and MoCo v2 (He et al.
//! 2019; Chen et al. 2020). Every step draws a minibatch of training images, two
//! augmented views of each ([`crate::data::augment`]); an encoder f gives h, a projection
//! head g gives z, and the loss ([`crate::contrastive::views`]) pulls the two views of an image
//! together against the other images: NT-Xent over the 2N views (SimCLR), or InfoNCE of
//! each query against its key from a momentum encoder and a queue of earlier keys (MoCo).
//! The exported encoder is f alone (`encoder.*`): probes and agents read h, not z.
//!
//! MoCo's shuffled BatchNorm (its §3.3: keys' BatchNorm statistics computed on another
//! device's share of the batch, so that a query cannot find its key through the batch
//! statistics) is emulated on one device: BatchNorm statistics are per group of
//! `moco.shuffle_groups` equal parts of the batch (one per "device"), and the keys are
//! drawn into their groups in a random order (then put back), as the paper's shuffle
//! across GPUs does. SimCLR uses one BatchNorm over the whole 2N batch (its global BN).

use std::path::PathBuf;

use anyhow::{bail, Result};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rlcpc_envs::SeededRng;
use serde::{Deserialize, Serialize};

use super::{KnnMonitor, KnnSection, ObjectiveKind, StepOutput, TrainSection};
use crate::checkpoint::keys;
use crate::config::{Invalid, LearnerPath};
use crate::contrastive::views::{enqueue, l2_normalize, moco_infonce, nt_xent};
use crate::data::augment::{view, AugmentSection, Image};
use crate::data::images::ImageSet;
use crate::nn::encoders::EncoderSpec;
use crate::nn::init::Init;
use crate::nn::lean::resnet::BnMode;
pub use crate::nn::views::{Head, LeanViewEncoder, ViewEncoder};

/// Which network is f.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ViewEncoderKind {
    /// The small ResNet of `model.widths` / `model.blocks` ([`crate::nn::resnet`]).
    Resnet,
    /// The agent's pixel encoder (IMPALA's shallow conv net, `model.features` wide), so
    /// that the exported encoder initialises an agent on views of this size.
    Agent,
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ViewModel {
    pub encoder: ViewEncoderKind,
    /// ResNet: the stem's and each stage's width (the first stage's is the stem's).
    pub widths: Vec<usize>,
    /// ResNet: each stage's number of basic blocks.
    pub blocks: Vec<usize>,
    /// Agent encoder: its FC width (the agent's `model.conv_fc`).
    pub features: usize,
    /// Projection head g: hidden widths (each Linear, BatchNorm if `head_batch_norm`,
    /// ReLU), then a Linear to `projection`.
    pub head_hidden: Vec<usize>,
    pub projection: usize,
    /// BatchNorm in the head's hidden layers (SimCLR v2's head; MoCo v2's has none).
    pub head_batch_norm: bool,
    /// Start f from this file (an agent's `rlcpc export-encoder` or another run's
    /// encoder.safetensors); its encoder must be this one.
    pub init_encoder: Option<PathBuf>,
}

impl Default for ViewModel {
    fn default() -> Self {
        ViewModel {
            encoder: ViewEncoderKind::Resnet,
            widths: vec![32, 64, 128],
            blocks: vec![1, 1, 1],
            features: 256,
            head_hidden: vec![512],
            projection: 128,
            head_batch_norm: true,
            init_encoder: None,
        }
    }
}

/// `[contrastive]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContrastiveSection {
    /// τ of NT-Xent or InfoNCE (SimCLR: 0.5 on CIFAR-10; MoCo v2: 0.2).
    pub temperature: f64,
}

impl Default for ContrastiveSection {
    fn default() -> Self {
        ContrastiveSection { temperature: 0.5 }
    }
}

/// `[moco]`: only read by `objective = "moco"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MocoSection {
    /// m of θ_k ← m θ_k + (1 − m) θ_q, in [0, 1) (the paper: 0.999 over 800 epochs of
    /// ImageNet; shorter runs want less).
    pub momentum: f64,
    /// K, the keys kept as negatives: a multiple of `train.batch`, at least one batch.
    pub queue: usize,
    /// Groups of the batch with their own BatchNorm statistics, the keys shuffled among
    /// them (shuffling BN on one device; 1: plain BatchNorm).
    pub shuffle_groups: usize,
}

impl Default for MocoSection {
    fn default() -> Self {
        MocoSection {
            momentum: 0.99,
            queue: 4096,
            shuffle_groups: 4,
        }
    }
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ViewsData {
    /// Class folders without train/ and test/ sub-folders, and recordings: the share
    /// held out (recordings: the last episodes).
    pub test_fraction: f64,
    pub split_seed: u64,
    /// Recordings (`rlcpc record`): the probe label from the true state, `heading` (8
    /// sectors of the agent's heading) or `position` (3×3 cells of its position).
    pub label: crate::data::images::StateLabel,
}

impl Default for ViewsData {
    fn default() -> Self {
        let s = crate::data::images::FolderSplit::default();
        ViewsData {
            test_fraction: s.test_fraction,
            split_seed: s.split_seed,
            label: crate::data::images::StateLabel::Heading,
        }
    }
}

impl ViewsData {
    pub fn split(&self) -> crate::data::images::FolderSplit {
        crate::data::images::FolderSplit {
            test_fraction: self.test_fraction,
            split_seed: self.split_seed,
        }
    }
}

/// `configs/simclr-fashion.toml`, `configs/moco-fashion.toml`, `configs/simclr-lab-frames.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ViewsConfig {
    /// `simclr` or `moco`.
    pub objective: ObjectiveKind,
    pub data: ViewsData,
    pub model: ViewModel,
    pub augment: AugmentSection,
    pub contrastive: ContrastiveSection,
    pub moco: MocoSection,
    pub knn: KnnSection,
    pub train: TrainSection,
}

impl Default for ViewsConfig {
    fn default() -> Self {
        ViewsConfig {
            objective: ObjectiveKind::Simclr,
            data: ViewsData::default(),
            model: ViewModel::default(),
            augment: AugmentSection::default(),
            contrastive: ContrastiveSection::default(),
            moco: MocoSection::default(),
            knn: KnnSection::default(),
            train: TrainSection {
                batch: 256,
                lr: 1e-3,
                ..TrainSection::default()
            },
        }
    }
}

pub const PRESETS: [(&str, &str); 3] = [
    (
        "simclr-fashion",
        include_str!("../../configs/simclr-fashion.toml"),
    ),
    (
        "moco-fashion",
        include_str!("../../configs/moco-fashion.toml"),
    ),
    (
        "simclr-lab-frames",
        include_str!("../../configs/simclr-lab-frames.toml"),
    ),
];

impl super::TrainerConfig for ViewsConfig {
    const PRESETS: &'static [(&'static str, &'static str)] = &PRESETS;

    fn validate(&self) -> Result<(), Invalid> {
        self.train.validate()?;
        self.augment.validate()?;
        self.knn.validate()?;
        self.data.split().validate()?;
        let m = &self.model;
        if self.objective == ObjectiveKind::Cpc {
            return Err(Invalid::new(
                "objective",
                "\"cpc\" on images has its own config (cpc-image-fashion); this one is for simclr or moco",
            ));
        }
        if m.encoder == ViewEncoderKind::Resnet
            && (m.widths.is_empty() || m.widths.len() != m.blocks.len() || m.widths.contains(&0))
        {
            return Err(Invalid::new(
                "model.widths",
                format!(
                    "{:?} with model.blocks {:?} (one non-zero width per stage, as many as blocks)",
                    m.widths, m.blocks
                ),
            ));
        }
        super::at_most(&[
            ("model.features", m.features, 65_536),
            ("model.projection", m.projection, 65_536),
            (
                "model.widths",
                m.widths.iter().copied().max().unwrap_or(0),
                4_096,
            ),
            ("model.blocks", m.blocks.iter().sum(), 256),
            ("moco.queue", self.moco.queue, 1 << 20),
        ])?;
        if m.projection == 0 || m.features == 0 || m.head_hidden.contains(&0) {
            return Err(Invalid::new(
                "model.projection'/'model.features'/'model.head_hidden",
                "0",
            ));
        }
        if m.encoder == ViewEncoderKind::Resnet && m.blocks.contains(&0) {
            return Err(Invalid::new(
                "model.blocks",
                format!("{:?}: each stage needs at least one block", m.blocks),
            ));
        }
        // The head's weights, h → hidden… → projection (two widths of 65,536 are 4G).
        let h = match m.encoder {
            ViewEncoderKind::Resnet => m.widths.last().copied().unwrap_or(0),
            _ => m.features,
        };
        let widths: Vec<usize> = std::iter::once(h)
            .chain(m.head_hidden.iter().copied())
            .chain(std::iter::once(m.projection))
            .collect();
        crate::config::check_weights(
            "model.head_hidden",
            crate::config::chain_weights(&widths),
            format!(
                "{:?}: the head h ({h}) → {:?} → {}",
                m.head_hidden, m.head_hidden, m.projection
            ),
        )?;
        let t = self.contrastive.temperature;
        if !(t > 0.0 && t.is_finite()) {
            return Err(Invalid::new(
                "contrastive.temperature",
                format!("{t} (τ must be > 0)"),
            ));
        }
        if self.train.batch < 2 {
            return Err(Invalid::new(
                "train.batch",
                format!("{} (contrasting needs at least 2 images)", self.train.batch),
            ));
        }
        if self.objective == ObjectiveKind::Moco {
            let mo = &self.moco;
            if !(0.0..1.0).contains(&mo.momentum) {
                return Err(Invalid::new(
                    "moco.momentum",
                    format!("{} (m must be in [0, 1))", mo.momentum),
                ));
            }
            if mo.queue < self.train.batch || !mo.queue.is_multiple_of(self.train.batch) {
                return Err(Invalid::new(
                    "moco.queue",
                    format!(
                        "{} (a multiple of train.batch = {}, at least one batch)",
                        mo.queue, self.train.batch
                    ),
                ));
            }
            if mo.shuffle_groups == 0
                || !self.train.batch.is_multiple_of(mo.shuffle_groups)
                || self.train.batch / mo.shuffle_groups < 2
            {
                return Err(Invalid::new(
                    "moco.shuffle_groups",
                    format!(
                        "{} (must split train.batch = {} into groups of at least 2)",
                        mo.shuffle_groups, self.train.batch
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl ViewsConfig {
    /// The encoder for `[h, w, c]` images, or why they do not fit.
    pub fn encoder_spec(&self, h: usize, w: usize, c: usize) -> Result<EncoderSpec> {
        self.augment.check_channels(c)?;
        Ok(match self.model.encoder {
            ViewEncoderKind::Resnet => EncoderSpec::Resnet {
                height: h,
                width: w,
                channels: c,
                widths: self.model.widths.clone(),
                blocks: self.model.blocks.clone(),
            },
            ViewEncoderKind::Agent => {
                if h < 20 || w < 20 {
                    return Err(Invalid::new(
                        "model.encoder",
                        format!("\"agent\" reads images of at least 20x20; these are {h}x{w}"),
                    )
                    .into());
                }
                // As the agent builds it for an RGB view of 0–255 pixels.
                EncoderSpec::Conv {
                    height: h,
                    width: w,
                    channels: c,
                    fc: self.model.features,
                    input_scale: 1.0 / 255.0,
                }
            }
        })
    }
}

/// MoCo's key side: the momentum encoder and head, the pairs (query, key) of parameters
/// it follows, and the queue (`moco.queue` `[K, projection]`, newest first; a parameter
/// of the checkpoint so that a resumed run continues with it).
struct KeySide {
    f: ViewEncoder,
    g: Head,
    pairs: Vec<(Var, Var)>,
    queue: Var,
}

/// f (and MoCo's key encoder) on the lean path, which `train.learner` picks: the ResNet
/// ([`crate::nn::lean::resnet`]) or the agent's conv encoder; the head g and the loss
/// stay in candle.
struct Lean {
    f: LeanViewEncoder,
    key_f: Option<LeanViewEncoder>,
    /// h of the step in progress as a leaf of candle's graph: its gradient, after the
    /// loss's backward, drives f's ([`super::Objective::complete_grads`]).
    h: Option<Var>,
}

/// SimCLR or MoCo v2 on a set of images ([`super::Objective`]).
pub struct Views {
    cfg: ViewsConfig,
    set: ImageSet,
    spec: EncoderSpec,
    varmap: VarMap,
    f: ViewEncoder,
    g: Head,
    key: Option<KeySide>,
    lean: Option<Lean>,
    rng: SeededRng,
    knn: Option<KnnMonitor>,
    /// The trainer's record of its data, stored with the encoder.
    data_meta: serde_json::Value,
}

impl Views {
    /// The objective on `set` (the training part); `test` (the held-out part) feeds the
    /// kNN monitor. `data_meta` is stored with the encoder (`rlcpc.data`).
    pub fn new(
        cfg: &ViewsConfig,
        set: ImageSet,
        test: Option<ImageSet>,
        data_meta: serde_json::Value,
    ) -> Result<Self> {
        let spec = cfg.encoder_spec(set.height, set.width, set.channels)?;
        if set.len() < cfg.train.batch {
            bail!(
                "{} training images, fewer than train.batch = {}",
                set.len(),
                cfg.train.batch
            );
        }

        let dev = Device::Cpu;
        let mut init = Init::new(cfg.train.seed, &dev);
        spec.init(&mut init, "encoder")?;
        let dims: Vec<usize> = std::iter::once(spec.out_dim())
            .chain(cfg.model.head_hidden.iter().copied())
            .chain(std::iter::once(cfg.model.projection))
            .collect();
        let bn = cfg.model.head_batch_norm;
        Head::init(&mut init, "head", &dims, bn)?;
        let moco = cfg.objective == ObjectiveKind::Moco;
        if moco {
            spec.init(&mut init, "key_encoder")?;
            Head::init(&mut init, "key_head", &dims, bn)?;
            init.orthogonal("moco.queue", &[cfg.moco.queue, cfg.model.projection], 1.0)?;
        }
        let varmap = init.varmap;
        if let Some(p) = &cfg.model.init_encoder {
            crate::encoder_file::init_encoder_from(p, &spec, &varmap)?;
        }
        let layers = dims.len() - 1;
        let f = ViewEncoder::build(&spec, &varmap, "encoder")?;
        let g = Head::new(&varmap, "head", layers, bn)?;
        let key = if moco {
            let all = varmap.data().lock().expect("varmap lock").clone();
            let mut pairs = Vec::new();
            for (name, v) in &all {
                let stat = name.ends_with(".running_mean") || name.ends_with(".running_var");
                let k = name
                    .strip_prefix("encoder.")
                    .map(|r| format!("key_encoder.{r}"))
                    .or_else(|| name.strip_prefix("head.").map(|r| format!("key_head.{r}")));
                if let (Some(k), false) = (k, stat) {
                    let kv = all[&k].clone();
                    kv.set(v.as_tensor())?; // θ_k starts as θ_q
                    pairs.push((v.clone(), kv));
                }
            }
            let queue = all["moco.queue"].clone();
            queue.set(&l2_normalize(queue.as_tensor())?)?;
            Some(KeySide {
                f: ViewEncoder::build(&spec, &varmap, "key_encoder")?,
                g: Head::new(&varmap, "key_head", layers, bn)?,
                pairs,
                queue,
            })
        } else {
            None
        };
        let hwc = (set.height, set.width, set.channels);
        let net = |prefix: &str| LeanViewEncoder::new(&spec, hwc, &varmap, prefix);
        let lean = match cfg.train.learner {
            LearnerPath::Candle => None,
            LearnerPath::Auto | LearnerPath::Lean => Some(Lean {
                f: net("encoder")?,
                key_f: if moco {
                    Some(net("key_encoder")?)
                } else {
                    None
                },
                h: None,
            }),
        };
        let knn = test.map(|t| KnnMonitor::new(&cfg.knn, set.len(), t, cfg.data.split_seed));
        Ok(Views {
            cfg: cfg.clone(),
            rng: SeededRng::seed_from_u64(cfg.train.seed ^ 0x005E_ED0F_u64),
            set,
            spec,
            varmap,
            f,
            g,
            key,
            lean,
            knn,
            data_meta,
        })
    }

    /// Two augmented views of `batch` random training images: `[2N, H, W, C]` pixels,
    /// view 1 of every image first. Each image's views come from its own generator,
    /// seeded from the run's, so the batch is the same however many threads draw it.
    fn two_views(&mut self, batch: usize) -> Result<Vec<f32>> {
        let s = &self.set;
        let jobs: Vec<(usize, u64)> = (0..batch)
            .map(|_| (self.rng.random_range(0..s.len()), self.rng.random::<u64>()))
            .collect();
        let a = &self.cfg.augment;
        let pairs = crate::par::par_map(&jobs, |&(i, seed)| {
            let img = Image::new(s.height, s.width, s.channels, s.image(i).to_vec());
            let mut r = SeededRng::seed_from_u64(seed);
            let v1 = view(&img, a, s.height, s.width, &mut r);
            let v2 = view(&img, a, s.height, s.width, &mut r);
            Ok((v1.px, v2.px))
        })?;
        let mut px = Vec::with_capacity(2 * batch * s.image_len());
        pairs.iter().for_each(|p| px.extend_from_slice(&p.0));
        pairs.iter().for_each(|p| px.extend_from_slice(&p.1));
        Ok(px)
    }

    /// `n` images of pixels `px` as a tensor `[n, H, W, C]`.
    fn images(&self, px: &[f32], n: usize) -> Result<Tensor> {
        let s = &self.set;
        Ok(Tensor::from_vec(
            px.to_vec(),
            (n, s.height, s.width, s.channels),
            &Device::Cpu,
        )?)
    }

    /// h of the `n` images `px` through f in training mode (BatchNorm in `groups`);
    /// on the lean path h is a leaf whose gradient [`super::Objective::complete_grads`]
    /// takes back through f.
    fn encode_query(&mut self, px: &[f32], n: usize, groups: usize) -> Result<Tensor> {
        match &mut self.lean {
            Some(l) => {
                let h = l.f.forward(px, n, BnMode::Train { groups })?;
                let leaf = Var::from_vec(h.to_vec(), (n, l.f.out_dim()), &Device::Cpu)?;
                let t = leaf.as_tensor().clone();
                l.h = Some(leaf);
                Ok(t)
            }
            None => Ok(self.f.forward(&self.images(px, n)?, true, groups)?),
        }
    }

    /// h of the `n` images `px` through MoCo's key encoder (training-mode BatchNorm in
    /// `groups`), without a gradient.
    fn encode_key(&mut self, px: &[f32], n: usize, groups: usize) -> Result<Tensor> {
        if let Some(kf) = self.lean.as_mut().and_then(|l| l.key_f.as_mut()) {
            let h = kf.forward(px, n, BnMode::Train { groups })?;
            return Ok(Tensor::from_vec(
                h.to_vec(),
                (n, kf.out_dim()),
                &Device::Cpu,
            )?);
        }
        let x = self.images(px, n)?;
        let key = self.key.as_ref().expect("moco has a key side");
        key.f.forward(&x, true, groups)
    }

    /// θ_k ← m θ_k + (1 − m) θ_q for every parameter of f and g.
    fn momentum_update(&self) -> Result<()> {
        let m = self.cfg.moco.momentum;
        if let Some(k) = &self.key {
            for (q, kv) in &k.pairs {
                kv.set(&((kv.as_tensor() * m)? + (q.as_tensor().detach() * (1.0 - m))?)?)?;
            }
        }
        Ok(())
    }

    fn step_simclr(&mut self, px: &[f32], n: usize) -> Result<(Tensor, Vec<(String, f64)>)> {
        let h = self.encode_query(px, 2 * n, 1)?;
        let z = self.g.forward(&h, true, 1)?;
        let (loss, acc) = nt_xent(&z, self.cfg.contrastive.temperature)?;
        let m = vec![
            ("acc".into(), acc.to_scalar::<f32>()? as f64),
            ("z_norm_std".into(), super::normalized_std(&z)?),
            ("h_norm_std".into(), super::normalized_std(&h)?),
        ];
        Ok((loss, m))
    }

    fn step_moco(&mut self, px: &[f32], n: usize) -> Result<(Tensor, Vec<(String, f64)>)> {
        self.momentum_update()?;
        let groups = self.cfg.moco.shuffle_groups;
        let per = self.set.image_len();
        let h = self.encode_query(&px[..n * per], n, groups)?;
        let q = self.g.forward(&h, true, groups)?;
        // Shuffled BN: the keys' groups hold other images than the queries'.
        let mut perm: Vec<u32> = (0..n as u32).collect();
        perm.shuffle(&mut self.rng);
        let mut inv = vec![0u32; n];
        for (i, &p) in perm.iter().enumerate() {
            inv[p as usize] = i as u32;
        }
        let keys = &px[n * per..];
        let shuffled: Vec<f32> = perm
            .iter()
            .flat_map(|&p| &keys[p as usize * per..(p as usize + 1) * per])
            .copied()
            .collect();
        let k_h = self.encode_key(&shuffled, n, groups)?;
        let dev = &Device::Cpu;
        let key = self.key.as_ref().expect("moco has a key side");
        let k = key.g.forward(&k_h, true, groups)?;
        let k = k
            .index_select(&Tensor::new(inv.as_slice(), dev)?, 0)?
            .detach();
        // The loss reads a copy of the queue, which is updated in place below.
        let queue = key.queue.as_tensor().copy()?;
        let (loss, acc) = moco_infonce(&q, &k, &queue, self.cfg.contrastive.temperature)?;
        key.queue.set(&enqueue(&queue, &l2_normalize(&k)?)?)?;
        let m = vec![
            ("acc".into(), acc.to_scalar::<f32>()? as f64),
            ("z_norm_std".into(), super::normalized_std(&q)?),
            ("h_norm_std".into(), super::normalized_std(&h)?),
        ];
        Ok((loss, m))
    }
}

impl super::Objective for Views {
    fn name(&self) -> String {
        format!("{}-image", crate::config::user_name(&self.cfg.objective))
    }

    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn step(&mut self, batch: usize) -> Result<StepOutput> {
        let px = self.two_views(batch)?;
        let (loss, metrics) = match self.cfg.objective {
            ObjectiveKind::Moco => self.step_moco(&px, batch)?,
            _ => self.step_simclr(&px, batch)?,
        };
        Ok(StepOutput {
            loss,
            metrics,
            samples: batch,
        })
    }

    fn rng(&mut self) -> &mut SeededRng {
        &mut self.rng
    }

    fn complete_grads(&mut self, grads: &mut GradStore) -> Result<()> {
        let Some(l) = &mut self.lean else {
            return Ok(());
        };
        let Some(h) = l.h.take() else {
            return Ok(());
        };
        let d_h = match grads.remove(h.as_tensor()) {
            Some(g) => g.flatten_all()?.to_vec1::<f32>()?,
            None => vec![0.0; h.as_tensor().elem_count()],
        };
        l.f.backward(&d_h, grads)
    }

    fn has_lean_path(&self) -> bool {
        self.lean.is_some()
    }

    fn export_metadata(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                keys::ENCODER_SPEC,
                serde_json::to_string(&self.spec).expect("spec"),
            ),
            (keys::DATA, self.data_meta.to_string()),
            (
                keys::IMAGE,
                serde_json::json!({
                    "height": self.set.height, "width": self.set.width,
                    "channels": self.set.channels,
                    "objective": crate::config::user_name(&self.cfg.objective),
                })
                .to_string(),
            ),
        ]
    }

    fn export_prefixes(&self) -> &'static [&'static str] {
        &["encoder."]
    }

    fn monitor(&mut self, step: u64, last: bool) -> Result<Vec<(String, f64)>> {
        match &self.knn {
            Some(m) if m.due(step, last) => {
                let (f, lean) = (&self.f, self.lean.as_mut().map(|l| &mut l.f));
                let mut lean = lean;
                m.run(&self.set, self.spec.out_dim(), |s, idx| match &mut lean {
                    Some(net) => net.features(s, idx),
                    None => f.features(s, idx),
                })
            }
            _ => Ok(vec![]),
        }
    }
}
