//! The connection to the Kubernetes API server: the `kube::Client` the
//! Kubernetes source and the TokenReviewer share, from `--kubeconfig` when
//! given, else `kube::Config::infer` (in-cluster service account, then
//! `$KUBECONFIG` / `~/.kube/config`). Plain `http://` servers work (the
//! test fake API server is one).
use std::path::{Path, PathBuf};

use kube::{
    config::{KubeConfigOptions, Kubeconfig},
    Client, Config,
};

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum KubeClientError {
    #[error("kubeconfig {}: {error}", path.display())]
    Kubeconfig {
        path: PathBuf,
        error: kube::config::KubeconfigError,
    },
    #[error(
        "no Kubernetes configuration found (in-cluster or ~/.kube/config; set --kubeconfig): {0}"
    )]
    Infer(#[from] kube::config::InferConfigError),
    #[error("building the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A client from `kubeconfig`, or inferred when `None`.
pub async fn kube_client(kubeconfig: Option<&Path>) -> Result<Client, KubeClientError> {
    let config = match kubeconfig {
        Some(path) => {
            let wrap = |error| KubeClientError::Kubeconfig {
                path: path.to_path_buf(),
                error,
            };
            let file = Kubeconfig::read_from(path).map_err(wrap)?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(wrap)?
        }
        None => Config::infer().await?,
    };
    tracing::info!(server = %config.cluster_url, "Kubernetes API server");
    Ok(Client::try_from(config)?)
}
