//! The signals that stop a node, in two steps: *drain* (the node says it is not ready, so the
//! load balancer stops sending it work, but it still serves what arrives) and *stop* (the
//! accept loop, and long-lived answers such as event streams, end; requests in flight get the
//! grace period). A module of its own so that the application state can hold one without
//! depending on the server loop.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// Tells the server (and long-lived responses such as event streams) to stop.
#[derive(Debug, Clone)]
pub struct Shutdown {
    sender: Arc<watch::Sender<bool>>,
    draining: Arc<AtomicBool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self {
            sender: Arc::new(watch::channel(false).0),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The first step: `/readyz` answers 503 and answers ask clients to close their
    /// connections, but requests are still served.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// True from [`Shutdown::drain`] or [`Shutdown::trigger`] on.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed) || self.is_triggered()
    }

    /// The second step: stop accepting connections and end long-lived answers.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.sender.borrow()
    }

    /// Resolves once [`Shutdown::trigger`] has been called.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.sender.subscribe();
        async move {
            let _ = receiver.wait_for(|stopped| *stopped).await;
        }
    }
}
