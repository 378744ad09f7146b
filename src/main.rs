use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use losscope::output::to_stderr;

fn main() -> ExitCode {
    // A memory-mapped input truncated during the run ends it with an error
    // line and exit code 2, not a silent bus error.
    losscope::input::exit_on_truncated_input();
    let cli = match losscope::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // Usage errors go to stderr with exit 2, whether or not stderr
            // can be written; the flag values clap quotes are the user's
            // text, escaped as every line losscope writes to stderr.
            for line in e.render().to_string().lines() {
                to_stderr(line);
            }
            return ExitCode::from(2);
        }
        Err(e) => {
            // Help and version go to stdout with exit 0, unless stdout
            // cannot take them (a reader that went away is fine).
            return match e.print().and_then(|()| io::stdout().flush()) {
                Err(err) if err.kind() != io::ErrorKind::BrokenPipe => {
                    to_stderr(&format!("losscope: error: stdout: {err}"));
                    ExitCode::from(2)
                }
                _ => ExitCode::SUCCESS,
            };
        }
    };
    match losscope::run(cli) {
        Ok(losscope::Outcome::Ok) => ExitCode::SUCCESS,
        Ok(losscope::Outcome::CheckFailed) => ExitCode::from(1),
        Err(e) => {
            // One line, whatever a library's message holds.
            let message = e.to_string().lines().map(str::trim).collect::<Vec<_>>().join(" ");
            to_stderr(&format!("losscope: error: {message}"));
            ExitCode::from(2)
        }
    }
}
