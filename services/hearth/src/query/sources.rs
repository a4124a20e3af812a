//! Where a sample comes from: the app that wrote it (assigned by the server
//! from the caller) and, optionally, the device that measured it. The pair is
//! an [`Origin`]; overlapping samples of different origins are merged by a
//! priority order the owner sets, falling back to the kind of device
//! (a wearable over a phone over other devices over manual entry).

use std::sync::Arc;

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

/// The source of the owner's own entries (the owner's session).
const OWNER: &str = "owner";

/// Interned app and device of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub source: u32,
    pub device: u16,
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

/// A snapshot of the interned sources and devices.
pub struct SourceTable {
    names: Vec<Arc<str>>,
    devices: Vec<Device>,
}

impl SourceTable {
    pub fn of(projection: &Projection) -> SourceTable {
        SourceTable {
            names: projection.source_names(),
            devices: projection.device_list(),
        }
    }

    pub fn source_name(&self, o: Origin) -> &str {
        self.names.get(o.source as usize).map_or("", |n| n)
    }

    pub fn device(&self, o: Origin) -> Option<&Device> {
        o.device
            .checked_sub(1)
            .and_then(|i| self.devices.get(usize::from(i)))
    }

    /// Whether `key` names this origin: the app, and the device name if given.
    pub fn matches(&self, o: Origin, key: &SourceKey) -> bool {
        self.source_name(o) == key.source
            && match &key.device {
                None => true,
                Some(name) => self.device(o).is_some_and(|d| d.name == *name),
            }
    }

    /// Sort key: the owner's order first, then the kind of device, then a
    /// stable tie-break.
    pub fn rank(&self, o: Origin, order: &[SourceKey]) -> (usize, u8, u32, u16) {
        let listed = order
            .iter()
            .position(|k| self.matches(o, k))
            .unwrap_or(usize::MAX);
        let kind = self.device(o).and_then(|d| d.kind.as_deref());
        (
            listed,
            kind_rank(kind, self.source_name(o)),
            o.source,
            o.device,
        )
    }

    /// Orders origins by what they are (app name, then device fields), never
    /// by when they were first seen, which other sources could influence.
    pub fn sort(&self, origins: &mut [Origin]) {
        origins.sort_by_cached_key(|&o| {
            let device = self.device(o).map(|d| {
                (
                    d.name.clone(),
                    d.model.clone(),
                    d.manufacturer.clone(),
                    d.kind.clone(),
                )
            });
            (self.source_name(o).to_string(), device)
        });
    }

    /// The origin as the API shows it.
    pub fn describe(&self, o: Origin) -> SourceInfo {
        SourceInfo {
            source: self.source_name(o).to_string(),
            device: self.device(o).map(crate::wire::samples::Device::from),
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
