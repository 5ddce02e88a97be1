//! A TCP proxy on loopback in front of the shared PostgreSQL, to make the storage hang or go
//! away in the middle of a test without touching the real server (other tests use it).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards bytes both ways.
    Forward,
    /// A partition: open connections stay open but nothing is forwarded; new connections are
    /// accepted and never answered.
    Hang,
    /// The server is gone: open connections are closed and new ones refused.
    Down,
}

/// The proxy; it stops with the test's runtime.
#[derive(Debug)]
pub struct PgProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl PgProxy {
    /// A proxy on an ephemeral loopback port in front of `upstream` (`host:port`).
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, rx) = watch::channel(Mode::Forward);
        tokio::spawn(accept_loop(listener, addr, upstream, rx));
        PgProxy { addr, mode }
    }

    /// A `postgres://` URL for `database` through the proxy.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@{}/{database}", self.addr)
    }

    /// Switches the mode; takes effect on open connections at once.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn accept_loop(listener: TcpListener, addr: SocketAddr, upstream: SocketAddr, mut rx: watch::Receiver<Mode>) {
    let mut listener = Some(listener);
    let for_connections = rx.clone();
    loop {
        match &listener {
            Some(l) => tokio::select! {
                accepted = l.accept() => {
                    if let Ok((client, _)) = accepted {
                        tokio::spawn(serve(client, upstream, for_connections.clone()));
                    }
                }
                _ = rx.wait_for(|m| *m == Mode::Down) => listener = None,
            },
            None => {
                if rx.wait_for(|m| *m != Mode::Down).await.is_err() {
                    return;
                }
                listener = Some(TcpListener::bind(addr).await.unwrap());
            }
        }
    }
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, mut rx: watch::Receiver<Mode>) {
    if *rx.borrow() != Mode::Forward {
        // Accepted during a partition: hold the connection, answer nothing.
        drop(rx.wait_for(|m| *m != Mode::Hang).await);
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
    let partitioned = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        _ = async { drop(rx.wait_for(|m| *m != Mode::Forward).await) } => true,
    };
    if partitioned {
        // Both sockets stay open (they live in this scope) while nothing is copied; once the
        // partition ends the connection is dropped, as a long partition would.
        drop(rx.wait_for(|m| *m != Mode::Hang).await);
    }
}
