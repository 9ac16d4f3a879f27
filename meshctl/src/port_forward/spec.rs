//! The forwards a user asks for, in kubectl's form: `LOCAL:REMOTE`
//! (`8080:80`), `PORT` (the same port both sides) or `:REMOTE` (a free
//! local port, printed once bound).

/// One forward: a local port (0: any free one) to a port in the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    pub local: u16,
    pub remote: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("port mapping {text:?}: {which} port {port:?} is not a number from 1 to 65535")]
    BadPort {
        text: String,
        which: &'static str,
        port: String,
    },
}

impl PortSpec {
    /// Parses `[LOCAL:]REMOTE`; an empty LOCAL (`:80`) means any free port.
    pub fn parse(text: &str) -> Result<PortSpec, SpecError> {
        let port = |which: &'static str, p: &str| -> Result<u16, SpecError> {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(SpecError::BadPort {
                    text: text.to_string(),
                    which,
                    port: p.to_string(),
                }),
            }
        };
        match text.split_once(':') {
            None => {
                let p = port("remote", text)?;
                Ok(PortSpec {
                    local: p,
                    remote: p,
                })
            }
            Some(("", remote)) => Ok(PortSpec {
                local: 0,
                remote: port("remote", remote)?,
            }),
            Some((local, remote)) => Ok(PortSpec {
                local: port("local", local)?,
                remote: port("remote", remote)?,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_forms() {
        let p = |t| PortSpec::parse(t).unwrap();
        assert_eq!(
            p("8080:80"),
            PortSpec {
                local: 8080,
                remote: 80
            }
        );
        assert_eq!(
            p("443"),
            PortSpec {
                local: 443,
                remote: 443
            }
        );
        assert_eq!(
            p(":80"),
            PortSpec {
                local: 0,
                remote: 80
            }
        );
    }

    #[test]
    fn bad_ports_name_the_side() {
        for (text, which) in [
            ("8080:", "remote"),
            ("x:80", "local"),
            ("8080:0", "remote"),
            ("70000", "remote"),
            ("1:2:3", "remote"),
        ] {
            let err = PortSpec::parse(text).unwrap_err();
            let SpecError::BadPort { which: w, .. } = &err;
            assert_eq!(*w, which, "{text}: {err}");
            assert!(err.to_string().contains(text), "{err}");
        }
    }
}
