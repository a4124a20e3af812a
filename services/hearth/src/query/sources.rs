//! Where a sample comes from: the app that wrote it (assigned by the server
//! from the caller) and, optionally, the device that measured it. The pair is
//! an [`Origin`]; overlapping samples of different origins are merged by a
//! priority order the owner sets, falling back to the kind of device
//! (a wearable over a phone over other devices over manual entry).

use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::Mutex;

use crate::log::event::{Device, SourceKey};
use crate::projection::Projection;
use crate::wire::queries::SourceInfo;

/// Device kinds a sample may name.
pub const DEVICE_KINDS: &[&str] = &[
    "watch",
    "ring",
    "band",
    "phone",
    "tablet",
    "scale",
    "blood_pressure_monitor",
    "glucose_meter",
    "thermometer",
    "pulse_oximeter",
    "other",
    "manual",
];

/// Most series one `by_source` answer holds: as many origins as one source
/// can have (its devices, plus its samples without a device), so an app's
/// own data always fits; beyond it the answer is refused, not cut short.
pub const MAX_SERIES: usize = crate::log::writer::MAX_DEVICES_PER_SOURCE + 1;

/// The source of the owner's own entries (the owner's session).
const OWNER: &str = "owner";

/// Interned app and device of a sample: the source's id and the device's
/// slot within that source. Ids say nothing about order: what a caller is
/// shown is ordered by names ([`SourceTable::display_key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub source: u32,
    pub device: u16,
}

impl Origin {
    /// The origin of row `r` of `cols`.
    pub fn of(cols: &crate::projection::TypeColumns, r: usize) -> Origin {
        Origin {
            source: cols.sources()[r],
            device: cols.device_of(r),
        }
    }
}

/// Default rank of a kind of source: lower wins.
pub fn kind_rank(kind: Option<&str>, source: &str) -> u8 {
    match kind {
        Some("watch" | "ring" | "band") => 0,
        Some("phone" | "tablet") => 1,
        Some("manual") => 4,
        Some(_) => 2,
        // Samples the owner typed in without naming a device.
        None if source == OWNER => 4,
        None => 3,
    }
}

/// What an origin looks like: its app's name and its device.
#[derive(Clone)]
struct Named {
    source: Arc<str>,
    device: Option<Arc<Device>>,
}

/// An origin's place in what a caller is shown: app name, then the device's
/// name, model, manufacturer and kind (no device first). Derived from names
/// alone, so hidden sources and devices never move it.
pub type DisplayKey = (Arc<str>, Option<[Option<Arc<str>>; 4]>);

/// Names of the origins a query meets, looked up as they come: a query
/// touches only the origins it sees, never copies the whole table.
pub struct SourceTable<'a> {
    projection: &'a Projection,
    seen: Mutex<HashMap<Origin, Named>>,
}

impl<'a> SourceTable<'a> {
    pub fn of(projection: &'a Projection) -> SourceTable<'a> {
        SourceTable {
            projection,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `f` on the names of `o`, looked up the first time only.
    fn with_named<R>(&self, o: Origin, f: impl FnOnce(&Named) -> R) -> R {
        let mut seen = self.seen.lock();
        let named = seen.entry(o).or_insert_with(|| Named {
            source: self
                .projection
                .source_name_checked(o.source)
                .unwrap_or_else(|| Arc::from("")),
            device: self.projection.device_shared(o.source, o.device),
        });
        f(named)
    }

    fn named(&self, o: Origin) -> Named {
        self.with_named(o, Named::clone)
    }

    pub fn source_name(&self, o: Origin) -> Arc<str> {
        self.named(o).source
    }

    pub fn device(&self, o: Origin) -> Option<Arc<Device>> {
        self.named(o).device
    }

    /// Whether `key` names this origin: the app, and the device name if given.
    pub fn matches(&self, o: Origin, key: &SourceKey) -> bool {
        self.with_named(o, |named| {
            *named.source == *key.source
                && match &key.device {
                    None => true,
                    Some(name) => named.device.as_ref().is_some_and(|d| *d.name == **name),
                }
        })
    }

    /// The order origins are listed in where priority plays no part.
    pub fn display_key(&self, o: Origin) -> DisplayKey {
        let named = self.named(o);
        let device = named.device.map(|d| {
            [
                Some(d.name.clone()),
                d.model.clone(),
                d.manufacturer.clone(),
                d.kind.clone(),
            ]
        });
        (named.source, device)
    }

    /// Sort key: the owner's order first, then the kind of device, then
    /// names (never ids, which depend on what else the store holds).
    pub fn rank(&self, o: Origin, order: &[SourceKey]) -> (usize, u8, DisplayKey) {
        let listed = order
            .iter()
            .position(|k| self.matches(o, k))
            .unwrap_or(usize::MAX);
        let named = self.named(o);
        let kind = named.device.as_deref().and_then(|d| d.kind.as_deref());
        (listed, kind_rank(kind, &named.source), self.display_key(o))
    }

    /// Orders origins by what they are (app name, then device fields), never
    /// by when they were first seen, which other sources could influence.
    pub fn sort(&self, origins: &mut [Origin]) {
        origins.sort_by_cached_key(|&o| self.display_key(o));
    }

    /// The origin as the API shows it.
    pub fn describe(&self, o: Origin) -> SourceInfo {
        let named = self.named(o);
        SourceInfo {
            source: named.source.to_string(),
            device: named
                .device
                .as_deref()
                .map(crate::wire::samples::Device::from),
        }
    }
}

/// Parses `sources=` : comma-separated `app` or `app/device name`.
pub fn parse_filter(text: &str) -> Result<Vec<SourceKey>, String> {
    let keys: Vec<SourceKey> = text
        .split(',')
        .map(|item| {
            let item = item.trim();
            if item.is_empty() {
                return Err("empty source name".to_string());
            }
            Ok(match item.split_once('/') {
                Some((source, device)) => SourceKey {
                    source: source.to_string(),
                    device: Some(device.to_string()),
                },
                None => SourceKey {
                    source: item.to_string(),
                    device: None,
                },
            })
        })
        .collect::<Result<_, _>>()?;
    if keys.len() > 64 {
        return Err("at most 64 sources".into());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wearables_beat_phones_beat_manual_entry() {
        assert!(kind_rank(Some("watch"), "a") < kind_rank(Some("phone"), "a"));
        assert!(kind_rank(Some("phone"), "a") < kind_rank(Some("scale"), "a"));
        assert!(kind_rank(Some("scale"), "a") < kind_rank(None, "app"));
        assert!(kind_rank(None, "app") < kind_rank(None, OWNER));
        assert_eq!(kind_rank(Some("manual"), "a"), kind_rank(None, OWNER));
    }

    #[test]
    fn filters_parse() {
        let keys = parse_filter("owner/Apple Watch,health_app").unwrap();
        assert_eq!(keys[0].device.as_deref(), Some("Apple Watch"));
        assert_eq!(keys[1].source, "health_app");
        assert!(parse_filter("a,,b").is_err());
    }
}
