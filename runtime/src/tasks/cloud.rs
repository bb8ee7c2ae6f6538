//! The token tasks: `aws.ecr_login`, `gcp.registry_login`,
//! `azure.acr_login` and `oidc.token` (the exchanges are in
//! [`crate::cloud`]). Each registry login is a `credentials` value that
//! renews itself; its password and every secret met on the way are
//! redacted from the moment they are read.

use std::path::PathBuf;

use super::{string_list, text, Outputs, Props, TaskContext, TaskError};
use crate::cloud::{self, aws, azure, gcp, Mint, Minted, Token};
use crate::secret::Secret;
use crate::value::{Credentials, Value};

fn secret(props: &Props, name: &str) -> Option<Secret> {
    match props.get(name) {
        Some(Value::Secret(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The outputs of a registry login task.
fn login_outputs(registry: String, first: Token, mint: Box<dyn Mint>, ctx: &TaskContext) -> Outputs {
    let expires_at = cloud::rfc3339(first.expires_at);
    let login = Minted::new(registry.clone(), first, mint, ctx.redactor.clone());
    Outputs::from([
        (
            "credentials".to_string(),
            Value::Credentials(Credentials::Minted(login)),
        ),
        ("registry".to_string(), Value::Str(registry)),
        ("expires_at".to_string(), Value::Str(expires_at)),
    ])
}

/// Runs an exchange, stopping when the task is cancelled.
async fn cancellable<T>(
    ctx: &TaskContext,
    f: impl std::future::Future<Output = Result<T, cloud::MintError>>,
) -> Result<T, TaskError> {
    tokio::select! {
        r = f => r.map_err(TaskError::from),
        _ = ctx.cancel.cancelled() => Err(TaskError::Cancelled),
    }
}

pub async fn ecr_login(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let login = aws::EcrLogin {
        region: text(props, "region").unwrap_or_default(),
        registry_ids: string_list(props, "registry_ids").unwrap_or_default(),
        profile: text(props, "profile"),
        role_arn: text(props, "role_arn"),
        web_identity_token: secret(props, "web_identity_token"),
        endpoint: text(props, "endpoint"),
        sts_endpoint: text(props, "sts_endpoint"),
        redactor: ctx.redactor.clone(),
    };
    let (first, registry) = cancellable(ctx, login.authorization_token()).await?;
    Ok(login_outputs(registry, first, Box::new(login), ctx))
}

pub async fn gcp_login(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let login = gcp::RegistryLogin {
        credentials_file: text(props, "credentials_file").map(|f| ctx.base_dir.join(PathBuf::from(f))),
        subject_token: secret(props, "subject_token"),
        redactor: ctx.redactor.clone(),
    };
    let registry = gcp::registry_host(&text(props, "location").unwrap_or_else(|| "us".into()));
    let first = cancellable(ctx, login.mint()).await?;
    Ok(login_outputs(registry, first, Box::new(login), ctx))
}

pub async fn acr_login(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let login = azure::AcrLogin {
        registry: text(props, "registry").unwrap_or_default(),
        tenant: text(props, "tenant"),
        client_id: text(props, "client_id"),
        client_secret: secret(props, "client_secret"),
        federated_token: secret(props, "federated_token"),
        authority: text(props, "authority"),
        exchange_url: text(props, "exchange_url"),
        redactor: ctx.redactor.clone(),
    };
    let first = cancellable(ctx, login.mint()).await?;
    Ok(login_outputs(login.registry.clone(), first, Box::new(login), ctx))
}

pub async fn oidc_token(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let audience = text(props, "audience").unwrap_or_default();
    let (token, expires_at) = cancellable(ctx, cloud::oidc::github_actions(&audience, &ctx.redactor)).await?;
    Ok(Outputs::from([
        ("token".to_string(), Value::Secret(token)),
        ("expires_at".to_string(), Value::Str(cloud::rfc3339(expires_at))),
    ]))
}
