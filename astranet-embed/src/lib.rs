//! The embedding layer of astranet: what the C library (`astranet-ffi`), the Python
//! extension (`bindings/python`) and through the C ABI the Go package share, so that
//! they behave alike.
//!
//! - [`runtime`]: the process-wide tokio runtime (or one per node), and the fork guard:
//!   a child forked after the runtime started cannot use it, and says so.
//! - [`wait`]: blocking calls from threads that are not the runtime's, with a deadline,
//!   a non-blocking mode and a periodic interrupt hook (Python's signal handlers).
//! - [`pump`]: a stream turned into one end of a socketpair, with one set of rules for
//!   end of stream, half-close and abort.
//! - [`socket`]: a stream socket handed over as a descriptor, as a link's byte pipe.
//! - [`config`]: a flat configuration (every field optional) mapped onto the core's
//!   validating builder.
//! - [`code`]: the error codes every front reports, one table, fixed `u32` values.
//!
//! ```
//! use astranet_embed::{config::FlatConfig, runtime::Runtime, wait::{Wait, NoInterrupt}};
//! let rt = Runtime::new(0).unwrap();
//! let config = FlatConfig { role: Some("router".parse().unwrap()), ..FlatConfig::default() };
//! let node = config.build().unwrap();
//! let addr = rt.run(Wait::Forever, NoInterrupt, async move { node.listen("127.0.0.1:0").await });
//! assert!(addr.unwrap().unwrap().port() > 0);
//! ```

pub mod code;
pub mod config;
pub mod pump;
pub mod runtime;
pub mod socket;
pub mod wait;

pub use code::{astranet_result, Failure};
