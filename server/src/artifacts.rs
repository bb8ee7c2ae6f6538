//! The files tasks keep with an execution (Trivy reports, SBOMs), listed in
//! `GET /api/v1/executions/{id}` and downloaded from
//! `GET /api/v1/executions/{id}/artifacts/{name}`. A name is the task run's
//! folder and the file, `scan/report.json` (`/` sent as `%2F`); only files
//! inside the execution's artifact folder are served, whatever the name.

use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use kflow_runtime::store::{run_from_file_name, Role};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::{identity, App};

/// An execution's artifact folder.
pub fn folder(app: &App, id: &str) -> PathBuf {
    app.launcher.state_dir.join("artifacts").join(id)
}

/// The path an artifact downloads from (`name` as listed, its `/` sent as
/// `%2F`).
pub fn path(id: &str, name: &str) -> String {
    format!(
        "/api/v1/executions/{id}/artifacts/{}",
        name.replace('%', "%25").replace('/', "%2F")
    )
}

/// The artifacts of an execution: `{name, task, size, url}`, by name.
pub fn list(app: &App, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let Ok(runs) = std::fs::read_dir(folder(app, id)) else {
        return out;
    };
    for run in runs.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
        let run_name = run.file_name().to_string_lossy().into_owned();
        let Ok(files) = std::fs::read_dir(run.path()) else {
            continue;
        };
        for f in files.flatten() {
            let Ok(meta) = f.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let name = format!("{run_name}/{}", f.file_name().to_string_lossy());
            out.push(json!({
                "name": name,
                "task": run_from_file_name(&run_name),
                "size": meta.len(),
                "url": app.url(&path(id, &name)),
            }));
        }
    }
    out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    out
}

/// `name` as a path under the artifact folder: plain components only.
fn relative(name: &str) -> Option<PathBuf> {
    let p = FsPath::new(name);
    let ok = !name.is_empty()
        && name.len() <= 1024
        && !name.contains('\0')
        && p.components().all(|c| matches!(c, Component::Normal(_)));
    ok.then(|| p.to_path_buf())
}

pub async fn download(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    identity::authenticate_reader(&app, &headers)
        .await?
        .require(Role::Viewer)?;
    let missing = || {
        ApiError::not_found(format!(
            "execution {id} has no artifact `{}`",
            name.chars().take(200).collect::<String>()
        ))
    };
    if id.len() > 64 || id.contains(['/', '\\', '.']) {
        return Err(ApiError::not_found("no such execution"));
    }
    let rel = relative(&name).ok_or_else(missing)?;
    let root = folder(&app, &id);
    // Resolved, so that a link inside the folder cannot lead out of it.
    let (Ok(root), Ok(path)) = (std::fs::canonicalize(&root), std::fs::canonicalize(root.join(&rel))) else {
        return Err(missing());
    };
    if !path.starts_with(&root) {
        return Err(missing());
    }
    let file = tokio::fs::File::open(&path).await.map_err(|_| missing())?;
    let meta = file.metadata().await.map_err(|_| missing())?;
    if !meta.is_file() {
        return Err(missing());
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let content_type = if file_name.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    };
    // Streamed: a large SBOM is never held in memory whole.
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, meta.len().into());
    let safe: String = file_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::relative;

    #[test]
    fn only_plain_names_are_artifact_paths() {
        assert!(relative("scan/report.json").is_some());
        for bad in ["", "../x", "scan/../../etc/passwd", "/etc/passwd", "a\0b"] {
            assert!(relative(bad).is_none(), "{bad:?}");
        }
    }
}
