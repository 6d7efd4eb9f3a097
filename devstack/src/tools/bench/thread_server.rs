//! A loopback server on a thread and a runtime of its own, for the bench's
//! peers (the echo floor, the @connections stand-in): like any real server
//! it is woken across threads, never in the clients' own runtime. Dropping
//! it stops the server and joins its thread.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context as _;
use tokio::sync::oneshot;

pub(super) struct ThreadServer {
    pub(super) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ThreadServer {
    /// Listens on 127.0.0.1 (a free port) and runs `serve` on a thread named
    /// `name`; `serve` gets the listener and a signal that resolves when the
    /// server is dropped.
    pub(super) fn start<F, Fut>(name: &str, serve: F) -> anyhow::Result<ThreadServer>
    where
        F: FnOnce(tokio::net::TcpListener, oneshot::Receiver<()>) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .with_context(|| format!("binding the {name}"))?;
        listener
            .set_nonblocking(true)
            .with_context(|| format!("making the {name}'s listener non-blocking"))?;
        let addr = listener
            .local_addr()
            .with_context(|| format!("reading the {name}'s address"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .with_context(|| format!("building the {name}'s runtime"))?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(name.replace(' ', "-"))
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    serve(listener, stopped).await;
                });
            })
            .with_context(|| format!("starting the {name}'s thread"))?;
        Ok(ThreadServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl ThreadServer {
    /// [`ThreadServer::start`] serving `app` with axum until dropped.
    pub(super) fn axum(name: &str, app: axum::Router) -> anyhow::Result<ThreadServer> {
        ThreadServer::start(name, |listener, stopped| async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        })
    }
}

impl Drop for ThreadServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
