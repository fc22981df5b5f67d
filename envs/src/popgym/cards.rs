//! POPGym's card tasks: Repeat First, Repeat Previous, Autoencode, Count Recall, Higher
//! Lower and Concentration, over POPGym's `Deck` (`popgym/core/deck.py`).

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::{RawSpace, Task};
use crate::env::StepOutcome;
use crate::SeededRng;

/// A shuffled stack of `52 × decks` cards, as POPGym's `Deck`: card `c` has suit `c % 4`,
/// rank `(c % 52) / 4` and colour `c % 2`; dealing takes cards from the end of the
/// shuffled order, so the `j`-th card dealt is `order[n − 1 − j]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deck {
    /// The shuffled card ids (POPGym's `deck.idx`).
    pub order: Vec<u16>,
    /// Cards still in the deck.
    pub left: usize,
}

impl Deck {
    /// `decks` full decks, unshuffled.
    pub fn new(decks: usize) -> Deck {
        let n = 52 * decks;
        Deck {
            order: (0..n as u16).collect(),
            left: n,
        }
    }

    /// Number of cards in all.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the deck has no cards at all.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Gathers every card and shuffles, as `Deck.reset(rng=...)`.
    pub fn shuffle(&mut self, rng: &mut SeededRng) {
        for (i, c) in self.order.iter_mut().enumerate() {
            *c = i as u16;
        }
        self.order.shuffle(rng);
        self.left = self.order.len();
    }

    /// Puts the cards in `order` (POPGym's own shuffle, for the tests).
    pub fn set_order(&mut self, order: &[u16]) {
        self.order.copy_from_slice(order);
        self.left = order.len();
    }

    /// Deals one card (the last card again once the deck is empty).
    pub fn deal(&mut self) -> u16 {
        self.left = self.left.saturating_sub(1);
        self.order[self.left]
    }

    /// The `j`-th card dealt since the shuffle.
    pub fn dealt(&self, j: usize) -> u16 {
        self.order[self.order.len() - 1 - j]
    }
}

/// Suit of card `c` (0..4).
pub fn suit(c: u16) -> usize {
    c as usize % 4
}

/// Rank of card `c` (0 ace .. 12 king).
pub fn rank(c: u16) -> usize {
    (c as usize % 52) / 4
}

/// What a task counts or matches cards by.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum DeckType {
    /// The 2 colours.
    Colors,
    /// The 4 suits.
    Suits,
    /// The 13 ranks.
    Ranks,
}

impl DeckType {
    /// The value of card `c`.
    pub fn of(self, c: u16) -> usize {
        match self {
            DeckType::Colors => c as usize % 2,
            DeckType::Suits => suit(c),
            DeckType::Ranks => rank(c),
        }
    }

    /// Number of distinct values.
    pub fn distinct(self) -> usize {
        match self {
            DeckType::Colors => 2,
            DeckType::Suits => 4,
            DeckType::Ranks => 13,
        }
    }
}

fn signed(correct: bool, scale: f64) -> f32 {
    (if correct { scale } else { -scale }) as f32
}

fn outcome(reward: f32, terminated: bool) -> StepOutcome {
    StepOutcome {
        reward,
        terminated,
        truncated: false,
    }
}

/// Repeat First: the first card's suit, said at each of the `n − 1` steps; ±1/(n−1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepeatFirst {
    /// The deck.
    pub deck: Deck,
    /// Suit of the first card.
    pub first: usize,
}

impl RepeatFirst {
    /// Over `decks` decks.
    pub fn new(decks: usize) -> Self {
        RepeatFirst {
            deck: Deck::new(decks),
            first: 0,
        }
    }

    /// Starts an episode over the deck as it lies.
    pub fn start(&mut self, raw: &mut [f32]) {
        self.first = suit(self.deck.deal());
        raw[0] = self.first as f32;
    }
}

impl Task for RepeatFirst {
    fn raw_space(&self) -> RawSpace {
        RawSpace::Discrete(vec![4])
    }
    fn action_nvec(&self) -> Vec<usize> {
        vec![4]
    }
    fn reset(&mut self, rng: &mut SeededRng, raw: &mut [f32]) {
        self.deck.shuffle(rng);
        self.start(raw);
    }
    fn step(&mut self, action: usize, _: &mut SeededRng, raw: &mut [f32]) -> StepOutcome {
        let reward = signed(action == self.first, 1.0 / (self.deck.len() - 1) as f64);
        let terminated = self.deck.left == 1;
        raw[0] = suit(self.deck.deal()) as f32;
        outcome(reward, terminated)
    }
    fn oracle(&self) -> Option<usize> {
        Some(self.first)
    }
    /// The first card, said until the deck's end.
    fn memory_span(&self) -> Option<usize> {
        Some(self.deck.len())
    }
}

/// Repeat Previous: the suit of the card dealt `k − 1` cards before the one on show;
/// ±1/(n−k) from the `k`-th step on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepeatPrevious {
    /// The deck.
    pub deck: Deck,
    /// How far back.
    pub k: usize,
    /// Cards dealt so far.
    pub hand: usize,
}

impl RepeatPrevious {
    /// Over `decks` decks, `k` back.
    pub fn new(decks: usize, k: usize) -> Self {
        RepeatPrevious {
            deck: Deck::new(decks),
            k,
            hand: 0,
        }
    }

    /// Starts an episode over the deck as it lies.
    pub fn start(&mut self, raw: &mut [f32]) {
        raw[0] = suit(self.deck.deal()) as f32;
        self.hand = 1;
    }

    fn target(&self) -> Option<usize> {
        (self.hand >= self.k).then(|| suit(self.deck.dealt(self.hand - self.k)))
    }
}

impl Task for RepeatPrevious {
    fn raw_space(&self) -> RawSpace {
        RawSpace::Discrete(vec![4])
    }
    fn action_nvec(&self) -> Vec<usize> {
        vec![4]
    }
    fn reset(&mut self, rng: &mut SeededRng, raw: &mut [f32]) {
        self.deck.shuffle(rng);
        self.start(raw);
    }
    fn step(&mut self, action: usize, _: &mut SeededRng, raw: &mut [f32]) -> StepOutcome {
        let scale = 1.0 / (self.deck.len() - self.k) as f64;
        let terminated = self.deck.left == 1;
        let reward = self.target().map_or(0.0, |t| signed(action == t, scale));
        raw[0] = suit(self.deck.deal()) as f32;
        self.hand += 1;
        outcome(reward, terminated)
    }
    fn oracle(&self) -> Option<usize> {
        Some(self.target().unwrap_or(0))
    }
    fn memory_span(&self) -> Option<usize> {
        Some(self.k + 1)
    }
}

/// Autoencode: watch the deck's suits (mode 1), then say them in reverse order (mode
/// 0); ±1/n per card said. Episodes are `2n − 1` steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Autoencode {
    /// The deck.
    pub deck: Deck,
    /// Cards in the shown (and not yet recited) pile.
    pub pile: usize,
    /// Still watching.
    pub watch: bool,
}

impl Autoencode {
    /// Over `decks` decks.
    pub fn new(decks: usize) -> Self {
        Autoencode {
            deck: Deck::new(decks),
            pile: 0,
            watch: true,
        }
    }

    /// Starts an episode over the deck as it lies.
    pub fn start(&mut self, raw: &mut [f32]) {
        self.deck.deal();
        self.pile = 1;
        self.watch = true;
        self.write(raw);
    }

    fn write(&self, raw: &mut [f32]) {
        raw[0] = self.watch as u8 as f32;
        raw[1] = suit(self.deck.dealt(self.pile - 1)) as f32;
    }
}

impl Task for Autoencode {
    fn raw_space(&self) -> RawSpace {
        RawSpace::Discrete(vec![2, 4])
    }
    fn action_nvec(&self) -> Vec<usize> {
        vec![4]
    }
    fn reset(&mut self, rng: &mut SeededRng, raw: &mut [f32]) {
        self.deck.shuffle(rng);
        self.start(raw);
    }
    fn step(&mut self, action: usize, _: &mut SeededRng, raw: &mut [f32]) -> StepOutcome {
        if self.watch {
            self.deck.deal();
            self.pile += 1;
            self.watch = self.deck.left > 0;
            self.write(raw);
            return outcome(0.0, false);
        }
        let terminated = self.pile <= 1;
        let correct = suit(self.deck.dealt(self.pile.max(1) - 1));
        self.pile = self.pile.saturating_sub(1);
        // POPGym shows mode 0 and the suit of card 0 while the agent recites.
        raw[0] = 0.0;
        raw[1] = 0.0;
        outcome(
            signed(action == correct, 1.0 / self.deck.len() as f64),
            terminated,
        )
    }
    /// The first card watched is said last, `2n − 1` steps on.
    fn memory_span(&self) -> Option<usize> {
        Some(2 * self.deck.len())
    }
    fn oracle(&self) -> Option<usize> {
        Some(if self.watch {
            0
        } else {
            suit(self.deck.dealt(self.pile.max(1) - 1))
        })
    }
}

/// Count Recall: a card value and a query value are dealt each step; say how many times
/// the last query's value has been dealt; ±1/(n−1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CountRecall {
    /// The values' deck.
    pub values: Deck,
    /// The queries' deck.
    pub queries: Deck,
    /// What is counted.
    pub ty: DeckType,
    /// Times each value has been dealt.
    pub counts: Vec<usize>,
    /// The query on show.
    pub query: usize,
}

impl CountRecall {
    /// Over `decks` decks, counting by `ty`.
    pub fn new(decks: usize, ty: DeckType) -> Self {
        CountRecall {
            values: Deck::new(decks),
            queries: Deck::new(decks),
            ty,
            counts: vec![0; ty.distinct()],
            query: 0,
        }
    }

    /// Starts an episode over the decks as they lie.
    pub fn start(&mut self, raw: &mut [f32]) {
        self.counts.fill(0);
        self.deal(raw);
    }

    fn deal(&mut self, raw: &mut [f32]) {
        let value = self.ty.of(self.values.deal());
        self.query = self.ty.of(self.queries.deal());
        self.counts[value] += 1;
        raw[0] = value as f32;
        raw[1] = self.query as f32;
    }
}

impl Task for CountRecall {
    fn raw_space(&self) -> RawSpace {
        RawSpace::Discrete(vec![self.ty.distinct(); 2])
    }
    fn action_nvec(&self) -> Vec<usize> {
        vec![self.values.len() / self.ty.distinct() + 1]
    }
    fn reset(&mut self, rng: &mut SeededRng, raw: &mut [f32]) {
        self.values.shuffle(rng);
        self.queries.shuffle(rng);
        self.start(raw);
    }
    /// A count over every value dealt since the episode began.
    fn memory_span(&self) -> Option<usize> {
        Some(self.values.len())
    }
    fn step(&mut self, action: usize, _: &mut SeededRng, raw: &mut [f32]) -> StepOutcome {
        let asked = self.counts[self.query];
        self.deal(raw);
        let reward = signed(action == asked, 1.0 / (self.values.len() - 1) as f64);
        outcome(reward, self.values.left == 0)
    }
    fn oracle(&self) -> Option<usize> {
        Some(self.counts[self.query])
    }
}

/// Higher Lower: guess whether the next card ranks higher (0) or lower (1) than the one
/// on show; ±1/n, 0 on a tie.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HigherLower {
    /// The deck.
    pub deck: Deck,
    /// Rank on show.
    pub rank: usize,
}

impl HigherLower {
    /// Over `decks` decks.
    pub fn new(decks: usize) -> Self {
        HigherLower {
            deck: Deck::new(decks),
            rank: 0,
        }
    }

    /// Starts an episode over the deck as it lies.
    pub fn start(&mut self, raw: &mut [f32]) {
        self.rank = rank(self.deck.deal());
        raw[0] = self.rank as f32;
    }
}

impl Task for HigherLower {
    fn raw_space(&self) -> RawSpace {
        RawSpace::Discrete(vec![13])
    }
    fn action_nvec(&self) -> Vec<usize> {
        vec![2]
    }
    fn reset(&mut self, rng: &mut SeededRng, raw: &mut [f32]) {
        self.deck.shuffle(rng);
        self.start(raw);
    }
    fn step(&mut self, action: usize, _: &mut SeededRng, raw: &mut [f32]) -> StepOutcome {
        let terminated = self.deck.left <= 1;
        let next = rank(self.deck.deal());
        let scale = 1.0 / self.deck.len() as f64;
        let reward = if next == self.rank {
            0.0
        } else {
            signed((next > self.rank) == (action == 0), scale)
        };
        self.rank = next;
        raw[0] = next as f32;
        outcome(reward, terminated)
    }
    /// Counts the cards left: higher when at least as many outrank the card on show.
    fn oracle(&self) -> Option<usize> {
        let left = &self.deck.order[..self.deck.left];
        let higher = left.iter().filter(|c| rank(**c) > self.rank).count();
        let lower = left.iter().filter(|c| rank(**c) < self.rank).count();
        Some(if higher >= lower { 0 } else { 1 })
    }
}

/// Concentration: all cards face down; flip two at a time, a matching pair (by `ty`)
/// stays face up (+1/(n/2)); a mismatch costs 2/L, flipping a face-up card 1/L per card
/// in play, with L = ⌈2n − n/(2n−1)⌉ the episode's step limit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Concentration {
    /// The deck, laid out: position `p` holds card `order[p]`.
    pub deck: Deck,
    /// What must match.
    pub ty: DeckType,
    /// Positions face up for good.
    pub face_up: Vec<bool>,
    /// Positions flipped this turn (at most 2).
    pub in_play: Vec<usize>,
    /// Pairs found, times 2.
    pub up_count: usize,
    /// Steps taken.
    pub steps: usize,
}

impl Concentration {
    /// Over `decks` decks, matching by `ty`.
    pub fn new(decks: usize, ty: DeckType) -> Self {
        let deck = Deck::new(decks);
        let n = deck.len();
        Concentration {
            deck,
            ty,
            face_up: vec![false; n],
            in_play: Vec::with_capacity(2),
            up_count: 0,
            steps: 0,
        }
    }

    /// POPGym's step limit.
    pub fn episode_length(&self) -> usize {
        let n = self.deck.len() as f64;
        (2.0 * n - n / (2.0 * n - 1.0)).ceil() as usize
    }

    /// Starts an episode over the deck as it lies.
    pub fn start(&mut self, raw: &mut [f32]) {
        self.face_up.fill(false);
        self.in_play.clear();
        self.up_count = 0;
        self.steps = 0;
        raw.fill(self.ty.distinct() as f32);
    }

    fn value(&self, pos: usize) -> usize {
        self.ty.of(self.deck.order[pos])
    }
}

impl Task for Concentration {
    fn raw_space(&self) -> RawSpace {
        RawSpace::Discrete(vec![self.ty.distinct() + 1; self.deck.len()])
    }
    fn action_nvec(&self) -> Vec<usize> {
        vec![self.deck.len()]
    }
    fn reset(&mut self, rng: &mut SeededRng, raw: &mut [f32]) {
        self.deck.shuffle(rng);
        self.start(raw);
    }
    fn step(&mut self, action: usize, _: &mut SeededRng, raw: &mut [f32]) -> StepOutcome {
        let length = self.episode_length();
        let failure = -1.0 / length as f64;
        let truncated = self.steps + 1 >= length;
        self.in_play.push(action);
        let facedown = self.ty.distinct() as f32;
        for (p, r) in raw.iter_mut().enumerate() {
            *r = facedown;
            if self.face_up[p] {
                *r = self.value(p) as f32;
            }
        }
        for &p in &self.in_play {
            raw[p] = self.value(p) as f32;
        }
        let mut terminated = false;
        let reward = if self.in_play.iter().any(|&p| self.face_up[p]) {
            let r = failure * self.in_play.len() as f64;
            self.in_play.clear();
            r
        } else if self.in_play.len() == 2 {
            let (a, b) = (self.in_play[0], self.in_play[1]);
            let r = if a != b && self.value(a) == self.value(b) {
                self.face_up[a] = true;
                self.face_up[b] = true;
                self.up_count += 2;
                terminated = self.up_count == self.deck.len();
                1.0 / (self.deck.len() / 2) as f64
            } else {
                2.0 * failure
            };
            self.in_play.clear();
            r
        } else {
            0.0
        };
        self.steps += 1;
        StepOutcome {
            reward: reward as f32,
            terminated,
            truncated,
        }
    }
    /// Knows every card: flips a face-down card, then its match.
    fn oracle(&self) -> Option<usize> {
        let down = |p: &usize| !self.face_up[*p];
        match self.in_play.first() {
            None => (0..self.deck.len()).find(down),
            Some(&a) => (0..self.deck.len())
                .filter(down)
                .find(|&p| p != a && self.value(p) == self.value(a)),
        }
        .or(Some(0))
    }
}
