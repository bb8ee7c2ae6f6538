fn main() {
    let path = std::env::args().nth(1).expect("path");
    let src = std::fs::read_to_string(path).unwrap();
    let t = std::time::Instant::now();
    let (file, diags) = kflow_grammar::parse(&src);
    eprintln!("parsed in {:?}", t.elapsed());
    if std::env::var("DUMP").is_ok() {
        println!("{file:#?}");
    }
    for d in diags {
        println!(
            "{} {:?} {} [{}]",
            d.code,
            d.span,
            d.message,
            &src[d.span.start..d.span.end.min(src.len())]
        );
    }
}
