//! `cargo run -p pulumi-program -- [--stack NAME] [DIR]`: the offline check
//! of `DIR/Pulumi.yaml` (default: the current directory) for one stack
//! (default `dev`), one finding per line; exits non-zero when there is any.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut stack = String::from("dev");
    let mut dir = PathBuf::from(".");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--stack" => match args.next() {
                Some(name) => stack = name,
                None => return usage("--stack needs a name"),
            },
            "-h" | "--help" => return usage(""),
            flag if flag.starts_with('-') => return usage(&format!("unknown option {flag}")),
            path => dir = PathBuf::from(path),
        }
    }
    let findings = pulumi_program::check::check(&dir, &stack);
    if findings.is_empty() {
        println!(
            "{}: Pulumi.yaml + Pulumi.{stack}.yaml pass the offline check",
            dir.display()
        );
        return ExitCode::SUCCESS;
    }
    for finding in &findings {
        println!("{finding}");
    }
    eprintln!("{} finding(s)", findings.len());
    ExitCode::FAILURE
}

fn usage(problem: &str) -> ExitCode {
    if !problem.is_empty() {
        eprintln!("{problem}");
    }
    eprintln!("usage: pulumi-program [--stack NAME] [DIR]");
    if problem.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
