//! Research studies: adding them, the owner's consent and its signed
//! receipt, withdrawal, and SMART Backend Services authorization with its
//! attack suite.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use serde_json::{json, Value};

use crate::process::{find, raw_bytes};
use crate::support::{Backend, TestApp, TestDatabase};

/// A study's key pair: the private half signs assertions, the public half
/// (a JWK) is registered.
#[derive(Clone)]
pub(crate) struct StudyKey {
    alg: Algorithm,
    kid: String,
    encoding: EncodingKey,
    pub(crate) jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn es384_key(kid: &str) -> StudyKey {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    StudyKey {
        alg: Algorithm::ES384,
        kid: kid.into(),
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({
            "kty": "EC", "crv": "P-384", "kid": kid, "alg": "ES384", "use": "sig",
            "x": b64(&point[1..49]), "y": b64(&point[49..97]),
        }),
    }
}

/// One RSA key for the whole run: generating one is slow.
pub(crate) fn rs384_key() -> StudyKey {
    static KEY: OnceLock<StudyKey> = OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::traits::PublicKeyParts;
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let der = private.to_pkcs1_der().unwrap();
        StudyKey {
            alg: Algorithm::RS384,
            kid: "rsa-1".into(),
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            jwk: json!({
                "kty": "RSA", "kid": "rsa-1", "alg": "RS384",
                "n": b64(&private.n().to_bytes_be()), "e": b64(&private.e().to_bytes_be()),
            }),
        }
    })
    .clone()
}

pub(crate) fn description(keys: Value) -> Value {
    let mut d = json!({
        "name": "Sleep and Heart Study",
        "organisation": "Example University",
        "contact": "study-team@university.example",
        "purpose": "To learn how resting heart rate relates to activity.",
        "procedures": "Hearth sends your data once a week; nothing for you to do.",
        "risks_and_benefits": "No direct benefit; a small risk of re-identification.",
        "duration": "One year",
        "data_use_and_sharing": "Only the study team sees the data; results are published in aggregate.",
        "withdrawal": "You may withdraw at any time from Hearth.",
        "requested_types": ["step_count", "heart_rate", "body_mass"],
        "date_range": { "start": "2025-01-01", "end": "2025-12-31" },
        "frequency": "weekly",
        "deidentification": "shifted_dates",
    });
    let obj = d.as_object_mut().unwrap();
    for (k, v) in keys.as_object().unwrap() {
        obj.insert(k.clone(), v.clone());
    }
    d
}

pub(crate) fn inline(keys: &[&StudyKey]) -> Value {
    json!({ "jwks": { "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() } })
}

pub(crate) async fn add_study(app: &TestApp, body: &Value) -> String {
    let r = app.post_json("/v1/studies", body).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let study: Value = r.json().await.unwrap();
    study["id"].as_str().unwrap().to_string()
}

pub(crate) async fn consent(app: &TestApp, id: &str, types: &[&str]) -> Value {
    let r = app
        .post_json(
            &format!("/v1/studies/{id}/consent"),
            &json!({ "types": types }),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

fn now() -> i64 {
    hearth::clock::Clock::default().now_us() / 1_000_000
}

fn token_url(app: &TestApp) -> String {
    app.url("/fhir/token")
}

fn jti() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A well-formed assertion of `study` signed with `key`.
fn claims(app: &TestApp, study: &str) -> Value {
    json!({
        "iss": study, "sub": study, "aud": token_url(app),
        "exp": now() + 240, "iat": now(), "jti": jti(),
    })
}

fn sign(key: &StudyKey, header: Header, claims: &Value) -> String {
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

fn header_of(key: &StudyKey) -> Header {
    let mut h = Header::new(key.alg);
    h.kid = Some(key.kid.clone());
    h
}

pub(crate) fn assertion(app: &TestApp, key: &StudyKey, study: &str) -> String {
    sign(key, header_of(key), &claims(app, study))
}

pub(crate) async fn request_token(app: &TestApp, assertion: &str, scope: &str) -> (u16, Value) {
    let r = app
        .client
        .post(token_url(app))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn refused(app: &TestApp, assertion: &str, case: &str) {
    let (status, body) = request_token(app, assertion, "system/Observation.rs").await;
    assert_eq!(status, 400, "{case}: {body}");
    assert_eq!(body["error"], "invalid_client", "{case}: {body}");
    assert!(body.get("access_token").is_none(), "{case}");
}

async fn studies_are_added_listed_and_removed(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let key = es384_key("ec-1");
    let marker = "Zebrafish Cohort Marker 7731";
    let mut body = description(inline(&[&key]));
    body["name"] = json!(marker);
    let id = add_study(&app, &body).await;
    assert!(id.starts_with("study_"));

    let study = app.get_json(&format!("/v1/studies/{id}")).await;
    assert_eq!(study["status"], "awaiting_consent");
    assert_eq!(study["client_id"], id.as_str());
    assert_eq!(study["name"], marker);
    assert_eq!(study["resolution"], "samples", "the default resolution");
    let list = app.get_json("/v1/studies").await;
    assert_eq!(list["studies"].as_array().unwrap().len(), 1);

    // The study is an encrypted event: its text is nowhere in the database.
    let raw = raw_bytes(&db, "events");
    assert!(
        !find(&raw, marker.as_bytes()),
        "the study name is ciphertext"
    );

    // Strict validation, naming the field.
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut b = body.clone();
                b["requested_types"] = json!(["step_count", "no_such_type"]);
                b
            },
            "requested_types",
        ),
        (
            {
                let mut b = body.clone();
                b["requested_types"] = json!(["step_count", "step_count"]);
                b
            },
            "requested_types",
        ),
        (
            {
                let mut b = body.clone();
                b["jwks_uri"] = json!("https://study.example/jwks.json");
                b
            },
            "jwks",
        ),
        (
            {
                let mut b = body.clone();
                b.as_object_mut().unwrap().remove("jwks");
                b["jwks_uri"] = json!("http://study.example/jwks.json");
                b
            },
            "jwks_uri",
        ),
        (
            {
                let mut b = body.clone();
                b["jwks"]["keys"][0]["d"] = json!(b64(&[1; 48]));
                b
            },
            "jwks.keys[0]",
        ),
        (
            {
                let mut b = body.clone();
                b["jwks"]["keys"][0].as_object_mut().unwrap().remove("kid");
                b
            },
            "jwks.keys[0]",
        ),
        (
            {
                let mut b = body.clone();
                b["date_range"] = json!({ "start": "2025-12-31", "end": "2025-01-01" });
                b
            },
            "date_range.end",
        ),
        (
            {
                let mut b = body.clone();
                b["purpose"] = json!("  ");
                b
            },
            "purpose",
        ),
        (
            {
                let mut b = body.clone();
                b.as_object_mut().unwrap().remove("withdrawal");
                b
            },
            "body",
        ),
        (
            {
                let mut b = body.clone();
                b["deidentification"] = json!("none");
                b
            },
            "deidentification",
        ),
    ];
    for (bad, field) in cases {
        let r = app.post_json("/v1/studies", &bad).await;
        assert_eq!(r.status(), 400, "{field}");
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["code"], "invalid_input", "{field}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }

    // Owner only.
    let stranger = app.client.get(app.url("/v1/studies")).send().await.unwrap();
    assert_eq!(stranger.status(), 401);

    // Survives a restart (rebuilt from the log).
    let db_app = app;
    db_app.stop().await;
    let mut app = TestApp::start(&db).await;
    assert_eq!(app.unlock().await.status(), 200);
    let study = app.get_json(&format!("/v1/studies/{id}")).await;
    assert_eq!(study["name"], marker);

    assert_eq!(app.delete(&format!("/v1/studies/{id}")).await.status(), 204);
    assert_eq!(app.get(&format!("/v1/studies/{id}")).await.status(), 404);
    assert_eq!(app.delete(&format!("/v1/studies/{id}")).await.status(), 404);
    app.stop().await;
}

async fn consent_is_recorded_with_a_verifiable_receipt(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let key = es384_key("ec-1");
    let id = add_study(&app, &description(inline(&[&key]))).await;

    // Before any decision: every switch off, nothing leaves.
    let doc = app.get_json(&format!("/v1/studies/{id}/consent")).await;
    let switches = doc["switches"].as_array().unwrap();
    assert_eq!(switches.len(), 3);
    assert!(switches.iter().all(|s| s["on"] == false), "{doc}");
    assert_eq!(doc["summary"]["types"], json!([]));
    assert_eq!(doc["status"], "awaiting_consent");
    let keys: Vec<&str> = doc["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    for k in [
        "overview",
        "data_gathering",
        "procedures",
        "risks_and_benefits",
        "time_commitment",
        "data_use",
        "privacy",
        "withdrawing",
    ] {
        assert!(keys.contains(&k), "section {k}");
    }
    assert!(doc["summary"]["dates"]
        .as_str()
        .unwrap()
        .contains("whole days"));
    assert!(!doc["summary"]["identifiers_removed"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(
        doc.get("routes_switch").is_none(),
        "routes were not asked for"
    );
    assert_eq!(
        app.get(&format!("/v1/studies/{id}/receipt")).await.status(),
        404
    );

    // Decisions outside the request are refused.
    for bad in [
        json!({ "types": ["blood_glucose"] }),
        json!({ "types": [] }),
        json!({ "types": ["step_count", "step_count"] }),
        json!({ "types": ["step_count"], "routes": true }),
    ] {
        let r = app
            .post_json(&format!("/v1/studies/{id}/consent"), &bad)
            .await;
        assert_eq!(r.status(), 400, "{bad}");
    }

    let before = now();
    let given = consent(&app, &id, &["heart_rate", "step_count"]).await;
    assert_eq!(
        given["types"],
        json!(["step_count", "heart_rate"]),
        "study order"
    );
    let receipt = given["receipt"].as_str().unwrap().to_string();

    // The owner downloads the same receipt.
    let r = app.get(&format!("/v1/studies/{id}/receipt")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/jwt");
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert_eq!(r.text().await.unwrap(), receipt);

    // It verifies with the published key, and names what was consented.
    let jwks: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
    let header = jsonwebtoken::decode_header(&receipt).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), jwk.common.key_id.as_deref());
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&[&id]);
    validation.set_issuer(&[&app.base]);
    validation.required_spec_claims.clear();
    let decoding = DecodingKey::from_jwk(&jwk).unwrap();
    let verified = jsonwebtoken::decode::<Value>(&receipt, &decoding, &validation)
        .expect("the receipt verifies")
        .claims;
    assert_eq!(verified["study"]["id"], id.as_str());
    assert_eq!(verified["study"]["name"], "Sleep and Heart Study");
    assert_eq!(verified["types"], json!(["step_count", "heart_rate"]));
    assert_eq!(
        verified["date_range"],
        json!({ "start": "2025-01-01", "end": "2025-12-31" })
    );
    assert_eq!(verified["deidentification"], "shifted_dates");
    let iat = verified["iat"].as_i64().unwrap();
    assert!(iat >= before - 1 && iat <= now() + 1);
    assert!(verified["consented_at"].as_str().unwrap().ends_with('Z'));

    // A receipt changed in any way does not verify.
    let (head, rest) = receipt.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["types"] = json!(["step_count", "heart_rate", "body_mass"]);
    let forged = format!("{head}.{}.{signature}", b64(claims.to_string().as_bytes()));
    assert!(jsonwebtoken::decode::<Value>(&forged, &decoding, &validation).is_err());
    let mut flipped = receipt.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    assert!(jsonwebtoken::decode::<Value>(&flipped, &decoding, &validation).is_err());

    // The switches now show the decision; the decision is ciphertext.
    let doc = app.get_json(&format!("/v1/studies/{id}/consent")).await;
    assert_eq!(doc["status"], "consented");
    assert_eq!(doc["summary"]["types"], json!(["step_count", "heart_rate"]));
    let on: Vec<bool> = doc["switches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["on"].as_bool().unwrap())
        .collect();
    assert_eq!(on, [true, true, false]);
    let raw = raw_bytes(&db, "events");
    assert!(!find(&raw, b"heart_rate"), "the decision is ciphertext");
    assert!(!find(&raw, receipt.as_bytes()));

    // One signing key for the store: a second receipt is signed by it too.
    let again = consent(&app, &id, &["body_mass"]).await;
    let header = jsonwebtoken::decode_header(again["receipt"].as_str().unwrap()).unwrap();
    assert_eq!(header.kid.as_deref(), jwk.common.key_id.as_deref());
    let jwks_again = app.get_json_any("/.well-known/jwks.json").await;
    assert_eq!(jwks_again["keys"].as_array().unwrap().len(), 1);
    assert!(jwks_again["keys"][0].get("d").is_none(), "public key only");
    app.stop().await;
}

async fn withdrawal_stops_the_study(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let key = es384_key("ec-1");
    let id = add_study(&app, &description(inline(&[&key]))).await;
    consent(&app, &id, &["step_count"]).await;
    let (status, body) =
        request_token(&app, &assertion(&app, &key, &id), "system/Observation.rs").await;
    assert_eq!(status, 200, "{body}");

    let r = app
        .post_json(&format!("/v1/studies/{id}/withdraw"), &json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    let notice = answer["notice"].as_str().unwrap();
    assert!(
        notice.contains("may continue to analyse what was exported"),
        "{notice}"
    );
    let withdrawn_at = answer["withdrawn_at"].clone();

    // Later requests by the study are refused, with a valid assertion too.
    refused(&app, &assertion(&app, &key, &id), "after withdrawal").await;
    // No consent again, ever; withdrawing again answers the same.
    let r = app
        .post_json(
            &format!("/v1/studies/{id}/consent"),
            &json!({ "types": ["step_count"] }),
        )
        .await;
    assert_eq!(r.status(), 409);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "study_withdrawn");
    let again: Value = app
        .post_json(&format!("/v1/studies/{id}/withdraw"), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["withdrawn_at"], withdrawn_at);

    let doc = app.get_json(&format!("/v1/studies/{id}/consent")).await;
    assert_eq!(doc["status"], "withdrawn");
    assert_eq!(
        doc["summary"]["types"],
        json!([]),
        "nothing leaves any more"
    );
    // The receipt of what was consented stays the owner's.
    assert_eq!(
        app.get(&format!("/v1/studies/{id}/receipt")).await.status(),
        200
    );

    // Still withdrawn after a restart.
    app.stop().await;
    let mut app = TestApp::start(&db).await;
    assert_eq!(app.unlock().await.status(), 200);
    let study = app.get_json(&format!("/v1/studies/{id}")).await;
    assert_eq!(study["status"], "withdrawn");
    refused(
        &app,
        &assertion(&app, &key, &id),
        "after withdrawal and restart",
    )
    .await;
    app.stop().await;
}

async fn studies_get_short_lived_tokens(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let config = app.get_json_any("/.well-known/smart-configuration").await;
    assert_eq!(config["token_endpoint"], token_url(&app));
    assert_eq!(
        config["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt"])
    );
    assert_eq!(
        config["token_endpoint_auth_signing_alg_values_supported"],
        json!(["RS384", "ES384"])
    );
    assert_eq!(
        app.get_json_any("/fhir/.well-known/smart-configuration")
            .await,
        config
    );

    let ec = es384_key("ec-1");
    let rsa = rs384_key();
    let id = add_study(&app, &description(inline(&[&ec, &rsa]))).await;

    // No consent yet: nothing to grant.
    let (status, body) =
        request_token(&app, &assertion(&app, &ec, &id), "system/Observation.rs").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );

    consent(&app, &id, &["step_count", "heart_rate"]).await;
    for key in [&ec, &rsa] {
        let (status, body) = request_token(
            &app,
            &assertion(&app, key, &id),
            "system/Observation.rs system/Patient.rs",
        )
        .await;
        assert_eq!(status, 200, "{:?}: {body}", key.alg);
        assert_eq!(body["token_type"], "bearer");
        assert!(body["expires_in"].as_u64().unwrap() <= 300);
        assert!(body.get("refresh_token").is_none());
        assert_eq!(body["scope"], "system/Observation.rs system/Patient.rs");
        assert!(body["access_token"].as_str().unwrap().len() > 32);
    }
    // Only the offered scopes.
    let (status, body) = request_token(&app, &assertion(&app, &ec, &id), "system/*.rs").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let (status, body) =
        request_token(&app, &assertion(&app, &ec, &id), "user/Observation.rs").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    // A study's token is not an owner session or an app token.
    let (_, body) = request_token(&app, &assertion(&app, &ec, &id), "system/Observation.rs").await;
    let token = body["access_token"].as_str().unwrap();
    let r = app
        .client
        .get(app.url("/v1/samples?type=step_count"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
}

async fn the_token_endpoint_refuses_every_forged_assertion(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let key = es384_key("ec-1");
    let rsa = rs384_key();
    let id = add_study(&app, &description(inline(&[&key, &rsa]))).await;
    consent(&app, &id, &["step_count"]).await;
    let other_key = es384_key("other-1");
    let other = add_study(&app, &description(inline(&[&other_key]))).await;
    consent(&app, &other, &["step_count"]).await;

    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(&app, &id);
        f(&mut c);
        sign(&key, header_of(&key), &c)
    };

    // alg: none, unsigned.
    let none_header = b64(br#"{"alg":"none","typ":"JWT","kid":"ec-1"}"#);
    let none = format!(
        "{none_header}.{}.",
        b64(claims(&app, &id).to_string().as_bytes())
    );
    refused(&app, &none, "alg none").await;

    // HS384 keyed with the study's public key (the key confusion attack).
    for public in [
        rsa.jwk.to_string(),
        rsa.jwk["n"].as_str().unwrap().to_string(),
    ] {
        let mut h = Header::new(Algorithm::HS384);
        h.kid = Some(rsa.kid.clone());
        let forged = jsonwebtoken::encode(
            &h,
            &claims(&app, &id),
            &EncodingKey::from_secret(public.as_bytes()),
        )
        .unwrap();
        refused(&app, &forged, "HS384 with the public key").await;
    }

    refused(
        &app,
        &with(&|c| c["aud"] = json!(app.url("/oauth/token"))),
        "wrong aud",
    )
    .await;
    refused(
        &app,
        &with(&|c| c["aud"] = json!(format!("{}/", token_url(&app)))),
        "aud not exactly the token URL",
    )
    .await;
    refused(
        &app,
        &with(&|c| {
            c.as_object_mut().unwrap().remove("exp");
        }),
        "missing exp",
    )
    .await;
    refused(&app, &with(&|c| c["exp"] = json!(now() - 120)), "expired").await;
    refused(
        &app,
        &with(&|c| c["exp"] = json!((now() + 120).to_string())),
        "string exp",
    )
    .await;
    refused(
        &app,
        &with(&|c| c["exp"] = json!(now() + 600)),
        "exp more than 5 minutes ahead",
    )
    .await;
    refused(
        &app,
        &with(&|c| {
            c.as_object_mut().unwrap().remove("jti");
        }),
        "missing jti",
    )
    .await;

    // A jti once used is refused while the assertion could be valid.
    let mut c = claims(&app, &id);
    c["jti"] = json!("used-once");
    let first = sign(&key, header_of(&key), &c);
    let (status, body) = request_token(&app, &first, "system/Observation.rs").await;
    assert_eq!(status, 200, "{body}");
    refused(&app, &first, "the same assertion again").await;
    c["exp"] = json!(now() + 200);
    refused(&app, &sign(&key, header_of(&key), &c), "reused jti").await;

    // Keys: unknown kid, a kid whose key does not fit the alg, no kid.
    let mut h = header_of(&key);
    h.kid = Some("nobody".into());
    refused(&app, &sign(&key, h, &claims(&app, &id)), "unknown kid").await;
    let mut h = header_of(&key);
    h.kid = Some(rsa.kid.clone());
    refused(
        &app,
        &sign(&key, h, &claims(&app, &id)),
        "kid of an RSA key with ES384",
    )
    .await;
    let mut h = header_of(&key);
    h.kid = None;
    refused(&app, &sign(&key, h, &claims(&app, &id)), "no kid").await;

    // jku pointing anywhere (the study registered its keys inline).
    let mut h = header_of(&key);
    h.jku = Some("https://attacker.example/jwks.json".into());
    refused(&app, &sign(&key, h, &claims(&app, &id)), "jku elsewhere").await;

    // iss and sub must both be the study.
    refused(&app, &with(&|c| c["sub"] = json!(other)), "iss != sub").await;
    refused(
        &app,
        &with(&|c| c["iss"] = json!("study_unknown")),
        "unknown client",
    )
    .await;

    // The other study's key, claiming to be this study: by its own kid,
    // and by this study's kid.
    refused(
        &app,
        &sign(&other_key, header_of(&other_key), &claims(&app, &id)),
        "another study's key",
    )
    .await;
    let mut h = header_of(&other_key);
    h.kid = Some(key.kid.clone());
    refused(
        &app,
        &sign(&other_key, h, &claims(&app, &id)),
        "another study's key under this kid",
    )
    .await;

    // The genuine article still works, for both studies.
    for (k, s) in [(&key, &id), (&other_key, &other)] {
        let (status, body) =
            request_token(&app, &assertion(&app, k, s), "system/Observation.rs").await;
        assert_eq!(status, 200, "{body}");
    }

    // After withdrawal a valid assertion is refused.
    app.post_json(&format!("/v1/studies/{id}/withdraw"), &json!({}))
        .await;
    refused(&app, &assertion(&app, &key, &id), "after withdrawal").await;
    // And after removal.
    assert_eq!(
        app.delete(&format!("/v1/studies/{other}")).await.status(),
        204
    );
    refused(&app, &assertion(&app, &other_key, &other), "after removal").await;
    app.stop().await;
}

async fn used_assertions_stay_used_across_a_restart(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let key = es384_key("ec-1");
    let id = add_study(&app, &description(inline(&[&key]))).await;
    consent(&app, &id, &["step_count"]).await;
    let once = assertion(&app, &key, &id);
    let (status, _) = request_token(&app, &once, "system/Observation.rs").await;
    assert_eq!(status, 200);
    app.stop().await;

    let mut app = TestApp::start(&db).await;
    assert_eq!(app.unlock().await.status(), 200);
    // The aud names the new port; only the jti is the same.
    let (_, payload, _) = {
        let mut parts = once.split('.');
        (parts.next(), parts.next().unwrap(), parts.next())
    };
    let mut c: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    c["aud"] = json!(token_url(&app));
    refused(
        &app,
        &sign(&key, header_of(&key), &c),
        "jti replayed after restart",
    )
    .await;
    let (status, _) =
        request_token(&app, &assertion(&app, &key, &id), "system/Observation.rs").await;
    assert_eq!(status, 200);
    app.stop().await;
}

/// A study's key set on loopback, counting fetches, with a chosen
/// `Cache-Control`.
async fn serve_jwks(keys: Value, cache_control: &'static str) -> (String, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let router = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let counter = counter.clone();
            let keys = keys.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                (
                    [
                        ("cache-control", cache_control),
                        ("content-type", "application/json"),
                    ],
                    keys.to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}/jwks.json"), fetches)
}

async fn published_key_sets_are_fetched_and_cached(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let key = es384_key("ec-1");
    let rsa = rs384_key();
    let set =
        json!({ "keys": [key.jwk, rsa.jwk, { "kty": "oct", "kid": "skipped", "k": "c2VjcmV0" }] });

    // Cacheable: fetched once for several requests.
    let (uri, fetches) = serve_jwks(set.clone(), "public, max-age=600").await;
    let id = add_study(&app, &description(json!({ "jwks_uri": uri }))).await;
    consent(&app, &id, &["step_count"]).await;
    for k in [&key, &rsa, &key] {
        let (status, body) =
            request_token(&app, &assertion(&app, k, &id), "system/Observation.rs").await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "kept as max-age allows");

    // jku: only the registered URL.
    let mut h = header_of(&key);
    h.jku = Some(uri.clone());
    let (status, body) = request_token(
        &app,
        &sign(&key, h, &claims(&app, &id)),
        "system/Observation.rs",
    )
    .await;
    assert_eq!(status, 200, "the registered jku: {body}");
    let mut h = header_of(&key);
    h.jku = Some(uri.replace("jwks.json", "other.json"));
    refused(&app, &sign(&key, h, &claims(&app, &id)), "jku elsewhere").await;
    // A symmetric key in the published set is never used.
    let mut h = Header::new(Algorithm::HS384);
    h.kid = Some("skipped".into());
    let forged =
        jsonwebtoken::encode(&h, &claims(&app, &id), &EncodingKey::from_secret(b"secret")).unwrap();
    refused(&app, &forged, "HS384 with a published oct key").await;

    // Not cacheable: fetched every time.
    let (uri, fetches) = serve_jwks(set, "no-store").await;
    let id = add_study(&app, &description(json!({ "jwks_uri": uri }))).await;
    consent(&app, &id, &["step_count"]).await;
    for _ in 0..2 {
        let (status, body) =
            request_token(&app, &assertion(&app, &key, &id), "system/Observation.rs").await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "no-store is honoured");

    // A kid that names two keys of the type authenticates nobody.
    let twice = json!({ "keys": [key.jwk, key.jwk] });
    let (uri, _) = serve_jwks(twice, "max-age=60").await;
    let id = add_study(&app, &description(json!({ "jwks_uri": uri }))).await;
    consent(&app, &id, &["step_count"]).await;
    refused(&app, &assertion(&app, &key, &id), "kid matching two keys").await;

    // A key set that cannot be fetched authenticates nobody.
    let gone = "http://127.0.0.1:9/jwks.json";
    let id = add_study(&app, &description(json!({ "jwks_uri": gone }))).await;
    consent(&app, &id, &["step_count"]).await;
    refused(&app, &assertion(&app, &key, &id), "unreachable jwks_uri").await;

    // One that never answers: given up after the timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}/jwks.json", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let id = add_study(&app, &description(json!({ "jwks_uri": uri }))).await;
    consent(&app, &id, &["step_count"]).await;
    let started = std::time::Instant::now();
    refused(&app, &assertion(&app, &key, &id), "silent jwks_uri").await;
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(4) && waited < std::time::Duration::from_secs(15),
        "{waited:?}"
    );
    app.stop().await;
}

async fn studies_are_managed_from_the_command_line(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let dir = db.dir.path();
    let passphrase = crate::process::passphrase_file(dir);
    let file = dir.join("study.json");
    let key = es384_key("ec-1");
    std::fs::write(&file, description(inline(&[&key])).to_string()).unwrap();
    let run = |args: Vec<String>| {
        let base = app.base.clone();
        let passphrase = passphrase.clone();
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(crate::process::hearth_bin())
                .arg("study")
                .arg("--server")
                .arg(base)
                .arg("--passphrase-file")
                .arg(passphrase)
                .args(args)
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).to_string(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            )
        })
    };
    let (code, out, err) = run(vec!["add".into(), file.display().to_string()])
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{err}");
    let added: Value = serde_json::from_str(&out).unwrap();
    let id = added["id"].as_str().unwrap().to_string();
    assert_eq!(added["status"], "awaiting_consent");

    let (code, out, _) = run(vec!["list".into()]).await.unwrap();
    assert_eq!(code, Some(0));
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["studies"][0]["id"], id.as_str());

    // An invalid description is refused with the server's reason.
    std::fs::write(&file, json!({ "name": "x" }).to_string()).unwrap();
    let (code, _, err) = run(vec!["add".into(), file.display().to_string()])
        .await
        .unwrap();
    assert_ne!(code, Some(0));
    assert!(err.contains("400"), "{err}");

    let (code, _, err) = run(vec!["remove".into(), id.clone()]).await.unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(app.get(&format!("/v1/studies/{id}")).await.status(), 404);
    app.stop().await;
}

both_backends!(
    studies_are_added_listed_and_removed,
    consent_is_recorded_with_a_verifiable_receipt,
    withdrawal_stops_the_study,
    studies_get_short_lived_tokens,
    the_token_endpoint_refuses_every_forged_assertion,
    used_assertions_stay_used_across_a_restart,
    published_key_sets_are_fetched_and_cached,
    studies_are_managed_from_the_command_line,
);
