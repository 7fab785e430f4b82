//! The listener: accepts connections within the limits, runs a session task per connection, and
//! stops cleanly: no new connections, sessions finish their transaction up to a deadline.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::auth::{Authenticator, NoAuth};
use super::replies::Reply;
use super::session::{self, SessionEnd};
use super::{ListenerConfig, MessageSink, ServerContext};

/// A bound listener, not yet serving.
pub struct SmtpServer<S, A = NoAuth> {
    listener: TcpListener,
    context: Arc<ServerContext<S, A>>,
}

/// A running listener.
pub struct ServerHandle {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl<S: MessageSink> SmtpServer<S, NoAuth> {
    /// Binds a listener without AUTH.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind(config: ListenerConfig, sink: Arc<S>) -> std::io::Result<Self> {
        Self::bind_with_auth(config, sink, None).await
    }
}

impl<S: MessageSink, A: Authenticator> SmtpServer<S, A> {
    /// Binds a listener that offers AUTH against `authenticator` (after STARTTLS, or on
    /// loopback).
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind_with_auth(
        config: ListenerConfig,
        sink: Arc<S>,
        authenticator: Option<Arc<A>>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.address).await?;
        Ok(Self {
            listener,
            context: Arc::new(ServerContext {
                sink,
                authenticator,
                config,
            }),
        })
    }

    /// The bound address (useful with port 0).
    ///
    /// # Errors
    /// The socket has no address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Starts serving in a task.
    pub fn spawn(self) -> ServerHandle {
        let local_addr = self
            .listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (shutdown, watcher) = watch::channel(false);
        let task = tokio::spawn(accept_loop(self.listener, self.context, watcher));
        ServerHandle {
            local_addr,
            shutdown,
            task,
        }
    }
}

impl ServerHandle {
    /// Where the server listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets sessions finish (up to the configured grace period), and waits.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Connections per peer address, released when a session ends.
#[derive(Default)]
struct PeerCounts(Mutex<HashMap<IpAddr, usize>>);

impl PeerCounts {
    fn try_add(&self, peer: IpAddr, max: usize) -> bool {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(peer).or_default();
        if *count >= max {
            return false;
        }
        *count += 1;
        true
    }

    fn remove(&self, peer: IpAddr) {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&peer) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&peer);
            }
        }
    }
}

async fn accept_loop<S: MessageSink, A: Authenticator>(
    listener: TcpListener,
    context: Arc<ServerContext<S, A>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let max = context.config.limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let peers = Arc::new(PeerCounts::default());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let Ok((mut stream, addr)) = accepted else {
            // Out of file descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let peer = addr.ip();
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let _ = stream
                    .write_all(Reply::TOO_MANY_CONNECTIONS.to_wire().as_bytes())
                    .await;
            });
            continue;
        };
        if !peers.try_add(peer, context.config.limits.max_connections_per_ip) {
            tokio::spawn(async move {
                let _ = stream
                    .write_all(Reply::TOO_MANY_CONNECTIONS.to_wire().as_bytes())
                    .await;
            });
            continue;
        }
        let context = context.clone();
        let peers = peers.clone();
        let watcher = shutdown.clone();
        tokio::spawn(async move {
            handle_connection(&context, stream, peer, watcher).await;
            peers.remove(peer);
            drop(slot);
        });
    }
    drop(listener);
    // Sessions hold one slot each: all slots back means all sessions ended.
    let grace = Duration::from_secs(context.config.limits.shutdown_grace_secs);
    let _ = tokio::time::timeout(grace, slots.acquire_many(max as u32)).await;
}

async fn handle_connection<S: MessageSink, A: Authenticator>(
    context: &ServerContext<S, A>,
    mut stream: TcpStream,
    peer: IpAddr,
    shutdown: watch::Receiver<bool>,
) {
    let session_deadline = tokio::time::Instant::now()
        + Duration::from_secs(context.config.limits.session_timeout_secs);
    let end = session::serve(
        context,
        &mut stream,
        peer,
        false,
        shutdown.clone(),
        true,
        session_deadline,
    )
    .await;
    if end != SessionEnd::StartTls {
        let _ = stream.shutdown().await;
        return;
    }
    let Some(acceptor) = context.config.tls.clone() else {
        return;
    };
    let handshake = tokio::time::timeout_at(
        session_deadline.min(
            tokio::time::Instant::now()
                + Duration::from_secs(context.config.limits.command_timeout_secs),
        ),
        acceptor.accept(stream),
    )
    .await;
    let Ok(Ok(mut tls)) = handshake else {
        tracing::debug!(%peer, "TLS handshake failed");
        return;
    };
    // RFC 3207: after TLS the client starts over with EHLO; no new banner.
    session::serve(
        context,
        &mut tls,
        peer,
        true,
        shutdown,
        false,
        session_deadline,
    )
    .await;
    let _ = tls.shutdown().await;
}
