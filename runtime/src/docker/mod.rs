//! The Docker engine, through bollard: one connection per execution, the
//! API version negotiated with the engine (old engines speak older versions),
//! and errors that say what to do.

pub mod build;
pub mod buildkit;
pub mod context;
pub mod endpoint;
pub mod export;
mod gzip;
pub mod hold;
pub mod image;
pub mod layer_cache;
pub mod resources;
pub mod run;

use bollard::Docker;
use tokio::sync::OnceCell;

/// The label every container, network and volume kflow creates carries,
/// with the execution id as its value. Images carry none: a label would
/// change their bytes (`hold.rs` says how they are reclaimed).
pub const EXECUTION_LABEL: &str = "io.kflow.execution";
/// The history the execution is recorded in: the reaper decides only about
/// executions of its own history, whose state it can read.
pub const HISTORY_LABEL: &str = "io.kflow.history";
/// The identity of the `kflow` process that created it (see `owner.rs`).
pub const OWNER_LABEL: &str = "io.kflow.owner";
/// The bare pid of that process, for people reading `docker ps`.
pub const PID_LABEL: &str = "io.kflow.pid";
/// The `kflow worker` whose attempt created it (absent otherwise): the
/// reaper removes what a dead worker's attempts left while their execution
/// lives on elsewhere.
pub const WORKER_LABEL: &str = "io.kflow.worker";

/// Where the engine is expected, as the user would write it.
pub fn engine_address() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
}

/// The engine's connection, opened on first use and shared by the tasks of
/// one execution.
#[derive(Default)]
pub struct Engine {
    docker: OnceCell<Result<Docker, String>>,
}

impl Engine {
    pub async fn get(&self) -> Result<&Docker, String> {
        self.docker
            .get_or_init(|| async { connect().await })
            .await
            .as_ref()
            .map_err(Clone::clone)
    }
}

async fn connect() -> Result<Docker, String> {
    let address = engine_address();
    let endpoint = endpoint::Endpoint::from_env().map_err(|e| format!("cannot reach the Docker engine: {e}"))?;
    let tls = matches!(endpoint, endpoint::Endpoint::Tls { .. });
    let unreachable = |why: String| {
        let hint = if tls && why.contains("certificate") {
            "Check the ca.pem, cert.pem and key.pem in DOCKER_CERT_PATH against the engine's --tlscacert"
        } else {
            "Start it (e.g. `sudo systemctl start docker`), or point DOCKER_HOST at a running engine"
        };
        format!("cannot reach the Docker engine at {address}: {why}. {hint}")
    };
    let docker = endpoint.client().map_err(unreachable)?;
    let docker = tokio::time::timeout(std::time::Duration::from_secs(20), docker.negotiate_version())
        .await
        .map_err(|_| unreachable("no answer within 20s".into()))?
        .map_err(|e| unreachable(describe(&e)))?;
    Ok(docker)
}

/// One line for a bollard error: the engine's message when it sent one,
/// otherwise the innermost cause (`No such file or directory`).
pub fn describe(e: &bollard::errors::Error) -> String {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError { message, status_code } => {
            let m = message.trim();
            if m.is_empty() {
                format!("the engine answered {status_code}")
            } else {
                m.to_string()
            }
        }
        E::DockerStreamError { error } => error.trim().to_string(),
        E::DockerContainerWaitError { error, code } => {
            if error.is_empty() {
                format!("exit code {code}")
            } else {
                error.clone()
            }
        }
        other => {
            let mut msg = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                let t = s.to_string();
                if !msg.contains(&t) {
                    msg = t;
                }
                source = s.source();
            }
            msg.replace(" (os error 2)", "").replace(" (os error 111)", "")
        }
    }
}

/// Whether an engine error says the thing does not exist.
pub fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }
    )
}
