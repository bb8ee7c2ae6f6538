//! The token tasks against real peers: moto for AWS (SigV4 checked), and
//! the documented Google, Microsoft and GitHub protocols served on
//! 127.0.0.1 (`support::cloud`). Registries take the minted pairs through
//! htpasswd, and the flows push to them with the minted credentials.

mod support;

use std::path::Path;
use std::sync::atomic::Ordering;

use support::cloud::{Moto, TokenServices, MOTO_ECR_PASSWORD};
use support::*;

fn run(dir: &Path, flow: &str, envs: &[(&str, &str)]) -> (i32, String, String) {
    std::fs::write(dir.join("flow.kflow"), flow).unwrap();
    let mut all = vec![("DOCKER_CONFIG", "/nonexistent-docker-config")];
    all.extend_from_slice(envs);
    let o = kflow(dir, &["run", "--state", "state", "flow.kflow"], &all);
    (o.status.code().unwrap_or(-1), text(&o.stdout), text(&o.stderr))
}

/// No file of the history, and neither output stream, holds any of `secrets`.
fn nowhere(dir: &Path, out: &str, err: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!out.contains(s) && !err.contains(s), "{s} printed:\n{out}\n{err}");
        for f in files_under(&dir.join("state")) {
            let bytes = std::fs::read(&f).unwrap();
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "{s} recorded in {}",
                f.display()
            );
        }
    }
}

fn aws_keys(moto: &Moto) -> [(&'static str, &str); 2] {
    [
        ("AWS_ACCESS_KEY_ID", moto.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", moto.secret_access_key.as_str()),
    ]
}

#[test]
fn an_ecr_login_minted_by_moto_pushes_to_the_registry() {
    if !docker_or_skip("an_ecr_login_minted_by_moto_pushes_to_the_registry") {
        return;
    }
    let Some(moto) = Moto::start_or_skip("an_ecr_login_minted_by_moto_pushes_to_the_registry") else {
        return;
    };
    let registry = Registry::with_user("AWS", MOTO_ECR_PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    busybox_context(d, "");
    let flow = format!(
        r#"flow ecr {{
  task login = aws.ecr_login {{ region: "us-east-1", endpoint: "{endpoint}" }}
  task image = docker.build {{ context: "img" }}
  task push = docker.push {{ image: image.image, to: "{registry}/team/app:1", credentials: login.credentials }}
  output registry = login.registry
  output expires = login.expires_at
  output pushed = push.digest
}}
"#,
        endpoint = moto.endpoint,
        registry = registry.host
    );
    let (code, out, err) = run(d, &flow, &aws_keys(&moto));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(output(&out, "registry"), "123456789012.dkr.ecr.us-east-1.amazonaws.com");
    // moto's tokens carry a fixed expiry; it is passed on as given.
    assert!(output(&out, "expires").ends_with('Z'), "{out}");
    assert!(output(&out, "pushed").starts_with("sha256:"), "{out}");
    nowhere(d, &out, &err, &[MOTO_ECR_PASSWORD, &moto.secret_access_key]);
    let id = last_execution(d, "state")["id"].as_str().unwrap().to_string();
    let shown = text(&kflow(d, &["executions", "show", "--state", "state", "--json", &id], &[]).stdout);
    assert!(
        shown.contains("\"registry\"") && !shown.contains(MOTO_ECR_PASSWORD),
        "{shown}"
    );
}

#[test]
fn ecr_logins_follow_the_aws_credential_chain() {
    let Some(moto) = Moto::start_or_skip("ecr_logins_follow_the_aws_credential_chain") else {
        return;
    };
    let tokens = TokenServices::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let show = |extra: &str| {
        format!(
            r#"flow chain {{
  {extra}
  output registry = login.registry
}}
"#
        )
    };

    // A profile of the shared credentials file.
    let credentials = d.join("aws-credentials");
    std::fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = AKIAWRONGDEFAULT\naws_secret_access_key = wrong\n\n[ci]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            moto.access_key_id, moto.secret_access_key
        ),
    )
    .unwrap();
    // The keys read from the file are secrets of the run from then on: a
    // task that prints the file prints `***`.
    let flow = show(&format!(
        r#"task login = aws.ecr_login {{ region: "us-east-1", profile: "ci", endpoint: "{}" }}
  task leak = shell.run {{ cmd: ["cat", "aws-credentials"], after: [login] }}"#,
        moto.endpoint
    ));
    let envs = [
        ("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap()),
        ("AWS_CONFIG_FILE", "/nonexistent"),
    ];
    let (code, out, err) = run(d, &flow, &envs);
    assert_eq!(code, 0, "profile:\n{out}\n{err}");
    assert!(out.contains("leak | aws_secret_access_key = ***"), "{out}");
    nowhere(d, &out, &err, &[MOTO_ECR_PASSWORD, &moto.secret_access_key]);

    // A web identity token file and a role, from the environment; one
    // endpoint variable for STS and ECR.
    let token_file = d.join("web-identity-token");
    std::fs::write(&token_file, tokens.github_id_token("sts.amazonaws.com")).unwrap();
    let flow = show(r#"task login = aws.ecr_login { region: "us-east-1" }"#);
    let envs = [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
        ("AWS_ROLE_ARN", moto.role_arn.as_str()),
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ("AWS_CONFIG_FILE", "/nonexistent"),
    ];
    moto.let_one_unsigned_call();
    let (code, out, err) = run(d, &flow, &envs);
    assert_eq!(code, 0, "web identity file:\n{out}\n{err}");
    assert_eq!(output(&out, "registry"), "123456789012.dkr.ecr.us-east-1.amazonaws.com");

    // The CI's OIDC token, fed to the role by the flow.
    let flow = show(&format!(
        r#"task id = oidc.token {{ audience: "sts.amazonaws.com" }}
  task login = aws.ecr_login {{
    region: "us-east-1"
    role_arn: "{role}"
    web_identity_token: id.token
    endpoint: "{endpoint}"
    sts_endpoint: "{endpoint}"
  }}
  task note = log {{ message: "token until ${{id.expires_at}}" }}"#,
        role = moto.role_arn,
        endpoint = moto.endpoint
    ));
    let url = format!("{}/github/token?api-version=2.0", tokens.base);
    let envs = [
        ("ACTIONS_ID_TOKEN_REQUEST_URL", url.as_str()),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", tokens.github_request_token.as_str()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ("AWS_CONFIG_FILE", "/nonexistent"),
    ];
    moto.let_one_unsigned_call();
    let (code, out, err) = run(d, &flow, &envs);
    assert_eq!(code, 0, "oidc.token:\n{out}\n{err}");
    assert!(out.contains("token until 2100-01-01T00:00:00Z"), "{out}");
    let asked = tokens.seen("github/token");
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].fields["audience"], "sts.amazonaws.com");
    assert_eq!(asked[0].fields["api-version"], "2.0");
    nowhere(
        d,
        &out,
        &err,
        &[
            &tokens.github_id_token("sts.amazonaws.com"),
            &tokens.github_request_token,
            MOTO_ECR_PASSWORD,
        ],
    );

    // Nothing at all: the error says where credentials could come from.
    let flow = show(&format!(
        r#"task login = aws.ecr_login {{ region: "us-east-1", endpoint: "{}" }}"#,
        moto.endpoint
    ));
    let (code, out, err) = run(d, &flow, &envs[2..]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("no AWS credentials") && err.contains("AWS_WEB_IDENTITY_TOKEN_FILE"),
        "{err}"
    );
}

#[test]
fn wrong_aws_keys_are_refused_by_sigv4_without_retrying() {
    let Some(moto) = Moto::start_or_skip("wrong_aws_keys_are_refused_by_sigv4_without_retrying") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let flow = format!(
        r#"flow wrong {{
  task login = aws.ecr_login {{ region: "us-east-1", endpoint: "{}", retry: {{ attempts: 3, delay: 1s }} }}
  output registry = login.registry
}}
"#,
        moto.endpoint
    );
    let wrong_secret = [
        ("AWS_ACCESS_KEY_ID", moto.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", "not-the-secret-key"),
    ];
    let started = std::time::Instant::now();
    let (code, out, err) = run(d, &flow, &wrong_secret);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "ECR GetAuthorizationToken at {} answered 403 Forbidden: SignatureDoesNotMatch",
            moto.endpoint
        )),
        "{err}"
    );
    // A refusal is not retried: three attempts would take 2 s of delays.
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "{out}");
    assert!(!out.contains("retrying"), "{out}");

    let unknown = [
        ("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000"),
        ("AWS_SECRET_ACCESS_KEY", "whatever-secret"),
    ];
    let (code, out, err) = run(d, &flow, &unknown);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("InvalidClientTokenId"), "{err}");
}

#[test]
fn google_and_azure_logins_push_and_renew_before_expiry() {
    if !docker_or_skip("google_and_azure_logins_push_and_renew_before_expiry") {
        return;
    }
    let tokens = TokenServices::start();
    // Google's tokens live 2 s here: the push, 3 s later, needs a new one.
    tokens.behaviour.lifetime.store(2, Ordering::SeqCst);
    let gar = Registry::with_user("oauth2accesstoken", &tokens.access_token);
    let acr = Registry::with_user("00000000-0000-0000-0000-000000000000", &tokens.acr_refresh_token());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    busybox_context(d, "");
    std::fs::copy(&tokens.key_file, d.join("sa.json")).unwrap();
    let flow = format!(
        r#"flow clouds {{
  secret client_secret = env("AZURE_SECRET")
  task google = gcp.registry_login {{ location: "europe-west1", credentials_file: "sa.json" }}
  task azure = azure.acr_login {{
    registry: "{acr}"
    tenant: "kflow-tenant"
    client_id: "kflow-app"
    client_secret: client_secret
    authority: "{base}/azure"
    exchange_url: "{base}/oauth2/exchange"
  }}
  task image = docker.build {{ context: "img" }}
  task wait = sleep {{ duration: 3s, after: [google] }}
  task to_google = docker.push {{ image: image.image, to: "{gar}/kflow/app:1", credentials: google.credentials, after: [wait] }}
  task to_azure = docker.push {{ image: image.image, to: "{acr}/app:1", credentials: azure.credentials }}
  output google_registry = google.registry
  output azure_registry = azure.registry
  output azure_expires = azure.expires_at
  output same = to_google.digest == to_azure.digest
}}
"#,
        base = tokens.base,
        gar = gar.host,
        acr = acr.host,
    );
    let (code, out, err) = run(d, &flow, &[("AZURE_SECRET", tokens.client_secret.as_str())]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(output(&out, "google_registry"), "europe-west1-docker.pkg.dev");
    assert_eq!(output(&out, "azure_registry"), acr.host);
    assert_eq!(output(&out, "azure_expires"), "2100-01-01T00:00:00Z");
    assert_eq!(output(&out, "same"), "true");
    assert_eq!(
        tokens.seen("google/token").len(),
        2,
        "the expiring token was renewed once"
    );
    let exchange = tokens.seen("acr/exchange");
    assert_eq!(exchange.len(), 1);
    assert_eq!(exchange[0].fields["service"], acr.host);
    nowhere(
        d,
        &out,
        &err,
        &[&tokens.access_token, &tokens.acr_refresh_token(), &tokens.client_secret],
    );
}

#[test]
fn google_logins_from_the_metadata_server_and_workload_identity_federation() {
    let tokens = TokenServices::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let host = tokens.base.trim_start_matches("http://");
    let flow = r#"flow meta {
  task login = gcp.registry_login {}
  output registry = login.registry
}
"#;
    let (code, out, err) = run(
        d,
        flow,
        &[("GCE_METADATA_HOST", host), ("GOOGLE_APPLICATION_CREDENTIALS", "")],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(output(&out, "registry"), "us-docker.pkg.dev");
    let asked = tokens.seen("metadata");
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].headers["metadata-flavor"], "Google");

    // Workload identity federation: the subject token from the file the
    // configuration names, or from `oidc.token` in the flow.
    let audience = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/ci/providers/github";
    std::fs::write(d.join("subject"), tokens.github_id_token(audience)).unwrap();
    let federation = serde_json::json!({
        "type": "external_account",
        "audience": audience,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{}/google/sts", tokens.base),
        "credential_source": { "file": d.join("subject") },
    });
    std::fs::write(d.join("federation.json"), federation.to_string()).unwrap();
    let flow = r#"flow federated {
  task login = gcp.registry_login { location: "europe-west4" }
  output registry = login.registry
}
"#;
    let (code, out, err) = run(d, flow, &[("GOOGLE_APPLICATION_CREDENTIALS", "federation.json")]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(output(&out, "registry"), "europe-west4-docker.pkg.dev");

    std::fs::remove_file(d.join("subject")).unwrap();
    let flow = format!(
        r#"flow federated {{
  task id = oidc.token {{ audience: "{audience}" }}
  task login = gcp.registry_login {{ credentials_file: "federation.json", subject_token: id.token }}
  output registry = login.registry
}}
"#
    );
    let url = format!("{}/github/token", tokens.base);
    let envs = [
        ("ACTIONS_ID_TOKEN_REQUEST_URL", url.as_str()),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", tokens.github_request_token.as_str()),
    ];
    let (code, out, err) = run(d, &flow, &envs);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(tokens.seen("google/sts").len(), 2);
    nowhere(
        d,
        &out,
        &err,
        &[&tokens.access_token, &tokens.github_id_token(audience)],
    );
}

#[test]
fn an_azure_login_with_a_federated_token() {
    let tokens = TokenServices::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("federated"),
        tokens.github_id_token("api://AzureADTokenExchange"),
    )
    .unwrap();
    let flow = format!(
        r#"flow acr {{
  task login = azure.acr_login {{ registry: "kflow.azurecr.io", exchange_url: "{}/oauth2/exchange" }}
  output expires = login.expires_at
}}
"#,
        tokens.base
    );
    let federated = d.join("federated");
    let authority = format!("{}/azure", tokens.base);
    let envs = [
        ("AZURE_TENANT_ID", "kflow-tenant"),
        ("AZURE_CLIENT_ID", "kflow-app"),
        ("AZURE_FEDERATED_TOKEN_FILE", federated.to_str().unwrap()),
        ("AZURE_AUTHORITY_HOST", authority.as_str()),
    ];
    let (code, out, err) = run(d, &flow, &envs);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(output(&out, "expires"), "2100-01-01T00:00:00Z");
    let asked = tokens.seen("azure/token");
    assert_eq!(asked[0].fields["tenant"], "kflow-tenant");
    assert!(!asked[0].fields.contains_key("client_secret"));
    nowhere(d, &out, &err, &[&tokens.acr_refresh_token()]);

    // A wrong client is refused, with the identity platform's own words.
    let mut wrong = envs.to_vec();
    wrong[1] = ("AZURE_CLIENT_ID", "someone-else");
    let (code, out, err) = run(d, &flow, &wrong);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "the Microsoft identity token request at {}/azure/kflow-tenant/oauth2/v2.0/token answered 400 Bad Request: unauthorized_client: AADSTS700016",
            tokens.base
        )),
        "{err}"
    );
}

#[test]
fn failing_token_services_retry_then_fail_naming_the_endpoint() {
    let tokens = TokenServices::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(&tokens.key_file, d.join("sa.json")).unwrap();
    let endpoint = format!("{}/google/token", tokens.base);
    let flow = r#"flow flaky {
  task login = gcp.registry_login { credentials_file: "sa.json", retry: { attempts: 3, delay: 100ms } }
  output registry = login.registry
}
"#;
    // Two 500s, then a token: the task's retry policy carries it.
    tokens.behaviour.fail_first.store(2, Ordering::SeqCst);
    let (code, out, err) = run(d, flow, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(tokens.seen("google/token").len(), 3);

    // 500s throughout: every attempt, then the endpoint named.
    tokens.behaviour.fail_first.store(100, Ordering::SeqCst);
    let (code, out, err) = run(d, flow, &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(tokens.seen("google/token").len(), 6);
    assert!(
        err.contains(&format!(
            "the service account's token grant at {endpoint} answered 500 Internal Server Error: server_error"
        )),
        "{err}"
    );
    tokens.behaviour.fail_first.store(0, Ordering::SeqCst);

    // A 400 is a refusal: not retried.
    tokens.behaviour.refuse.store(true, Ordering::SeqCst);
    let (code, out, err) = run(d, flow, &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(tokens.seen("google/token").len(), 7);
    assert!(
        err.contains("answered 400 Bad Request: invalid_grant: the grant was refused"),
        "{err}"
    );
    tokens.behaviour.refuse.store(false, Ordering::SeqCst);

    // An answer without expiry is refused: a token of unknown life.
    tokens.behaviour.no_expiry.store(true, Ordering::SeqCst);
    let (code, out, err) = run(d, flow, &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("answered without `expires_in`: a token of unknown life is refused"),
        "{err}"
    );
    tokens.behaviour.no_expiry.store(false, Ordering::SeqCst);

    // A malformed key file.
    std::fs::write(
        d.join("sa.json"),
        r#"{"type": "service_account", "client_email": "a@b", "private_key": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----"}"#,
    )
    .unwrap();
    let (code, out, err) = run(d, flow, &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("sa.json: `private_key`:"), "{err}");
    std::fs::write(d.join("sa.json"), "{ not json").unwrap();
    let (code, _, err) = run(d, flow, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("is not a Google credentials file"), "{err}");
    assert_eq!(tokens.seen("google/token").len(), 8, "a bad key file sends nothing");
}

#[test]
fn a_resumed_execution_mints_its_login_again() {
    if !docker_or_skip("a_resumed_execution_mints_its_login_again") {
        return;
    }
    let tokens = TokenServices::start();
    let registry = Registry::with_user("oauth2accesstoken", &tokens.access_token);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    busybox_context(d, "");
    let host = tokens.base.trim_start_matches("http://").to_string();
    let envs = [
        ("GCE_METADATA_HOST", host.as_str()),
        ("GOOGLE_APPLICATION_CREDENTIALS", ""),
    ];
    let flow = format!(
        r#"flow gated {{
  task login = gcp.registry_login {{}}
  task image = docker.build {{ context: "img" }}
  task gate = approval {{ summary: "push?", timeout: 1h }}
  task push = docker.push {{ image: image.image, to: "{}/kflow/app:1", credentials: login.credentials, after: [gate] }}
  output pushed = push.digest
}}
"#,
        registry.host
    );
    std::fs::write(d.join("flow.kflow"), &flow).unwrap();
    let o = kflow(d, &["run", "--state", "state", "--detach", "flow.kflow"], &envs);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(tokens.seen("metadata").len(), 1);
    let id = last_execution(d, "state")["id"].as_str().unwrap().to_string();
    let o = kflow(
        d,
        &["approve", "--state", "state", &id, "--as", "ci", "--comment", "ok"],
        &envs,
    );
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o.stdout), text(&o.stderr));
    let o = kflow(d, &["resume", "--state", "state", &id], &envs);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(output(&out, "pushed").starts_with("sha256:"), "{out}");
    // The history never held the token, so the resume minted another.
    assert_eq!(tokens.seen("metadata").len(), 2);
    nowhere(d, &out, &err, &[&tokens.access_token]);
}

/// Against the real ECR, when real credentials are in the environment
/// (`KFLOW_REAL_ECR_REGION` and the usual AWS variables); skipped otherwise.
#[test]
fn a_real_ecr_login_when_credentials_are_given() {
    let Ok(region) = std::env::var("KFLOW_REAL_ECR_REGION") else {
        eprintln!("skipping a_real_ecr_login_when_credentials_are_given: KFLOW_REAL_ECR_REGION is not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let flow = format!(
        r#"flow real {{
  task login = aws.ecr_login {{ region: "{region}" }}
  output registry = login.registry
}}
"#
    );
    let (code, out, err) = run(dir.path(), &flow, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        output(&out, "registry").ends_with(&format!(".dkr.ecr.{region}.amazonaws.com")),
        "{out}"
    );
}
