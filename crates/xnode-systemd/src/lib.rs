//! XnodeOS's hands on systemd: it writes the unit files a plan asks for, drives
//! systemd's jobs over D-Bus, and reads back what is running, so the planner in
//! `xnode-spec` can see drift.
//!
//! Everything goes through systemd's D-Bus API (zbus with `zbus_systemd`'s generated
//! proxies); nothing shells out to `systemctl`. An apply validates and stages every file
//! before it stops anything, so a failure to write (a read-only `/run`, a unit that
//! turned out not to be ours) changes nothing.

mod apply;
mod changes;
mod client;
mod error;
mod files;
mod install;
mod jobs;
mod observe;

pub use apply::{ApplyOptions, ApplyReport, StepOutcome, StepReport};
pub use client::{Bus, Config, Systemd, UnitStatus, Usage};
pub use error::Error;
pub use jobs::JobResult;
