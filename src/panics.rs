//! Panics never reach the user as a raw print. Code that runs a library where a panic
//! is possible (the XLSX, CSV and zip writers, a driver's row decoding) runs inside a
//! boundary ([`catch`] for blocking code, [`catch_async`] for a future): a panic there
//! becomes a [`Panicked`] value, which the caller records as a plain failure ("the XLSX
//! writer failed: no space left on device; …"), and nothing is printed for it.
//!
//! The process's panic hook ([`install`]) stays quiet for a panic inside a boundary (it
//! only notes where it happened, logged at DEBUG by the boundary) and sends any other
//! panic to the log as one ERROR line, or to stderr as one plain line when the log is off
//! (`ferry run` without `-v`), instead of Rust's "thread '…' panicked at …" print.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

thread_local! {
    /// How many boundaries the current thread is inside.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// Where the last panic inside a boundary happened.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A panic caught at a boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panicked {
    /// The panic's message (`Couldn't write to xml file: Os { code: 28, … }`).
    pub message: String,
    /// `file:line:column` of the panic, when the hook saw it.
    pub location: Option<String>,
}

impl Panicked {
    /// What went wrong, for people: an operating-system error carried in the message is
    /// given as that error's plain text (`no space left on device`), anything else as the
    /// message itself.
    pub fn reason(&self) -> String {
        match os_error_code(&self.message) {
            Some(code) => crate::fsread::io_message(&std::io::Error::from_raw_os_error(code)),
            None => crate::config::redact_text(&self.message),
        }
    }
}

/// The code of an `Os { code: N, … }` (an `io::Error`'s Debug form) in a panic message:
/// libraries that `expect` an I/O result panic with it.
fn os_error_code(message: &str) -> Option<i32> {
    let rest = &message[message.find("Os { code: ")? + "Os { code: ".len()..];
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

/// Installs ferry's panic hook (once per process; later calls do nothing).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info.location().map(ToString::to_string);
            if DEPTH.with(Cell::get) > 0 {
                LOCATION.with(|l| *l.borrow_mut() = location);
                return;
            }
            let message = payload_message(info.payload());
            let location = location.unwrap_or_default();
            if !tracing::dispatcher::has_been_set() {
                // No log at all (a library user, a test): Rust's own report.
                default(info);
            } else if tracing::enabled!(tracing::Level::ERROR) {
                tracing::error!(
                    location = %location,
                    backtrace = %backtrace(),
                    "internal error: {message} (a bug in ferry or a library it uses; please report it)"
                );
            } else {
                // As every log line is: a URL in the message shows no secret.
                let message = crate::config::redact_text(&message);
                eprintln!(
                    "error: internal error at {location}: {message} (a bug in ferry or a library it uses; please report it)"
                );
            }
        }));
    });
}

/// A backtrace when `RUST_BACKTRACE` asks for one, else nothing.
fn backtrace() -> String {
    let bt = std::backtrace::Backtrace::capture();
    match bt.status() {
        std::backtrace::BacktraceStatus::Captured => format!("\n{bt}"),
        _ => String::new(),
    }
}

fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

/// Marks the current thread as inside a boundary while alive.
struct Inside;

impl Inside {
    fn enter() -> Inside {
        install();
        DEPTH.with(|d| d.set(d.get() + 1));
        Inside
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

fn caught(payload: Box<dyn Any + Send>) -> Panicked {
    let p = Panicked {
        message: payload_message(&*payload),
        location: LOCATION.with(|l| l.borrow_mut().take()),
    };
    tracing::debug!(location = p.location.as_deref().unwrap_or(""), message = %p.message, "panic caught");
    p
}

/// Runs `f`; a panic in it becomes `Err(Panicked)`, and nothing is printed for it.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    let inside = Inside::enter();
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    drop(inside);
    result.map_err(caught)
}

/// Runs `fut`; a panic while it is polled becomes `Err(Panicked)`, and nothing is printed
/// for it.
pub async fn catch_async<F: Future>(fut: F) -> Result<F::Output, Panicked> {
    Catch {
        inner: Box::pin(fut),
    }
    .await
}

/// Polls the inner future inside a boundary, on whatever thread polls it.
struct Catch<F: Future> {
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for Catch<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.inner.as_mut();
        match catch(|| inner.poll(cx)) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => Poll::Ready(Err(p)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_caught_with_its_message_and_location() {
        let p = catch(|| -> u32 { panic!("boom {}", 7) }).unwrap_err();
        assert_eq!(p.message, "boom 7");
        assert!(
            p.location.as_deref().unwrap().starts_with("src/panics.rs:"),
            "{p:?}"
        );
        assert_eq!(catch(|| 5).unwrap(), 5);
        // The boundary is left: the depth is back to zero.
        assert_eq!(DEPTH.with(Cell::get), 0);
    }

    #[test]
    fn an_os_error_in_the_message_reads_plainly() {
        let message = format!(
            "Couldn't write to xml file: {:?}",
            std::io::Error::from_raw_os_error(28)
        );
        let p = Panicked {
            message,
            location: None,
        };
        assert_eq!(p.reason(), "no space left on device");
        let p = Panicked {
            message: "index out of bounds".into(),
            location: None,
        };
        assert_eq!(p.reason(), "index out of bounds");
    }

    #[tokio::test]
    async fn a_panicking_future_is_caught() {
        let p = catch_async(async {
            tokio::task::yield_now().await;
            if true {
                panic!("late");
            }
        })
        .await
        .unwrap_err();
        assert_eq!(p.message, "late");
        assert_eq!(catch_async(async { 3 }).await.unwrap(), 3);
    }
}
