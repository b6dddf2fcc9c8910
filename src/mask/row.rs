//! One row through a table's rules: the call a dump's COPY rows and a change stream's lines
//! both make (GROUNDWORK 1). The caller decodes the values the plan reads into
//! [`RowBuf::original`]; [`TablePlan::mask_row`] filters the row and writes the masked values
//! of the ruled columns into [`RowBuf::masked`].

use super::rules::TablePlan;
use super::transform;
use anyhow::{Result, anyhow};

/// A row's values, decoded text; `None` is SQL NULL (or a value the plan does not read).
pub type Row = [Option<Vec<u8>>];

/// Reused per-row storage: original and masked values, by column position.
#[derive(Default)]
pub struct RowBuf {
    pub original: Vec<Option<Vec<u8>>>,
    pub masked: Vec<Option<Vec<u8>>>,
    /// A transformer's output buffer, swapped with the column's after each step.
    spare: Vec<u8>,
}

impl RowBuf {
    /// Room for a row of `ncols` columns.
    pub fn resize(&mut self, ncols: usize) {
        self.original.resize(ncols, None);
        self.masked.resize(ncols, None);
    }
}

impl TablePlan {
    /// Which of the table's `ncols` columns the rules rewrite, into `out` (reused).
    pub fn rewritten_into(&self, ncols: usize, out: &mut Vec<bool>) {
        out.clear();
        out.resize(ncols, false);
        for c in &self.columns {
            out[c.index] = true;
        }
    }

    /// Does the row in `r.original` pass the table's `keep_rows` and `drop_rows`?
    pub fn keeps(&self, row: &Row) -> bool {
        !(self.keep.as_ref().is_some_and(|c| !c.holds(row))
            || self.drop.as_ref().is_some_and(|c| c.holds(row)))
    }

    /// Masks the row in `r.original` (filters not applied: see [`keeps`](Self::keeps)): every
    /// ruled column's value goes through its steps into `r.masked`, each checked to fit its
    /// type where a step may yield one that does not.
    pub fn mask_row(&self, r: &mut RowBuf) -> Result<()> {
        if self.templates {
            // Templates read masked values of other columns, so the whole row is kept.
            r.masked.clone_from(&r.original);
        }
        for col in &self.columns {
            // The previous row's buffer for this column takes the new value; with templates
            // the slot holds this row's value, which a template may read, so it stays.
            let mut buf = match self.templates {
                false => r.masked[col.index].take().unwrap_or_default(),
                true => Vec::new(),
            };
            // The first step that applies reads the original in place; each later one reads
            // the previous result from `buf` and writes into the spare buffer, then they swap.
            let mut present: Option<bool> = None;
            for step in &col.steps {
                if step.when.as_ref().is_some_and(|c| !c.holds(&r.original)) {
                    continue;
                }
                let cx = transform::Ctx {
                    rk: &step.key,
                    original_row: &r.original,
                    masked_row: &r.masked,
                };
                let cur = match present {
                    Some(true) => Some(buf.as_slice()),
                    Some(false) => None,
                    None => r.original[col.index].as_deref(),
                };
                let out = step
                    .transformer
                    .apply_into(cur, &cx, &mut r.spare)
                    .map_err(|e| anyhow!("{}: {e:#}", step.name))?;
                std::mem::swap(&mut buf, &mut r.spare);
                present = Some(out);
            }
            let v = match present {
                Some(true) => Some(buf),
                Some(false) => None,
                None => r.original[col.index].as_ref().map(|o| {
                    buf.clear();
                    buf.extend_from_slice(o);
                    buf
                }),
            };
            if let Some(x) = v.as_ref().filter(|_| col.check_fit) {
                col.ty.fits(x).map_err(|e| {
                    anyhow!(
                        "{}: {e}",
                        col.steps.last().map(|s| s.name.as_str()).unwrap_or("rule")
                    )
                })?;
            }
            r.masked[col.index] = v;
        }
        Ok(())
    }
}
