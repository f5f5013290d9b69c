//! `sipwatch generate man|completion`: the manual pages and the shell completions, written from the
//! clap definitions of `main.rs` so that `--help`, the man pages and the completions never disagree.
//!
//! The .deb ships what this writes (see `.ci/build-deb`); a `cargo install` user runs it by hand.
//! This file only renders; the words live on the clap definitions (`about`, `long_about`,
//! `after_long_help`).

use std::path::{Path, PathBuf};

use anyhow::Context;

/// What `sipwatch generate` writes.
#[derive(clap::Subcommand, Debug)]
pub enum GenerateCommand {
    /// Write the man pages (sipwatch.1, sipwatch-probe.1, ...) into DIR.
    Man {
        /// The directory to write into (created if missing), e.g. /usr/local/share/man/man1.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Print the completion script for SHELL on stdout,
    /// e.g. `sipwatch generate completion bash > /etc/bash_completion.d/sipwatch`.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

/// Runs `sipwatch generate ...` with the full command definition `cmd`.
pub fn run(cmd: clap::Command, what: &GenerateCommand) -> anyhow::Result<()> {
    match what {
        GenerateCommand::Man { dir } => {
            let written = write_man_pages(cmd, dir)?;
            for path in written {
                println!("{}", path.display());
            }
            Ok(())
        }
        GenerateCommand::Completion { shell } => {
            let mut cmd = cmd;
            clap_complete::generate(*shell, &mut cmd, "sipwatch", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Writes one man page per command and subcommand (`sipwatch.1`, `sipwatch-probe.1`,
/// `sipwatch-leak-analyze.1`, ...) into `dir`; returns the files written.
pub fn write_man_pages(cmd: clap::Command, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the man page directory {}", dir.display()))?;
    let mut cmd = cmd;
    cmd.build();
    let mut written = Vec::new();
    write_one(&cmd, "sipwatch", dir, &mut written)?;
    Ok(written)
}

fn write_one(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let page = cmd
        .clone()
        .name(name.to_string())
        .bin_name(name.replace('-', " "));
    let man = clap_mangen::Man::new(page)
        .section("1")
        .manual("sipwatch manual")
        .source(format!("sipwatch {}", env!("CARGO_PKG_VERSION")));
    let mut text = Vec::new();
    man.render(&mut text)
        .with_context(|| format!("cannot render the man page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        write_one(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
