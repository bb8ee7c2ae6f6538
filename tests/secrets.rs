//! Secrets never leak: each test runs the real binary, then searches what a
//! user could see — stdout and stderr of `kflow run` and `kflow run --json`,
//! `kflow logs`, `executions show`, and the raw bytes of every file of the
//! state folder — for the secret and its pieces.

mod support;

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;
use support::{files_under, kflow, text};

/// Everything the user can read of the runs in `dir` (two runs of `file`:
/// plain and `--json`), with the names of where each part came from.
fn everything(dir: &Path, file: &str, envs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    let mut seen = Vec::new();
    for args in [vec!["run", file], vec!["run", "--json", file]] {
        let o = kflow(dir, &args, envs);
        seen.push((format!("{args:?} stdout"), o.stdout));
        seen.push((format!("{args:?} stderr"), o.stderr));
    }
    let o = kflow(dir, &["executions", "list", "--json"], &[]);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    for exec in list {
        let id = exec["id"].as_str().unwrap();
        let shown = kflow(dir, &["executions", "show", id], &[]);
        seen.push((format!("executions show {id}"), shown.stdout));
        let logs = kflow(dir, &["logs", id], &[]);
        seen.push((format!("logs {id}"), logs.stdout));
    }
    for path in files_under(&dir.join(".kflow")) {
        seen.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    seen
}

/// Fails naming every place where one of `needles` appears.
fn assert_nowhere(seen: &[(String, Vec<u8>)], needles: &[&str]) {
    let mut leaks = Vec::new();
    for (place, bytes) in seen {
        for needle in needles {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                leaks.push(format!("{needle:?} in {place}"));
            }
        }
    }
    assert!(leaks.is_empty(), "leaked:\n{}", leaks.join("\n"));
}

fn text_of(seen: &[(String, Vec<u8>)], place: &str) -> String {
    text(&seen.iter().find(|(p, _)| p.starts_with(place)).unwrap().1)
}

#[test]
fn a_file_secret_loses_its_trailing_newline_and_never_leaks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw.txt"), "hunter2-file-pw\n").unwrap();
    std::fs::write(dir.path().join("expected.txt"), "hunter2-file-pw").unwrap();
    std::fs::write(
        dir.path().join("f.kflow"),
        r#"flow f {
  secret pw = file("pw.txt")
  task check = shell.run {
    env: { PW: pw }
    script: "test \"$PW\" = \"$(cat expected.txt)\" && echo \"right password: $PW\""
  }
  output said = check.stdout
}
"#,
    )
    .unwrap();
    let seen = everything(dir.path(), "f.kflow", &[]);
    let stdout = text_of(&seen, "[\"run\", \"f.kflow\"] stdout");
    assert!(stdout.contains("right password: ***"), "{stdout}");
    assert_nowhere(&seen, &["hunter2-file-pw"]);
}

const PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgevZzL1gdAFr88hb2
OF/2NxApJCzGCEDdfSp6VQO30hyhRANCAAQRWz+jn65BtOMvdyHKcvjBeBSDZH2r
1RTwjmYSi9R/zpBnuQ4EiMnCqfMPWiZqB4QdbAd0E7oH50VpuZ1P087G
-----END PRIVATE KEY-----";

#[test]
fn every_line_of_a_multi_line_secret_is_redacted_also_when_written_in_pieces() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("f.kflow"),
        r#"flow f {
  secret key = env("KFLOW_TEST_PEM")
  task whole = shell.run { env: { KEY: key }, script: "printf '%s\n' \"$KEY\"" }
  task pieces = shell.run {
    env: { KEY: key }
    script: "printf '%s' \"$KEY\" | head -c 40; sleep 0.2; printf '%s\n' \"$KEY\" | tail -c +41"
  }
  output whole = whole.stdout
}
"#,
    )
    .unwrap();
    let seen = everything(dir.path(), "f.kflow", &[("KFLOW_TEST_PEM", PEM)]);
    let logs = text_of(&seen, "logs ");
    assert!(logs.contains("***"), "{logs}");
    let mut needles: Vec<&str> = PEM.lines().collect();
    // The second line, as the split write leaves it on either side.
    needles.push(&PEM[28..40]);
    needles.push(&PEM[41..60]);
    assert_nowhere(&seen, &needles);
}

#[test]
fn encoded_forms_of_a_secret_are_redacted() {
    let secret = "p@ss/w+rd\"x\\y é!";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("f.kflow"),
        r#"flow f {
  secret s = env("KFLOW_TEST_ODD")
  task encode = shell.run {
    env: { S: s }
    script: """
      printf '%s' "$S" | base64
      printf '%s' "$S" | base64 | tr '+/' '-_'
      printf 'user:%s' "$S" | base64
      printf 'Authorization: Basic %s\n' "$(printf 'ci:%s' "$S" | base64)"
      printf '%s' "$S" | od -An -tx1 | tr -d ' \n'; echo
      python3 -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ["S"], safe=""))'
      python3 -c 'import os, urllib.parse; print(urllib.parse.quote_plus(os.environ["S"]))'
      python3 -c 'import os, json; print(json.dumps({"s": os.environ["S"]}))'
      python3 -c 'import os, json; print(json.dumps(os.environ["S"], ensure_ascii=False))'
    """
  }
  output encoded = encode.stdout
}
"#,
    )
    .unwrap();
    let seen = everything(dir.path(), "f.kflow", &[("KFLOW_TEST_ODD", secret)]);
    let stdout = text_of(&seen, "[\"run\", \"f.kflow\"] stdout");
    assert!(stdout.matches("***").count() >= 9, "{stdout}");
    let b = secret.as_bytes();
    let user = STANDARD.encode(format!("user:{secret}"));
    let ci = STANDARD.encode(format!("ci:{secret}"));
    let forms = [
        STANDARD.encode(b),
        URL_SAFE.encode(b),
        hex::encode(b),
        "p%40ss%2Fw%2Brd%22x%5Cy%20%C3%A9%21".to_string(),
        "p%40ss%2Fw%2Brd%22x%5Cy+%C3%A9%21".to_string(),
        r#"p@ss/w+rd\"x\\y \u00e9!"#.to_string(),
        r#"p@ss/w+rd\"x\\y é!"#.to_string(),
        // The encoded text past the prefix (`user:` and `ci:` fill 5 and 3 bytes).
        user[8..user.len() - 4].to_string(),
        ci[4..ci.len() - 4].to_string(),
    ];
    let needles: Vec<&str> = forms.iter().map(String::as_str).chain([secret]).collect();
    assert_nowhere(&seen, &needles);
}

#[test]
fn a_task_sees_an_env_secret_only_when_its_env_maps_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("f.kflow"),
        r#"flow f {
  secret token = env("KFLOW_TEST_TOKEN")
  task unmapped = shell.run { script: "env | grep -c KFLOW_TEST_TOKEN || true" }
  task mapped = shell.run {
    env: { TOKEN: token }
    script: "env | grep -c KFLOW_TEST_TOKEN; test -n \"$TOKEN\" && echo has-token"
  }
  task argv = shell.run { cmd: ["sh", "-c", "echo \${KFLOW_TEST_TOKEN:-absent}"] }
  output unmapped = unmapped.stdout
  output mapped = mapped.stdout
  output argv = argv.stdout
}
"#,
    )
    .unwrap();
    let o = kflow(
        dir.path(),
        &["run", "--json", "f.kflow"],
        &[("KFLOW_TEST_TOKEN", "inherited-t0ken"), ("KFLOW_TEST_OTHER", "kept")],
    );
    let stdout = text(&o.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["outputs"]["unmapped"], "0", "{stdout}");
    assert_eq!(last["outputs"]["mapped"], "0\nhas-token", "{stdout}");
    assert_eq!(last["outputs"]["argv"], "absent", "{stdout}");
}

#[test]
fn other_variables_are_inherited() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("f.kflow"),
        "flow f {\n  task t = shell.run { script: \"echo $KFLOW_TEST_OTHER\" }\n  output o = t.stdout\n}\n",
    )
    .unwrap();
    let o = kflow(dir.path(), &["run", "f.kflow"], &[("KFLOW_TEST_OTHER", "kept")]);
    assert!(text(&o.stdout).contains("kept"), "{}", text(&o.stdout));
}

/// Key text in a broken PEM: it must not appear in any message.
const KEY_TEXT: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49";

#[test]
fn a_malformed_key_is_an_error_never_a_panic_and_its_text_is_never_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let digest = format!("sha256:{}", "0".repeat(64));
    std::fs::write(
        d.join("s.kflow"),
        format!(
            "flow s {{\n  secret key = file(\"bad.key\")\n  task sign = cosign.sign {{ image: pinned(\"127.0.0.1:9/x@{digest}\"), key: key }}\n}}\n"
        ),
    )
    .unwrap();
    for bad in [
        "-----BEGIN -----END -----".to_string(),
        format!("-----BEGIN -----END -----{KEY_TEXT}"),
        format!("-----BEGIN {KEY_TEXT}\n{KEY_TEXT}-----END -----"),
    ] {
        std::fs::write(d.join("bad.key"), &bad).unwrap();
        let o = kflow(
            d,
            &["verify", &format!("127.0.0.1:9/x@{digest}"), "--key", "bad.key"],
            &[],
        );
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains("malformed PEM"), "{}", text(&o.stderr));
        let o = kflow(d, &["run", "s.kflow"], &[]);
        assert_eq!(o.status.code(), Some(1), "{bad:?}: {}", text(&o.stderr));
        assert!(
            text(&o.stdout).contains("the signing key: malformed PEM"),
            "{}",
            text(&o.stdout)
        );
        let seen = vec![("stdout".to_string(), o.stdout), ("stderr".to_string(), o.stderr)];
        assert_nowhere(&seen, &[KEY_TEXT]);
    }
    let seen: Vec<(String, Vec<u8>)> = files_under(&d.join(".kflow"))
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    assert_nowhere(&seen, &[KEY_TEXT]);
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn keygen_writes_private_keys_0600_also_over_an_open_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("cosign.key"), "old").unwrap();
    std::fs::set_permissions(d.join("cosign.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = kflow(d, &["keygen", "--force"], &[("COSIGN_PASSWORD", "pw")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(mode(&d.join("cosign.key")), 0o600);
    assert_eq!(mode(&d.join("cosign.pub")), 0o644);
    assert!(std::fs::read_to_string(d.join("cosign.key"))
        .unwrap()
        .contains("ENCRYPTED SIGSTORE PRIVATE KEY"));
    // Nothing half-written is left next to it.
    let names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn keygen_never_writes_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let elsewhere = d.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("stolen.key"), d.join("cosign.key")).unwrap();
    // A dangling link is an existing file.
    let o = kflow(d, &["keygen"], &[("COSIGN_PASSWORD", "pw")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("cosign.key exists; pass --force"),
        "{}",
        text(&o.stderr)
    );
    assert!(!elsewhere.join("stolen.key").exists());
    // With --force the link itself is replaced, its target never created.
    let o = kflow(d, &["keygen", "--force"], &[("COSIGN_PASSWORD", "pw")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(!elsewhere.join("stolen.key").exists());
    let meta = std::fs::symlink_metadata(d.join("cosign.key")).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(mode(&d.join("cosign.key")), 0o600);
}
