//! `meshctl port-forward <pod> [LOCAL:]REMOTE...`: a pod's ports on this
//! host's loopback, as `kubectl port-forward` gives them.
//!
//! A pod is a network namespace under `/run/netns` (`ip netns list`).
//! Every forward listens on `--address` (127.0.0.1 by default) in the
//! namespace meshctl runs in, and carries each connection as plain TCP to
//! `127.0.0.1:REMOTE` inside the pod's namespace — the pod's own loopback,
//! as kubectl does, so a server bound to `0.0.0.0` or to loopback answers.
//! Each remote port is tried once before anything listens, so a missing
//! namespace or a port nothing listens on is an error at start, naming
//! the pod and the port. Then one line per forward is printed
//! (`Forwarding from 127.0.0.1:8080 -> 80`) and the forwards serve until
//! Ctrl-C. Connections are capped and closed when idle ([`forward`]).
pub mod forward;
pub mod idle;
pub mod spec;

use std::{
    io::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context as _;
use tokio::{net::TcpListener, sync::Semaphore};

use crate::{
    netns::{NetnsDialer, NetnsError},
    target::TargetError,
};
pub use forward::Limits;
pub use spec::PortSpec;

/// What `meshctl port-forward` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The pod: a network namespace name, optionally written `pod/<name>`.
    pub pod: String,
    pub ports: Vec<PortSpec>,
    /// Local addresses to listen on.
    pub addresses: Vec<IpAddr>,
    /// Listening on a non-loopback address is allowed.
    pub allow_non_loopback: bool,
    pub limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum PortForwardError {
    #[error("{pod:?} is no pod name: give the pod's network namespace name (or pod/<name>)")]
    BadPodName { pod: String },
    #[error(
        "pod {pod}: there is no network namespace {} (`ip netns list` shows the pods)",
        path.display()
    )]
    NoPod { pod: String, path: PathBuf },
    #[error("pod {pod}")]
    Netns { pod: String, source: NetnsError },
    #[error("pod {pod}: nothing accepts connections on port {port} (127.0.0.1:{port} in its network namespace)")]
    NothingListening {
        pod: String,
        port: u16,
        source: std::io::Error,
    },
    #[error(
        "--address {address} is not a loopback address: the forward would expose pod {pod} \
         to other hosts; pass --allow-non-loopback to mean it"
    )]
    NotLoopback { address: IpAddr, pod: String },
    #[error(
        "cannot listen on {addr}{hint}",
        hint = if source.kind() == std::io::ErrorKind::AddrInUse {
            " (the port is in use: stop what listens there, or pick another local port, \
             e.g. 18080:80, or :80 for any free one)"
        } else {
            ""
        }
    )]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The namespace name in `pod` (`name` or `pod/name`).
fn pod_name(pod: &str) -> Result<&str, PortForwardError> {
    let name = pod.strip_prefix("pod/").unwrap_or(pod);
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(PortForwardError::BadPodName {
            pod: pod.to_string(),
        });
    }
    Ok(name)
}

/// Checks the request and enters nothing: the dialer's own thread enters
/// the pod's namespace, so this process listens where it runs.
pub fn dialer(options: &Options, netns_dir: &Path) -> Result<NetnsDialer, PortForwardError> {
    let pod = pod_name(&options.pod)?;
    if let Some(&address) = options
        .addresses
        .iter()
        .find(|a| !a.is_loopback() && !options.allow_non_loopback)
    {
        return Err(PortForwardError::NotLoopback {
            address,
            pod: pod.to_string(),
        });
    }
    NetnsDialer::new(pod, netns_dir).map_err(|source| match source {
        NetnsError::Target(TargetError::Open { path, source })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            PortForwardError::NoPod {
                pod: pod.to_string(),
                path,
            }
        }
        source => PortForwardError::Netns {
            pod: pod.to_string(),
            source,
        },
    })
}

/// Tries each remote port once, then listens on every address and port;
/// returns the listeners with their remote ports.
pub async fn listen(
    options: &Options,
    dialer: &NetnsDialer,
) -> Result<Vec<(TcpListener, u16)>, PortForwardError> {
    for spec in &options.ports {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, spec.remote));
        if let Err(e) = dialer.connect(addr, options.limits.connect).await {
            return Err(match e {
                NetnsError::Connect { source, .. } => PortForwardError::NothingListening {
                    pod: dialer.name().to_string(),
                    port: spec.remote,
                    source,
                },
                source => PortForwardError::Netns {
                    pod: dialer.name().to_string(),
                    source,
                },
            });
        }
    }
    let mut listeners = vec![];
    for spec in &options.ports {
        for &ip in &options.addresses {
            let addr = SocketAddr::new(ip, spec.local);
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| PortForwardError::Listen { addr, source })?;
            listeners.push((listener, spec.remote));
        }
    }
    Ok(listeners)
}

/// Runs the command: forwards until Ctrl-C.
pub fn run(options: &Options, netns_dir: &Path) -> anyhow::Result<String> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "meshctl=info".into()),
        )
        .try_init();
    let dialer = Arc::new(dialer(options, netns_dir)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listeners = listen(options, &dialer).await?;
        let slots = Arc::new(Semaphore::new(options.limits.max_connections));
        let mut out = std::io::stdout();
        let mut tasks = tokio::task::JoinSet::new();
        for (listener, remote) in listeners {
            let local = listener.local_addr().context("the listener's address")?;
            let _ = writeln!(out, "Forwarding from {local} -> {remote}");
            tracing::info!(%local, pod = dialer.name(), remote, "forwarding");
            let remote = forward::Remote {
                dialer: Arc::clone(&dialer),
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, remote)),
            };
            tasks.spawn(forward::serve(
                listener,
                remote,
                Arc::clone(&slots),
                options.limits,
            ));
        }
        // A caller may wait for the lines.
        let _ = out.flush();
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        tracing::info!("Ctrl-C: port-forward stopped");
        tasks.abort_all();
        Ok(String::new())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pod: &str) -> Options {
        Options {
            pod: pod.into(),
            ports: vec![PortSpec::parse("8080:80").unwrap()],
            addresses: vec![IpAddr::from(Ipv4Addr::LOCALHOST)],
            allow_non_loopback: false,
            limits: Limits::default(),
        }
    }

    #[test]
    fn a_missing_pod_is_named_with_its_namespace_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = dialer(&options("pod/gone"), dir.path()).unwrap_err();
        assert!(matches!(err, PortForwardError::NoPod { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "pod gone: there is no network namespace {}/gone (`ip netns list` shows the pods)",
                dir.path().display()
            )
        );
        for bad in ["a/b", "pod/", ".."] {
            let err = dialer(&options(bad), dir.path()).unwrap_err();
            assert!(
                matches!(err, PortForwardError::BadPodName { .. }),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn a_non_loopback_address_needs_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = options("gone");
        o.addresses.push("0.0.0.0".parse().unwrap());
        let err = dialer(&o, dir.path()).unwrap_err();
        assert!(
            matches!(err, PortForwardError::NotLoopback { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("--allow-non-loopback"), "{err}");
        o.allow_non_loopback = true;
        // Past the address check, on to the (missing) namespace.
        let err = dialer(&o, dir.path()).unwrap_err();
        assert!(matches!(err, PortForwardError::NoPod { .. }), "{err:?}");
    }
}
