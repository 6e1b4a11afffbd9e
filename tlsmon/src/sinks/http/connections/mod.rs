//! The endpoint's connection table: at most a fixed number of connections, and
//! when a new one arrives at the limit, an idle one is closed to make room
//! (shed) instead of the new one waiting.
//!
//! Written here because neither hyper nor hyper-util has it: hyper serves one
//! connection at a time and leaves admission to the caller, and the usual limits
//! (a semaphore, tower's `ConcurrencyLimit`) make a new client wait for a free
//! slot, which is exactly how a few hundred silent connections kept Prometheus
//! out. Shedding needs to know what each connection is doing, which only the
//! service and the response body see.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use http_body_util::Full;
use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::sync::oneshot;

/// What a connection is doing, in the order connections are shed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Activity {
    /// Connected, no request head complete yet (silent and slow clients).
    Fresh,
    /// Served a request and waits for the next (a keep-alive scraper).
    Idle,
    /// A request is being answered.
    Busy,
}

#[derive(Debug)]
struct Entry {
    activity: Activity,
    /// Fired (or dropped) to make the connection's task close it.
    shed: Option<oneshot::Sender<()>>,
}

/// Open connections by admission order (ids only grow, so the smallest id is
/// the oldest connection).
#[derive(Debug)]
pub(crate) struct ConnectionTable {
    limit: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    open: BTreeMap<u64, Entry>,
}

/// A new connection's place in the table.
pub(crate) struct Admission {
    /// Removes the connection from the table when dropped.
    pub(crate) slot: Slot,
    /// Completes when the table sheds this connection.
    pub(crate) shed: oneshot::Receiver<()>,
    /// What the connection shed to make room was doing, if one was.
    pub(crate) shed_other: Option<Activity>,
}

impl ConnectionTable {
    /// A table of at most `limit` connections (at least 1).
    pub(crate) fn new(limit: usize) -> Arc<ConnectionTable> {
        Arc::new(ConnectionTable {
            limit: limit.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update leaves the map consistent; a panic elsewhere cannot break it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new connection; at the limit, first sheds the connection that
    /// has been fresh the longest, else the longest idle, else the oldest busy.
    pub(crate) fn admit(self: &Arc<Self>) -> Admission {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        let mut shed_other = None;
        while inner.open.len() >= self.limit {
            let Some(victim) = inner
                .open
                .iter()
                .min_by_key(|(id, entry)| (entry.activity, **id))
                .map(|(id, _)| *id)
            else {
                break;
            };
            if let Some(mut entry) = inner.open.remove(&victim) {
                if let Some(shed) = entry.shed.take() {
                    // The task may have ended already; then nothing is left to close.
                    let _ = shed.send(());
                }
                shed_other = Some(entry.activity);
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        inner.open.insert(
            id,
            Entry {
                activity: Activity::Fresh,
                shed: Some(tx),
            },
        );
        Admission {
            slot: Slot {
                table: self.clone(),
                id,
            },
            shed: rx,
            shed_other,
        }
    }

    /// Connections in the table now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().open.len()
    }

    fn set(&self, id: u64, activity: Activity) {
        if let Some(entry) = self.lock().open.get_mut(&id) {
            entry.activity = activity;
        }
    }
}

/// One connection's entry; removed from the table on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    table: Arc<ConnectionTable>,
    id: u64,
}

impl Slot {
    /// Marks a request as being answered until the returned guard is dropped
    /// (it travels with the response body, which hyper drops once written).
    pub(crate) fn busy(&self) -> BusyGuard {
        self.table.set(self.id, Activity::Busy);
        BusyGuard {
            table: self.table.clone(),
            id: self.id,
        }
    }

    /// What the connection is doing now (`None` once shed).
    pub(crate) fn activity(&self) -> Option<Activity> {
        self.table
            .lock()
            .open
            .get(&self.id)
            .map(|entry| entry.activity)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.lock().open.remove(&self.id);
    }
}

/// Keeps a connection marked busy; marks it idle when dropped.
#[derive(Debug)]
pub(crate) struct BusyGuard {
    table: Arc<ConnectionTable>,
    id: u64,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.table.set(self.id, Activity::Idle);
    }
}

/// A response body that keeps its connection marked busy while hyper sends it.
#[derive(Debug)]
pub(crate) struct TrackedBody {
    inner: Full<Bytes>,
    _busy: BusyGuard,
    /// Whatever else must live as long as the body (a read permit).
    _held: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl TrackedBody {
    /// `inner`, with the connection busy until the body is dropped.
    pub(crate) fn new(inner: Full<Bytes>, busy: BusyGuard) -> TrackedBody {
        TrackedBody {
            inner,
            _busy: busy,
            _held: None,
        }
    }

    /// The body, keeping `held` (if any) until it is dropped.
    pub(crate) fn holding<T: Send + Sync + 'static>(mut self, held: Option<T>) -> TrackedBody {
        self._held = held.map(|h| Box::new(h) as Box<dyn std::any::Any + Send + Sync>);
        self
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        // Both fields are Unpin, so the body is too.
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
