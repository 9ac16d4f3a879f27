//! `mesh_agent_dns_requests_total{outcome}`: the DNS proxy's queries by
//! what became of them.
use std::fmt::Write as _;

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{counter::Counter, family::Family},
};

/// What became of one DNS query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Answered from the mesh view.
    Answered,
    /// Forwarded upstream and its answer relayed.
    Forwarded,
    /// The source is no pod the agent knows: REFUSED.
    Refused,
    /// Unreadable, over a cap, or the upstream failed.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Forwarded => "forwarded",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: Outcome,
}

/// The counter family; cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct DnsMetrics {
    pub(super) requests: Family<OutcomeLabels, Counter>,
}

impl DnsMetrics {
    pub fn count(&self, outcome: Outcome) {
        self.requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// The count of `outcome` so far.
    #[cfg(test)]
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.requests
            .get_or_create(&OutcomeLabels { outcome })
            .get()
    }
}
