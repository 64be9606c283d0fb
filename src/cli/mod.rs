//! The subcommands of the `anybit` tool. Each writes to the given output and returns an error
//! (printed by `main`, exit status 1) instead of writing partial results.

pub mod compile;
pub mod dtype;
pub mod import;
pub mod inspect;
pub mod layout;
pub mod linear;
pub mod run;
pub mod source;
pub mod tune;
