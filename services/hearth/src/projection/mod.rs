//! The in-memory projection of the log that every query reads.
//!
//! It exists only while the store is unlocked: built by replay at unlock,
//! updated by the writer after each commit, wiped at lock.

mod columns;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};
use parking_lot::{RwLock, RwLockReadGuard};

pub use columns::{Row, TypeColumns, Visibility};

use crate::catalogue::{self, TypeIndex};
use crate::log::event::{Envelope, Event, StoredSample};

#[derive(Debug, thiserror::Error)]
#[error("the log names an unknown sample type")]
pub struct UnknownType;

/// Interned source names (the app that wrote a sample).
#[derive(Default)]
struct Sources {
    names: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, u32>,
}

impl Sources {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        let name: Arc<str> = name.into();
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }
}

pub struct Projection {
    types: Vec<RwLock<TypeColumns>>,
    /// Which types hold any row: lookups by id skip the rest without locking.
    populated: Vec<AtomicBool>,
    sources: RwLock<Sources>,
    /// Ids of deleted samples: an id is never reused.
    tombstones: RwLock<HashSet<u128>>,
}

impl Default for Projection {
    fn default() -> Self {
        Projection {
            types: catalogue::all()
                .iter()
                .map(|_| RwLock::new(TypeColumns::default()))
                .collect(),
            populated: catalogue::all()
                .iter()
                .map(|_| AtomicBool::new(false))
                .collect(),
            sources: RwLock::default(),
            tombstones: RwLock::default(),
        }
    }
}

fn row_from(sample: &StoredSample, source: u32) -> Row {
    Row {
        id: u128::from_be_bytes(sample.id),
        start_us: sample.start_us,
        start_offset_min: sample.start_offset_min,
        end_us: sample.end_us,
        end_offset_min: sample.end_offset_min,
        value: sample.value,
        source,
        metadata: sample.metadata.as_deref().map(Box::from),
    }
}

impl Projection {
    pub fn columns(&self, ty: TypeIndex) -> RwLockReadGuard<'_, TypeColumns> {
        self.types[ty.0 as usize].read()
    }

    pub fn source_id(&self, name: &str) -> Option<u32> {
        self.sources.read().ids.get(name).copied()
    }

    pub fn intern_source(&self, name: &str) -> u32 {
        if let Some(id) = self.source_id(name) {
            return id;
        }
        self.sources.write().intern(name)
    }

    pub fn source_name(&self, id: u32) -> Arc<str> {
        self.sources.read().names[id as usize].clone()
    }

    pub fn is_tombstoned(&self, id: u128) -> bool {
        self.tombstones.read().contains(&id)
    }

    /// The live sample with `id`, with its type.
    pub fn find(&self, id: u128) -> Option<(TypeIndex, Row)> {
        self.types.iter().enumerate().find_map(|(t, cols)| {
            if !self.populated[t].load(Ordering::Acquire) {
                return None;
            }
            let (row, deleted) = cols.read().find(id)?;
            (!deleted).then_some((TypeIndex(t as u16), row))
        })
    }

    /// Applies a committed event.
    pub fn apply(&self, envelope: &Envelope) -> Result<(), UnknownType> {
        match &envelope.event {
            Event::SamplesAdded { source, batches } => {
                let source = self.intern_source(source);
                for batch in batches {
                    let ty = catalogue::lookup(&batch.type_id).ok_or(UnknownType)?;
                    let rows = batch.samples.iter().map(|s| row_from(s, source)).collect();
                    self.types[ty.0 as usize].write().insert(rows);
                    self.populated[ty.0 as usize].store(true, Ordering::Release);
                }
            }
            Event::SamplesDeleted { ids, .. } => {
                let mut tombstones = self.tombstones.write();
                for id in ids {
                    let id = u128::from_be_bytes(*id);
                    tombstones.insert(id);
                    let mut populated = self
                        .types
                        .iter()
                        .enumerate()
                        .filter(|(t, _)| self.populated[*t].load(Ordering::Acquire));
                    populated.any(|(_, cols)| cols.write().delete(id));
                }
            }
            // App, grant and token events belong to the registry.
            _ => {}
        }
        Ok(())
    }

    pub fn sample_count(&self) -> usize {
        self.types.iter().map(|c| c.read().live_len()).sum()
    }

    pub fn memory_bytes(&self) -> usize {
        self.types
            .iter()
            .map(|c| c.read().memory_bytes())
            .sum::<usize>()
            + self.tombstones.read().capacity() * 17
    }

    /// Zeroises every column and forgets the tombstones.
    pub fn wipe(&self) {
        for (cols, populated) in self.types.iter().zip(&self.populated) {
            cols.write().wipe();
            populated.store(false, Ordering::Release);
        }
        let mut tombstones = self.tombstones.write();
        tombstones.clear();
        tombstones.shrink_to_fit();
    }
}

impl Drop for Projection {
    fn drop(&mut self) {
        self.wipe();
    }
}

/// Collects a whole log at unlock, then sorts and indexes once per type:
/// much cheaper than inserting record by record.
#[derive(Default)]
pub struct ProjectionBuilder {
    rows: Vec<Vec<Row>>,
    sources: Sources,
    tombstones: HashSet<u128>,
}

impl ProjectionBuilder {
    pub fn new() -> ProjectionBuilder {
        ProjectionBuilder {
            rows: catalogue::all().iter().map(|_| Vec::new()).collect(),
            ..ProjectionBuilder::default()
        }
    }

    pub fn add(&mut self, envelope: Envelope) -> Result<(), UnknownType> {
        match envelope.event {
            Event::SamplesAdded { source, batches } => {
                let source = self.sources.intern(&source);
                for batch in batches {
                    let ty = catalogue::lookup(&batch.type_id).ok_or(UnknownType)?;
                    let rows = &mut self.rows[ty.0 as usize];
                    rows.extend(batch.samples.iter().map(|s| row_from(s, source)));
                }
            }
            Event::SamplesDeleted { ids, .. } => {
                self.tombstones
                    .extend(ids.iter().map(|id| u128::from_be_bytes(*id)));
            }
            _ => {}
        }
        Ok(())
    }

    pub fn finish(self) -> Projection {
        let tombstones = self.tombstones;
        let populated = self
            .rows
            .iter()
            .map(|r| AtomicBool::new(!r.is_empty()))
            .collect();
        let types = self
            .rows
            .into_iter()
            .map(|rows| {
                let mut cols = TypeColumns::from_rows(rows, &tombstones);
                // from_rows reserves exactly; this trims the id index.
                cols.shrink_to_fit();
                RwLock::new(cols)
            })
            .collect();
        Projection {
            types,
            populated,
            sources: RwLock::new(self.sources),
            tombstones: RwLock::new(tombstones),
        }
    }
}
