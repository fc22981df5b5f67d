//! The Lab tasks' typed options (`[env.options]`): [`LabOptions`], which every task
//! takes, and each task's own (its level size and what it scatters), each with its
//! documented `Default`. The registry reads a config's options into them and checks
//! them; `rlcpc envs` prints their defaults.

use std::fmt;

use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::{LabConfig, ObsKind, Task};
use crate::config::Options;
use crate::env::EnvError;
use crate::options::{defaults, read_part, refuse_unknown, EnvOptions};

/// The options every Lab task takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabOptions {
    /// What the agent observes: `"rgb"` (default) or `"grid"`.
    pub obs: ObsKind,
    /// Width of the RGB view in pixels: 64, in 8..=1024.
    pub width: usize,
    /// Height of the RGB view in pixels: 48, in 8..=1024.
    pub height: usize,
    /// Horizontal field of view in degrees: 90 (DMLab's), in 10..=170.
    pub fov: f32,
    /// Side of the grid observation's window: 9, odd, in 3..=255.
    pub view: usize,
    /// Frames each action is repeated for: 4, in 1..=100.
    pub action_repeat: usize,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            obs: ObsKind::Rgb,
            width: 64,
            height: 48,
            fov: 90.0,
            view: 9,
            action_repeat: 4,
        }
    }
}

impl EnvOptions for LabOptions {
    const NOTES: &'static [(&'static str, &'static str)] =
        &[("obs", "| \"grid\""), ("view", "(grid window)")];

    fn check(&self) -> Result<(), (&'static str, &'static str)> {
        const SIDE: &str = "width and height must lie in 8..=1024";
        if !(8..=1024).contains(&self.width) {
            return Err(("width", SIDE));
        }
        if !(8..=1024).contains(&self.height) {
            return Err(("height", SIDE));
        }
        if !(10.0..=170.0).contains(&self.fov) {
            return Err(("fov", "must lie in 10..=170 degrees"));
        }
        if self.view < 3 || self.view > 255 || self.view.is_multiple_of(2) {
            return Err(("view", "must be odd and lie in 3..=255"));
        }
        if !(1..=100).contains(&self.action_repeat) {
            return Err(("action_repeat", "must lie in 1..=100"));
        }
        Ok(())
    }
}

/// A task's own options, beside [`LabOptions`].
pub(crate) trait TaskOptions: EnvOptions {
    /// The task they belong to.
    const TASK: Task;
    /// Writes these options into a level's settings.
    fn apply(&self, c: &mut LabConfig);
}

/// Refuses an arena's side outside 5..=101.
fn arena_size(size: usize) -> Result<(), (&'static str, &'static str)> {
    if (5..=101).contains(&size) {
        Ok(())
    } else {
        Err(("size", "an arena's side must lie in 5..=101"))
    }
}

/// `lab/explore_goal_locations`' options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExploreGoalLocationsOptions {
    /// The maze's side in cells, walls included: 11, odd, in 5..=101.
    pub size: usize,
    /// The fraction of inner walls knocked through to make loops: 0.15, in 0..=1.
    pub loops: f64,
}

impl Default for ExploreGoalLocationsOptions {
    fn default() -> Self {
        ExploreGoalLocationsOptions {
            size: Task::ExploreGoalLocations.default_size(),
            loops: 0.15,
        }
    }
}

impl EnvOptions for ExploreGoalLocationsOptions {
    const NOTES: &'static [(&'static str, &'static str)] = &[("size", "(odd)")];

    fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if !(0.0..=1.0).contains(&self.loops) {
            return Err(("loops", "must lie in 0..=1"));
        }
        if self.size < 5 || self.size.is_multiple_of(2) || self.size > 101 {
            return Err(("size", "a maze's side must be odd, in 5..=101"));
        }
        Ok(())
    }
}

impl TaskOptions for ExploreGoalLocationsOptions {
    const TASK: Task = Task::ExploreGoalLocations;
    fn apply(&self, c: &mut LabConfig) {
        c.size = self.size;
        c.loops = self.loops;
    }
}

/// `lab/watermaze`'s options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatermazeOptions {
    /// The arena's side in cells, walls included: 11, in 5..=101.
    pub size: usize,
}

impl Default for WatermazeOptions {
    fn default() -> Self {
        WatermazeOptions {
            size: Task::Watermaze.default_size(),
        }
    }
}

impl EnvOptions for WatermazeOptions {
    fn check(&self) -> Result<(), (&'static str, &'static str)> {
        arena_size(self.size)
    }
}

impl TaskOptions for WatermazeOptions {
    const TASK: Task = Task::Watermaze;
    fn apply(&self, c: &mut LabConfig) {
        c.size = self.size;
    }
}

/// `lab/seekavoid_arena`'s options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeekavoidArenaOptions {
    /// The arena's side in cells, walls included: 11, in 5..=101.
    pub size: usize,
    /// Apples (+1) on the floor: 10, at least 1.
    pub apples: usize,
    /// Lemons (−1) on the floor: 6; apples and lemons cover at most half the floor.
    pub lemons: usize,
}

impl Default for SeekavoidArenaOptions {
    fn default() -> Self {
        SeekavoidArenaOptions {
            size: Task::SeekavoidArena.default_size(),
            apples: 10,
            lemons: 6,
        }
    }
}

impl EnvOptions for SeekavoidArenaOptions {
    fn check(&self) -> Result<(), (&'static str, &'static str)> {
        arena_size(self.size)?;
        if self.apples == 0 {
            return Err(("apples", "need at least one apple"));
        }
        if self.apples.saturating_add(self.lemons) > (self.size - 2).pow(2) / 2 {
            // Name the one that was raised past its default (the other is the default).
            let key = if self.lemons > Self::default().lemons {
                "lemons"
            } else {
                "apples"
            };
            return Err((key, "apples + lemons must cover at most half the floor"));
        }
        Ok(())
    }
}

impl TaskOptions for SeekavoidArenaOptions {
    const TASK: Task = Task::SeekavoidArena;
    fn apply(&self, c: &mut LabConfig) {
        c.size = self.size;
        c.apples = self.apples;
        c.lemons = self.lemons;
    }
}

/// `lab/keys_doors_puzzle`'s options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysDoorsPuzzleOptions {
    /// The floor side of one room in cells: 4, in 2..=16.
    pub size: usize,
    /// Rooms in the row, with one door fewer: 3, in 2..=4 (one key colour is kept as a
    /// distractor).
    pub rooms: usize,
}

impl Default for KeysDoorsPuzzleOptions {
    fn default() -> Self {
        KeysDoorsPuzzleOptions {
            size: Task::KeysDoorsPuzzle.default_size(),
            rooms: 3,
        }
    }
}

impl EnvOptions for KeysDoorsPuzzleOptions {
    const NOTES: &'static [(&'static str, &'static str)] =
        &[("size", "(room side)"), ("rooms", "(2-4)")];

    fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if !(2..=16).contains(&self.size) {
            return Err(("size", "a room's side must lie in 2..=16"));
        }
        if !(2..=4).contains(&self.rooms) {
            return Err((
                "rooms",
                "must lie in 2..=4 (one key colour is kept as a distractor)",
            ));
        }
        Ok(())
    }
}

impl TaskOptions for KeysDoorsPuzzleOptions {
    const TASK: Task = Task::KeysDoorsPuzzle;
    fn apply(&self, c: &mut LabConfig) {
        c.size = self.size;
        c.rooms = self.rooms;
    }
}

/// `lab/lasertag`'s options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LasertagOptions {
    /// The arena's side in cells, walls included: 13, in 5..=101.
    pub size: usize,
    /// Bots: 3, at least 1 and at most a quarter of the floor.
    pub bots: usize,
}

impl Default for LasertagOptions {
    fn default() -> Self {
        LasertagOptions {
            size: Task::Lasertag.default_size(),
            bots: 3,
        }
    }
}

impl EnvOptions for LasertagOptions {
    fn check(&self) -> Result<(), (&'static str, &'static str)> {
        arena_size(self.size)?;
        if self.bots == 0 || self.bots > (self.size - 2).pow(2) / 4 {
            return Err((
                "bots",
                "need at least one bot, and at most a quarter of the floor",
            ));
        }
        Ok(())
    }
}

impl TaskOptions for LasertagOptions {
    const TASK: Task = Task::Lasertag;
    fn apply(&self, c: &mut LabConfig) {
        c.size = self.size;
        c.bots = self.bots;
    }
}

/// Reads and checks the options of task `X::TASK` (registered as `id`) into its level's
/// settings: the task's own keys, then those of [`LabOptions`].
pub(crate) fn lab_config<X: TaskOptions>(id: &str, o: &Options) -> Result<LabConfig, EnvError> {
    let known: Vec<String> = defaults::<X>()
        .into_iter()
        .chain(defaults::<LabOptions>())
        .map(|(k, _)| k)
        .collect();
    refuse_unknown(id, o, &known)?;
    let common: LabOptions = read_part(id, o)?;
    let own: X = read_part(id, o)?;
    let mut c = LabConfig::new(X::TASK);
    c.common = common;
    own.apply(&mut c);
    Ok(c)
}

impl LabConfig {
    /// The task's defaults: those of [`LabOptions`] and of each task's options.
    pub fn new(task: Task) -> LabConfig {
        let seekavoid = SeekavoidArenaOptions::default();
        LabConfig {
            common: LabOptions::default(),
            size: task.default_size(),
            apples: seekavoid.apples,
            lemons: seekavoid.lemons,
            bots: LasertagOptions::default().bots,
            rooms: KeysDoorsPuzzleOptions::default().rooms,
            loops: ExploreGoalLocationsOptions::default().loops,
        }
    }
}

/// `"rgb"` or `"grid"`, written by hand so that a wrong value's error says which are
/// valid whatever its type.
impl<'de> Deserialize<'de> for ObsKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Name;
        impl Visitor<'_> for Name {
            type Value = ObsKind;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"rgb\" or \"grid\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ObsKind, E> {
                match s {
                    "rgb" => Ok(ObsKind::Rgb),
                    "grid" => Ok(ObsKind::Grid),
                    _ => Err(E::invalid_value(Unexpected::Str(s), &self)),
                }
            }
        }
        d.deserialize_str(Name)
    }
}
