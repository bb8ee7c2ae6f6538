//! In-process throughput of parsing and checking, on the flows that
//! `bench/run.py` generates (run that script; it calls this bench):
//!
//!     cargo bench -p kflow-compiler --bench check -- bench/out/flow-10000.kflow
//!
//! Prints the median over the runs of each stage, in ms and MB/s.

use std::time::{Duration, Instant};

use kflow_compiler::analysis::{analyze, Options};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let files: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if files.is_empty() {
        eprintln!("usage: cargo bench -p kflow-compiler --bench check -- FILE.kflow…  (bench/run.py generates them)");
        return;
    }
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(15);
    for file in files {
        let src = std::fs::read_to_string(&file).expect("readable benchmark input");
        let mb = src.len() as f64 / 1e6;
        let opts = Options::default();
        let (mut parse, mut check, mut total) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let start = Instant::now();
            let a = analyze(&src, &opts);
            total.push(start.elapsed());
            parse.push(a.timings.parse);
            check.push(a.timings.check);
            assert!(!a.has_errors(), "{file} has errors");
            std::hint::black_box(a);
        }
        let row = |name: &str, d: Duration| {
            println!(
                "{file}: {name:<6} {:8.1} ms  {:7.1} MB/s",
                d.as_secs_f64() * 1e3,
                mb / d.as_secs_f64()
            );
        };
        row("parse", median(parse));
        row("check", median(check));
        row("total", median(total));
    }
}
