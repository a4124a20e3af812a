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
use crate::crypto;
use crate::projection::Row;
use crate::view::View;

/// A position in the change feed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Anchor {
    pub seq: u64,
    /// Resume after this id within `seq`; `None`: after all of `seq`.
    pub after_id: Option<u128>,
}

const ANCHOR_VERSION: u8 = 1;
const ANCHOR_AAD: &[u8] = b"hearth-anchor-v1";

impl Anchor {
    /// Opaque to clients: sealed under the store's anchor key, so an anchor
    /// does not reveal the log position, and with it how many changes the
    /// caller cannot see.
    pub fn encode(&self, key: &[u8; 32]) -> String {
        let mut bytes = vec![ANCHOR_VERSION];
        bytes.extend_from_slice(&self.seq.to_be_bytes());
        if let Some(id) = self.after_id {
            bytes.extend_from_slice(&id.to_be_bytes());
        }
        URL_SAFE_NO_PAD.encode(crypto::seal(key, ANCHOR_AAD, &bytes))
    }

    pub fn decode(text: &str, key: &[u8; 32]) -> Option<Anchor> {
        let sealed = URL_SAFE_NO_PAD.decode(text).ok()?;
        let bytes = crypto::open(key, ANCHOR_AAD, &sealed).ok()?;
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

/// Up to `limit` changes after `anchor` to the given types, as `view` sees
/// them.
pub fn page(view: &View, types: &[TypeIndex], anchor: Anchor, limit: usize) -> Page {
    // Only fully applied records: read the head before looking.
    let head = view.applied_seq();
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
    for &ty in types {
        let cols = view.columns(ty);
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
            if anchor.before(u64::from(seq), id) && cols.live(r) {
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
    for &ty in types {
        for d in view.deletions(ty, anchor.seq.saturating_sub(1)) {
            if d.seq > head || !anchor.before(d.seq, d.id) {
                continue;
            }
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
        // Everything visible up to the head is delivered. The anchor moves
        // only with visible changes, so it tells nothing of hidden ones.
        _ => Anchor {
            seq: keys.last().map_or(anchor.seq, |k| k.seq.max(anchor.seq)),
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
            let (ty, row) = view.find(k.id)?;
            Some(Change::Added { ty, row })
        })
        .collect();
    Page {
        changes,
        next,
        has_more,
    }
}

/// Types among `types` with a visible change after `after` (up to the head),
/// and the latest such change's record (`after` if none).
pub fn changed_types(view: &View, types: &[TypeIndex], after: u64) -> (Vec<TypeIndex>, u64) {
    let head = view.applied_seq();
    let mut latest = after;
    let mut out = Vec::new();
    for &ty in types {
        let cols = view.columns(ty);
        if u64::from(cols.last_seq()) <= after {
            continue;
        }
        let mut changed = false;
        for (r, &seq) in cols.seqs().iter().enumerate() {
            let seq = u64::from(seq);
            if seq > after && seq <= head && cols.live(r) {
                changed = true;
                latest = latest.max(seq);
            }
        }
        for d in view.deletions(ty, after) {
            if d.seq <= head {
                changed = true;
                latest = latest.max(d.seq);
            }
        }
        if changed {
            out.push(ty);
        }
    }
    (out, latest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::{AppCaller, Apps};
    use crate::caller::Caller;
    use crate::catalogue;
    use crate::log::event::{Envelope, Event, StoredSample, TypeBatch};
    use crate::projection::Projection;
    use std::sync::Arc;

    fn add(p: &Projection, seq: u64, source: &str, id: u128) {
        let sample = StoredSample {
            id: id.to_be_bytes(),
            start_us: id as i64,
            start_offset_min: 0,
            end_us: id as i64,
            end_offset_min: 0,
            value: 1.0,
            metadata: None,
        };
        let event = Event::SamplesAdded {
            source: source.into(),
            batches: vec![TypeBatch {
                type_id: "step_count".into(),
                samples: vec![sample],
            }],
        };
        p.apply(seq, &Envelope { at_us: 0, event }).unwrap();
    }

    /// An app with a token and no grants: it reads nothing but its own.
    fn app_caller(app_id: &str) -> Caller {
        Caller::App(AppCaller {
            app_id: app_id.into(),
            token_id: [0; 16],
            scope: Arc::new([]),
            token_hash: [0; 32],
        })
    }

    fn viewer(p: &Arc<Projection>, caller: Caller) -> crate::view::View {
        crate::view::View::new(p.clone(), caller, Arc::new(Apps::default()))
    }

    fn delete(p: &Projection, seq: u64, id: u128) {
        let event = Event::SamplesDeleted {
            source: "owner".into(),
            ids: vec![id.to_be_bytes()],
        };
        p.apply(seq, &Envelope { at_us: 0, event }).unwrap();
    }

    /// What an app that may read only its own samples gets never involves
    /// anyone else's samples, and its anchor never moves on their changes.
    #[test]
    fn hidden_changes_never_show_nor_move_the_anchor() {
        let p = Arc::new(Projection::default());
        let ty = catalogue::lookup("step_count").unwrap();
        add(&p, 1, "app", 1);
        add(&p, 2, "owner", 2);
        add(&p, 3, "app", 3);
        delete(&p, 4, 2);
        delete(&p, 5, 1);
        add(&p, 6, "owner", 6);
        let view = viewer(&p, app_caller("app"));
        let types = [ty];
        let mut anchor = Anchor::default();
        let mut seen = Vec::new();
        loop {
            let page = page(&view, &types, anchor, 1);
            for c in &page.changes {
                seen.push(match c {
                    Change::Added { row, .. } => (true, row.id),
                    Change::Deleted { id, .. } => (false, *id),
                });
            }
            anchor = page.next;
            if !page.has_more {
                break;
            }
        }
        // Sample 1 was added and deleted: only its deletion shows.
        assert_eq!(seen, vec![(true, 3), (false, 1)]);
        assert_eq!(anchor.seq, 5, "the owner's later write does not move it");
        add(&p, 7, "owner", 7);
        delete(&p, 8, 6);
        let page = page(&view, &types, anchor, 10);
        assert!(page.changes.is_empty());
        assert_eq!(page.next, anchor);
        assert_eq!(changed_types(&view, &types, 0), (vec![ty], 5));
        assert_eq!(changed_types(&view, &types, 5), (vec![], 5));
    }

    /// A replacement is one record: the feed shows the earlier sample
    /// deleted and the new one added, to those who see the source.
    #[test]
    fn a_replacement_shows_as_a_deletion_and_an_addition() {
        use crate::log::event::{DeviceGroup, SyncRecord};
        let p = Arc::new(Projection::default());
        let ty = catalogue::lookup("step_count").unwrap();
        add(&p, 1, "app", 1);
        let sample = StoredSample {
            id: 2u128.to_be_bytes(),
            start_us: 1,
            start_offset_min: 0,
            end_us: 1,
            end_offset_min: 0,
            value: 2.0,
            metadata: None,
        };
        let event = Event::SamplesWritten {
            source: "app".into(),
            groups: vec![DeviceGroup {
                device: None,
                batches: vec![TypeBatch {
                    type_id: "step_count".into(),
                    samples: vec![sample],
                }],
            }],
            synced: vec![SyncRecord {
                id: 2u128.to_be_bytes(),
                sync_id: "s".into(),
                version: 1,
            }],
            replaced: vec![1u128.to_be_bytes()],
        };
        p.apply(2, &Envelope { at_us: 0, event }).unwrap();
        let after_first = Anchor {
            seq: 1,
            after_id: None,
        };
        // The owner reads everything; the app, only its own.
        for view in [viewer(&p, Caller::Owner), viewer(&p, app_caller("app"))] {
            let page = page(&view, &[ty], after_first, 10);
            let seen: Vec<(bool, u128)> = page
                .changes
                .iter()
                .map(|c| match c {
                    Change::Added { row, .. } => (true, row.id),
                    Change::Deleted { id, .. } => (false, *id),
                })
                .collect();
            assert_eq!(seen, vec![(false, 1), (true, 2)]);
        }
        let hidden = page(&viewer(&p, app_caller("other")), &[ty], after_first, 10);
        assert!(hidden.changes.is_empty());
    }

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn anchors_round_trip_and_reject_garbage() {
        for a in [
            Anchor::default(),
            Anchor {
                seq: 42,
                after_id: Some(7),
            },
        ] {
            assert_eq!(Anchor::decode(&a.encode(&KEY), &KEY), Some(a));
            assert_eq!(
                Anchor::decode(&a.encode(&KEY), &[8; 32]),
                None,
                "another store's key"
            );
        }
        assert_eq!(Anchor::decode("nope!", &KEY), None);
        assert_eq!(Anchor::decode("", &KEY), None);
        assert_eq!(
            Anchor::decode(&URL_SAFE_NO_PAD.encode([2u8; 9]), &KEY),
            None
        );
        // The plain encoding an earlier server used is refused, not trusted.
        let plain = URL_SAFE_NO_PAD.encode([1, 0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(Anchor::decode(&plain, &KEY), None);
    }
}
