//! The runner of every task kind, in one table. A kind is its catalog entry
//! (`kflow_compiler::catalog`: properties, outputs, docs, rules) and a row
//! here naming the function that runs it; the tests below keep the two
//! lists the same, and the executor checks every run's outputs against the
//! catalog.

use std::future::Future;
use std::pin::Pin;

use kflow_compiler::catalog;

use super::{Outputs, Props, TaskContext, TaskError};

/// A running task: its outputs, or why it failed.
pub type RunFuture<'a> = Pin<Box<dyn Future<Output = Result<Outputs, TaskError>> + Send + 'a>>;

/// What runs one kind.
pub struct Runner {
    pub kind: &'static str,
    pub run: for<'a> fn(&'a Props, &'a TaskContext) -> RunFuture<'a>,
}

macro_rules! runners {
    ($($kind:expr => $run:path),* $(,)?) => {
        /// Every kind this executor runs.
        pub static RUNNERS: &[Runner] = &[$(Runner {
            kind: $kind,
            run: {
                fn run<'a>(props: &'a Props, ctx: &'a TaskContext) -> RunFuture<'a> {
                    Box::pin($run(props, ctx))
                }
                run
            },
        }),*];
    };
}

runners! {
    "docker.build" => crate::docker::build::build,
    "docker.tag" => super::images::tag,
    "docker.push" => super::images::push,
    "registry.copy" => super::images::copy,
    "oci.index" => super::images::index,
    "aws.ecr_login" => super::cloud::ecr_login,
    "gcp.registry_login" => super::cloud::gcp_login,
    "azure.acr_login" => super::cloud::acr_login,
    "oidc.token" => super::cloud::oidc_token,
    "container.run" => crate::docker::run::run,
    "shell.run" => super::shell::run,
    "http.request" => super::http::request,
    "trivy.scan" => crate::scan::scan,
    "cosign.sign" => super::signing::sign,
    "cosign.verify" => super::signing::verify,
    "compose.up" => crate::compose::up,
    "compose.down" => crate::compose::down,
    "approval" => super::approval::approval,
    "log" => super::basic::log,
    "sleep" => super::basic::sleep,
    catalog::ASSERT_KIND => super::basic::assert,
}

/// The runner of `kind`, if this executor has one.
pub fn runner(kind: &str) -> Option<&'static Runner> {
    RUNNERS.iter().find(|r| r.kind == kind)
}

/// Runs one attempt of a task of `kind`.
pub fn run<'a>(kind: &str, props: &'a Props, ctx: &'a TaskContext) -> RunFuture<'a> {
    match runner(kind) {
        Some(r) => (r.run)(props, ctx),
        None => {
            let msg = format!("task kind `{kind}` cannot run in this version of kflow");
            Box::pin(async move { Err(TaskError::Invalid(msg)) })
        }
    }
}

/// Whether a run returned exactly what the catalog declares for its kind:
/// every output not optional, and nothing else but what its methods read. A task that returned other
/// outputs would hand its readers values the checker never typed.
pub fn check_outputs(kind: &str, outputs: &Outputs) -> Result<(), TaskError> {
    let entry = catalog::kind(kind);
    let declared = entry.map_or(&[][..], |k| k.outputs);
    let hidden = entry.map_or(&[][..], |k| k.methods);
    let unknown = outputs
        .keys()
        .find(|name| !declared.iter().any(|o| o.name == *name) && !hidden.iter().any(|m| m.reads == *name));
    let missing = declared
        .iter()
        .find(|o| !o.ty.ends_with('?') && !outputs.contains_key(o.name));
    match (unknown, missing) {
        (None, None) => Ok(()),
        (Some(name), _) => Err(TaskError::Invalid(format!(
            "internal error: `{kind}` returned the output `{name}`, which its kind does not declare"
        ))),
        (_, Some(o)) => Err(TaskError::Invalid(format!(
            "internal error: `{kind}` did not return its output `{}`",
            o.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    #[test]
    fn every_catalog_kind_has_one_runner_and_every_runner_a_kind() {
        let mut names: Vec<&str> = RUNNERS.iter().map(|r| r.kind).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a kind with two runners");
        let mut kinds: Vec<&str> = catalog::KINDS.iter().map(|k| k.name).collect();
        kinds.push(catalog::ASSERT_KIND);
        kinds.sort_unstable();
        assert_eq!(names, kinds);
    }

    #[test]
    fn outputs_are_checked_against_the_catalog() {
        let out = |names: &[&str]| -> Outputs {
            names
                .iter()
                .map(|n| (n.to_string(), Value::Str(String::new())))
                .collect()
        };
        assert!(check_outputs("shell.run", &out(&["exit_code", "stdout", "stderr"])).is_ok());
        let extra = check_outputs("shell.run", &out(&["exit_code", "stdout", "stderr", "pid"]));
        assert!(extra.unwrap_err().to_string().contains("`pid`"));
        let missing = check_outputs("shell.run", &out(&["exit_code", "stdout"]));
        assert!(missing.unwrap_err().to_string().contains("`stderr`"));
        // An optional output may be absent.
        let scan = catalog::kind("trivy.scan").unwrap();
        let required: Vec<&str> = scan
            .outputs
            .iter()
            .filter(|o| !o.ty.ends_with('?'))
            .map(|o| o.name)
            .collect();
        assert!(check_outputs("trivy.scan", &out(&required)).is_ok());
        assert!(check_outputs("log", &Outputs::new()).is_ok());
        assert!(check_outputs("compose.up", &out(&["project", "ports"])).is_ok());
        assert!(check_outputs(catalog::ASSERT_KIND, &Outputs::new()).is_ok());
    }
}
