//! The corpus of bad specs in `tests/specs/bad`: each must be rejected with a problem
//! at the path its manifest line names, with a reason containing the manifest's words.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::path::PathBuf;

#[test]
fn every_bad_spec_fails_naming_its_path() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/specs/bad");
    let manifest = std::fs::read_to_string(dir.join("EXPECTED")).unwrap();
    let mut listed = Vec::new();
    let mut failures = Vec::new();
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let [file, path, reason] = line.split('\t').collect::<Vec<_>>()[..] else {
            panic!("bad manifest line: {line:?}");
        };
        listed.push(file.to_owned());
        let bytes = std::fs::read(dir.join(file)).unwrap();
        match xnode_spec::parse(&bytes) {
            Ok(_) => failures.push(format!("{file}: accepted")),
            Err(invalid)
                if !invalid
                    .problems
                    .iter()
                    .any(|p| p.path == path && p.reason.contains(reason)) =>
            {
                failures.push(format!(
                    "{file}: wanted {path}: …{reason}…, got {:?}",
                    invalid.problems
                ));
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(listed.len() >= 30, "the corpus has at least 30 bad specs");
    // Every file in the folder is in the manifest, so none is silently skipped.
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    listed.sort();
    assert_eq!(on_disk, listed);
}
