//! An OCI distribution API client: manifests and blobs by digest, uploads,
//! cross-repository mounts, with Basic and bearer-token authentication
//! (answering the registry's `WWW-Authenticate` challenge).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::credentials::{Login, Source};
use super::name::plain_http;
use crate::net::explain;

/// Manifest media types kflow reads and copies.
pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

pub fn is_index(media_type: &str) -> bool {
    media_type.contains("index") || media_type.contains("manifest.list")
}

/// Why a registry operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError(pub String);

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, RegistryError>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(RegistryError(msg.into()))
}

/// The largest manifest read, as containers/image allows: a registry that
/// serves more is refused, not buffered.
pub const MAX_MANIFEST: u64 = 4 * 1024 * 1024;
/// The largest blob read into memory when its descriptor gives no size
/// (signature payloads, configs are far smaller).
pub const MAX_UNSIZED_BLOB: u64 = 16 * 1024 * 1024;

/// Reads a body of at most `max` bytes, refusing it as soon as it announces
/// or delivers more; `what` names it in the error.
async fn read_capped(host: &str, mut resp: Response, max: u64, what: &str) -> Result<Bytes> {
    if let Some(len) = resp.content_length().filter(|&l| l > max) {
        return err(format!(
            "{host}: {what} is {len} bytes, more than the {max} allowed: refusing it"
        ));
    }
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| RegistryError(format!("{host}: reading {what}: {}", explain(&e))))?
    {
        if out.len() as u64 + chunk.len() as u64 > max {
            return err(format!(
                "{host}: {what} is more than the {max} bytes allowed: refusing it"
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A manifest as stored: its exact bytes (never re-serialised), type and digest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: String,
}

#[derive(Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
}

impl Descriptor {
    /// The size, when the descriptor gives one.
    pub fn sized(&self) -> Option<u64> {
        (self.size > 0).then_some(self.size)
    }
}

/// The parts of a manifest or index that name other content.
#[derive(Deserialize)]
pub struct ManifestBody {
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// A client for one registry host, with its credentials.
pub struct Registry {
    host: String,
    base: String,
    /// `base` parsed: where upload locations are resolved, and the origin
    /// credentials may be sent to.
    base_url: reqwest::Url,
    http: reqwest::Client,
    source: Source,
    login: tokio::sync::Mutex<Option<Option<Login>>>,
    /// Bearer tokens by scope; `Basic` when the registry asked for Basic.
    auth: Mutex<HashMap<String, String>>,
}

enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String> },
}

fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.insert(key.trim().to_ascii_lowercase(), value.to_string());
        rest = after.trim_start_matches([',', ' ']);
    }
    Some(Challenge::Bearer {
        realm: params.remove("realm")?,
        service: params.remove("service"),
    })
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

impl Registry {
    pub fn new(host: &str, source: Source) -> Result<Registry> {
        let scheme = if plain_http(host) { "http" } else { "https" };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(crate::net::idle_timeout())
            .user_agent(concat!("kflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError(format!("cannot set up the HTTP client: {e}")))?;
        let base = format!("{scheme}://{host}/v2");
        let base_url =
            reqwest::Url::parse(&base).map_err(|e| RegistryError(format!("`{host}` is not a registry host: {e}")))?;
        Ok(Registry {
            host: host.to_string(),
            base,
            base_url,
            http,
            source,
            login: tokio::sync::Mutex::new(None),
            auth: Mutex::new(HashMap::new()),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The login for this registry, looked up (or minted) once per client.
    async fn login(&self) -> Result<Option<Login>> {
        let mut cached = self.login.lock().await;
        if let Some(l) = &*cached {
            return Ok(l.clone());
        }
        let l = self
            .source
            .login(&self.host)
            .await
            .map_err(|e| RegistryError(format!("credentials for {}: {e}", self.host)))?;
        *cached = Some(l.clone());
        Ok(l)
    }

    async fn basic_header(&self) -> Result<Option<String>> {
        Ok(match self.login().await? {
            Some(Login::Basic { username, password }) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{}", password.expose()))
            )),
            _ => None,
        })
    }

    /// Fetches a bearer token for `scope` from the challenge's realm.
    async fn token(&self, realm: &str, service: Option<&str>, scope: &str) -> Result<String> {
        // One `scope` parameter per scope, as the token protocol wants.
        let mut query: Vec<(&str, &str)> = scope.split(' ').map(|s| ("scope", s)).collect();
        if let Some(s) = service {
            query.push(("service", s));
        }
        let login = self.login().await?;
        let req = match &login {
            // An identity token is a refresh token: OAuth2 POST form.
            Some(Login::IdentityToken(t)) => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", t.expose()),
                    ("client_id", "kflow"),
                    ("scope", scope),
                ];
                if let Some(s) = service {
                    form.push(("service", s));
                }
                self.http.post(realm).form(&form)
            }
            _ => {
                let mut r = self.http.get(realm).query(&query);
                if let Some(h) = self.basic_header().await? {
                    r = r.header(AUTHORIZATION, h);
                }
                r
            }
        };
        let resp = req.send().await.map_err(|e| {
            RegistryError(format!(
                "{}: token service {realm} unreachable: {}",
                self.host,
                explain(&e)
            ))
        })?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return err(match login {
                    Some(_) => format!(
                        "{}: authentication failed (the token service refused these credentials; check them)",
                        self.host
                    ),
                    None => format!(
                    "{}: authentication failed (the token service refused anonymous access: docker login {}, or {})",
                    self.host, self.host, self.source.hint
                ),
                })
            }
            s => return err(format!("{}: the token service answered {s}", self.host)),
        }
        let answer = read_capped(&self.host, resp, 1024 * 1024, "the token answer").await?;
        let answer: TokenAnswer = serde_json::from_slice(&answer)
            .map_err(|e| RegistryError(format!("{}: unreadable token answer: {e}", self.host)))?;
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .map(|t| format!("Bearer {t}"))
            .ok_or_else(|| RegistryError(format!("{}: the token service gave no token", self.host)))
    }

    /// Sends a request, answering one authentication challenge; `scope` is
    /// what a bearer token must allow (`repository:NAME:pull,push`).
    async fn send(&self, scope: &str, build: impl Fn() -> RequestBuilder) -> Result<Response> {
        let cached = self.cached_auth(scope);
        let (resp, ours) = self.attempt(build(), cached.as_deref()).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        if !ours {
            return err(format!(
                "{}: the registry sent kflow to {}, which asks for credentials: they are not sent to another host",
                self.host,
                origin_of(resp.url())
            ));
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        let auth = match challenge {
            Some(Challenge::Basic) => match self.basic_header().await? {
                Some(h) => h,
                None => {
                    return err(format!(
                        "{}: authentication required, and no credentials were found (docker login {}, or {})",
                        self.host, self.host, self.source.hint
                    ))
                }
            },
            Some(Challenge::Bearer { realm, service }) => self.token(&realm, service.as_deref(), scope).await?,
            None => {
                return err(format!(
                    "{}: authentication required, with an unknown challenge",
                    self.host
                ))
            }
        };
        let (resp, _) = self.attempt(build(), Some(&auth)).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return err(format!(
                "{}: authentication failed (wrong username or password?)",
                self.host
            ));
        }
        self.auth
            .lock()
            .expect("not poisoned")
            .insert(self.auth_key(scope), auth);
        Ok(resp)
    }

    /// The `Authorization` that last worked for `scope`.
    fn cached_auth(&self, scope: &str) -> Option<String> {
        self.auth
            .lock()
            .expect("not poisoned")
            .get(&self.auth_key(scope))
            .cloned()
    }

    fn auth_key(&self, scope: &str) -> String {
        format!("{}|{scope}", self.host)
    }

    /// Sends one request, with `auth` when it goes to this registry;
    /// says whether it did.
    async fn attempt(&self, build: RequestBuilder, auth: Option<&str>) -> Result<(Response, bool)> {
        let mut req = build.build().map_err(|e| self.unreachable(&e))?;
        // Credentials go to this registry only: never to another host or
        // port an upload Location (or anything else) names.
        let ours = self.owns(req.url());
        if let (Some(a), true) = (auth, ours) {
            let mut value =
                HeaderValue::from_str(a).map_err(|_| RegistryError(format!("{}: unusable credentials", self.host)))?;
            value.set_sensitive(true);
            req.headers_mut().insert(AUTHORIZATION, value);
        }
        let resp = self.http.execute(req).await.map_err(|e| self.unreachable(&e))?;
        Ok((resp, ours))
    }

    /// Whether `url` is on this registry (same scheme, host and port).
    fn owns(&self, url: &reqwest::Url) -> bool {
        self.base_url.origin() == url.origin()
    }

    fn unreachable(&self, e: &reqwest::Error) -> RegistryError {
        RegistryError(format!("registry {} is unreachable: {}", self.host, explain(e)))
    }

    /// A failure answer, as one line naming the registry and what it said.
    async fn failure(&self, what: &str, resp: Response) -> RegistryError {
        let status = resp.status();
        // An error body is read for its message only: a little of it.
        let body = read_capped(&self.host, resp, 64 * 1024, "an error answer")
            .await
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        let said = registry_message(&body);
        let hint = match status {
            StatusCode::FORBIDDEN => " (these credentials may not do this)",
            StatusCode::METHOD_NOT_ALLOWED => " (the registry refuses this: read-only, or pushes disabled)",
            s if s.is_server_error() => " (a registry error; it may pass on retry)",
            _ => "",
        };
        RegistryError(format!("{}: {what}: {status}{said}{hint}", self.host))
    }

    fn url(&self, repo: &str, tail: &str) -> String {
        format!("{}/{repo}/{tail}", self.base)
    }

    fn pull_scope(repo: &str) -> String {
        format!("repository:{repo}:pull")
    }

    fn push_scope(repo: &str) -> String {
        format!("repository:{repo}:pull,push")
    }

    /// The manifest behind a tag or digest: its exact bytes. A manifest
    /// fetched by digest is checked against it.
    pub async fn manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        let url = self.url(repo, &format!("manifests/{reference}"));
        let resp = self
            .send(&Self::pull_scope(repo), || {
                self.http.get(&url).header(ACCEPT, MANIFEST_TYPES.join(", "))
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return err(format!("{}: {repo}:{reference} not found", self.host));
        }
        if !resp.status().is_success() {
            return Err(self
                .failure(&format!("reading the manifest {repo}:{reference}"), resp)
                .await);
        }
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = read_capped(
            &self.host,
            resp,
            MAX_MANIFEST,
            &format!("the manifest {repo}:{reference}"),
        )
        .await?;
        let digest = sha256_digest(&bytes);
        if reference.starts_with("sha256:") && reference != digest {
            return err(format!(
                "{}: the manifest served for {reference} hashes to {digest}: refusing it",
                self.host
            ));
        }
        let media_type = if media_type.is_empty() || media_type == "application/json" {
            serde_json::from_slice::<ManifestBody>(&bytes)
                .ok()
                .and_then(|b| b.media_type)
                .unwrap_or_default()
        } else {
            media_type
        };
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// The manifest behind a tag or digest, or `None` when the registry has
    /// none.
    pub async fn try_manifest(&self, repo: &str, reference: &str) -> Result<Option<Manifest>> {
        let url = self.url(repo, &format!("manifests/{reference}"));
        let resp = self
            .send(&Self::pull_scope(repo), || {
                self.http.head(&url).header(ACCEPT, MANIFEST_TYPES.join(", "))
            })
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => self.manifest(repo, reference).await.map(Some),
            _ => Err(self.failure(&format!("looking for {repo}:{reference}"), resp).await),
        }
    }

    /// The digest a tag points to, from the registry (HEAD, then GET when a
    /// registry does not say).
    pub async fn resolve(&self, repo: &str, reference: &str) -> Result<String> {
        let url = self.url(repo, &format!("manifests/{reference}"));
        let resp = self
            .send(&Self::pull_scope(repo), || {
                self.http.head(&url).header(ACCEPT, MANIFEST_TYPES.join(", "))
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return err(format!("{}: {repo}:{reference} not found", self.host));
        }
        if resp.status().is_success() {
            if let Some(d) = resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
            {
                return Ok(d.to_string());
            }
        }
        Ok(self.manifest(repo, reference).await?.digest)
    }

    /// Stores a manifest's exact bytes under a tag or digest; returns the
    /// digest the registry reports, checked against the bytes.
    pub async fn put_manifest(&self, repo: &str, reference: &str, m: &Manifest) -> Result<String> {
        let url = self.url(repo, &format!("manifests/{reference}"));
        let resp = self
            .send(&Self::push_scope(repo), || {
                self.http
                    .put(&url)
                    .header(CONTENT_TYPE, &m.media_type)
                    .body(m.bytes.clone())
            })
            .await?;
        if !resp.status().is_success() {
            return Err(self
                .failure(&format!("storing the manifest {repo}:{reference}"), resp)
                .await);
        }
        let reported = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match reported {
            Some(d) if d != m.digest => err(format!(
                "{}: stored the manifest as {d}, but its bytes hash to {}",
                self.host, m.digest
            )),
            _ => Ok(m.digest.clone()),
        }
    }

    pub async fn blob_exists(&self, repo: &str, digest: &str) -> Result<bool> {
        let url = self.url(repo, &format!("blobs/{digest}"));
        let resp = self.send(&Self::pull_scope(repo), || self.http.head(&url)).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.failure(&format!("checking blob {digest}"), resp).await),
        }
    }

    /// Asks the registry to mount a blob from another repository of the
    /// same registry; `false` when it did not (then upload it).
    pub async fn mount_blob(&self, repo: &str, from: &str, digest: &str) -> Result<bool> {
        let url = self.url(repo, "blobs/uploads/");
        let scope = format!("{} repository:{from}:pull", Self::push_scope(repo));
        let resp = self
            .send(&scope, || {
                self.http
                    .post(&url)
                    .query(&[("mount", digest), ("from", from)])
                    .header(reqwest::header::CONTENT_LENGTH, "0")
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => Ok(false),
            _ => Err(self.failure(&format!("mounting blob {digest} from {from}"), resp).await),
        }
    }

    /// Reads a whole (small) blob, checked against its digest and against
    /// `size`, the size its descriptor gives, while it streams in.
    pub async fn blob(&self, repo: &str, digest: &str, size: Option<u64>) -> Result<Bytes> {
        let url = self.url(repo, &format!("blobs/{digest}"));
        let resp = self.send(&Self::pull_scope(repo), || self.http.get(&url)).await?;
        if !resp.status().is_success() {
            return Err(self.failure(&format!("reading blob {digest}"), resp).await);
        }
        let what = format!("blob {digest}");
        let bytes = read_capped(&self.host, resp, size.unwrap_or(MAX_UNSIZED_BLOB), &what).await?;
        if let Some(said) = size.filter(|&s| s != bytes.len() as u64) {
            return err(format!(
                "{}: blob {digest} is {} bytes, its descriptor says {said}",
                self.host,
                bytes.len()
            ));
        }
        if sha256_digest(&bytes) != digest {
            return err(format!("{}: blob {digest} does not match its digest", self.host));
        }
        Ok(bytes)
    }

    /// Uploads a blob held in memory, in one request.
    pub async fn upload_blob(&self, repo: &str, digest: &str, data: Bytes) -> Result<()> {
        let size = data.len() as u64;
        self.upload_blob_with(repo, digest, size, || Ok(reqwest::Body::from(data.clone())))
            .await
    }

    /// Uploads a blob of `size` bytes in one request (POST for a session,
    /// then PUT); `body` gives its bytes, again if an authentication
    /// challenge makes the PUT go twice.
    pub async fn upload_blob_with(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        body: impl Fn() -> Result<reqwest::Body>,
    ) -> Result<()> {
        let scope = Self::push_scope(repo);
        let mut put_url = self.start_upload(repo, &scope, digest).await?;
        put_url.query_pairs_mut().append_pair("digest", digest);
        let failed_body = std::sync::Mutex::new(None);
        let resp = self
            .send(&scope, || {
                let mut headers = HeaderMap::new();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
                headers.insert(reqwest::header::CONTENT_LENGTH, HeaderValue::from(size));
                let req = self.http.request(Method::PUT, put_url.clone()).headers(headers);
                match body() {
                    Ok(b) => req.body(b),
                    Err(e) => {
                        *failed_body.lock().expect("not poisoned") = Some(e);
                        req
                    }
                }
            })
            .await;
        if let Some(e) = failed_body.lock().expect("not poisoned").take() {
            return Err(e);
        }
        let resp = resp?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.failure(&format!("uploading blob {digest}"), resp).await);
        }
        Ok(())
    }

    /// Uploads a blob whose digest is known only once all of it is sent
    /// (a layer compressed on the way; `what` names it in errors): its
    /// bytes go in one streamed PATCH, then the digest `finished` gives
    /// (with the size) commits it. When the body fails, `finished` says why
    /// (the compression's error, not the request's).
    pub async fn upload_blob_streamed(
        &self,
        repo: &str,
        what: &str,
        body: reqwest::Body,
        finished: impl std::future::Future<Output = Result<(String, u64)>>,
    ) -> Result<(String, u64)> {
        let scope = Self::push_scope(repo);
        let patch_url = self.start_upload(repo, &scope, what).await?;
        // The POST has settled the credentials for this scope; a body
        // cannot be sent twice, so the PATCH goes once, with them.
        let cached = self.cached_auth(&scope);
        let patch = self
            .http
            .request(Method::PATCH, patch_url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body);
        let sent = self.attempt(patch, cached.as_deref()).await;
        let resp = match sent {
            Ok((resp, _)) if resp.status() == StatusCode::ACCEPTED => resp,
            Ok((resp, _)) => {
                finished.await?;
                return Err(self.failure(&format!("uploading {what}"), resp).await);
            }
            Err(e) => {
                finished.await?;
                return Err(e);
            }
        };
        let mut put_url = self.upload_location(&resp)?;
        let (digest, size) = finished.await?;
        put_url.query_pairs_mut().append_pair("digest", &digest);
        let resp = self
            .send(&scope, || {
                self.http
                    .request(Method::PUT, put_url.clone())
                    .header(reqwest::header::CONTENT_LENGTH, "0")
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.failure(&format!("committing {what} as blob {digest}"), resp).await);
        }
        Ok((digest, size))
    }

    /// Opens an upload session (of `what`); returns where it goes on.
    async fn start_upload(&self, repo: &str, scope: &str, what: &str) -> Result<reqwest::Url> {
        let url = self.url(repo, "blobs/uploads/");
        let resp = self
            .send(scope, || {
                self.http.post(&url).header(reqwest::header::CONTENT_LENGTH, "0")
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.failure(&format!("starting the upload of {what}"), resp).await);
        }
        self.upload_location(&resp)
    }

    /// Where an upload session goes on, as the registry's `Location` says.
    fn upload_location(&self, resp: &Response) -> Result<reqwest::Url> {
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError(format!("{}: the upload session has no Location", self.host)))?;
        self.base_url
            .join(location)
            .map_err(|e| RegistryError(format!("{}: bad upload location {location}: {e}", self.host)))
    }

    /// A blob as a stream of its bytes, checked while it flows: more bytes
    /// than `size`, fewer, or bytes that do not hash to `digest` end the
    /// stream with an error (so an upload fed by it fails).
    pub async fn blob_stream(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
    ) -> Result<impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static> {
        let url = self.url(repo, &format!("blobs/{digest}"));
        let resp = self.send(&Self::pull_scope(repo), || self.http.get(&url)).await?;
        if !resp.status().is_success() {
            return Err(self.failure(&format!("reading blob {digest}"), resp).await);
        }
        if let Some(len) = resp.content_length().filter(|&l| l != size) {
            return err(format!(
                "{}: blob {digest} is {len} bytes, its descriptor says {size}: refusing it",
                self.host
            ));
        }
        Ok(checked(
            resp.bytes_stream(),
            self.host.clone(),
            digest.to_string(),
            size,
        ))
    }
}

/// `inner`, ended by an error as soon as it passes `size` bytes, and at its
/// end unless it gave exactly `size` bytes hashing to `digest`.
fn checked(
    inner: impl futures_util::Stream<Item = reqwest::Result<Bytes>> + Send + Unpin + 'static,
    host: String,
    digest: String,
    size: u64,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    use futures_util::StreamExt;
    struct State<S> {
        inner: S,
        hasher: Sha256,
        seen: u64,
        done: bool,
    }
    let bad = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidData, msg);
    let state = State {
        inner,
        hasher: Sha256::new(),
        seen: 0,
        done: false,
    };
    futures_util::stream::unfold(state, move |mut st| {
        let (host, digest) = (host.clone(), digest.clone());
        async move {
            if st.done {
                return None;
            }
            match st.inner.next().await {
                Some(Ok(chunk)) => {
                    st.seen += chunk.len() as u64;
                    if st.seen > size {
                        st.done = true;
                        let e = bad(format!(
                            "{host}: blob {digest} is longer than the {size} bytes its descriptor says"
                        ));
                        return Some((Err(e), st));
                    }
                    st.hasher.update(&chunk);
                    Some((Ok(chunk), st))
                }
                Some(Err(e)) => {
                    st.done = true;
                    Some((Err(bad(format!("{host}: reading blob {digest}: {}", explain(&e)))), st))
                }
                None => {
                    st.done = true;
                    let got = format!("sha256:{}", hex::encode(std::mem::take(&mut st.hasher).finalize()));
                    if st.seen != size {
                        let e = bad(format!("{host}: blob {digest} ended after {} of {size} bytes", st.seen));
                        Some((Err(e), st))
                    } else if got != digest {
                        Some((Err(bad(format!("{host}: blob {digest} does not match its digest"))), st))
                    } else {
                        None
                    }
                }
            }
        }
    })
}

fn origin_of(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

/// The registry's own words from an error body (`{"errors": [{"message"}]}`).
fn registry_message(body: &str) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_str::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => {
            let parts: Vec<String> = e
                .errors
                .iter()
                .map(|i| {
                    if i.message.is_empty() {
                        i.code.clone()
                    } else {
                        i.message.clone()
                    }
                })
                .collect();
            format!(" ({})", parts.join("; "))
        }
        _ => {
            let t: String = body.trim().chars().take(200).collect();
            if t.is_empty() {
                String::new()
            } else {
                format!(" ({t})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#,
        );
        match c {
            Some(Challenge::Bearer { realm, service }) => {
                assert_eq!(realm, "https://auth.example/token");
                assert_eq!(service.as_deref(), Some("registry.example"));
            }
            _ => panic!("not bearer"),
        }
        assert!(matches!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        ));
        assert!(parse_challenge("Negotiate").is_none());
    }

    #[test]
    fn registry_errors_are_quoted() {
        let body = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(registry_message(body), " (manifest unknown)");
        assert_eq!(registry_message(""), "");
    }
}
