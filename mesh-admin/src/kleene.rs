//! Three-valued (Kleene) AND and OR over `Option<bool>`, as L4 (agent) and
//! L7 (waypoint) authorization evaluate a policy: `Some(true)` and
//! `Some(false)` are conditions known to hold or fail, `None` is a
//! condition that cannot be told (a field the proxy does not understand, a
//! source it cannot verify). A known failure still rules a match out and a
//! known success still rules one in; anything else stays unknown, so the
//! caller can fail closed.

/// Kleene AND: `Some(false)` if any value is false (false wins), else
/// `None` if any is unknown, else `Some(true)` (also for no values).
pub fn all(values: impl IntoIterator<Item = Option<bool>>) -> Option<bool> {
    let mut unknown = false;
    for v in values {
        match v {
            Some(false) => return Some(false),
            None => unknown = true,
            Some(true) => {}
        }
    }
    (!unknown).then_some(true)
}

/// Kleene OR: `Some(true)` if any value is true (true wins), else `None`
/// if any is unknown, else `Some(false)` (also for no values).
pub fn any(values: impl IntoIterator<Item = Option<bool>>) -> Option<bool> {
    let mut unknown = false;
    for v in values {
        match v {
            Some(true) => return Some(true),
            None => unknown = true,
            Some(false) => {}
        }
    }
    if unknown {
        None
    } else {
        Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::{all, any};

    const T: Option<bool> = Some(true);
    const F: Option<bool> = Some(false);
    const U: Option<bool> = None;

    #[test]
    fn and_false_wins_then_unknown() {
        assert_eq!(all([]), T);
        assert_eq!(all([T, T]), T);
        assert_eq!(all([T, F]), F);
        assert_eq!(all([U, F]), F);
        assert_eq!(all([F, U]), F);
        assert_eq!(all([T, U]), U);
        assert_eq!(all([U]), U);
    }

    #[test]
    fn or_true_wins_then_unknown() {
        assert_eq!(any([]), F);
        assert_eq!(any([F, F]), F);
        assert_eq!(any([F, T]), T);
        assert_eq!(any([U, T]), T);
        assert_eq!(any([T, U]), T);
        assert_eq!(any([F, U]), U);
        assert_eq!(any([U]), U);
    }

    #[test]
    fn stops_at_the_deciding_value() {
        let mut seen = 0;
        let and = all([F, T, T].into_iter().inspect(|_| seen += 1));
        assert_eq!((and, seen), (F, 1));
        let mut seen = 0;
        let or = any([U, T, F].into_iter().inspect(|_| seen += 1));
        assert_eq!((or, seen), (T, 2));
    }
}
