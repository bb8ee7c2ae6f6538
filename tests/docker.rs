//! Docker and registry tasks end to end: the machine's Docker engine, local
//! registries from Debian's `docker-registry`, skopeo as the independent
//! check of digests.

mod support;

use std::path::Path;

use support::*;

fn run_flow(dir: &Path, flow: &str, args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    std::fs::write(dir.join("flow.kflow"), flow).unwrap();
    let mut all = vec!["run", "--state", "state", "flow.kflow"];
    all.extend_from_slice(args);
    let o = kflow(dir, &all, envs);
    (o.status.code().unwrap_or(-1), text(&o.stdout), text(&o.stderr))
}

/// Build, run, push, promote within a registry (blob mount) and to another
/// registry (blob copy): the digest kflow reports is the registry's, as
/// skopeo reads it, and promotion keeps it.
#[test]
fn build_run_push_and_promote_by_digest() {
    if !docker_or_skip("build_run_push_and_promote_by_digest") {
        return;
    }
    let staging = Registry::anonymous();
    let prod = Registry::anonymous();
    let dir = tempfile::tempdir().unwrap();
    busybox_context(dir.path(), "COPY . /ctx/\n");
    std::fs::write(dir.path().join("img/hello.txt"), "hello from the image\n").unwrap();
    // Left out of the context by .dockerignore: the image must not have it.
    std::fs::write(dir.path().join("img/secret.env"), "TOKEN=x\n").unwrap();
    std::fs::write(dir.path().join("img/.dockerignore"), "*.env\n").unwrap();
    let flow = format!(
        r#"flow ship {{
  task image = docker.build {{ context: "img", labels: {{ "org.opencontainers.image.title": "demo" }} }}
  task probe = container.run {{
    image: image.image
    cmd: ["sh", "-c", "cat /ctx/hello.txt; ls /ctx/secret.env 2>&1 || true"]
    pull: never
  }}
  task push = docker.push {{ image: image.image, to: "{s}/team/app:1.0" }}
  task same = registry.copy {{ from: push.pinned, to: "{s}/prod/app:1.0" }}
  task other = registry.copy {{ from: push.pinned, to: "{p}/app:stable" }}
  assert other.digest == push.digest, "promotion must not change the digest"
  output pinned = push.pinned
  output digest = push.digest
  output promoted = other.pinned
  output said = probe.stdout
  output image = image.image
}}
"#,
        s = staging.host,
        p = prod.host
    );
    let (code, out, err) = run_flow(dir.path(), &flow, &[], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let digest = output(&out, "digest");
    assert_eq!(output(&out, "pinned"), format!("{}/team/app@{digest}", staging.host));
    assert_eq!(output(&out, "promoted"), format!("{}/app@{digest}", prod.host));
    let said = output(&out, "said");
    assert!(said.starts_with(r#""hello from the image\n"#), "{said}");
    assert!(
        out.contains("probe | ls: /ctx/secret.env: No such file or directory"),
        ".dockerignore was not honoured: {out}"
    );
    // The independent client agrees, for the push and both copies.
    assert_eq!(skopeo_digest(&format!("{}/team/app:1.0", staging.host)), digest);
    assert_eq!(skopeo_digest(&format!("{}/prod/app:1.0", staging.host)), digest);
    assert_eq!(skopeo_digest(&format!("{}/app:stable", prod.host)), digest);
    // Same registry: blobs mounted, not copied; other registry: copied.
    assert!(
        out.contains("same | 1 manifest(s); blobs: 4 mounted, 0 copied"),
        "{out}"
    );
    assert!(
        out.contains("other | 1 manifest(s); blobs: 0 mounted, 4 copied"),
        "{out}"
    );
    // The image carries the user's labels, none of kflow's; no container
    // is left.
    let exec = last_execution(dir.path(), "state");
    let id = exec["id"].as_str().unwrap();
    let labels = image_labels(output(&out, "image"));
    assert_eq!(labels["org.opencontainers.image.title"], "demo");
    assert!(labels.keys().all(|k| !k.starts_with("io.kflow")), "{labels:?}");
    assert!(labelled("container", id).is_empty(), "containers are removed");
}

/// The labels of a local image.
fn image_labels(image: &str) -> serde_json::Map<String, serde_json::Value> {
    let o = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{json .Config.Labels}}", image])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let labels: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    labels.as_object().cloned().unwrap_or_default()
}

/// The `repository:tag` names of a local image; `None` when it is gone.
fn image_names(image: &str) -> Option<Vec<String>> {
    let o = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{json .RepoTags}}", image])
        .output()
        .unwrap();
    o.status.success().then(|| serde_json::from_slice(&o.stdout).unwrap())
}

/// Building the same context again gives the same image and, pushed, the
/// same digest: kflow bakes nothing of the execution into the image, and
/// names what it must reclaim with tags, which are no part of it.
#[test]
fn the_same_context_builds_the_same_image_and_digest() {
    if !docker_or_skip("the_same_context_builds_the_same_image_and_digest") {
        return;
    }
    let reg = Registry::anonymous();
    let dir = tempfile::tempdir().unwrap();
    own_context(dir.path(), "");
    let flow = format!(
        r#"flow twice {{
  task build = docker.build {{ context: "img", labels: {{ "org.opencontainers.image.vendor": "kflow-tests" }} }}
  task push = docker.push {{ image: build.image, to: "{}/twice:1" }}
  output image = build.image
  output digest = push.digest
}}
"#,
        reg.host
    );
    let (code, first, err) = run_flow(dir.path(), &flow, &[], &[]);
    assert_eq!(code, 0, "{first}{err}");
    let (code, second, err) = run_flow(dir.path(), &flow, &[], &[]);
    assert_eq!(code, 0, "{second}{err}");
    let image = output(&first, "image");
    assert_eq!(output(&second, "image"), image, "a rebuild made another image");
    assert_eq!(output(&second, "digest"), output(&first, "digest"));
    assert_eq!(
        skopeo_digest(&format!("{}/twice:1", reg.host)),
        output(&first, "digest")
    );
    let labels = image_labels(image);
    assert!(labels.keys().all(|k| !k.starts_with("io.kflow")), "{labels:?}");
    assert_eq!(labels["org.opencontainers.image.vendor"], "kflow-tests");
    // Both runs ended: no hold is left, one name says this history built it.
    let names = image_names(image).unwrap();
    assert!(names.iter().all(|n| !n.starts_with("kflow-hold/")), "{names:?}");
    assert_eq!(
        names.iter().filter(|n| n.starts_with("kflow-built/")).count(),
        1,
        "{names:?}"
    );
    let o = kflow(dir.path(), &["gc", "--state", "state"], &[]);
    let said = text(&o.stdout);
    assert!(
        said.contains("removed 1 image(s) built by finished executions\n"),
        "{said}"
    );
    assert_eq!(image_names(image), None, "gc left the image");
}

/// `kflow gc` removes the images finished executions built and nothing
/// else names: not one the user tagged, not one a paused execution of
/// another history holds — until that one has ended too.
#[test]
fn gc_removes_the_images_of_finished_executions_only() {
    if !docker_or_skip("gc_removes_the_images_of_finished_executions_only") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    own_context(d, "");
    let tag = format!("kflow-tests/gc:{}", unique_word(d));
    // `named` waits for `shared`: two builds of one context at once may
    // each fill the cache with an image of their own, and `b` must build
    // the very image `a` did. It is no child of `shared` (an image with a
    // child is kept as the child's parent).
    let a = format!(
        r#"flow a {{
  task shared = docker.build {{ context: "img" }}
  task named = docker.build {{
    context: "img"
    dockerfile_inline: "FROM scratch\nCOPY busybox /bin/busybox\nLABEL kind=named\n"
    tags: ["{tag}"]
    after: [shared]
  }}
  output shared = shared.image
  output named = named.image
}}
"#
    );
    std::fs::write(d.join("a.kflow"), a).unwrap();
    let b = "flow b {\n  task shared = docker.build { context: \"img\" }\n  task gate = approval { summary: \"ship ${shared.image}?\", timeout: 1h }\n}\n";
    std::fs::write(d.join("b.kflow"), b).unwrap();
    let o = kflow(d, &["run", "--state", "a", "a.kflow"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    let (shared, named) = (
        output(&text(&o.stdout), "shared").to_string(),
        output(&text(&o.stdout), "named").to_string(),
    );
    let o = kflow(d, &["run", "--detach", "--state", "b", "b.kflow"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    let paused = last_execution(d, "b")["id"].as_str().unwrap().to_string();

    let o = kflow(d, &["gc", "--state", "a"], &[]);
    let said = text(&o.stdout);
    assert!(
        said.contains("removed 0 image(s) built by finished executions; kept 2"),
        "{said}"
    );
    let names = image_names(&shared).expect("the paused execution's image is kept");
    assert!(names.iter().any(|n| n.starts_with("kflow-hold/")), "{names:?}");
    assert!(names.iter().all(|n| !n.starts_with("kflow-built/")), "{names:?}");
    assert_eq!(
        image_names(&named).expect("the tagged image is kept"),
        std::slice::from_ref(&tag)
    );

    // The paused execution ends (rejected): its image is free to reclaim.
    let o = kflow(d, &["reject", &paused, "--as", "bob", "--state", "b"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = kflow(d, &["resume", &paused, "--state", "b"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}{}", text(&o.stdout), text(&o.stderr));
    let o = kflow(d, &["gc", "--state", "b"], &[]);
    let said = text(&o.stdout);
    assert!(
        said.contains("removed 1 image(s) built by finished executions\n"),
        "{said}"
    );
    assert_eq!(image_names(&shared), None);
    let _ = std::process::Command::new("docker").args(["rmi", &tag]).output();
}

/// Basic auth with a password whose base64 holds `+` and `/`, given in the
/// flow, from `~/.docker/config.json`, and from a credential helper; a wrong
/// password is an authentication error naming the registry.
#[test]
fn pushes_authenticate_with_flow_config_and_helper_credentials() {
    if !docker_or_skip("pushes_authenticate_with_flow_config_and_helper_credentials") {
        return;
    }
    let password = "p>>>w?d~~";
    let reg = Registry::with_user("ci", password);
    let dir = tempfile::tempdir().unwrap();
    busybox_context(dir.path(), "");
    let flow = |creds: &str, tag: &str| {
        format!(
            r#"flow auth {{
  secret pw = env("REG_PASSWORD")
  task image = docker.build {{ context: "img" }}
  task push = docker.push {{ image: image.image, to: "{h}/app:{tag}"{creds} }}
  output digest = push.digest
}}
"#,
            h = reg.host
        )
    };
    // Given in the flow.
    let (code, out, err) = run_flow(
        dir.path(),
        &flow(", credentials: { username: \"ci\", password: pw }", "flow"),
        &[],
        &[("REG_PASSWORD", password)],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains(password) && !err.contains(password));

    // From a Docker config (`auths`, base64 of user:password).
    let config_dir = dir.path().join("docker-config");
    std::fs::create_dir_all(&config_dir).unwrap();
    let auth = base64_encode(&format!("ci:{password}"));
    std::fs::write(
        config_dir.join("config.json"),
        format!(r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#, reg.host),
    )
    .unwrap();
    let cfg = config_dir.to_str().unwrap();
    let (code, out, err) = run_flow(
        dir.path(),
        &flow("", "config"),
        &[],
        &[("REG_PASSWORD", "unused"), ("DOCKER_CONFIG", cfg)],
    );
    assert_eq!(code, 0, "{out}{err}");

    // Through a credential helper named in the flow.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-kflowtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\n[ \"$server\" = \"{}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"ci\",\"Secret\":\"{password}\"}}' \"$server\"\n",
            reg.host
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&helper)
        .status()
        .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let (code, out, err) = run_flow(
        dir.path(),
        &flow(", credentials: helper(\"kflowtest\")", "helper"),
        &[],
        &[("REG_PASSWORD", "unused"), ("PATH", &path)],
    );
    assert_eq!(code, 0, "{out}{err}");
    // The same helper named for the host in the Docker config (`credHelpers`).
    let helper_config = dir.path().join("helper-config");
    std::fs::create_dir_all(&helper_config).unwrap();
    std::fs::write(
        helper_config.join("config.json"),
        format!(r#"{{"credHelpers": {{"{}": "kflowtest"}}, "auths": {{}}}}"#, reg.host),
    )
    .unwrap();
    let (code, out, err) = run_flow(
        dir.path(),
        &flow("", "helper"),
        &[],
        &[
            ("REG_PASSWORD", "unused"),
            ("PATH", &path),
            ("DOCKER_CONFIG", helper_config.to_str().unwrap()),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    // The pushes of one image agree with each other and with skopeo.
    let d = output(&out, "digest").to_string();
    let o = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--creds",
            &format!("ci:{password}"),
            "--format",
            "{{.Digest}}",
            &format!("docker://{}/app:helper", reg.host),
        ])
        .output()
        .unwrap();
    assert_eq!(text(&o.stdout).trim(), d, "{}", text(&o.stderr));

    // A wrong password: an authentication error naming the registry.
    let (code, out, err) = run_flow(
        dir.path(),
        &flow(", credentials: { username: \"ci\", password: pw }", "wrong"),
        &[],
        &[("REG_PASSWORD", "not-the-password")],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!("push: {}: authentication failed", reg.host)),
        "{err}"
    );
    // No credentials at all.
    let empty = dir.path().join("empty-config");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, _, err) = run_flow(
        dir.path(),
        &flow("", "anon"),
        &[],
        &[("REG_PASSWORD", "unused"), ("DOCKER_CONFIG", empty.to_str().unwrap())],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("authentication required, and no credentials were found"),
        "{err}"
    );
}

fn base64_encode(s: &str) -> String {
    let o = std::process::Command::new("sh")
        .args(["-c", &format!("printf '%s' '{s}' | base64 -w0")])
        .output()
        .unwrap();
    text(&o.stdout)
}

/// A failing command fails the task with the tail of its stderr; a timeout
/// kills the container; in both cases no container is left.
#[test]
fn containers_fail_time_out_and_are_always_removed() {
    if !docker_or_skip("containers_fail_time_out_and_are_always_removed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    busybox_context(dir.path(), "");
    let flow = r#"flow c {
  secret token = env("TOKEN")
  task image = docker.build { context: "img" }
  task fails = container.run {
    image: image.image
    cmd: ["sh", "-c", "echo working; echo \"token $TOKEN\" >&2; echo 'disk full' >&2; exit 3"]
    env: { TOKEN: token }
    continue_on_error: true
  }
  task hangs = container.run { image: image.image, cmd: ["sleep", "60"], timeout: 2s, continue_on_error: true }
}
"#;
    let (code, out, err) = run_flow(dir.path(), flow, &[], &[("TOKEN", "s3cr3t-value")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("fails | failed") && out.contains("the command exited with code 3"),
        "{out}"
    );
    assert!(
        out.contains("fails |   token ***") && out.contains("fails |   disk full"),
        "{out}"
    );
    assert!(!out.contains("s3cr3t-value"), "{out}");
    assert!(
        out.contains("hangs | failed") && out.contains("timed out after 2s"),
        "{out}"
    );
    let exec = last_execution(dir.path(), "state");
    assert!(labelled("container", exec["id"].as_str().unwrap()).is_empty());
}

/// A failing build step fails the task with that step and its message (the
/// classic builder's; BuildKit's are in tests/buildkit.rs).
#[test]
fn a_failing_build_step_is_named() {
    if !docker_or_skip("a_failing_build_step_is_named") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    busybox_context(dir.path(), "RUN [\"/bin/sh\", \"-c\", \"echo compiling; exit 7\"]\n");
    let flow = "flow b {\n  task image = docker.build { context: \"img\", builder: \"classic\", tags: [\"kflow-test/broken:1\"] }\n}\n";
    let (code, out, err) = run_flow(dir.path(), flow, &[], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("image: step 4/4 `RUN [\"/bin/sh\", \"-c\", \"echo compiling; exit 7\"]` failed: The command '/bin/sh -c echo compiling; exit 7' returned a non-zero code: 7"),
        "{err}"
    );
    assert!(out.contains("image | compiling"), "{out}");
}

/// The classic builder runs `RUN` steps natively and labels the result with
/// the host's platform: an arm64 build on an amd64 host comes back amd64.
/// The build fails rather than hand on (or tag) the wrong image.
#[test]
fn a_build_is_checked_against_the_platform_asked_for() {
    if !docker_or_skip("a_build_is_checked_against_the_platform_asked_for") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    busybox_context(dir.path(), "");
    let host = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Os}}/{{.Server.Arch}}"])
        .output()
        .unwrap();
    let host = text(&host.stdout).trim().to_string();
    let other = if host.ends_with("amd64") {
        "linux/arm64"
    } else {
        "linux/amd64"
    };
    let tag = format!("kflow-test/{}:1", unique_word(dir.path()));
    let flow = format!(
        "flow b {{\n  task image = docker.build {{ context: \"img\", builder: \"classic\", platform: \"{other}\", tags: [\"{tag}\"] }}\n}}\n"
    );
    let (code, out, err) = run_flow(dir.path(), &flow, &[], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "image: asked for {other}, the engine built a {host} image: refusing to ship it"
        )),
        "{err}"
    );
    let tagged = std::process::Command::new("docker")
        .args(["image", "inspect", &tag])
        .output()
        .unwrap();
    assert!(!tagged.status.success(), "the wrong image was tagged {tag}");

    let flow = format!("flow b {{\n  task image = docker.build {{ context: \"img\", platform: \"{host}\" }}\n}}\n");
    let (code, out, err) = run_flow(dir.path(), &flow, &[], &[]);
    assert_eq!(code, 0, "{out}{err}");
}

/// Without an engine: one line naming where it was looked for and what to do.
#[test]
fn no_docker_daemon_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("img")).unwrap();
    std::fs::write(dir.path().join("img/Dockerfile"), "FROM scratch\n").unwrap();
    let flow = "flow b {\n  task image = docker.build { context: \"img\", tags: [\"x/y:1\"] }\n}\n";
    let (code, out, err) = run_flow(
        dir.path(),
        flow,
        &[],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("image: cannot reach the Docker engine at unix:///nonexistent/docker.sock:"),
        "{err}"
    );
    assert!(err.contains("point DOCKER_HOST at a running engine"), "{err}");
}

/// An unreachable registry fails after the task's retries, saying so.
#[test]
fn an_unreachable_registry_is_retried_then_reported() {
    if !docker_or_skip("an_unreachable_registry_is_retried_then_reported") {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    busybox_context(dir.path(), "");
    let flow = format!(
        "flow u {{\n  task image = docker.build {{ context: \"img\" }}\n  task push = docker.push {{ image: image.image, to: \"127.0.0.1:{port}/app:1\", retry: {{ attempts: 2, delay: 100ms }} }}\n}}\n"
    );
    let (code, out, err) = run_flow(dir.path(), &flow, &[], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("push | attempt 2"), "{out}");
    assert!(
        err.contains(&format!("push: registry 127.0.0.1:{port} is unreachable")),
        "{err}"
    );
}

/// `pull: missing` pulls a reference the engine lacks (through the registry
/// API and `docker load`), then runs it; `pull: never` refuses.
#[test]
fn references_are_pulled_as_the_policy_says() {
    if !docker_or_skip("references_are_pulled_as_the_policy_says") {
        return;
    }
    let reg = Registry::anonymous();
    let dir = tempfile::tempdir().unwrap();
    busybox_context(dir.path(), "CMD [\"echo\", \"default\"]\n");
    let push = format!(
        "flow p {{\n  task image = docker.build {{ context: \"img\" }}\n  task push = docker.push {{ image: image.image, to: \"{}/pulled/app:1\" }}\n  output pinned = push.pinned\n}}\n",
        reg.host
    );
    let (code, out, err) = run_flow(dir.path(), &push, &[], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let pinned = output(&out, "pinned").to_string();
    let run = |policy: &str| {
        format!(
            "flow r {{\n  input img: pinned\n  task go = container.run {{ image: img, cmd: [\"echo\", \"pulled and ran\"], pull: {policy} }}\n  output said = go.stdout\n}}\n"
        )
    };
    let input = format!("img={pinned}");
    let (code, out, err) = run_flow(dir.path(), &run("missing"), &["-i", &input], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(output(&out, "said"), "pulled and ran");
    assert!(out.contains(&format!("go | pulling {pinned}")), "{out}");
    let other = format!("img={}/pulled/nothing@sha256:{}", reg.host, "0".repeat(64));
    let (code, out, err) = run_flow(dir.path(), &run("never"), &["-i", &other], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("`pull: never` forbids pulling it"), "{err}");
    let (code, _, err) = run_flow(dir.path(), &run("missing"), &["-i", &other], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
}

/// The promotion the README shows, as it is: built, pushed to staging,
/// smoke-tested by digest, paused at its gate, approved, resumed, copied to
/// production with the digest unchanged.
#[test]
fn the_promote_example_runs_through_its_gate() {
    if !docker_or_skip("the_promote_example_runs_through_its_gate") {
        return;
    }
    let reg = Registry::anonymous();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let state = tempfile::tempdir().unwrap();
    let st = state.path().to_str().unwrap();
    let staging = format!("staging={}/staging/app", reg.host);
    let prod = format!("prod={}/prod/app", reg.host);
    let args = [
        "run",
        "--state",
        st,
        "--detach",
        "examples/promote.kflow",
        "-i",
        "version=1",
    ];
    let mut args = args.to_vec();
    args.extend(["-i", &staging, "-i", &prod]);
    let o = kflow(root, &args, &[]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(out.contains("smoke | succeeded"), "{out}");
    let id = last_execution(root, st)["id"].as_str().unwrap().to_string();
    let shown = kflow(root, &["executions", "show", &id, "--json", "--state", st], &[]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let image = shown["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "build")
        .map(|t| t["outputs"]["image"].as_str().unwrap().to_string())
        .unwrap();
    let o = kflow(root, &["approve", &id, "--as", "release-manager", "--state", st], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = kflow(root, &["resume", &id, "--state", st], &[]);
    let out = text(&o.stdout);
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &image])
        .output();
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert_eq!(output(&out, "approved_by"), "release-manager");
    let digest = output(&out, "digest");
    assert_eq!(skopeo_digest(&format!("{}/prod/app:1", reg.host)), digest);
    assert_eq!(skopeo_digest(&format!("{}/staging/app:1", reg.host)), digest);
}

/// The README's main job and the task-runner blueprint run end to end.
#[test]
fn the_quickstart_and_task_runner_examples_run() {
    if !docker_or_skip("the_quickstart_and_task_runner_examples_run") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let state = tempfile::tempdir().unwrap();
    let st = state.path().to_str().unwrap();
    let o = kflow(root, &["run", "--state", st, "examples/quickstart.kflow"], &[]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(out.contains(r#"checks = ["ok: index.html"]"#), "{out}");
    assert!(out.contains("<p>built FROM scratch by kflow</p>"), "{out}");
    assert!(out.contains("tagged = kflow-quickstart/app:dev"), "{out}");
    let o = kflow(
        root,
        &[
            "run",
            "--state",
            st,
            "examples/task-runner.kflow",
            "-i",
            "words=one two,three",
        ],
        &[],
    );
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(
        out.contains(r#"counts = ["workload running in /work\n2","workload running in /work\n1"]"#),
        "{out}"
    );
}

/// A registry with bearer-token auth: kflow answers the challenge, gets a
/// token from the realm with the credentials, pushes and promotes with it;
/// wrong credentials are an authentication error.
#[test]
fn token_auth_registries_push_and_copy() {
    if !docker_or_skip("token_auth_registries_push_and_copy") {
        return;
    }
    let (reg, tokens) = Registry::with_tokens("robot", "t0ken-pass");
    let dir = tempfile::tempdir().unwrap();
    busybox_context(dir.path(), "");
    let flow = format!(
        r#"flow tok {{
  secret pw = env("REG_PASSWORD")
  task image = docker.build {{ context: "img" }}
  task push = docker.push {{ image: image.image, to: "{h}/team/app:1", credentials: {{ username: "robot", password: pw }} }}
  task promote = registry.copy {{ from: push.pinned, to: "{h}/prod/app:1", credentials: {{ username: "robot", password: pw }} }}
  output digest = promote.digest
  output pushed = push.digest
}}
"#,
        h = reg.host
    );
    let (code, out, err) = run_flow(dir.path(), &flow, &[], &[("REG_PASSWORD", "t0ken-pass")]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(output(&out, "digest"), output(&out, "pushed"));
    assert!(tokens.issued.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    // A cross-repository mount needs a token for both repositories.
    assert!(out.contains("blobs: 3 mounted"), "{out}");
    let (code, out, err) = run_flow(dir.path(), &flow, &[], &[("REG_PASSWORD", "wrong")]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "push: {}: authentication failed (the token service refused these credentials",
            reg.host
        )),
        "{err}"
    );
}

/// A registry that fails with 500 (its storage is unwritable): the retry
/// policy applies, then the error quotes the registry; a read-only registry
/// refuses the push with its own words.
#[test]
fn registry_errors_are_retried_and_quoted() {
    if !docker_or_skip("registry_errors_are_retried_and_quoted") {
        return;
    }
    let broken = Registry::broken_storage();
    let read_only = Registry::read_only();
    let dir = tempfile::tempdir().unwrap();
    busybox_context(dir.path(), "");
    let flow = format!(
        r#"flow e {{
  task image = docker.build {{ context: "img" }}
  task broken = docker.push {{ image: image.image, to: "{b}/app:1", retry: {{ attempts: 2, delay: 50ms }}, continue_on_error: true }}
  task readonly = docker.push {{ image: image.image, to: "{r}/app:1", continue_on_error: true }}
}}
"#,
        b = broken.host,
        r = read_only.host
    );
    let (code, out, err) = run_flow(dir.path(), &flow, &[], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("broken | attempt 2"), "{out}");
    assert!(
        out.contains("broken | failed in 0.")
            && out.contains(&format!("{}: starting the upload of layer sha256:", broken.host))
            && out.contains("500 Internal Server Error"),
        "{out}"
    );
    assert!(out.contains("(a registry error; it may pass on retry)"), "{out}");
    assert!(
        out.contains(&format!("{}: starting the upload of layer sha256:", read_only.host))
            && out.contains("405 Method Not Allowed (Method not allowed) (the registry refuses this: read-only, or pushes disabled)"),
        "{out}"
    );
}

/// An image index (two platform images) is copied with its children, as
/// its exact bytes: the digest is kept, and skopeo reads the same index.
#[test]
fn image_indexes_are_copied_with_their_children() {
    if !docker_or_skip("image_indexes_are_copied_with_their_children") {
        return;
    }
    let src = Registry::anonymous();
    let dst = Registry::anonymous();
    let dir = tempfile::tempdir().unwrap();
    busybox_context(
        dir.path(),
        "ARG FLAVOUR\nRUN [\"/bin/sh\", \"-c\", \"echo $FLAVOUR > /flavour\"]\n",
    );
    let push = format!(
        r#"flow two {{
  for flavour in ["amd", "arm"] {{
    task image = docker.build {{ context: "img", args: {{ FLAVOUR: flavour }} }}
    task push = docker.push {{ image: image.image, to: ref("{h}/multi/app:${{flavour}}") }}
  }}
  output digests = push.digest
}}
"#,
        h = src.host
    );
    let (code, out, err) = run_flow(dir.path(), &push, &[], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let digests: Vec<String> = serde_json::from_str(output(&out, "digests")).unwrap();
    // Assemble the index by hand, as a multi-platform build would push it.
    let children: Vec<serde_json::Value> = digests
        .iter()
        .zip(["amd64", "arm64"])
        .map(|(d, arch)| {
            let raw = skopeo_raw(&format!("{}/multi/app@{d}", src.host));
            serde_json::json!({
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "digest": d, "size": raw.len(),
                "platform": { "os": "linux", "architecture": arch },
            })
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": children,
    })
    .to_string();
    put_manifest(
        &src,
        "multi/app",
        "both",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        &index,
    );
    let index_digest = skopeo_digest(&format!("{}/multi/app:both", src.host));
    let copy = format!(
        "flow c {{\n  input from: pinned\n  task copy = registry.copy {{ from: from, to: \"{}/app:both\" }}\n  output digest = copy.digest\n}}\n",
        dst.host
    );
    let from = format!("from={}/multi/app@{index_digest}", src.host);
    let (code, out, err) = run_flow(dir.path(), &copy, &["-i", &from], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(output(&out, "digest"), index_digest);
    assert!(out.contains("copy | 3 manifest(s)"), "{out}");
    assert_eq!(skopeo_raw(&format!("{}/app:both", dst.host)), index);
    for d in &digests {
        assert_eq!(skopeo_digest(&format!("{}/app@{d}", dst.host)), *d);
    }
}

/// `workdir`, `user`, `mounts` (relative to the flow, read-only honoured)
/// and `network` reach the container.
#[test]
fn container_options_reach_the_container() {
    if !docker_or_skip("container_options_reach_the_container") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    busybox_context(dir.path(), "");
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/input.txt"), "from the host\n").unwrap();
    let flow = r#"flow opts {
  task image = docker.build { context: "img" }
  task look = container.run {
    image: image.image
    cmd: ["sh", "-c", "pwd; id -u; cat /in/input.txt; touch /in/x 2>/dev/null || echo read-only; ls /sys/class/net"]
    workdir: "/tmp"
    user: "1234"
    mounts: ["data:/in:ro"]
    network: "none"
  }
  output said = look.stdout
}
"#;
    let (code, out, err) = run_flow(dir.path(), flow, &[], &[]);
    assert_eq!(code, 0, "{out}{err}");
    for line in [
        "look | /tmp",
        "look | 1234",
        "look | from the host",
        "look | read-only",
        "look | lo",
    ] {
        assert!(out.contains(line), "{line} missing in {out}");
    }
    assert!(!out.contains("look | eth0"), "network none has only lo: {out}");
}

/// A push remembers which blob each layer became: pushing the same image
/// again to a registry that has it exports and uploads nothing, and yields
/// the same manifest; a registry without it gets every blob.
#[test]
fn a_second_push_sends_only_what_the_registry_lacks() {
    if !docker_or_skip("a_second_push_sends_only_what_the_registry_lacks") {
        return;
    }
    let (one, two) = (Registry::anonymous(), Registry::anonymous());
    let dir = tempfile::tempdir().unwrap();
    busybox_context(dir.path(), "COPY own.txt /own.txt\n");
    std::fs::write(
        dir.path().join("img/own.txt"),
        "a_second_push_sends_only_what_the_registry_lacks\n",
    )
    .unwrap();
    let flow = format!(
        r#"flow again {{
  task image = docker.build {{ context: "img" }}
  task first = docker.push {{ image: image.image, to: "{a}/app:1" }}
  task again = docker.push {{ image: image.image, to: "{a}/app:2", after: [first] }}
  task elsewhere = docker.push {{ image: image.image, to: "{b}/app:1", after: [again] }}
  output first = first.digest
  output again = again.digest
  output elsewhere = elsewhere.digest
  output id = image.image
}}
"#,
        a = one.host,
        b = two.host
    );
    let (code, out, err) = run_flow(dir.path(), &flow, &[], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("first | 4 of 4 blobs uploaded (the others were there)"),
        "{out}"
    );
    assert!(
        out.contains("again | 0 of 4 blobs uploaded (the registry held the image: nothing exported)"),
        "{out}"
    );
    assert!(out.contains("elsewhere | 4 of 4 blobs uploaded"), "{out}");
    let digest = output(&out, "first").to_string();
    assert_eq!(output(&out, "again"), digest);
    assert_eq!(output(&out, "elsewhere"), digest);
    assert_eq!(skopeo_digest(&format!("{}/app:2", one.host)), digest);
    assert_eq!(skopeo_digest(&format!("{}/app:1", two.host)), digest);
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", output(&out, "id")])
        .output();
}

/// Images go through files, not memory: building a 256 MiB context, pushing
/// the image (its export, the layer and its compressed form) and pulling it
/// back each keep kflow's peak resident memory far below the image's size.
#[test]
fn big_images_are_built_pushed_and_pulled_in_bounded_memory() {
    if !docker_or_skip("big_images_are_built_pushed_and_pulled_in_bounded_memory") {
        return;
    }
    const MIB: u64 = 1024 * 1024;
    let reg = Registry::anonymous();
    let dir = tempfile::tempdir().unwrap();
    let ctx = busybox_context(dir.path(), "COPY big.bin /big.bin\n");
    // Random bytes: compression cannot shrink them below the budget.
    let mut random = std::fs::File::open("/dev/urandom").unwrap();
    let mut big = std::fs::File::create(ctx.join("big.bin")).unwrap();
    std::io::copy(&mut std::io::Read::take(&mut random, 256 * MIB), &mut big).unwrap();
    drop(big);
    let flow = format!(
        "flow big {{\n  task image = docker.build {{ context: \"img\" }}\n  task push = docker.push {{ image: image.image, to: \"{}/big/app:1\" }}\n  output pinned = push.pinned\n  output id = image.image\n}}\n",
        reg.host
    );
    std::fs::write(dir.path().join("push.kflow"), flow).unwrap();
    let (o, peak) = kflow_peak(dir.path(), &["run", "--state", "state", "push.kflow"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    let pinned = output(&out, "pinned").to_string();
    let id = output(&out, "id").to_string();
    assert_eq!(
        pinned,
        format!(
            "{}/big/app@{}",
            reg.host,
            skopeo_digest(&format!("{}/big/app:1", reg.host))
        )
    );
    let budget = 100 * 1024;
    eprintln!("build and push: {} MiB resident at most", peak / 1024);
    assert!(peak < budget, "building and pushing took {} MiB resident", peak / 1024);

    let run = "flow back {\n  input img: pinned\n  task go = container.run { image: img, cmd: [\"sh\", \"-c\", \"wc -c < /big.bin\"], pull: always }\n  output size = go.stdout\n}\n";
    std::fs::write(dir.path().join("pull.kflow"), run).unwrap();
    let input = format!("img={pinned}");
    let (o, peak) = kflow_peak(dir.path(), &["run", "--state", "state", "pull.kflow", "-i", &input]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert_eq!(output(&out, "size"), (256 * MIB).to_string());
    eprintln!("pull: {} MiB resident at most", peak / 1024);
    assert!(peak < budget, "pulling took {} MiB resident", peak / 1024);
    // The image is this test's own.
    let _ = std::process::Command::new("docker").args(["rmi", "-f", &id]).output();
}

/// A pull streams each layer from the registry into the engine, checked on
/// the way: a layer whose bytes were changed in the registry's storage
/// fails the pull with the registry's fault, and the engine loads nothing.
#[test]
fn a_corrupted_layer_fails_the_pull() {
    if !docker_or_skip("a_corrupted_layer_fails_the_pull") {
        return;
    }
    let reg = Registry::anonymous();
    let dir = tempfile::tempdir().unwrap();
    // A file of this test's own, so the layer is not shared with others.
    let ctx = busybox_context(dir.path(), "COPY own.txt /own.txt\n");
    let own = format!("{:?}\n", std::time::SystemTime::now());
    std::fs::write(ctx.join("own.txt"), &own).unwrap();
    let push = format!(
        "flow p {{\n  task image = docker.build {{ context: \"img\" }}\n  task push = docker.push {{ image: image.image, to: \"{}/corrupt/app:1\" }}\n  output pinned = push.pinned\n  output id = image.image\n}}\n",
        reg.host
    );
    let (code, out, err) = run_flow(dir.path(), &push, &[], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let pinned = output(&out, "pinned").to_string();
    let id = output(&out, "id").to_string();
    let manifest: serde_json::Value = serde_json::from_str(&skopeo_raw(&pinned)).unwrap();
    let layer = manifest["layers"][1]["digest"].as_str().unwrap().to_string();
    let file = reg.blob_file(&layer);
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    // The image is this test's own; without it, the pull must load one.
    let o = std::process::Command::new("docker")
        .args(["rmi", "-f", &id])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let run =
        "flow back {\n  input img: pinned\n  task go = container.run { image: img, cmd: [\"cat\", \"/own.txt\"] }\n}\n";
    let (code, out, err) = run_flow(dir.path(), run, &["-i", &format!("img={pinned}")], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!("blob {layer} does not match its digest")),
        "{err}"
    );
    let o = std::process::Command::new("docker")
        .args(["image", "inspect", &id])
        .output()
        .unwrap();
    assert!(!o.status.success(), "the engine loaded the corrupted image");
}

/// `oci.index` over two pushed images: each child's platform comes from
/// its own config, a child in another repository is copied in, and skopeo
/// (choosing arm64) lands on the arm64 image. One image per platform, and
/// every child in the registry, or no index.
#[test]
fn an_index_names_each_platform_from_its_config() {
    if !docker_or_skip("an_index_names_each_platform_from_its_config") {
        return;
    }
    let reg = Registry::anonymous();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    copy_only_context(d);
    let flow = format!(
        r#"flow multi {{
  task amd = docker.build {{ context: "img", platform: "linux/amd64", no_cache: true }}
  task arm = docker.build {{ context: "img", platform: "linux/arm64", no_cache: true }}
  task amd_push = docker.push {{ image: amd.image, to: "{h}/app:amd64" }}
  task arm_push = docker.push {{ image: arm.image, to: "{h}/staging:arm64" }}
  task index = oci.index {{ images: [amd_push.pinned, arm_push.pinned], to: "{h}/app:1" }}
  output amd = amd_push.digest
  output arm = arm_push.digest
  output index = index.digest
  output pinned = index.pinned
}}
"#,
        h = reg.host
    );
    let (code, out, err) = run_flow(d, &flow, &[], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let (amd, arm, index) = (output(&out, "amd"), output(&out, "arm"), output(&out, "index"));
    assert_eq!(output(&out, "pinned"), format!("{}/app@{index}", reg.host));
    let raw_text = skopeo_raw(&format!("{}/app:1", reg.host));
    {
        use sha2::Digest;
        let hashed = format!("sha256:{}", hex::encode(sha2::Sha256::digest(raw_text.as_bytes())));
        assert_eq!(hashed, index, "the index skopeo reads is the one kflow reported");
    }
    let raw: serde_json::Value = serde_json::from_str(&raw_text).unwrap();
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json");
    let children: Vec<(String, String)> = raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["digest"].as_str().unwrap().to_string(),
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap(),
                    m["platform"]["architecture"].as_str().unwrap()
                ),
            )
        })
        .collect();
    assert_eq!(
        children,
        [
            (amd.to_string(), "linux/amd64".to_string()),
            (arm.to_string(), "linux/arm64".to_string())
        ]
    );
    // skopeo, choosing a platform, lands on that platform's image (arm64's
    // copied in from `staging`).
    for arch in ["arm64", "amd64"] {
        let o = std::process::Command::new("skopeo")
            .args([
                "inspect",
                "--tls-verify=false",
                "--override-arch",
                arch,
                "--format",
                "{{.Architecture}}",
            ])
            .arg(format!("docker://{}/app:1", reg.host))
            .output()
            .unwrap();
        assert_eq!(text(&o.stdout).trim(), arch, "{}", text(&o.stderr));
    }

    // Two images of one platform; a child the registry does not have.
    let missing = format!("{}/app@sha256:{}", reg.host, "0".repeat(64));
    for (images, why) in [
        (
            format!(r#"pinned("{h}/app@{amd}"), pinned("{h}/app@{amd}")"#, h = reg.host),
            format!(
                "two images for linux/amd64: {h}/app@{amd} and {h}/app@{amd}",
                h = reg.host
            ),
        ),
        (
            format!(r#"pinned("{h}/app@{amd}"), pinned("{missing}")"#, h = reg.host),
            format!("{missing} is not in the registry"),
        ),
    ] {
        let flow = format!(
            "flow bad {{\n  task index = oci.index {{ images: [{images}], to: \"{h}/app:2\" }}\n}}\n",
            h = reg.host
        );
        let (code, out, err) = run_flow(d, &flow, &[], &[]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(err.contains(&why), "{err}");
    }
    let o = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/app:2", reg.host))
        .output()
        .unwrap();
    assert!(!o.status.success(), "no index was stored for a refused assembly");
}
