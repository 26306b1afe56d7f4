//! The open-file limit, raised at start from the soft to the hard limit: every client
//! connection, store file and audit posting file is a descriptor, and the usual soft limit
//! (1,024) is below what a loaded server holds. With it reached, `accept` fails and the
//! server stops taking connections while the ones it has keep working.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The most the soft limit is raised to when the hard limit is unlimited (Linux refuses an
/// unlimited open-file limit; its default ceiling, `fs.nr_open`, is this).
const CEILING: u64 = 1 << 20;

/// Raises the soft open-file limit to the hard one (at most `CEILING`). Returns the soft limit
/// now in force, or the error of a refused raise (the old limit stays).
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let now = getrlimit(Resource::Nofile);
    let target = now.maximum.unwrap_or(CEILING).min(CEILING);
    let current = now.current.unwrap_or(CEILING);
    if current >= target {
        return Ok(current);
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: now.maximum,
        },
    )?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let before = getrlimit(Resource::Nofile);
        let hard = before.maximum.unwrap_or(CEILING).min(CEILING);
        // Lowering the soft limit is always allowed; the raise must bring it back up.
        let low = hard.min(256);
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(low),
                maximum: before.maximum,
            },
        )
        .unwrap();
        assert_eq!(raise_open_file_limit().unwrap(), hard);
        assert_eq!(getrlimit(Resource::Nofile).current, Some(hard));
        // Already there: nothing to do, same answer.
        assert_eq!(raise_open_file_limit().unwrap(), hard);
    }
}
