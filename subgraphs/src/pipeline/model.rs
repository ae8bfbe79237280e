//! What a pipeline run is: its record, its status and the moves between statuses.

use async_graphql::{Enum, InputObject, SimpleObject};
use serde::{Deserialize, Serialize};

use crate::common::{Tag, TagInput, Timestamp};

/// Where a run is in its life. PENDING and RUNNING are live; the others are final.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PipelineStatus {
    /// Stored and queued, waiting for a free worker.
    Pending,
    /// A worker is executing its nodes.
    Running,
    /// Every node ran and every output was written.
    Success,
    /// A node failed or the service stopped under it; `error` says why.
    Failure,
    /// Stopped by `cancelPipeline`.
    Cancelled,
}

/// Now, to the millisecond: what the database keeps, so a run read back
/// equals the run written.
pub fn now() -> Timestamp {
    use chrono::SubsecRound;
    Timestamp(chrono::Utc::now().trunc_subsecs(3))
}

impl PipelineStatus {
    pub const ALL: [PipelineStatus; 5] = [
        PipelineStatus::Pending,
        PipelineStatus::Running,
        PipelineStatus::Success,
        PipelineStatus::Failure,
        PipelineStatus::Cancelled,
    ];
    /// The statuses a run can still leave.
    pub const LIVE: [PipelineStatus; 2] = [PipelineStatus::Pending, PipelineStatus::Running];

    /// The spelling in the database and in the GraphQL enum.
    pub fn as_str(self) -> &'static str {
        match self {
            PipelineStatus::Pending => "PENDING",
            PipelineStatus::Running => "RUNNING",
            PipelineStatus::Success => "SUCCESS",
            PipelineStatus::Failure => "FAILURE",
            PipelineStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<PipelineStatus> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        !Self::LIVE.contains(&self)
    }

    /// The only moves a run makes. A run never leaves a final status, so a
    /// late worker cannot overwrite a cancellation, and nothing moves back.
    pub fn can_move_to(self, to: PipelineStatus) -> bool {
        use PipelineStatus::*;
        matches!(
            (self, to),
            (Pending, Running)
                | (Pending, Cancelled)
                | (Pending, Failure)
                | (Running, Success)
                | (Running, Failure)
                | (Running, Cancelled)
        )
    }
}

impl std::fmt::Display for PipelineStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named value of a template parameter.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    pub name: String,
    pub value: String,
}

/// A parameter value given when creating a run.
#[derive(InputObject, Clone, Debug, PartialEq, Eq)]
pub struct ParameterInput {
    pub name: String,
    pub value: String,
}

/// A template input or output bound to a dataset of the dataset subgraph.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetBinding {
    /// The template's input or output name, e.g. "text_in".
    pub name: String,
    #[graphql(name = "datasetId")]
    pub dataset_id: async_graphql::ID,
}

/// Binds a template input or output to a dataset id.
#[derive(InputObject, Clone, Debug, PartialEq, Eq)]
pub struct DatasetBindingInput {
    /// The template's input or output name, e.g. "text_in".
    pub name: String,
    #[graphql(name = "datasetId")]
    pub dataset_id: async_graphql::ID,
}

/// What `createPipeline` takes.
#[derive(InputObject, Clone, Debug)]
pub struct PipelineInput {
    /// The template name, e.g. "example01".
    pub name: String,
    /// Values for the template's parameters; unset ones take their default.
    pub parameters: Option<Vec<ParameterInput>>,
    /// One binding per template input and output.
    #[graphql(name = "dataCatalog")]
    pub data_catalog: Vec<DatasetBindingInput>,
    pub tags: Option<Vec<TagInput>>,
}

/// Narrows `pipelines`; every given condition must hold.
#[derive(InputObject, Clone, Debug, Default)]
pub struct PipelineFilter {
    /// Runs in any of these statuses (an empty list matches none).
    pub statuses: Option<Vec<PipelineStatus>>,
    /// The template name, exactly.
    pub name: Option<String>,
    /// Runs carrying this tag (key and value exactly).
    pub tag: Option<TagInput>,
}

/// A run as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub id: String,
    /// The template name.
    pub name: String,
    pub status: PipelineStatus,
    /// Every parameter of the template, defaults filled in, in template order.
    pub parameters: Vec<Parameter>,
    pub tags: Vec<Tag>,
    /// One binding per template input and output, in template order.
    pub data_catalog: Vec<DatasetBinding>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub error: Option<String>,
}

impl Run {
    /// A new PENDING run of a validated input.
    pub fn pending(input: super::validate::ValidInput, now: Timestamp) -> Run {
        Run {
            id: uuid::Uuid::new_v4().to_string(),
            name: input.template.name.to_string(),
            status: PipelineStatus::Pending,
            parameters: input.parameters,
            tags: input.tags,
            data_catalog: input.data_catalog,
            created_at: now,
            started_at: None,
            finished_at: None,
            error: None,
        }
    }

    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    pub fn dataset_of(&self, binding: &str) -> Option<&str> {
        self.data_catalog
            .iter()
            .find(|b| b.name == binding)
            .map(|b| b.dataset_id.as_str())
    }

    /// Distinct dataset ids in binding order (an input and an output may share one).
    pub fn dataset_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for b in &self.data_catalog {
            if !ids.iter().any(|i| i == b.dataset_id.as_str()) {
                ids.push(b.dataset_id.to_string());
            }
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::PipelineStatus::{self, *};

    #[test]
    fn final_statuses_are_never_left() {
        for from in [Success, Failure, Cancelled] {
            assert!(from.is_terminal());
            for to in PipelineStatus::ALL {
                assert!(!from.can_move_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn live_statuses_move_forward_only() {
        assert!(Pending.can_move_to(Running));
        assert!(Pending.can_move_to(Cancelled));
        assert!(Pending.can_move_to(Failure));
        assert!(!Pending.can_move_to(Success));
        assert!(!Pending.can_move_to(Pending));
        assert!(Running.can_move_to(Success));
        assert!(Running.can_move_to(Failure));
        assert!(Running.can_move_to(Cancelled));
        assert!(!Running.can_move_to(Pending));
        assert!(!Running.can_move_to(Running));
    }

    #[test]
    fn status_spelling_round_trips() {
        for s in PipelineStatus::ALL {
            assert_eq!(PipelineStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(PipelineStatus::parse("running"), None);
    }
}
