//! Keys below the root key.

pub mod data_keys;
