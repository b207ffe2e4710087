//! CPU execution: the plain reference (the oracle) and the fast executor.
pub mod fast;
pub mod reference;
