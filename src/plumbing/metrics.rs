//! Prometheus textfiles, for node_exporter's textfile collector (Prometheus docs, "Exposition
//! formats", text format 0.0.4): `# HELP` and `# TYPE` before a metric's first sample, its
//! samples together, label values escaped. Written whole through a rename, so the collector
//! never reads half a file.

use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;

/// A textfile being built.
#[derive(Default)]
pub struct Textfile {
    text: String,
    last: String,
}

impl Textfile {
    pub fn new() -> Textfile {
        Textfile::default()
    }

    /// One sample of `name` (a `gauge` or `counter`); give a metric's samples one after
    /// another.
    pub fn sample(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        if self.last != name {
            let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
            self.last = name.to_string();
        }
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.sample(name, "gauge", help, labels, value);
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Replaces the file at `path` with this one.
    pub fn write(&self, path: &Path) -> Result<()> {
        super::write_atomically(path, self.text.as_bytes())
    }
}

/// A label value as the text format needs it: `\`, `"` and line feeds escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_and_type_once_before_a_metrics_samples() {
        let mut t = Textfile::new();
        t.gauge("x_lag_bytes", "Lag.", &[("slot", "a\"b")], 12.0);
        t.gauge("x_lag_bytes", "Lag.", &[("slot", "c\\d")], 0.5);
        t.gauge("x_up", "Up.", &[], 1.0);
        assert_eq!(
            t.text(),
            "# HELP x_lag_bytes Lag.\n# TYPE x_lag_bytes gauge\nx_lag_bytes{slot=\"a\\\"b\"} 12\n\
             x_lag_bytes{slot=\"c\\\\d\"} 0.5\n# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n"
        );
    }
}
