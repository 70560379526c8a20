//! Placeholder replaced by the CAN benchmark.
fn main() {}
