//! meshtriage on the command line: the plugin's rules (meshtriage-core) applied to text people
//! already have: an error body, response flags, a `Proxy-Status`, access-log lines.
#![forbid(unsafe_code)]

pub mod explain;
pub mod format;
pub mod judge;
pub mod logs;
pub mod style;
pub mod summary;
