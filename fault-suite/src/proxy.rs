//! A TCP proxy the suite controls, to partition the server from Redis while Redis keeps its data.
//!
//! During a partition, bytes in both directions are dropped (as a network drops packets); when the
//! partition heals, every connection opened before is closed without delivering what it held, as
//! TCP resets do after a long partition. Commands sent during the partition are thus never
//! executed, which CLIENT PAUSE cannot show (paused commands run when the pause ends).

use std::sync::Arc;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// `(epoch, partitioned)`: heal bumps the epoch, which closes the older connections.
type State = (u64, bool);

/// The running proxy; dropping it stops accepting (open connections end with the epoch bump
/// or when either side closes).
#[derive(Debug)]
pub(crate) struct Proxy {
    port: u16,
    state: Arc<watch::Sender<State>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:target`.
    pub(crate) async fn start(target: u16) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(watch::Sender::new((0, false)));
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let rx = st.subscribe();
                tokio::spawn(async move {
                    if let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)).await {
                        pump(client, upstream, rx).await;
                    }
                });
            }
        });
        Ok(Proxy { port, state, task })
    }

    /// The port clients connect to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Starts dropping every byte.
    pub(crate) fn partition(&self) {
        self.state.send_modify(|s| s.1 = true);
    }

    /// Ends the partition: connections from before are closed, new ones work.
    pub(crate) fn heal(&self) {
        self.state.send_modify(|s| *s = (s.0 + 1, false));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.heal();
    }
}

async fn pump(mut client: TcpStream, mut upstream: TcpStream, mut rx: watch::Receiver<State>) {
    let epoch = rx.borrow().0;
    let (mut a, mut b) = ([0u8; 16 * 1024], [0u8; 16 * 1024]);
    loop {
        tokio::select! {
            r = client.read(&mut a) => {
                let n = match r { Ok(0) | Err(_) => return, Ok(n) => n };
                if !rx.borrow().1 && upstream.write_all(a.get(..n).unwrap_or_default()).await.is_err() {
                    return;
                }
            }
            r = upstream.read(&mut b) => {
                let n = match r { Ok(0) | Err(_) => return, Ok(n) => n };
                if !rx.borrow().1 && client.write_all(b.get(..n).unwrap_or_default()).await.is_err() {
                    return;
                }
            }
            changed = rx.changed() => {
                if changed.is_err() || rx.borrow().0 != epoch {
                    return;
                }
            }
        }
    }
}
