//! Synthetic projections for benchmarks and tests, built without a log.

use crate::log::event::{Device, DeviceGroup, Envelope, Event, StoredSample, TypeBatch};
use crate::projection::{Projection, ProjectionBuilder};

/// Minute-level `step_count` samples for `days` days from `start_us` (UTC
/// microseconds), written by the owner from a watch and a phone whose
/// samples overlap for every minute (the phone's are shifted by 30 s): about
/// 2 × 1440 × `days` samples. Five years is `days = 1826`, about 5.3 M
/// samples.
pub fn overlapping_minute_steps(start_us: i64, days: i64) -> Projection {
    const MINUTE: i64 = 60_000_000;
    let device = |name: &str, kind: &str| Device {
        name: name.into(),
        model: None,
        manufacturer: None,
        kind: Some(kind.into()),
    };
    let mut builder = ProjectionBuilder::new();
    let mut seq = 0;
    let minutes = days * 1440;
    let per_record = 10_000;
    let mut m = 0;
    let mut id: u128 = 1;
    while m < minutes {
        let upto = (m + per_record).min(minutes);
        let make = |shift: i64, id: &mut u128| -> Vec<StoredSample> {
            (m..upto)
                .map(|i| {
                    *id += 1;
                    let start = start_us + i * MINUTE + shift;
                    StoredSample {
                        id: id.to_be_bytes(),
                        start_us: start,
                        start_offset_min: 60,
                        end_us: start + MINUTE,
                        end_offset_min: 60,
                        value: (i % 97) as f64,
                        metadata: None,
                    }
                })
                .collect()
        };
        let watch = make(0, &mut id);
        let phone = make(MINUTE / 2, &mut id);
        let batch = |samples| {
            vec![TypeBatch {
                type_id: "step_count".into(),
                samples,
            }]
        };
        seq += 1;
        builder
            .add(
                seq,
                Envelope {
                    at_us: 0,
                    event: Event::DeviceSamplesAdded {
                        source: "owner".into(),
                        groups: vec![
                            DeviceGroup {
                                device: Some(device("Watch", "watch")),
                                batches: batch(watch),
                            },
                            DeviceGroup {
                                device: Some(device("Phone", "phone")),
                                batches: batch(phone),
                            },
                        ],
                    },
                },
            )
            .expect("step_count is in the catalogue");
        m = upto;
    }
    builder.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_projection_stays_under_64_bytes_per_sample() {
        let p = super::overlapping_minute_steps(0, 30);
        let n = p.sample_count();
        assert_eq!(n, 2 * 30 * 1440);
        // With the merged series of the type cached, as after a bucket query.
        let ty = crate::catalogue::lookup("step_count").unwrap();
        let cols = p.columns(ty);
        let table = crate::query::sources::SourceTable::of(&p);
        let series = crate::query::buckets::series_for(&p, ty, &cols, None, &table);
        drop(cols);
        let per_sample = (p.memory_bytes() + series.memory_bytes()) as f64 / n as f64;
        assert!(per_sample < 64.0, "{per_sample} bytes per sample");
    }
}
