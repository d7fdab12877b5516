//! Blocking calls for threads of the host language.
//!
//! A C or Python thread that waits for a stream, a dial or an accept parks until the
//! operation's waker fires, its deadline passes, or (every `tick`) its [`Interrupt`]
//! says to stop — Python checks for signals there, so Ctrl-C works while a call
//! blocks. The operation is polled on the calling thread (inside the runtime's
//! context, so timers and sockets it creates work); it is never `block_on`, and a call
//! from a runtime thread is refused rather than left to starve the runtime.

use crate::code::{astranet_result, Failure};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

/// How long a blocking call may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Until done.
    Forever,
    /// Not at all: a call that is not ready at once stops with [`Stopped::WouldBlock`].
    NonBlocking,
    /// Until this instant, then [`Stopped::TimedOut`] (an instant already past still
    /// gets one look).
    Until(Instant),
}

impl Wait {
    /// `None`: forever; otherwise until that long from now.
    pub fn timeout(limit: Option<Duration>) -> Wait {
        match limit {
            None => Wait::Forever,
            Some(t) => Instant::now().checked_add(t).map_or(Wait::Forever, Wait::Until),
        }
    }

    /// A C timeout in milliseconds: negative means none.
    pub fn millis(ms: i32) -> Wait {
        Wait::timeout(millis(ms))
    }
}

/// A C timeout in milliseconds as a duration: negative means none.
pub fn millis(ms: i32) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

/// Why a wait ended without the operation's result.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped<E> {
    /// [`Wait::NonBlocking`] and the operation was not ready.
    WouldBlock,
    /// The deadline passed.
    TimedOut,
    /// The interrupt hook said to stop, with this error.
    Interrupted(E),
    /// The call was made from a thread of the runtime, which must never block.
    InsideRuntime,
    /// The spawned task panicked (a bug; the message says where).
    Panicked(String),
    /// The runtime shut down before the task finished.
    RuntimeGone,
}

impl Stopped<Infallible> {
    /// The same stop, typed for a wait that has an interrupt error.
    pub fn widen<E>(self) -> Stopped<E> {
        match self {
            Stopped::WouldBlock => Stopped::WouldBlock,
            Stopped::TimedOut => Stopped::TimedOut,
            Stopped::Interrupted(never) => match never {},
            Stopped::InsideRuntime => Stopped::InsideRuntime,
            Stopped::Panicked(m) => Stopped::Panicked(m),
            Stopped::RuntimeGone => Stopped::RuntimeGone,
        }
    }

    /// The failure a front reports: `what` names the operation, `limit` its timeout.
    pub fn failure(self, what: &str, limit: Option<Duration>) -> Failure {
        match self {
            Stopped::WouldBlock => Failure::new(astranet_result::ASTRANET_AGAIN, format!("{what} would block")),
            Stopped::TimedOut => Failure::timed_out(what, limit),
            Stopped::Interrupted(never) => match never {},
            Stopped::InsideRuntime => {
                Failure::invalid(format!("{what}: a blocking astranet call was made from a thread of an async runtime"))
            }
            Stopped::Panicked(m) => Failure::new(astranet_result::ASTRANET_ERR_PANIC, format!("internal panic: {m}")),
            Stopped::RuntimeGone => {
                Failure::new(astranet_result::ASTRANET_ERR_NODE_CLOSED, "the node's runtime shut down")
            }
        }
    }
}

/// What a waiting thread checks now and then: Python's signal handlers, for instance.
pub trait Interrupt {
    /// What [`check`](Interrupt::check) stops the wait with.
    type Error;
    /// How often to check; `None` never.
    fn tick(&self) -> Option<Duration>;
    /// `Err` stops the wait with [`Stopped::Interrupted`].
    fn check(&mut self) -> Result<(), Self::Error>;
}

/// Waits that only the operation, its deadline or its waker end.
pub struct NoInterrupt;

impl Interrupt for NoInterrupt {
    type Error = Infallible;
    fn tick(&self) -> Option<Duration> {
        None
    }
    fn check(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// Unparks the waiting thread, and remembers it did: a spurious unpark is not a reason
/// to poll again.
struct ThreadWaker {
    thread: std::thread::Thread,
    woken: AtomicBool,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Polls `op` on this thread until it is ready, parking in between (see the module
/// docs). `enter`: the runtime whose context the polls run in.
pub fn block_on<T, I: Interrupt>(
    enter: Option<&Handle>,
    how: Wait,
    mut interrupt: I,
    mut op: impl FnMut(&mut Context<'_>) -> Poll<T>,
) -> Result<T, Stopped<I::Error>> {
    if Handle::try_current().is_ok() {
        return Err(Stopped::InsideRuntime);
    }
    let _context = enter.map(Handle::enter);
    let tw = Arc::new(ThreadWaker { thread: std::thread::current(), woken: AtomicBool::new(false) });
    let waker = Waker::from(tw.clone());
    let mut cx = Context::from_waker(&waker);
    let tick = interrupt.tick();
    let mut next_tick = tick.map(|t| Instant::now() + t);
    loop {
        tw.woken.store(false, Ordering::Release);
        if let Poll::Ready(out) = op(&mut cx) {
            return Ok(out);
        }
        loop {
            if tw.woken.load(Ordering::Acquire) {
                break;
            }
            let now = Instant::now();
            if let (Some(t), Some(at)) = (tick, next_tick) {
                if now >= at {
                    interrupt.check().map_err(Stopped::Interrupted)?;
                    next_tick = Some(now + t);
                }
            }
            let deadline = match how {
                Wait::NonBlocking => return Err(Stopped::WouldBlock),
                Wait::Until(d) if now >= d => {
                    // One last look: it may have got ready just now.
                    return match op(&mut cx) {
                        Poll::Ready(out) => Ok(out),
                        Poll::Pending => Err(Stopped::TimedOut),
                    };
                }
                Wait::Until(d) => Some(d),
                Wait::Forever => None,
            };
            match deadline.into_iter().chain(next_tick).min() {
                Some(at) => std::thread::park_timeout(at.saturating_duration_since(now)),
                None => std::thread::park(),
            }
        }
    }
}

/// Waits for a future on this thread (see [`block_on`]).
pub fn future<F: Future, I: Interrupt>(
    enter: Option<&Handle>,
    how: Wait,
    interrupt: I,
    fut: F,
) -> Result<F::Output, Stopped<I::Error>> {
    let mut fut = std::pin::pin!(fut);
    block_on(enter, how, interrupt, |cx| fut.as_mut().poll(cx))
}

/// Runs `fut` as a task of the runtime and waits for its output on this thread; the
/// task is aborted when the wait stops early (timeout, interrupt).
pub fn spawned<F, I>(rt: &Handle, how: Wait, interrupt: I, fut: F) -> Result<F::Output, Stopped<I::Error>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    I: Interrupt,
{
    if Handle::try_current().is_ok() {
        return Err(Stopped::InsideRuntime);
    }
    let task = rt.spawn(fut);
    let abort = task.abort_handle();
    match future(Some(rt), how, interrupt, task) {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) if e.is_panic() => Err(Stopped::Panicked(crate::code::panic_message(&*e.into_panic()))),
        Ok(Err(_cancelled)) => Err(Stopped::RuntimeGone),
        Err(stopped) => {
            abort.abort();
            Err(stopped)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Runtime;

    #[test]
    fn a_ready_operation_needs_no_wait() {
        assert_eq!(block_on(None, Wait::NonBlocking, NoInterrupt, |_| Poll::Ready(7)), Ok(7));
        assert_eq!(block_on(None, Wait::NonBlocking, NoInterrupt, |_| Poll::<()>::Pending), Err(Stopped::WouldBlock));
    }

    #[test]
    fn a_deadline_ends_the_wait() {
        let start = Instant::now();
        let r = block_on(None, Wait::timeout(Some(Duration::from_millis(50))), NoInterrupt, |_| Poll::<()>::Pending);
        assert_eq!(r, Err(Stopped::TimedOut));
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn a_waker_from_another_thread_ends_the_wait() {
        let rt = Runtime::new(1).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(5).unwrap();
        });
        assert_eq!(future(Some(rt.handle()), Wait::Forever, NoInterrupt, rx), Ok(Ok(5)));
    }

    struct After(u32);
    impl Interrupt for After {
        type Error = &'static str;
        fn tick(&self) -> Option<Duration> {
            Some(Duration::from_millis(5))
        }
        fn check(&mut self) -> Result<(), &'static str> {
            self.0 = self.0.saturating_sub(1);
            if self.0 == 0 {
                Err("interrupted")
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn the_interrupt_hook_stops_a_wait_and_aborts_the_task() {
        let rt = Runtime::new(1).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let r = rt.run(Wait::Forever, After(3), async move {
            let _keep = tx;
            std::future::pending::<()>().await
        });
        assert_eq!(r, Err(Stopped::Interrupted("interrupted")));
        // The task was aborted: its sender is dropped.
        assert!(future(Some(rt.handle()), Wait::Forever, NoInterrupt, rx).unwrap().is_err());
    }

    #[test]
    fn a_panicking_task_is_reported_not_propagated() {
        let rt = Runtime::new(1).unwrap();
        let r = rt.run(Wait::Forever, NoInterrupt, async { panic!("boom") });
        assert!(matches!(&r, Err(Stopped::Panicked(m)) if m == "boom"), "{r:?}");
    }

    #[test]
    fn a_runtime_thread_may_not_block() {
        let rt = Runtime::new(1).unwrap();
        let inner = rt.handle().clone();
        let r = rt.run(Wait::Forever, NoInterrupt, async move {
            spawned(&inner, Wait::Forever, NoInterrupt, async { 1 }).map_err(|s| s.failure("test", None).code)
        });
        assert_eq!(r, Ok(Err(astranet_result::ASTRANET_ERR_INVALID_ARGUMENT)));
    }
}
