//! The edge a stranger on the network meets: HTTPS with a given and with a
//! self-signed certificate, `Secure` cookies and HSTS under TLS, and the
//! `Host` allow-list that defeats DNS rebinding.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{self, TestApp, TestDatabase, PASSPHRASE};
use hearth::config::TlsArgs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A client that trusts exactly the certificate in `cert_pem`.
fn pinned_client(cert_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem).unwrap())
        .https_only(true)
        .build()
        .unwrap()
}

fn sha256_fingerprint(cert_pem: &[u8]) -> String {
    let der = CertificateDer::from_pem_slice(cert_pem).unwrap();
    let digest = Sha256::digest(der.as_ref());
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn write_owner_only(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_given_certificate_sets_secure_cookies_and_hsts() {
    let db = TestDatabase::new(support::Backend::Sqlite).await;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_path = db.dir.path().join("given-cert.pem");
    let key_path = db.dir.path().join("given-key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    write_owner_only(&key_path, key.serialize_pem().as_bytes());

    let mut args = db.serve_args();
    args.tls = TlsArgs {
        mode: None,
        tls_cert: Some(cert_path),
        tls_key: Some(key_path),
    };
    let app = TestApp::start_with(args).await;
    let port = app.addr.port();
    let client = pinned_client(cert.pem().as_bytes());
    let base = format!("https://localhost:{port}");

    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=31536000",
        "HTTPS answers carry HSTS"
    );

    let code = app.store.setup_code().unwrap();
    let r = client
        .post(format!("{base}/v1/setup"))
        .json(&json!({ "setup_code": code, "passphrase": PASSPHRASE }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = client
        .get(format!("{base}/v1/types"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the API is served over HTTPS");

    // Nothing is served in the clear on the HTTPS port.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP on the TLS port must not be answered"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_sets_no_secure_flag_and_no_hsts() {
    let db = TestDatabase::new(support::Backend::Sqlite).await;
    let app = TestApp::start(&db).await;
    let code = app.store.setup_code().unwrap();
    let r = app
        .post_json(
            "/v1/setup",
            &json!({ "setup_code": code, "passphrase": PASSPHRASE }),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("strict-transport-security").is_none());
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(!cookie.contains("Secure"), "{cookie}");
    app.stop().await;
}

/// Runs the real binary with `--tls self-signed` until it prints its
/// fingerprint and address.
fn start_self_signed(data_dir: &Path) -> (std::process::Child, String, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["serve", "--tls", "self-signed", "--listen", "127.0.0.1:0"])
        .args([
            "--log-format",
            "json",
            "--kdf-memory-kib",
            "256",
            "--kdf-iterations",
            "1",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("HEARTH_DATABASE_URL")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut fingerprint, mut port) = (None, None);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(f) = line.split("certificate SHA-256 fingerprint: ").nth(1) {
                fingerprint = Some(f.trim().to_string());
            }
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if let Some(addr) = v["fields"]["addr"].as_str() {
                    port = addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
                }
            }
            if let (Some(f), Some(p)) = (&fingerprint, port) {
                let _ = tx.send((f.clone(), p));
                fingerprint = None;
            }
        }
    });
    let (fingerprint, port) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server printed its fingerprint and address");
    (child, fingerprint, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_certificate_is_made_once_and_its_printed_fingerprint_matches() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, printed, port) = start_self_signed(dir.path());
    let cert_pem = std::fs::read(dir.path().join("tls-cert.pem")).unwrap();
    assert_eq!(printed, sha256_fingerprint(&cert_pem));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tls-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the key is readable by its owner only");
    }
    let client = pinned_client(&cert_pem);
    for host in ["localhost", "127.0.0.1"] {
        let r = client
            .get(format!("https://{host}:{port}/healthz"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{host}: {e:?}"));
        assert_eq!(r.status(), 200, "{host}");
    }
    let home = client
        .get(format!("https://localhost:{port}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        home.contains(&printed),
        "the home page shows the fingerprint the console printed"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // A restart serves the same certificate: a pinned phone keeps working.
    let (mut child, again, port) = start_self_signed(dir.path());
    assert_eq!(again, printed);
    let r = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_naming_another_host_are_refused() {
    let db = TestDatabase::new(support::Backend::Sqlite).await;
    let mut args = db.serve_args();
    args.allowed_hosts = vec!["hearth.home.arpa".into()];
    let app = TestApp::start_with(args).await;
    let client = reqwest::Client::new();
    let port = app.addr.port();
    for (host, allowed) in [
        ("127.0.0.1", true),
        ("localhost", true),
        ("hearth.home.arpa", true),
        ("HEARTH.home.arpa", true),
        ("rebind.evil.example", false),
        ("hearth.home.arpa.evil.example", false),
    ] {
        for path in [
            "/healthz",
            "/",
            "/v1/unlock",
            "/.well-known/oauth-authorization-server",
        ] {
            let r = client
                .get(app.url(path))
                .header("host", format!("{host}:{port}"))
                .send()
                .await
                .unwrap();
            if allowed {
                assert_ne!(r.status(), 421, "{host}{path}");
            } else {
                assert_eq!(r.status(), 421, "{host}{path}");
                assert_eq!(r.headers()["content-type"], "application/problem+json");
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["code"], "host_not_allowed", "{host}{path}");
            }
        }
    }
    app.stop().await;
}

/// Sends `request` every 200 ms for `for_secs`, then reports the lock state.
async fn keep_asking<F, Fut>(app: &TestApp, for_secs: u64, request: F) -> String
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let until = std::time::Instant::now() + Duration::from_secs(for_secs);
    while std::time::Instant::now() < until {
        let _ = request().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    ready["state"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_keeps_the_store_from_idle_locking() {
    let db = TestDatabase::new(support::Backend::Sqlite).await;
    let mut args = db.serve_args();
    args.idle_lock_secs = 3;
    let mut app = TestApp::start_with(args).await;
    app.setup().await;
    let client_id = app
        .register_app("Background Sync", "http://127.0.0.1/cb", false)
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let app_token = app.mint(&client_id, &["step_count"], &["step_count"]).await;

    // The owner's requests keep it open past the timeout.
    let state = keep_asking(&app, 5, || app.get("/v1/samples?type=step_count")).await;
    assert_eq!(state, "unlocked", "the owner's activity resets the timer");

    // A stranger's requests (answered 401) and an app syncing in the
    // background do not.
    let state = keep_asking(&app, 5, || async {
        let _ = app
            .client
            .get(app.url("/v1/samples?type=step_count"))
            .send()
            .await;
        app.as_token(&app_token)
            .get("/v1/samples?type=step_count")
            .await
    })
    .await;
    assert_eq!(state, "locked", "only the owner keeps the store unlocked");
    app.stop().await;
}

/// A client whose connections come from another loopback address: another
/// host on the network, as far as the server can tell.
fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_wrong_guesses_do_not_lock_the_owner_out() {
    let db = TestDatabase::new(support::Backend::Sqlite).await;
    let mut app = TestApp::unlocked(&db).await;
    assert_eq!(app.post_json("/v1/lock", &json!({})).await.status(), 204);

    let stranger = client_from("127.0.0.2");
    let unlock_url = app.url("/v1/unlock");
    let guess = || {
        stranger
            .post(&unlock_url)
            .json(&json!({ "passphrase": "not the passphrase at all" }))
            .send()
    };
    let first = guess().await.unwrap();
    assert_eq!(first.status(), 401, "a wrong guess is refused");
    let second = guess().await.unwrap();
    assert_eq!(second.status(), 429, "and the stranger backs off");

    // The owner, at another address, unlocks at once.
    let r = app.unlock().await;
    assert_eq!(r.status(), 200, "the owner is not held up by the stranger");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["state"], "unlocked");

    // The stranger is still backing off.
    assert_eq!(guess().await.unwrap().status(), 429);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_endpoints_refuse_large_bodies_before_reading_them() {
    let db = TestDatabase::new(support::Backend::Sqlite).await;
    let app = TestApp::start(&db).await;
    let client = reqwest::Client::new();
    let long = "x".repeat(8 * 1024);
    for (path, body, content_type) in [
        (
            "/v1/setup",
            json!({ "setup_code": long, "passphrase": "long enough passphrase" }).to_string(),
            "application/json",
        ),
        (
            "/v1/unlock",
            json!({ "passphrase": long }).to_string(),
            "application/json",
        ),
        (
            "/oauth/token",
            format!("grant_type=refresh_token&client_id=app_x&refresh_token={long}"),
            "application/x-www-form-urlencoded",
        ),
        (
            "/oauth/revoke",
            format!("token={long}"),
            "application/x-www-form-urlencoded",
        ),
    ] {
        let r = client
            .post(app.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413, "{path}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
    }
    // A body of ordinary size is read as before.
    let r = client
        .post(app.url("/v1/unlock"))
        .json(&json!({ "passphrase": "x".repeat(3000) }))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 413);
    app.stop().await;
}
