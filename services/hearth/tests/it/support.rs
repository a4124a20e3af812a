//! Test harness: every test runs the real server on port 0 against its own
//! fresh database, SQLite or Postgres.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use hearth::config::{KdfArgs, ServeArgs, StorageArgs};
use hearth::startup::Application;
use hearth::store::Store;
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub const PASSPHRASE: &str = "correct horse battery staple";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Backend)` once against SQLite and once against Postgres.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}

/// The server's log goes to each test's captured output, which the runner
/// shows when the test fails: warnings by default, `HEARTH_TEST_LOG` (an
/// `EnvFilter` directive such as `hearth=debug`) for more.
fn log_to_test_output() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("HEARTH_TEST_LOG").unwrap_or_else(|_| "warn".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    });
}

/// The server URL of the throwaway cluster; never skipped.
pub fn postgres_admin_url() -> String {
    std::env::var("HEARTH_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "HEARTH_TEST_DATABASE_URL is not set: run the tests with scripts/test.sh, \
             which starts a throwaway Postgres cluster"
        )
    })
}

/// A new, empty Postgres database; returns its URL.
pub async fn fresh_postgres_database() -> String {
    let admin = postgres_admin_url();
    let name = format!("hearth_test_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .expect("connect to Postgres");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .expect("create test database");
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').expect("URL with a database name");
    format!("{base}/{name}")
}

/// A fresh database of the given kind, and the directory that holds SQLite's.
pub struct TestDatabase {
    pub backend: Backend,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> TestDatabase {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("hearth.db").display()),
            Backend::Postgres => fresh_postgres_database().await,
        };
        TestDatabase { backend, url, dir }
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.path().join("hearth.db")
    }

    pub fn serve_args(&self) -> ServeArgs {
        ServeArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            storage: StorageArgs {
                data_dir: self.dir.path().to_path_buf(),
                database_url: Some(self.url.clone()),
                state_file: None,
            },
            kdf: fast_kdf(),
            unlock_key_file: None,
            idle_lock_secs: 0,
            max_body_bytes: 16 * 1024 * 1024,
            max_import_bytes: 6 << 30,
            max_concurrent_requests: 256,
            request_timeout_secs: 30,
            public_url: None,
            allowed_hosts: Vec::new(),
            tls: Default::default(),
            pending: Default::default(),
            log_format: "text".into(),
            snapshot_every: hearth::projection::snapshot::DEFAULT_EVERY,
        }
    }
}

pub fn fast_kdf() -> KdfArgs {
    KdfArgs {
        kdf_memory_kib: 256,
        kdf_iterations: 1,
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<Store>,
    /// The owner session, once set up or unlocked.
    pub token: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    /// Starts a server on `db` as it is (new: uninitialised; else sealed).
    pub async fn start(db: &TestDatabase) -> TestApp {
        Self::start_with(db.serve_args()).await
    }

    pub async fn start_with(args: ServeArgs) -> TestApp {
        log_to_test_output();
        let app = Application::build(&args).await.expect("build app");
        let port = app.port();
        let store = app.store.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run_until(async {
                let _ = stopped.await;
            })
            .await
            .expect("server run");
        });
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        TestApp {
            addr,
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            store,
            token: None,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A new store, set up and unlocked.
    pub async fn unlocked(db: &TestDatabase) -> TestApp {
        let mut app = Self::start(db).await;
        app.setup().await;
        app
    }

    pub async fn setup(&mut self) {
        let code = self.store.setup_code().expect("store is new");
        let r = self
            .post_json(
                "/v1/setup",
                &json!({ "setup_code": code, "passphrase": PASSPHRASE }),
            )
            .await;
        assert_eq!(r.status(), 200, "setup: {}", r.text().await.unwrap());
        let body: Value = r.json().await.unwrap();
        self.token = Some(body["token"].as_str().unwrap().to_string());
    }

    pub async fn unlock(&mut self) -> reqwest::Response {
        let r = self
            .post_json("/v1/unlock", &json!({ "passphrase": PASSPHRASE }))
            .await;
        if r.status() == 200 {
            let body: Value = r.json().await.unwrap();
            self.token = Some(body["token"].as_str().unwrap().to_string());
            return self.get("/readyz").await;
        }
        r
    }

    /// Stops the server gracefully (locking the store).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.auth(self.client.get(self.url(path)))
            .send()
            .await
            .expect("GET")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.auth(self.client.delete(self.url(path)))
            .send()
            .await
            .expect("DELETE")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.auth(self.client.post(self.url(path)))
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.auth(self.client.post(self.url(path)))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    /// Posts `size` bytes of `a`, the whole length declared, `first` of
    /// them at once and the rest only after a pause, as a client that
    /// reads an early answer: a server that refuses once it has read past
    /// its limit answers and closes the connection, and a client still
    /// writing then can meet the close (a broken pipe) before the answer.
    pub async fn post_declared(
        &self,
        path: &str,
        content_type: &str,
        size: usize,
        first: usize,
    ) -> reqwest::Response {
        use futures::StreamExt;
        let body = futures::stream::iter([Ok::<_, std::io::Error>(vec![b'a'; first])]).chain(
            futures::stream::once(async move {
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                Ok(vec![b'a'; size - first])
            }),
        );
        self.auth(self.client.post(self.url(path)))
            .header("content-type", content_type)
            .header("content-length", size)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .expect("POST")
    }

    pub async fn write(&self, samples: Vec<Value>) -> reqwest::Response {
        self.post_json("/v1/samples", &json!({ "samples": samples }))
            .await
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// The JSON body, whatever the status.
    pub async fn get_json_any(&self, path: &str) -> Value {
        self.get(path).await.json().await.unwrap()
    }

    /// Every sample of `ty`, following cursors.
    pub async fn list_all(&self, ty: &str, page: usize) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/samples?type={ty}&limit={page}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let body = self.get_json(&path).await;
            out.extend(body["samples"].as_array().unwrap().iter().cloned());
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }
}

/// A step-count sample at minute `minute` after 2026-01-01T00:00Z, in +01:00.
pub fn steps(minute: i64, value: f64) -> Value {
    sample("step_count", minute, value, "count")
}

pub fn sample(ty: &str, minute: i64, value: f64, unit: &str) -> Value {
    let start = chrono::DateTime::from_timestamp(1_767_225_600 + minute * 60, 0)
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap());
    let end = start + chrono::Duration::seconds(60);
    json!({
        "sync_id": uuid::Uuid::new_v4().to_string(),
        "type": ty,
        "start": start.to_rfc3339(),
        "end": end.to_rfc3339(),
        "value": value,
        "unit": unit,
    })
}

/// Requests with some other bearer token (an app's), against the same server.
pub struct AsToken<'a> {
    pub app: &'a TestApp,
    pub token: String,
}

impl TestApp {
    pub fn as_token(&self, token: &str) -> AsToken<'_> {
        AsToken {
            app: self,
            token: token.to_string(),
        }
    }

    /// A client that does not follow redirects, for OAuth flows.
    pub fn no_redirect_client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// The owner's session as the browser sends it: the cookie unlock set.
    pub fn session_cookie(&self) -> String {
        format!("hearth_session={}", self.token.as_deref().unwrap())
    }

    /// An owner page, with the session cookie: status and HTML.
    pub async fn owner_page(&self, path: &str) -> (u16, String) {
        let r = Self::no_redirect_client()
            .get(self.url(path))
            .header(reqwest::header::COOKIE, self.session_cookie())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// A form posted to an owner page with the session cookie, from
    /// `origin` when given (as a browser on another site would).
    pub async fn owner_form(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        origin: Option<&str>,
    ) -> reqwest::Response {
        use reqwest::header::{CONTENT_TYPE, COOKIE, ORIGIN};
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut request = Self::no_redirect_client()
            .post(self.url(path))
            .header(COOKIE, self.session_cookie())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        if let Some(origin) = origin {
            request = request.header(ORIGIN, origin);
        }
        request.send().await.unwrap()
    }

    /// Registers an app; returns its JSON (with `client_secret` if confidential).
    pub async fn register_app(&self, name: &str, redirect: &str, confidential: bool) -> Value {
        let r = self
            .post_json(
                "/v1/apps",
                &json!({
                    "name": name,
                    "description": format!("{name}, for tests"),
                    "purpose": format!("{name} shows your trends"),
                    "privacy_policy_url": "https://app.example/privacy",
                    "redirect_uris": [redirect],
                    "client_type": if confidential { "confidential" } else { "public" },
                }),
            )
            .await;
        assert_eq!(r.status(), 201, "register: {}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    /// Mints a credential for `app_id` with these grants; returns the token.
    pub async fn mint(&self, app_id: &str, read: &[&str], write: &[&str]) -> String {
        let r = self
            .post_json(
                &format!("/v1/apps/{app_id}/credentials"),
                &json!({ "name": "script", "read": read, "write": write }),
            )
            .await;
        assert_eq!(r.status(), 201, "mint: {}", r.text().await.unwrap());
        let body: Value = r.json().await.unwrap();
        body["token"].as_str().unwrap().to_string()
    }

    /// Sets grants for `app_id`.
    pub async fn set_grants(&self, app_id: &str, grants: Value) {
        let r = self
            .auth(
                self.client
                    .patch(self.url(&format!("/v1/apps/{app_id}/grants"))),
            )
            .json(&grants)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "grants: {}", r.text().await.unwrap());
    }
}

impl AsToken<'_> {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.app
            .client
            .get(self.app.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.app
            .client
            .delete(self.app.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("DELETE")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.app
            .client
            .post(self.app.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn write(&self, samples: Vec<Value>) -> reqwest::Response {
        self.post_json("/v1/samples", &json!({ "samples": samples }))
            .await
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }
}

/// A PKCE verifier and its S256 challenge.
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Pkce {
        use base64::Engine;
        use sha2::Digest;
        let verifier = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

/// The value of a hidden form field in a page.
pub fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

/// A query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A running workout with a route, written in one request by whoever `app`
/// is authenticated as. Returns (workout id, route id). For the app-permission
/// half of `workout_route`: an app without `read:workout_route` must see the
/// workout but not the route unless it wrote it.
pub async fn workout_with_route(app: &TestApp) -> (String, String) {
    let r = app
        .write(vec![json!({
            "type": "workout", "activity": "running",
            "start": "2026-05-01T07:00:00+02:00", "end": "2026-05-01T07:30:00+02:00",
            "energy": {"value": 350, "unit": "kcal"},
            "distance": {"value": 5, "unit": "km"},
        })])
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let workout = r.json::<Value>().await.unwrap()["ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .write(vec![json!({
            "type": "workout_route", "workout": workout,
            "start": "2026-05-01T07:00:00+02:00", "end": "2026-05-01T07:30:00+02:00",
            "route": [
                {"time": "2026-05-01T07:00:00+02:00", "lat": 52.52, "lon": 13.405, "alt": 34.0},
                {"time": "2026-05-01T07:15:00+02:00", "lat": 52.53, "lon": 13.41},
                {"time": "2026-05-01T07:30:00+02:00", "lat": 52.52, "lon": 13.405},
            ],
        })])
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let route = r.json::<Value>().await.unwrap()["ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    (workout, route)
}
