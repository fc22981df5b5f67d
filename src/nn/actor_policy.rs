//! The actors' inference paths. [`LeanActor`] runs MLP (+LSTM) networks in plain Rust
//! (one GEMM per layer for all of an actor's environments): for the small networks of
//! vector tasks candle's per-op overhead would dominate (each op allocates and
//! dispatches; tanh alone costs more than the matmul). Conv networks use
//! [`CandleActor`], the learner's own code on the CPU. Both are checked against
//! [`AgentNet`] in the tests.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rlcpc_agents::{ActorPolicy, AgentError, ParamSnapshot};

use super::agent_net::AgentNet;
use super::encoders::EncoderSpec;
use super::init::Init;
use super::lean::LeanActor;
use super::spec::NetSpec;

/// Builds the best inference path for `spec`.
pub fn actor_policy(spec: &NetSpec) -> Result<Box<dyn ActorPolicy>, AgentError> {
    Ok(match spec.encoder {
        EncoderSpec::Mlp { .. } | EncoderSpec::Conv { .. } => {
            Box::new(LeanActor::new(spec).ok_or_else(|| AgentError::Snapshot("encoder".into()))?)
        }
        // Audio encoders never reach an agent: building its network refuses them first.
        EncoderSpec::Audio { .. }
        | EncoderSpec::Patches { .. }
        | EncoderSpec::Text { .. }
        | EncoderSpec::Resnet { .. } => Box::new(CandleActor::new(spec.clone())?),
    })
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
            let (shape, values) = snap
                .get(name)
                .ok_or_else(|| AgentError::Snapshot(name.clone()))?;
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
