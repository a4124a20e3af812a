//! Workout routes: GPX 1.1 files (`trkpt` with `ele` and `time`) in new
//! exports, inline `Location` elements in old ones.

use quick_xml::events::Event;
use quick_xml::Reader;

use super::map;
use super::xml::Element;
use crate::wire::samples::RoutePoint;

type Partial = (Option<f64>, Option<f64>, Option<f64>, Option<String>);

/// The track points of a GPX file; points without a time or position are
/// left out.
pub fn parse(data: &[u8]) -> Result<Vec<RoutePoint>, String> {
    let mut reader = Reader::from_reader(data);
    reader.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut points = Vec::new();
    // Latitude, longitude, elevation and time of the point being read.
    let mut point: Option<Partial> = None;
    let mut field: Option<&'static str> = None;
    loop {
        buf.clear();
        match reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("malformed GPX: {e}"))?
        {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == b"trkpt" => {
                let mut lat = None;
                let mut lon = None;
                for a in e.attributes().flatten() {
                    let v = std::str::from_utf8(&a.value)
                        .ok()
                        .and_then(|s| s.parse().ok());
                    match a.key.local_name().as_ref() {
                        b"lat" => lat = v,
                        b"lon" => lon = v,
                        _ => {}
                    }
                }
                point = Some((lat, lon, None, None));
            }
            Event::Start(e) => {
                field = match e.local_name().as_ref() {
                    b"ele" => Some("ele"),
                    b"time" => Some("time"),
                    _ => None,
                };
            }
            Event::Text(t) => {
                if let (Some(f), Some(p)) = (field, point.as_mut()) {
                    let text = String::from_utf8_lossy(&t).trim().to_string();
                    match f {
                        "ele" => p.2 = text.parse().ok(),
                        _ => p.3 = Some(text),
                    }
                }
            }
            Event::End(e) => {
                if e.local_name().as_ref() == b"trkpt" {
                    if let Some((Some(lat), Some(lon), alt, Some(time))) = point.take() {
                        points.push(RoutePoint {
                            time,
                            lat,
                            lon,
                            alt,
                        });
                    }
                }
                field = None;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(points)
}

/// The inline `Location` points of an old export's `WorkoutRoute`.
pub fn locations(route: &Element) -> Vec<RoutePoint> {
    route
        .children_named("Location")
        .filter_map(|l| {
            Some(RoutePoint {
                time: map::date(l.attr("date")?)?,
                lat: l.attr("latitude")?.parse().ok()?,
                lon: l.attr("longitude")?.parse().ok()?,
                alt: l.attr("altitude").and_then(|a| a.parse().ok()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn track_points() {
        let gpx = br#"<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="Apple Health Export" xmlns="http://www.topografix.com/GPX/1/1">
 <trk><name>Route</name><trkseg>
  <trkpt lon="-122.1" lat="37.3"><ele>12.5</ele><time>2019-07-19T17:36:11Z</time>
   <extensions><speed>2.1</speed><course>90</course><hAcc>3</hAcc><vAcc>2</vAcc></extensions></trkpt>
  <trkpt lon="-122.2" lat="37.4"><ele>13</ele><time>2019-07-19T17:36:12Z</time></trkpt>
 </trkseg></trk></gpx>"#;
        let points = super::parse(gpx).unwrap();
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].lat, 37.3);
        assert_eq!(points[0].alt, Some(12.5));
        assert_eq!(points[1].time, "2019-07-19T17:36:12Z");
    }
}
