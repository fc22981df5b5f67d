//! `rlcpc envs render`: an animated GIF of a policy playing an environment, the
//! first-person view beside the top-down map, with a strip under them that flashes green
//! on a positive reward and red on a negative one.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rlcpc_envs::{Env, Image};

use crate::rl::eval::Driver;

/// What a rendered clip contains.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    /// Returns of the episodes that finished within the clip.
    pub finished: Vec<f64>,
    /// Return of the episode still running at the end.
    pub partial: f64,
}

/// Height of the reward strip under each frame.
const STRIP: usize = 6;

/// Plays `steps` steps of `env` (reset with `seed`, auto-reset after each episode) with
/// `driver`, and writes the frames to `out` as a looping GIF at `fps` frames per second.
/// The file appears complete or not at all (written beside it, then renamed; the temp
/// file is removed on any error and when `stop` is raised, e.g. by Ctrl-C). Creates the
/// parent folder.
pub fn render_gif(
    env: &mut dyn Env,
    driver: &mut Driver,
    steps: usize,
    seed: u64,
    fps: u16,
    out: &Path,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Clip> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create '{}'", dir.display()))?;
    }
    let tmp = crate::checkpoint::temp_path(out);
    let r = write_gif(env, driver, steps, seed, fps, out, &tmp, stop);
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

#[allow(clippy::too_many_arguments)]
fn write_gif(
    env: &mut dyn Env,
    driver: &mut Driver,
    steps: usize,
    seed: u64,
    fps: u16,
    out: &Path,
    tmp: &Path,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Clip> {
    if steps == 0 {
        bail!("--steps must be at least 1");
    }
    let mut obs = vec![0.0; env.observation_space().flat_dim()];
    env.reset_into(Some(seed), &mut obs);
    let first = env.render().with_context(|| {
        format!(
            "{} draws no pictures: only the lab/* environments render",
            env.id()
        )
    })?;
    let (w, h) = (first.width, first.height + STRIP);
    if w > u16::MAX as usize || h > u16::MAX as usize {
        bail!("frames of {w}x{h} are too large for a GIF");
    }
    let file = File::create(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut enc = gif::Encoder::new(BufWriter::new(file), w as u16, h as u16, &[])?;
    enc.set_repeat(gif::Repeat::Infinite)?;
    let delay = (100 / fps.max(1)).max(2);
    let mut put = |img: &Image, reward: f32| -> Result<()> {
        let mut rgb = img.rgb.clone();
        let c: [u8; 3] = if reward > 0.0 {
            [40, 220, 40]
        } else if reward < 0.0 {
            [230, 40, 40]
        } else {
            [20, 20, 20]
        };
        rgb.extend(std::iter::repeat_n(c, w * STRIP).flatten());
        let mut frame = gif::Frame::from_rgb_speed(w as u16, h as u16, &rgb, 10);
        frame.delay = delay;
        enc.write_frame(&frame)?;
        Ok(())
    };
    put(&first, 0.0)?;
    let mut clip = Clip {
        frames: 1,
        width: w,
        height: h,
        finished: Vec::new(),
        partial: 0.0,
    };
    let mut start = true;
    for _ in 0..steps {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            bail!("interrupted: no GIF written");
        }
        let a = driver.act(env, &obs, start)?;
        start = false;
        let o = env.step_into(a, &mut obs)?;
        clip.partial += o.reward as f64;
        let img = env.render().expect("rendered once, renders always");
        put(&img, o.reward)?;
        clip.frames += 1;
        if o.terminated || o.truncated {
            clip.finished.push(clip.partial);
            clip.partial = 0.0;
            env.reset_into(None, &mut obs);
            start = true;
        }
    }
    let file = enc.into_inner()?.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(tmp, out)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), out.display()))?;
    Ok(clip)
}
