//! `xnodectl validate FILE...`

use anyhow::Result;
use serde::Serialize;
use xnode_spec::Problem;

use crate::Outcome;
use crate::cli::{Output, ValidateArgs};
use crate::cmd;
use crate::input;

#[derive(Serialize)]
struct Report {
    file: String,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<String>,
    problems: Vec<Problem>,
}

pub fn run(args: &ValidateArgs) -> Result<Outcome> {
    let mut reports = Vec::new();
    let mut all_valid = true;
    for path in &args.files {
        let file = input::name(path);
        let report = match cmd::load(path)? {
            Ok(v) => Report {
                file,
                valid: true,
                hash: Some(v.hash.to_string()),
                problems: Vec::new(),
            },
            Err(invalid) => {
                all_valid = false;
                if matches!(args.output, Output::Text) {
                    cmd::report(path, &invalid);
                }
                Report {
                    file,
                    valid: false,
                    hash: None,
                    problems: invalid.problems,
                }
            }
        };
        reports.push(report);
    }
    match args.output {
        Output::Json => cmd::print_json(&reports)?,
        Output::Text => {
            let valid: String = reports
                .iter()
                .filter_map(|r| Some(format!("{}: valid ({})\n", r.file, r.hash.as_ref()?)))
                .collect();
            cmd::print(&valid)?;
        }
    }
    Ok(if all_valid {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}
