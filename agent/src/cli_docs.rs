//! Shell completions and man pages from a binary's own clap definition (users and packaging).
//!
//! Every tocsin binary flattens [`DocsCommand`] into its subcommands, so `<binary>
//! completions bash` and the hidden `<binary> man --out DIR` (used by `packaging/build`)
//! always describe the binary that ships.

use std::path::PathBuf;
use std::process::ExitCode;

/// The `completions` and `man` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DocsCommand {
    /// Print a shell completion script, e.g. `completions bash > /etc/bash_completion.d/<binary>`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (one for the binary, one per subcommand) into DIR.
    #[command(hide = true)]
    Man {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

impl DocsCommand {
    /// Run it for the binary whose full definition is `cmd` (`Cli::command()`).
    pub fn run(&self, mut cmd: clap::Command) -> ExitCode {
        match self {
            DocsCommand::Completions { shell } => {
                let name = cmd.get_name().to_string();
                clap_complete::generate(*shell, &mut cmd, name, &mut std::io::stdout());
                ExitCode::SUCCESS
            }
            DocsCommand::Man { out } => match clap_mangen::generate_to(cmd, out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot write man pages into {}: {e}", out.display());
                    ExitCode::FAILURE
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser, Subcommand};

    #[derive(Debug, Parser)]
    #[command(name = "demo", version, about = "demo binary")]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Debug, Subcommand)]
    enum Command {
        /// Do the work.
        Run,
        #[command(flatten)]
        Docs(DocsCommand),
    }

    #[test]
    fn man_pages_for_the_binary_and_each_visible_subcommand() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cli = Cli::try_parse_from(["demo", "man", "--out", &dir.path().display().to_string()])
            .expect("parses");
        let Command::Docs(docs) = cli.command else {
            panic!("man is a docs command");
        };
        assert_eq!(docs.run(Cli::command()), ExitCode::SUCCESS);
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["demo-completions.1", "demo-run.1", "demo.1"]);
        let page = std::fs::read_to_string(dir.path().join("demo.1")).expect("page");
        assert!(page.contains("demo binary"), "{page}");
        assert!(
            !page.contains("demo\\-man"),
            "the hidden man subcommand is not listed"
        );
    }

    #[test]
    fn man_into_a_missing_folder_fails() {
        let docs = DocsCommand::Man {
            out: PathBuf::from("/nonexistent/tocsin-man"),
        };
        assert_eq!(docs.run(Cli::command()), ExitCode::FAILURE);
    }
}
