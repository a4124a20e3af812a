//! Telemetry privacy: a workload full of markers runs through the real
//! binary exporting to a real OTLP/HTTP receiver on loopback; no span, metric
//! or log line may carry a value, type name, metadata, token or passphrase.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use serde_json::{json, Value};

type Captured = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn capture(State(store): State<Captured>, uri: Uri, body: Bytes) -> &'static str {
    store
        .lock()
        .unwrap()
        .push((uri.path().to_string(), body.to_vec()));
    ""
}

/// A minimal OTLP/HTTP receiver that keeps every request body.
async fn start_receiver() -> (String, Captured) {
    let captured: Captured = Arc::default();
    let app = axum::Router::new()
        .fallback(capture)
        .with_state(captured.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, captured)
}

const PASSPHRASE: &str = "passphrase-MARKER-Hx81";
const WRONG_PASSPHRASE: &str = "wrong-MARKER-Qz55-passphrase";
const METADATA_MARKER: &str = "metadata-MARKER-Lp03";
const TYPE_MARKER: &str = "typename-MARKER-Wv27";
const APP_MARKER: &str = "appname-MARKER-Nd64";
const PURPOSE_MARKER: &str = "purpose-MARKER-Rb19";
const CREDENTIAL_MARKER: &str = "credential-MARKER-Ty38";
const GLUCOSE: f64 = 123.4567;
const STEPS: f64 = 8675.309;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_carries_no_health_data() {
    let (otlp, captured) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--kdf-memory-kib", "256", "--kdf-iterations", "1"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp)
        .env("OTEL_METRIC_EXPORT_INTERVAL", "300")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("HEARTH_LOG", "hearth=trace,info")
        .env_remove("HEARTH_DATABASE_URL")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr_lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel::<(String, String)>();
    {
        let lines = stderr_lines.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let (mut addr, mut code) = (None, None);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(c) = line.strip_prefix("hearth: this store is new. Setup code: ") {
                    code = Some(c.trim().to_string());
                }
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if let Some(a) = v["fields"]["addr"].as_str() {
                        addr = Some(a.to_string());
                    }
                }
                if let (Some(a), Some(c)) = (&addr, &code) {
                    let _ = tx.send((a.clone(), c.clone()));
                }
                lines.lock().unwrap().push(line);
            }
        });
    }
    let (addr, code) = rx.recv_timeout(Duration::from_secs(20)).expect("server up");
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();

    let r = http
        .post(format!("{base}/v1/setup"))
        .json(&json!({ "setup_code": code, "passphrase": PASSPHRASE }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let sync_id = uuid::Uuid::new_v4();
    let samples = json!({ "samples": [
        { "sync_id": sync_id.to_string(), "type": "blood_glucose", "start": "2026-02-01T08:00:00+01:00",
          "end": "2026-02-01T08:00:00+01:00", "value": GLUCOSE, "unit": "mg/dL",
          "metadata": { "note": METADATA_MARKER } },
        { "type": "step_count", "start": "2026-02-01T08:00:00+01:00",
          "end": "2026-02-01T08:10:00+01:00", "value": STEPS, "unit": "count" },
    ]});
    let post = |body: Value| {
        http.post(format!("{base}/v1/samples"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let r = post(samples.clone()).await.unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(post(samples).await.unwrap().status().is_success());
    let bad = json!({ "samples": [{ "type": TYPE_MARKER, "start": "2026-02-01T08:00:00Z",
        "end": "2026-02-01T08:00:00Z", "value": 1, "unit": METADATA_MARKER }]});
    assert_eq!(post(bad).await.unwrap().status(), 400);
    for path in [
        "/v1/samples?type=blood_glucose".to_string(),
        "/v1/statistics?type=step_count".to_string(),
        format!("/v1/samples/{id}?unit=mmol/L"),
        format!("/v1/samples?type={TYPE_MARKER}"),
    ] {
        http.get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
    }
    // An app, registered with marker text, writing and reading with its own credential.
    let app: Value = http
        .post(format!("{base}/v1/apps"))
        .bearer_auth(&token)
        .json(&json!({
            "name": APP_MARKER, "description": APP_MARKER, "purpose": PURPOSE_MARKER,
            "privacy_policy_url": "https://app.example/privacy-MARKER",
            "redirect_uris": ["http://127.0.0.1/callback-MARKER"], "client_type": "public",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let app_id = app["id"].as_str().expect("app registered").to_string();
    let credential: Value = http
        .post(format!("{base}/v1/apps/{app_id}/credentials"))
        .bearer_auth(&token)
        .json(
            &json!({ "name": CREDENTIAL_MARKER, "read": ["heart_rate"], "write": ["heart_rate"] }),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let app_token = credential["token"]
        .as_str()
        .expect("credential")
        .to_string();
    let r = http
        .post(format!("{base}/v1/samples"))
        .bearer_auth(&app_token)
        .json(
            &json!({ "samples": [{ "type": "heart_rate", "start": "2026-02-01T08:00:00Z",
            "end": "2026-02-01T08:00:00Z", "value": 61, "unit": "count/min" }]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for path in [
        "/v1/samples?type=heart_rate",
        "/v1/samples?type=blood_glucose",
    ] {
        http.get(format!("{base}{path}"))
            .bearer_auth(&app_token)
            .send()
            .await
            .unwrap();
    }
    http.post(format!("{base}/v1/lock"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let r = http
        .post(format!("{base}/v1/unlock"))
        .json(&json!({ "passphrase": WRONG_PASSPHRASE }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Let metrics export at least once, then stop gracefully so everything flushes.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "hearth exited with {exit}");

    let captured = captured.lock().unwrap().clone();
    let logs = stderr_lines.lock().unwrap().join("\n");
    let traces: Vec<u8> = captured
        .iter()
        .filter(|(p, _)| p == "/v1/traces")
        .flat_map(|(_, b)| b.clone())
        .collect();
    let metrics: Vec<u8> = captured
        .iter()
        .filter(|(p, _)| p == "/v1/metrics")
        .flat_map(|(_, b)| b.clone())
        .collect();
    // The search is not vacuous: spans, metrics and logs did arrive.
    assert!(contains(&traces, b"/v1/samples"), "request spans exported");
    assert!(contains(&traces, b"commit"), "commit spans exported");
    assert!(contains(&metrics, b"hearth.http.server.request.duration"));
    assert!(contains(&metrics, b"hearth.log.commit.samples"));
    assert!(contains(&metrics, b"hearth.projection.samples"));
    assert!(logs.contains("listening"));

    let mut needles: Vec<(&str, Vec<u8>)> = vec![
        ("passphrase", PASSPHRASE.into()),
        ("wrong passphrase", WRONG_PASSPHRASE.into()),
        ("metadata", METADATA_MARKER.into()),
        ("unknown type name", TYPE_MARKER.into()),
        ("type blood_glucose", b"blood_glucose".to_vec()),
        ("type step_count", b"step_count".to_vec()),
        ("owner token", token.clone().into_bytes()),
        ("app token", app_token.clone().into_bytes()),
        ("app name", APP_MARKER.into()),
        ("app purpose", PURPOSE_MARKER.into()),
        ("credential name", CREDENTIAL_MARKER.into()),
        ("app id", app_id.clone().into_bytes()),
        ("redirect uri", b"callback-MARKER".to_vec()),
        ("privacy policy", b"privacy-MARKER".to_vec()),
        ("type heart_rate", b"heart_rate".to_vec()),
        ("sample id", id.clone().into_bytes()),
        ("sync id", sync_id.to_string().into_bytes()),
        ("glucose text", b"123.4567".to_vec()),
        ("steps text", b"8675.309".to_vec()),
        ("glucose double", GLUCOSE.to_le_bytes().to_vec()),
        ("steps double", STEPS.to_le_bytes().to_vec()),
        ("unit", b"mg/dL".to_vec()),
        ("setup code", code.clone().into_bytes()),
    ];
    needles.retain(|(_, n)| !n.is_empty());
    for (path, body) in &captured {
        for (name, needle) in &needles {
            assert!(!contains(body, needle), "{name} leaked into OTLP {path}");
        }
    }
    for (name, needle) in &needles {
        if *name == "setup code" {
            continue; // printed on the console on purpose, once
        }
        assert!(
            !contains(logs.as_bytes(), needle),
            "{name} leaked into the logs"
        );
    }
}
