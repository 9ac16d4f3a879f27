//! One HTTP/1.1 request to the node agent over its Unix socket, on a
//! current-thread runtime (the plugin is a short-lived process).
use std::{path::Path, time::Duration};

use http_body_util::{BodyExt as _, Full};
use hyper::{body::Bytes, Request};
use hyper_util::rt::TokioIo;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the agent socket {path}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("HTTP exchange with the agent on {path} failed")]
    Http { path: String, source: hyper::Error },
    #[error("the agent on {path} did not answer within {timeout:?}")]
    Timeout { path: String, timeout: Duration },
    #[error("cannot start the plugin's runtime")]
    Runtime(#[source] std::io::Error),
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// `POST <uri>` with a JSON body to the agent at `socket`.
pub fn post(
    socket: &Path,
    uri: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ClientError::Runtime)?;
    let path = socket.display().to_string();
    rt.block_on(async {
        match tokio::time::timeout(timeout, exchange(socket, uri, body)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                path: path.clone(),
                timeout,
            }),
        }
    })
}

async fn exchange(
    socket: &Path,
    uri: &str,
    body: &serde_json::Value,
) -> Result<Reply, ClientError> {
    let path = socket.display().to_string();
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            path: path.clone(),
            source,
        })?;
    let http = |source| ClientError::Http {
        path: path.clone(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    tokio::spawn(conn);
    let request = Request::post(uri)
        .header("host", "mesh-agent")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static request parts are valid");
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(http)?
        .to_bytes();
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}
