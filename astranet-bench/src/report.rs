//! Results: one row per metric, one cell per transport, ratios of astranet to the others;
//! printed as a table for people and as JSON for tools.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::pair::Kind;
use crate::units::group_thousands;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    #[serde(rename = "MiB/s")]
    MibPerSec,
    #[serde(rename = "opens/s")]
    OpensPerSec,
    #[serde(rename = "us")]
    Micros,
    #[serde(rename = "B/stream")]
    BytesPerStream,
}

impl Unit {
    fn label(self) -> &'static str {
        match self {
            Unit::MibPerSec => "MiB/s",
            Unit::OpensPerSec => "opens/s",
            Unit::Micros => "µs",
            Unit::BytesPerStream => "B/stream",
        }
    }

    fn higher_is_better(self) -> bool {
        matches!(self, Unit::MibPerSec | Unit::OpensPerSec)
    }

    fn format(self, value: f64) -> String {
        match self {
            Unit::Micros => format!("{value:.1}"),
            Unit::MibPerSec if value < 100.0 => format!("{value:.1}"),
            _ => group_thousands(value, 0),
        }
    }
}

/// One transport's figure for one metric: a value, or why there is none.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Cell {
    pub value: Option<f64>,
    /// Every run's figure, when the value is the median of several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Cell {
    pub fn value(value: f64) -> Self {
        Cell { value: Some(value), ..Cell::default() }
    }

    /// The median of `samples` (the upper one of an even count).
    pub fn median(samples: Vec<f64>) -> Self {
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let value = sorted.get(sorted.len() / 2).copied();
        Cell { value, samples: if samples.len() > 1 { samples } else { Vec::new() }, note: None }
    }

    pub fn missing(why: impl Into<String>) -> Self {
        Cell { note: Some(why.into()), ..Cell::default() }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

struct Row {
    section: &'static str,
    metric: String,
    unit: Unit,
    cells: BTreeMap<Kind, Cell>,
}

impl Row {
    /// `ours` ÷ `theirs`, when both were measured.
    fn ratio(&self, ours: Kind, theirs: Kind) -> Option<f64> {
        let ours = self.cells.get(&ours)?.value?;
        let theirs = self.cells.get(&theirs)?.value?;
        (theirs > 0.0).then(|| ours / theirs)
    }
}

#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
    errors: Vec<String>,
    warnings: Vec<String>,
}

/// Records the cells of one transport in one section, echoing each to stderr as progress.
pub struct Recorder<'a> {
    report: &'a mut Report,
    section: &'static str,
    kind: Kind,
}

impl Recorder<'_> {
    pub fn put(&mut self, metric: impl Into<String>, unit: Unit, cell: Cell) {
        let metric = metric.into();
        let shown = cell.value.map_or_else(|| "n/a".to_owned(), |v| unit.format(v));
        let note = cell.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
        eprintln!("[{}] {}: {metric}: {shown} {}{note}", self.section, self.kind.label(), unit.label());
        self.report.insert(self.section, self.kind, metric, unit, cell);
    }

    /// Whether this transport already has a cell in `metric` of this section.
    pub fn has(&self, metric: &str) -> bool {
        self.report
            .rows
            .iter()
            .any(|r| r.section == self.section && r.metric == metric && r.cells.contains_key(&self.kind))
    }

    /// Flags this transport's figures in this section as doubtful.
    pub fn warn(&mut self, message: impl std::fmt::Display) {
        eprintln!("[{}] {}: warning: {message}", self.section, self.kind.label());
        let line = format!("{} / {}: {message}", self.section, self.kind.label());
        self.report.warnings.push(line);
    }

    pub fn error(&mut self, message: impl std::fmt::Display) {
        let line = format!("{} / {}: {message}", self.section, self.kind.label());
        eprintln!("[{}] {}: FAILED: {message}", self.section, self.kind.label());
        self.report.errors.push(line);
    }
}

/// Ratio columns: (numerator, denominator, column title).
const RATIO_COLUMNS: [(Kind, Kind, &str); 5] = [
    (Kind::Astranet, Kind::Tcp, "astranet/TCP"),
    (Kind::Astranet, Kind::Yamux, "astranet/yamux"),
    (Kind::Astranet, Kind::GoOriginal, "astranet/Go"),
    (Kind::Relayed, Kind::Astranet, "relayed/direct"),
    (Kind::Tls, Kind::Astranet, "tls/plain"),
];

/// The part of a JSON document (see [`Report::json`]) that [`Report::absorb`] reads.
#[derive(Deserialize)]
struct Document {
    results: Vec<DocumentRow>,
    errors: Vec<String>,
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct DocumentRow {
    section: String,
    metric: String,
    unit: Unit,
    values: BTreeMap<Kind, Cell>,
}

impl Report {
    fn insert(&mut self, section: &'static str, kind: Kind, metric: String, unit: Unit, cell: Cell) {
        let index = match self.rows.iter().position(|r| r.section == section && r.metric == metric) {
            Some(index) => index,
            None => {
                self.rows.push(Row { section, metric, unit, cells: BTreeMap::new() });
                self.rows.len() - 1
            }
        };
        self.rows[index].cells.insert(kind, cell);
    }

    /// Takes over the rows of `section`, and the errors, of another run's JSON document.
    pub fn absorb(&mut self, section: &'static str, json: &str) -> Result<(), String> {
        let document: Document = serde_json::from_str(json).map_err(|e| e.to_string())?;
        for row in document.results.into_iter().filter(|r| r.section == section) {
            for (kind, cell) in row.values {
                self.insert(section, kind, row.metric.clone(), row.unit, cell);
            }
        }
        self.errors.extend(document.errors);
        self.warnings.extend(document.warnings);
        Ok(())
    }

    pub fn recorder(&mut self, section: &'static str, kind: Kind) -> Recorder<'_> {
        Recorder { report: self, section, kind }
    }

    /// True when no measurement failed.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn table(&self) -> String {
        let mut header: Vec<String> = ["section", "metric", "unit"].map(String::from).to_vec();
        header.extend(Kind::ALL.iter().map(|k| k.label().to_owned()));
        header.extend(RATIO_COLUMNS.iter().map(|(_, _, name)| (*name).to_owned()));

        let mut notes: Vec<String> = Vec::new();
        let mut lines = vec![header];
        for row in &self.rows {
            let mut line = vec![row.section.to_owned(), row.metric.clone(), row.unit.label().to_owned()];
            for kind in Kind::ALL {
                line.push(match row.cells.get(&kind) {
                    None => "-".to_owned(),
                    Some(cell) => {
                        let mut text = cell.value.map_or_else(|| "n/a".to_owned(), |v| row.unit.format(v));
                        if let Some(note) = &cell.note {
                            // Cells that say the same thing share a footnote.
                            let note = format!("{}: {note}", kind.label());
                            let number = match notes.iter().position(|n| *n == note) {
                                Some(index) => index + 1,
                                None => {
                                    notes.push(note);
                                    notes.len()
                                }
                            };
                            write!(text, " [{number}]").unwrap();
                        }
                        text
                    }
                });
            }
            for (ours, theirs, _) in RATIO_COLUMNS {
                line.push(row.ratio(ours, theirs).map_or_else(|| "-".to_owned(), |r| format!("{r:.2}×")));
            }
            lines.push(line);
        }

        let columns = lines[0].len();
        let widths: Vec<usize> =
            (0..columns).map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
        let mut out = String::new();
        for line in &lines {
            for (c, text) in line.iter().enumerate() {
                let pad = widths[c] - text.chars().count();
                // Text columns align left, figures right.
                if c < 3 {
                    write!(out, "{text}{}  ", " ".repeat(pad)).unwrap();
                } else {
                    write!(out, "{}{text}  ", " ".repeat(pad)).unwrap();
                }
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
        }
        out.push_str(
            "\nRatios are astranet ÷ other (Go: the original Go package; relayed/direct: \
             astranet through one relay hop ÷ astranet direct): above 1 is better for MiB/s and \
             opens/s, below 1 is better for µs and B/stream.\n",
        );
        for (i, note) in notes.iter().enumerate() {
            writeln!(out, "[{}] {note}", i + 1).unwrap();
        }
        for warning in &self.warnings {
            writeln!(out, "warning: {warning}").unwrap();
        }
        for error in &self.errors {
            writeln!(out, "error: {error}").unwrap();
        }
        out
    }

    /// The whole run as one JSON document; `context` describes the machine and settings.
    pub fn json(&self, context: Value) -> Value {
        let results: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let ratios: serde_json::Map<String, Value> = RATIO_COLUMNS
                    .iter()
                    .map(|(ours, theirs, _)| {
                        let name = |k: &Kind| json!(k).as_str().unwrap_or_default().to_owned();
                        (format!("{}/{}", name(ours), name(theirs)), json!(row.ratio(*ours, *theirs)))
                    })
                    .collect();
                json!({
                    "section": row.section,
                    "metric": row.metric,
                    "unit": row.unit,
                    "better": if row.unit.higher_is_better() { "higher" } else { "lower" },
                    "values": row.cells,
                    "ratios": ratios,
                })
            })
            .collect();
        json!({
            "context": context,
            "ratio_definition": "the first transport's value divided by the second's",
            "results": results,
            "warnings": self.warnings,
            "errors": self.errors,
        })
    }
}
