//! CPC on images (van den Oord et al. 2018, §3.2): each image is cut into a grid of
//! overlapping patches, each patch encoded to z_{i,j}, a vertically causal context
//! network gives c_{i,j} from the rows above and the current one, and W_k c_{i,j}
//! predicts z_{i+k,j}, k = 1..K, scored by InfoNCE against the other patches of the batch
//! — through [`crate::cpc::cpc_loss`], each grid column being a sequence down the rows.

use std::path::Path;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rlcpc_envs::SeededRng;
use serde::{Deserialize, Serialize};

use super::{Objective, StepOutput, TrainSection};
use crate::checkpoint::Loaded;
use crate::config::Negatives;
use crate::cpc::{cpc_loss, CpcSampling, Predictor};
use crate::data::images::ImageSet;
use crate::nn::encoders::{ContextSpec, EncoderSpec, CONTEXT_SPEC_KEY, ENCODER_SPEC_KEY};
use crate::nn::init::Init;
use crate::nn::patches::{as_sequences, extract, grid, CausalContext, PatchEncoder};

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// Patch side and stride in pixels (the paper: 64 every 32 on 256×256 images).
    pub patch: usize,
    pub stride: usize,
    /// Width of the patch vectors z and of the context.
    pub features: usize,
    /// 3×3 convolutions in the patch encoder.
    pub encoder_layers: usize,
    /// Causal 2×3 layers in the context network (each reaches one more row up).
    pub context_layers: usize,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            patch: 8,
            stride: 4,
            features: 64,
            encoder_layers: 2,
            context_layers: 3,
        }
    }
}

/// `[cpc]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpcSection {
    /// Rows below predicted, one W_k each.
    pub horizon: usize,
    /// `both`: any patch of any image in the batch (the paper); `sequence`: the same
    /// column of the same image; `batch`: the same row and column of other images.
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

/// `configs/cpc-image-fashion.toml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageCpcConfig {
    pub model: ModelSection,
    pub cpc: CpcSection,
    pub train: TrainSection,
}

pub const PRESETS: [(&str, &str); 1] = [(
    "cpc-image-fashion",
    include_str!("../../configs/cpc-image-fashion.toml"),
)];

impl ImageCpcConfig {
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<ImageCpcConfig> {
        super::load_config(path, overrides, &PRESETS, ImageCpcConfig::validate)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serialises")
    }

    pub fn validate(&self) -> Result<(), String> {
        self.train.validate()?;
        let m = &self.model;
        if m.features == 0 || m.encoder_layers == 0 || m.context_layers == 0 {
            return Err("invalid value for 'model.features'/'model.encoder_layers'/'model.context_layers': 0".into());
        }
        if m.patch < 2 * m.encoder_layers + 1 {
            return Err(format!(
                "invalid value for 'model.patch': {} (each 3×3 layer takes 2 pixels; {} layers need at least {})",
                m.patch,
                m.encoder_layers,
                2 * m.encoder_layers + 1
            ));
        }
        if self.cpc.horizon == 0 || self.cpc.num_negatives == 0 {
            return Err("invalid value for 'cpc.horizon'/'cpc.num_negatives': 0".into());
        }
        if self.cpc.negatives == Negatives::Speaker {
            return Err("invalid value for 'cpc.negatives': \"speaker\" is for audio".into());
        }
        Ok(())
    }

    /// The encoder spec for images of `[h, w, c]`, or why the patches do not fit.
    pub fn encoder_spec(&self, h: usize, w: usize, c: usize) -> Result<EncoderSpec> {
        let (rows, _) =
            grid(h, w, self.model.patch, self.model.stride).map_err(anyhow::Error::msg)?;
        if self.cpc.horizon >= rows {
            bail!(
                "invalid value for 'cpc.horizon': {} (the {rows}-row patch grid of {h}x{w} images allows at most {})",
                self.cpc.horizon,
                rows - 1
            );
        }
        Ok(EncoderSpec::Patches {
            height: h,
            width: w,
            channels: c,
            patch: self.model.patch,
            stride: self.model.stride,
            features: self.model.features,
            layers: self.model.encoder_layers,
        })
    }
}

/// The patch encoder and the causal context network.
pub struct ImageNet {
    pub encoder: PatchEncoder,
    pub context: CausalContext,
    pub spec: EncoderSpec,
    pub context_layers: usize,
}

impl ImageNet {
    fn parts(spec: &EncoderSpec) -> Result<(usize, usize, usize, usize, usize, usize, usize)> {
        match spec {
            &EncoderSpec::Patches {
                height,
                width,
                channels,
                patch,
                stride,
                features,
                layers,
            } => Ok((height, width, channels, patch, stride, features, layers)),
            other => bail!("{} is not a patch encoder", other.describe()),
        }
    }

    pub fn init(spec: &EncoderSpec, context_layers: usize, init: &mut Init) -> Result<()> {
        let (_, _, _, _, _, f, _) = Self::parts(spec)?;
        spec.init(init, "encoder")?;
        CausalContext::init(f, context_layers, init, "context")?;
        Ok(())
    }

    pub fn new(spec: EncoderSpec, context_layers: usize, vb: VarBuilder) -> Result<Self> {
        let (_, _, c, _, _, f, layers) = Self::parts(&spec)?;
        Ok(ImageNet {
            encoder: PatchEncoder::new(c, f, layers, vb.pp("encoder"))?,
            context: CausalContext::new(f, context_layers, vb.pp("context"))?,
            spec,
            context_layers,
        })
    }

    /// Fresh weights from `seed` (the random-init baseline).
    pub fn random(spec: EncoderSpec, context_layers: usize, seed: u64) -> Result<(Self, VarMap)> {
        let dev = Device::Cpu;
        let mut init = Init::new(seed, &dev);
        ImageNet::init(&spec, context_layers, &mut init)?;
        let vb = VarBuilder::from_varmap(&init.varmap, DType::F32, &dev);
        Ok((ImageNet::new(spec, context_layers, vb)?, init.varmap))
    }

    /// Loads `encoder.safetensors` (or a checkpoint) of `rlcpc cpc image`.
    pub fn load(path: &Path) -> Result<(Self, VarMap)> {
        let f = Loaded::read(path)?;
        let spec: EncoderSpec = f.meta(ENCODER_SPEC_KEY)?;
        let layers = match f.meta::<ContextSpec>(CONTEXT_SPEC_KEY)? {
            ContextSpec::Masked { layers, .. } => layers,
            other => {
                return Err(f
                    .mismatch(format!(
                        "its context network is {other:?}, not a masked grid network"
                    ))
                    .into())
            }
        };
        let (net, varmap) =
            ImageNet::random(spec, layers, 0).map_err(|e| f.mismatch(e.to_string()))?;
        for (k, v) in varmap.data().lock().expect("varmap lock").iter() {
            v.set(&f.tensor(k, v.dims())?.to_device(&Device::Cpu)?)?;
        }
        Ok((net, varmap))
    }

    /// Images `[n, h, w, c]` (host, channels-last) → z and c as grids `[n, rows, cols, D]`.
    pub fn forward(&self, images: &[f32], n: usize) -> Result<(Tensor, Tensor)> {
        let (h, w, c, p, s, f, _) = Self::parts(&self.spec)?;
        let (rows, cols) = grid(h, w, p, s).map_err(anyhow::Error::msg)?;
        let patches = extract(images, (n, h, w, c), p, s).map_err(anyhow::Error::msg)?;
        let x = Tensor::from_vec(patches, (n * rows * cols, p, p, c), &Device::Cpu)?;
        let z = self.encoder.forward(&x)?.reshape((n, rows, cols, f))?;
        let ctx = self.context.forward(&z)?;
        Ok((z, ctx))
    }

    /// `[height, width, channels]` of the images the encoder reads.
    pub fn encoder_input(&self) -> [usize; 3] {
        let (h, w, c, ..) = Self::parts(&self.spec).expect("patch spec");
        [h, w, c]
    }

    pub fn context_spec(&self) -> ContextSpec {
        let (_, _, _, _, _, f, _) = Self::parts(&self.spec).expect("patch spec");
        ContextSpec::Masked {
            dim: f,
            layers: self.context_layers,
        }
    }
}

/// The training objective: random minibatches of the training images.
pub struct ImageCpc {
    net: ImageNet,
    predictor: Predictor,
    varmap: VarMap,
    set: ImageSet,
    sampling: CpcSampling,
    rng: SeededRng,
}

impl ImageCpc {
    pub fn new(cfg: &ImageCpcConfig, set: ImageSet) -> Result<Self> {
        let spec = cfg.encoder_spec(set.height, set.width, set.channels)?;
        let dev = Device::Cpu;
        let mut init = Init::new(cfg.train.seed, &dev);
        ImageNet::init(&spec, cfg.model.context_layers, &mut init)?;
        let f = cfg.model.features;
        Predictor::init(cfg.cpc.horizon, f, f, &mut init, "cpc")?;
        let varmap = init.varmap;
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        Ok(ImageCpc {
            net: ImageNet::new(spec, cfg.model.context_layers, vb.clone())?,
            predictor: Predictor::new(cfg.cpc.horizon, f, f, vb.pp("cpc"))?,
            varmap,
            set,
            sampling: CpcSampling {
                horizon: cfg.cpc.horizon,
                negatives: cfg.cpc.negatives,
                num_negatives: cfg.cpc.num_negatives,
                start_times: 0,
                horizons: 0,
                groups: Vec::new(),
            },
            rng: SeededRng::seed_from_u64(cfg.train.seed ^ 0x1A6E_0C9C),
        })
    }
}

impl Objective for ImageCpc {
    fn name(&self) -> &'static str {
        "cpc-image"
    }

    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn step(&mut self, batch: usize) -> Result<StepOutput> {
        let mut images = Vec::with_capacity(batch * self.set.image_len());
        for _ in 0..batch {
            let i = self.rng.random_range(0..self.set.len());
            images.extend_from_slice(self.set.image(i));
        }
        let (z, c) = self.net.forward(&images, batch)?;
        let (zs, cs) = (as_sequences(&z)?, as_sequences(&c)?);
        let first = vec![0f32; zs.dim(0)? * zs.dim(1)?];
        let r = cpc_loss(
            &self.predictor,
            &zs,
            &cs,
            &first,
            &self.sampling,
            &mut self.rng,
        )?
        .expect("the grid is taller than the horizon (validated)");
        let acc = r.correct.iter().filter(|&&c| c).count() as f64 / r.correct.len() as f64;
        let f = z.dim(3)?;
        Ok(StepOutput {
            loss: r.loss,
            metrics: vec![
                ("acc".into(), acc),
                (
                    "z_norm_std".into(),
                    super::audio::normalized_std(&z.reshape(((), f))?)?,
                ),
            ],
            samples: batch,
        })
    }

    fn rng(&mut self) -> &mut SeededRng {
        &mut self.rng
    }

    fn export_metadata(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                ENCODER_SPEC_KEY,
                serde_json::to_string(&self.net.spec).expect("spec"),
            ),
            (
                CONTEXT_SPEC_KEY,
                serde_json::to_string(&self.net.context_spec()).expect("spec"),
            ),
        ]
    }
}

/// Image-level features: c (or z) averaged over the patch grid, in batches of 256.
pub fn image_features(
    net: &ImageNet,
    set: &ImageSet,
    idx: &[usize],
    pool_z: bool,
) -> Result<crate::probe::Features> {
    let mut rows = Vec::with_capacity(idx.len());
    for chunk in idx.chunks(256) {
        let mut images = Vec::with_capacity(chunk.len() * set.image_len());
        for &i in chunk {
            images.extend_from_slice(set.image(i));
        }
        let (z, c) = net.forward(&images, chunk.len())?;
        let f = if pool_z { z } else { c };
        rows.extend(f.mean((1, 2))?.to_vec2::<f32>()?);
    }
    crate::probe::Features::from_rows(rows)
}

/// Settings of [`probe_images`].
pub struct ImageProbeOptions {
    /// At most this many training and test images each, drawn at random (seeded).
    pub max: usize,
    pub baselines: bool,
    pub iters: usize,
    pub seed: u64,
}

/// Linear probe of the class from pooled features of `net`, a random-init twin and the
/// raw pixels, trained on images of `train` and tested on images of `test`.
pub fn probe_images(
    net: &ImageNet,
    name: &str,
    train: &ImageSet,
    test: &ImageSet,
    o: &ImageProbeOptions,
) -> Result<(usize, usize, Vec<super::audio::ProbeRow>)> {
    use rand::seq::SliceRandom;
    let (max, seed) = (o.max, o.seed);
    let mut rng = SeededRng::seed_from_u64(seed ^ 0x1A6E);
    let mut pick = |n: usize| {
        let mut v: Vec<usize> = (0..n).collect();
        v.shuffle(&mut rng);
        v.truncate(max);
        v
    };
    let (tr, te) = (pick(train.len()), pick(test.len()));
    let y_tr: Vec<usize> = tr.iter().map(|&i| train.labels[i] as usize).collect();
    let y_te: Vec<usize> = te.iter().map(|&i| test.labels[i] as usize).collect();
    let k = train.classes.len().max(test.classes.len());
    let mut sets = vec![(
        format!("cpc ({name}), mean-pooled c"),
        image_features(net, train, &tr, false)?,
        image_features(net, test, &te, false)?,
    )];
    if o.baselines {
        let (random, _vm) = ImageNet::random(net.spec.clone(), net.context_layers, 12345)?;
        sets.push((
            "random-init encoder + context, same architecture".into(),
            image_features(&random, train, &tr, false)?,
            image_features(&random, test, &te, false)?,
        ));
        let raw = |s: &ImageSet, idx: &[usize]| {
            crate::probe::Features::from_rows(idx.iter().map(|&i| s.image(i).to_vec()).collect())
        };
        sets.push(("raw pixels".into(), raw(train, &tr)?, raw(test, &te)?));
    }
    let rows = sets
        .into_iter()
        .map(|(features, a, b)| super::audio::ProbeRow {
            dim: a.d,
            score: crate::probe::classify(&a, &y_tr, &b, &y_te, k, seed, o.iters),
            features,
        })
        .collect();
    Ok((tr.len(), te.len(), rows))
}
