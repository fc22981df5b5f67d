//! The actors' inference paths. [`LeanActor`] runs MLP (+LSTM) networks in plain Rust
//! loops: for the small networks of vector tasks candle's per-op overhead would dominate
//! (each op allocates and dispatches; tanh alone costs more than the matmul). Conv
//! networks use [`CandleActor`], the learner's own code on the CPU. Both are checked
//! against [`AgentNet`] in the tests.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rlcpc_agents::{ActorPolicy, AgentError, ParamSnapshot};

use super::agent_net::{AgentNet, NetSpec};
use super::encoders::EncoderSpec;
use super::fast::{sigmoid, tanh};
use super::init::Init;
use crate::config::{Activation, CoreKind};

/// Builds the best inference path for `spec`.
pub fn actor_policy(spec: &NetSpec) -> Result<Box<dyn ActorPolicy>, AgentError> {
    Ok(match spec.encoder {
        EncoderSpec::Mlp { .. } => Box::new(LeanActor::new(spec.clone())),
        // Audio encoders never reach an agent: building its network refuses them first.
        EncoderSpec::Conv { .. }
        | EncoderSpec::Audio { .. }
        | EncoderSpec::Patches { .. }
        | EncoderSpec::Text { .. }
        | EncoderSpec::Resnet { .. } => Box::new(CandleActor::new(spec.clone())?),
    })
}

/// A dense layer `y = W x + b`, `W` row-major `[out, in]`.
#[derive(Default)]
struct Dense {
    w: Vec<f32>,
    b: Vec<f32>,
    in_dim: usize,
    out_dim: usize,
}

impl Dense {
    fn load(&mut self, snap: &ParamSnapshot, prefix: &str) -> Result<(), AgentError> {
        let (ws, w) = get(snap, &format!("{prefix}.weight"))?;
        let (_, b) = get(snap, &format!("{prefix}.bias"))?;
        self.out_dim = ws[0];
        self.in_dim = ws[1];
        self.w.clear();
        self.w.extend_from_slice(w);
        self.b.clear();
        self.b.extend_from_slice(b);
        Ok(())
    }

    #[inline]
    fn forward(&self, x: &[f32], y: &mut [f32]) {
        for (o, yo) in y.iter_mut().enumerate().take(self.out_dim) {
            *yo = self.b[o] + dot(&self.w[o * self.in_dim..(o + 1) * self.in_dim], x);
        }
    }
}

fn get<'a>(snap: &'a ParamSnapshot, name: &str) -> Result<(&'a [usize], &'a [f32]), AgentError> {
    snap.get(name)
        .ok_or_else(|| AgentError::Snapshot(name.to_string()))
}

/// Dot product with eight independent accumulators so that it vectorises.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// MLP encoder, optional LSTM, heads: one environment at a time, no allocation.
pub struct LeanActor {
    spec: NetSpec,
    mlp: Vec<Dense>,
    activation: Activation,
    w_ih: Dense,
    w_hh: Dense,
    policy: Dense,
    value: Dense,
    buf_a: Vec<f32>,
    buf_b: Vec<f32>,
    gates: Vec<f32>,
    gates_h: Vec<f32>,
}

impl LeanActor {
    pub fn new(spec: NetSpec) -> Self {
        let (hidden, activation) = match &spec.encoder {
            EncoderSpec::Mlp {
                hidden, activation, ..
            } => (hidden.clone(), *activation),
            EncoderSpec::Conv { .. }
            | EncoderSpec::Audio { .. }
            | EncoderSpec::Patches { .. }
            | EncoderSpec::Text { .. }
            | EncoderSpec::Resnet { .. } => {
                unreachable!("actor_policy picks CandleActor for conv encoders")
            }
        };
        let widest = hidden
            .iter()
            .copied()
            .chain([spec.obs_dim(), spec.context_dim()])
            .max()
            .unwrap_or(1);
        LeanActor {
            mlp: hidden.iter().map(|_| Dense::default()).collect(),
            activation,
            w_ih: Dense::default(),
            w_hh: Dense::default(),
            policy: Dense::default(),
            value: Dense::default(),
            buf_a: vec![0.0; widest],
            buf_b: vec![0.0; widest],
            gates: vec![0.0; 4 * spec.lstm_hidden],
            gates_h: vec![0.0; 4 * spec.lstm_hidden],
            spec,
        }
    }
}

impl ActorPolicy for LeanActor {
    fn load(&mut self, snap: &ParamSnapshot) -> Result<(), AgentError> {
        for (i, l) in self.mlp.iter_mut().enumerate() {
            l.load(snap, &format!("encoder.mlp.{i}"))?;
        }
        if self.spec.core == CoreKind::Lstm {
            for (dense, which) in [(&mut self.w_ih, "ih"), (&mut self.w_hh, "hh")] {
                let (ws, w) = get(snap, &format!("core.lstm.weight_{which}"))?;
                let (_, b) = get(snap, &format!("core.lstm.bias_{which}"))?;
                *dense = Dense {
                    w: w.to_vec(),
                    b: b.to_vec(),
                    in_dim: ws[1],
                    out_dim: ws[0],
                };
            }
        }
        self.policy.load(snap, "policy")?;
        self.value.load(snap, "value")?;
        if self.policy.out_dim != self.spec.num_actions
            || self.value.in_dim != self.spec.context_dim()
        {
            return Err(AgentError::Snapshot("policy.weight / value.weight".into()));
        }
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.spec.state_size()
    }

    fn num_actions(&self) -> usize {
        self.spec.num_actions
    }

    fn forward(
        &mut self,
        obs: &[f32],
        state: &mut [f32],
        logits: &mut [f32],
        values: &mut [f32],
    ) -> Result<(), AgentError> {
        let d = self.spec.obs_dim();
        let (a, s, h) = (
            self.spec.num_actions,
            self.spec.state_size(),
            self.spec.lstm_hidden,
        );
        let b = obs.len() / d;
        for j in 0..b {
            // Encoder.
            let mut width = d;
            self.buf_a[..d].copy_from_slice(&obs[j * d..(j + 1) * d]);
            for l in &self.mlp {
                l.forward(&self.buf_a[..width], &mut self.buf_b[..l.out_dim]);
                width = l.out_dim;
                for v in &mut self.buf_b[..width] {
                    *v = match self.activation {
                        Activation::Tanh => tanh(*v),
                        Activation::Relu => v.max(0.0),
                    };
                }
                std::mem::swap(&mut self.buf_a, &mut self.buf_b);
            }
            // Core: one LSTM step, state (h, c) updated in place.
            if self.spec.core == CoreKind::Lstm {
                let st = &mut state[j * s..(j + 1) * s];
                self.w_ih.forward(&self.buf_a[..width], &mut self.gates);
                self.w_hh.forward(&st[..h], &mut self.gates_h);
                for k in 0..h {
                    let i = sigmoid(self.gates[k] + self.gates_h[k]);
                    let f = sigmoid(self.gates[h + k] + self.gates_h[h + k]);
                    let g = tanh(self.gates[2 * h + k] + self.gates_h[2 * h + k]);
                    let o = sigmoid(self.gates[3 * h + k] + self.gates_h[3 * h + k]);
                    let c = f * st[h + k] + i * g;
                    st[h + k] = c;
                    st[k] = o * tanh(c);
                }
                self.buf_a[..h].copy_from_slice(&st[..h]);
                width = h;
            }
            // Heads.
            self.policy
                .forward(&self.buf_a[..width], &mut logits[j * a..(j + 1) * a]);
            self.value
                .forward(&self.buf_a[..width], &mut values[j..j + 1]);
        }
        Ok(())
    }
}

/// The learner's network on the CPU, for encoders without a lean path.
pub struct CandleActor {
    net: AgentNet,
    varmap: VarMap,
}

impl CandleActor {
    pub fn new(spec: NetSpec) -> Result<Self, AgentError> {
        let mut init = Init::new(0, &Device::Cpu);
        spec.init(&mut init)?;
        let net = AgentNet::new(spec, &init.varmap, &Device::Cpu)?;
        Ok(CandleActor {
            net,
            varmap: init.varmap,
        })
    }
}

impl ActorPolicy for CandleActor {
    fn load(&mut self, snap: &ParamSnapshot) -> Result<(), AgentError> {
        let data = self.varmap.data().lock().expect("varmap lock");
        for (name, var) in data.iter() {
            let (shape, values) = get(snap, name)?;
            if shape != var.dims() {
                return Err(AgentError::Snapshot(name.clone()));
            }
            var.set(&Tensor::from_slice(values, shape, &Device::Cpu)?)?;
        }
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.net.spec.state_size()
    }

    fn num_actions(&self) -> usize {
        self.net.spec.num_actions
    }

    fn forward(
        &mut self,
        obs: &[f32],
        state: &mut [f32],
        logits: &mut [f32],
        values: &mut [f32],
    ) -> Result<(), AgentError> {
        let spec = &self.net.spec;
        let b = obs.len() / spec.obs_dim();
        let mut shape = vec![b];
        shape.extend_from_slice(&spec.obs_shape);
        let x = Tensor::from_slice(obs, shape, &Device::Cpu)?;
        let s = Tensor::from_slice(state, (b, spec.state_size()), &Device::Cpu)?;
        let (lg, v, ns) = self.net.step(&x, &s)?;
        logits.copy_from_slice(&lg.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
        values.copy_from_slice(&v.to_vec1::<f32>()?);
        if spec.state_size() > 0 {
            state.copy_from_slice(&ns.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(())
    }
}
