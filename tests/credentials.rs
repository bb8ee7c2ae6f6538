//! Every task that speaks to a registry takes `credentials`, each end of a
//! copy its own, `kflow verify` takes them as flags, and a registry that
//! asks for credentials nobody gave gets a hint naming what exists.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use support::*;

const DEV: (&str, &str) = ("dev", "dev-pa55");
const PROD: (&str, &str) = ("prod", "prod-pa55");

fn run(dir: &Path, flow: &str, envs: &[(&str, &str)]) -> (i32, String, String) {
    std::fs::write(dir.join("flow.kflow"), flow).unwrap();
    let o = kflow(dir, &["run", "--state", "state", "flow.kflow"], envs);
    (o.status.code().unwrap_or(-1), text(&o.stdout), text(&o.stderr))
}

/// `kflow verify` with the password on standard input.
fn verify(dir: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kflow"))
        .arg("verify")
        .args(args)
        .current_dir(dir)
        .env("DOCKER_CONFIG", dir.join("no-docker-config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    (o.status.code().unwrap_or(-1), text(&o.stdout), text(&o.stderr))
}

#[test]
fn credentials_reach_every_registry_task_and_each_end_of_a_copy() {
    if !docker_or_skip("credentials_reach_every_registry_task_and_each_end_of_a_copy") {
        return;
    }
    let dev = Registry::with_user(DEV.0, DEV.1);
    let prod = Registry::with_user(PROD.0, PROD.1);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Removed at the end: an image of this test's own.
    own_context(d, "");
    let o = kflow(d, &["keygen"], &[("COSIGN_PASSWORD", "k")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    // Nothing comes from a Docker config: only what the flow gives.
    let no_config = d.join("no-docker-config");
    let envs = [
        ("DEV_PW", DEV.1),
        ("PROD_PW", PROD.1),
        ("COSIGN_PASSWORD", "k"),
        ("DOCKER_CONFIG", no_config.to_str().unwrap()),
    ];
    let flow = format!(
        r#"flow creds {{
  secret dev_pw = env("DEV_PW")
  secret prod_pw = env("PROD_PW")
  secret key = file("cosign.key")
  secret key_pw = env("COSIGN_PASSWORD")
  let dev: credentials = {{ username: "dev", password: dev_pw }}
  let prod: credentials = {{ username: "prod", password: prod_pw }}
  task image = docker.build {{ context: "img" }}
  task push = docker.push {{ image: image.image, to: "{dev}/team/app:1", credentials: dev }}
  task sign = cosign.sign {{ image: push.pinned, key: key, password: key_pw, credentials: dev }}
  task verify = cosign.verify {{ image: push.pinned, key: "cosign.pub", credentials: dev, after: [sign] }}
  task pulled = container.run {{ image: push.pinned, cmd: ["echo", "pulled"], pull: always, credentials: dev }}
  task promote = registry.copy {{ from: push.pinned, to: "{prod}/prod/app:1", from_credentials: dev, to_credentials: prod, after: [verify] }}
  output pinned = push.pinned
  output image = image.id
  output pushed = push.digest
  output promoted = promote.digest
  output signatures = verify.signatures
  output ran = pulled.stdout
}}
"#,
        dev = dev.host,
        prod = prod.host
    );
    let (code, out, err) = run(d, &flow, &envs);
    let image = out.lines().find_map(|l| l.strip_prefix("image = ")).map(str::to_string);
    let cleanup = || {
        if let Some(id) = &image {
            let _ = Command::new("docker").args(["rmi", "-f", id]).output();
        }
    };
    if code != 0 {
        cleanup();
    }
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(output(&out, "promoted"), output(&out, "pushed"));
    assert_eq!(output(&out, "signatures"), "1");
    assert_eq!(output(&out, "ran"), "pulled");
    assert!(out.contains("pulled | pulling"), "{out}");
    assert!(!out.contains(DEV.1) && !out.contains(PROD.1) && !err.contains(DEV.1));
    let pinned = output(&out, "pinned").to_string();

    // `kflow verify` logs in with the flags.
    let (code, out, err) = verify(
        d,
        &[
            &pinned,
            "--key",
            "cosign.pub",
            "--registry-username",
            DEV.0,
            "--registry-password-stdin",
        ],
        &format!("{}\n", DEV.1),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("Verified 1 signature(s)"), "{out}");
    // Without them, the hint names the flags it has.
    let (code, _, err) = verify(d, &[&pinned, "--key", "cosign.pub"], "");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no credentials were found") && err.contains("--registry-username NAME --registry-password-stdin"),
        "{err}"
    );

    // One username and password for both ends of a cross-registry copy is
    // refused before either registry hears of them; missing credentials
    // are hinted at by the property that gives them.
    let flow = format!(
        r#"flow hints {{
  input img: pinned
  secret dev_pw = env("DEV_PW")
  task both = registry.copy {{ from: img, to: "{prod}/prod/app:2", credentials: {{ username: "dev", password: dev_pw }}, continue_on_error: true }}
  task bare = registry.copy {{ from: img, to: "{prod}/prod/app:3", continue_on_error: true }}
  task pull = container.run {{ image: img, cmd: ["true"], pull: always, continue_on_error: true }}
}}
"#,
        prod = prod.host
    );
    std::fs::write(d.join("hints.kflow"), flow).unwrap();
    let input = format!("img={pinned}");
    let o = kflow(d, &["run", "--state", "state", "hints.kflow", "-i", &input], &envs);
    let out = text(&o.stdout);
    cleanup();
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(
        out.contains(&format!(
            "both | failed in 0.00s: `credentials` would send one username and password to both {} and {}: give `from_credentials` and `to_credentials`",
            dev.host, prod.host
        )),
        "{out}"
    );
    assert!(out.contains("or give `from_credentials`)"), "{out}");
    assert!(
        out.contains("pull | failed in") && out.contains("or give `credentials`)"),
        "{out}"
    );
}
