//! A toggleable TCP proxy in front of the shared PostgreSQL or Redis, so that a test can cut,
//! hang and restore its own server's connections without touching the servers every test
//! shares. Switched at any time, it applies to open connections as well as new ones:
//!
//! - `Forward`: bytes pass both ways (held ones first);
//! - `Refuse`: every open connection is closed and new ones are closed on accept (as a server
//!   that is down: a client's connection fails at once);
//! - `Stall`: connections are accepted and kept, but no byte passes (a hung server or network:
//!   a client waits for answers that do not come until the proxy forwards again).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Forward,
    Refuse,
    Stall,
}

pub struct Proxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.mode.send(Mode::Refuse);
        self.task.abort();
    }
}

impl Proxy {
    /// Listens on a free local port and forwards to `target` (e.g. `127.0.0.1:5432`).
    pub async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, watching) = watch::channel(Mode::Forward);
        let target = target.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *watching.borrow() == Mode::Refuse {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let mode = watching.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    // When either direction ends, both sockets are dropped.
                    tokio::select! {
                        () = pump(client_read, server_write, mode.clone()) => {}
                        () = pump(server_read, client_write, mode) => {}
                    }
                });
            }
        });
        Proxy { addr, mode, task }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

/// Copies one direction while the mode allows it; returns when either side closes or the
/// proxy refuses.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = mode.wait_for(|m| *m == Mode::Refuse) => return,
        };
        // Held while stalled; dropped (with the connection) if the proxy refuses meanwhile.
        let now = match mode.wait_for(|m| *m != Mode::Stall).await {
            Ok(m) => *m,
            Err(_) => return,
        };
        if now == Mode::Refuse || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
