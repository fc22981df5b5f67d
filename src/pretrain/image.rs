//! CPC on images (van den Oord et al. 2018, §3.2): each image is cut into a grid of
//! overlapping patches, each patch encoded to z_{i,j}, a vertically causal context
//! network gives c_{i,j} from the rows above and the current one, and W_k c_{i,j}
//! predicts z_{i+k,j}, k = 1..K, scored by InfoNCE against the other patches of the batch
//! — through [`crate::contrastive::cpc::cpc_loss`], each grid column being a sequence down the rows.
//!
//! At about 700 lines this file is over the house limit of ~600: besides the config,
//! the network and the objective of the other modalities it holds CPC-v2's four
//! prediction directions (a context network per direction, the grid transposed or
//! flipped for each), the agent's conv encoder as an alternative patch encoder and the
//! kNN monitor's pooled features. SimCLR and MoCo encode whole images, not patches, and
//! live in `views.rs`.

use std::path::Path;

use anyhow::{bail, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rlcpc_envs::SeededRng;
use serde::{Deserialize, Serialize};

use super::{Objective, StepOutput, TrainSection};
use crate::checkpoint::keys;
use crate::config::{Invalid, LearnerPath, Negatives};
use crate::contrastive::cpc::{cpc_loss, CpcSampling, Predictor, PredictorDims};
use crate::data::images::ImageSet;
use crate::encoder_file::EncoderFile;
use crate::nn::encoders::{ContextSpec, Encoder, EncoderSpec};
use crate::nn::init::Init;
use crate::nn::lean::patches::LeanPatchEncoder;
use crate::nn::patches::{
    as_sequences, extract, extract_augmented, grid, Augment, CausalContext, Direction, PatchEncoder,
};

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
    /// CPC-v2: LayerNorm after each convolution of the patch encoder.
    pub layer_norm: bool,
    /// `cpc`: the 3×3 conv patch encoder above; `agent`: the agent's pixel encoder
    /// (IMPALA's shallow conv net, `features` = its FC width, patches of at least 20
    /// pixels), so that weights move between this trainer and agents on RGB views of
    /// `patch`×`patch` pixels (Lab tasks with `width = height = patch`).
    pub encoder: PatchEncoderKind,
    /// Start the patch encoder from this file (an agent's `rlcpc export-encoder`, or
    /// another image run's encoder.safetensors); its encoder must be this one.
    pub init_encoder: Option<std::path::PathBuf>,
}

/// Which network encodes a patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchEncoderKind {
    Cpc,
    Agent,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            patch: 8,
            stride: 4,
            features: 64,
            encoder_layers: 2,
            context_layers: 3,
            layer_norm: false,
            encoder: PatchEncoderKind::Cpc,
            init_encoder: None,
        }
    }
}

/// `[cpc]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpcSection {
    /// Rows below predicted, one W_k each: offsets k = skip+1..=horizon are predicted.
    pub horizon: usize,
    /// Offsets not predicted because their patches overlap rows the context has seen
    /// (CPC-v2's `steps_to_ignore`). Unset: the smallest that avoids any overlap,
    /// ⌈(patch + 2·crop) / stride⌉ − 1 (1 for 8-pixel patches every 4, so the preset
    /// predicts k = 2, 3); 0 predicts every k ≥ 1 as the paper's §3.2 does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip: Option<usize>,
    /// `both`: any patch of any image in the batch (the paper); `sequence`: the same
    /// column of the same image; `batch`: the same row and column of other images.
    pub negatives: Negatives,
    pub num_negatives: usize,
    /// Directions predicted, each with its own context network and W_k (CPC-v2 adds
    /// `up`, `right`, `left` to the paper's `down`); the losses are averaged. The first
    /// direction's context network is the one exported and probed.
    pub directions: Vec<Direction>,
}

impl Default for CpcSection {
    fn default() -> Self {
        CpcSection {
            horizon: 3,
            skip: None,
            negatives: Negatives::Both,
            num_negatives: 16,
            directions: vec![Direction::Down],
        }
    }
}

/// `configs/cpc-image-fashion.toml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageCpcConfig {
    /// The objective: `cpc` here; `simclr` and `moco` have presets of their own
    /// (`simclr-fashion`, `moco-fashion`).
    pub objective: super::ObjectiveKind,
    /// How a single tree of class folders is split (IDX, CIFAR-10 and
    /// `DIR/train` + `DIR/test` folders bring their own test part).
    pub data: crate::data::images::FolderSplit,
    pub model: ModelSection,
    pub cpc: CpcSection,
    /// CPC-v2's patch augmentation (training only; probes see plain patches).
    pub augment: Augment,
    /// The kNN monitor on held-out images (knn/top1), on the features the probe reads:
    /// context vectors averaged over 2×2 cells of the grid.
    pub knn: super::KnnSection,
    pub train: TrainSection,
}

pub const PRESETS: [(&str, &str); 1] = [(
    "cpc-image-fashion",
    include_str!("../../configs/cpc-image-fashion.toml"),
)];

impl super::TrainerConfig for ImageCpcConfig {
    const PRESETS: &'static [(&'static str, &'static str)] = &PRESETS;

    fn validate(&self) -> Result<(), crate::config::Invalid> {
        self.objective.only_cpc("image")?;
        self.train.validate()?;
        self.data.validate()?;
        self.knn.validate()?;
        let m = &self.model;
        super::at_most(&[
            ("model.features", m.features, 65_536),
            ("model.patch", m.patch, 4_096),
            ("model.encoder_layers", m.encoder_layers, 256),
            ("model.context_layers", m.context_layers, 256),
            ("cpc.num_negatives", self.cpc.num_negatives, 65_536),
        ])?;
        if m.features == 0 || m.encoder_layers == 0 || m.context_layers == 0 {
            return Err(Invalid::new(
                "model.features'/'model.encoder_layers'/'model.context_layers",
                "0",
            ));
        }
        if m.encoder == PatchEncoderKind::Agent {
            if m.patch < 20 {
                return Err(Invalid::new("model.patch", format!("{} (model.encoder = \"agent\" is IMPALA's 8×8/4 and 4×4/2 convolutions: patches of at least 20 pixels)", m.patch)));
            }
            if m.layer_norm {
                return Err(Invalid::new(
                    "model.layer_norm",
                    "true (the agent's encoder has no LayerNorm)",
                ));
            }
        } else if m.patch < 2 * m.encoder_layers + 1 {
            return Err(Invalid::new(
                "model.patch",
                format!(
                    "{} (each 3×3 layer takes 2 pixels; {} layers need at least {})",
                    m.patch,
                    m.encoder_layers,
                    2 * m.encoder_layers + 1
                ),
            ));
        }
        if self.cpc.horizon == 0 || self.cpc.num_negatives == 0 {
            return Err(Invalid::new("cpc.horizon'/'cpc.num_negatives", "0"));
        }
        if self.skip() >= self.cpc.horizon {
            return Err(Invalid::new("cpc.horizon", format!(
                "{} (offsets 1..={} are skipped because their {}-pixel patches every {} pixels overlap rows the context has seen; raise cpc.horizon above {} or set cpc.skip)",
                self.cpc.horizon,
                self.skip(),
                m.patch,
                m.stride,
                self.skip()
            )));
        }
        let d = &self.cpc.directions;
        if d.is_empty() || (1..d.len()).any(|i| d[..i].contains(&d[i])) {
            return Err(Invalid::new(
                "cpc.directions",
                format!("{d:?} (one or more of down, up, right, left, each once)"),
            ));
        }
        if self.cpc.negatives == Negatives::Speaker {
            return Err(Invalid::new("cpc.negatives", "\"speaker\" is for audio"));
        }
        Ok(())
    }
}

impl ImageCpcConfig {
    /// Offsets 1..=skip that are not predicted: `cpc.skip`, else the smallest k below
    /// which a target patch (moved by up to `augment.crop`) overlaps the context's rows.
    pub fn skip(&self) -> usize {
        self.cpc.skip.unwrap_or_else(|| {
            let reach = self.model.patch + 2 * self.augment.crop;
            reach.div_ceil(self.model.stride.max(1)).saturating_sub(1)
        })
    }

    /// The encoder spec for images of `[h, w, c]`, or why the patches do not fit.
    pub fn encoder_spec(&self, h: usize, w: usize, c: usize) -> Result<EncoderSpec> {
        let (rows, cols) =
            grid(h, w, self.model.patch, self.model.stride).map_err(anyhow::Error::msg)?;
        for dir in &self.cpc.directions {
            let steps = dir.steps(rows, cols);
            if self.cpc.horizon >= steps {
                return Err(Invalid::new(
                    "cpc.horizon",
                    format!(
                        "{} (the {rows}x{cols} patch grid of {h}x{w} images allows at most {} in direction {})",
                        self.cpc.horizon,
                        steps - 1,
                        dir.name()
                    ),
                )
                .into());
            }
        }
        if self.augment.crop > self.model.stride {
            return Err(Invalid::new(
                "augment.crop",
                format!(
                    "{} (at most the stride, {})",
                    self.augment.crop, self.model.stride
                ),
            )
            .into());
        }
        if self.augment.color_drop && c < 2 {
            return Err(Invalid::new(
                "augment.color_drop",
                format!(
                    "true, but the images have {c} channel (colour dropping needs colour images)"
                ),
            )
            .into());
        }
        Ok(match self.model.encoder {
            PatchEncoderKind::Cpc => EncoderSpec::Patches {
                height: h,
                width: w,
                channels: c,
                patch: self.model.patch,
                stride: self.model.stride,
                features: self.model.features,
                layers: self.model.encoder_layers,
                layer_norm: self.model.layer_norm,
            },
            // As the agent builds it for a patch×patch RGB view of 0–255 pixels.
            PatchEncoderKind::Agent => EncoderSpec::Conv {
                height: self.model.patch,
                width: self.model.patch,
                channels: c,
                fc: self.model.features,
                input_scale: 1.0 / 255.0,
            },
        })
    }
}

/// Where an image network's patches lie: `patch`×`patch` patches every `stride` pixels
/// of `[height, width, channels]` images (stored with exported encoders).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PatchGrid {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub patch: usize,
    pub stride: usize,
}

impl PatchGrid {
    /// `(rows, cols)`.
    pub fn size(&self) -> Result<(usize, usize)> {
        grid(self.height, self.width, self.patch, self.stride).map_err(anyhow::Error::msg)
    }

    /// The grid of a CPC patch encoder's spec, or `None` for other encoders.
    pub fn of(spec: &EncoderSpec) -> Option<PatchGrid> {
        match *spec {
            EncoderSpec::Patches {
                height,
                width,
                channels,
                patch,
                stride,
                ..
            } => Some(PatchGrid {
                height,
                width,
                channels,
                patch,
                stride,
            }),
            _ => None,
        }
    }
}

/// The network applied to each patch.
pub enum PatchNet {
    /// Image CPC's own: 3×3 convolutions, mean-pooled ([`PatchEncoder`]).
    Cpc(PatchEncoder),
    /// The agent's pixel encoder (IMPALA's shallow conv net) on patches scaled to the
    /// agent's 0–255 input (`1 / input_scale`), so that its weights move between the
    /// two: an agent on a `patch`×`patch` RGB Lab view reads the same encoder.
    Agent(Encoder, f64),
}

/// The patch encoder and the causal context network.
pub struct ImageNet {
    pub encoder: PatchNet,
    pub context: CausalContext,
    pub spec: EncoderSpec,
    pub grid: PatchGrid,
    pub context_layers: usize,
    /// Where the weights live (the patches of a batch are moved there).
    device: Device,
}

impl ImageNet {
    /// Checks that `spec` can encode the patches of `grid`.
    fn check(spec: &EncoderSpec, grid: &PatchGrid) -> Result<()> {
        grid.size()?;
        match spec {
            EncoderSpec::Patches { .. } if PatchGrid::of(spec) == Some(*grid) => Ok(()),
            &EncoderSpec::Conv {
                height,
                width,
                channels,
                ..
            } if [height, width, channels] == [grid.patch, grid.patch, grid.channels] => Ok(()),
            other => bail!(
                "{} cannot encode the {}x{}x{} patches of this grid",
                other.describe(),
                grid.patch,
                grid.patch,
                grid.channels
            ),
        }
    }

    pub fn init(
        spec: &EncoderSpec,
        grid: &PatchGrid,
        context_layers: usize,
        init: &mut Init,
    ) -> Result<()> {
        Self::check(spec, grid)?;
        spec.init(init, "encoder")?;
        CausalContext::init(spec.out_dim(), context_layers, init, "context")?;
        Ok(())
    }

    pub fn new(
        spec: EncoderSpec,
        grid: PatchGrid,
        context_layers: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        Self::check(&spec, &grid)?;
        let f = spec.out_dim();
        let device = vb.device().clone();
        let encoder = match spec {
            EncoderSpec::Patches {
                channels,
                features,
                layers,
                layer_norm,
                ..
            } => PatchNet::Cpc(PatchEncoder::new(
                channels,
                features,
                layers,
                layer_norm,
                vb.pp("encoder"),
            )?),
            EncoderSpec::Conv { input_scale, .. } => PatchNet::Agent(
                Encoder::new(spec.clone(), vb.pp("encoder"))?,
                1.0 / input_scale as f64,
            ),
            _ => unreachable!("checked"),
        };
        Ok(ImageNet {
            encoder,
            context: CausalContext::new(f, context_layers, vb.pp("context"))?,
            spec,
            grid,
            context_layers,
            device,
        })
    }

    /// Fresh weights from `seed` (the random-init baseline).
    pub fn random(
        spec: EncoderSpec,
        grid: PatchGrid,
        context_layers: usize,
        seed: u64,
    ) -> Result<(Self, VarMap)> {
        let dev = Device::Cpu;
        let mut init = Init::new(seed, &dev);
        ImageNet::init(&spec, &grid, context_layers, &mut init)?;
        let vb = VarBuilder::from_varmap(&init.varmap, DType::F32, &dev);
        Ok((ImageNet::new(spec, grid, context_layers, vb)?, init.varmap))
    }

    /// Loads `encoder.safetensors` (or a checkpoint) of `rlcpc pretrain image`.
    pub fn load(path: &Path) -> Result<(Self, VarMap)> {
        Self::from_file(&EncoderFile::read(path)?)
    }

    /// The network of an encoder file already read.
    pub fn from_file(f: &EncoderFile) -> Result<(Self, VarMap)> {
        let grid = match PatchGrid::of(&f.spec) {
            Some(g) => g,
            None => f.file.meta::<PatchGrid>(keys::PATCH_GRID)?,
        };
        let layers = match f.context_spec()? {
            ContextSpec::Masked { layers, .. } => layers,
            other => {
                return Err(f.mismatch(format!(
                    "its context network is {other:?}, not a masked grid network"
                )))
            }
        };
        let (net, varmap) = ImageNet::random(f.spec.clone(), grid, layers, 0)
            .map_err(|e| f.mismatch(e.to_string()))?;
        f.load_into(&varmap, &["encoder.", "context."])?;
        Ok((net, varmap))
    }

    /// Images `[n, h, w, c]` (host, channels-last) → z and c as grids `[n, rows, cols, D]`.
    pub fn forward(&self, images: &[f32], n: usize) -> Result<(Tensor, Tensor)> {
        let z = self.features(images, n)?;
        let ctx = self.context.forward(&z)?;
        Ok((z, ctx))
    }

    /// Images `[n, h, w, c]` (host, channels-last) → z as a grid `[n, rows, cols, D]`.
    pub fn features(&self, images: &[f32], n: usize) -> Result<Tensor> {
        self.encode(self.patches(images, n)?, n)
    }

    /// The patches of `n` images `[n, h, w, c]`, as [`extract`] lays them out.
    fn patches(&self, images: &[f32], n: usize) -> Result<Vec<f32>> {
        let g = &self.grid;
        extract(
            images,
            (n, g.height, g.width, g.channels),
            g.patch,
            g.stride,
        )
        .map_err(anyhow::Error::msg)
    }

    /// Patches of `n` images as [`extract`] lays them out → z as a grid `[n, rows, cols, D]`.
    pub fn encode(&self, patches: Vec<f32>, n: usize) -> Result<Tensor> {
        let g = &self.grid;
        let (rows, cols) = g.size()?;
        let x = Tensor::from_vec(
            patches,
            (n * rows * cols, g.patch, g.patch, g.channels),
            &self.device,
        )?;
        let z = match &self.encoder {
            PatchNet::Cpc(e) => e.forward(&x)?,
            PatchNet::Agent(e, scale) => candle_core::Module::forward(e, &x.affine(*scale, 0.0)?)?,
        };
        Ok(z.reshape((n, rows, cols, self.spec.out_dim()))?)
    }

    /// The lean path of the patch encoder over `varmap` (this network's variables): the
    /// paper's patch encoder on the CPU; `None` for the agent's conv encoder or a GPU.
    pub fn lean(&self, varmap: &VarMap) -> Result<Option<LeanPatchEncoder>> {
        match (&self.spec, self.device.is_cpu()) {
            (
                EncoderSpec::Patches {
                    channels,
                    patch,
                    features,
                    layers,
                    layer_norm,
                    ..
                },
                true,
            ) => Ok(Some(LeanPatchEncoder::new(
                (*patch, *channels),
                *features,
                *layers,
                *layer_norm,
                varmap,
                "encoder",
            )?)),
            _ => Ok(None),
        }
    }

    /// z of the `n` images' patches (as [`extract`] lays them out) through the lean
    /// encoder `enc`, as a grid `[n, rows, cols, D]`; a variable, so that the training
    /// step can take its gradient back through `enc`.
    pub fn encode_lean(
        &self,
        enc: &mut LeanPatchEncoder,
        patches: &[f32],
        n: usize,
    ) -> Result<Var> {
        let (rows, cols) = self.grid.size()?;
        let z = enc.forward(patches, n * rows * cols)?;
        Ok(Var::from_vec(
            z.to_vec(),
            (n, rows, cols, enc.out_dim()),
            &Device::Cpu,
        )?)
    }

    /// [`ImageNet::forward`] with z through `lean` where it is given (the same function).
    pub fn forward_with(
        &self,
        lean: Option<&mut LeanPatchEncoder>,
        images: &[f32],
        n: usize,
    ) -> Result<(Tensor, Tensor)> {
        let Some(enc) = lean else {
            return self.forward(images, n);
        };
        let patches = self.patches(images, n)?;
        let z = self.encode_lean(enc, &patches, n)?.as_tensor().clone();
        let c = self.context.forward(&z)?;
        Ok((z, c))
    }

    /// `[height, width, channels]` of the images the encoder reads.
    pub fn encoder_input(&self) -> [usize; 3] {
        [self.grid.height, self.grid.width, self.grid.channels]
    }

    pub fn context_spec(&self) -> ContextSpec {
        ContextSpec::Masked {
            dim: self.spec.out_dim(),
            layers: self.context_layers,
        }
    }
}

/// The training objective: random minibatches of the training images.
pub struct ImageCpc {
    net: ImageNet,
    /// Per direction: the context network of the directions after the first (the
    /// first's is `net.context`) and the predictors W_1..W_K.
    directions: Vec<(Direction, Option<CausalContext>, Predictor)>,
    augment: Augment,
    varmap: VarMap,
    /// The training part only.
    set: ImageSet,
    split: crate::data::images::FolderSplit,
    sampling: CpcSampling,
    rng: SeededRng,
    knn: Option<super::KnnMonitor>,
    /// The patch encoder on the lean path (`train.learner`, on the CPU), and z of the
    /// step in progress as a leaf of candle's graph: its gradient, after the loss's
    /// backward, drives the encoder's ([`Objective::complete_grads`]).
    lean: Option<(LeanPatchEncoder, Option<Var>)>,
}

impl ImageCpc {
    /// The network (seeded by `train.seed`) with its predictors, on `device`.
    pub fn new(cfg: &ImageCpcConfig, set: ImageSet, device: &Device) -> Result<Self> {
        let spec = cfg.encoder_spec(set.height, set.width, set.channels)?;
        let grid = PatchGrid {
            height: set.height,
            width: set.width,
            channels: set.channels,
            patch: cfg.model.patch,
            stride: cfg.model.stride,
        };
        let dev = device.clone();
        let mut init = Init::new(cfg.train.seed, &dev);
        ImageNet::init(&spec, &grid, cfg.model.context_layers, &mut init)?;
        let (f, k, layers) = (
            cfg.model.features,
            cfg.cpc.horizon,
            cfg.model.context_layers,
        );
        // The paper's names for the first direction, `_<direction>` for the others.
        let suffix = |i: usize, d: Direction| {
            if i == 0 {
                String::new()
            } else {
                format!("_{}", d.name())
            }
        };
        for (i, &d) in cfg.cpc.directions.iter().enumerate() {
            if i > 0 {
                CausalContext::init(f, layers, &mut init, &format!("context{}", suffix(i, d)))?;
            }
            Predictor::init(
                PredictorDims {
                    horizon: k,
                    z_dim: f,
                    c_dim: f,
                },
                &mut init,
                &format!("cpc{}", suffix(i, d)),
            )?;
        }
        let varmap = init.varmap;
        if let Some(path) = &cfg.model.init_encoder {
            crate::encoder_file::init_encoder_from(path, &spec, &varmap).map_err(|e| {
                Invalid::new("model.init_encoder", format!("'{}': {e:#}", path.display()))
            })?;
        }
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let directions = cfg
            .cpc
            .directions
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                let context = (i > 0)
                    .then(|| {
                        CausalContext::new(f, layers, vb.pp(format!("context{}", suffix(i, d))))
                    })
                    .transpose()?;
                let predictor = Predictor::new(
                    PredictorDims {
                        horizon: k,
                        z_dim: f,
                        c_dim: f,
                    },
                    vb.pp(format!("cpc{}", suffix(i, d))),
                )?;
                Ok((d, context, predictor))
            })
            .collect::<Result<Vec<_>>>()?;
        let net = ImageNet::new(spec, grid, layers, vb.clone())?;
        // The lean path has the paper's patch encoder (not the agent's conv encoder).
        let lean = match (cfg.train.learner, dev.is_cpu()) {
            (LearnerPath::Candle, _) => None,
            (LearnerPath::Lean, false) => bail!(
                "train.learner = \"lean\" runs on the CPU only; use \"auto\" or \"candle\" with --device cuda"
            ),
            _ => net.lean(&varmap)?.map(|enc| (enc, None)),
        };
        Ok(ImageCpc {
            lean,
            net,
            directions,
            augment: cfg.augment,
            varmap,
            set,
            split: cfg.data,
            sampling: CpcSampling {
                skip: cfg.skip(),
                ..CpcSampling::new(cfg.cpc.horizon, cfg.cpc.negatives, cfg.cpc.num_negatives)
            },
            rng: SeededRng::seed_from_u64(cfg.train.seed ^ 0x1A6E_0C9C),
            knn: None,
        })
    }

    /// Adds the kNN monitor (`[knn]`) on the held-out images `test`.
    pub fn with_knn(mut self, cfg: &ImageCpcConfig, test: ImageSet) -> Self {
        self.knn = Some(super::KnnMonitor::new(
            &cfg.knn,
            self.set.len(),
            test,
            self.split.split_seed,
        ));
        self
    }
}

/// Context vectors averaged over 2×2 cells of the grid (the probe's default), as rows;
/// z through the lean patch encoder where there is one.
fn pooled_features(
    net: &ImageNet,
    mut lean: Option<&mut LeanPatchEncoder>,
    set: &ImageSet,
    idx: &[usize],
) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    for chunk in idx.chunks(256) {
        let mut images = Vec::with_capacity(chunk.len() * set.image_len());
        for &i in chunk {
            images.extend_from_slice(set.image(i));
        }
        let (_, c) = net.forward_with(lean.as_deref_mut(), &images, chunk.len())?;
        out.extend(crate::nn::patches::pool_grid(&c, 2)?.concat());
    }
    Ok(out)
}

impl Objective for ImageCpc {
    fn name(&self) -> String {
        "cpc-image".to_string()
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
        let g = self.net.grid;
        let (h, w, c, p, s) = (g.height, g.width, g.channels, g.patch, g.stride);
        let dims = (batch, h, w, c);
        let patches = if self.augment.is_off() {
            extract(&images, dims, p, s)
        } else {
            extract_augmented(&images, dims, p, s, &self.augment, &mut self.rng)
        }
        .map_err(anyhow::Error::msg)?;
        let z = match &mut self.lean {
            Some((enc, leaf)) => {
                let v = self.net.encode_lean(enc, &patches, batch)?;
                let t = v.as_tensor().clone();
                *leaf = Some(v);
                t
            }
            None => self.net.encode(patches, batch)?,
        };
        let (mut losses, mut metrics) = (Vec::new(), Vec::new());
        let (mut hits, mut scored) = (0f64, 0usize);
        for (d, context, predictor) in &self.directions {
            let zd = d.orient(&z)?;
            let cd = context.as_ref().unwrap_or(&self.net.context).forward(&zd)?;
            let (zs, cs) = (as_sequences(&zd)?, as_sequences(&cd)?);
            let first = vec![0f32; zs.dim(0)? * zs.dim(1)?];
            let r = cpc_loss(predictor, &zs, &cs, &first, &self.sampling, &mut self.rng)?
                .expect("the grid is longer than the horizon in every direction (validated)");
            let right: f64 = r.hits.iter().sum();
            if self.directions.len() > 1 {
                metrics.push((format!("acc_{}", d.name()), r.accuracy()));
            }
            (hits, scored) = (hits + right, scored + r.hits.len());
            losses.push(r.loss);
        }
        let loss = (Tensor::stack(&losses, 0)?.sum_all()? / losses.len() as f64)?;
        let f = z.dim(3)?;
        metrics.insert(0, ("acc".into(), hits / scored.max(1) as f64));
        metrics.push((
            "z_norm_std".into(),
            super::normalized_std(&z.reshape(((), f))?)?,
        ));
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
        let Some((enc, leaf)) = &mut self.lean else {
            return Ok(());
        };
        let Some(z) = leaf.take() else {
            return Ok(());
        };
        let d_z = match grads.remove(z.as_tensor()) {
            Some(g) => g.flatten_all()?.to_vec1::<f32>()?,
            None => vec![0.0; z.as_tensor().elem_count()],
        };
        enc.backward(&d_z, grads)
    }

    fn has_lean_path(&self) -> bool {
        self.lean.is_some()
    }

    fn monitor(&mut self, step: u64, last: bool) -> Result<Vec<(String, f64)>> {
        match &self.knn {
            Some(m) if m.due(step, last) => {
                let d = 4 * self.net.spec.out_dim();
                let (net, mut lean) = (&self.net, self.lean.as_mut().map(|(e, _)| e));
                m.run(&self.set, d, |s, idx| {
                    pooled_features(net, lean.as_deref_mut(), s, idx)
                })
            }
            _ => Ok(vec![]),
        }
    }

    fn export_metadata(&self) -> Vec<(&'static str, String)> {
        let mut m = super::spec_metadata(&self.net.spec, &self.net.context_spec());
        m.push((
            keys::PATCH_GRID,
            serde_json::to_string(&self.net.grid).expect("grid"),
        ));
        if let Some(held) = &self.set.held_out {
            m.push((
                crate::checkpoint::keys::DATA,
                serde_json::json!({
                    "test_fraction": self.split.test_fraction,
                    "split_seed": self.split.split_seed,
                    "held_out": held,
                })
                .to_string(),
            ));
        }
        m
    }
}
