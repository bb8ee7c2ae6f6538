//! What the token-task tests start: `moto` in server mode for AWS (STS,
//! IAM, ECR, with SigV4 checked), and one small HTTP service on 127.0.0.1
//! that implements the documented token protocols no emulator covers here:
//! Google's JWT bearer grant (the RS256 assertion verified by `openssl`),
//! its metadata server and STS token exchange, the Microsoft identity
//! platform's client-credentials grant, ACR's `/oauth2/exchange`, and
//! GitHub Actions' OIDC token request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;

use super::text;

/// A moto server on a free 127.0.0.1 port, seeded with a user whose key
/// may call ECR and a role web identities may assume; stopped when dropped.
pub struct Moto {
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub role_arn: String,
    child: Child,
}

/// The account moto answers for, and so the password of its ECR tokens.
pub const MOTO_ECR_PASSWORD: &str = "123456789012-auth-token";

/// Where `moto_server` is: `MOTO_SERVER`, `.ci/moto` (as `.ci/run`
/// installs it), or PATH. `None` when it is nowhere.
fn moto_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/moto/bin/moto_server");
    if venv.exists() {
        return Some(venv);
    }
    let o = Command::new("sh")
        .args(["-c", "command -v moto_server"])
        .output()
        .ok()?;
    o.status.success().then(|| PathBuf::from(text(&o.stdout).trim()))
}

impl Moto {
    /// Starts moto, or says why the test skips (and fails under
    /// `KFLOW_REQUIRE_DOCKER=1`, where `.ci/run` has installed it).
    pub fn start_or_skip(test: &str) -> Option<Moto> {
        let Some(server) = moto_server() else {
            assert!(
                std::env::var("KFLOW_REQUIRE_DOCKER").as_deref() != Ok("1"),
                "{test}: moto_server is not installed (.ci/run installs moto[server] into .ci/moto)"
            );
            eprintln!("skipping {test}: moto_server is not installed (pip install 'moto[server]')");
            return None;
        };
        // The seed's five IAM calls are the only unauthenticated ones:
        // every later request must carry a valid SigV4 signature.
        for _ in 0..5 {
            let port = super::free_port();
            let mut child = Command::new(&server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("INITIAL_NO_AUTH_ACTION_COUNT", "5")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto_server starts");
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut up = false;
            while Instant::now() < deadline {
                if child.try_wait().is_ok_and(|s| s.is_some()) {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    up = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !up {
                let _ = child.kill();
                let _ = child.wait();
                continue;
            }
            let endpoint = format!("http://127.0.0.1:{port}");
            let python = server.with_file_name("python3");
            let python = if python.exists() {
                python
            } else {
                PathBuf::from("python3")
            };
            let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/moto_seed.py");
            let o = Command::new(python).arg(seed).arg(&endpoint).output().unwrap();
            assert!(o.status.success(), "seeding moto: {}", text(&o.stderr));
            let seeded: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let field = |k: &str| seeded[k].as_str().unwrap().to_string();
            return Some(Moto {
                endpoint,
                access_key_id: field("access_key_id"),
                secret_access_key: field("secret_access_key"),
                role_arn: field("role_arn"),
                child,
            });
        }
        panic!("moto_server did not start");
    }
}

impl Moto {
    /// Lets the next request through unsigned. AWS's STS takes
    /// `AssumeRoleWithWebIdentity` unsigned (the token is the proof), and
    /// kflow sends it so; moto, with SigV4 checking on, wants every request
    /// signed. Its own `reset-auth` opens a window of exactly one request.
    pub fn let_one_unsigned_call(&self) {
        let o = Command::new("curl")
            .args(["-sf", "-X", "POST", "-H", "Content-Type: text/plain", "-d", "1"])
            .arg(format!("{}/moto-api/reset-auth", self.endpoint))
            .output()
            .unwrap();
        assert!(o.status.success(), "moto reset-auth: {}", text(&o.stderr));
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An unsigned JWT (the services' own tokens: only their claims matter).
pub fn jwt(claims: serde_json::Value) -> String {
    format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// One request a token service answered: its endpoint and form or query.
#[derive(Debug, Clone)]
pub struct Seen {
    pub endpoint: String,
    pub fields: HashMap<String, String>,
    pub headers: HashMap<String, String>,
}

/// How the token services behave; tests change it between runs.
#[derive(Default)]
pub struct Behaviour {
    /// Answer this many token requests with a 500 first.
    pub fail_first: AtomicUsize,
    /// Answer every token request with a 400 `invalid_grant`.
    pub refuse: AtomicBool,
    /// Leave the expiry out of answers.
    pub no_expiry: AtomicBool,
    /// Seconds tokens live (default 3600).
    pub lifetime: AtomicU64,
}

struct Shared {
    /// The Google access token, the ACR refresh token's subject, … : what
    /// the registries in the tests take as passwords.
    access_token: String,
    github_request_token: String,
    client_secret: String,
    /// The service account's public key (PEM), to verify assertions with.
    public_key: PathBuf,
    work: PathBuf,
    seen: Mutex<Vec<Seen>>,
    behaviour: Arc<Behaviour>,
    base: String,
}

/// The token services, on one 127.0.0.1 port.
pub struct TokenServices {
    pub base: String,
    /// The access token Google's endpoints and ACR's exchange hand out
    /// (ACR's as the `sub` of a JWT: see [`TokenServices::acr_refresh_token`]).
    pub access_token: String,
    pub github_request_token: String,
    pub client_secret: String,
    /// A service-account key file whose `token_uri` is this service.
    pub key_file: PathBuf,
    pub behaviour: Arc<Behaviour>,
    shared: Arc<Shared>,
    _dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

const EXPIRY_FOR_REFRESH: i64 = 4_102_444_800; // 2100-01-01

impl TokenServices {
    pub fn start() -> TokenServices {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("sa.pem");
        let public_key = dir.path().join("sa.pub.pem");
        let o = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&key)
            .output()
            .unwrap();
        assert!(o.status.success(), "openssl genpkey: {}", text(&o.stderr));
        let o = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public_key)
            .output()
            .unwrap();
        assert!(o.status.success(), "openssl pkey: {}", text(&o.stderr));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let word = super::unique_word(dir.path());
        let behaviour = Arc::new(Behaviour::default());
        let shared = Arc::new(Shared {
            access_token: format!("ya29.{word}-access"),
            github_request_token: format!("ghs_{word}-request"),
            client_secret: format!("{word}-client-secret"),
            public_key,
            work: dir.path().to_path_buf(),
            seen: Mutex::new(Vec::new()),
            behaviour: behaviour.clone(),
            base: base.clone(),
        });
        let app = Router::new()
            .route("/google/token", post(google_token))
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/token",
                get(metadata_token),
            )
            .route("/google/sts", post(google_sts))
            .route("/azure/{tenant}/oauth2/v2.0/token", post(azure_token))
            .route("/oauth2/exchange", post(acr_exchange))
            .route("/github/token", get(github_token))
            .with_state(shared.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        let key_file = dir.path().join("sa.json");
        let private_key = std::fs::read_to_string(&key).unwrap();
        std::fs::write(
            &key_file,
            json!({
                "type": "service_account",
                "project_id": "kflow-test",
                "private_key_id": "key-1",
                "private_key": private_key,
                "client_email": "ci@kflow-test.iam.gserviceaccount.com",
                "token_uri": format!("{base}/google/token"),
            })
            .to_string(),
        )
        .unwrap();
        TokenServices {
            base,
            access_token: shared.access_token.clone(),
            github_request_token: shared.github_request_token.clone(),
            client_secret: shared.client_secret.clone(),
            key_file,
            behaviour,
            shared,
            _dir: dir,
            _runtime: runtime,
        }
    }

    /// The refresh token ACR's exchange hands out (a JWT living until 2100).
    pub fn acr_refresh_token(&self) -> String {
        acr_refresh(&self.shared.access_token)
    }

    /// The OIDC token the GitHub endpoint gives for an audience.
    pub fn github_id_token(&self, audience: &str) -> String {
        github_id(audience)
    }

    /// What was asked of `endpoint` so far.
    pub fn seen(&self, endpoint: &str) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.endpoint == endpoint)
            .cloned()
            .collect()
    }
}

fn acr_refresh(subject: &str) -> String {
    jwt(json!({ "sub": subject, "exp": EXPIRY_FOR_REFRESH }))
}

fn github_id(audience: &str) -> String {
    jwt(json!({
        "iss": "https://token.actions.githubusercontent.com",
        "aud": audience, "sub": "repo:kflow/kflow:ref:refs/heads/main", "exp": EXPIRY_FOR_REFRESH,
    }))
}

fn record(s: &Shared, endpoint: &str, fields: &HashMap<String, String>, headers: &HeaderMap) {
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    s.seen.lock().unwrap().push(Seen {
        endpoint: endpoint.into(),
        fields: fields.clone(),
        headers,
    });
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// The failures a test asked for, before any real answer.
fn planned_failure(s: &Shared) -> Option<Response> {
    let b = &s.behaviour;
    if b.fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Some(oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "try again",
        ));
    }
    if b.refuse.load(Ordering::SeqCst) {
        return Some(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the grant was refused",
        ));
    }
    None
}

fn token_answer(s: &Shared, token: &str) -> Response {
    let mut answer = json!({ "access_token": token, "token_type": "Bearer" });
    if !s.behaviour.no_expiry.load(Ordering::SeqCst) {
        let life = match s.behaviour.lifetime.load(Ordering::SeqCst) {
            0 => 3600,
            n => n,
        };
        answer["expires_in"] = life.into();
    }
    Json(answer).into_response()
}

/// Google's token endpoint: the JWT bearer grant of a service account, its
/// RS256 signature checked by openssl against the account's public key.
async fn google_token(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    record(&s, "google/token", &form, &headers);
    if let Some(r) = planned_failure(&s) {
        return r;
    }
    if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "want jwt-bearer");
    }
    let assertion = form.get("assertion").cloned().unwrap_or_default();
    let parts: Vec<&str> = assertion.split('.').collect();
    if parts.len() != 3 {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "malformed assertion");
    }
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).unwrap_or_default();
    let header: serde_json::Value = serde_json::from_slice(&decode(parts[0])).unwrap_or_default();
    let claims: serde_json::Value = serde_json::from_slice(&decode(parts[1])).unwrap_or_default();
    let signed = format!("{}.{}", parts[0], parts[1]);
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let sig_file = s.work.join(format!("sig-{n}"));
    let data_file = s.work.join(format!("data-{n}"));
    std::fs::write(&sig_file, decode(parts[2])).unwrap();
    std::fs::write(&data_file, signed).unwrap();
    let verified = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&s.public_key)
        .arg("-signature")
        .arg(&sig_file)
        .arg(&data_file)
        .output()
        .is_ok_and(|o| o.status.success());
    let t = now();
    let valid = verified
        && header["alg"] == "RS256"
        && header["kid"] == "key-1"
        && claims["iss"] == "ci@kflow-test.iam.gserviceaccount.com"
        && claims["aud"] == format!("{}/google/token", s.base)
        && claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
        && claims["iat"].as_i64().is_some_and(|i| (i - t).abs() < 300)
        && claims["exp"].as_i64().is_some_and(|e| e > t && e <= t + 3600 + 300);
    if !valid {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid JWT Signature.");
    }
    token_answer(&s, &s.access_token)
}

/// The metadata server: only with `Metadata-Flavor: Google`.
async fn metadata_token(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    record(&s, "metadata", &HashMap::new(), &headers);
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return (StatusCode::FORBIDDEN, "Missing required header: Metadata-Flavor").into_response();
    }
    if let Some(r) = planned_failure(&s) {
        return r;
    }
    token_answer(&s, &s.access_token)
}

/// Google's STS: an RFC 8693 token exchange of a GitHub OIDC token.
async fn google_sts(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    record(&s, "google/sts", &form, &headers);
    if let Some(r) = planned_failure(&s) {
        return r;
    }
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let ok = field("grant_type") == "urn:ietf:params:oauth:grant-type:token-exchange"
        && field("requested_token_type") == "urn:ietf:params:oauth:token-type:access_token"
        && field("subject_token_type") == "urn:ietf:params:oauth:token-type:jwt"
        && field("audience").starts_with("//iam.googleapis.com/")
        && field("subject_token") == github_id(field("audience"));
    if !ok {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the subject token was not accepted",
        );
    }
    token_answer(&s, &s.access_token)
}

/// The Microsoft identity platform: client credentials, with the secret or
/// a federated GitHub token as client assertion.
async fn azure_token(
    State(s): State<Arc<Shared>>,
    UrlPath(tenant): UrlPath<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut fields = form.clone();
    fields.insert("tenant".into(), tenant.clone());
    record(&s, "azure/token", &fields, &headers);
    if let Some(r) = planned_failure(&s) {
        return r;
    }
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let proof = field("client_secret") == s.client_secret
        || (field("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            && field("client_assertion") == github_id("api://AzureADTokenExchange"));
    if tenant != "kflow-tenant" || field("client_id") != "kflow-app" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "AADSTS700016: unknown application",
        );
    }
    if field("grant_type") != "client_credentials"
        || field("scope") != "https://management.azure.com/.default"
        || !proof
    {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
        );
    }
    token_answer(&s, &format!("aad-{}", s.access_token))
}

/// ACR's exchange of a Microsoft identity token for a refresh token.
async fn acr_exchange(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    record(&s, "acr/exchange", &form, &headers);
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if field("grant_type") != "access_token"
        || field("tenant") != "kflow-tenant"
        || field("access_token") != format!("aad-{}", s.access_token)
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"errors": [{"code": "UNAUTHORIZED"}]})),
        )
            .into_response();
    }
    let refresh = if s.behaviour.no_expiry.load(Ordering::SeqCst) {
        jwt(json!({ "sub": s.access_token }))
    } else {
        acr_refresh(&s.access_token)
    };
    Json(json!({ "refresh_token": refresh })).into_response()
}

/// GitHub Actions' OIDC endpoint: `?audience=`, `Authorization: bearer`.
async fn github_token(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    record(&s, "github/token", &query, &headers);
    let expected = format!("bearer {}", s.github_request_token);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"message": "Bad credentials"}))).into_response();
    }
    let audience = query.get("audience").cloned().unwrap_or_default();
    Json(json!({ "count": 1, "value": github_id(&audience) })).into_response()
}
