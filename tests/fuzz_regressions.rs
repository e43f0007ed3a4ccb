//! Every fuzz seed and every input that once broke a parser, run through
//! the same checks as the fuzz targets (`fuzz/src/lib.rs`), on stable:
//! `fuzz/seeds/<target>/*` and `fuzz/regressions/<target>/*`.

use std::fs;
use std::path::Path;

#[path = "../fuzz/src/lib.rs"]
mod fuzz_checks;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for kind in ["seeds", "regressions"] {
        let Ok(dir) = fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        for entry in dir {
            let path = entry.expect("a readable fuzz folder").path();
            if path.is_file() {
                let data = fs::read(&path).expect("a readable fuzz input");
                out.push((path.display().to_string(), data));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_seed_and_past_crash_passes_its_parsers_checks() {
    let mut failed = Vec::new();
    let mut seen = 0;
    for &(target, check) in fuzz_checks::TARGETS {
        let inputs = inputs(target);
        assert!(
            inputs.iter().any(|(p, _)| p.contains("/seeds/")),
            "fuzz target {target} has no seeds in fuzz/seeds/{target}"
        );
        for (path, data) in inputs {
            seen += 1;
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failed.push(path);
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {seen} inputs fail: {failed:#?}",
        failed.len()
    );
}

#[test]
fn every_fuzz_folder_names_a_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for kind in ["seeds", "regressions"] {
        let Ok(dir) = fs::read_dir(root.join(kind)) else {
            continue;
        };
        for entry in dir {
            let entry = entry.expect("a readable fuzz folder");
            if !entry.path().is_dir() {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            assert!(
                fuzz_checks::TARGETS.iter().any(|(t, _)| *t == name),
                "fuzz/{kind}/{name} is no fuzz target's folder"
            );
        }
    }
}
