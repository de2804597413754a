//! The agent's effects on systemd, behind a small trait: the real one is
//! `xnode_systemd::Systemd`; tests of the decisions use a fake.

use std::future::Future;

use xnode_spec::plan::{ObservedUnit, Plan};
use xnode_systemd::{ApplyOptions, ApplyReport, Error, Systemd, UnitStatus};

/// What the agent does to units.
pub trait Units {
    /// The units named like the agent's, with their files and states.
    fn observe(&self) -> impl Future<Output = Result<Vec<ObservedUnit>, Error>> + Send;
    /// Carries out a plan.
    fn apply(
        &self,
        plan: &Plan,
        options: &ApplyOptions,
    ) -> impl Future<Output = Result<ApplyReport, Error>> + Send;
    /// One unit's state now.
    fn status(&self, unit: &str) -> impl Future<Output = Result<UnitStatus, Error>> + Send;
}

impl Units for Systemd {
    fn observe(&self) -> impl Future<Output = Result<Vec<ObservedUnit>, Error>> + Send {
        Systemd::observe(self)
    }
    fn apply(
        &self,
        plan: &Plan,
        options: &ApplyOptions,
    ) -> impl Future<Output = Result<ApplyReport, Error>> + Send {
        Systemd::apply(self, plan, options)
    }
    fn status(&self, unit: &str) -> impl Future<Output = Result<UnitStatus, Error>> + Send {
        Systemd::status(self, unit)
    }
}
