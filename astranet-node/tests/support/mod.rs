//! Helpers of the tests that run the `astranet` command in network namespaces.
//! Each test crate uses a part of them.
#![allow(dead_code)]

pub mod hosts;
pub mod impair;
pub mod procfs;
