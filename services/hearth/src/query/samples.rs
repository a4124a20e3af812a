//! A page of samples of one type in `(start, id)` order, as one caller
//! sees them: the column scan behind `GET /v1/samples`.

use crate::catalogue::TypeIndex;
use crate::log::event::SourceKey;
use crate::projection::{Row, TypeColumns};
use crate::query::sources::Origin;
use crate::view::View;

/// Which samples, from where, how many.
pub struct SampleQuery<'a> {
    pub ty: TypeIndex,
    /// Samples starting in `[from, to)`.
    pub range: (i64, i64),
    /// Only these sources (`app` or `app/device`).
    pub sources: Option<&'a [SourceKey]>,
    /// Only this device name.
    pub device: Option<&'a str>,
    /// Strictly after (or, descending, before) this `(start, id)`.
    pub after: Option<(i64, u128)>,
    pub descending: bool,
    pub limit: usize,
}

/// Up to `limit` rows, and whether more follow.
pub fn page(view: &View, q: &SampleQuery<'_>) -> (Vec<Row>, bool) {
    let table = view.source_table();
    let cols = view.columns(q.ty);
    let cols: &TypeColumns = &cols;
    let wanted = |r: usize| {
        if !cols.live(r) {
            return false;
        }
        let o = Origin::of(cols, r);
        q.sources
            .is_none_or(|keys| keys.iter().any(|k| table.matches(o, k)))
            && q.device
                .is_none_or(|name| table.device(o).is_some_and(|d| &*d.name == name))
    };
    let (from, to) = q.range;
    let range = cols.start_range(from, to);
    // One row past the page says whether another page follows.
    let mut rows: Vec<Row> = if q.descending {
        let last = match q.after {
            Some((s, id)) => cols.before(s, id).min(range.end),
            None => range.end,
        };
        (range.start..last.max(range.start))
            .rev()
            .filter(|&r| wanted(r))
            .take(q.limit + 1)
            .map(|r| cols.row(r))
            .collect()
    } else {
        let first = match q.after {
            Some((s, id)) => cols.after(s, id).max(range.start),
            None => range.start,
        };
        (first..range.end.max(first))
            .filter(|&r| wanted(r))
            .take(q.limit + 1)
            .map(|r| cols.row(r))
            .collect()
    };
    let more = rows.len() > q.limit;
    rows.truncate(q.limit);
    (rows, more)
}
