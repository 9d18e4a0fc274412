//! Files generated from the code must be current: `completions/`, `man/` and the example's
//! `config.schema.json`. Regenerate with `UPDATE_GENERATED=1 cargo test --test generated`.

use std::path::Path;

fn check(files: Vec<(String, Vec<u8>)>, dir: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let update = std::env::var_os("UPDATE_GENERATED").is_some();
    if update {
        std::fs::create_dir_all(&root).unwrap();
    }
    let mut stale = Vec::new();
    for (name, content) in &files {
        let path = root.join(name);
        if update {
            std::fs::write(&path, content).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(content.as_slice()) {
            stale.push(format!("{dir}/{name}"));
        }
    }
    // No leftovers from removed commands.
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !files.iter().any(|(n, _)| *n == name) && dir != ".fentaris.example" && dir != "docs"
            {
                if update {
                    std::fs::remove_file(e.path()).unwrap();
                } else {
                    stale.push(format!("{dir}/{name} (no longer generated)"));
                }
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated files: {stale:?}\nrun: UPDATE_GENERATED=1 cargo test --test generated"
    );
}

#[test]
fn completions_are_current() {
    check(fentaris::cli::completion_scripts(), "completions");
}

#[test]
fn man_pages_are_current() {
    let pages = fentaris::cli::man_pages();
    assert!(pages.iter().any(|(n, _)| n == "fentaris-policy-check.1"));
    check(pages, "man");
}

#[test]
fn example_schema_is_current() {
    let schema = serde_json::to_string_pretty(&fentaris::config::json_schema()).unwrap() + "\n";
    check(
        vec![("config.schema.json".into(), schema.into_bytes())],
        ".fentaris.example",
    );
}

#[test]
fn code_catalogue_doc_is_current() {
    check(
        vec![(
            "codes.md".into(),
            fentaris::diagnostics::codes_markdown().into_bytes(),
        )],
        "docs",
    );
}
