//! `trivy.scan`: Trivy run against an image (the `trivy` CLI from PATH, or
//! the `aquasec/trivy` image through Docker), its JSON report parsed and
//! gated, the report and an SBOM kept as artifacts of the execution.

pub mod trivy;

use std::path::Path;

use crate::tasks::{command, string_list, text, Outputs, Props, Stream, TaskContext, TaskError};
use crate::value::Value;

/// Findings quoted in the error of a failed gate.
const QUOTED: usize = 10;
const TRIVY_IMAGE: &str = "aquasec/trivy";

fn failed(msg: impl Into<String>) -> TaskError {
    TaskError::Failed(msg.into())
}

/// Arguments of one `trivy image` run writing `output`.
fn args(format: &str, output: &Path, props: &Props, ignore_file: Option<&Path>, image: &str) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "image".into(),
        "--quiet".into(),
        "--format".into(),
        format.into(),
        "--output".into(),
        output.display().to_string(),
    ];
    if matches!(props.get("ignore_unfixed"), Some(Value::Bool(true))) && format == "json" {
        a.push("--ignore-unfixed".into());
    }
    if let (Some(f), "json") = (ignore_file, format) {
        a.push("--ignorefile".into());
        a.push(f.display().to_string());
    }
    a.push(image.into());
    a
}

/// Runs Trivy once; a non-zero exit fails with what it said.
async fn run_trivy(program: &Path, args: &[String], ctx: &TaskContext) -> Result<(), TaskError> {
    ctx.log(Stream::Info, &format!("trivy {}", args.join(" ")));
    let mut cmd = ctx.command(program);
    cmd.args(args);
    command::run(cmd, "trivy image", ctx).await.map(|_| ())
}

pub async fn scan(props: &Props, ctx: &TaskContext) -> Result<Outputs, TaskError> {
    let image = match props.get("image") {
        Some(Value::Image(s)) | Some(Value::Pinned(s)) | Some(Value::Ref(s)) => s.clone(),
        // One report for several images would say less than it seems to.
        Some(Value::Images(images)) => {
            return Err(TaskError::Invalid(format!(
                "a multi-platform build is {} images and a report covers one: scan a build of the platform to check (`docker.build {{ platform }}`)",
                images.len()
            )))
        }
        _ => return Err(TaskError::invalid("`image` is missing")),
    };
    let dir = ctx.artifact_dir().map_err(failed)?;
    let report_path = dir.join("trivy-report.json");
    let ignore_file = text(props, "ignore_file").map(|f| ctx.base_dir.join(f));
    if let Some(f) = &ignore_file {
        if !f.is_file() {
            return Err(TaskError::invalid(format!(
                "the ignore file {} does not exist",
                f.display()
            )));
        }
    }
    let sbom = text(props, "sbom");
    match crate::host::on_path("trivy") {
        Some(program) => {
            run_trivy(
                &program,
                &args("json", &report_path, props, ignore_file.as_deref(), &image),
                ctx,
            )
            .await?;
            if let Some(format) = &sbom {
                let (fmt, name) = sbom_format(format);
                run_trivy(&program, &args(fmt, &dir.join(name), props, None, &image), ctx).await?;
            }
        }
        None => in_docker(props, ctx, &image, &dir, ignore_file.as_deref(), sbom.as_deref()).await?,
    }
    let bytes = std::fs::read(&report_path)
        .map_err(|e| failed(format!("Trivy wrote no report at {}: {e}", report_path.display())))?;
    let report = trivy::parse(&bytes).map_err(failed)?;
    let today = jiff::ZonedDateTime::now().strftime("%Y-%m-%d").to_string();
    let ignore = match &ignore_file {
        Some(f) => trivy::parse_ignore(&std::fs::read_to_string(f).unwrap_or_default(), &today),
        None => Vec::new(),
    };
    let fail_on = string_list(props, "fail_on").unwrap_or_default();
    let ignore_unfixed = matches!(props.get("ignore_unfixed"), Some(Value::Bool(true)));
    let verdict = trivy::gate(&report, &fail_on, ignore_unfixed, &ignore);
    let summary: Vec<String> = trivy::SEVERITIES
        .iter()
        .map(|s| format!("{} {}", verdict.counts[*s], s.to_lowercase()))
        .collect();
    ctx.log(
        Stream::Info,
        &format!(
            "{} ({} ignored); report: {}",
            summary.join(", "),
            verdict.ignored,
            report_path.display()
        ),
    );
    if !verdict.blocking.is_empty() {
        let mut msg = format!(
            "{} finding(s) at severities that fail the scan ({}):",
            verdict.blocking.len(),
            fail_on.join(", ")
        );
        for f in verdict.blocking.iter().take(QUOTED) {
            msg.push_str(&format!("\n{f}"));
        }
        if verdict.blocking.len() > QUOTED {
            msg.push_str(&format!(
                "\n… and {} more (see {})",
                verdict.blocking.len() - QUOTED,
                report_path.display()
            ));
        }
        // The image's findings do not change on another attempt.
        return Err(TaskError::Invalid(msg));
    }
    let mut out = Outputs::new();
    for s in ["critical", "high", "medium", "low"] {
        out.insert(s.into(), Value::Int(verdict.counts[&s.to_ascii_uppercase()]));
    }
    out.insert("report".into(), Value::Str(report_path.display().to_string()));
    out.insert("digest".into(), scanned_digest(props));
    out.insert(
        "sbom".into(),
        match &sbom {
            Some(f) => Value::Str(dir.join(sbom_format(f).1).display().to_string()),
            None => Value::Missing,
        },
    );
    Ok(out)
}

/// The digest scanned: of a pinned reference, or a local image's id; none
/// for a tag (it could have moved).
fn scanned_digest(props: &Props) -> Value {
    match props.get("image") {
        Some(Value::Pinned(s)) => s
            .split_once('@')
            .map_or(Value::Missing, |(_, d)| Value::Digest(d.to_string())),
        Some(Value::Image(s)) if s.starts_with("sha256:") => Value::Digest(s.clone()),
        _ => Value::Missing,
    }
}

/// Trivy's format name and the artifact's file name for an `sbom` value.
fn sbom_format(sbom: &str) -> (&'static str, &'static str) {
    match sbom {
        "spdx" => ("spdx-json", "sbom.spdx.json"),
        _ => ("cyclonedx", "sbom.cdx.json"),
    }
}

/// Trivy from its image, when the engine has it: the engine's socket and the
/// artifact folder mounted in.
async fn in_docker(
    props: &Props,
    ctx: &TaskContext,
    image: &str,
    dir: &Path,
    ignore_file: Option<&Path>,
    sbom: Option<&str>,
) -> Result<(), TaskError> {
    let docker = ctx.docker.get().await.map_err(failed)?;
    if docker.inspect_image(TRIVY_IMAGE).await.is_err() {
        return Err(failed(format!(
            "Trivy is not available: put `trivy` on PATH (https://trivy.dev/latest/getting-started/installation/), or `docker pull {TRIVY_IMAGE}` so kflow can run it through Docker"
        )));
    }
    let out_dir = Path::new("/kflow-out");
    let mut runs = vec![args(
        "json",
        &out_dir.join("trivy-report.json"),
        props,
        ignore_file.map(|_| Path::new("/kflow-ignore")),
        image,
    )];
    if let Some(format) = sbom {
        let (fmt, name) = sbom_format(format);
        runs.push(args(fmt, &out_dir.join(name), props, None, image));
    }
    let mut mounts = vec![
        "/var/run/docker.sock:/var/run/docker.sock".to_string(),
        format!("{}:/kflow-out", dir.display()),
    ];
    if let Some(f) = ignore_file {
        mounts.push(format!("{}:/kflow-ignore:ro", f.display()));
    }
    for cmd in runs {
        ctx.log(Stream::Info, &format!("{TRIVY_IMAGE} {}", cmd.join(" ")));
        let mut p = Props::new();
        p.insert("image".into(), Value::Ref(TRIVY_IMAGE.into()));
        p.insert("cmd".into(), Value::List(cmd.into_iter().map(Value::Str).collect()));
        p.insert("pull".into(), Value::Enum("never".into()));
        p.insert(
            "mounts".into(),
            Value::List(mounts.iter().cloned().map(Value::Str).collect()),
        );
        crate::docker::run::run(&p, ctx).await?;
    }
    Ok(())
}
