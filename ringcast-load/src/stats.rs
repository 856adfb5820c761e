//! Numbers for reports: latency distributions (exact for per-connection values, a
//! log-linear histogram for per-frame ones), failure tallies, and the two output forms
//! (a plain-text table for people, JSON for scripts).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// Linear sub-buckets per power of two: 32 keeps any value within ~3% of its bucket.
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Values below this get a bucket each.
const LINEAR: u64 = 2 * SUB as u64;

/// A histogram of microsecond values (lag per frame: millions of samples, fixed memory).
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: f64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; bucket_of(u64::MAX) + 1], total: 0, sum: 0.0, max: 0 }
    }
}

fn bucket_of(value: u64) -> usize {
    if value < LINEAR {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = (value >> shift) as usize & (SUB - 1);
    LINEAR as usize + (shift as usize - 1) * SUB + sub
}

/// The middle of a bucket's range.
fn value_of(bucket: usize) -> u64 {
    if bucket < LINEAR as usize {
        return bucket as u64;
    }
    let shift = ((bucket - LINEAR as usize) / SUB + 1) as u32;
    let sub = ((bucket - LINEAR as usize) % SUB) as u64;
    ((SUB as u64 + sub) << shift) + ((1u64 << shift) >> 1)
}

impl Histogram {
    pub fn record(&mut self, value: u64) {
        self.counts[bucket_of(value)] += 1;
        self.total += 1;
        self.sum += value as f64;
        self.max = self.max.max(value);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1); 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return value_of(bucket).min(self.max);
            }
        }
        self.max
    }

    pub fn dist_ms(&self) -> Dist {
        Dist {
            count: self.total,
            mean_ms: if self.total == 0 { 0.0 } else { round2(self.sum / self.total as f64 / 1000.0) },
            p50_ms: us_to_ms(self.quantile(0.50)),
            p99_ms: us_to_ms(self.quantile(0.99)),
            max_ms: us_to_ms(self.max),
        }
    }
}

/// A distribution summary, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Dist {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Dist {
    /// Exact summary of per-connection values in microseconds.
    pub fn of_us(values: &mut [u64]) -> Dist {
        if values.is_empty() {
            return Dist::default();
        }
        values.sort_unstable();
        let pick = |q: f64| {
            let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
            us_to_ms(values[rank - 1])
        };
        let sum: f64 = values.iter().map(|&v| v as f64).sum();
        Dist {
            count: values.len() as u64,
            mean_ms: round2(sum / values.len() as f64 / 1000.0),
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
            max_ms: pick(1.0),
        }
    }

    pub fn show(&self) -> String {
        if self.count == 0 {
            return "-".into();
        }
        format!("p50 {} ms  p99 {} ms  max {} ms  (n={})", self.p50_ms, self.p99_ms, self.max_ms, self.count)
    }
}

pub fn us_to_ms(us: u64) -> f64 {
    round2(us as f64 / 1000.0)
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// How many connections failed or ended for each reason.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Reasons(BTreeMap<String, u64>);

impl Reasons {
    pub fn add(&mut self, reason: impl Into<String>) {
        *self.0.entry(reason.into()).or_insert(0) += 1;
    }

    pub fn merge(&mut self, other: &Reasons) {
        for (reason, count) in &other.0 {
            *self.0.entry(reason.clone()).or_insert(0) += count;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn show(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        let mut items: Vec<_> = self.0.iter().collect();
        items.sort_by(|a, b| b.1.cmp(a.1));
        items.iter().map(|(reason, count)| format!("{count} x {reason}")).collect::<Vec<_>>().join("; ")
    }
}

/// Gbit/s from bytes over seconds.
pub fn gbit_per_s(bytes: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    round3(bytes as f64 * 8.0 / secs / 1e9)
}

/// A two-column table of labels and values, for people.
#[derive(Default)]
pub struct Table {
    title: String,
    rows: Vec<(String, String)>,
}

impl Table {
    pub fn new(title: impl Into<String>) -> Table {
        Table { title: title.into(), rows: Vec::new() }
    }

    pub fn row(&mut self, label: impl Into<String>, value: impl ToString) -> &mut Table {
        self.rows.push((label.into(), value.to_string()));
        self
    }

    pub fn render(&self) -> String {
        let width = self.rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let mut out = String::new();
        let _ = writeln!(out, "== {} ==", self.title);
        for (label, value) in &self.rows {
            let _ = writeln!(out, "  {label:<width$}  {value}");
        }
        out
    }
}

/// A table with columns, for per-connection rows.
pub struct Grid {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Grid {
    pub fn new(header: &[&str]) -> Grid {
        Grid { header: header.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(String::len).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.len());
                }
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from(" ");
            for (i, cell) in cells.iter().enumerate() {
                let w = widths.get(i).copied().unwrap_or(0);
                // Numbers read best right-aligned; the last column (reasons) left-aligned.
                if i + 1 == cells.len() {
                    let _ = write!(s, " {cell}");
                } else {
                    let _ = write!(s, " {cell:>w$}");
                }
            }
            s.push('\n');
            s
        };
        let mut out = line(&self.header);
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 40, u64::MAX / 2, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b >= last, "bucket of {v} went backwards");
            last = b;
            let mid = value_of(b) as f64;
            let err = (mid - v as f64).abs() / (v as f64).max(1.0);
            assert!(err <= 0.04, "{v} -> bucket {b} -> {mid}");
        }
    }

    #[test]
    fn quantiles_match_exact_values() {
        let mut h = Histogram::default();
        let mut exact: Vec<u64> = (1..=10_000).map(|i| i * 37).collect();
        for &v in &exact {
            h.record(v);
        }
        let d = Dist::of_us(&mut exact);
        let hd = h.dist_ms();
        assert!((hd.p50_ms - d.p50_ms).abs() / d.p50_ms < 0.04);
        assert!((hd.p99_ms - d.p99_ms).abs() / d.p99_ms < 0.04);
        assert_eq!(hd.max_ms, d.max_ms);
    }
}
