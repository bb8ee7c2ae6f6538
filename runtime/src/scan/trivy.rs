//! Trivy reports (JSON, schema 2) and the gate on them: findings counted per
//! severity, `ignore_unfixed` and `.trivyignore` honoured, the task failing
//! when a finding's severity is in `fail_on`. The parser is lenient: missing
//! fields are empty, unknown severities count as `UNKNOWN`.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct Report {
    #[serde(default)]
    pub schema_version: Option<u32>,
    #[serde(default)]
    pub artifact_name: Option<String>,
    #[serde(default)]
    pub results: Option<Vec<ResultEntry>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct ResultEntry {
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub vulnerabilities: Option<Vec<Vulnerability>>,
}

#[derive(Deserialize, Default, Clone, Debug)]
pub struct Vulnerability {
    #[serde(rename = "VulnerabilityID", default)]
    pub id: String,
    #[serde(rename = "PkgName", default)]
    pub package: String,
    #[serde(rename = "InstalledVersion", default)]
    pub installed: String,
    #[serde(rename = "FixedVersion", default)]
    pub fixed: Option<String>,
    #[serde(rename = "Severity", default)]
    pub severity: String,
    #[serde(rename = "Title", default)]
    pub title: Option<String>,
}

pub const SEVERITIES: &[&str] = &["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"];

pub fn parse(bytes: &[u8]) -> Result<Report, String> {
    let report: Report =
        serde_json::from_slice(bytes).map_err(|e| format!("the Trivy report is not valid JSON: {e}"))?;
    if report.schema_version.is_none() && report.artifact_name.is_none() && report.results.is_none() {
        return Err("this is not a Trivy JSON report (no SchemaVersion, ArtifactName or Results; an SBOM?)".into());
    }
    match report.schema_version {
        Some(2) | None => Ok(report),
        Some(v) => Err(format!(
            "the Trivy report has schema version {v}; kflow reads version 2 (Trivy 0.20 and later)"
        )),
    }
}

/// `.trivyignore`: one vulnerability ID per line, `#` comments, and an
/// optional `exp:YYYY-MM-DD` after which the entry no longer applies.
pub fn parse_ignore(text: &str, today: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("").trim();
            let mut parts = line.split_whitespace();
            let id = parts.next()?;
            let expired = parts.any(|p| p.strip_prefix("exp:").is_some_and(|date| date < today));
            (!expired).then(|| id.to_string())
        })
        .collect()
}

/// What the gate decided.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Findings per severity (upper case), after ignores.
    pub counts: BTreeMap<String, i64>,
    /// Findings whose severity is in `fail_on`.
    pub blocking: Vec<Finding>,
    pub ignored: usize,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub id: String,
    pub severity: String,
    pub package: String,
    pub installed: String,
    pub fixed: Option<String>,
    pub target: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} in {} {}",
            self.severity, self.id, self.package, self.installed
        )?;
        match &self.fixed {
            Some(v) => write!(f, " (fixed in {v})"),
            None => write!(f, " (no fix yet)"),
        }
    }
}

pub fn gate(report: &Report, fail_on: &[String], ignore_unfixed: bool, ignore: &[String]) -> Verdict {
    let mut v = Verdict::default();
    for s in SEVERITIES {
        v.counts.insert(s.to_string(), 0);
    }
    let fail_on: Vec<String> = fail_on.iter().map(|s| s.to_ascii_uppercase()).collect();
    for result in report.results.iter().flatten() {
        for vuln in result.vulnerabilities.iter().flatten() {
            let fixed = vuln.fixed.clone().filter(|f| !f.trim().is_empty());
            if (ignore_unfixed && fixed.is_none()) || ignore.contains(&vuln.id) {
                v.ignored += 1;
                continue;
            }
            let severity = vuln.severity.to_ascii_uppercase();
            let severity = if SEVERITIES.contains(&severity.as_str()) {
                severity
            } else {
                "UNKNOWN".to_string()
            };
            *v.counts.entry(severity.clone()).or_insert(0) += 1;
            if fail_on.contains(&severity) {
                v.blocking.push(Finding {
                    id: vuln.id.clone(),
                    severity,
                    package: vuln.package.clone(),
                    installed: vuln.installed.clone(),
                    fixed,
                    target: result.target.clone().unwrap_or_default(),
                });
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_files_honour_comments_and_expiry() {
        let ids = parse_ignore(
            "# accepted risks\nCVE-2019-1\nCVE-2019-2 exp:2020-01-01\nCVE-2019-3 exp:2999-01-01 # later\n\n",
            "2026-11-28",
        );
        assert_eq!(ids, ["CVE-2019-1", "CVE-2019-3"]);
    }

    #[test]
    fn lenient_with_missing_fields() {
        let r = parse(br#"{"Results": [{"Vulnerabilities": [{"Severity": "weird"}, {}]}, {}]}"#).unwrap();
        let v = gate(&r, &["unknown".into()], false, &[]);
        assert_eq!(v.counts["UNKNOWN"], 2);
        assert_eq!(v.blocking.len(), 2);
        assert!(parse(br#"{"SchemaVersion": 1}"#)
            .unwrap_err()
            .contains("schema version 1"));
    }
}
