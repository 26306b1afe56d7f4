//! Strict command-line options for the documented tools (`vault-bench`, `vault-crash`,
//! `vault-soak`): every argument must be a known option, with a value where it takes one and a
//! number where it wants one; `--help` prints the usage. Anything else is an error naming the
//! argument, so a typo never starts a 25-minute run on defaults.

use std::collections::HashMap;

/// One accepted option.
#[derive(Debug, Clone, Copy)]
pub enum Opt {
    /// `--name` alone.
    Flag(&'static str),
    /// `--name VALUE`.
    Text(&'static str),
    /// `--name N` (an unsigned integer).
    Number(&'static str),
}

impl Opt {
    fn name(self) -> &'static str {
        match self {
            Self::Flag(n) | Self::Text(n) | Self::Number(n) => n,
        }
    }
}

/// Why the arguments were not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum ArgsError {
    /// `--help` or `-h`.
    Help,
    /// The message to print (names the argument).
    Bad(String),
}

/// Parsed options.
#[derive(Debug, Default)]
pub struct Args {
    given: HashMap<&'static str, Option<String>>,
}

impl Args {
    /// Parses `args` (without the program name) against `opts`.
    pub fn parse_from(
        args: impl IntoIterator<Item = String>,
        opts: &[Opt],
    ) -> Result<Self, ArgsError> {
        let mut given = HashMap::new();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            if a == "--help" || a == "-h" {
                return Err(ArgsError::Help);
            }
            let Some(opt) = opts.iter().find(|o| o.name() == a) else {
                return Err(ArgsError::Bad(format!("unknown argument `{a}`")));
            };
            let value = match opt {
                Opt::Flag(_) => None,
                Opt::Text(n) | Opt::Number(n) => {
                    let v = it
                        .next()
                        .filter(|v| !v.starts_with("--"))
                        .ok_or_else(|| ArgsError::Bad(format!("`{n}` needs a value")))?;
                    if matches!(opt, Opt::Number(_)) && v.parse::<u64>().is_err() {
                        return Err(ArgsError::Bad(format!(
                            "`{n}` needs a whole number, not `{v}`"
                        )));
                    }
                    Some(v)
                }
            };
            if given.insert(opt.name(), value).is_some() {
                return Err(ArgsError::Bad(format!("`{}` given twice", opt.name())));
            }
        }
        Ok(Self { given })
    }

    /// Parses the process's arguments; prints `usage` and exits 0 on `--help`, or the
    /// error and `usage` on stderr and exits 2.
    #[expect(clippy::print_stdout, reason = "the tools' usage goes to the terminal")]
    pub fn from_env(opts: &[Opt], usage: &str) -> Self {
        match Self::parse_from(std::env::args().skip(1), opts) {
            Ok(a) => a,
            Err(ArgsError::Help) => {
                println!("{usage}");
                std::process::exit(0);
            }
            Err(ArgsError::Bad(why)) => refuse(&why, usage),
        }
    }

    /// Whether a flag was given.
    pub fn flag(&self, name: &str) -> bool {
        self.given.contains_key(name)
    }

    /// A text option's value.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.given.get(name).and_then(|v| v.as_deref())
    }

    /// A number option's value (checked when parsed), or `default`.
    pub fn number(&self, name: &str, default: u64) -> u64 {
        self.text(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}

/// Prints `why` and `usage` on stderr and exits 2: for checks a tool makes beyond `Opt`.
#[expect(clippy::print_stderr, reason = "argument errors go to the terminal")]
pub fn refuse(why: &str, usage: &str) -> ! {
    eprintln!("error: {why}\n\n{usage}");
    std::process::exit(2);
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: &[Opt] = &[
        Opt::Flag("--quick"),
        Opt::Text("--out"),
        Opt::Number("--rounds"),
    ];

    fn parse(args: &[&str]) -> Result<Args, ArgsError> {
        Args::parse_from(args.iter().map(|a| (*a).to_owned()), OPTS)
    }

    #[test]
    fn known_options_parse_and_defaults_fill_the_rest() {
        let a = parse(&["--out", "dir", "--quick", "--rounds", "5"]).unwrap();
        assert!(a.flag("--quick"));
        assert_eq!(a.text("--out"), Some("dir"));
        assert_eq!(a.number("--rounds", 3), 5);
        let a = parse(&[]).unwrap();
        assert!(!a.flag("--quick"));
        assert_eq!((a.text("--out"), a.number("--rounds", 3)), (None, 3));
    }

    #[test]
    fn anything_else_is_refused_with_the_argument_named() {
        let bad = |args: &[&str]| match parse(args) {
            Err(ArgsError::Bad(m)) => m,
            other => panic!("{args:?} gave {other:?}"),
        };
        assert!(bad(&["--qiuck"]).contains("`--qiuck`"));
        assert!(bad(&["dir"]).contains("`dir`"));
        assert!(bad(&["--out"]).contains("`--out` needs a value"));
        assert!(bad(&["--out", "--quick"]).contains("`--out` needs a value"));
        assert!(bad(&["--rounds", "three"]).contains("`three`"));
        assert!(bad(&["--rounds", "-1"]).contains("`-1`"));
        assert!(bad(&["--quick", "--quick"]).contains("twice"));
        assert_eq!(
            parse(&["--out", "x", "--help"]).unwrap_err(),
            ArgsError::Help
        );
        assert_eq!(parse(&["-h"]).unwrap_err(), ArgsError::Help);
    }
}
