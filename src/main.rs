use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A memory-mapped input truncated during the run ends it with an error
    // line and exit code 2, not a silent bus error.
    losscope::input::exit_on_truncated_input();
    let cli = match losscope::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with exit 0; usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match losscope::run(cli) {
        Ok(losscope::Outcome::Ok) => ExitCode::SUCCESS,
        Ok(losscope::Outcome::CheckFailed) => ExitCode::from(1),
        Err(e) => {
            // One line, whatever a library's message holds.
            let message = e.to_string().lines().map(str::trim).collect::<Vec<_>>().join(" ");
            eprintln!("losscope: error: {message}");
            ExitCode::from(2)
        }
    }
}
