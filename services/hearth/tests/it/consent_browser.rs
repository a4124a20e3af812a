//! The consent page in a real browser: headless Chromium driven over the
//! WebDriver protocol. The owner logs in with the passphrase, turns all
//! requested types on, switches some off again, and allows; the grants that
//! result must match the switches exactly.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{query_param, Backend, Pkce, TestApp, TestDatabase, PASSPHRASE};
use serde_json::{json, Value};

both_backends!(owner_switches_types_off_and_grants_match);

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // On a failed assertion the session is still open: end it first, or
        // killing chromedriver would leave the browser running.
        if let Some(session) = self.session.take() {
            delete_session_blocking(&self.base, &session);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `DELETE /session/{id}` without an async runtime (we may be unwinding).
fn delete_session_blocking(base: &str, session: &str) {
    use std::io::{Read, Write};
    let Some(addr) = base.strip_prefix("http://") else {
        return;
    };
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Driver {
    async fn start() -> Option<Driver> {
        if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists()
        {
            // CI installs both (.ci/run); there, a missing browser fails.
            assert!(
                std::env::var_os("CI").is_none(),
                "{CHROMEDRIVER} and {CHROMIUM} are required when CI is set"
            );
            eprintln!("skipping: chromium or chromedriver not installed");
            return None;
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            session: None,
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
            {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--user-data-dir={}", driver._profile.path().display()),
        ];
        let r: Value = driver
            .http
            .post(format!("{}/session", driver.base))
            .json(&json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": CHROMIUM, "args": args }
            }}}))
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_string();
        driver.session = Some(session);
        Some(driver)
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/session/{}{path}",
            self.base,
            self.session.as_deref().unwrap()
        )
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut rb = self.http.request(method, self.url(path));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r: Value = rb.send().await.unwrap().json().await.unwrap();
        if r["value"].get("error").is_some() {
            panic!("WebDriver {path}: {r}");
        }
        r["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn selected(&self, css: &str) -> bool {
        let e = self.find(css).await;
        self.cmd(
            reqwest::Method::GET,
            &format!("/element/{e}/selected"),
            None,
        )
        .await
        .as_bool()
        .unwrap()
    }

    async fn current_url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn page_text(&self) -> String {
        let body = self.find("body").await;
        self.cmd(reqwest::Method::GET, &format!("/element/{body}/text"), None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    async fn quit(mut self) {
        if self.session.is_some() {
            let _ = self.http.delete(self.url("")).send().await;
            self.session = None;
        }
    }
}

/// The native app's loopback listener: answers every request with "done".
async fn loopback_app() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndone",
                    )
                    .await;
            });
        }
    });
    port
}

async fn owner_switches_types_off_and_grants_match(backend: Backend) {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app
        .register_app("Sleep Diary", "http://127.0.0.1/callback", false)
        .await;
    let client_id = reg["id"].as_str().unwrap();
    let port = loopback_app().await;
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let pkce = Pkce::new();
    let scope =
        "read:step_count read:heart_rate read:sleep_analysis write:sleep_analysis write:body_mass";
    let mut url = reqwest::Url::parse(&app.url("/oauth/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", scope)
        .append_pair("state", "xyz")
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256");

    driver.goto(url.as_str()).await;
    let text = driver.page_text().await;
    assert!(text.contains("Sleep Diary"), "{text}");
    assert!(
        text.contains("Sleep Diary shows your trends"),
        "purpose shown"
    );
    // Everything starts off; "Turn all on" switches every type on.
    assert!(!driver.selected("input[name='read:heart_rate']").await);
    driver.click("#all-on").await;
    for s in scope.split(' ') {
        assert!(driver.selected(&format!("input[name='{s}']")).await, "{s}");
    }
    // The owner switches two types off again, read and write apart.
    driver.click("input[name='read:heart_rate']").await;
    driver.click("input[name='write:body_mass']").await;
    driver.type_into("#passphrase", PASSPHRASE).await;
    driver.click("#allow").await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let landed = loop {
        let current = driver.current_url().await;
        if current.starts_with(&redirect) {
            break current;
        }
        if Instant::now() > deadline {
            let text = driver.page_text().await;
            panic!("no redirect; at {current}: {text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    driver.quit().await;
    assert_eq!(query_param(&landed, "state").as_deref(), Some("xyz"));
    let code = query_param(&landed, "code").unwrap();

    let got = app.get_json(&format!("/v1/apps/{client_id}")).await;
    assert_eq!(
        got["grants"],
        json!({
            "step_count": {"read": true, "write": null},
            "heart_rate": {"read": false, "write": null},
            "sleep_analysis": {"read": true, "write": true},
            "body_mass": {"read": null, "write": false},
        })
    );
    let r = app
        .client
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", pkce.verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["scope"], scope, "the token's scope is the request");
}
