//! A real browser for the page tests: headless Chromium driven over the
//! WebDriver protocol by a chromedriver on a loopback port.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver on a free loopback port, killed on drop.
pub struct Driver {
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
    pub async fn start() -> Option<Driver> {
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
                "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
                // The console, where Chromium reports what the page's
                // content security policy refused.
                "goog:loggingPrefs": { "browser": "ALL" }
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

    pub fn url(&self, path: &str) -> String {
        format!(
            "{}/session/{}{path}",
            self.base,
            self.session.as_deref().unwrap()
        )
    }

    pub async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
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

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Clicks a link or a form's button and returns once the page it leads
    /// to has loaded. A plain `click` may return while the old page is still
    /// shown, and what is read next would come from it (or from an element
    /// the navigation then removes).
    pub async fn follow(&self, css: &str) {
        self.execute(
            "window.hearthOldPage = true; return null;",
            json!([]),
            false,
        )
        .await;
        self.click(css).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // Mid-navigation a script may find no document to run in: that
            // is not an answer yet, so it is asked again.
            let loaded = self
                .http
                .post(self.url("/execute/sync"))
                .json(&json!({
                    "script": "return window.hearthOldPage === undefined && document.readyState === 'complete';",
                    "args": [],
                }))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap();
            if loaded["value"] == json!(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "clicking {css} never led to a new page: {loaded}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn selected(&self, css: &str) -> bool {
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

    pub async fn current_url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn page_text(&self) -> String {
        let body = self.find("body").await;
        self.cmd(reqwest::Method::GET, &format!("/element/{body}/text"), None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub async fn quit(mut self) {
        if self.session.is_some() {
            let _ = self.http.delete(self.url("")).send().await;
            self.session = None;
        }
    }

    /// Runs `script` in the page (its `arguments` are `args`) and answers
    /// what it returns; an async script calls its last argument when done.
    pub async fn execute(&self, script: &str, args: Value, asynchronous: bool) -> Value {
        let path = if asynchronous {
            "/execute/async"
        } else {
            "/execute/sync"
        };
        self.cmd(
            reqwest::Method::POST,
            path,
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Sets the browser window's size (a phone's or a desktop's).
    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// A PNG of the visible page.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    }

    /// What the content security policy refused since the last call: the
    /// browser console's messages about it (reading the log empties it).
    pub async fn csp_violations(&self) -> Vec<String> {
        let log = self
            .cmd(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({ "type": "browser" })),
            )
            .await;
        log.as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| entry["message"].as_str())
            .filter(|m| m.contains("Content Security Policy"))
            .map(str::to_string)
            .collect()
    }

    /// Waits until `css` matches an element whose text contains `text`.
    pub async fn wait_for_text(&self, css: &str, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found = self
                .execute(
                    "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                    json!([css]),
                    false,
                )
                .await;
            if let Some(t) = found.as_str() {
                if t.contains(text) {
                    return t.to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{css} never said {text:?}: {found}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// axe-core's script, from `HEARTH_AXE_JS` or where `.ci/run` installs it.
fn axe_source() -> Option<String> {
    let path = std::env::var_os("HEARTH_AXE_JS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/axe/node_modules/axe-core/axe.min.js")
        });
    match std::fs::read_to_string(&path) {
        Ok(source) => Some(source),
        Err(e) => {
            // CI installs it (.ci/run); there, a missing axe fails.
            assert!(
                std::env::var_os("CI").is_none(),
                "{} is required when CI is set: {e}",
                path.display()
            );
            eprintln!("skipping accessibility checks: {} ({e})", path.display());
            None
        }
    }
}

/// Checks the open page with axe-core: no serious or critical violation.
pub struct Accessibility {
    source: Option<String>,
}

impl Accessibility {
    pub fn load() -> Accessibility {
        Accessibility {
            source: axe_source(),
        }
    }

    /// Fails with every serious or critical violation on the open page.
    pub async fn check(&self, driver: &Driver, page: &str) {
        let Some(source) = &self.source else {
            return;
        };
        // WebDriver scripts run outside the page's CSP, so the page needs no
        // exception for the checker.
        driver.execute(source, json!([]), false).await;
        let violations = driver
            .execute(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] })
                   .then((r) => done(r.violations
                     .filter((v) => v.impact === 'serious' || v.impact === 'critical')
                     .map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                                    nodes: v.nodes.map((n) => n.html + ' — ' + n.failureSummary) }))))
                   .catch((e) => done([{ id: 'axe-error', help: String(e) }]));",
                json!([]),
                true,
            )
            .await;
        let list = violations.as_array().cloned().unwrap_or_default();
        assert!(
            list.is_empty(),
            "{page}: accessibility violations:\n{}",
            serde_json::to_string_pretty(&violations).unwrap()
        );
    }
}
