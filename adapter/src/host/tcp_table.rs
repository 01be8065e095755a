//! One read of the kernel's TCP table answers every Runtime API peer check waiting for it.
//!
//! Producing `/proc/net/tcp` walks the whole TCP hash table however few sockets there are (about
//! 5 ms on a 24 GiB host), so a check per connection read one table each: 1,000 function workers
//! connecting at once (`--max-concurrency 1000`) cost seconds of CPU, and a pool of 64 processes
//! took 130 ms longer to become ready. Checks now queue here; one task reads the table once for
//! all those waiting, and those that arrive meanwhile share the next read. A row exists as soon
//! as its connection is accepted, so a read that starts after a check was queued sees its row.

use std::net::SocketAddr;
use std::sync::OnceLock;

use tokio::sync::{mpsc, oneshot};

/// The inode of a connection's client end, if the table has it; `Err` if it cannot be read.
pub(crate) type Found = Result<Option<u64>, String>;

struct Lookup {
    /// The client's address (the connection's peer) and the listener's.
    ends: (SocketAddr, SocketAddr),
    reply: oneshot::Sender<Found>,
}

/// Finds the inode of the client's end of the connection from `peer` to `listener`.
pub(crate) async fn client_inode(peer: SocketAddr, listener: SocketAddr) -> Found {
    static READER: OnceLock<mpsc::UnboundedSender<Lookup>> = OnceLock::new();
    let reader = READER.get_or_init(|| {
        let (queue, lookups) = mpsc::unbounded_channel();
        tokio::spawn(read_for_waiting(lookups));
        queue
    });
    let (reply, answer) = oneshot::channel();
    let lookup = Lookup {
        ends: (peer, listener),
        reply,
    };
    if reader.send(lookup).is_err() {
        return Err("the TCP table reader has stopped".to_owned());
    }
    answer
        .await
        .unwrap_or_else(|_| Err("the TCP table reader has stopped".to_owned()))
}

async fn read_for_waiting(mut lookups: mpsc::UnboundedReceiver<Lookup>) {
    while let Some(first) = lookups.recv().await {
        let mut waiting = vec![first];
        while let Ok(more) = lookups.try_recv() {
            waiting.push(more);
        }
        let ends: Vec<_> = waiting.iter().map(|lookup| lookup.ends).collect();
        // A blocking file read: off the runtime's worker threads.
        let found = tokio::task::spawn_blocking(move || super::peer_check::client_inodes(&ends))
            .await
            .unwrap_or_else(|error| Err(error.to_string()));
        for (index, lookup) in waiting.into_iter().enumerate() {
            let answer = match &found {
                Ok(inodes) => Ok(inodes.get(index).copied().flatten()),
                Err(error) => Err(error.clone()),
            };
            let _ = lookup.reply.send(answer);
        }
    }
}
