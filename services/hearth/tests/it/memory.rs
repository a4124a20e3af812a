//! What the process still holds once the store is locked: nothing of the
//! owner's data or passphrase, anywhere in its readable memory. The server
//! runs in this process with the allocator its binary uses (every block
//! zeroed as it is freed); the test writes and reads samples whose
//! metadata and device name carry random markers, locks the store, closes
//! its connections and reads every mapping of `/proc/self/mem` for them.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

both_backends!(nothing_of_the_data_or_passphrase_is_left_in_memory_after_lock);

/// A random marker, kept as two halves in blocks of different sizes so the
/// test's own copy never appears whole in memory.
struct Marker {
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Marker {
    fn new(label: &str) -> Marker {
        let mut random = [0u8; 12];
        std::fs::File::open("/dev/urandom")
            .unwrap()
            .read_exact(&mut random)
            .unwrap();
        let text = format!("{label}{}", hex_string(&random));
        let (a, b) = text.as_bytes().split_at(text.len() / 2);
        let mut head = Vec::with_capacity(4096);
        head.extend_from_slice(a);
        let mut tail = Vec::with_capacity(32);
        tail.extend_from_slice(b);
        Marker { head, tail }
    }

    /// The whole marker, for a request; the caller drops it (and the
    /// allocator zeroes it) before memory is read.
    fn text(&self) -> String {
        let mut whole = self.head.clone();
        whole.extend_from_slice(&self.tail);
        String::from_utf8(whole).unwrap()
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where `marker` appears whole in this process's readable memory: the
/// mapping (a line of `/proc/self/maps`) and the address, per place.
fn places_in_memory(marker: &Marker) -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mem = std::fs::File::open("/proc/self/mem").unwrap();
    let finder = memchr::memmem::Finder::new(&marker.head);
    const CHUNK: usize = 4 << 20;
    let overlap = marker.head.len() + marker.tail.len();
    let mut buf = vec![0u8; CHUNK + overlap];
    let mut found = Vec::new();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(range), Some(perms)) = (fields.first(), fields.get(1)) else {
            continue;
        };
        let name = fields.get(5).copied().unwrap_or("");
        if !perms.starts_with('r') || name.starts_with("[vvar") || name == "[vsyscall]" {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let mut at = start;
        while at < end {
            let len = ((end - at) as usize).min(CHUNK + overlap);
            // Mappings that cannot be read (guard pages) hold nothing.
            let Ok(n) = mem.read_at(&mut buf[..len], at) else {
                break;
            };
            let window = &buf[..n];
            for pos in finder.find_iter(window) {
                let rest = &window[pos + marker.head.len()..];
                if rest.starts_with(&marker.tail) {
                    found.push(format!("{:#x} in {line}", at + pos as u64));
                }
            }
            if n < len {
                break;
            }
            at += CHUNK as u64;
        }
    }
    // The buffer held copies of what it read: zeroed as it is freed.
    drop(buf);
    found
}

async fn nothing_of_the_data_or_passphrase_is_left_in_memory_after_lock(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::start(&db).await;
    let passphrase = Marker::new("passphrase-");
    let metadata = Marker::new("metadata-");
    let device = Marker::new("device-");
    // Requests that carry a marker go on connections of their own, closed
    // before memory is read.
    {
        let client = reqwest::Client::new();
        let code = app.store.setup_code().expect("a new store");
        let r = client
            .post(app.url("/v1/setup"))
            .json(&json!({ "setup_code": code, "passphrase": passphrase.text() }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        app.token = Some(body["token"].as_str().unwrap().to_string());
        let token = app.token.clone().unwrap();
        let mut samples = Vec::new();
        for minute in 0..200 {
            let mut s = steps(minute, 10.0 + minute as f64);
            s["metadata"] = json!({ "note": metadata.text() });
            s["device"] = json!({ "name": device.text(), "kind": "watch" });
            samples.push(s);
        }
        let r = client
            .post(app.url("/v1/samples"))
            .bearer_auth(&token)
            .json(&json!({ "samples": samples }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        drop(samples);
        for path in [
            "/v1/samples?type=step_count&limit=500",
            "/v1/sources?type=step_count",
        ] {
            let r = client
                .get(app.url(path))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let text = r.text().await.unwrap();
            assert!(text.contains(&device.text()), "{path}: {text}");
        }
        // Unlocking again hands over the passphrase once more.
        let r = client
            .post(app.url("/v1/lock"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let r = client
            .post(app.url("/v1/unlock"))
            .json(&json!({ "passphrase": passphrase.text() }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        let token = body["token"].as_str().unwrap().to_string();
        let r = client
            .get(app.url("/v1/samples?type=step_count&limit=500"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(r.text().await.unwrap().contains(&metadata.text()));
        let r = client
            .post(app.url("/v1/lock"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    assert_eq!(
        app.store.state(),
        hearth::lock::LockStateName::Locked,
        "locked"
    );
    // The server frees a connection's buffers once it notices the close:
    // on a busy machine that can take a moment, so look a few times.
    let markers = [
        ("the passphrase", &passphrase),
        ("a sample's metadata", &metadata),
        ("a device's name", &device),
    ];
    let mut left = Vec::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        left = markers
            .iter()
            .map(|(what, marker)| (*what, places_in_memory(marker)))
            .filter(|(_, places)| !places.is_empty())
            .collect();
        if left.is_empty() {
            break;
        }
    }
    let report: Vec<String> = left
        .iter()
        .map(|(what, places)| {
            format!(
                "{what} is still in memory after lock:\n{}",
                places.join("\n")
            )
        })
        .collect();
    assert!(report.is_empty(), "{}", report.join("\n"));
    // The scan can find what is there: the markers are in memory while a
    // copy of them lives.
    let copy = metadata.text();
    assert!(
        !places_in_memory(&metadata).is_empty(),
        "the scan sees a live copy"
    );
    drop(copy);
    app.stop().await;
}
