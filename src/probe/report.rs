//! What a probe reports: the rows it scored and the one printer for them, an aligned
//! table (the setting above, notes below) or one JSON object.

use serde::{Deserialize, Serialize};

use super::ProbeScore;

/// Which frozen features of a sequence network a probe reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FeatureSource {
    /// Context vectors c_t (GRU outputs), pooled over the utterance by their mean and by
    /// their mean and standard deviation (the paper does not say how its speaker probe
    /// pools over time; every baseline is pooled the same two ways).
    Context,
    /// Encoder outputs z_t, pooled the same two ways.
    Encoder,
}

/// One line of a classification probe table.
#[derive(Debug, Clone)]
pub struct ProbeRow {
    pub features: String,
    pub dim: usize,
    pub score: ProbeScore,
}

impl ProbeRow {
    /// The row as JSON: features, dim, λ and accuracies.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "features": self.features, "dim": self.dim, "lambda": self.score.lambda,
            "train_acc": self.score.train, "test_acc": self.score.test,
        })
    }

    /// The row's cells under [`CLASSIFY_COLUMNS`].
    pub fn cells(&self) -> Vec<String> {
        vec![
            self.dim.to_string(),
            format!("{:.0e}", self.score.lambda),
            format!("{:.1}%", 100.0 * self.score.train),
            format!("{:.1}%", 100.0 * self.score.test),
        ]
    }
}

/// Columns of a classification probe (audio, images).
pub const CLASSIFY_COLUMNS: [(&str, usize); 4] = [
    ("dim", 5),
    ("lambda", 8),
    ("train acc", 10),
    ("test acc", 10),
];

/// A probe's result: setting lines, a table, closing lines, and the same as JSON.
pub struct Report {
    /// Lines above the table (what was probed, on which split, how long it took).
    pub head: Vec<String>,
    /// Width of the first column ("features"), at least; a longer label widens it.
    pub label_width: usize,
    /// Further columns: name and width (cells are right-aligned).
    pub columns: Vec<(String, usize)>,
    /// A label and one cell per column.
    pub rows: Vec<(String, Vec<String>)>,
    /// Lines below the table.
    pub foot: Vec<String>,
    /// Notes for standard error (printed in both formats).
    pub notes: Vec<String>,
    /// The whole result as one JSON object.
    pub json: serde_json::Value,
}

impl Report {
    /// A report of classification rows ([`ProbeRow`]).
    pub fn classify(head: Vec<String>, rows: &[ProbeRow], json: serde_json::Value) -> Report {
        Report {
            head,
            label_width: 60,
            columns: CLASSIFY_COLUMNS
                .iter()
                .map(|(n, w)| (n.to_string(), *w))
                .collect(),
            rows: rows
                .iter()
                .map(|r| (r.features.clone(), r.cells()))
                .collect(),
            foot: Vec::new(),
            notes: Vec::new(),
            json,
        }
    }

    /// The aligned table with its head and foot lines.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for l in &self.head {
            out.push_str(l);
            out.push('\n');
        }
        // Wide enough for the longest label (an encoder's path can be long).
        let longest = self.rows.iter().map(|(l, _)| l.chars().count()).max();
        let w = self.label_width.max(longest.unwrap_or(0));
        out.push_str(&format!("{:<w$}", "features"));
        for (name, cw) in &self.columns {
            out.push_str(&format!(" {name:>cw$}"));
        }
        out.push('\n');
        for (label, cells) in &self.rows {
            out.push_str(&format!("{label:<w$}"));
            for (cell, (_, cw)) in cells.iter().zip(&self.columns) {
                out.push_str(&format!(" {cell:>cw$}"));
            }
            out.push('\n');
        }
        for l in &self.foot {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    /// Prints the notes to standard error, then the table or (with `json`) the JSON
    /// object to standard output.
    pub fn print(&self, json: bool) {
        for n in &self.notes {
            crate::errln!("{n}");
        }
        if json {
            crate::outln!("{}", self.json);
        } else {
            crate::out!("{}", self.table());
        }
    }
}
