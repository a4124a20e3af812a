//! The anchored change feed: samples added and ids deleted since an anchor.
//!
//! Every sample carries the sequence number of the log record that added it,
//! and deletions are kept in log order, so an anchor is a position in the
//! log: `(seq, id)`, "everything after sample `id` of record `seq`". Within a
//! record, changes are ordered by id; a page ends anywhere, even inside a
//! large record. Only records fully applied to the projection are served, so
//! a record is never seen half.

use std::collections::BinaryHeap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::catalogue::TypeIndex;
use crate::projection::{Projection, Row, Visibility};

/// A position in the change feed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Anchor {
    pub seq: u64,
    /// Resume after this id within `seq`; `None`: after all of `seq`.
    pub after_id: Option<u128>,
}

const ANCHOR_VERSION: u8 = 1;

impl Anchor {
    pub fn encode(&self) -> String {
        let mut bytes = vec![ANCHOR_VERSION];
        bytes.extend_from_slice(&self.seq.to_be_bytes());
        if let Some(id) = self.after_id {
            bytes.extend_from_slice(&id.to_be_bytes());
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(text: &str) -> Option<Anchor> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let (&version, rest) = bytes.split_first()?;
        if version != ANCHOR_VERSION {
            return None;
        }
        match rest.len() {
            8 => Some(Anchor {
                seq: u64::from_be_bytes(rest.try_into().ok()?),
                after_id: None,
            }),
            24 => Some(Anchor {
                seq: u64::from_be_bytes(rest[..8].try_into().ok()?),
                after_id: Some(u128::from_be_bytes(rest[8..].try_into().ok()?)),
            }),
            _ => None,
        }
    }

    /// Whether the change `(seq, id)` lies after this anchor.
    fn before(&self, seq: u64, id: u128) -> bool {
        match self.after_id {
            None => seq > self.seq,
            Some(after) => seq > self.seq || (seq == self.seq && id > after),
        }
    }
}

#[derive(Clone, Debug)]
pub enum Change {
    Added { ty: TypeIndex, row: Row },
    Deleted { ty: TypeIndex, id: u128 },
}

#[derive(Debug)]
pub struct Page {
    pub changes: Vec<Change>,
    pub next: Anchor,
    pub has_more: bool,
}

/// A candidate change: ordered by (seq, id).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    seq: u64,
    id: u128,
    ty: TypeIndex,
    deleted: bool,
}

fn visible_source(visibility: Visibility, source: u32) -> bool {
    match visibility {
        Visibility::All => true,
        Visibility::OnlySource(s) => s == source,
    }
}

/// Up to `limit` changes after `anchor` to the given types, each with the
/// caller's visibility of it.
pub fn page(
    projection: &Projection,
    types: &[(TypeIndex, Visibility)],
    anchor: Anchor,
    limit: usize,
) -> Page {
    // Only fully applied records: read the head before looking.
    let head = projection.applied_seq();
    let keep = limit + 1;
    let mut best: BinaryHeap<Key> = BinaryHeap::new();
    let offer = |k: Key, best: &mut BinaryHeap<Key>| {
        if best.len() < keep {
            best.push(k);
        } else if best.peek().is_some_and(|worst| k < *worst) {
            best.pop();
            best.push(k);
        }
    };
    for &(ty, visibility) in types {
        let cols = projection.columns(ty);
        let last = u64::from(cols.last_seq());
        if last < anchor.seq || (last == anchor.seq && anchor.after_id.is_none()) {
            continue;
        }
        let seqs = cols.seqs();
        let floor = u32::try_from(anchor.seq).unwrap_or(u32::MAX);
        for (r, &seq) in seqs.iter().enumerate() {
            if seq < floor || u64::from(seq) > head {
                continue;
            }
            let id = cols.id_of(r);
            if anchor.before(u64::from(seq), id) && cols.visible(r, visibility) {
                offer(
                    Key {
                        seq: u64::from(seq),
                        id,
                        ty,
                        deleted: false,
                    },
                    &mut best,
                );
            }
        }
    }
    for d in projection.deletions_after(anchor.seq.saturating_sub(1)) {
        if d.seq > head || !anchor.before(d.seq, d.id) {
            continue;
        }
        let Some(&(_, visibility)) = types.iter().find(|(t, _)| *t == d.ty) else {
            continue;
        };
        if visible_source(visibility, d.source) {
            offer(
                Key {
                    seq: d.seq,
                    id: d.id,
                    ty: d.ty,
                    deleted: true,
                },
                &mut best,
            );
        }
    }
    let mut keys = best.into_sorted_vec();
    let has_more = keys.len() > limit;
    keys.truncate(limit);
    let next = match (has_more, keys.last()) {
        (true, Some(k)) => Anchor {
            seq: k.seq,
            after_id: Some(k.id),
        },
        _ => Anchor {
            seq: head.max(anchor.seq),
            after_id: None,
        },
    };
    let changes = keys
        .into_iter()
        .filter_map(|k| {
            if k.deleted {
                return Some(Change::Deleted { ty: k.ty, id: k.id });
            }
            // Deleted since we looked: its deletion comes in a later page.
            let cols = projection.columns(k.ty);
            let r = cols.find(k.id).filter(|&r| !cols.is_deleted(r))?;
            Some(Change::Added {
                ty: k.ty,
                row: cols.row(r),
            })
        })
        .collect();
    Page {
        changes,
        next,
        has_more,
    }
}

/// Types among `types` with a visible change after `after` (up to the head).
pub fn changed_types(
    projection: &Projection,
    types: &[(TypeIndex, Visibility)],
    after: u64,
) -> Vec<TypeIndex> {
    let head = projection.applied_seq();
    let mut out = Vec::new();
    let deletions = projection.deletions_after(after);
    for &(ty, visibility) in types {
        let cols = projection.columns(ty);
        if u64::from(cols.last_seq()) <= after {
            continue;
        }
        let added = cols.seqs().iter().enumerate().any(|(r, &seq)| {
            let seq = u64::from(seq);
            seq > after && seq <= head && cols.visible(r, visibility)
        });
        let deleted = deletions
            .iter()
            .any(|d| d.ty == ty && d.seq <= head && visible_source(visibility, d.source));
        if added || deleted {
            out.push(ty);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_round_trip_and_reject_garbage() {
        for a in [
            Anchor::default(),
            Anchor {
                seq: 42,
                after_id: Some(7),
            },
        ] {
            assert_eq!(Anchor::decode(&a.encode()), Some(a));
        }
        assert_eq!(Anchor::decode("nope!"), None);
        assert_eq!(Anchor::decode(""), None);
        assert_eq!(Anchor::decode(&URL_SAFE_NO_PAD.encode([2u8; 9])), None);
    }
}
