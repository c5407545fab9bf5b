//! A TCP proxy in front of a server (PostgreSQL, in the fault tests) that a
//! test can cut and restore: the server becomes unreachable without touching
//! the machine's own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP proxy in front of PostgreSQL that a test can cut and restore, to
/// make the database unreachable without touching the machine's server.
pub struct Proxy {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    pipes: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// A proxy in front of the server of the PostgreSQL `url`, and the same
    /// URL pointed at the proxy.
    pub async fn in_front_of(url: &str) -> (Self, String) {
        let (upstream, via) = through_proxy(url);
        let proxy = Self::start(upstream).await;
        let url = via(proxy.addr);
        (proxy, url)
    }

    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let open = Arc::new(AtomicBool::new(true));
        let pipes: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (open, pipes) = (open.clone(), pipes.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue; // dropped: the connection is closed at once
                    }
                    let pipe = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    pipes.lock().unwrap().push(pipe);
                }
            }
        });
        Self {
            addr,
            open,
            pipes,
            accept,
        }
    }

    /// Closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for pipe in self.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// The server address of a PostgreSQL `url`, and a function giving the same
/// URL pointed at another address.
pub fn through_proxy(url: &str) -> (SocketAddr, impl Fn(SocketAddr) -> String) {
    let start = url.find("://").unwrap() + 3;
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    let (userinfo, hostport) = authority
        .rsplit_once('@')
        .map_or(("", authority), |(u, h)| (u, h));
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    };
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(&hostport)
        .unwrap()
        .next()
        .unwrap();
    let (before, after) = (url[..start].to_owned(), url[end..].to_owned());
    let at = if userinfo.is_empty() {
        String::new()
    } else {
        format!("{userinfo}@")
    };
    (upstream, move |addr: SocketAddr| {
        format!("{before}{at}{addr}{after}")
    })
}
