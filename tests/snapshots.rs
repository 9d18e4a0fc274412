//! Snapshots of `policy check` output in every format, on a config with one finding of most
//! kinds. Review changes with `INSTA_UPDATE=always cargo test --test snapshots` and `git diff`.

use fentaris::config::check_source;
use fentaris::diagnostics::{Report, render_github, render_human, render_json, render_sarif};

const FILE: &str = "tests/fixtures/findings.json";
const TEXT: &str = include_str!("fixtures/findings.json");

fn with_report<T>(f: impl FnOnce(&Report) -> T) -> T {
    let out = check_source(TEXT);
    let report = Report {
        file: FILE,
        source: TEXT,
        diagnostics: &out.diagnostics,
    };
    f(&report)
}

#[test]
fn human() {
    insta::assert_snapshot!(with_report(|r| render_human(r, false)));
}

#[test]
fn human_colour_is_only_styling() {
    let plain = with_report(|r| render_human(r, false));
    let colour = with_report(|r| render_human(r, true));
    assert!(colour.contains("\u{1b}["));
    let stripped = strip_ansi(&colour);
    assert_eq!(stripped, plain);
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn json() {
    let out = with_report(render_json);
    serde_json::from_str::<serde_json::Value>(&out).expect("valid JSON");
    insta::assert_snapshot!(out.replace(env!("CARGO_PKG_VERSION"), "[VERSION]"));
}

#[test]
fn sarif() {
    let out = with_report(render_sarif);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    // The parts GitHub code scanning requires.
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    assert!(run["tool"]["driver"]["name"].is_string());
    for r in run["results"].as_array().unwrap() {
        assert!(r["ruleId"].is_string());
        assert!(r["message"]["text"].is_string());
        let region = &r["locations"][0]["physicalLocation"]["region"];
        assert!(region["startLine"].as_u64().unwrap() >= 1);
        let rule_index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(
            run["tool"]["driver"]["rules"][rule_index]["id"],
            r["ruleId"]
        );
    }
    insta::assert_snapshot!(out.replace(env!("CARGO_PKG_VERSION"), "[VERSION]"));
}

#[test]
fn github() {
    insta::assert_snapshot!(with_report(render_github));
}
