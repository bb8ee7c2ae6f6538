pub use kflow_grammar as grammar;
