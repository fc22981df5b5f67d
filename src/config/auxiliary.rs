//! `[aux]`: the auxiliary head, a tagged section. `kind` chooses the head, and each head
//! takes only its own keys: `aux.horizon` with `kind = "curl"` is refused, naming the
//! heads that take it. Setting `aux.kind` (`--set`, `--aux`, a study arm) replaces the
//! section: the keys the new head also takes stay (e.g. `weight`), the others go, and a
//! key set by an earlier `--set` stays and is refused if the new head does not take it
//! ([`super::load`]).

use serde::{Deserialize, Serialize};

use super::load::Tagged;
use super::{Invalid, Negatives};

/// The auxiliary heads, as `aux.kind` and `--aux` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuxKind {
    /// No head at all: no parameters, no cost.
    None,
    /// Contrastive Predictive Coding (van den Oord et al. 2018, §3.4).
    Cpc,
    /// Action-conditioned CPC, CPC|A (Guo et al. 2018): a GRU over the future actions,
    /// started from the context, predicts z_{t+k}; binary classification or InfoNCE.
    Cpca,
    /// CURL (Srinivas et al. 2020) adapted to A2C: two random shifts of each sampled
    /// observation, the agent's encoder on one and a momentum key encoder on the other,
    /// bilinear similarity, InfoNCE over the samples. Image observations, conv encoder.
    Curl,
}

impl AuxKind {
    /// Every kind, in the order `--help` lists them.
    pub const ALL: [AuxKind; 4] = [AuxKind::None, AuxKind::Cpc, AuxKind::Cpca, AuxKind::Curl];

    /// Whether the head predicts future steps (CPC, CPC|A): `horizon` and the
    /// negatives apply.
    pub fn predicts(self) -> bool {
        matches!(self, AuxKind::Cpc | AuxKind::Cpca)
    }

    /// The config's spelling: `none`, `cpc`, `cpca` or `curl`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuxKind::None => "none",
            AuxKind::Cpc => "cpc",
            AuxKind::Cpca => "cpca",
            AuxKind::Curl => "curl",
        }
    }

    /// The kind spelt `name`, if any.
    pub fn parse(name: &str) -> Option<AuxKind> {
        AuxKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// `[aux]`: the auxiliary loss, `kind` and that head's own keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AuxConfig {
    /// No head at all: no parameters, no cost. Takes no other key.
    #[default]
    None,
    /// The CPC head (§3.4).
    Cpc(CpcHeadConfig),
    /// Action-conditioned CPC: CPC's keys and `cpca_loss`.
    Cpca(CpcaHeadConfig),
    /// CURL's contrastive loss on augmented observations.
    Curl(CurlHeadConfig),
}

/// `[aux]` with `kind = "cpc"`: the predicting head's keys (CPC|A takes them too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpcHeadConfig {
    /// Weight of the InfoNCE loss in the total loss (Habitat / Sample Factory CPC|A: 0.1).
    pub weight: f64,
    /// K: steps ahead predicted, each with its own linear map W_k (paper: 30); < unroll.
    pub horizon: usize,
    /// Where negatives come from: `sequence` (other steps of the same environment),
    /// `batch` (other environments at the same step) or `both` (any other step).
    pub negatives: Negatives,
    /// Negatives per positive, sampled with replacement (Habitat: 20).
    pub num_negatives: usize,
    /// Start times sampled per sequence and update (0: every time step).
    pub start_times: usize,
    /// Horizons sampled per start time (0: every k = 1..K that stays in the unroll).
    pub horizons: usize,
    /// `future` (z_{t+k}, the objective) or `shuffled` (the ablation: z of a random
    /// step of another sequence as each pair's positive).
    pub targets: Targets,
}

impl Default for CpcHeadConfig {
    fn default() -> Self {
        CpcHeadConfig {
            weight: 0.1,
            horizon: 30,
            negatives: Negatives::Both,
            num_negatives: 20,
            start_times: 0,
            horizons: 0,
            targets: Targets::Future,
        }
    }
}

/// `[aux]` with `kind = "cpca"`: CPC's keys, and the objective.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpcaHeadConfig {
    /// The keys CPC takes (weight, horizon, negatives, ...), at the same level.
    #[serde(flatten)]
    pub predict: CpcHeadConfig,
    /// CPC|A's objective: `binary` (the positive labelled 1, each negative 0; Guo et al.,
    /// Sample Factory, habitat-lab) or `infonce`.
    pub cpca_loss: CpcaLoss,
}

/// `[aux]` with `kind = "curl"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CurlHeadConfig {
    /// Weight of the InfoNCE loss in the total loss.
    pub weight: f64,
    /// Observations of the unroll sampled per update (the InfoNCE batch).
    pub curl_samples: usize,
    /// Each view is the observation shifted by up to this many pixels in each
    /// direction, edges replicated (DrQ's random shift; CURL crops 84 of 100 pixels).
    pub curl_shift: usize,
    /// m of the key encoder's θ_k ← m θ_k + (1 − m) θ_q, in [0, 1) (CURL: 0.95).
    pub curl_momentum: f64,
    /// A sample's negatives leave out the frames of its own environment fewer than this
    /// many steps away (near-duplicates of it, not negatives); 0 keeps every other
    /// sample. Not written into configs at its default (4).
    #[serde(skip_serializing_if = "is_default_curl_exclude")]
    pub curl_exclude: usize,
}

fn is_default_curl_exclude(v: &usize) -> bool {
    *v == CurlHeadConfig::default().curl_exclude
}

impl Default for CurlHeadConfig {
    fn default() -> Self {
        CurlHeadConfig {
            weight: 0.1,
            curl_samples: 256,
            curl_shift: 4,
            curl_momentum: 0.95,
            curl_exclude: 4,
        }
    }
}

/// What the predicting heads (CPC, CPC|A) take as each pair's positive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Targets {
    /// z_{t+k}: the future of the context's own sequence (the paper's objective).
    #[default]
    Future,
    /// An ablation: the z of a random time step of another sequence of the batch (of the
    /// same sequence when the batch has one), drawn anew for every pair. The head gets
    /// gradients of the same size and no information about the future: does predicting
    /// the future matter, or any auxiliary gradient?
    Shuffled,
}

/// CPC|A's objective over the classifier's scores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpcaLoss {
    /// Logistic loss: the positive labelled 1, each negative 0 (Guo et al. 2018).
    #[default]
    Binary,
    /// InfoNCE over the positive and the negatives.
    Infonce,
}

/// How the loading pipeline treats `[aux]` ([`super::load`]).
pub const AUX_SECTION: Tagged = Tagged {
    section: "aux",
    default_kind: "none",
    kinds: &["none", "cpc", "cpca", "curl"],
    keys: AuxConfig::keys,
    // The flat struct gained keys at the end over its history (045733b, b00a4bb,
    // cdcb4c6, 3dab3e7): each version wrote a prefix of this list.
    legacy: &[
        "weight",
        "horizon",
        "negatives",
        "num_negatives",
        "start_times",
        "horizons",
        "curl_samples",
        "curl_shift",
        "curl_momentum",
        "cpca_loss",
        "targets",
    ],
    legacy_versions: &[6, 9, 10, 11],
    legacy_optional: &["curl_exclude"],
};

impl AuxConfig {
    /// The head `kind` with every key at its default.
    pub fn of(kind: AuxKind) -> AuxConfig {
        match kind {
            AuxKind::None => AuxConfig::None,
            AuxKind::Cpc => AuxConfig::Cpc(CpcHeadConfig::default()),
            AuxKind::Cpca => AuxConfig::Cpca(CpcaHeadConfig::default()),
            AuxKind::Curl => AuxConfig::Curl(CurlHeadConfig::default()),
        }
    }

    /// Makes this head `kind`, as `--set aux.kind=...` does: the keys the new head also
    /// takes keep their values (e.g. `weight`), the others take its defaults.
    pub fn set_kind(&mut self, kind: AuxKind) {
        let mut table = toml::Table::try_from(&*self).expect("aux config serialises");
        let keys = AuxConfig::keys(kind.as_str()).expect("a kind");
        table.retain(|k, _| keys.iter().any(|x| x == k));
        table.insert("kind".into(), kind.as_str().into());
        *self =
            AuxConfig::deserialize(toml::Value::Table(table)).expect("the keys of its own kind");
    }

    /// Which head this is.
    pub fn kind(&self) -> AuxKind {
        match self {
            AuxConfig::None => AuxKind::None,
            AuxConfig::Cpc(_) => AuxKind::Cpc,
            AuxConfig::Cpca(_) => AuxKind::Cpca,
            AuxConfig::Curl(_) => AuxKind::Curl,
        }
    }

    /// The head's loss weight; `None` without a head.
    pub fn weight(&self) -> Option<f64> {
        match self {
            AuxConfig::None => None,
            AuxConfig::Cpc(c) => Some(c.weight),
            AuxConfig::Cpca(c) => Some(c.predict.weight),
            AuxConfig::Curl(c) => Some(c.weight),
        }
    }

    /// The predicting head's keys (CPC and CPC|A); `None` for the others.
    pub fn predict(&self) -> Option<&CpcHeadConfig> {
        match self {
            AuxConfig::Cpc(c) => Some(c),
            AuxConfig::Cpca(c) => Some(&c.predict),
            _ => None,
        }
    }

    /// [`AuxConfig::predict`], to change.
    pub fn predict_mut(&mut self) -> Option<&mut CpcHeadConfig> {
        match self {
            AuxConfig::Cpc(c) => Some(c),
            AuxConfig::Cpca(c) => Some(&mut c.predict),
            _ => None,
        }
    }

    /// The keys head `kind` takes besides `kind` (those it writes, with every key
    /// written at its default), or `None` for a kind that does not exist.
    pub fn keys(kind: &str) -> Option<Vec<String>> {
        let mut cfg = AuxConfig::of(AuxKind::parse(kind)?);
        if let AuxConfig::Curl(c) = &mut cfg {
            c.curl_exclude += 1; // written only where it is not the default
        }
        let table = toml::Table::try_from(&cfg).expect("aux config serialises");
        Some(table.keys().filter(|k| *k != "kind").cloned().collect())
    }

    /// The head's values, checked (those that need the network are the head's own
    /// `check`); `unroll` is `algo.unroll`, `per_batch` the environments per batch.
    pub fn validate(&self, unroll: usize, per_batch: usize) -> Result<(), Invalid> {
        if let Some(w) = self.weight() {
            if !(w >= 0.0 && w.is_finite()) {
                return Err(Invalid::new(
                    "aux.weight",
                    format!("{w} (must be finite and >= 0)"),
                ));
            }
        }
        match self {
            AuxConfig::None => Ok(()),
            AuxConfig::Curl(c) => c.validate(),
            AuxConfig::Cpc(c) => c.validate(unroll, per_batch),
            AuxConfig::Cpca(c) => c.predict.validate(unroll, per_batch),
        }
    }
}

impl CpcHeadConfig {
    fn validate(&self, unroll: usize, per_batch: usize) -> Result<(), Invalid> {
        if self.horizon == 0 || self.horizon >= unroll {
            return Err(Invalid::new(
                "aux.horizon",
                format!("{} (K must be in 1..algo.unroll = {unroll})", self.horizon),
            ));
        }
        if self.num_negatives == 0 {
            return Err(Invalid::new(
                "aux.num_negatives",
                "0 (need at least one negative)",
            ));
        }
        if self.num_negatives > 65_536 {
            return Err(Invalid::new(
                "aux.num_negatives",
                format!("{} (at most 65536)", self.num_negatives),
            ));
        }
        match self.negatives {
            Negatives::Speaker => Err(Invalid::new(
                "aux.negatives",
                "\"speaker\" is for audio corpora; an agent's sequences have no speaker (use sequence, batch or both)",
            )),
            Negatives::Batch if per_batch < 2 => Err(Invalid::new(
                "aux.negatives",
                "\"batch\" needs at least 2 environments per batch",
            )),
            _ => Ok(()),
        }
    }
}

impl CurlHeadConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.curl_samples < 2 || self.curl_samples > 65_536 {
            return Err(Invalid::new(
                "aux.curl_samples",
                format!("{} (InfoNCE needs 2..=65536 samples)", self.curl_samples),
            ));
        }
        if !(0.0..1.0).contains(&self.curl_momentum) {
            return Err(Invalid::new(
                "aux.curl_momentum",
                format!("{} (m must be in [0, 1))", self.curl_momentum),
            ));
        }
        if self.curl_shift > 64 {
            return Err(Invalid::new(
                "aux.curl_shift",
                format!("{} (at most 64 pixels)", self.curl_shift),
            ));
        }
        if self.curl_exclude > 65_536 {
            return Err(Invalid::new(
                "aux.curl_exclude",
                format!("{} (at most 65536)", self.curl_exclude),
            ));
        }
        Ok(())
    }
}
