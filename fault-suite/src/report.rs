//! Targets checked by the scenarios: each is printed when checked, and listed again at the end.

/// One checked target.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    /// Scenario name.
    pub(crate) scenario: String,
    /// What must hold.
    pub(crate) target: String,
    /// What was measured.
    pub(crate) measured: String,
    /// Whether it held.
    pub(crate) pass: bool,
}

/// Every target checked in this run.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    current: String,
    items: Vec<Check>,
}

impl Checks {
    /// Starts the checks of `scenario`.
    pub(crate) fn begin(&mut self, scenario: &str) {
        self.current = scenario.to_string();
    }

    /// Records and prints a target; returns `pass`.
    pub(crate) fn check(&mut self, target: impl Into<String>, measured: impl Into<String>, pass: bool) -> bool {
        let c = Check { scenario: self.current.clone(), target: target.into(), measured: measured.into(), pass };
        println!("  {}  {}: {}", if pass { "PASS" } else { "FAIL" }, c.target, c.measured);
        self.items.push(c);
        pass
    }

    /// Targets that did not hold.
    pub(crate) fn failed(&self) -> usize {
        self.items.iter().filter(|c| !c.pass).count()
    }

    /// The final list.
    pub(crate) fn print_summary(&self) {
        println!("\n== summary: {} targets, {} failed", self.items.len(), self.failed());
        for c in &self.items {
            println!("  {}  {:<14} {}: {}", if c.pass { "PASS" } else { "FAIL" }, c.scenario, c.target, c.measured);
        }
    }
}

/// An informational figure (no target attached).
pub(crate) fn info(text: impl AsRef<str>) {
    println!("  info  {}", text.as_ref());
}
