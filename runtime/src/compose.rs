//! `compose.up` and `compose.down`.
//!
//! `up` drives the Compose CLI (`docker compose` v2, else `docker-compose`
//! v1), so every Compose feature behaves as its users know it (`build`,
//! `depends_on` conditions, healthchecks, volumes, networks, variable
//! interpolation) and `docker compose ls`/`ps` see the project. kflow adds an
//! override file that puts the execution's labels on every service, network
//! and volume it may create, waits for the services itself through the
//! engine API (Compose v1 cannot wait), and reads published ports from the
//! containers. `down` needs no Compose file: it removes what carries the
//! project's label, orphans included, through the engine API.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::query_parameters::{InspectContainerOptions, LogsOptionsBuilder};
use futures_util::StreamExt;
use tokio::process::Command;

use crate::docker::{describe, resources};
use crate::tasks::{command, text, Outputs, Props, Stream, TaskContext, TaskError};
use crate::value::Value;

const PROJECT_LABEL: &str = "com.docker.compose.project";
const SERVICE_LABEL: &str = "com.docker.compose.service";
/// After an interrupted Compose command, how long in-flight engine requests
/// get to finish before teardown looks for what they created.
const CANCEL_SETTLE: Duration = Duration::from_secs(1);
/// How long `compose.up` waits for the services when not told.
const DEFAULT_WAIT: Duration = Duration::from_secs(120);

fn failed(msg: impl Into<String>) -> TaskError {
    TaskError::Failed(msg.into())
}

/// The Compose command: `docker compose` when the plugin exists, else
/// `docker-compose` from PATH (found, not run: Compose v1 takes most of a
/// second to start).
async fn compose_program() -> Result<Vec<String>, TaskError> {
    let v2 = Command::new("docker").args(["compose", "version"]).output().await;
    if v2.is_ok_and(|o| o.status.success()) {
        return Ok(vec!["docker".into(), "compose".into()]);
    }
    if crate::host::on_path("docker-compose").is_some() {
        return Ok(vec!["docker-compose".into()]);
    }
    Err(failed(
        "neither `docker compose` nor `docker-compose` is available: install the Compose plugin or docker-compose",
    ))
}

/// Runs Compose with the project's files; its output goes to the log.
async fn compose(
    program: &[String],
    files: &[&Path],
    project: &str,
    args: &[&str],
    env: &[(String, String)],
    ctx: &TaskContext,
) -> Result<String, TaskError> {
    // Compose dies with kflow, even by SIGKILL: an orphaned `up` would create
    // containers after the reaper has looked.
    let mut cmd = ctx.command(&program[0]);
    cmd.args(&program[1..]);
    for f in files {
        cmd.arg("-f").arg(f);
    }
    cmd.args(["-p", project]).args(args).envs(env.iter().cloned());
    cmd.current_dir(&ctx.base_dir);
    let what = format!("{} {}", program.join(" "), args.join(" "));
    let out = match command::run(cmd, &what, ctx).await {
        // Compose was killed, but the engine still finishes what it had been
        // asked (a network being created): let that settle, so that a
        // `compose.down` in `finally` sees it.
        Err(TaskError::Cancelled) => {
            tokio::time::sleep(CANCEL_SETTLE).await;
            return Err(TaskError::Cancelled);
        }
        other => other?,
    };
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The names under a top-level key of `compose config` output (normalised
/// YAML, two-space indents); external ones are left out.
fn top_level_names(config: &str, key: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut inside = false;
    let mut current: Option<String> = None;
    for line in config.lines() {
        if !line.starts_with(' ') {
            if let Some(c) = current.take() {
                names.push(c);
            }
            inside = line.trim_end() == format!("{key}:");
            continue;
        }
        if !inside {
            continue;
        }
        if let Some(name) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) {
            if let Some(c) = current.take() {
                names.push(c);
            }
            current = Some(
                name.trim_end()
                    .trim_end_matches(": {}")
                    .trim_end_matches(':')
                    .trim_matches('\'')
                    .to_string(),
            );
        } else if line.trim() == "external: true" {
            current = None;
        }
    }
    if let Some(c) = current {
        names.push(c);
    }
    names
}

/// The override adding kflow's labels to everything Compose creates.
fn label_override(config: &str, labels: &serde_json::Value) -> serde_json::Value {
    let version = config
        .lines()
        .find_map(|l| l.strip_prefix("version:"))
        .map(|v| v.trim().trim_matches('\'').trim_matches('"').to_string());
    let map = |names: Vec<String>| -> serde_json::Map<String, serde_json::Value> {
        names
            .into_iter()
            .map(|n| (n, serde_json::json!({ "labels": labels })))
            .collect()
    };
    let mut networks = map(top_level_names(config, "networks"));
    networks
        .entry("default".to_string())
        .or_insert_with(|| serde_json::json!({ "labels": labels }));
    let mut o = serde_json::json!({
        "services": map(top_level_names(config, "services")),
        "networks": networks,
        "volumes": map(top_level_names(config, "volumes")),
    });
    if let Some(v) = version {
        o["version"] = serde_json::json!(v);
    }
    o
}

fn env_of(props: &Props) -> Vec<(String, String)> {
    match props.get("env") {
        Some(Value::Map(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::Secret(s) => (k.clone(), s.expose().to_string()),
                other => (k.clone(), other.to_text().unwrap_or_default()),
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub async fn up(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let file = ctx
        .base_dir
        .join(text(props, "file").ok_or_else(|| TaskError::invalid("`file` is missing"))?);
    // Compose runs in the flow's folder: hand it absolute paths.
    let file = file
        .canonicalize()
        .map_err(|e| failed(format!("no Compose file at {}: {e}", file.display())))?;
    let project = text(props, "project").ok_or_else(|| TaskError::invalid("`project` is missing"))?;
    // The checker's rule, for names computed at run time.
    kflow_compiler::literals::compose_project(&project).map_err(TaskError::Invalid)?;
    let program = compose_program().await?;
    let env = env_of(props);
    let config = compose(&program, &[&file], &project, &["config"], &env, ctx).await?;
    let services = top_level_names(&config, "services");
    let labels = serde_json::json!(ctx.labels());
    let dir = ctx.artifact_dir().map_err(failed)?;
    let override_file = std::path::absolute(dir.join("compose.kflow-labels.json"))
        .map_err(|e| failed(format!("cannot place the label override: {e}")))?;
    std::fs::write(&override_file, label_override(&config, &labels).to_string())
        .map_err(|e| failed(format!("cannot write {}: {e}", override_file.display())))?;
    let files = [file.as_path(), override_file.as_path()];
    compose(&program, &files, &project, &["up", "-d", "--remove-orphans"], &env, ctx).await?;
    let docker = ctx.docker.get().await.map_err(failed)?;
    let wait = !matches!(props.get("wait"), Some(Value::Bool(false)));
    let budget = match props.get("timeout") {
        Some(Value::Duration(ms)) => Duration::from_millis(*ms),
        _ => DEFAULT_WAIT,
    };
    let start = Instant::now();
    let ports = loop {
        let (ports, waiting) = status(docker, &project, &services).await.map_err(failed)?;
        let Some(w) = waiting.filter(|_| wait) else {
            break ports;
        };
        if let Some(code) = w.exited {
            let logs = last_logs(docker, &w.id).await;
            return Err(failed(format!(
                "service `{}` of {project} exited with code {code} and will not be restarted, so it cannot become ready; its last log lines:\n{logs}",
                w.service
            )));
        }
        if start.elapsed() >= budget {
            let logs = last_logs(docker, &w.id).await;
            return Err(failed(format!(
                "service `{}` of {project} is not ready after {} ({}); its last log lines:\n{logs}",
                w.service,
                crate::value::format_duration(budget.as_millis() as u64),
                w.why
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
        }
    };
    ctx.log(
        Stream::Info,
        &format!(
            "{project}: {} service(s) ready in {:.1}s",
            services.len(),
            start.elapsed().as_secs_f64()
        ),
    );
    let mut out = Outputs::new();
    out.insert("project".into(), Value::Str(project));
    out.insert("ports".into(), Value::Map(ports));
    Ok(out)
}

/// A service that is not ready yet.
struct Waiting {
    service: String,
    why: String,
    /// Its container (empty when it has none yet).
    id: String,
    /// The exit code of a container that failed and that Docker will not
    /// restart: it can never become ready.
    exited: Option<i64>,
}

/// The published ports (`service:port`) and, unless every service is ready
/// (running and healthy when it has a healthcheck, or exited 0 when it is a
/// one-off), a service still waiting: one that cannot become ready first.
async fn status(
    docker: &bollard::Docker,
    project: &str,
    services: &[String],
) -> Result<(BTreeMap<String, Value>, Option<Waiting>), String> {
    let found = resources::find(docker, &format!("{PROJECT_LABEL}={project}")).await?;
    let mut by_service: HashMap<String, Vec<String>> = HashMap::new();
    for c in &found.containers {
        if let Some(s) = c.labels.get(SERVICE_LABEL) {
            by_service.entry(s.clone()).or_default().push(c.id.clone());
        }
    }
    let mut ports = BTreeMap::new();
    let mut waiting: Option<Waiting> = None;
    let mut wait_for = |w: Waiting| {
        if waiting
            .as_ref()
            .is_none_or(|first| first.exited.is_none() && w.exited.is_some())
        {
            waiting = Some(w);
        }
    };
    for service in services {
        let Some(ids) = by_service.get(service) else {
            wait_for(Waiting {
                service: service.clone(),
                why: "no container yet".into(),
                id: String::new(),
                exited: None,
            });
            continue;
        };
        for id in ids {
            let c = docker
                .inspect_container(id, None::<InspectContainerOptions>)
                .await
                .map_err(|e| format!("cannot inspect a container of `{service}`: {}", describe(&e)))?;
            let state = c.state.unwrap_or_default();
            let running = state.running.unwrap_or(false);
            let health = state.health.and_then(|h| h.status).map(|s| s.to_string());
            let exit = state.exit_code.unwrap_or(0);
            let status = state.status.map(|s| s.to_string()).unwrap_or_default();
            let ready = match (&health, running) {
                (Some(h), true) => h == "healthy",
                (None, true) => true,
                // A one-off that finished well counts as ready.
                (_, false) => exit == 0 && status == "exited",
            };
            if !ready {
                let why = match (&health, running) {
                    (Some(h), true) => format!("running, health: {h}"),
                    (_, false) => format!("not running, exit code {exit}"),
                    _ => "starting".into(),
                };
                let stopped = !running && (status == "exited" || status == "dead");
                let restarts = will_restart(c.host_config.as_ref(), c.restart_count.unwrap_or(0), exit);
                wait_for(Waiting {
                    service: service.clone(),
                    why,
                    id: id.clone(),
                    exited: (stopped && !restarts).then_some(exit),
                });
            }
            let bindings = c.network_settings.and_then(|n| n.ports).unwrap_or_default();
            for (port, binds) in bindings {
                let container_port = port.split('/').next().unwrap_or(&port).to_string();
                if let Some(host) = binds
                    .unwrap_or_default()
                    .iter()
                    .find_map(|b| b.host_port.as_ref().and_then(|p| p.parse::<i64>().ok()))
                {
                    ports.insert(format!("{service}:{container_port}"), Value::Int(host));
                }
            }
        }
    }
    Ok((ports, waiting))
}

/// Whether Docker restarts a container that exited with `exit` after
/// `restarts` restarts, by its restart policy.
fn will_restart(host: Option<&bollard::models::HostConfig>, restarts: i64, exit: i64) -> bool {
    use bollard::models::RestartPolicyNameEnum as Policy;
    let policy = host.and_then(|h| h.restart_policy.as_ref());
    match policy.and_then(|p| p.name) {
        Some(Policy::ALWAYS | Policy::UNLESS_STOPPED) => true,
        Some(Policy::ON_FAILURE) => {
            let max = policy.and_then(|p| p.maximum_retry_count).unwrap_or(0);
            exit != 0 && (max == 0 || restarts < max)
        }
        _ => false,
    }
}

async fn last_logs(docker: &bollard::Docker, id: &str) -> String {
    if id.is_empty() {
        return "(no container)".into();
    }
    let opts = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .tail("20")
        .build();
    let mut stream = docker.logs(id, Some(opts));
    let mut text = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        text.push_str(&chunk.to_string());
    }
    if text.trim().is_empty() {
        "(nothing)".into()
    } else {
        text.trim_end().to_string()
    }
}

pub async fn down(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let project = text(props, "project").ok_or_else(|| TaskError::invalid("`project` is missing"))?;
    let volumes = matches!(props.get("volumes"), Some(Value::Bool(true)));
    let docker = ctx.docker.get().await.map_err(failed)?;
    let found = resources::find(docker, &format!("{PROJECT_LABEL}={project}"))
        .await
        .map_err(failed)?;
    let (c, n, v, errors) = resources::remove(docker, &found, volumes).await;
    ctx.log(
        Stream::Info,
        &format!("{project}: removed {c} container(s), {n} network(s), {v} volume(s)"),
    );
    if !errors.is_empty() {
        return Err(failed(format!(
            "{project} was not fully removed: {}",
            errors.join("; ")
        )));
    }
    Ok(Outputs::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "networks:\n  back: {}\n  outside:\n    external: true\n    name: shared\nservices:\n  app:\n    image: x\n  seed:\n    image: x\nversion: '3.9'\nvolumes:\n  data: {}\n";

    #[test]
    fn names_come_from_the_normalised_config() {
        assert_eq!(top_level_names(CONFIG, "services"), ["app", "seed"]);
        assert_eq!(top_level_names(CONFIG, "networks"), ["back"]);
        assert_eq!(top_level_names(CONFIG, "volumes"), ["data"]);
        let o = label_override(CONFIG, &serde_json::json!({ "k": "v" }));
        assert_eq!(o["version"], "3.9");
        assert_eq!(o["services"]["seed"]["labels"]["k"], "v");
        assert_eq!(o["networks"]["default"]["labels"]["k"], "v");
        assert!(o["networks"].get("outside").is_none());
    }
}
