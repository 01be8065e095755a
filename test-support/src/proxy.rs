//! A TCP proxy a test can cut or turn into a black hole: a network outage on demand.

use crate::sqs::endpoint;

/// A TCP proxy on loopback in front of LocalStack (or any address) that a test can cut, turn into
/// a black hole, and restore: a network outage for the processes pointed at it, without stopping
/// the LocalStack other tests share. It runs on the test's tokio runtime and stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: std::net::SocketAddr,
    mode: tokio::sync::watch::Sender<ProxyMode>,
    held: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProxyMode {
    /// Forwards them.
    Up,
    /// Closes them.
    Cut,
    /// Swallows them: kept open, never answered.
    BlackHole,
    /// Dropped: closes everything.
    Stopped,
}

impl Proxy {
    /// A proxy to LocalStack's [`endpoint`].
    pub async fn to_localstack() -> Self {
        let endpoint = endpoint();
        let target = endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Self::start(target).await
    }

    /// A proxy to `target` (`host:port`), up.
    pub async fn start(target: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let (mode, _) = tokio::sync::watch::channel(ProxyMode::Up);
        let held = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (modes, swallowed) = (mode.clone(), held.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut mode = modes.subscribe();
                let held = swallowed.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let now = *mode.borrow_and_update();
                    let why = match now {
                        ProxyMode::Up => {
                            let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await
                            else {
                                return;
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                                changed = mode.wait_for(|m| *m != ProxyMode::Up) => {
                                    changed.map_or(ProxyMode::Stopped, |m| *m)
                                }
                            }
                            // `outbound` is dropped here: the target's side of it is gone.
                        }
                        other => other,
                    };
                    if why == ProxyMode::BlackHole {
                        // Open but silent until the proxy goes, as behind a lost NAT entry: the
                        // client's request is never answered, nor is the connection closed.
                        held.fetch_add(1, Ordering::SeqCst);
                        let _ = mode.wait_for(|m| *m == ProxyMode::Stopped).await;
                    }
                    drop(inbound); // cut: the client sees the connection closed
                });
            }
        });
        Self {
            addr,
            mode,
            held,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`: what `AWS_ENDPOINT_URL` should say.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The proxy's loopback address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// `url` (an `http://host:port/...` URL, such as a LocalStack queue URL) with its host and
    /// port replaced by the proxy's.
    pub fn rewrite(&self, url: &str) -> String {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .unwrap_or(url);
        let path = rest.find('/').map_or("", |i| &rest[i..]);
        format!("{}{path}", self.url())
    }

    /// Cuts it: open connections are closed, new ones closed on arrival (clients see a reset or
    /// an end of stream, as when the far side goes away).
    pub fn cut(&self) {
        self.mode.send_replace(ProxyMode::Cut);
    }

    /// Makes it a black hole: open connections and new ones are kept open but never answered,
    /// for as long as the proxy lives, even after [`Proxy::restore`] (the far side has forgotten
    /// them, as after a lost NAT entry or a dead load balancer). Only a client's own timeout gets
    /// it out of a call in flight.
    pub fn black_hole(&self) {
        self.mode.send_replace(ProxyMode::BlackHole);
    }

    /// How many connections the black hole has swallowed so far.
    pub fn swallowed(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Restores it: new connections reach the target again.
    pub fn restore(&self) {
        self.mode.send_replace(ProxyMode::Up);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Closes every connection, swallowed ones included.
        self.mode.send_replace(ProxyMode::Stopped);
        self.task.abort();
    }
}
