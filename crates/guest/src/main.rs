//! `corral-guest`: PID 1 of a corral VM.
fn main() {}
