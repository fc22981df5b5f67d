//! The traits through which the learner and the actors see the network and the
//! auxiliary loss.

use candle_core::{Tensor, Var};

use crate::{AgentError, ParamSnapshot};

/// What the learner's forward pass over an unroll returns; time-major.
pub struct UnrollOutput {
    /// Policy logits, `[T+1, B, A]`.
    pub logits: Tensor,
    /// State values, `[T+1, B]`.
    pub values: Tensor,
    /// Encoder outputs z_t, `[T+1, B, Dz]` (CPC's targets).
    pub z: Tensor,
    /// Core outputs c_t, `[T+1, B, Dc]` (CPC's context; equal to `z` without a core).
    pub c: Tensor,
}

/// The learner's view of the network.
pub trait PolicyNetwork {
    /// Runs the network over `obs` `[T+1, B, ...]`, starting from `init_state` `[B, S]`;
    /// the recurrent state is zeroed before step t wherever `first[t, b] == 1`.
    fn unroll(
        &self,
        obs: &Tensor,
        first: &Tensor,
        init_state: &Tensor,
    ) -> candle_core::Result<UnrollOutput>;

    /// The trainable parameters actors need, by stable name.
    fn vars(&self) -> Vec<(String, Var)>;

    /// Floats of recurrent state per environment (0 without a core).
    fn state_size(&self) -> usize;

    /// The network's lean path, if it has one and it is switched on: the learner then runs
    /// forward, loss and backward on host slices instead of candle's autograd.
    fn lean(&mut self) -> Option<&mut dyn LeanNetwork> {
        None
    }
}

/// What a [`LeanNetwork`]'s last forward computed; rows are time-major `(T+1)·B`.
pub struct LeanOutputs<'a> {
    /// Policy logits `[N, A]`.
    pub logits: &'a [f32],
    /// State values `[N]`.
    pub values: &'a [f32],
    /// Encoder outputs z `[N, Dz]`.
    pub z: &'a [f32],
    /// Dz.
    pub z_dim: usize,
    /// Core outputs c `[N, Dc]` (the same as `z` without a core).
    pub c: &'a [f32],
    /// Dc.
    pub c_dim: usize,
    /// Whether there is a core (else `c` is `z`).
    pub has_core: bool,
    /// B: rows per time step.
    pub b: usize,
}

/// A network's forward and backward passes in plain Rust over host slices, for small CPU
/// networks where candle's per-op cost dominates the arithmetic. It computes the same
/// function as [`PolicyNetwork::unroll`]; its parameters are copies the learner refreshes
/// from [`PolicyNetwork::vars`] before each update.
pub trait LeanNetwork: Send {
    /// Parameter names, as in [`PolicyNetwork::vars`]; the order of
    /// [`LeanNetwork::param_mut`] and of [`LeanNetwork::backward`]'s gradients.
    fn param_names(&self) -> Vec<String>;
    /// Parameter `i`'s values, flattened row-major.
    fn param_mut(&mut self, i: usize) -> &mut [f32];
    /// Runs the network over `obs` `[(T+1)·B, ...]` (time-major) from `init_state`
    /// `[B, S]`, resetting the state where `first` is 1, as [`PolicyNetwork::unroll`].
    fn forward(&mut self, obs: &[f32], first: &[f32], init_state: &[f32], b: usize);
    /// The last forward's outputs.
    fn outputs(&self) -> LeanOutputs<'_>;
    /// Gradients of a loss with respect to every parameter from its gradients with
    /// respect to the last forward's logits, values and (an auxiliary loss's) z and c.
    fn backward(
        &mut self,
        d_logits: &[f32],
        d_values: &[f32],
        d_z: Option<&[f32]>,
        d_c: Option<&[f32]>,
    ) -> &[Vec<f32>];
}

/// Scalars an auxiliary loss reports, with its loss.
pub struct AuxOutput {
    /// The unweighted loss; the learner multiplies it by [`AuxLoss::weight`].
    pub loss: Tensor,
    /// Metrics, named `group/name` (e.g. `cpc/acc_k1`).
    pub metrics: Vec<(String, f64)>,
}

/// Where [`AuxLoss::host_loss`] writes its gradients; `d_z` and `d_c` arrive zeroed
/// and sized like [`LeanOutputs::z`] and [`LeanOutputs::c`].
pub struct HostGrads<'a> {
    /// d loss / d z.
    pub d_z: &'a mut [f32],
    /// d loss / d c (a separate buffer even when c is z).
    pub d_c: &'a mut [f32],
    /// One per [`AuxLoss::vars`], sized like it; a loss clears the entries of variables
    /// it gives no gradient (e.g. a momentum copy it sets itself).
    pub params: &'a mut [Vec<f32>],
    /// For a loss that runs the network on inputs of its own (CURL's augmented views):
    /// gradients of the network's variables, one per name of `net_names` (the order of
    /// [`PolicyNetwork::vars`]). Each arrives empty; a loss fills those it reaches (sized
    /// like the variable) and leaves the others empty.
    pub net: &'a mut [Vec<f32>],
    /// The network's variable names, in the order of `net`.
    pub net_names: &'a [String],
}

/// [`AuxLoss::host_loss`]'s loss value (unweighted) and metrics.
pub struct HostAuxOutput {
    /// The unweighted loss.
    pub loss: f64,
    /// Metrics, as [`AuxOutput::metrics`].
    pub metrics: Vec<(String, f64)>,
}

/// What an auxiliary loss sees of an unroll besides the network's outputs.
#[derive(Debug, Clone, Copy)]
pub struct AuxBatch<'a> {
    /// `[T+1, B]`: 1.0 where an episode starts.
    pub first: &'a [f32],
    /// The observations `[T+1, B, ...]` the network unrolled over (for losses on
    /// augmented inputs).
    pub obs: &'a Tensor,
    /// The actions taken, `[T, B]` (for action-conditioned predictions).
    pub actions: &'a [u32],
}

/// An auxiliary loss computed from the unroll's features.
pub trait AuxLoss: Send {
    /// Weight of this loss in the learner's total loss.
    fn weight(&self) -> f64;
    /// The loss of one unroll.
    fn loss(&mut self, out: &UnrollOutput, batch: AuxBatch) -> Result<AuxOutput, AgentError>;
    /// The same loss on the lean learner's host slices (`first` `[T+1, B]`, `actions`
    /// `[T, B]`, `obs` `[T+1, B, ...]` as in [`AuxBatch`]), with its gradients: adds
    /// d loss/d z and d loss/d c (unweighted) into `grads.d_z` and `grads.d_c`, writes
    /// its parameters' gradients, in [`AuxLoss::vars`]' order, into `grads.params`, and
    /// those of the network's variables it reaches directly into `grads.net`.
    /// `None`: it has no host path, and the learner runs [`AuxLoss::loss`] on tensors
    /// made from `out` instead.
    fn host_loss(
        &mut self,
        _out: &LeanOutputs,
        _first: &[f32],
        _actions: &[u32],
        _obs: &[f32],
        _grads: HostGrads,
    ) -> Option<Result<HostAuxOutput, AgentError>> {
        None
    }
    /// Its own trainable parameters.
    fn vars(&self) -> Vec<(String, Var)>;
    /// State of its random generator, for checkpoints.
    fn save_rng(&self) -> serde_json::Value;
    /// Restores the generator state saved by [`AuxLoss::save_rng`].
    fn load_rng(&mut self, v: &serde_json::Value) -> Result<(), AgentError>;
}

/// An actor's inference path: plain slices in, plain slices out, no autograd.
pub trait ActorPolicy: Send {
    /// Copies parameters from a learner snapshot.
    fn load(&mut self, snapshot: &ParamSnapshot) -> Result<(), AgentError>;
    /// Floats of recurrent state per environment, S (0 without a core).
    fn state_size(&self) -> usize;
    /// Number of discrete actions A.
    fn num_actions(&self) -> usize;
    /// One step for `B = obs.len() / obs_dim` environments: reads `obs` `[B, obs_dim]`
    /// and the state `[B, S]` (the caller zeroes it at episode starts), advances the
    /// state in place, writes `logits` `[B, A]` and `values` `[B]`.
    fn forward(
        &mut self,
        obs: &[f32],
        state: &mut [f32],
        logits: &mut [f32],
        values: &mut [f32],
    ) -> Result<(), AgentError>;
}
