//! Where tasks run on a shared history's workers. A task that uses what
//! another task leaves on its worker — a local image or a Compose stack on
//! that worker's engine, a secret it produced there — runs on that worker.
//! When its `runs_on` asks for labels the other task's `runs_on` does not,
//! that worker may lack them, and the task fails at run time: said here
//! first.

use std::collections::BTreeMap;

use kflow_grammar::diag::{Diagnostic, Span};
use rustc_hash::FxHashMap;

use super::Checker;
use crate::codes;
use crate::ir::{self, Expr};

/// Output types whose values stay on the worker that produced them.
const STAYS: &[&str] = &["image", "images", "secret", "credentials"];

impl Checker<'_> {
    pub(super) fn placement(&mut self, spans: &FxHashMap<(ir::NodeId, ir::NodeId), Span>) {
        let labels: Vec<BTreeMap<String, String>> = self.plan.nodes.iter().map(runs_on).collect();
        let by_name: FxHashMap<&str, ir::NodeId> = self.plan.nodes.iter().map(|n| (n.name.as_str(), n.id)).collect();
        let mut found = Vec::new();
        for node in &self.plan.nodes {
            let want = &labels[node.id];
            if want.is_empty() {
                continue;
            }
            // (producer, what of it), each producer once.
            let mut uses: BTreeMap<ir::NodeId, String> = BTreeMap::new();
            for (name, prop) in &node.props {
                if name == "runs_on" {
                    continue;
                }
                outputs(&prop.value, &mut |task, field| {
                    let Some(&p) = by_name.get(task) else { return };
                    let producer = &self.plan.nodes[p];
                    let ty = crate::catalog::kind(&producer.kind)
                        .and_then(|k| k.output(field))
                        .map(|o| o.ty.trim_end_matches('?'));
                    let stays = ty.is_some_and(|t| STAYS.contains(&t))
                        || (node.kind == "compose.down" && producer.kind == "compose.up" && field == "project");
                    if stays {
                        uses.entry(p).or_insert_with(|| field.to_string());
                    }
                });
            }
            for (p, field) in uses {
                let missing: Vec<(&String, &String)> =
                    want.iter().filter(|(k, v)| labels[p].get(*k) != Some(*v)).collect();
                if !missing.is_empty() {
                    // What the producer's `runs_on` becomes: its own and the missing.
                    let mut all: Vec<(&String, &String)> = labels[p].iter().collect();
                    all.extend(missing.iter().copied());
                    all.sort();
                    found.push((
                        node.id,
                        p,
                        field,
                        joined(&missing, |k, v| format!("{k}={v}"), ","),
                        joined(&all, |k, v| format!("{k}: {v:?}"), ", "),
                    ));
                }
            }
        }
        for (t, p, field, missing, literal) in found {
            let (user, producer) = (&self.plan.nodes[t].name, &self.plan.nodes[p].name);
            let span = spans.get(&(p, t)).copied().unwrap_or(self.node_spans[t]);
            self.push(
                Diagnostic::warning(
                    codes::PLACEMENT,
                    span,
                    format!("`{user}` runs on workers labelled {missing}, but `{producer}` may not"),
                )
                .with_label(format!(
                    "`{producer}.{field}` stays on the worker that ran `{producer}`, where `{user}` then has to run"
                ))
                .with_help(format!("give `{producer}` `runs_on: {{ {literal} }}`")),
            );
        }
    }
}

/// A node's literal `runs_on` labels (none when absent or not literal).
fn runs_on(node: &ir::Node) -> BTreeMap<String, String> {
    let Some(Expr::Map { entries }) = node.props.get("runs_on").map(|p| &p.value) else {
        return BTreeMap::new();
    };
    entries
        .iter()
        .filter_map(|(k, v)| match v {
            Expr::Str { value } => Some((k.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

/// `pairs` written each by `each`, joined by `sep`.
fn joined(pairs: &[(&String, &String)], each: fn(&str, &str) -> String, sep: &str) -> String {
    pairs.iter().map(|(k, v)| each(k, v)).collect::<Vec<_>>().join(sep)
}

/// Every task output an expression reads, as (task, output).
fn outputs(e: &Expr, f: &mut dyn FnMut(&str, &str)) {
    match e {
        Expr::Output { task, field } => f(task, field),
        Expr::Interp { parts } | Expr::List { items: parts } => parts.iter().for_each(|p| outputs(p, f)),
        Expr::Map { entries } => entries.iter().for_each(|(_, v)| outputs(v, f)),
        Expr::Field { base, .. } | Expr::Not { expr: base } => outputs(base, f),
        Expr::Binary { left, right, .. } => {
            outputs(left, f);
            outputs(right, f);
        }
        Expr::Call { args, .. } | Expr::Method { args, .. } => args.iter().for_each(|a| outputs(a, f)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::analysis::analyze;

    fn placement(src: &str) -> Vec<String> {
        let a = analyze(src, &Default::default());
        a.diagnostics
            .iter()
            .filter(|d| d.code == crate::codes::PLACEMENT)
            .map(|d| d.message.clone())
            .collect()
    }

    #[test]
    fn a_user_pinned_elsewhere_than_what_it_uses_is_warned() {
        let src = r#"flow f {
  secret pw = env("PW")
  task build = docker.build { context: "." }
  task id = oidc.token { audience: "x", runs_on: { env: "prod" } }
  task push = docker.push {
    image: build.image
    to: "127.0.0.1:5000/app:1"
    credentials: { username: "ci", password: id.token }
    runs_on: { env: "prod", arch: "amd64" }
  }
}
"#;
        assert_eq!(
            placement(src),
            [
                "`push` runs on workers labelled arch=amd64,env=prod, but `build` may not",
                "`push` runs on workers labelled arch=amd64, but `id` may not",
            ]
        );
    }

    #[test]
    fn the_same_labels_or_plain_values_are_not_warned() {
        let src = r#"flow f {
  task build = docker.build { context: ".", runs_on: { env: "prod", arch: "amd64" } }
  task push = docker.push { image: build.image, to: "127.0.0.1:5000/app:1", runs_on: { env: "prod" } }
  task note = log { message: "${push.digest}", runs_on: { env: "dev" } }
}
"#;
        assert!(placement(src).is_empty(), "{:?}", placement(src));
    }
}
