//! The open-file limit: every client is a socket, so a server (or a load
//! generator) with thousands of clients needs the hard limit, not the soft one.

use rustix::process::{Resource, getrlimit, setrlimit};

/// Raises this process's open-file limit to its hard maximum; returns the
/// limit now in force.
pub fn raise_fd_limit() -> u64 {
    let lim = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (lim.current, lim.maximum)
        && cur < max
    {
        let raised = rustix::process::Rlimit {
            current: Some(max),
            maximum: Some(max),
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return max;
        }
    }
    fd_limit()
}

/// The open-file limit in force (`u64::MAX`: unlimited).
pub fn fd_limit() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets the soft limit just below the hard one first (never below what
    /// the tests running beside this one use), so that raising is seen.
    #[test]
    fn raises_the_soft_limit_to_the_hard_one() {
        let max = getrlimit(Resource::Nofile)
            .maximum
            .expect("a finite hard limit");
        let below = rustix::process::Rlimit {
            current: Some(max - 1),
            maximum: Some(max),
        };
        setrlimit(Resource::Nofile, below).expect("set the soft limit");
        assert_eq!(fd_limit(), max - 1);
        assert_eq!(raise_fd_limit(), max);
        assert_eq!(fd_limit(), max, "the limit in force is the hard one");
    }
}
