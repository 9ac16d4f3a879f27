//! What every daemon's command line shares beyond clap: environment
//! variables renamed with their flag keep working under the old name.
//!
//! clap reads one environment variable per argument, so an old name is
//! turned into the argument's default when the new one is unset: the
//! command line and the new name still win.
use clap::{Command, FromArgMatches};

/// Parses the process's command line into `T`, reading each `(old, new)`
/// environment variable under its old name when the new one is unset.
/// Exits with clap's message on an error, as `Parser::parse` does.
pub fn parse<T: clap::CommandFactory + FromArgMatches>(renamed_env: &[(&str, &str)]) -> T {
    let found = renamed_env
        .iter()
        .filter(|(_, new)| std::env::var_os(new).is_none())
        .filter_map(|(old, new)| Some((*new, std::env::var(old).ok()?)))
        .collect::<Vec<_>>();
    let matches = with_env_defaults(T::command(), &found).get_matches();
    T::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
}

/// `command` (and its subcommands) with the argument read from
/// environment variable `env` defaulting to `value`, for each pair
/// (an old name holding text that is not UTF-8 is ignored).
pub fn with_env_defaults(mut command: Command, values: &[(&str, String)]) -> Command {
    if values.is_empty() {
        return command;
    }
    command = command.mut_args(|arg| {
        let value = values
            .iter()
            .find(|(env, _)| arg.get_env().is_some_and(|e| e == *env));
        match value {
            Some((_, value)) => arg.default_value(value.clone()),
            None => arg,
        }
    });
    let names: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_string())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, |sub| with_env_defaults(sub, values));
    }
    command
}

#[cfg(test)]
mod tests {
    use clap::{Args, Parser, Subcommand};

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[arg(long, env = "T_NEW_TOP")]
        top: Option<String>,
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(Debug, Subcommand)]
    enum Sub {
        Run(RunArgs),
    }

    #[derive(Debug, Args)]
    struct RunArgs {
        #[arg(long, env = "T_NEW_ADDR", alias = "old-addr")]
        addr: Option<String>,
    }

    fn parse(args: &[&str], values: &[(&str, String)]) -> Cli {
        let matches = with_env_defaults(Cli::command(), values)
            .try_get_matches_from(args)
            .unwrap();
        Cli::from_arg_matches(&matches).unwrap()
    }

    use clap::CommandFactory as _;

    #[test]
    fn an_old_environment_name_is_a_default_the_command_line_overrides() {
        let values = [
            ("T_NEW_ADDR", String::from("from-old-env")),
            ("T_NEW_TOP", String::from("top")),
        ];
        let cli = parse(&["t", "run"], &values);
        let Sub::Run(run) = cli.command;
        assert_eq!(run.addr.as_deref(), Some("from-old-env"));
        assert_eq!(cli.top.as_deref(), Some("top"));
        let cli = parse(&["t", "run", "--old-addr", "flag"], &values);
        let Sub::Run(run) = cli.command;
        assert_eq!(run.addr.as_deref(), Some("flag"));
        let cli = parse(&["t", "run"], &[]);
        let Sub::Run(run) = cli.command;
        assert_eq!(run.addr, None);
    }
}
