//! A plain TCP proxy that can cut a client off its server (a network partition): in front of
//! PostgreSQL, it lets a test take one replica's database away and give it back.
//!
//! [`TcpProxy::cut`] closes every open connection and refuses new ones (accepts and drops them
//! at once); [`TcpProxy::restore`] lets new connections through again.

#![allow(dead_code)]

use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct TcpProxy {
    pub addr: SocketAddr,
    /// True while cut: connection tasks close their sockets when it turns true.
    cut: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(false);
        let accept = {
            let cut = cut.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    let mut cut_rx = cut.subscribe();
                    if *cut_rx.borrow_and_update() {
                        drop(client);
                        continue;
                    }
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let (mut client, mut server) = (client, server);
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut_rx.wait_for(|c| *c) => {}
                        }
                        // Both sockets are closed here, whichever way it ended.
                    });
                }
            })
        };
        TcpProxy { addr, cut, accept }
    }

    /// Closes every open connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Lets new connections through again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut.send_replace(true);
    }
}
