//! `docker.build` with the engine's BuildKit: its session and secrets, its
//! progress in the task's log, step failures and cancellation, and the
//! classic builder where BuildKit is not asked for.

mod support;

use std::io::Read;
use std::path::Path;
use std::process::Command;

use support::*;

fn run_flow(dir: &Path, flow: &str, envs: &[(&str, &str)]) -> (i32, String, String) {
    std::fs::write(dir.join("flow.kflow"), flow).unwrap();
    let o = kflow(dir, &["run", "--state", "state", "flow.kflow"], envs);
    (o.status.code().unwrap_or(-1), text(&o.stdout), text(&o.stderr))
}

/// Every file of every layer of `image`, as `docker save` exports it, and
/// its config: what would ship if it were pushed.
fn exported_bytes(image: &str) -> Vec<u8> {
    let saved = Command::new("docker").args(["save", image]).output().unwrap();
    assert!(saved.status.success(), "{}", text(&saved.stderr));
    let mut all = Vec::new();
    let mut outer = tar::Archive::new(&saved.stdout[..]);
    for entry in outer.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        // Layers are tars themselves: their files' contents, unpacked.
        if entry.path().unwrap().to_string_lossy().ends_with(".tar") {
            for inner in tar::Archive::new(&bytes[..]).entries().unwrap() {
                let mut inner = inner.unwrap();
                inner.read_to_end(&mut all).unwrap();
                all.extend_from_slice(inner.path_bytes().as_ref());
            }
        }
        all.extend_from_slice(&bytes);
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A secret reaches the step that mounts it (the image keeps its hash, so
/// the test knows it was read), is redacted where the step prints it, and
/// is in no layer, no config and no history of the image.
#[test]
fn a_build_secret_is_mounted_for_its_step_and_kept_out_of_the_image() {
    if !docker_or_skip("a_build_secret_is_mounted_for_its_step_and_kept_out_of_the_image") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let word = unique_word(dir.path());
    busybox_context(
        dir.path(),
        &format!(
            "RUN --mount=type=secret,id=token sh -c 'echo {word}; sha256sum /run/secrets/token | cut -c1-64 > /token.sha; echo \"read $(cat /run/secrets/token)\"'\n"
        ),
    );
    let secret = format!("s3cr3t-{word}-value");
    let tag = format!("kflow-test/{word}:1");
    let flow = format!(
        r#"flow b {{
  secret token = env("BUILD_TOKEN")
  task image = docker.build {{ context: "img", builder: "buildkit", secrets: {{ token: token }}, tags: ["{tag}"] }}
}}
"#
    );
    let (code, out, err) = run_flow(dir.path(), &flow, &[("BUILD_TOKEN", &secret)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("image | building with BuildKit"), "{out}");
    assert!(out.contains("read ***"), "the step's output, redacted: {out}");
    assert!(!out.contains(&secret) && !err.contains(&secret), "{out}{err}");

    let sha = Command::new("docker")
        .args(["run", "--rm", "--entrypoint", "/bin/cat", &tag, "/token.sha"])
        .output()
        .unwrap();
    use sha2::Digest;
    let want = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
    assert_eq!(text(&sha.stdout).trim(), want, "the step did not read the secret");

    let bytes = exported_bytes(&tag);
    assert!(
        !contains(&bytes, secret.as_bytes()),
        "the secret is in the exported image"
    );
    assert!(
        contains(&bytes, word.as_bytes()),
        "the search would not find text in the image"
    );
    let history = Command::new("docker")
        .args(["history", "--no-trunc", &tag])
        .output()
        .unwrap();
    assert!(!text(&history.stdout).contains(&secret));
    let state = files_under(&dir.path().join("state"));
    for file in state {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!contains(&bytes, secret.as_bytes()), "in {}", file.display());
    }
    let _ = Command::new("docker").args(["rmi", &tag]).output();
}

/// A secret the Dockerfile mounts but the task does not give: the step
/// fails saying which; the classic builder refuses secrets outright.
#[test]
fn a_missing_secret_and_secrets_without_buildkit_are_clear_errors() {
    if !docker_or_skip("a_missing_secret_and_secrets_without_buildkit_are_clear_errors") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    busybox_context(
        dir.path(),
        &format!(
            "RUN --mount=type=secret,id=npmrc,required=true echo {}\n",
            unique_word(dir.path())
        ),
    );
    let flow = "flow b {\n  task image = docker.build { context: \"img\" }\n}\n";
    let (code, out, err) = run_flow(dir.path(), flow, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("image: step `[3/3] RUN --mount=type=secret,id=npmrc"),
        "{err}"
    );
    assert!(err.contains("npmrc"), "{err}");

    let flow = "flow b {\n  secret t = env(\"T\")\n  task image = docker.build { context: \"img\", builder: \"classic\", secrets: { npmrc: t } }\n}\n";
    let (code, out, err) = run_flow(dir.path(), flow, &[("T", "x")]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("build secrets need BuildKit"), "{err}");
}

/// A failing step: its name and BuildKit's message in the error, what it
/// printed in the log with its step number.
#[test]
fn a_failing_buildkit_step_is_named_with_its_output() {
    if !docker_or_skip("a_failing_buildkit_step_is_named_with_its_output") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let word = unique_word(dir.path());
    busybox_context(dir.path(), &format!("RUN echo compiling {word}; exit 7\n"));
    let flow = "flow b {\n  task image = docker.build { context: \"img\", builder: \"buildkit\" }\n}\n";
    let (code, out, err) = run_flow(dir.path(), flow, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "image: step `[3/3] RUN echo compiling {word}; exit 7` failed: "
        )),
        "{err}"
    );
    assert!(err.contains("exit code: 7"), "{err}");
    assert!(out.contains(&format!("compiling {word}")), "{out}");
    assert!(out.contains("ERROR: "), "{out}");
}

/// Cancelling a BuildKit build (a timeout here) stops it on the engine:
/// the step's container is gone soon after, nothing is tagged.
#[test]
fn a_cancelled_buildkit_build_stops_on_the_engine() {
    if !docker_or_skip("a_cancelled_buildkit_build_stops_on_the_engine") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let word = unique_word(dir.path());
    // BuildKit's steps are no containers `docker ps` lists: the host's
    // process list is the witness (the engine runs on this machine).
    busybox_context(dir.path(), &format!("RUN sleep 47{}; echo done\n", word.len() % 10));
    let marker = format!("sleep 47{}", word.len() % 10);
    let flow = "flow b {\n  task image = docker.build { context: \"img\", builder: \"buildkit\", no_cache: true, timeout: 3s }\n}\n";
    let started = std::time::Instant::now();
    let (code, out, err) = run_flow(dir.path(), flow, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("timed out after 3s"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let sleeping = || {
        let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
        text(&ps.stdout).lines().any(|l| l.trim() == marker)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while sleeping() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(!sleeping(), "the step still runs on the engine after the cancel");
}

/// `auto` is BuildKit on this engine; `classic` is the classic builder,
/// with its own step lines.
#[test]
fn auto_takes_buildkit_where_the_engine_offers_it() {
    if !docker_or_skip("auto_takes_buildkit_where_the_engine_offers_it") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    own_context(dir.path(), "");
    let flow = "flow b {\n  task image = docker.build { context: \"img\" }\n}\n";
    let (code, out, err) = run_flow(dir.path(), flow, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("image | building with BuildKit"), "{out}");
    assert!(out.contains("[3/3] RUN echo"), "{out}");
    let flow = "flow b {\n  task image = docker.build { context: \"img\", builder: \"classic\" }\n}\n";
    let (code, out, err) = run_flow(dir.path(), flow, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("image | building with the classic builder"), "{out}");
    assert!(out.contains("Step 4/4 : RUN echo"), "{out}");
}

/// `docker.build { platforms }` and `docker.push` of it: one image per
/// platform (Debian's own busybox for each, picked by `TARGETARCH`), one
/// index under the tag, each child's platform from its config. skopeo reads
/// the index back; `container.run` runs the engine's own platform; where
/// qemu is registered with the kernel, the engine runs the arm64 image.
#[test]
fn a_two_platform_build_is_pushed_as_one_index() {
    if !docker_or_skip("a_two_platform_build_is_pushed_as_one_index") {
        return;
    }
    let reg = Registry::anonymous();
    let dir = tempfile::tempdir().unwrap();
    two_platform_context(dir.path());
    let word = unique_word(dir.path());
    let flow = format!(
        r#"flow multi {{
  task image = docker.build {{ context: "img", platforms: ["linux/amd64", "linux/arm64"] }}
  task push = docker.push {{ image: image.image, to: ref("{h}/multi/{word}:1") }}
  task hello = container.run {{ image: image.image, cmd: ["/bin/busybox", "cat", "/hello"] }}
  output index = push.digest
  output images = image.image
}}
"#,
        h = reg.host
    );
    let (code, out, err) = run_flow(dir.path(), &flow, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("image | building linux/arm64"), "{out}");
    assert!(
        out.contains(&format!("hello |   {word}")) || out.contains(&format!("hello | {word}")),
        "{out}"
    );
    let index = output(&out, "index").trim_matches('"').to_string();

    let reference = format!("{}/multi/{word}:1", reg.host);
    let raw = skopeo_raw(&reference);
    use sha2::Digest;
    assert_eq!(
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(raw.as_bytes()))),
        index
    );
    let parsed: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(parsed["mediaType"], "application/vnd.oci.image.index.v1+json");
    let platforms: Vec<String> = parsed["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    for arch in ["amd64", "arm64"] {
        let o = std::process::Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--override-arch", arch])
            .arg(format!("docker://{reference}"))
            .output()
            .unwrap();
        let inspected: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(inspected["Architecture"], arch, "{}", text(&o.stderr));
    }
    // Each platform's local image, as the history records it.
    let images: serde_json::Value = serde_json::from_str(output(&out, "images")).unwrap();
    assert_eq!(images[1]["platform"], "linux/arm64", "{images}");
    assert!(images[1]["image"].as_str().unwrap().starts_with("sha256:"), "{images}");
    let exec = last_execution(dir.path(), "state");
    assert_eq!(exec["outputs"]["images"], images);

    let qemu = std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64").unwrap_or_default();
    if !qemu.starts_with("enabled") {
        eprintln!(
            "a_two_platform_build_is_pushed_as_one_index: not running the arm64 image: qemu-aarch64 is not registered with binfmt_misc (install qemu-user-static where the kernel allows it)"
        );
        return;
    }
    let ran = Command::new("docker")
        .args(["run", "--rm", "--platform", "linux/arm64", &reference])
        .args(["/bin/busybox", "uname", "-m"])
        .output()
        .unwrap();
    assert_eq!(text(&ran.stdout).trim(), "aarch64", "{}", text(&ran.stderr));
    let _ = Command::new("docker").args(["rmi", &reference]).output();
}

/// What a build cannot be: a platform that does not exist, one the engine
/// cannot build, one platform twice, a multi-platform build's local tag.
#[test]
fn bad_platforms_are_refused() {
    if !docker_or_skip("bad_platforms_are_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    copy_only_context(dir.path());
    let flow = "flow b {\n  task image = docker.build { context: \"img\", platform: \"linux/amd46\" }\n}\n";
    let (code, _, err) = run_flow(dir.path(), flow, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`linux/amd46` is not a platform: the architecture `amd46` is not one of"),
        "{err}"
    );

    // A real platform this (Linux) engine cannot build.
    let flow = "flow b {\n  task image = docker.build { context: \"img\", platform: \"windows/amd64\" }\n}\n";
    let (code, out, err) = run_flow(dir.path(), flow, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("operating system is not supported"), "{err}");

    let flow = "flow b {\n  input p: string = \"linux/amd64\"\n  task image = docker.build { context: \"img\", platforms: [p, \"linux/amd64\"] }\n}\n";
    let (code, out, err) = run_flow(dir.path(), flow, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("`platforms` names linux/amd64 twice"), "{err}");

    let flow = "flow b {\n  task image = docker.build { context: \"img\", platforms: [\"linux/amd64\", \"linux/arm64\"] }\n  task t = docker.tag { image: image.image, tag: \"kflow-test/multi:1\" }\n}\n";
    let (code, out, err) = run_flow(dir.path(), flow, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("a multi-platform build is 2 images, and a local tag names one"),
        "{err}"
    );
}

/// A step that prints a long run without a line ending is logged in pieces
/// of at most 64 KiB (the bound every process's output has), not gathered
/// into one line as long as the step cares to make it.
#[test]
fn a_step_printing_without_line_endings_is_logged_in_bounded_pieces() {
    if !docker_or_skip("a_step_printing_without_line_endings_is_logged_in_bounded_pieces") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let word = unique_word(dir.path());
    busybox_context(
        dir.path(),
        &format!("RUN echo {word}; head -c 300000 /dev/zero | tr '\\0' a\n"),
    );
    let flow = "flow b {\n  task image = docker.build { context: \"img\", builder: \"buildkit\" }\n}\n";
    let (code, out, err) = run_flow(dir.path(), flow, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let longest = out.lines().map(str::len).max().unwrap_or(0);
    assert!(longest <= 64 * 1024 + 100, "a log line of {longest} bytes");
    let printed: usize = out
        .lines()
        .filter_map(|l| l.split_once(" | #").map(|(_, rest)| rest))
        .map(|rest| rest.bytes().filter(|b| *b == b'a').count())
        .sum();
    // BuildKit itself clips a step's output at 200 KiB/s: what it passes
    // on is logged, in more than two full pieces.
    assert!(printed > 2 * 64 * 1024, "{printed} of the step's bytes logged");
}
